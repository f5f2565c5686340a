"""
Messages built to break a mail server's MIME and header parsing: deep
nesting, countless parts, huge and hostile headers, parameter floods and
long References chains.  Every line stays under SMTP's 998 octets, so each
can be delivered to the MX.
"""

from __future__ import annotations

NEEDLE = b"findme"


def _fold(name: bytes, pieces: list[bytes], separator: bytes = b" ") -> bytes:
    """A header field of many pieces, folded into lines of under 900 octets."""
    lines: list[bytes] = []
    line = name + b":"
    for piece in pieces:
        if len(line) + len(piece) > 900:
            lines.append(line)
            line = b" "
        line += separator + piece if line.strip() else piece
    lines.append(line)
    return b"\r\n".join(lines) + b"\r\n"


def nestedMultipart(depth: int) -> bytes:
    """C{depth} multiparts, each inside the last, the needle in the innermost."""
    opening = b"".join(
        b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (level, level)
        for level in range(depth)
    )
    closing = b"".join(b"\r\n--b%d--" % level for level in reversed(range(depth)))
    return (
        b"From: nest@example.test\r\nSubject: nested multiparts\r\n"
        + opening
        + b"Content-Type: text/plain\r\n\r\n"
        + NEEDLE
        + closing
        + b"\r\n"
    )


def nestedMessages(depth: int) -> bytes:
    """C{depth} message/rfc822 parts, each inside the last, the needle in the innermost."""
    return (
        b"From: nest@example.test\r\nSubject: nested messages\r\n"
        + b"Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n" * depth
        + b"\r\n"
        + NEEDLE
        + b"\r\n"
    )


def manyParts(count: int) -> bytes:
    """One multipart of C{count} short text parts, the needle in the first."""
    return (
        b"From: parts@example.test\r\nSubject: many parts\r\n"
        b"Content-Type: multipart/mixed; boundary=p\r\n\r\n--p\r\n\r\n"
        + NEEDLE
        + b"\r\n"
        + b"--p\r\n\r\nx\r\n" * count
        + b"--p--\r\n"
    )


def hugeHeader(fields: int) -> bytes:
    """
    A header of C{fields} fields, a subject of thousands of C{Re:}, nested
    comments and groups as addresses, a flood of RFC 2231 continuations and
    of encoded words.
    """
    return (
        b"X-Filler: a\r\n" * fields
        + _fold(b"Subject", [b"Re:"] * 50_000 + [NEEDLE])
        + _fold(b"From", [b"(" * 800] * 100)
        + _fold(b"To", [b"a:" * 400] * 100)
        + _fold(b"Cc", [b"=?utf-8?q?c=C3=A9?="] * 50_000)
        + b"Content-Type: text/plain"
        + b"".join(b";\r\n name*%d*=%%41" % i for i in range(50_000))
        + b"\r\nDate: "
        + b"Mon, " * 150
        + b"\r\n\r\n"
        + NEEDLE
        + b"\r\n"
    )


def referenceChain(start: int, length: int, messageId: bytes) -> bytes:
    """A message whose References name C{length} ancestors, from C{<rN@example.test>}."""
    ids = [b"<r%d@example.test>" % n for n in range(start, start + length)]
    return (
        b"From: thread@example.test\r\nSubject: Re: chain\r\nMessage-ID: "
        + messageId
        + b"\r\n"
        + _fold(b"References", ids)
        + b"\r\n"
        + NEEDLE
        + b"\r\n"
    )
