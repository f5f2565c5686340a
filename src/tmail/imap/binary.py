# -*- test-case-name: tests.imap.test_imap_binary -*-
"""
BINARY (RFC 3516): FETCH of body parts with their Content-Transfer-Encoding
removed.

L{parseFetchItems} picks C{BINARY[...]}, C{BINARY.PEEK[...]} and
C{BINARY.SIZE[...]} out of a FETCH item list and hands every other item to
L{tmail.imap.fetchatt}, keeping the order the client asked for.

Beyond RFC 3516's grammar, as Dovecot takes them, a section may end in
C{HEADER}, C{HEADER.FIELDS [.NOT] (...)} or C{MIME}, served as stored (a
header carries no transfer encoding), or C{TEXT}, a message's decoded
body; and a partial range may give its start alone (C{<15>}: to the end).
A message/rfc822 part is served as Dovecot serves it: its header and its
decoded body, as C{BINARY[]} serves the whole message.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from twisted.mail import imap4

from tmail.imap import pieces
from tmail.imap.binaryappend import withTransferEncoding
from tmail.imap.charsets import decodeBase64 as decodeBase64
from tmail.imap.charsets import decodeBase64Pieces, quotedPrintablePieces
from tmail.imap.fetchatt import parseFetchAtt, splitItems
from tmail.imap.headerfields import fieldValue
from tmail.imap.mimeentity import MimeEntity

#: C{BINARY[1.2]<0.100>}, C{BINARY.PEEK[]}, C{BINARY.SIZE[3]}, C{BINARY[1.MIME]}.
_BINARY_ITEM = re.compile(
    rb"BINARY(\.PEEK|\.SIZE)?\[((?:[1-9]\d{0,8})(?:\.[1-9]\d{0,8})*)?"
    rb"(?:(?:(?<=\[)|(?<=\d)\.)"
    rb"(?:(HEADER\.FIELDS(?:\.NOT)?) \(([^()\x00-\x1f]+)\)|(HEADER|TEXT|MIME)))?\]"
    rb"(?:<(\d{1,10})(?:\.(\d{1,10}))?>)?\Z",
    re.IGNORECASE,
)

#: The length of a partial range given by its start alone (C{<15>}): the
#: rest of the content, as Dovecot reads it.
TO_THE_END = 1 << 62

#: Encodings whose content is the bytes as they are (RFC 2045 6.2).
_IDENTITY = frozenset({"", "7bit", "8bit", "binary"})


class UnknownCTE(Exception):
    """A part whose Content-Transfer-Encoding tmail cannot remove."""


@dataclass
class BinaryItem:
    """One C{BINARY[section]<partial>}, C{BINARY.PEEK} or C{BINARY.SIZE} item."""

    peek: bool = False
    size: bool = False
    part: list[int] = field(default_factory=list)
    partialBegin: int | None = None
    partialLength: int = 0
    type: str = "binary"
    #: C{HEADER}, C{HEADER.FIELDS}, C{HEADER.FIELDS.NOT}, C{TEXT} or C{MIME}
    #: after the part number: a section served as it is stored, as C{BODY}
    #: serves it (header fields carry no transfer encoding).
    text: str = ""
    fields: list[bytes] = field(default_factory=list)


def _binaryItem(token: bytes) -> BinaryItem:
    match = _BINARY_ITEM.match(token)
    if match is None:
        raise imap4.IllegalClientResponse("Invalid BINARY item")
    kind, section, fieldsKind, fields, text, begin, length = match.groups()
    item = BinaryItem(
        peek=(kind or b"").upper() == b".PEEK",
        size=(kind or b"").upper() == b".SIZE",
        part=[int(p) - 1 for p in section.split(b".")] if section else [],
        text=(fieldsKind or text or b"").decode("ascii").upper(),
        fields=[name.strip(b'"').upper() for name in (fields or b"").split()],
    )
    if item.text == "MIME" and not item.part:
        raise imap4.IllegalClientResponse("Invalid BINARY item")
    if begin is not None:
        if item.size:
            raise imap4.IllegalClientResponse("BINARY.SIZE takes no partial range")
        item.partialBegin = int(begin)
        item.partialLength = TO_THE_END if length is None else int(length)
    return item


def mentionsBinary(line: bytes) -> bool:
    """Whether a FETCH item list may hold a BINARY item."""
    return b"BINARY" in line.upper()


def parseFetchItems(line: bytes) -> list[Any]:
    """
    The items of a FETCH item list that holds BINARY items: L{BinaryItem}s
    for those, Twisted's parsed items for the others, in the client's order.

    @raise imap4.IllegalClientResponse: for a malformed item.
    """
    inner = line.strip(b" ")
    if inner.startswith(b"(") and inner.endswith(b")"):
        inner = inner[1:-1]
    items: list[Any] = []
    for token in splitItems(inner):
        if token.upper().startswith(b"BINARY"):
            items.append(_binaryItem(token))
            continue
        items.extend(parseFetchAtt(token))
    if not items:
        raise imap4.IllegalClientResponse("Missing FETCH items")
    return items


def decodeContent(body: bytes, encoding: str) -> bytes:
    """
    C{body} with the Content-Transfer-Encoding C{encoding} removed.

    @raise UnknownCTE: for an encoding other than 7bit, 8bit, binary,
        base64 and quoted-printable.
    """
    encoding = encoding.strip().lower()
    if encoding in _IDENTITY:
        return body
    if encoding == "base64":
        return decodeBase64(body)
    if encoding == "quoted-printable":
        return b"".join(quotedPrintablePieces(body, 0, len(body)))
    raise UnknownCTE(encoding)


def contentPieces(data: bytes, start: int, end: int, encoding: str) -> Iterator[bytes]:
    """
    L{decodeContent} of C{data[start:end]}, a piece at a time: no call
    decodes more than about L{pieces.PIECE} bytes, so a worker thread
    decoding a large part hands the GIL back between pieces.

    @raise UnknownCTE: at once, for an encoding L{decodeContent} refuses.
    """
    encoding = encoding.strip().lower()
    if encoding in _IDENTITY:
        return (data[low:high] for low, high in pieces.windows(start, end))
    if encoding == "base64":
        return decodeBase64Pieces(data[low:high] for low, high in pieces.windows(start, end))
    if encoding == "quoted-printable":
        return quotedPrintablePieces(data, start, end)
    raise UnknownCTE(encoding)


def _encodingOf(entity: MimeEntity) -> str:
    value = fieldValue(entity.header, b"content-transfer-encoding")
    if value is None:
        return ""
    return value.split(b"(", 1)[0].decode("ascii", "replace")


def _decodedWhole(entity: MimeEntity, strict: bool = True) -> list[Iterator[bytes]]:
    """
    An entity's header, then its body as L{_decodedBody} gives it; the
    header names the binary encoding when the body was decoded, as
    Dovecot's does.  A leaf whose encoding tmail cannot remove raises
    L{UnknownCTE} when C{strict}, else is kept as stored.
    """
    header = entity.header
    leaf = not (entity.isMultipart or entity.isMessage)
    if leaf and _encodingOf(entity).strip().lower() not in _IDENTITY:
        try:
            body = _decodedBody(entity)
        except UnknownCTE:
            if strict:
                raise
            return [iter([entity.data[entity.start : entity.end]])]
        return [iter([withTransferEncoding(header, b"binary")]), *body]
    return [iter([header]), *_decodedBody(entity)]


def _decodedBody(entity: MimeEntity) -> list[Iterator[bytes]]:
    """
    An entity's body with the transfer encoding of every part in it
    removed, as Dovecot's BINARY does: a leaf's content decoded; a
    multipart's preamble, delimiters and epilogue as stored around its
    parts decoded whole; a message/rfc822's message decoded whole.  A part
    inside whose encoding tmail cannot remove is kept as stored; a leaf's
    own raises L{UnknownCTE}, at once: the decoders are made here, not
    while the pieces are read.
    """
    data = entity.data
    if entity.isMultipart:
        found: list[Iterator[bytes]] = []
        position = entity.bodyStart
        for child in entity.children:
            found.append(iter([data[position : child.start]]))
            found.extend(_decodedWhole(child, strict=False))
            position = child.end
        found.append(iter([data[position : entity.end]]))
        return found
    inner = entity.encapsulated
    if inner is not None:
        return [
            iter([data[entity.bodyStart : inner.start]]),
            *_decodedWhole(inner, strict=False),
            iter([data[inner.end : entity.end]]),
        ]
    return [contentPieces(data, entity.bodyStart, entity.end, _encodingOf(entity))]


def binaryContentPieces(message: MimeEntity, path: tuple[int, ...]) -> Iterator[bytes] | None:
    """
    The decoded content of a BINARY section, a piece at a time: of the
    part at C{path}, or of the whole message for C{BINARY[]}; C{None} when
    there is no such part.  A message (the whole one, or one a
    message/rfc822 part holds) is its header and its decoded body, and a
    multipart holds its parts decoded, as Dovecot serves them.

    @raise UnknownCTE: at once, for an encoding tmail cannot remove.
    """
    if not path:
        return itertools.chain.from_iterable(_decodedWhole(message))
    node = message.find(path)
    if node is None:
        return None
    if node.encapsulated is not None:
        return itertools.chain.from_iterable(_decodedWhole(node.encapsulated))
    return itertools.chain.from_iterable(_decodedBody(node))


def binaryTextPieces(message: MimeEntity, path: tuple[int, ...]) -> Iterator[bytes] | None:
    """
    C{BINARY[TEXT]}, C{BINARY[3.TEXT]}: the decoded body (L{_decodedBody})
    of the whole message or of the one the message/rfc822 part at C{path}
    holds, as Dovecot serves it; nothing for another part; C{None} when there is no
    such part.

    @raise UnknownCTE: at once, for an encoding tmail cannot remove.
    """
    if path:
        node = message.find(path)
        if node is None:
            return None
        if node.encapsulated is None:
            return iter([b""])
        message = node.encapsulated
    return itertools.chain.from_iterable(_decodedBody(message))
