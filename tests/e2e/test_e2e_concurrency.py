"""
End to end under load: the real C{twistd -n tmail} while, at the same time,
smtplib clients deliver, two imaplib sessions work on INBOX (one STOREs and
EXPUNGEs, one only watches), poplib sessions RETR and DELE, the admin CLI
adds an alias that mail is then sent to, and an external writer that is not
tmail drops files into the Maildir and changes flag letters by renaming.
Afterwards INBOX holds exactly the messages that should be there, each once.
"""

from __future__ import annotations

import contextlib
import imaplib
import os
import poplib
import random
import re
import smtplib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from support.process import TmailServer

pytestmark = pytest.mark.e2e

ALICE = "alice@example.test"
PASSWORD = "correct horse battery"
DOMAIN = "example.test"
SENDERS = 2
PER_SENDER = 12
DROPS = 8
MAX_EXPUNGES = 8
MAX_POP_DELETES = 5
RUN_LIMIT = 60.0

_UID = re.compile(rb"UID (\d+)")
_XID = re.compile(rb"X-Id: (\S+)", re.IGNORECASE)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[TmailServer]:
    instance = TmailServer(tmp_path / "tmail")
    instance.write()
    instance.addUser(ALICE, PASSWORD)
    instance.addUser(f"bob@{DOMAIN}", "bob's password")
    instance.start()
    yield instance
    instance.stop()


def message(ident: str, to: str = ALICE) -> bytes:
    return (
        f"From: {ALICE}\r\nTo: {to}\r\nSubject: {ident}\r\nMessage-ID: <{ident}@example.test>\r\n"
        f"X-Id: {ident}\r\n\r\nbody of {ident}\r\n"
    ).encode()


@dataclass
class Ledger:
    """What every actor did, shared by the threads (each appends only its own facts)."""

    delivered: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    expungedByImap: list[str] = field(default_factory=list)
    deletedByPop: list[str] = field(default_factory=list)
    watched: dict[int, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)

    def count(self, actor: str) -> None:
        self.counts[actor] = self.counts.get(actor, 0) + 1


def fetchIds(imap: imaplib.IMAP4) -> list[tuple[int, str]]:
    """(UID, X-Id) of every message in the selected folder, in response order."""
    for _attempt in range(5):
        imap.untagged_responses.pop("FETCH", None)
        typ, data = imap.uid("FETCH", "1:*", "(UID BODY.PEEK[HEADER.FIELDS (X-Id)])")
        if not expungeIssued(typ, data):
            break
        imap.noop()
    assert typ == "OK", data
    found = []
    for item in data:
        if isinstance(item, tuple):
            uid, xid = _UID.search(item[0]), _XID.search(item[1])
            assert uid is not None and xid is not None, item
            found.append((int(uid.group(1)), xid.group(1).decode()))
    return found


def expungeIssued(typ: str, data: list[Any]) -> bool:
    """A NO because another session expunged a message this one still shows (RFC 5530)."""
    return typ == "NO" and any(b"EXPUNGEISSUED" in d for d in data if isinstance(d, bytes))


def login(server: TmailServer) -> imaplib.IMAP4:
    imap = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=20)
    imap.login(ALICE, PASSWORD)
    typ, data = imap.select("INBOX")
    assert typ == "OK", data
    return imap


def sender(server: TmailServer, ledger: Ledger, number: int) -> None:
    for batch in range(PER_SENDER // 3):
        with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=20) as smtp:
            for i in range(3):
                ident = f"s{number}-{batch * 3 + i}"
                smtp.sendmail(ALICE, [ALICE], message(ident))
                ledger.delivered.append(ident)
                ledger.count(f"sender{number}")


