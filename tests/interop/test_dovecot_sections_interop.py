"""
BODY[section] and BINARY.SIZE[section] of nested messages from tmail and
from Dovecot 2.3 on one Maildir, compared byte for byte: a multipart whose
boundary parameter is folded, with a prologue and an epilogue; a
message/rfc822 part holding a multipart/alternative; a message that is a
message/rfc822 of a message/rfc822; a multipart/digest whose parts default
to message/rfc822 and whose delimiter lines end in blanks; and every part
number, HEADER, HEADER.FIELDS[.NOT], TEXT and MIME of them.

Only sections that exist are asked for: for a part number beyond a leaf
tmail answers NIL (RFC 3501's nstring) where Dovecot answers an empty
string, and Dovecot takes part 1 of a leaf to be the leaf itself.
"""

from __future__ import annotations

import imaplib
import re
from collections.abc import Iterator

import pytest

from support.interop import Servers, runningServers

pytestmark = pytest.mark.e2e

PASSWORD = "sections both"

FOLDED = (
    b"From: folded@example.test\r\n"
    b"Subject: folded boundary\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="one\r\n two"\r\n'
    b"\r\n"
    b"before the parts\r\n"
    b"\r\n"
    b"--one two\r\n"
    b"Content-Type: text/x-local; charset=us-ascii\r\n"
    b"\r\n"
    b"first part\r\n"
    b"\r\n"
    b"--one two\r\n"
    b"Content-Type: message/rfc822\r\n"
    b"\r\n"
    b"From: nested@example.test\r\n"
    b"Subject: nested\r\n"
    b"X-Extra: kept\r\n"
    b'Content-Type: multipart/alternative; boundary="alt"\r\n'
    b"\r\n"
    b"alternative prologue\r\n"
    b"--alt\r\n"
    b"Content-Type: text/html\r\n"
    b"\r\n"
    b"<b>bold</b>\r\n"
    b"\r\n"
    b"--alt\r\n"
    b"Content-Type: text/plain\r\n"
    b"\r\n"
    b"plain words\r\n"
    b"\r\n"
    b"--alt--\r\n"
    b"alternative epilogue\r\n"
    b"\r\n"
    b"--one two--\r\n"
    b"after the parts\r\n"
)

TWICE = (
    b"From: outer@example.test\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: message/rfc822\r\n"
    b"\r\n"
    b"From: middle@example.test\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: message/rfc822\r\n"
    b"\r\n"
    b"From: inner@example.test\r\n"
    b"Subject: innermost\r\n"
    b"\r\n"
    b"innermost text\r\n"
)

DIGEST = (
    b"From: digest@example.test\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: message/rfc822\r\n"
    b"\r\n"
    b"From: list@example.test\r\n"
    b"Subject: the digest\r\n"
    b'Content-Type: multipart/digest; boundary="d"\r\n'
    b"\r\n"
    b"digest prologue\r\n"
    b"\r\n"
    b"--d \t\r\n"
    b"\r\n"
    b"From: one@example.test\r\n"
    b"Subject: one\r\n"
    b"\r\n"
    b"one text\r\n"
    b"\r\n"
    b"--d  \r\n"
    b"X-Part-Note: second\r\n"
    b"\r\n"
    b"From: two@example.test\r\n"
    b"Subject: two\r\n"
    b"\r\n"
    b"two text\r\n"
    b"\r\n"
    b"--d--\r\n"
    b"\r\n"
    b"digest epilogue\r\n"
)

FIELDS = ["HEADER", "HEADER.FIELDS (FROM SUBJECT X-NONE)", "HEADER.FIELDS.NOT (FROM X-NONE)"]
MESSAGES: dict[str, tuple[bytes, list[str]]] = {
    "folded": (
        FOLDED,
        ["", "TEXT", *FIELDS, "1", "1.MIME", "2", "2.MIME", "2.TEXT", "2.1", "2.1.MIME"]
        + ["2.2", "2.2.MIME"]
        + [f"2.{field}" for field in FIELDS],
    ),
    "twice": (
        TWICE,
        ["", "TEXT", "1", "1.HEADER", "1.TEXT", "1.1", "1.1.HEADER", "1.1.TEXT", "1.1.1"],
    ),
    "digest": (
        DIGEST,
        ["TEXT", "1", "1.HEADER", "1.TEXT", "1.1", "1.1.MIME", "1.1.HEADER", "1.1.TEXT"]
        + ["1.2", "1.2.MIME", "1.2.HEADER", "1.2.TEXT", "1.2.1"]
        + [f"1.2.{field}" for field in FIELDS],
    ),
}


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    with runningServers(PASSWORD, userPrefix="sections") as running:
        yield running


def fetch(client: imaplib.IMAP4, uid: int, item: bytes) -> bytes:
    """The FETCH response to one item, its literal included, the item's name upper-cased."""
    tag = b"Z1"
    client.send(tag + b" UID FETCH %d (%s)\r\n" % (uid, item))
    answer = bytearray()
    while True:
        received = client.readline()
        if received.startswith(tag + b" "):
            assert received.startswith(tag + b" OK"), (item, received)
            return re.sub(
                rb"\((UID \d+ )([A-Z.]+\[[^]]*\])",
                lambda m: b"(" + m.group(1) + m.group(2).upper(),
                bytes(answer),
            )
        answer += received
        literal = re.search(rb"\{(\d+)\}\r\n\Z", received)
        if literal is not None:
            answer += client.read(int(literal.group(1)))


def test_nested_sections_are_dovecots(servers: Servers) -> None:
    user = servers.newUser()
    client = servers.tmailClient(user)
    uids = {}
    for name, (raw, _) in MESSAGES.items():
        typ, data = client.append("INBOX", "", imaplib.Time2Internaldate(1_700_000_000), raw)
        assert typ == "OK", (name, data)
        match = re.search(rb"APPENDUID \d+ (\d+)", data[0])
        assert match is not None, data
        uids[name] = int(match.group(1))
    client.logout()
    mine, theirs = servers.tmailClient(user), servers.dovecotClient(user)
    for client in (mine, theirs):
        typ, data = client.select("INBOX", readonly=True)
        assert typ == "OK", data
    differ = []
    for name, (_, sections) in MESSAGES.items():
        for section in sections:
            for kind in (b"BODY.PEEK", b"BINARY.SIZE"):
                item = b"%s[%s]" % (kind, section.encode())
                fromTmail = fetch(mine, uids[name], item)
                assert fromTmail.startswith(b"* "), (name, item, fromTmail)
                fromDovecot = re.sub(rb"~(\{\d+\}\r\n)", rb"\1", fetch(theirs, uids[name], item))
                if fromTmail != fromDovecot:
                    differ.append(
                        f"{name} {item!r}:\n  tmail   {fromTmail!r}\n  dovecot {fromDovecot!r}"
                    )
    mine.logout()
    theirs.logout()
    assert not differ, "\n".join(differ)
