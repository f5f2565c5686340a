# -*- test-case-name: tests.imap.test_imap_fetchatt -*-
"""
The FETCH data items of RFC 3501 6.4.5 (RFC 9051 6.4.5), parsed into typed
items: the simple ones (C{FLAGS}, C{UID}, C{ENVELOPE}, ...), the macros
C{ALL}, C{FAST} and C{FULL}, and C{BODY}, C{BODY[section]<partial>} and
C{BODY.PEEK[section]<partial>}.

Twisted parses these with a private class of C{twisted.mail.imap4}; tmail
owns its parser instead, so that it depends on Twisted's public API only,
and follows the grammar more closely: part numbers are non-zero,
C{BODY.PEEK} needs a section, C{HEADER.FIELDS} needs at least one field
name (an atom or a quoted string), and nothing may follow an item but a
space or the end of the list.  The items keep the attribute names the
FETCH code reads (C{type}, C{peek}, C{header}, C{text}, C{mime}, C{empty},
C{part}, C{partialBegin}, C{partialLength}).  BINARY items
(L{tmail.imap.binary}) and the extensions' (L{tmail.imap.fetchitems}) are
parsed beside these.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from twisted.mail import imap4

__all__ = ["BodyItem", "HeaderSection", "SimpleItem", "parseFetchAtt", "parseFetchAtts"]


@dataclass(frozen=True, slots=True)
class SimpleItem:
    """
    An item without a section: C{type} is C{envelope}, C{flags},
    C{internaldate}, C{rfc822header}, C{rfc822text}, C{rfc822size},
    C{rfc822}, C{uid} or C{bodystructure}.
    """

    type: str
    #: No partial range: lets code that looks at every item's range skip it.
    partialBegin: None = None


@dataclass(frozen=True, slots=True)
class HeaderSection:
    """
    C{HEADER} (every field: C{negate} with no C{fields}), C{HEADER.FIELDS}
    or C{HEADER.FIELDS.NOT} (C{negate}), the field names upper-cased.
    """

    fields: tuple[bytes, ...] = ()
    negate: bool = False


@dataclass(frozen=True, slots=True)
class BodyItem:
    """
    C{BODY} (the structure, without extension data), or C{BODY[section]}
    and C{BODY.PEEK[section]} with an optional partial range.

    @ivar part: the part numbers, 0-based (C{1.2} is C{(0, 1)}).
    @ivar empty: C{[]} or C{[1.2]}: the whole message or part.
    """

    peek: bool = False
    header: HeaderSection | None = None
    text: bool = False
    mime: bool = False
    empty: bool = False
    part: tuple[int, ...] = ()
    partialBegin: int | None = None
    partialLength: int | None = None
    type: str = "body"


FetchAtt = SimpleItem | BodyItem

_SIMPLE = {
    b"ENVELOPE": "envelope",
    b"FLAGS": "flags",
    b"INTERNALDATE": "internaldate",
    b"RFC822.HEADER": "rfc822header",
    b"RFC822.TEXT": "rfc822text",
    b"RFC822.SIZE": "rfc822size",
    b"RFC822": "rfc822",
    b"UID": "uid",
    b"BODYSTRUCTURE": "bodystructure",
    b"BODY": "body",
}

_MACROS = {
    b"ALL": ("flags", "internaldate", "rfc822size", "envelope"),
    b"FAST": ("flags", "internaldate", "rfc822size"),
    b"FULL": ("flags", "internaldate", "rfc822size", "envelope", "body"),
}

_NUMBER = rb"[1-9]\d{0,8}"
_FIELD = rb'(?:[^\x00-\x20()"\[\]{\\\x7f]+|"(?:[^"\\\r\n]|\\["\\])*")'
_BODY = re.compile(
    rb"BODY(?P<peek>\.PEEK)?\[(?P<part>" + _NUMBER + rb"(?:\." + _NUMBER + rb")*)?"
    rb"(?:(?:(?<=\[)|(?<=\d)\.)"
    rb"(?:(?P<fieldsKind>HEADER\.FIELDS(?:\.NOT)?) \((?P<fields>"
    + _FIELD
    + rb"(?: +"
    + _FIELD
    + rb")*) *\)|(?P<section>HEADER|TEXT|MIME)))?\]"
    rb"(?:<(?P<begin>\d{1,10})\.(?P<length>\d{1,10})>)?\Z",
    re.IGNORECASE,
)
_FIELD_NAME = re.compile(_FIELD)


def _bad(reason: str) -> imap4.IllegalClientResponse:
    return imap4.IllegalClientResponse(reason)


def _fieldName(name: bytes) -> bytes:
    """A header field name as the FETCH code compares it: unquoted, upper-cased."""
    if name.startswith(b'"'):
        name = re.sub(rb"\\(.)", rb"\1", name[1:-1])
    return name.upper()


def parseFetchAtt(token: bytes) -> list[FetchAtt]:
    """
    One item of a FETCH list (no spaces outside its brackets and
    parentheses): its item, or the items a macro stands for.

    @raise imap4.IllegalClientResponse: for anything else.
    """
    word = token.upper()
    simple = _SIMPLE.get(word)
    if simple == "body":
        return [BodyItem()]
    if simple is not None:
        return [SimpleItem(simple)]
    match = _BODY.match(token)
    if match is None:
        raise _bad("Invalid FETCH item")
    part = tuple(int(p) - 1 for p in match["part"].split(b".")) if match["part"] else ()
    section = (match["section"] or b"").upper()
    header = None
    if match["fieldsKind"] is not None:
        fields = tuple(_fieldName(name) for name in _FIELD_NAME.findall(match["fields"]))
        header = HeaderSection(fields, negate=match["fieldsKind"].upper().endswith(b".NOT"))
    elif section == b"HEADER":
        header = HeaderSection(negate=True)
    if section == b"MIME" and not part:
        raise _bad("MIME needs a part number")
    begin = length = None
    if match["begin"] is not None:
        begin, length = int(match["begin"]), int(match["length"])
        if length == 0:
            raise _bad("Invalid partial range")
    return [
        BodyItem(
            peek=match["peek"] is not None,
            header=header,
            text=section == b"TEXT",
            mime=section == b"MIME",
            empty=header is None and not section,
            part=part,
            partialBegin=begin,
            partialLength=length,
        )
    ]


def parseFetchAtts(line: bytes) -> list[FetchAtt]:
    """
    A whole FETCH item list: a macro, one item, or items in parentheses
    separated by single spaces (as RFC 3501's grammar has it; runs of
    spaces are taken too).

    @raise imap4.IllegalClientResponse: when malformed or empty.
    """
    inner = line.strip(b" ")
    macro = _MACROS.get(inner.upper())
    if macro is not None:
        return [BodyItem() if kind == "body" else SimpleItem(kind) for kind in macro]
    if inner.startswith(b"("):
        if not inner.endswith(b")"):
            raise _bad("Missing )")
        inner = inner[1:-1]
    items: list[FetchAtt] = []
    for token in splitItems(inner):
        items.extend(parseFetchAtt(token))
    if not items:
        raise _bad("Missing FETCH items")
    return items


def splitItems(items: bytes) -> list[bytes]:
    """
    Split a FETCH item list at the spaces outside brackets, parentheses
    and quoted strings; unbalanced brackets or parentheses are malformed.
    """
    tokens: list[bytes] = []
    depth = 0
    start = 0
    quoted = escaped = False
    for i, c in enumerate(items):
        if quoted:
            if escaped:
                escaped = False
            elif c == 0x5C:
                escaped = True
            elif c == 0x22:
                quoted = False
        elif c == 0x22:
            quoted = True
        elif c in b"[(":
            depth += 1
        elif c in b"])":
            depth -= 1
            if depth < 0:
                raise _bad("Unbalanced FETCH items")
        elif c == 0x20 and depth == 0:
            tokens.append(items[start:i])
            start = i + 1
    if depth or quoted:
        raise _bad("Unbalanced FETCH items")
    tokens.append(items[start:])
    return [t for t in tokens if t]
