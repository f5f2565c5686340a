"""
End to end: the real C{twistd -n tmail} killed with SIGKILL while SMTP
clients deliver and an IMAP client APPENDs.  After a restart every message
that got C{250} after its DATA, and every APPEND that got C{OK}, is there
exactly once (an APPEND with the UID its C{APPENDUID} named), and a uidlist
lock the killed server held does not hold the restarted one up.
"""

from __future__ import annotations

import contextlib
import imaplib
import os
import random
import re
import signal
import smtplib
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from support.process import TmailServer

pytestmark = pytest.mark.e2e

ALICE = "alice@example.test"
PASSWORD = "correct horse battery"
SENDERS = 4
ROUNDS = 5


@pytest.fixture
def server(tmp_path: Path) -> Iterator[TmailServer]:
    # One process: the test pauses the server process while it holds the lock.
    instance = TmailServer(tmp_path / "tmail", extra="[server]\nworkers = 1\n")
    instance.write()
    instance.addUser(ALICE, PASSWORD)
    instance.start()
    yield instance
    instance.stop()


def message(tag: str) -> bytes:
    filler = f"{tag} body line\r\n".encode() * random.Random(tag).randrange(5, 200)
    return (
        f"From: sender@example.org\r\nTo: {ALICE}\r\nSubject: {tag}\r\n"
        f"Message-ID: <{tag}@example.test>\r\n\r\n"
    ).encode() + filler


@dataclass
class Told:
    """What the server confirmed before it was killed."""

    accepted: list[str] = field(default_factory=list)
    appended: dict[str, tuple[int, int]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def sendUntilRefused(server: TmailServer, prefix: str, told: Told) -> None:
    """Deliver over SMTP, one connection, until the server is gone."""
    try:
        with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as smtp:
            for n in range(100_000):
                tag = f"{prefix}-{n}"
                smtp.sendmail("sender@example.org", [ALICE], message(tag))
                with told.lock:
                    told.accepted.append(tag)
    except (OSError, smtplib.SMTPException):
        return


def appendUntilRefused(server: TmailServer, prefix: str, told: Told) -> None:
    """APPEND over IMAP until the server is gone, noting each APPENDUID."""
    try:
        imap = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=10)
        imap.login(ALICE, PASSWORD)
        for n in range(100_000):
            tag = f"{prefix}-{n}"
            typ, data = imap.append("INBOX", r"(\Seen)", None, message(tag))
            if typ != "OK":
                return
            found = re.search(rb"APPENDUID (\d+) (\d+)", data[0] or b"")
            assert found, data
            with told.lock:
                told.appended[tag] = (int(found[1]), int(found[2]))
    except (OSError, imaplib.IMAP4.abort, imaplib.IMAP4.error):
        return


def waitUntilStopped(pid: int) -> None:
    """
    Wait until every thread of C{pid} is stopped: a SIGSTOP reaches a
    thread running on another core a moment after kill() returns, and
    until then it may still take a lock away.
    """
    deadline = time.monotonic() + 5
    tasks = Path(f"/proc/{pid}/task")
    while True:
        states = []
        for task in tasks.iterdir():
            with contextlib.suppress(FileNotFoundError):
                states.append((task / "stat").read_text().rsplit(")", 1)[1].split()[0])
        if all(state in ("T", "t") for state in states):
            return
        assert time.monotonic() < deadline, f"the server did not stop: {states}"
        time.sleep(0.001)


def stopHoldingTheUidlistLock(process: subprocess.Popen[bytes], folder: Path) -> None:
    """Stop the server at a moment it holds a uidlist lock (it stays stopped)."""
    deadline = time.monotonic() + 10
    while True:
        process.send_signal(signal.SIGSTOP)
        waitUntilStopped(process.pid)
        if list(folder.glob("data/**/dovecot-uidlist.lock")):
            return
        assert time.monotonic() < deadline, "never caught the server holding the lock"
        process.send_signal(signal.SIGCONT)
        time.sleep(0.002)


def send(server: TmailServer, tag: str) -> None:
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=30) as smtp:
        smtp.sendmail("sender@example.org", [ALICE], message(tag))


def inboxByTag(server: TmailServer) -> tuple[int, dict[str, list[int]]]:
    """UIDVALIDITY and tag -> UIDs of every message in INBOX."""
    with imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=30) as imap:
        imap.login(ALICE, PASSWORD)
        typ, data = imap.select("INBOX")
        assert typ == "OK", data
        validity = int(imap.untagged_responses["UIDVALIDITY"][0])
        typ, data = imap.uid("FETCH", "1:*", "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
        assert typ == "OK", data
        found: dict[str, list[int]] = {}
        for item in data:
            if not isinstance(item, tuple):
                continue
            uid = int(re.search(rb"UID (\d+)", item[0])[1])  # type: ignore[index]
            tag = re.search(rb"<([^@>]+)@", item[1])[1].decode()  # type: ignore[index]
            found.setdefault(tag, []).append(uid)
        return validity, found


def test_kill_9_of_the_server_loses_no_accepted_or_appended_message(server: TmailServer) -> None:
    rng = random.Random(7)
    told = Told()
    for round in range(ROUNDS):
        threads = [
            threading.Thread(target=sendUntilRefused, args=(server, f"r{round}s{i}", told))
            for i in range(SENDERS)
        ]
        threads.append(
            threading.Thread(target=appendUntilRefused, args=(server, f"r{round}a", told))
        )
        for thread in threads:
            thread.start()
        before = len(told.accepted), len(told.appended)
        deadline = time.monotonic() + 10
        while len(told.accepted) < before[0] + 40 or len(told.appended) < before[1] + 5:
            assert time.monotonic() < deadline, "the server accepted hardly anything"
            time.sleep(0.01)
        time.sleep(rng.uniform(0.05, 0.5))
        assert server.process is not None
        if round == ROUNDS - 1:
            stopHoldingTheUidlistLock(server.process, server.folder)
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait()
        server.process = None
        for thread in threads:
            thread.join(timeout=15)
            assert not thread.is_alive()
        server.start()
    assert list(server.folder.glob("data/**/dovecot-uidlist.lock")), "no lock was left behind"
    started = time.monotonic()
    send(server, "after the last restart")
    assert time.monotonic() - started < 10, "the killed server's lock held delivery up"
    told.accepted.append("after the last restart")

    validity, found = inboxByTag(server)
    with told.lock:
        accepted, appended = list(told.accepted), dict(told.appended)
    assert len(accepted) > ROUNDS * 10
    assert len(appended) > ROUNDS
    missing = [tag for tag in accepted if tag not in found]
    assert not missing, f"{len(missing)} messages that got 250 are gone: {missing[:5]}"
    twice = {tag: uids for tag, uids in found.items() if len(uids) > 1}
    assert not twice, f"stored more than once: {twice}"
    for tag, (appendValidity, uid) in appended.items():
        assert found.get(tag) == [uid], f"APPEND {tag} said UID {uid}, INBOX has {found.get(tag)}"
        assert appendValidity == validity
