"""
A large folder: one user's INBOX of 100,000 messages (1 in 10 unseen), the
same files for every server.

The folder is written once per run into a cache directory and hard-linked
into each server's Maildir; seeding ends with a SELECT and a fetch of every
message's flags, so that every server has built its index before anything
is timed.  A server that cannot do that within C{COPE_TIMEOUT} is not
measured on the folder (its figures are left empty; the run says why).  The scenarios time
SELECT, C{UID FETCH 1:* (UID FLAGS)}, C{UID SEARCH UNSEEN} and the first
SELECT after a restart and C{STATUS} (seconds, lower is better), and take
the server's memory with the folder selected and its flags fetched (MB: RSS
and PSS, summed over its processes), and that memory's growth over the
empty server per message of the folder.
"""

from __future__ import annotations

import asyncio
import atexit
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from harness.load.imapclient import ImapClient, ProtocolError
from harness.load.seeding import backdate, fillMaildir, linkMaildir
from harness.load.sessions import FAILURES
from harness.model import Measurement, Scenario, users
from harness.processes import Running
from harness.runner import say

UNSEEN_EVERY = 10
#: Small messages: the timed commands never read bodies, and 100,000 files
#: of realistic size would only cost disk and seeding time.
SIZES = (800, 4_000)
#: Longest a probe (login, the timed command, logout) may take.
PROBE_TIMEOUT = 300.0
#: A server that needs longer to SELECT the folder and fetch its flags once
#: is not measured on it (pymap reads every message file to answer FLAGS).
COPE_TIMEOUT = 30.0

_cache: dict[int, Path] = {}
#: (server name, folder size) -> why that server is not measured on the folder
_unable: dict[tuple[str, int], str] = {}


def cachedFolder(count: int) -> Path:
    """A Maildir of C{count} messages, written once per run."""
    if count not in _cache:
        root = Path(tempfile.mkdtemp(prefix="tmail-bench-folder-"))
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        started = time.monotonic()
        fillMaildir(root / "Maildir", count, UNSEEN_EVERY, SIZES)
        say(f"  wrote a {count:,}-message folder in {time.monotonic() - started:.1f} s")
        _cache[count] = root / "Maildir"
    return _cache[count]


def unseen(count: int) -> int:
    return len(range(0, count, UNSEEN_EVERY))


def check(condition: bool, what: str) -> None:
    if not condition:
        raise ProtocolError(what)


async def login(server: Running) -> ImapClient:
    client = await ImapClient.connect(server.ports["imap"])
    reply = await client.login(users(1)[0])
    if not reply.ok:
        client.close()
        raise ProtocolError("LOGIN refused")
    return client


async def timedSelect(client: ImapClient, count: int) -> float:
    start = time.perf_counter()
    reply = await client.command(b"SELECT INBOX")
    seconds = time.perf_counter() - start
    check(reply.ok and client.exists == count, f"SELECT found {client.exists} of {count}")
    return seconds


async def timedFetchFlags(client: ImapClient, count: int) -> float:
    await timedSelect(client, count)
    start = time.perf_counter()
    status, fetched = await client.bulk(b"UID FETCH 1:* (UID FLAGS)", b" FETCH (")
    seconds = time.perf_counter() - start
    check(status == b"OK" and fetched == count, f"UID FETCH {status!r}, {fetched} of {count}")
    return seconds


async def timedSearchUnseen(client: ImapClient, count: int) -> float:
    await timedSelect(client, count)
    start = time.perf_counter()
    reply = await client.command(b"UID SEARCH UNSEEN")
    seconds = time.perf_counter() - start
    found = sum(len(r.split()) - 2 for r in reply.untagged if r.startswith(b"* SEARCH"))
    check(reply.ok and found == unseen(count), f"UID SEARCH UNSEEN found {found}")
    return seconds


async def timedStatus(client: ImapClient, count: int) -> float:
    """STATUS of the folder, as a client polling its folders sends it, without a SELECT."""
    start = time.perf_counter()
    reply = await client.command(b"STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY UNSEEN)")
    seconds = time.perf_counter() - start
    found = b" ".join(r for r in reply.untagged if r.startswith(b"* STATUS"))
    check(
        reply.ok and b"MESSAGES %d" % count in found and b"UNSEEN %d" % unseen(count) in found,
        f"STATUS said {found!r}",
    )
    return seconds


#: A probe runs on a logged-in session and returns the seconds it timed.
Probe = Callable[[ImapClient, int], Awaitable[float]]


