"""
End to end on a full disk: the real C{twistd -n tmail} keeps its mail on a
1 MiB tmpfs the test fills, then uses until the mod-sequence log has no
room left either.  Deleting is what frees space, so it works: STORE
C{\\Deleted} and EXPUNGE over IMAP, DELE and QUIT over POP3.  Other
sessions see the expunges at once, new mail is taken again, QRESYNC
clients learn of the expunges (C{VANISHED}), and a restart before space
returns loses none of it and invents nothing.
"""

from __future__ import annotations

import contextlib
import imaplib
import os
import poplib
import re
import smtplib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.disk import fill, smallDisk
from support.process import TmailServer
from tmail.store import modseq, uidlist

pytestmark = pytest.mark.e2e

ALICE = "alice@example.test"
PASSWORD = "correct horse battery"


@pytest.fixture
def mailDisk(tmp_path: Path) -> Iterator[Path]:
    with smallDisk(tmp_path / "tmail" / "data" / "mail", "1m") as mountPoint:
        yield mountPoint


@pytest.fixture
def server(mailDisk: Path) -> Iterator[TmailServer]:
    # One process: what a full disk keeps out of the change log lives in the memory of the
    # process that made the change, which another worker does not share.
    instance = TmailServer(mailDisk.parent.parent, extra="[server]\nworkers = 1\n")
    instance.write()
    instance.addUser(ALICE, PASSWORD)
    instance.start()
    yield instance
    instance.stop()


def message(subject: str) -> bytes:
    """A message of about 16 KiB: removing one frees blocks a test can see."""
    head = f"From: sender@example.org\r\nTo: {ALICE}\r\nSubject: {subject}\r\n\r\n"
    return head.encode() + (b"x" * 78 + b"\r\n") * 200


def send(server: TmailServer, subject: str) -> None:
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as smtp:
        smtp.sendmail("sender@example.org", [ALICE], message(subject))


@contextlib.contextmanager
def imap(server: TmailServer) -> Iterator[imaplib.IMAP4]:
    with imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=10) as client:
        client.login(ALICE, PASSWORD)
        yield client


def selectInbox(client: imaplib.IMAP4) -> tuple[int, int]:
    """SELECT INBOX; its UIDVALIDITY and HIGHESTMODSEQ."""
    typ, data = client.select("INBOX")
    assert typ == "OK", data
    validity = int(client.untagged_responses["UIDVALIDITY"][-1])
    highest = int(client.untagged_responses["HIGHESTMODSEQ"][-1])
    return validity, highest


