# -*- test-case-name: tests.imap.test_imap_message -*-
"""
Encoding of FETCH data items: strings, ENVELOPE and BODYSTRUCTURE.

Twisted's C{getEnvelope}/C{getBodyStructure} crash on 8-bit header values and
on parameters without C{=}, and a crash in the middle of a FETCH response
cannot be reported to the client; these encoders accept any bytes.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Iterable

from tmail.imap.message import MimeEntity, fieldValue

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
    text = value.decode("utf-8", "surrogateescape")
    encoded = []
    for name, address in email.utils.getaddresses([text]):
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
    return b"(" + b"".join(encoded) + b")" if encoded else b"NIL"


def envelope(header: bytes) -> bytes:
    """The ENVELOPE of a message with the given header (RFC 3501 7.4.2)."""

    def field(name: bytes) -> bytes | None:
        return fieldValue(header, name)

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


def _params(pairs: list[tuple[str, str]]) -> bytes:
    if not pairs:
        return b"NIL"
    items = []
    for key, value in pairs:
        items.append(string(key.upper().encode("utf-8", "surrogateescape")))
        items.append(string(value.encode("utf-8", "surrogateescape")))
    return plist(items)


def _typeParams(entity: MimeEntity) -> list[tuple[str, str]]:
    params = entity.parsed.get_params() or []
    pairs = []
    for key, value in params[1:]:
        if not key:
            continue
        pairs.append((key, email.utils.collapse_rfc2231_value(value)))
    if not pairs and entity.contentType[0] == "text":
        pairs.append(("charset", "us-ascii"))
    return pairs


def _disposition(entity: MimeEntity) -> bytes:
    if entity.parsed.get("content-disposition") is None:
        return b"NIL"
    params = entity.parsed.get_params(header="content-disposition") or []
    if not params:
        return b"NIL"
    kind = params[0][0].upper().encode("utf-8", "surrogateescape")
    pairs = [(k, email.utils.collapse_rfc2231_value(v)) for k, v in params[1:] if k]
    return plist([string(kind), _params(pairs)])


def _extension(entity: MimeEntity) -> list[bytes]:
    header = entity.header
    return [
        _disposition(entity),
        nstring(fieldValue(header, b"content-language")),
        nstring(fieldValue(header, b"content-location")),
    ]


def _lines(body: bytes) -> int:
    return body.count(b"\n") + (1 if body and not body.endswith(b"\n") else 0)


def bodyStructure(entity: MimeEntity, extended: bool = True) -> bytes:
    """
    The BODYSTRUCTURE (or, without C{extended}, the BODY) of an entity
    (RFC 3501 7.4.2).
    """
    mainType, subType = entity.contentType
    if entity.isMultipart:
        children = entity.children or [MimeEntity(b"\r\n", entity.depth + 1)]
        fields = [b"".join(bodyStructure(child, extended) for child in children)]
        fields.append(string(subType.upper().encode()))
        if extended:
            fields.append(_params(_typeParams(entity)))
            fields.extend(_extension(entity))
        return plist(fields)
    inner = entity.encapsulated
    if mainType == "multipart" or ((mainType, subType) == ("message", "rfc822") and inner is None):
        mainType, subType = "application", "octet-stream"
    header, body = entity.header, entity.body
    encoding = fieldValue(header, b"content-transfer-encoding")
    fields = [
        string(mainType.upper().encode()),
        string(subType.upper().encode()),
        _params(_typeParams(entity)),
        nstring(fieldValue(header, b"content-id")),
        nstring(fieldValue(header, b"content-description")),
        string(encoding.upper() if encoding else b"7BIT"),
        b"%d" % len(body),
    ]
    if inner is not None:
        fields.append(envelope(inner.header))
        fields.append(bodyStructure(inner, extended))
        fields.append(b"%d" % _lines(body))
    elif mainType == "text":
        fields.append(b"%d" % _lines(body))
    if extended:
        fields.append(nstring(fieldValue(header, b"content-md5")))
        fields.extend(_extension(entity))
    return plist(fields)
