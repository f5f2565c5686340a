"""
The DISPLAYFROM and DISPLAYTO sort keys of SORT=DISPLAY (RFC 5957): the
first address of From or To as a reader sees it, its display name (RFC 2047
decoded), else C{mailbox@host}, else the mailbox, else the empty string
(RFC 5957 3), compared as C{i;ascii-casemap}; a list that begins with a
group sorts by the group's name, as its first IMAP address is the
start-of-group marker.  The address is read as ENVELOPE reads it
(L{tmail.imap.addressfields}): a comment inside it is no name, one after a
bare C{user@host} is.

Twisted has no SORT.  The field is read in linear time, at most
L{MAX_ADDRESS_TEXT} characters of it, as the FROM and TO keys read it.
"""

from __future__ import annotations

from tmail.imap.addressfields import addressList
from tmail.imap.charsets import decodeWords
from tmail.imap.structure import MAX_ADDRESS_TEXT


def groupName(text: str) -> str | None:
    """
    The name of the group an address list begins with (C{team: a@b;}), as
    IMAP's start-of-group address holds it, unquoted; C{None} when the list
    begins with a mailbox.  One pass, no recursion.
    """
    name: list[str] = []
    depth = 0
    i, end = 0, len(text)
    while i < end:
        char = text[i]
        if depth:
            if char == "\\":
                i += 1
            elif char == "(":
                depth += 1
            elif char == ")":
                depth -= 1
        elif char == "(":
            depth = 1
        elif char == '"':
            i += 1
            while i < end and text[i] != '"':
                if text[i] == "\\":
                    i += 1
                name.append(text[i : i + 1])
                i += 1
        elif char == ":":
            return " ".join("".join(name).split())
        elif char in "<>@,;[]":
            return None
        else:
            name.append(char)
        i += 1
    return None


def displayValue(value: bytes | None) -> bytes:
    """
    The DISPLAY sort value of the first address of a header field's value
    (C{None} when the field is absent), upper-cased as C{i;ascii-casemap}
    compares it.  A list that begins with a group begins with the group's
    start marker, whose only part is its name (RFC 5957 3, third case; as
    Dovecot sorts C{undisclosed-recipients:;}).
    """
    if value is None:
        return b""
    text = value[:MAX_ADDRESS_TEXT].decode("utf-8", "surrogateescape")
    group = groupName(text)
    if group is not None:
        return group.encode("utf-8", "surrogateescape").upper()
    for entry in addressList(text, 1):
        shown = decodeWords(entry.name).strip() if entry.name else ""
        if not shown:
            local, host = entry.mailbox or "", entry.host or ""
            shown = f"{local}@{host}" if local and host else (local or host)
        return shown.encode("utf-8", "surrogateescape").upper()
    return b""