def subjects(client: imaplib.IMAP4) -> dict[int, str]:
    """UID -> Subject of every message in the selected folder."""
    typ, data = client.uid("FETCH", "1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert typ == "OK", data
    found = {}
    for item in data:
        if isinstance(item, tuple):
            uid = int(re.search(rb"UID (\d+)", item[0])[1])  # type: ignore[index]
            found[uid] = item[1].decode().split(":", 1)[1].strip()
    return found


def flags(client: imaplib.IMAP4) -> dict[int, bytes]:
    """UID -> the FLAGS of every message in the selected folder."""
    typ, data = client.uid("FETCH", "1:*", "(FLAGS)")
    assert typ == "OK", data
    return {
        int(re.search(rb"UID (\d+)", line)[1]): re.search(rb"FLAGS \(([^)]*)\)", line)[1]  # type: ignore[index]
        for line in data
        if isinstance(line, bytes)
    }


def uidsOf(text: bytes) -> list[int]:
    """The UIDs of a UID set such as C{2:4,7}."""
    found = []
    for part in text.decode().split(","):
        low, _, high = part.partition(":")
        found += range(int(low), int(high or low) + 1)
    return found


def qresync(server: TmailServer, validity: int, since: int) -> tuple[list[int], int]:
    """What a QRESYNC client resyncing INBOX from C{since} is told: VANISHED, HIGHESTMODSEQ."""
    with imap(server) as client:
        typ, data = client.enable("QRESYNC")
        assert typ == "OK", data
        typ, data = client._simple_command("SELECT", "INBOX", f"(QRESYNC ({validity} {since}))")
        assert typ == "OK", data
        vanished = []
        for line in client.untagged_responses.get("VANISHED", []):
            assert line.startswith(b"(EARLIER) "), line
            vanished += uidsOf(line.removeprefix(b"(EARLIER) "))
        return sorted(vanished), int(client.untagged_responses["HIGHESTMODSEQ"][-1])


def freeBytes(disk: Path) -> int:
    status = os.statvfs(disk)
    return status.f_bavail * status.f_frsize


def exhaustLog(client: imaplib.IMAP4, maildir: Path) -> None:
    """
    Toggle C{\\Flagged} on message 1 until the mod-sequence log no longer
    grows (its last block is full: a tmpfs still takes lines into a block
    a file has), then once more, so that the message ends as the log last
    recorded it.
    """
    log = maildir / modseq.FILENAME
    flagged = False
    for _ in range(1000):
        size = log.stat().st_size
        flagged = not flagged
        typ, data = client.store("1", "+FLAGS" if flagged else "-FLAGS", "(\\Flagged)")
        assert typ == "OK", data
        if log.stat().st_size == size:
            typ, data = client.store("1", "-FLAGS" if flagged else "+FLAGS", "(\\Flagged)")
            assert typ == "OK", data
            return
    raise AssertionError("the mod-sequence log kept growing on a full disk")


def logLines(maildir: Path) -> list[bytes]:
    """The lines of a folder's mod-sequence log after its header."""
    return (maildir / modseq.FILENAME).read_bytes().split(b"\n")[1:-1]


def inboxOf(mailDisk: Path) -> Path:
    """The user's Maildir: INBOX, the folder that is no C{maildirfolder}."""
    found = mailDisk.rglob(uidlist.FILENAME)
    [maildir] = {p.parent for p in found if not (p.parent / "maildirfolder").exists()}
    return maildir


def test_deleting_on_a_full_disk_frees_space_and_every_session_and_client_learns_of_it(
    server: TmailServer, mailDisk: Path
) -> None:
    for n in range(8):
        send(server, f"delivered {n}")
    maildir = inboxOf(mailDisk)
    with imap(server) as client:
        validity, start = selectInbox(client)
        assert client.create("Bin")[0] == "OK"
        assert client.copy("1", "Bin")[0] == "OK"
    filler = fill(mailDisk)
    with imap(server) as client, imap(server) as watcher:
        selectInbox(client)
        selectInbox(watcher)
        exhaustLog(client, maildir)
        before = freeBytes(mailDisk)

        typ, data = client.store("2:4", "+FLAGS", "(\\Deleted)")
        assert typ == "OK", data
        typ, data = client.expunge()
        assert (typ, data) == ("OK", [b"4", b"3", b"2"])

        assert freeBytes(mailDisk) >= before + 2 * 16_000
        assert len(os.listdir(maildir / "cur")) == 5
        typ, data = watcher.noop()
        assert typ == "OK", data
        assert watcher.untagged_responses.pop("EXPUNGE") == [b"4", b"3", b"2"]

        typ, data = client.uid("STORE", "6", "+FLAGS", "(\\Deleted)")
        assert typ == "OK", data
        typ, data = client.uid("EXPUNGE", "6")
        assert typ == "OK", data
        assert client.untagged_responses.pop("EXPUNGE") == [b"3"]
        # MOVE links the file into the other folder, then expunges it here.
        typ, data = client.uid("MOVE", "8", "Bin")
        assert typ == "OK", data
        assert client.untagged_responses.pop("EXPUNGE") == [b"4"]
        typ, data = client.uid("STORE", "7", "+FLAGS", "(\\Deleted)")
        assert typ == "OK", data
        typ, data = client.close()
        assert typ == "OK", data
        typ, data = watcher.noop()
        assert typ == "OK", data
        assert watcher.untagged_responses.pop("EXPUNGE") == [b"5", b"4", b"3"]
    assert len(os.listdir(maildir / "cur")) == 2

    send(server, "after")
    with imap(server) as client:
        selectInbox(client)
        assert subjects(client) == {1: "delivered 0", 5: "delivered 4", 9: "after"}
        typ, data = client.select("Bin")
        assert typ == "OK", data
        assert sorted(subjects(client).values()) == ["delivered 0", "delivered 7"]
    assert qresync(server, validity, start)[0] == [2, 3, 4, 6, 7, 8]
    filler.unlink()


def test_expunges_the_full_log_cannot_take_survive_a_restart_and_are_logged_once_space_returns(
    server: TmailServer, mailDisk: Path
) -> None:
    for n in range(6):
        send(server, f"delivered {n}")
    maildir = inboxOf(mailDisk)
    with imap(server) as client:
        validity, start = selectInbox(client)
        assert client.create("Kept")[0] == "OK"
        # Hard links: expunging the originals frees nothing.
        typ, data = client.copy("2:4", "Kept")
        assert typ == "OK", data
    filler = fill(mailDisk)
    with imap(server) as client, imap(server) as watcher:
        selectInbox(client)
        selectInbox(watcher)
        exhaustLog(client, maildir)
        logBefore = logLines(maildir)

        typ, data = client.store("2:4", "+FLAGS", "(\\Deleted)")
        assert typ == "OK", data
        typ, data = client.expunge()
        assert (typ, data) == ("OK", [b"4", b"3", b"2"])
        assert logLines(maildir) == logBefore, "the log had room: the test proves nothing"
        typ, data = watcher.noop()
        assert typ == "OK", data
        assert watcher.untagged_responses.get("EXPUNGE") == [b"4", b"3", b"2"]
        typ, data = client.status("INBOX", "(HIGHESTMODSEQ)")
        assert typ == "OK", data
        highest = int(re.search(rb"HIGHESTMODSEQ (\d+)", data[0])[1])  # type: ignore[index, arg-type]
        seen = subjects(client)
        flagsBefore = flags(client)
    assert sorted(seen) == [1, 5, 6]
    assert qresync(server, validity, start) == ([2, 3, 4], highest)

    server.stop()
    server.start()
    vanished, highestAfter = qresync(server, validity, start)
    assert vanished == [2, 3, 4]
    assert highestAfter >= highest
    with imap(server) as client:
        assert selectInbox(client)[0] == validity
        assert subjects(client) == seen
        assert flags(client) == flagsBefore

    filler.unlink()
    deadline = time.monotonic() + 15
    while not {b"-2", b"-3", b"-4"} <= {line.split(b" ")[1] for line in logLines(maildir)}:
        assert time.monotonic() < deadline, "the expunges were not logged once space returned"
        with imap(server) as client:
            client.status("INBOX", "(MESSAGES)")
        time.sleep(0.2)
    server.stop()
    server.start()
    vanished, highestLater = qresync(server, validity, start)
    assert vanished == [2, 3, 4]
    assert highestLater >= highestAfter
    send(server, "after")
    with imap(server) as client:
        selectInbox(client)
        assert sorted(subjects(client)) == [1, 5, 6, 7]
        assert flags(client) == {**flagsBefore, 7: b"\\Recent"}


def test_pop3_dele_and_quit_on_a_full_disk_remove_the_messages(
    server: TmailServer, mailDisk: Path
) -> None:
    for n in range(4):
        send(server, f"delivered {n}")
    maildir = inboxOf(mailDisk)
    filler = fill(mailDisk)
    with imap(server) as client:
        selectInbox(client)
        exhaustLog(client, maildir)
    before = freeBytes(mailDisk)

    pop = poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=10)
    pop.user(ALICE)
    pop.pass_(PASSWORD)
    assert pop.stat()[0] == 4
    assert pop.retr(1)[1][-1] == b"x" * 78
    pop.dele(2)
    pop.dele(3)
    assert pop.quit().startswith(b"+OK")

    assert freeBytes(mailDisk) >= before + 16_000
    assert len(os.listdir(maildir / "cur")) == 2
    with imap(server) as client:
        selectInbox(client)
        assert subjects(client) == {1: "delivered 0", 4: "delivered 3"}
    filler.unlink()
