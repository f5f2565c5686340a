"""
The DISPLAYFROM and DISPLAYTO sort keys of SORT=DISPLAY (RFC 5957): the
first address of From or To as a reader sees it, its display name (RFC 2047
decoded), else C{mailbox@host}, else the mailbox, else the empty string
(RFC 5957 3), compared as C{i;ascii-casemap}.

Twisted has no SORT.  The field is read in linear time, at most
L{MAX_ADDRESS_TEXT} characters of it, as the FROM and TO keys read it.
"""

from __future__ import annotations

from tmail.imap.addresses import getaddresses
from tmail.imap.charsets import decodeWords
from tmail.imap.structure import MAX_ADDRESS_TEXT


def displayValue(value: bytes | None) -> bytes:
    """
    The DISPLAY sort value of the first address of a header field's value
    (C{None} when the field is absent), upper-cased as C{i;ascii-casemap}
    compares it.  Group names are not addresses: a group's first member
    counts.
    """
    if value is None:
        return b""
    text = value[:MAX_ADDRESS_TEXT].decode("utf-8", "surrogateescape")
    for name, address in getaddresses(text):
        if not (name or address):
            continue
        shown = decodeWords(name).strip() if name else ""
        if not shown:
            local, at, host = address.rpartition("@")
            shown = address if at and local and host else (local or host or address)
        return shown.encode("utf-8", "surrogateescape").upper()
    return b""
