# -*- test-case-name: tests.imap.test_imap_parse -*-
"""
Strict modified UTF-7 (RFC 3501 section 5.1.3) for mailbox names.

Twisted's C{imap4-utf-7} codec decodes anything it is given, so
C{&AC4ALgAv-} becomes C{../} although RFC 3501 forbids encoding printable
ASCII.  A name is accepted only when re-encoding its decoded form gives back
the very same bytes, which leaves exactly one spelling for every name.
"""

from __future__ import annotations

import base64
import re
import unicodedata

from twisted.mail import imap4

#: A run a client may mean as modified UTF-7: C{&}, base64 (with C{,}), C{-}.
_SHIFTED = re.compile(rb"&[A-Za-z0-9+,]*-")


class BadMailboxName(ValueError):
    """The bytes are not the canonical modified UTF-7 spelling of a name."""


def encodeName(name: str) -> bytes:
    """
    Encode a mailbox name in modified UTF-7.  (Twisted's encoder drops
    characters that plain UTF-7 leaves unencoded, such as CR.)
    """
    out = bytearray()
    pending: list[str] = []

    def flush() -> None:
        if pending:
            raw = "".join(pending).encode("utf-16-be", "surrogatepass")
            out.extend(b"&" + base64.b64encode(raw).rstrip(b"=").replace(b"/", b",") + b"-")
            pending.clear()

    for char in name:
        if " " <= char <= "~":
            flush()
            out.extend(b"&-" if char == "&" else char.encode("ascii"))
        else:
            pending.append(char)
    flush()
    return bytes(out)


def decodeUTF8Name(raw: bytes) -> str:
    """
    Decode a mailbox name sent as UTF-8 (IMAP4rev2, UTF8=ACCEPT: RFC 6855
    section 3), normalised to NFC.

    @raise BadMailboxName: for bytes that are not UTF-8, or control characters.
    """
    try:
        name = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadMailboxName("mailbox name is not UTF-8") from None
    for char in name:
        if unicodedata.category(char) in ("Cc", "Cs"):
            raise BadMailboxName("mailbox name contains control characters")
    return unicodedata.normalize("NFC", name)


def decodeName(raw: bytes) -> str:
    """
    Decode a mailbox name sent by a client.

    @raise BadMailboxName: when C{raw} has bytes outside printable ASCII, is
        malformed, is not the canonical encoding of what it decodes to, or
        decodes to control characters or unpaired surrogates.
    """
    if any(byte < 0x20 or byte > 0x7E for byte in raw):
        raise BadMailboxName("mailbox names must be 7-bit modified UTF-7")
    try:
        name: str = imap4.decoder(raw)[0]
    except Exception:
        raise BadMailboxName("malformed modified UTF-7 in mailbox name") from None
    if encodeName(name) != raw:
        raise BadMailboxName("mailbox name is not canonical modified UTF-7")
    for char in name:
        if unicodedata.category(char) in ("Cc", "Cs"):
            raise BadMailboxName("mailbox name contains control characters")
    return name


def decodePattern(raw: bytes, utf8: bool = False) -> str:
    """
    Decode a LIST or LSUB reference or pattern, which may hold any
    printable character (RFC 3501 6.3.8): every canonical modified UTF-7
    run is decoded, and whatever is not (a lone C{&}, a run that is
    malformed or not canonical) stands for itself, so such a pattern
    matches the names it spells rather than being refused; 8-bit bytes
    are kept as lone surrogates, which no name holds.  Under
    C{utf8} (IMAP4rev2, UTF8=ACCEPT) the pattern is UTF-8, normalised to
    NFC, bytes that are not UTF-8 kept as lone surrogates.
    """
    if utf8:
        return unicodedata.normalize("NFC", raw.decode("utf-8", "surrogateescape"))
    parts: list[str] = []
    start = 0
    for run in _SHIFTED.finditer(raw):
        parts.append(raw[start : run.start()].decode("ascii", "surrogateescape"))
        try:
            parts.append(decodeName(run.group()))
        except BadMailboxName:
            parts.append(run.group().decode("ascii", "surrogateescape"))
        start = run.end()
    parts.append(raw[start:].decode("ascii", "surrogateescape"))
    return "".join(parts)
