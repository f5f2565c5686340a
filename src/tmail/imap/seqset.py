# -*- test-case-name: tests.imap.test_imap_seqset -*-
"""
IMAP sequence sets (RFC 3501 9, RFC 9051 9: C{1,3:5,7:*}) as sorted,
merged ranges.

Twisted's L{imap4.MessageSet} merges every new range into its list one at a
time, so C{1,3,5,...,19999} (10,000 ranges, a 54 KB line) costs tens of
seconds; and it keeps C{*} open, so each use walks every range again.  Here
a set is read in one pass, sorted once and merged, with the ranges that end
in C{*} reduced to the two numbers that matter; C{*} is resolved against the
highest number in use when the set is used (L{SequenceSet.resolve}), giving
L{Ranges} that answer membership by bisection.  The number of ranges a
client may write is capped (C{imap.max_sequence_ranges}).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from twisted.mail import imap4

from tmail.config.schema import IMAPSettings
from tmail.imap.parse import MAX_NUMBER, LimitExceeded

__all__ = [
    "EVERY_MESSAGE",
    "MAX_RANGES",
    "Messages",
    "Ranges",
    "SavedResult",
    "SequenceSet",
    "parseSequenceSet",
]

#: The default cap on the ranges of one set (C{imap.max_sequence_ranges}).
MAX_RANGES: int = IMAPSettings.max_sequence_ranges

_STAR = b"*"


def _merge(ordered: Iterable[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """Ranges sorted by their start, with overlapping and adjacent ones joined."""
    merged: list[tuple[int, int]] = []
    for low, high in ordered:
        if merged and low <= merged[-1][1] + 1:
            if high > merged[-1][1]:
                merged[-1] = (merged[-1][0], high)
        else:
            merged.append((low, high))
    return tuple(merged)


class Ranges:
    """
    Disjoint inclusive ranges in ascending order: a sequence set with C{*}
    resolved.  Membership takes a bisection, not a walk over the ranges.
    """

    __slots__ = ("_lows", "ranges")

    def __init__(self, ranges: Sequence[tuple[int, int]]) -> None:
        self.ranges = tuple(ranges)
        self._lows = [low for low, _ in self.ranges]

    def __contains__(self, number: object) -> bool:
        if not isinstance(number, int):
            return False
        i = bisect.bisect_right(self._lows, number) - 1
        return i >= 0 and number <= self.ranges[i][1]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(self.ranges)

    def __len__(self) -> int:
        return len(self.ranges)

    def __repr__(self) -> str:
        return f"Ranges({self.ranges!r})"


@dataclass(frozen=True)
class SequenceSet:
    """
    A parsed sequence set.

    @ivar ranges: the ranges that name numbers only, merged, ascending.
    @ivar star: C{None} when the set does not use C{*}; otherwise the
        smallest and largest numbers written opposite C{*} (C{n:*}), one
        number when they are equal, none for a bare C{*}.  Whatever C{*}
        turns out to be, the ranges ending in it cover one range from the
        smallest of these and C{*} to the largest (RFC 3501 9: C{5:*} with
        4 the highest is C{4:5}).
    """

    ranges: tuple[tuple[int, int], ...] = ()
    star: tuple[int, ...] | None = None

    @classmethod
    def fromNumbers(cls, numbers: Iterable[int]) -> SequenceSet:
        """The set of these numbers."""
        return cls(_merge((n, n) for n in sorted(numbers)))

    def highest(self) -> int:
        """The largest number written in the set (0 if none): what must exist."""
        top = self.ranges[-1][1] if self.ranges else 0
        return max(top, *self.star) if self.star else top

    def resolve(self, last: int) -> Ranges:
        """The set's ranges with C{*} standing for C{last}, the highest number in use."""
        if self.star is None:
            return Ranges(self.ranges)
        numbers = (*self.star, last)
        low, high = min(numbers), max(numbers)
        at = bisect.bisect_left(self.ranges, (low, high))
        return Ranges(_merge([*self.ranges[:at], (low, high), *self.ranges[at:]]))

    def format(self) -> bytes:
        """The set in IMAP syntax; reading it back gives the same set."""
        items = [b"%d" % low if low == high else b"%d:%d" % (low, high) for low, high in self]
        if self.star is not None:
            items.extend(b"%d:*" % n for n in self.star)
            if not self.star:
                items.append(_STAR)
        return b",".join(items)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(self.ranges)


#: C{1:*}: every message.
EVERY_MESSAGE = SequenceSet(star=(1,))


class SavedResult:
    """
    The sequence set C{$} (RFC 5182): the messages the last
    C{SEARCH RETURN (SAVE)} kept, by sequence number or UID alike.
    """


#: What a command's sequence-set argument may be.
Messages = SequenceSet | SavedResult


def _number(text: bytes) -> int | None:
    """A set's number (C{None} for C{*})."""
    if text == _STAR:
        return None
    if not text.isdigit() or len(text) > 10:
        raise imap4.IllegalClientResponse("Invalid sequence set")
    value = int(text)
    if not 0 < value <= MAX_NUMBER:
        raise imap4.IllegalClientResponse("Invalid message number")
    return value


def parseSequenceSet(token: bytes, maxRanges: int = MAX_RANGES) -> SequenceSet:
    """
    Read a sequence set in one pass; sorting and merging the ranges takes
    C{O(n log n)} at most (C{O(n)} for ranges in order, as clients send).

    @raise LimitExceeded: for a set of more than C{maxRanges} ranges.
    @raise imap4.IllegalClientResponse: for anything not a sequence set.
    """
    if token.count(b",") >= maxRanges:
        raise LimitExceeded("Too many ranges in a sequence set")
    plain: list[tuple[int, int]] = []
    starred: list[int] = []
    star = False
    for item in token.split(b","):
        first, colon, second = item.partition(b":")
        low = _number(first)
        high = _number(second) if colon else low
        if low is None or high is None:
            star = True
            other = high if low is None else low
            if other is not None:
                starred.append(other)
        else:
            plain.append((low, high) if low <= high else (high, low))
    plain.sort()
    stars: tuple[int, ...] | None = None
    if star:
        stars = tuple(sorted({min(starred), max(starred)})) if starred else ()
    return SequenceSet(_merge(plain), stars)
