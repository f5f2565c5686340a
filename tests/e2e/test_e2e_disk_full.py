"""
End to end on a really full disk: the real C{twistd -n tmail} keeps its mail
on a 1 MiB tmpfs.  Once the tmpfs is full SMTP answers C{452 4.3.1} (at
C{MAIL} when the declared size does not fit or nothing is left, else at the
end of DATA) and IMAP APPEND C{NO}, no half-written file is left anywhere in
the Maildir, the uidlist is unchanged, and once space is freed delivery
works again with the UIDs going on where they stopped.
"""

from __future__ import annotations

import contextlib
import errno
import imaplib
import os
import re
import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.disk import smallDisk
from support.process import TmailServer
from tmail.store import uidlist

pytestmark = pytest.mark.e2e

ALICE = "alice@example.test"
PASSWORD = "correct horse battery"


@pytest.fixture
def mailDisk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs mounted for the test, unmounted afterwards."""
    with smallDisk(tmp_path / "tmail" / "data" / "mail", "1m") as mountPoint:
        yield mountPoint


@pytest.fixture
def server(mailDisk: Path) -> Iterator[TmailServer]:
    instance = TmailServer(mailDisk.parent.parent)
    instance.write()
    instance.addUser(ALICE, PASSWORD)
    instance.start()
    yield instance
    instance.stop()


def message(tag: str, lines: int = 3) -> bytes:
    return (
        f"From: sender@example.org\r\nTo: {ALICE}\r\nSubject: {tag}\r\n"
        f"Message-ID: <{tag}@example.test>\r\n\r\n"
    ).encode() + f"{tag} body line\r\n".encode() * lines


def send(server: TmailServer, raw: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as smtp:
        smtp.sendmail("sender@example.org", [ALICE], raw)


def sendUndeclared(server: TmailServer, raw: bytes) -> tuple[int, bytes]:
    """MAIL without SIZE (so the disk is only found full at the end); the reply to DATA."""
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as smtp:
        smtp.ehlo("client.example.org")
        assert smtp.mail("sender@example.org")[0] == 250
        assert smtp.rcpt(ALICE)[0] == 250
        return smtp.data(raw)


@contextlib.contextmanager
def imap(server: TmailServer) -> Iterator[imaplib.IMAP4]:
    with imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=10) as client:
        client.login(ALICE, PASSWORD)
        yield client


def inbox(server: TmailServer) -> dict[int, str]:
    """UID -> Subject of every message in INBOX."""
    with imap(server) as client:
        client.select("INBOX")
        typ, data = client.uid("FETCH", "1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert typ == "OK", data
        result = {}
        for item in data:
            if isinstance(item, tuple):
                uid = int(re.search(rb"UID (\d+)", item[0])[1])  # type: ignore[index]
                result[uid] = item[1].decode().split(":", 1)[1].strip()
        return result


def fill(disk: Path, leave: int = 0) -> Path:
    """Fill the disk with one file, leaving about C{leave} bytes free."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        while True:
            try:
                os.write(fd, b"\0" * 4096)
            except OSError as e:
                assert e.errno == errno.ENOSPC
                break
    finally:
        os.close(fd)
    if leave:
        os.truncate(filler, max(0, filler.stat().st_size - leave))
    return filler


def maildirFiles(maildir: Path) -> dict[str, bytes]:
    """
    Every file of the Maildir (tmp/, new/, cur/, uidlist) with its contents,
    but the message cache, which its writer thread appends to in batches.
    """
    files = sorted(p for p in maildir.rglob("*") if p.is_file() and p.name != "tmail-fields")
    return {str(p.relative_to(maildir)): p.read_bytes() for p in files}


@pytest.mark.parametrize("leave", [0, 16 * 1024], ids=["full", "nearly-full"])
def test_full_disk_refuses_mail_cleanly_and_recovers_when_space_is_freed(
    server: TmailServer, mailDisk: Path, leave: int
) -> None:
    for n in range(3):
        send(server, message(f"before {n}"))
    with imap(server) as client:
        typ, data = client.append("INBOX", None, None, message("appended before"))
        assert typ == "OK", data
    stored = inbox(server)
    assert sorted(stored.values()) == ["appended before", "before 0", "before 1", "before 2"]
    [maildir] = {
        p.parent for p in mailDisk.rglob(uidlist.FILENAME) if not p.parent.name.startswith(".")
    }
    filesBefore = maildirFiles(maildir)

    filler = fill(mailDisk, leave)
    big = message("too big", lines=4000)
    with pytest.raises(smtplib.SMTPSenderRefused) as refusedAtMail:
        send(server, big)
    assert refusedAtMail.value.smtp_code == 452
    assert refusedAtMail.value.smtp_error == b"4.3.1 Insufficient system storage"
    if leave:
        assert sendUndeclared(server, big) == (452, b"4.3.1 Insufficient system storage")
    with imap(server) as client:
        typ, data = client.append("INBOX", None, None, big)
        assert typ == "NO", data
        assert b"[OVERQUOTA]" in data[0]
    if not leave:
        with pytest.raises(smtplib.SMTPSenderRefused) as refusedAtMail:
            send(server, message("small"))
        assert refusedAtMail.value.smtp_code == 452
    assert maildirFiles(maildir) == filesBefore, "a refused message left something behind"
    data = uidlist.parse((maildir / uidlist.FILENAME).read_text())
    assert sorted(data.uids.values()) == sorted(stored)
    assert inbox(server) == stored

    filler.unlink()
    send(server, message("after"))
    with imap(server) as client:
        typ, data = client.append("INBOX", None, None, message("appended after"))
        assert typ == "OK", data
        appendUid = int(re.search(rb"APPENDUID \d+ (\d+)", data[0])[1])  # type: ignore[index]
    now = inbox(server)
    assert {uid: now[uid] for uid in stored} == stored
    added = {uid: subject for uid, subject in now.items() if uid not in stored}
    assert sorted(added.values()) == ["after", "appended after"]
    assert min(added) > max(stored)
    assert added[appendUid] == "appended after"
