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

import datetime
import time
from collections.abc import Iterable

from tmail.imap.addressfields import MISSING_DOMAIN, MISSING_MAILBOX, addressList
from tmail.imap.headerfields import fieldValue, headerFields
from tmail.imap.mimeentity import MimeEntity
from tmail.imap.mimeparams import Parameters, withoutComments

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
    """
    A quoted string when that is allowed, else a literal; a NUL, which no
    literal may hold (RFC 3501 4.3), is sent as U+FFFD, as Dovecot sends it.
    """
    if len(value) <= 1024 and all(0x20 <= byte <= 0x7E for byte in value):
        return quoted(value)
    if b"\x00" in value:
        value = value.replace(b"\x00", "\ufffd".encode())
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
    """
    C{"17-Jul-1996 02:44:25 -0700"} for an INTERNALDATE, in the server's
    local time zone: the day the date-only SEARCH keys (BEFORE, ON, SINCE)
    compare, as Dovecot and Cyrus show and compare it too.
    """
    t = time.localtime(timestamp)
    offset = (t.tm_gmtoff or 0) // 60
    hours, minutes = divmod(abs(offset), 60)
    return b'"%02d-%s-%04d %02d:%02d:%02d %s%02d%02d"' % (
        t.tm_mday,
        _MONTHS[t.tm_mon - 1].encode(),
        t.tm_year,
        t.tm_hour,
        t.tm_min,
        t.tm_sec,
        b"-" if offset < 0 else b"+",
        hours,
        minutes,
    )


def localDay(timestamp: float) -> datetime.date:
    """The day of a timestamp in the server's local time zone, as L{internalDate} shows it."""
    return datetime.datetime.fromtimestamp(timestamp).date()


def _addresses(value: bytes | None) -> bytes:
    if value is None:
        return b"NIL"
    text = value[:MAX_ADDRESS_TEXT].decode("utf-8", "surrogateescape")
    encoded = []
    for entry in addressList(text, MAX_ADDRESSES):
        if entry.kind == "start":
            fields = [b"NIL", b"NIL", nstring(_text(entry.name or "")), b"NIL"]
        elif entry.kind == "end":
            fields = [b"NIL"] * 4
        else:
            fields = [
                nstring(_text(entry.name)),
                nstring(_text(entry.route)),
                nstring(_text(entry.mailbox or MISSING_MAILBOX)),
                nstring(_text(entry.host or MISSING_DOMAIN)),
            ]
        encoded.append(plist(fields))
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
        items.append(string(key.encode("utf-8", "surrogateescape")))
        items.append(string(value.encode("utf-8", "surrogateescape")))
    return plist(items)


def _typeParams(entity: MimeEntity) -> Parameters:
    """
    The Content-Type parameters as given; a text part without a charset
    has the default of RFC 2046 4.1.2 (US-ASCII) added, as Dovecot adds it.
    """
    pairs = entity.typeParameters
    if entity.contentType[0] == "text" and entity.parameter("charset") is None:
        return [*pairs, ("charset", "us-ascii")]
    return pairs


def _disposition(entity: MimeEntity) -> bytes:
    disposition = entity.disposition
    if disposition is None or not disposition[0]:
        return b"NIL"
    kind, pairs = disposition
    return plist([string(kind.encode("utf-8", "surrogateescape")), _params(pairs)])


def _token(header: bytes, name: bytes) -> bytes | None:
    """A field that holds one token (Content-Transfer-Encoding), comments and blanks removed."""
    value = fieldValue(header, name)
    if value is None:
        return None
    text = withoutComments(value.decode("utf-8", "surrogateescape")).strip()
    return text.encode("utf-8", "surrogateescape")


def _languages(header: bytes) -> bytes:
    """Content-Language (RFC 3282) as the list of its tags, or NIL."""
    value = fieldValue(header, b"content-language")
    if value is None:
        return b"NIL"
    text = withoutComments(value.decode("utf-8", "surrogateescape"))
    tags = [tag.strip().encode("utf-8", "surrogateescape") for tag in text.split(",")]
    tags = [tag for tag in tags if tag]
    return plist(string(tag) for tag in tags) if tags else b"NIL"


def _extension(entity: MimeEntity) -> list[bytes]:
    header = entity.header
    return [
        _disposition(entity),
        _languages(header),
        nstring(fieldValue(header, b"content-location")),
    ]


def bodyStructure(entity: MimeEntity, extended: bool = True) -> bytes:
    """
    The BODYSTRUCTURE (or, without C{extended}, the BODY) of an entity
    (RFC 3501 7.4.2).  Parts are encoded after the parts below them, from
    a list in document order, not by recursion.  Types, subtypes and
    parameters are as the message gives them, case included (as Dovecot
    gives them); RFC 2045's defaults stand in where a field is absent.
    """
    done: dict[int, bytes] = {}
    for part in reversed(list(entity.walk())):
        done[id(part)] = _partStructure(part, extended, done)
    return done[id(entity)]


def convertedStructure(entity: MimeEntity, decoded: bytes) -> bytes:
    """
    The BODYSTRUCTURE of a single part as URLFETCH serves it with BINARY
    (RFC 5524 3): of the decoded content, so the encoding names its data
    domain (7bit, 8bit or binary) and the size and lines are its own.
    """
    if b"\x00" in decoded:
        domain = b"binary"
    elif any(octet > 0x7F for octet in decoded):
        domain = b"8bit"
    else:
        domain = b"7bit"
    return _partStructure(entity, True, {}, (domain, decoded))


def _partStructure(
    entity: MimeEntity,
    extended: bool,
    done: dict[int, bytes],
    converted: tuple[bytes, bytes] | None = None,
) -> bytes:
    """
    One entity's structure, those of the parts below it being in C{done};
    with C{converted} (data domain, decoded content), of that content.
    """
    mainType, subType = entity.mediaType
    if entity.isMultipart:
        inner = b"".join(done.pop(id(child)) for child in entity.children)
        fields = [inner, string(subType.encode("utf-8", "surrogateescape"))]
        if extended:
            fields.append(_params(entity.typeParameters))
            fields.extend(_extension(entity))
        return plist(fields)
    message = entity.encapsulated
    if entity.contentType[0] == "multipart" or (
        entity.contentType == ("message", "rfc822") and message is None
    ):
        mainType, subType = "application", "octet-stream"
    header = entity.header
    encoding = _token(header, b"content-transfer-encoding")
    size, lines = entity.bodySize, entity.bodyLines
    if converted is not None:
        encoding, decoded = converted
        size, lines = len(decoded), lambda: decoded.count(b"\n")
    fields = [
        string(mainType.encode("utf-8", "surrogateescape")),
        string(subType.encode("utf-8", "surrogateescape")),
        _params(_typeParams(entity)),
        nstring(fieldValue(header, b"content-id")),
        nstring(fieldValue(header, b"content-description")),
        string(encoding or b"7bit"),
        b"%d" % size,
    ]
    if message is not None:
        fields.append(envelope(message.header))
        fields.append(done.pop(id(message)))
        fields.append(b"%d" % lines())
    elif entity.contentType[0] == "text":
        fields.append(b"%d" % lines())
    if extended:
        fields.append(nstring(fieldValue(header, b"content-md5")))
        fields.extend(_extension(entity))
    return plist(fields)
