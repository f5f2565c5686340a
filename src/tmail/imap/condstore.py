# -*- test-case-name: tests.imap.test_imap_condstore -*-
"""
The arguments CONDSTORE and QRESYNC (RFC 7162) add to IMAP commands: the
SELECT/EXAMINE parameters, the FETCH modifiers C{CHANGEDSINCE} and
C{VANISHED}, the STORE modifier C{UNCHANGEDSINCE} and the C{MODSEQ} FETCH
item.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from twisted.mail import imap4

from tmail.imap.parse import Tokenizer
from tmail.imap.partial import PartialRange, parsePartialRange
from tmail.imap.seqset import MAX_RANGES, SequenceSet, parseSequenceSet

__all__ = [
    "FetchModifiers",
    "ModSeqItem",
    "QResyncParams",
    "SelectParams",
    "parseFetchModifiers",
    "parseModSeq",
    "parseSelectParams",
    "parseStoreModifiers",
    "splitModSeqItem",
]

#: RFC 7162 mod-sequence-value: 1*DIGIT below 2**63.
_MAX_MODSEQ = 2**63 - 1


class ModSeqItem:
    """The C{MODSEQ} FETCH item, beside Twisted's FETCH item objects."""

    type = "modseq"

    def __repr__(self) -> str:
        return "<ModSeqItem>"


def parseModSeq(token: Any, zero: bool = True) -> int:
    """A mod-sequence value (C{zero}: 0 allowed, as in C{mod-sequence-valzer})."""
    if not isinstance(token, bytes) or not token.isdigit() or len(token) > 19:
        raise imap4.IllegalClientResponse("Invalid mod-sequence")
    value = int(token)
    if value > _MAX_MODSEQ or (value == 0 and not zero):
        raise imap4.IllegalClientResponse("Invalid mod-sequence")
    return value


def _tokens(text: bytes) -> list[Any]:
    tokenizer = Tokenizer()
    if tokenizer.feed(text) is not None:
        raise imap4.IllegalClientResponse("Literals are not allowed here")
    result: list[Any] = tokenizer.result()
    return result


def _parameterList(text: bytes, what: str) -> list[Any]:
    """The one parenthesised list C{text} must be (SELECT parameters, FETCH modifiers)."""
    tokens = _tokens(text)
    if len(tokens) != 1 or not isinstance(tokens[0], list):
        raise imap4.IllegalClientResponse(f"{what} must be one list")
    values: list[Any] = tokens[0]
    return values


@dataclass(frozen=True)
class QResyncParams:
    """
    C{QRESYNC (uidvalidity modseq [known-uids [(seqs uids)]])} of SELECT.
    The sequence match data is parsed (so a malformed one is C{BAD}) but
    not needed: tmail remembers expunges (see L{tmail.interfaces.IModSeqFolder}).
    """

    uidValidity: int
    modseq: int
    knownUids: SequenceSet | None = None


@dataclass(frozen=True)
class SelectParams:
    condstore: bool = False
    qresync: QResyncParams | None = None


def parseSelectParams(line: bytes | None, maxRanges: int = MAX_RANGES) -> SelectParams:
    """
    The optional parameter list after SELECT/EXAMINE's mailbox name; a
    sequence set in it may have C{maxRanges} ranges.
    """
    if not line:
        return SelectParams()
    params = _parameterList(line, "SELECT parameters")
    condstore = False
    qresync = None
    i = 0
    while i < len(params):
        name = params[i]
        if not isinstance(name, bytes):
            raise imap4.IllegalClientResponse("Invalid SELECT parameter")
        name = name.upper()
        if name == b"CONDSTORE":
            condstore = True
            i += 1
        elif name == b"QRESYNC" and i + 1 < len(params) and isinstance(params[i + 1], list):
            qresync = _qresyncParams(params[i + 1], maxRanges)
            i += 2
        else:
            raise imap4.IllegalClientResponse("Unknown SELECT parameter")
    return SelectParams(condstore, qresync)


def _qresyncParams(values: list[Any], maxRanges: int) -> QResyncParams:
    if not 2 <= len(values) <= 4:
        raise imap4.IllegalClientResponse("QRESYNC needs UIDVALIDITY and a mod-sequence")
    validity = values[0]
    if not isinstance(validity, bytes) or not validity.isdigit() or not 0 < int(validity) < 2**32:
        raise imap4.IllegalClientResponse("Invalid UIDVALIDITY")
    modseq = parseModSeq(values[1], zero=False)
    known = None
    rest = values[2:]
    if rest and isinstance(rest[0], bytes):
        known = _uidSet(rest.pop(0), maxRanges)
    if rest:
        match = rest.pop(0)
        if (
            rest
            or not isinstance(match, list)
            or len(match) != 2
            or not all(isinstance(part, bytes) for part in match)
        ):
            raise imap4.IllegalClientResponse("Invalid QRESYNC sequence match data")
        _uidSet(match[0], maxRanges), _uidSet(match[1], maxRanges)
    return QResyncParams(int(validity), modseq, known)


