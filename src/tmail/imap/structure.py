# -*- test-case-name: tests.imap.test_imap_message -*-
"""
Encoding of FETCH data items: strings, ENVELOPE and BODYSTRUCTURE.

Twisted's C{getEnvelope}/C{getBodyStructure} crash on 8-bit header values and
on parameters without C{=}, and a crash in the middle of a FETCH response
cannot be reported to the client; these encoders accept any bytes, build a
BODYSTRUCTURE with an explicit stack, and read addresses without recursion
(L{tmail.imap.addresses}).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from tmail.imap.addresses import getaddresses
from tmail.imap.message import MimeEntity, fieldValue, headerFields
from tmail.imap.mimeparams import Parameters

#: Address-field text read for an ENVELOPE: thousands of addresses, and
#: a bound on the time a hostile field can take.
MAX_ADDRESS_TEXT = 64 * 1024
#: Addresses listed per ENVELOPE field at most.
MAX_ADDRESSES = 1000

_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def quoted(value: bytes) -> bytes:
    """A quoted string (the caller makes sure it is 7-bit without CR/LF)."""
    return b'"' + value.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def string(value: bytes) -> bytes:
    """A quoted string when that is allowed, else a literal."""
    if len(value) <= 1024 and all(0x20 <= byte <= 0x7E for byte in value):
        return quoted(value)
    return b"{%d}\r\n%s" % (len(value), value)


def nstring(value: bytes | None) -> bytes:
    """L{string}, or C{NIL} for C{None}."""
    return b"NIL" if value is None else string(value)


def _text(value: str | None) -> bytes | None:
    return None if value is None else value.encode("utf-8", "surrogateescape")


def plist(items: Iterable[bytes]) -> bytes:
    """A parenthesised list of already encoded items."""
    return b"(" + b" ".join(items) + b")"


def internalDate(timestamp: float) -> bytes:
    """C{"17-Jul-1996 02:44:25 +0000"} for an INTERNALDATE (in UTC)."""
    t = time.gmtime(timestamp)
    return b'"%02d-%s-%04d %02d:%02d:%02d +0000"' % (
        t.tm_mday,
        _MONTHS[t.tm_mon - 1].encode(),
        t.tm_year,
        t.tm_hour,
        t.tm_min,
        t.tm_sec,
    )


def _addresses(value: bytes | None) -> bytes:
    if value is None:
        return b"NIL"
    text = value[:MAX_ADDRESS_TEXT].decode("utf-8", "surrogateescape")
    encoded = []
    for name, address in getaddresses(text):
        if not address:
            continue
        mailbox, at, host = address.rpartition("@")
        if not at:
            mailbox, host = address, ""
        encoded.append(
            plist(
                [
                    nstring(_text(name) if name else None),
                    b"NIL",
                    nstring(_text(mailbox)),
                    nstring(_text(host) if host else None),
                ]
            )
        )
        if len(encoded) == MAX_ADDRESSES:
            break
    return b"(" + b"".join(encoded) + b")" if encoded else b"NIL"


def envelope(header: bytes) -> bytes:
    """The ENVELOPE of a message with the given header (RFC 3501 7.4.2)."""
    first: dict[bytes, bytes] = {}
    for name, lines in headerFields(header):
        first.setdefault(name, lines)

    def field(name: bytes) -> bytes | None:
        lines = first.get(name)
        return None if lines is None else fieldValue(lines, name)

    sender = field(b"sender") or field(b"from")
    replyTo = field(b"reply-to") or field(b"from")
    return plist(
        [
            nstring(field(b"date")),
            nstring(field(b"subject")),
            _addresses(field(b"from")),
            _addresses(sender),
            _addresses(replyTo),
            _addresses(field(b"to")),
            _addresses(field(b"cc")),
            _addresses(field(b"bcc")),
            nstring(field(b"in-reply-to")),
            nstring(field(b"message-id")),
        ]
    )


def _params(pairs: Parameters) -> bytes:
    if not pairs:
        return b"NIL"
    items = []
    for key, value in pairs:
        items.append(string(key.upper().encode("utf-8", "surrogateescape")))
        items.append(string(value.encode("utf-8", "surrogateescape")))
    return plist(items)


def _typeParams(entity: MimeEntity) -> Parameters:
    pairs = entity.parameters
    if not pairs and entity.contentType[0] == "text":
        return [("charset", "us-ascii")]
    return pairs


def _disposition(entity: MimeEntity) -> bytes:
    disposition = entity.disposition
    if disposition is None or not disposition[0]:
        return b"NIL"
    kind, pairs = disposition
    return plist([string(kind.upper().encode("utf-8", "surrogateescape")), _params(pairs)])


def _extension(entity: MimeEntity) -> list[bytes]:
    header = entity.header
    return [
        _disposition(entity),
        nstring(fieldValue(header, b"content-language")),
        nstring(fieldValue(header, b"content-location")),
    ]


def bodyStructure(entity: MimeEntity, extended: bool = True) -> bytes:
    """
    The BODYSTRUCTURE (or, without C{extended}, the BODY) of an entity
    (RFC 3501 7.4.2).  Parts are encoded after the parts below them, from
    a list in document order, not by recursion.
    """
    done: dict[int, bytes] = {}
    for part in reversed(list(entity.walk())):
        done[id(part)] = _partStructure(part, extended, done)
    return done[id(entity)]


def _partStructure(entity: MimeEntity, extended: bool, done: dict[int, bytes]) -> bytes:
    """One entity's structure, those of the parts below it being in C{done}."""
    mainType, subType = entity.contentType
    if entity.isMultipart:
        if entity.children:
            inner = b"".join(done.pop(id(child)) for child in entity.children)
        else:
            inner = _partStructure(MimeEntity(b"\r\n", entity.depth + 1), extended, done)
        fields = [inner, string(subType.upper().encode())]
        if extended:
            fields.append(_params(_typeParams(entity)))
            fields.extend(_extension(entity))
        return plist(fields)
    message = entity.encapsulated
    if mainType == "multipart" or (
        (mainType, subType) == ("message", "rfc822") and message is None
    ):
        mainType, subType = "application", "octet-stream"
    header = entity.header
    encoding = fieldValue(header, b"content-transfer-encoding")
    fields = [
        string(mainType.upper().encode()),
        string(subType.upper().encode()),
        _params(_typeParams(entity)),
        nstring(fieldValue(header, b"content-id")),
        nstring(fieldValue(header, b"content-description")),
        string(encoding.upper() if encoding else b"7BIT"),
        b"%d" % entity.bodySize,
    ]
    if message is not None:
        fields.append(envelope(message.header))
        fields.append(done.pop(id(message)))
        fields.append(b"%d" % entity.bodyLines())
    elif mainType == "text":
        fields.append(b"%d" % entity.bodyLines())
    if extended:
        fields.append(nstring(fieldValue(header, b"content-md5")))
        fields.extend(_extension(entity))
    return plist(fields)
