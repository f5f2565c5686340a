# -*- test-case-name: tests.imap.test_imap_objectid -*-
"""
FETCH items of extensions, beside BINARY's: EMAILID and
THREADID (RFC 8474), SAVEDATE (RFC 8514) and PREVIEW with its C{(LAZY)}
modifier (RFC 8970).

L{parseExtendedItems} reads a FETCH item list that holds any of them,
handing every other item to L{tmail.imap.binary.parseFetchItems} (BINARY,
then L{tmail.imap.fetchatt}), in the client's order; L{extraItem} answers one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from twisted.mail import imap4

from tmail.imap.binary import parseFetchItems
from tmail.imap.fetchatt import splitItems
from tmail.imap.message import IMAPMessage
from tmail.imap.mimeentity import MimeLimits
from tmail.imap.objectid import emailIdItem, threadIdItem
from tmail.imap.preview import previewItem
from tmail.imap.savedate import saveDateItem

_NAMES = {b"EMAILID": "emailid", b"THREADID": "threadid", b"SAVEDATE": "savedate"}
_MENTIONS = re.compile(rb"\b(?:EMAILID|THREADID|SAVEDATE|PREVIEW)\b", re.IGNORECASE)
_PREVIEW_MODIFIERS = frozenset({b"LAZY"})

#: The C{type} of the items this module answers.
EXTRA_TYPES = frozenset({"emailid", "threadid", "savedate", "preview"})


@dataclass
class ExtraItem:
    """One EMAILID, THREADID, SAVEDATE or PREVIEW item."""

    type: str
    lazy: bool = False
    #: No partial range: lets code that looks at every item's range skip it.
    partialBegin: None = None


def mentionsExtra(line: bytes) -> bool:
    """Whether a FETCH item list may hold one of these items."""
    return _MENTIONS.search(line) is not None


def parseExtendedItems(line: bytes) -> list[Any]:
    """
    The items of a FETCH item list, these among them.

    @raise imap4.IllegalClientResponse: for a malformed item.
    """
    inner = line.strip(b" ")
    if inner.startswith(b"(") and inner.endswith(b")"):
        inner = inner[1:-1]
    tokens = splitItems(inner)
    items: list[Any] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        word = token.upper()
        i += 1
        if word in _NAMES:
            items.append(ExtraItem(_NAMES[word]))
        elif word == b"PREVIEW":
            item = ExtraItem("preview")
            if i < len(tokens) and tokens[i].startswith(b"("):
                modifiers = tokens[i][1:-1].upper().split()
                if not tokens[i].endswith(b")") or not modifiers:
                    raise imap4.IllegalClientResponse("Invalid PREVIEW modifiers")
                if any(modifier not in _PREVIEW_MODIFIERS for modifier in modifiers):
                    raise imap4.IllegalClientResponse("Unknown PREVIEW modifier")
                item.lazy = True
                i += 1
            items.append(item)
        else:
            items.extend(parseFetchItems(token))
    if not items:
        raise imap4.IllegalClientResponse("Missing FETCH items")
    return items


def extraItem(item: ExtraItem, message: IMAPMessage, scanBytes: int, limits: MimeLimits) -> bytes:
    """The response to one of these items.  Raises C{KeyError} when the message is gone."""
    folder, uid = message.folder, message.info.uid
    if item.type == "emailid":
        return emailIdItem(folder, uid)
    if item.type == "threadid":
        return threadIdItem(folder, uid)
    if item.type == "savedate":
        return saveDateItem(folder, uid)
    return previewItem(message, scanBytes, limits)