def _uidSet(token: bytes, maxRanges: int) -> SequenceSet:
    if b"*" in token:
        raise imap4.IllegalClientResponse("A known UID set cannot use *")
    return parseSequenceSet(token, maxRanges)


@dataclass(frozen=True)
class FetchModifiers:
    """C{(CHANGEDSINCE n [VANISHED])} after FETCH's items, and C{PARTIAL} (RFC 9394 3.3)."""

    changedSince: int | None = None
    vanished: bool = False
    partial: PartialRange | None = None


#: A modifier list holds one of these; without one there is nothing to split.
_MODIFIER_NAME = re.compile(rb"\((?:CHANGEDSINCE|VANISHED|PARTIAL)\b|\)\s*\(", re.IGNORECASE)


def parseFetchModifiers(line: bytes) -> tuple[bytes, FetchModifiers]:
    """
    Split FETCH's argument into its items and its modifiers.  The items
    are an atom, a C{BODY[...]} or a parenthesised list; whatever list
    follows them holds the modifiers.
    """
    line = line.strip(b" ")
    if _MODIFIER_NAME.search(line) is None:
        return line, FetchModifiers()
    depth = 0
    for i, char in enumerate(line):
        if char in b"([":
            depth += 1
        elif char in b")]":
            depth -= 1
        elif char == 0x20 and depth == 0:
            items, rest = line[:i], line[i:].strip(b" ")
            break
    else:
        return line, FetchModifiers()
    values = _parameterList(rest, "FETCH modifiers")
    changedSince = None
    vanished = False
    partial = None
    i = 0
    while i < len(values):
        name = values[i]
        if not isinstance(name, bytes):
            raise imap4.IllegalClientResponse("Invalid FETCH modifier")
        name = name.upper()
        if name == b"CHANGEDSINCE" and i + 1 < len(values) and changedSince is None:
            changedSince = parseModSeq(values[i + 1])
            i += 2
        elif name == b"VANISHED" and not vanished:
            vanished = True
            i += 1
        elif name == b"PARTIAL" and i + 1 < len(values) and partial is None:
            partial = parsePartialRange(values[i + 1])
            i += 2
        else:
            raise imap4.IllegalClientResponse("Unknown FETCH modifier")
    if vanished and changedSince is None:
        raise imap4.IllegalClientResponse("VANISHED needs CHANGEDSINCE")
    return items, FetchModifiers(changedSince, vanished, partial)


_MODSEQ_ITEM = re.compile(rb"(?<![\w.\[])MODSEQ(?![\w.\[])", re.IGNORECASE)


def splitModSeqItem(items: bytes) -> tuple[bytes, bool]:
    """
    Take the C{MODSEQ} item out of FETCH's items (Twisted's parser does
    not know it); return the rest and whether it was there.  Only a
    C{MODSEQ} outside C{[...]} counts: C{BODY[HEADER.FIELDS (MODSEQ)]} is
    a header name.
    """
    if b"MODSEQ" not in items.upper():
        return items, False
    found = False
    rest = bytearray()
    depth = 0
    i = 0
    while i < len(items):
        char = items[i : i + 1]
        if char == b"[":
            depth += 1
        elif char == b"]":
            depth -= 1
        elif depth == 0 and (match := _MODSEQ_ITEM.match(items, i)) is not None:
            found = True
            i = match.end()
            continue
        rest += char
        i += 1
    if not found:
        return items, False
    text = re.sub(rb" +", b" ", bytes(rest)).replace(b"( ", b"(").replace(b" )", b")").strip()
    return text, True


def parseStoreModifiers(line: bytes) -> tuple[int | None, bytes]:
    """
    C{(UNCHANGEDSINCE n)} at the start of STORE's arguments (after the
    sequence set): the value, and the rest of the line.
    """
    stripped = line.lstrip(b" ")
    if not stripped.startswith(b"("):
        return None, line
    end = stripped.find(b")")
    if end < 0:
        raise imap4.IllegalClientResponse("Unbalanced parentheses")
    values = _tokens(stripped[1:end])
    if len(values) != 2 or not isinstance(values[0], bytes):
        raise imap4.IllegalClientResponse("Invalid STORE modifier")
    if values[0].upper() != b"UNCHANGEDSINCE":
        raise imap4.IllegalClientResponse("Unknown STORE modifier")
    rest = stripped[end + 1 :]
    if rest[:1] != b" ":
        raise imap4.IllegalClientResponse("Missing space after STORE modifiers")
    return parseModSeq(values[1]), rest[1:]
