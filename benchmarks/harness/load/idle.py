"""
Idle connections (C{idle-memory}, C{idle-notify}).

Each round restarts the server (so its memory starts from the same place),
opens many IMAP connections spread over the users, a few hundred at a time,
each logged in with INBOX selected and in IDLE; takes the server's memory;
then delivers one message to every user and times until every connection
has seen the new EXISTS.  Delivery is by SMTP when the server listens for
it (tmail), else by a file renamed into each Maildir's C{new/} as a local
delivery agent would.  C{idle-memory} is the RSS growth per connection in
KB (PSS in C{extra}, fairer to servers of many processes that share pages);
C{idle-notify} is the seconds until the last connection heard of its mail.
"""

from __future__ import annotations

import asyncio
import contextlib
import smtplib
import time
from dataclasses import dataclass

import psutil

from harness.load.imapclient import ImapClient, ProtocolError
from harness.load.seeding import deliverFile, fillMaildir, message
from harness.load.sessions import FAILURES
from harness.model import Measurement, Scenario, users
from harness.processes import Running
from harness.runner import say

#: Messages in each INBOX before the first round (each round delivers one more).
MESSAGES = 5
#: Connections being opened at any moment.
OPENING = 200
OPEN_TIMEOUT = 30.0
#: How long the whole opening may take, and how long to wait for EXISTS.
ALL_OPEN_TIMEOUT = 600.0
NOTIFY_TIMEOUT = 60.0


def pssBytes(server: Running) -> int:
    """Proportional set size of the server's processes: shared pages counted once overall."""
    total = 0
    for proc in server.processes():
        with contextlib.suppress(psutil.Error):
            total += proc.memory_full_info().pss
    return total


async def openIdle(port: int, user: str) -> ImapClient:
    """A connection logged in as C{user}, INBOX selected, in IDLE."""
    client = await ImapClient.connect(port)
    try:
        if not (await client.login(user)).ok:
            raise ProtocolError(f"LOGIN {user} refused")
        if not (await client.command(b"SELECT INBOX")).ok:
            raise ProtocolError("SELECT INBOX refused")
        await client.idle()
    except BaseException:
        client.close()
        raise
    return client


def deliverAll(server: Running, recipients: list[str]) -> None:
    """One new message in every recipient's INBOX."""
    data = message(999_999, 2_000)
    if "smtp" in server.ports:
        with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=NOTIFY_TIMEOUT) as smtp:
            smtp.sendmail("sender@example.org", recipients, data.replace(b"\n", b"\r\n"))
    else:
        for user in recipients:
            deliverFile(server.maildirs[user], data)


@dataclass
class IdleRound:
    """What one round saw."""

    wanted: int
    opened: int = 0
    notified: int = 0
    openSeconds: float = 0.0
    notifySeconds: float = 0.0
    rssDelta: int = 0
    pssDelta: int = 0
    cpuSeconds: float = 0.0


async def openMany(port: int, everyone: list[str], wanted: int) -> list[ImapClient]:
    """
    Up to C{wanted} idling connections, C{OPENING} at a time, user after
    user; opening stops early once a tenth of them (at most C{OPENING}) have
    failed: a server that cannot keep up would otherwise hold a round for
    as long as C{ALL_OPEN_TIMEOUT}.
    """
    gate = asyncio.Semaphore(OPENING)
    failures = 0

    async def opened(index: int) -> ImapClient | None:
        nonlocal failures
        async with gate:
            if failures > min(wanted // 10, OPENING):
                return None
            try:
                async with asyncio.timeout(OPEN_TIMEOUT):
                    return await openIdle(port, everyone[index % len(everyone)])
            except FAILURES:
                failures += 1
                return None

    tasks = [asyncio.create_task(opened(i)) for i in range(wanted)]
    await asyncio.wait(tasks, timeout=ALL_OPEN_TIMEOUT)
    for task in tasks:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    return [c for c in results if isinstance(c, ImapClient)]


async def idleRound(server: Running, everyone: list[str], wanted: int) -> IdleRound:
    result = IdleRound(wanted)
    rss, pss, cpu = server.rssBytes(), pssBytes(server), server.cpuSeconds()
    started = time.perf_counter()
    clients = await openMany(server.ports["imap"], everyone, wanted)
    try:
        result.opened = len(clients)
        result.openSeconds = time.perf_counter() - started
        await asyncio.sleep(1)  # let the server finish settling the last sessions
        result.rssDelta = server.rssBytes() - rss
        result.pssDelta = pssBytes(server) - pss
        heard: list[float] = []

        async def notified(client: ImapClient) -> None:
            with contextlib.suppress(*FAILURES):
                await client.untilExists(client.exists)
                heard.append(time.perf_counter())

        waiters = [asyncio.create_task(notified(c)) for c in clients]
        start = time.perf_counter()
        with contextlib.suppress(OSError):  # what was not delivered is not heard of
            await asyncio.to_thread(deliverAll, server, everyone)
        await asyncio.wait(waiters, timeout=NOTIFY_TIMEOUT)
        for waiter in waiters:
            waiter.cancel()
        result.notified = len(heard)
        result.notifySeconds = max(heard, default=start) - start
        result.cpuSeconds = server.cpuSeconds() - cpu
    finally:
        for client in clients:
            client.close()
    return result


@dataclass
class IdleConnections:
    """C{idle-memory} (KB per connection) or C{idle-notify} (seconds to notify all)."""

    name: str
    connections: int
    userCount: int
    unit: str
    higherIsBetter: bool = False
    protocols: frozenset[str] = frozenset({"imap"})

    def seed(self, server: Running) -> None:
        for user in users(self.userCount):
            fillMaildir(server.maildirs[user], MESSAGES)

    def measure(self, server: Running) -> Measurement:
        server.restart()
        everyone = users(self.userCount)
        r = asyncio.run(idleRound(server, everyone, self.connections))
        say(
            f"  {self.name}: {server.name}: {r.opened:,}/{r.wanted:,} connections open in "
            f"{r.openSeconds:.1f} s, {r.notified:,} notified in {r.notifySeconds:.2f} s"
        )
        perConnection = 1024 * max(r.opened, 1)
        notify = self.name == "idle-notify"
        return Measurement(
            ops=r.notified if notify else r.opened,
            seconds=r.notifySeconds if notify else r.openSeconds,
            cpuSeconds=r.cpuSeconds,
            lost=r.wanted - (r.notified if notify else r.opened),
            extra={
                "connections": r.opened,
                "kb_per_connection": r.rssDelta / perConnection,
                "pss_kb_per_connection": r.pssDelta / perConnection,
                "notify_s": r.notifySeconds,
                "open_s": r.openSeconds,
            },
        )

    def value(self, m: Measurement) -> float:
        key = "notify_s" if self.name == "idle-notify" else "kb_per_connection"
        return m.extra[key]


def scenarios(size: str) -> list[Scenario]:
    connections, userCount = {"full": (10_000, 100), "quick": (1_000, 100), "smoke": (20, 5)}[size]
    return [
        IdleConnections("idle-memory", connections, userCount, "KB/connection"),
        IdleConnections("idle-notify", connections, userCount, "s"),
    ]
