"""
End to end on a full disk: the real C{twistd -n tmail} keeps its mail on a
1 MiB tmpfs, which the test fills after another delivery agent dropped
messages into C{new/}.  IMAP (SELECT, FETCH, SEARCH, STATUS, LIST) and POP3
(login, STAT, LIST, UIDL, RETR, QUIT) keep working, with the UIDs the disk
had no room for kept in memory; once space is freed they are written, and
a restarted server shows the same UIDs.
"""

from __future__ import annotations

import contextlib
import imaplib
import poplib
import re
import smtplib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.disk import fill, smallDisk
from support.process import TmailServer
from tmail.store import uidlist

pytestmark = pytest.mark.e2e

ALICE = "alice@example.test"
PASSWORD = "correct horse battery"
DROPPED = 120


@pytest.fixture
def mailDisk(tmp_path: Path) -> Iterator[Path]:
    with smallDisk(tmp_path / "tmail" / "data" / "mail", "1m") as mountPoint:
        yield mountPoint


@pytest.fixture
def server(mailDisk: Path) -> Iterator[TmailServer]:
    # One process: with several, a worker that did not deliver looks at INBOX as soon as
    # another announces a delivery, and records UIDs before the disk is filled.
    instance = TmailServer(mailDisk.parent.parent, extra="[server]\nworkers = 1\n")
    instance.write()
    instance.addUser(ALICE, PASSWORD)
    instance.start()
    yield instance
    instance.stop()


def message(subject: str) -> bytes:
    return f"From: sender@example.org\r\nTo: {ALICE}\r\nSubject: {subject}\r\n\r\nbody\r\n".encode()


@contextlib.contextmanager
def imap(server: TmailServer) -> Iterator[imaplib.IMAP4]:
    with imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=10) as client:
        client.login(ALICE, PASSWORD)
        yield client


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


def onDisk(maildir: Path) -> list[int]:
    return sorted(uidlist.parse((maildir / uidlist.FILENAME).read_text()).uids.values())


def test_reading_works_on_a_full_disk_and_the_uids_are_written_once_space_returns(
    server: TmailServer, mailDisk: Path
) -> None:
    for n in range(3):
        with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as smtp:
            smtp.sendmail("sender@example.org", [ALICE], message(f"delivered {n}"))
    [maildir] = {p.parent for p in mailDisk.rglob(uidlist.FILENAME)}
    for n in range(DROPPED):
        name = f"{1_700_000_000 + n}.M{n}P4242.another-delivery-agent.example.test"
        (maildir / "new" / name).write_bytes(message(f"dropped {n}"))
    filler = fill(mailDisk)
    total = 3 + DROPPED

    with imap(server) as client:
        typ, data = client.select("INBOX")
        assert (typ, data) == ("OK", [str(total).encode()])
        seen = subjects(client)
        assert sorted(seen) == list(range(1, total + 1))
        assert sorted(seen.values()) == sorted(
            [f"delivered {n}" for n in range(3)] + [f"dropped {n}" for n in range(DROPPED)]
        )
        typ, data = client.fetch("1", "(BODY[])")
        assert typ == "OK", data
        assert data[0][1].endswith(message("delivered 0"))  # type: ignore[index]
        typ, data = client.uid("SEARCH", "SUBJECT", '"dropped 77"')
        assert typ == "OK", data
        assert [seen[int(uid)] for uid in data[0].split()] == ["dropped 77"]
        typ, data = client.status("INBOX", "(MESSAGES UIDNEXT)")
        assert data == [b'"INBOX" (MESSAGES %d UIDNEXT %d)' % (total, total + 1)], data
        typ, data = client.list()
        assert typ == "OK", data

    pop = poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=10)
    pop.user(ALICE)
    pop.pass_(PASSWORD)
    assert pop.stat()[0] == total
    assert len(pop.list()[1]) == len(pop.uidl()[1]) == total
    assert pop.retr(1)[1][-1] == b"body"
    assert pop.retr(total)[1][-1] == b"body"
    assert pop.quit().startswith(b"+OK")

    assert onDisk(maildir) == [1, 2, 3], "the uidlist had room: the test proves nothing"

    filler.unlink()
    deadline = time.monotonic() + 15
    while onDisk(maildir) != sorted(seen):
        assert time.monotonic() < deadline, f"uidlist still {onDisk(maildir)}"
        with imap(server) as client:
            client.status("INBOX", "(MESSAGES)")
        time.sleep(0.2)
    with imap(server) as client:
        client.select("INBOX")
        assert subjects(client) == seen

    server.stop()
    server.start()
    with imap(server) as client:
        client.select("INBOX")
        assert subjects(client) == seen
