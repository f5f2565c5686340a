"""
The RETURN options of an extended SEARCH (RFC 4731, RFC 5182's SAVE) and of
an extended SORT (ESORT, RFC 5267 3), with RFC 5267's CONTEXT and UPDATE and
RFC 9394's PARTIAL, and the ESEARCH response that answers them.

Twisted has no extended SEARCH.  SORT's answer lists the results in sort
order: a range stands only for numbers that ascend one by one (RFC 5267
3.2), so C{ALL 5,4,3} is never written C{5:3}.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from twisted.mail import imap4

from tmail.imap.partial import PartialRange, formatPartial, parsePartialRange
from tmail.imap.structure import quoted

#: Options that name what the ESEARCH response holds.
RESULT_OPTIONS = frozenset({b"MIN", b"MAX", b"ALL", b"COUNT"})
#: Options without an argument, as the client may give them.
_SIMPLE_OPTIONS = RESULT_OPTIONS | {b"SAVE", b"UPDATE", b"CONTEXT"}


def numberSet(numbers: Sequence[int]) -> bytes:
    """C{1:3,7} for 1, 2, 3, 7: numbers in the order given, runs that ascend by one as ranges."""
    parts: list[bytes] = []
    start = previous = -2
    for number in numbers:
        if number == previous + 1:
            previous = number
            continue
        if previous >= 0:
            parts.append(b"%d" % start if start == previous else b"%d:%d" % (start, previous))
        start = previous = number
    if previous >= 0:
        parts.append(b"%d" % start if start == previous else b"%d:%d" % (start, previous))
    return b",".join(parts)


@dataclass(frozen=True)
class ReturnOptions:
    """
    What a SEARCH or SORT with C{RETURN (...)} asked for.

    @ivar names: the options without arguments, upper case (C{MIN}, C{MAX},
        C{ALL}, C{COUNT}, C{SAVE}, C{UPDATE}, C{CONTEXT}).
    @ivar partial: the C{PARTIAL} window, if one was asked for.
    """

    names: frozenset[bytes]
    partial: PartialRange | None = None

    @property
    def update(self) -> bool:
        """Whether the client asked to be told of changes to the result (RFC 5267 4.3)."""
        return b"UPDATE" in self.names

    @property
    def answered(self) -> bool:
        """Whether an ESEARCH response is due (not for C{SAVE} or C{UPDATE} alone)."""
        return bool(self.names & RESULT_OPTIONS) or self.partial is not None

    def scan(self) -> tuple[int | None, bool]:
        """
        How far a SEARCH must look: C{(limit, fromEnd)} when a PARTIAL
        window is all it needs (the first, or last, C{limit} matches),
        C{(None, False)} when it needs every match.
        """
        partial = self.partial
        if partial is None or self.names & {b"COUNT", b"UPDATE"}:
            return None, False
        if b"MIN" in self.names and partial.fromEnd:
            return None, False
        if b"MAX" in self.names and not partial.fromEnd:
            return None, False
        return partial.needed, partial.fromEnd

    def returned(self, results: Sequence[Any]) -> list[Any]:
        """
        The results the response returns, kept by C{SAVE} (RFC 5182 2.4,
        RFC 9394 3.2) and giving the C{MODSEQ} (RFC 7162 3.1.5): all of
        them with ALL or COUNT; else the PARTIAL window and the MIN and MAX
        ones; all of them when none of these is asked for.
        """
        names = self.names
        if names & {b"ALL", b"COUNT"}:
            return list(results)
        if self.partial is None and not names & {b"MIN", b"MAX"}:
            return list(results)
        chosen = list(self.partial.window(results)) if self.partial is not None else []
        if results and b"MIN" in names and results[0] not in chosen:
            chosen.insert(0, results[0])
        if results and b"MAX" in names and results[-1] not in chosen:
            chosen.append(results[-1])
        return chosen


def parseReturnOptions(tokens: list[Any]) -> tuple[ReturnOptions | None, list[Any]]:
    """
    C{RETURN (...)} at the start of a SEARCH's or SORT's arguments, and the
    rest; C{None} when there is none.  An empty list means ALL, as does a
    list of only UPDATE and CONTEXT (the client must learn the result it is
    to be told changes of).  More than one PARTIAL, or PARTIAL with ALL, is
    BAD (RFC 9394 3.1).
    """
    if not tokens or not isinstance(tokens[0], bytes) or tokens[0].upper() != b"RETURN":
        return None, tokens
    if len(tokens) < 2 or not isinstance(tokens[1], list):
        raise imap4.IllegalClientResponse("RETURN needs a list of options")
    names: set[bytes] = set()
    partial: PartialRange | None = None
    given = iter(tokens[1])
    for option in given:
        word = option.upper() if isinstance(option, bytes) else None
        if word == b"PARTIAL":
            if partial is not None:
                raise imap4.IllegalClientResponse("PARTIAL may be given once")
            partial = parsePartialRange(next(given, None))
        elif word in _SIMPLE_OPTIONS:
            names.add(word)
        else:
            raise imap4.IllegalClientResponse("Unknown RETURN option")
    if partial is not None and b"ALL" in names:
        raise imap4.IllegalClientResponse("PARTIAL and ALL cannot be combined")
    if partial is None and not names - {b"UPDATE", b"CONTEXT"}:
        names.add(b"ALL")
    return ReturnOptions(frozenset(names), partial), tokens[2:]


def parseSortReturnOptions(tokens: list[Any]) -> tuple[ReturnOptions | None, list[Any]]:
    """
    L{parseReturnOptions} for SORT: C{RETURN (...)} before the sort
    criteria (RFC 5267 3.2), or else right after the charset
    (C{SORT (ARRIVAL) UTF-8 RETURN (PARTIAL 1:10) ALL}), a placement some
    clients use; no search key is named RETURN, so the line reads one way
    only.  The rest comes back as criteria, charset and search keys.
    """
    options, rest = parseReturnOptions(tokens)
    if options is None and len(rest) > 2:
        late, keys = parseReturnOptions(rest[2:])
        if late is not None:
            return late, rest[:2] + keys
    return options, rest


def esearchResponse(tag: bytes, options: ReturnOptions, hits: Sequence[int], uid: bool) -> bytes:
    """
    An ESEARCH response (RFC 4731 3.1) for C{hits}, in mailbox order for
    SEARCH, in sort order for SORT (RFC 5267 3.1: MIN and MAX are then the
    first and last in that order).
    """
    parts = [b"ESEARCH (TAG %s)" % quoted(tag)]
    if uid:
        parts.append(b"UID")
    names = options.names
    if hits and b"MIN" in names:
        parts.append(b"MIN %d" % hits[0])
    if hits and b"MAX" in names:
        parts.append(b"MAX %d" % hits[-1])
    if hits and b"ALL" in names:
        parts.append(b"ALL " + numberSet(hits))
    if b"COUNT" in names:
        parts.append(b"COUNT %d" % len(hits))
    if options.partial is not None:
        parts.append(formatPartial(options.partial, options.partial.window(hits), numberSet))
    return b" ".join(parts)
