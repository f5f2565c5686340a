"""
Files as Dovecot writes them: LF line ends, C{,S=<file size>,W=<CRLF size>}
in the name, its uidlist and keyword letters.  tmail reports the CRLF size
and serves CRLF bytes, so a client sees the same message through either
server.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from tmail.imap.message import IMAPMessage, crlfLines
from tmail.store.flags import filenameWith, sizeFromBase
from tmail.store.maildir import BlockingMaildirStore

CRLF = b"Subject: hi\r\nTo: a@example.test\r\n\r\nline one\r\n\r\nline three\r\n"
LF = CRLF.replace(b"\r\n", b"\n")


@pytest.mark.parametrize(
    ("base", "size"),
    [
        ("1795902834.M6701P2062.vm,S=18,W=21", 21),
        ("1795902834.M6701P2062.vm,W=21,S=18", 21),
        ("1764370000.M1P1Q1.host,S=31", 31),
        ("1764370000.M1P1Q1.host", None),
        ("1764370000.M1P1Q1.host,S=x,W=", None),
        ("1764370000.M1P1Q1.host,S=5,W=", 5),
    ],
)
def test_size_from_name_prefers_the_crlf_size(base: str, size: int | None) -> None:
    assert sizeFromBase(base) == size


def test_flag_letters_are_in_ascii_order_as_dovecot_writes_them() -> None:
    assert filenameWith("1.M1P1.host", "baSFT") == "1.M1P1.host:2,FSTab"


def test_bare_line_feeds_become_crlf_and_crlf_stays() -> None:
    assert crlfLines(LF) == CRLF
    assert crlfLines(CRLF) == CRLF
    assert crlfLines(b"a\r\nb\nc\r\rd\n") == b"a\r\nb\r\nc\r\rd\r\n"


def dovecotMaildir(root: Path) -> str:
    """A Maildir holding one LF message as Dovecot stores it, with \\Seen and keyword a."""
    for sub in ("cur", "new", "tmp"):
        (root / sub).mkdir(parents=True)
    base = f"1795902834.M6701P2062.vm,S={len(LF)},W={len(CRLF)}"
    (root / "cur" / f"{base}:2,Sa").write_bytes(LF)
    (root / "dovecot-uidlist").write_text(f"3 V1795902834 N1 Gabc\n7 :{base}\n")
    (root / "dovecot-keywords").write_text("0 $Junk\n")
    return base


def test_message_dovecot_stored_with_lf_is_served_with_crlf_and_its_crlf_size(
    tmp_path: Path,
) -> None:
    dovecotMaildir(tmp_path)
    folder = BlockingMaildirStore(tmp_path).getFolder("INBOX")

    (info,) = folder.messages()
    message = IMAPMessage(folder, info)

    assert (info.uid, info.flags, info.size) == (7, {"\\Seen", "$Junk"}, len(CRLF))
    assert folder.uidValidity() == 1795902834
    with message.open() as f:
        assert f.read() == CRLF
    assert message.getSize() == len(CRLF)
    assert message.header() == b"Subject: hi\r\nTo: a@example.test\r\n\r\n"
    assert message.getBodyFile().read() == b"line one\r\n\r\nline three\r\n"


def test_message_tmail_stored_is_served_from_its_file_unchanged(tmp_path: Path) -> None:
    folder = BlockingMaildirStore(tmp_path).getFolder("INBOX")
    pending = folder.beginMessage()
    pending.write(CRLF + b"bare\nline\n")
    uid = pending.commit()

    (info,) = folder.messages()
    with IMAPMessage(folder, info).open() as f:
        served = f.read()
        isFile = isinstance(f, io.BufferedReader)

    assert info.uid == uid
    assert info.size == len(served)
    assert served == CRLF + b"bare\nline\n"
    assert isFile
