"""
BINARY (RFC 3516) answers from tmail and from Dovecot 2.3 on one Maildir,
compared byte for byte: decoded quoted-printable (blanks that end a line,
soft line breaks followed by blanks), base64 with NUL in a literal8,
partial ranges of decoded content, a whole multipart message with each
part decoded, and sections beyond RFC 3516's grammar
(C{HEADER}, C{TEXT}, C{MIME}, C{HEADER.FIELDS}, a range given by its start)
that Dovecot serves as stored.
"""

from __future__ import annotations

import base64
import imaplib
import re
from collections.abc import Iterator

import pytest

from support.interop import Servers, runningServers

pytestmark = pytest.mark.e2e

PASSWORD = "binary both"

QUOTED = (
    b"From: qp@example.test\r\n"
    b"Subject: quoted\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=us-ascii\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n"
    b"\r\n"
    b"first line \t \r\n"
    b"kept=20=09\r\n"
    b"joined= \t\r\n"
    b"here  \r\n"
    b"tab\tinside\r\n"
    b"equals=3D=\r\n"
    b"\r\n"
    b"end \t"
)

MIXED = (
    b"From: mixed@example.test\r\n"
    b"Subject: mixed\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b1"\r\n'
    b"\r\n"
    b"prologue\r\n"
    b"--b1\r\n"
    b"Content-Type: text/plain\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    b"aGVs bG8g\r\n"
    b"d29y bGQ=\r\n"
    b"--b1\r\n"
    b"Content-Type: application/octet-stream\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n" + base64.encodebytes(b"abc\x00def\r\nghi" * 7).replace(b"\n", b"\r\n") + b"--b1\r\n"
    b"Content-Type: message/rfc822\r\n"
    b"X-Part: outer\r\n"
    b"\r\n"
    b"From: inner@example.test\r\n"
    b"Subject: inner\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n"
    b"\r\n"
    b"inner=20body  \r\n"
    b"--b1--\r\n"
    b"epilogue\r\n"
)

#: FETCH items asked of each message.
ITEMS: dict[str, list[bytes]] = {
    "quoted": [
        b"BINARY.PEEK[1]",
        b"BINARY.SIZE[1]",
        b"BINARY.PEEK[]",
        b"BINARY.SIZE[]",
        b"BINARY.PEEK[1]<3.12>",
        b"BINARY.PEEK[1]<20>",
        b"BINARY.PEEK[TEXT]",
        b"BINARY.SIZE[HEADER]",
        b"BINARY.PEEK[HEADER.FIELDS (SUBJECT)]",
    ],
    "mixed": [
        b"BINARY.PEEK[]",
        b"BINARY.SIZE[]",
        b"BINARY.PEEK[]<30.400>",
        b"BINARY.PEEK[1]",
        b"BINARY.SIZE[1]",
        b"BINARY.PEEK[2]",
        b"BINARY.SIZE[2]",
        b"BINARY.PEEK[2]<2.5>",
        b"BINARY.PEEK[2]<60>",
        b"BINARY.PEEK[3]",
        b"BINARY.SIZE[3]",
        b"BINARY.PEEK[3.1]",
        b"BINARY.SIZE[3.1]",
        b"BINARY.PEEK[1.MIME]",
        b"BINARY.SIZE[3.MIME]",
        b"BINARY.PEEK[3.HEADER]",
        b"BINARY.PEEK[3.TEXT]",
        b"BINARY.SIZE[3.HEADER.FIELDS.NOT (FROM)]",
        b"BINARY.PEEK[TEXT]<0.20>",
        b"BINARY.PEEK[TEXT]",
        b"BINARY.SIZE[TEXT]",
    ],
}
MESSAGES = {"quoted": QUOTED, "mixed": MIXED}


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    with runningServers(PASSWORD, userPrefix="binary") as running:
        yield running


def fetch(client: imaplib.IMAP4, uid: int, item: bytes) -> bytes:
    """
    The FETCH response to one item, its literal included, with the item's
    name upper-cased.  A literal8 without NUL is read as a literal: RFC
    3516 4.3 says data without NUL SHOULD be sent as a string, as tmail
    sends it; Dovecot sends every decoded section as a literal8.
    """
    typ, data = client.select("INBOX", readonly=True)
    assert typ == "OK", data
    tag = b"Z1"
    client.send(tag + b" UID FETCH %d (%s)\r\n" % (uid, item))
    answer = bytearray()
    while True:
        received = client.readline()
        literal = re.search(rb"\{(\d+)\}\r\n\Z", received)
        if received.startswith(tag + b" "):
            assert received.startswith(tag + b" OK"), (item, received)
            named = re.sub(rb"BINARY[^ ]*", lambda m: m.group(0).upper(), bytes(answer))
            return re.sub(rb"~(\{\d+\}\r\n)", rb"\1", named) if b"\x00" not in named else named
        answer += received
        if literal is not None:
            answer += client.read(int(literal.group(1)))


def test_binary_answers_are_dovecots(servers: Servers) -> None:
    user = servers.newUser()
    client = servers.tmailClient(user)
    uids = {}
    for name, raw in MESSAGES.items():
        typ, data = client.append("INBOX", "", imaplib.Time2Internaldate(1_700_000_000), raw)
        assert typ == "OK", (name, data)
        match = re.search(rb"APPENDUID \d+ (\d+)", data[0])
        assert match is not None, data
        uids[name] = int(match.group(1))
    client.logout()
    mine, theirs = servers.tmailClient(user), servers.dovecotClient(user)
    differ = []
    for name, items in ITEMS.items():
        for item in items:
            fromTmail = fetch(mine, uids[name], item)
            assert fromTmail.startswith(b"* "), (name, item, fromTmail)
            fromDovecot = fetch(theirs, uids[name], item)
            if fromTmail != fromDovecot:
                differ.append(
                    f"{name} {item!r}:\n  tmail   {fromTmail!r}\n  dovecot {fromDovecot!r}"
                )
    mine.logout()
    theirs.logout()
    assert not differ, "\n".join(differ)