def flagger(server: TmailServer, ledger: Ledger) -> None:
    """STORE flags on random messages, \\Deleted on some, and EXPUNGE them."""
    rng = random.Random(1)
    imap = login(server)
    try:
        while not ledger.stop.is_set():
            listed = fetchIds(imap)
            chosen = rng.sample(listed, min(len(listed), 3))
            doomed = []
            for uid, ident in chosen:
                dooming = (
                    len(ledger.expungedByImap) + len(doomed) < MAX_EXPUNGES and rng.random() < 0.3
                )
                if dooming:
                    typ, data = imap.uid("STORE", str(uid), "+FLAGS", r"(\Deleted)")
                else:
                    flags = rng.choice([r"(\Seen)", r"(\Flagged \Answered)", "($Junk)", "()"])
                    typ, data = imap.uid("STORE", str(uid), "FLAGS", flags)
                if expungeIssued(typ, data):
                    continue
                assert typ == "OK", data
                if dooming:
                    doomed.append(ident)
                ledger.count("flagger")
            if doomed:
                typ, data = imap.expunge()
                assert typ == "OK", data
                ledger.expungedByImap.extend(doomed)
            time.sleep(0.05)
    finally:
        imap.logout()


def watcher(server: TmailServer, ledger: Ledger) -> None:
    """
    Only FETCH and NOOP: every view is in UID order, a new message never has
    a UID below one already seen, and a UID never changes its message.
    """
    imap = login(server)
    seenIds: dict[str, int] = {}
    try:
        while not ledger.stop.is_set():
            assert imap.noop()[0] == "OK"
            listed = fetchIds(imap)
            uids = [uid for uid, _ in listed]
            assert uids == sorted(set(uids)), f"FETCH 1:* not in strict UID order: {uids}"
            highest = max(ledger.watched, default=0)
            late = [uid for uid in uids if uid not in ledger.watched and uid < highest]
            assert not late, f"new UIDs {late} below {highest}, which this session already saw"
            for uid, ident in listed:
                assert ledger.watched.setdefault(uid, ident) == ident, f"UID {uid} changed"
                assert seenIds.setdefault(ident, uid) == uid, f"{ident} changed its UID"
            ledger.count("watcher")
            time.sleep(0.03)
    finally:
        imap.logout()


def popper(server: TmailServer, ledger: Ledger) -> None:
    """Sessions that RETR every message and DELE about a third of them."""
    rng = random.Random(2)
    while not ledger.stop.is_set():
        pop = poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=20)
        pop.user(ALICE)
        pop.pass_(PASSWORD)
        deleted = []
        try:
            count, _ = pop.stat()
            for number in rng.sample(range(1, count + 1), min(count, 4)):
                try:
                    lines = pop.retr(number)[1]
                except poplib.error_proto:
                    continue
                xid = _XID.search(b"\r\n".join(lines))
                assert xid is not None, lines
                if (
                    len(ledger.deletedByPop) + len(deleted) < MAX_POP_DELETES
                    and rng.random() < 0.35
                ):
                    try:
                        pop.dele(number)
                    except poplib.error_proto:
                        continue
                    deleted.append(xid.group(1).decode())
                ledger.count("popper")
        finally:
            pop.quit()
        ledger.deletedByPop.extend(deleted)
        time.sleep(0.2)


def admin(server: TmailServer, ledger: Ledger) -> None:
    """The CLI adds an alias for alice while mail flows; mail to it must then arrive."""
    result = server.cli("alias", "add", f"team@{DOMAIN}", ALICE)
    assert result.returncode == 0, result.stderr
    for round in range(3):
        listed = server.cli("user", "list")
        assert listed.returncode == 0, listed.stderr
        assert ALICE in listed.stdout.split()
        changed = server.cli(
            "user", "passwd", f"bob@{DOMAIN}", "--password-stdin", stdin=f"pw{round}\n"
        )
        assert changed.returncode == 0, changed.stderr
        ledger.count("admin")
    deadline = time.monotonic() + 10
    while True:
        ident = f"team-{len(ledger.delivered)}"
        try:
            with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=20) as smtp:
                smtp.sendmail(ALICE, [f"team@{DOMAIN}"], message(ident, f"team@{DOMAIN}"))
        except smtplib.SMTPRecipientsRefused:
            assert time.monotonic() < deadline, "the alias added by the CLI never took effect"
            time.sleep(0.2)
            continue
        ledger.delivered.append(ident)
        return