@dataclass
class LargeFolder:
    """
    One figure about the large folder, measured C{repeats} times per round:
    the mean seconds of C{probe}, or with C{memory} the server's RSS in MB
    (its PSS with C{pss}).
    """

    name: str
    count: int
    probe: Probe
    repeats: int
    restart: bool = False
    memory: bool = False
    pss: bool = False
    perMessage: bool = False
    unit: str = "s"
    higherIsBetter: bool = False
    protocols: frozenset[str] = frozenset({"imap"})
    userCount: int = 1
    baseline: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.perMessage:
            self.memory = True
            self.unit = "B/msg"
        elif self.memory or self.pss:
            self.memory = True
            self.unit = "MB"

    def seed(self, server: Running) -> None:
        key = (server.name, self.count)
        if key not in _unable:
            self.baseline[server.name] = server.rssBytes()
            started = time.monotonic()
            maildir = server.maildirs[users(1)[0]]
            linkMaildir(cachedFolder(self.count), maildir)
            backdate(maildir)
            try:
                seconds, _, _ = self._run(server, timedFetchFlags, COPE_TIMEOUT)
                say(
                    f"  {self.name}: {server.name} seeded in {time.monotonic() - started:.1f} s, "
                    f"then UID FETCH of the flags {seconds:.2f} s"
                )
                return
            except TimeoutError:
                _unable[key] = f"SELECT and UID FETCH of the flags took over {COPE_TIMEOUT:.0f} s"
                # Its unfinished work would take CPU from the servers being measured.
                server.stop()
            except FAILURES as e:
                _unable[key] = f"SELECT and UID FETCH of the flags failed: {e!r}"
        say(f"  {self.name}: {server.name} not measured on {self.count:,} messages: {_unable[key]}")

    def _run(
        self, server: Running, probe: Probe, timeout: float = PROBE_TIMEOUT
    ) -> tuple[float, int, int]:
        """
        The probe's seconds, and the server's memory (RSS, PSS; PSS only
        for a memory figure) while the session is still open.
        """

        async def session() -> tuple[float, int, int]:
            async with asyncio.timeout(timeout):
                client = await login(server)
                try:
                    seconds = await probe(client, self.count)
                    rss = server.rssBytes()
                    pss = server.pssBytes() if self.memory else 0
                    await client.command(b"LOGOUT")
                    return seconds, rss, pss
                finally:
                    client.close()

        return asyncio.run(session())

    def measure(self, server: Running) -> Measurement:
        if (server.name, self.count) in _unable:
            return Measurement(0, 0.0, 0.0)
        m = Measurement(0, 0.0, 0.0)
        for _ in range(self.repeats):
            if self.restart:
                server.restart()
            before = server.cpuSeconds()
            try:
                seconds, rss, pss = self._run(server, self.probe)
            except FAILURES as e:
                say(f"  {self.name}: {server.name}: {e!r}")
                m.lost += 1
            else:
                m.ops += 1
                m.seconds += seconds
                m.extra = {
                    "rss_mb": rss / 1e6,
                    "pss_mb": pss / 1e6,
                    "bytes_per_message": (rss - self.baseline[server.name]) / self.count,
                }
            m.cpuSeconds += server.cpuSeconds() - before
        return m

    def value(self, m: Measurement) -> float:
        if self.perMessage:
            return m.extra.get("bytes_per_message", float("nan"))
        if self.memory:
            return m.extra.get("pss_mb" if self.pss else "rss_mb", float("nan"))
        return m.seconds / m.ops if m.ops else float("nan")


def scenarios(size: str) -> list[Scenario]:
    count = {"full": 100_000, "quick": 10_000, "smoke": 200}[size]
    return [
        LargeFolder("large-select", count, timedSelect, repeats=5),
        LargeFolder("large-fetch-flags", count, timedFetchFlags, repeats=3),
        LargeFolder("large-search-unseen", count, timedSearchUnseen, repeats=5),
        LargeFolder("large-status", count, timedStatus, repeats=5),
        LargeFolder("large-first-select", count, timedSelect, repeats=1, restart=True),
        LargeFolder("large-rss", count, timedFetchFlags, repeats=1, memory=True),
        LargeFolder("large-pss", count, timedFetchFlags, repeats=1, pss=True),
        LargeFolder("large-memory-per-message", count, timedFetchFlags, repeats=1, perMessage=True),
    ]
