"""
PARTIAL ranges (RFC 9394): a window of a SEARCH or SORT result, or of the
messages a UID FETCH names, counted from the first (C{1:100}) or from the
last (C{-1:-100}) result.

Twisted knows no PARTIAL.  A range names at most the C{2**32 - 1}th
result, as the RFC's C{nz-number} does, so choosing the window costs
nothing more than the slice it returns; a SEARCH asking only for a window
stops once it has found the results the window needs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from twisted.mail import imap4

T = TypeVar("T")

#: The highest result number a range may name (RFC 9051's C{nz-number}).
MAX_POSITION = 2**32 - 1


@dataclass(frozen=True)
class PartialRange:
    """
    A range of result positions, 1-based, from the end when C{fromEnd}.

    @ivar first: the lower of the two positions (counted from its end).
    @ivar last: the higher.
    @ivar text: the range as the client wrote it.
    """

    first: int
    last: int
    fromEnd: bool
    text: bytes

    @property
    def answered(self) -> bytes:
        """
        The range as the answer names it: counted from the first result,
        lower end first (a request of C{4:2} is answered C{2:4}, as for
        C{2:4}); counted from the last, as the client wrote it, where either
        order reads as lower first (C{-1:-3} by position, C{-3:-1} by value).
        """
        return self.text if self.fromEnd else b"%d:%d" % (self.first, self.last)

    @property
    def needed(self) -> int:
        """How many results, from the start (or the end), hold the window."""
        return self.last

    def window(self, results: Sequence[T]) -> Sequence[T]:
        """The results in the window, in the order given."""
        count = len(results)
        if self.fromEnd:
            start, stop = count - self.last, count - self.first + 1
        else:
            start, stop = self.first - 1, self.last
        return results[max(start, 0) : max(min(stop, count), 0)]


def _position(text: bytes, negative: bool) -> int:
    digits = text[1:] if negative else text
    if not (digits.isdigit() and digits.isascii()) or digits[:1] == b"0" or len(digits) > 10:
        raise imap4.IllegalClientResponse("Invalid PARTIAL range")
    value = int(digits)
    if value > MAX_POSITION:
        raise imap4.IllegalClientResponse("Invalid PARTIAL range")
    return value


def parsePartialRange(token: object) -> PartialRange:
    """
    C{m:n} or C{-m:-n} (RFC 9394 4: both ends of one sign, no C{*}, no 0);
    C{500:400} is C{400:500}.  Anything else is BAD.
    """
    if not isinstance(token, bytes) or token.count(b":") != 1:
        raise imap4.IllegalClientResponse("Invalid PARTIAL range")
    low, high = token.split(b":")
    negative = low[:1] == b"-"
    if (high[:1] == b"-") != negative:
        raise imap4.IllegalClientResponse("Invalid PARTIAL range")
    a, b = _position(low, negative), _position(high, negative)
    return PartialRange(min(a, b), max(a, b), negative, token)


def formatPartial(
    partial: PartialRange, numbers: Sequence[int], format: Callable[[list[int]], bytes]
) -> bytes:
    """
    The C{PARTIAL (range set)} return data item; C{NIL} when no result is
    in the window.  C{format} turns the numbers into a set, in their order.
    """
    found = format(list(numbers)) if numbers else b"NIL"
    return b"PARTIAL (%s %s)" % (partial.answered, found)
