# -*- test-case-name: tests.imap.test_imap_pieces -*-
"""
Scans over a message's bytes a bounded piece at a time.

A C function holds the GIL for as long as it runs: C{bytes.find},
C{bytes.count} or a regular expression over 40 MB keeps every other thread
(the reactor's among them) waiting for tens or hundreds of milliseconds,
even when the scan runs in a worker thread.  The helpers here give the
answer of one call over the whole range, with no call over more than
L{PIECE} bytes, so that a worker hands the GIL back between pieces.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

#: Bytes one C call scans at most.
PIECE = 256 * 1024
#: Bytes the first copy of a run scan takes: runs are mostly short, and
#: scanning a whole piece for each of many would be quadratic.
_FIRST = 64


def windows(start: int, end: int, size: int | None = None) -> Iterator[tuple[int, int]]:
    """C{(low, high)} ranges of at most C{size} (L{PIECE}) covering C{start} to C{end}."""
    step = PIECE if size is None else size
    for low in range(start, end, step):
        yield low, min(low + step, end)


def find(data: bytes, sub: bytes, start: int, end: int) -> int:
    """C{data.find(sub, start, end)} for a non-empty C{sub}."""
    assert sub
    end = min(end, len(data))
    reach = len(sub) - 1
    for low, high in windows(start, end):
        at = data.find(sub, low, min(high + reach, end))
        if at >= 0:
            return at
    return -1


def count(data: bytes, byte: bytes, start: int, end: int) -> int:
    """C{data.count(byte, start, end)} for one byte."""
    assert len(byte) == 1
    return sum(data.count(byte, low, high) for low, high in windows(start, end))


def search(
    pattern: re.Pattern[bytes], data: bytes, start: int, end: int, longest: int
) -> re.Match[bytes] | None:
    """
    C{pattern.search(data, start, end)} for a pattern without anchors or
    lookarounds whose matches are at most C{longest} bytes long: each
    window reaches C{longest} past the starts it answers for.
    """
    end = min(end, len(data))
    low = start
    while low < end:
        high = min(low + PIECE + longest - 1, end)
        match = pattern.search(data, low, high)
        if match is not None and (match.start() < low + PIECE or high == end):
            return match
        if high == end:
            return None
        low += PIECE
    return None


def _growing(start: int, end: int) -> Iterator[tuple[int, int]]:
    """
    Ranges from C{start} to C{end}, each twice as long as the one before,
    up to L{PIECE}: a scan that usually stops early copies little.
    """
    size = min(_FIRST, PIECE)
    low = start
    while low < end:
        high = min(low + size, end)
        yield low, high
        low = high
        size = min(2 * size, PIECE)


def runEnd(data: bytes, start: int, end: int, chars: bytes) -> int:
    """Where the run of bytes from C{chars} starting at C{start} ends (at most C{end})."""
    end = min(end, len(data))
    for low, high in _growing(start, end):
        rest = data[low:high].lstrip(chars)
        if rest:
            return high - len(rest)
    return max(start, end)


def runStart(data: bytes, start: int, end: int, chars: bytes) -> int:
    """Where the run of bytes from C{chars} ending at C{end} begins (at least C{start})."""
    high = min(end, len(data))
    size = min(_FIRST, PIECE)
    while high > start:
        low = max(start, high - size)
        rest = data[low:high].rstrip(chars)
        if rest:
            return low + len(rest)
        high = low
        size = min(2 * size, PIECE)
    return start


def cutAfter(data: bytes, low: int, high: int, end: int, byte: bytes = b"\n") -> int:
    """
    Where to end a piece that starts at C{low} and should end near C{high}:
    just after the last C{byte} in the second half of the range, else at
    C{high} (C{end} when that is nearer).
    """
    if high >= end:
        return end
    at = data.rfind(byte, low + (high - low) // 2, high)
    return high if at < 0 else at + 1
