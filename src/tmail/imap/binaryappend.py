# -*- test-case-name: tests.imap.test_imap_binary_append -*-
"""
Messages APPENDed in a literal8 (RFC 3516 4.4), stored so that every FETCH
can serve them.

A literal8 may hold NUL octets, which no literal of a FETCH BODY[] answer
may carry (RFC 3501 4.3, RFC 9051 4.3).  RFC 3516 4.4 lets a server change
the content-transfer-encoding of appended data as long as nothing is lost,
so a leaf part whose body holds NUL under an identity encoding (7bit, 8bit,
binary, or none) is stored base64-encoded, its Content-Transfer-Encoding
field saying so: BODY[] serves it as Dovecot does, and BINARY[] decodes it
back to the octets the client sent.  NUL anywhere else (in a header, a
preamble, a part tmail does not take apart) is stored as sent: BINARY[]
serves it in a literal8, BODY[] shows it as 0x80 (L{forLiteral}), as
Dovecot does.
"""

from __future__ import annotations

import base64
import re

from tmail.imap.headerfields import fieldValue
from tmail.imap.mimeentity import MimeEntity, MimeLimits
from tmail.imap.mimeparams import withoutComments

#: Encodings under which the body is the octets themselves (RFC 2045 6.2).
IDENTITY = frozenset({"", "7bit", "8bit", "binary"})

#: A header field with its continuation lines.
_FIELD = re.compile(rb"[^\n]*\n?(?:[ \t][^\n]*\n?)*")
_TRANSFER_ENCODING = re.compile(rb"content-transfer-encoding[ \t]*:", re.IGNORECASE)


def transferEncoding(header: bytes) -> str:
    """The Content-Transfer-Encoding a header names, in lower case, comments removed."""
    value = fieldValue(header, b"content-transfer-encoding")
    if value is None:
        return ""
    return withoutComments(value.decode("ascii", "replace")).strip().lower()


def withTransferEncoding(header: bytes, encoding: bytes) -> bytes:
    """
    C{header} (with the empty line that ends it, if any) with its first
    Content-Transfer-Encoding field replaced by one naming C{encoding}
    and any others removed; without one, the field is added at the end.
    """
    if header in (b"\r\n", b"\n"):
        fields, ending = b"", header
    elif header.endswith((b"\n\r\n", b"\n\n")):
        ending = b"\r\n" if header.endswith(b"\r\n") else b"\n"
        fields = header[: -len(ending)]
    else:
        fields, ending = header, b""
    field = b"Content-Transfer-Encoding: " + encoding + b"\r\n"
    lines: list[bytes] = []
    replaced = False
    for match in _FIELD.finditer(fields):
        line = match.group()
        if not line:
            continue
        if _TRANSFER_ENCODING.match(line):
            if not replaced:
                lines.append(field)
                replaced = True
            continue
        lines.append(line if line.endswith(b"\n") else line + b"\r\n")
    if not replaced:
        lines.append(field)
    return b"".join(lines) + ending


def _base64Body(body: bytes) -> bytes:
    """C{body} in base64 lines of 76, with no line end after the last (as Dovecot writes it)."""
    return base64.encodebytes(body).replace(b"\n", b"\r\n").rstrip(b"\r\n")


def storable(data: bytes, limits: MimeLimits) -> bytes:
    """
    The message to store for the octets of a literal8: C{data} itself
    when it holds no NUL; else with each leaf part whose body holds NUL
    under an identity encoding re-encoded in base64.
    """
    if b"\x00" not in data:
        return data
    message = MimeEntity(data, limits=limits)
    edits: list[tuple[int, int, bytes]] = []
    for part in message.walk():
        if part.isMultipart or part.isMessage or part.contentType[0] in ("multipart", "message"):
            continue
        start, end = part.end - part.bodySize, part.end
        if start == end or data.find(b"\x00", start, end) < 0:
            continue
        if transferEncoding(part.header) not in IDENTITY:
            continue
        header = withTransferEncoding(part.header, b"base64")
        edits.append((part.start, part.end, header + _base64Body(data[start:end])))
    if not edits:
        return data
    pieces: list[bytes] = []
    position = 0
    for start, end, replacement in sorted(edits):
        pieces.append(data[position:start])
        pieces.append(replacement)
        position = end
    pieces.append(data[position:])
    return b"".join(pieces)


def forLiteral(data: bytes) -> bytes:
    """
    C{data} for a literal, which may not hold NUL (RFC 3501 4.3): each NUL
    shown as 0x80, as Dovecot shows it, the length unchanged.
    """
    return data.replace(b"\x00", b"\x80") if b"\x00" in data else data


class BinaryLiteral:
    """The octets of an APPEND literal8, gathered until the literal ends."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []

    def write(self, data: bytes) -> None:
        self._chunks.append(data)

    def storable(self, limits: MimeLimits) -> bytes:
        """The message to store (L{storable}); the octets gathered are let go."""
        data = b"".join(self._chunks)
        self._chunks = []
        return storable(data, limits)