def externalWriter(maildir: Path, ledger: Ledger) -> None:
    """
    Not tmail: deliver files the Maildir way (tmp/ then new/) and toggle the
    F, R and S letters of files in cur/, keeping every other letter.
    """
    rng = random.Random(3)
    while not ledger.stop.is_set() or len(ledger.dropped) < DROPS:
        if len(ledger.dropped) < DROPS and rng.random() < 0.25:
            ident = f"external-{len(ledger.dropped)}"
            base = f"{int(time.time())}.E{len(ledger.dropped)}P{os.getpid()}.mda"
            (maildir / "tmp" / base).write_bytes(message(ident))
            os.rename(maildir / "tmp" / base, maildir / "new" / base)
            ledger.dropped.append(ident)
        names = [n for n in os.listdir(maildir / "cur") if ":2," in n]
        for name in rng.sample(names, min(len(names), 2)):
            base, _, letters = name.partition(":2,")
            kept = "".join(c for c in letters if c not in "FRS")
            toggled = "".join(rng.sample("FRS", rng.randint(0, 3)))
            with contextlib.suppress(FileNotFoundError):
                os.rename(
                    maildir / "cur" / name,
                    maildir / "cur" / f"{base}:2,{''.join(sorted(kept + toggled))}",
                )
            ledger.count("external")
        time.sleep(0.02)


def run(name: str, action: Callable[[], None], ledger: Ledger) -> threading.Thread:
    def guarded() -> None:
        try:
            action()
        except BaseException as e:
            ledger.errors.append(f"{name}: {e!r}")
            ledger.stop.set()

    thread = threading.Thread(target=guarded, name=name, daemon=True)
    thread.start()
    return thread


def test_concurrent_clients_cli_and_external_writer_keep_every_message_once(
    server: TmailServer,
) -> None:
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=20) as smtp:
        for i in range(4):
            smtp.sendmail(ALICE, [ALICE], message(f"seed-{i}"))
    ledger = Ledger(delivered=[f"seed-{i}" for i in range(4)])
    maildir = server.folder / "data" / "mail" / DOMAIN / "alice"
    assert (maildir / "new").is_dir() or (maildir / "cur").is_dir()

    started = time.monotonic()
    senders = [
        run(f"sender{n}", lambda n=n: sender(server, ledger, n), ledger) for n in range(SENDERS)
    ]
    adminThread = run("admin", lambda: admin(server, ledger), ledger)
    others = [
        run("flagger", lambda: flagger(server, ledger), ledger),
        run("watcher", lambda: watcher(server, ledger), ledger),
        run("popper", lambda: popper(server, ledger), ledger),
        run("external", lambda: externalWriter(maildir, ledger), ledger),
    ]
    for thread in [*senders, adminThread]:
        thread.join(max(0.1, RUN_LIMIT - (time.monotonic() - started)))
    time.sleep(0.5)
    ledger.stop.set()
    for thread in others:
        thread.join(max(0.1, RUN_LIMIT - (time.monotonic() - started)))
    assert not any(t.is_alive() for t in [*senders, adminThread, *others]), "actors did not finish"
    assert ledger.errors == []
    assert set(ledger.counts) >= {
        "sender0",
        "sender1",
        "admin",
        "flagger",
        "watcher",
        "popper",
        "external",
    }

    imap = login(server)
    try:
        final = fetchIds(imap)
    finally:
        imap.logout()
    uids = [uid for uid, _ in final]
    idents = [ident for _, ident in final]
    assert uids == sorted(set(uids))
    assert len(idents) == len(set(idents)), "a message is listed twice"
    removed = set(ledger.expungedByImap) | set(ledger.deletedByPop)
    expected = (set(ledger.delivered) | set(ledger.dropped)) - removed
    assert set(idents) == expected
    for uid, ident in final:
        assert ledger.watched.get(uid, ident) == ident, f"UID {uid} now shows another message"
    assert ledger.expungedByImap and ledger.deletedByPop, "nothing was deleted"
    assert len(final) >= len(ledger.delivered) + DROPS - MAX_EXPUNGES - MAX_POP_DELETES
    assert any(i.startswith("external-") for i in idents) or set(ledger.dropped) <= removed
