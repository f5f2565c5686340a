"""
The saved index of a folder (C{tmail-index}): what the next process starts
from instead of stat'ing every message.  Only a cache: anything odd and
the folder is indexed from its directories instead.
"""

from __future__ import annotations

import array
import itertools
import sys
from typing import TypeVar

#: The saved index of a folder: what the next process starts from.
_SAVED_INDEX = "tmail-index"
_SAVED_INDEX_MAGIC = "tmail-index 1"
#: Folders smaller than this are quick to index from scratch: no saved index.
_SAVED_INDEX_MIN = 1000

_SavedColumns = tuple[
    "array.array[int]", bytes, list[str], list[str], "array.array[int]", "array.array[float]"
]


def _parseSavedIndex(raw: bytes, uidValidity: int) -> _SavedColumns | None:
    """
    The columns of a saved index (UIDs, in-cur/ flags, base names, file
    name suffixes, sizes, internal dates), or C{None} when it belongs to
    another UIDVALIDITY, byte order or version.  Raises C{ValueError} (or
    C{IndexError}, C{UnicodeDecodeError}) when it is damaged.
    """
    headerEnd = raw.index(b"\n", 0, 200)
    fields = raw[:headerEnd].decode("ascii").split(" ")
    magic = f"{fields[0]} {fields[1]}"
    if magic != _SAVED_INDEX_MAGIC or fields[2] != sys.byteorder:
        return None
    values = {field[:1]: int(field[1:]) for field in fields[3:]}
    if values["V"] != uidValidity:
        return None
    count, textSize = values["C"], values["T"]
    if count < 0 or textSize < 0:
        raise ValueError("negative size")
    uids, offset = _column(array.array("q"), raw, headerEnd + 1, count)
    sizes, offset = _column(array.array("q"), raw, offset, count)
    dates, offset = _column(array.array("d"), raw, offset, count)
    inCur = raw[offset : offset + count]
    offset += count
    if len(inCur) != count or len(raw) != offset + textSize:
        raise ValueError("wrong length")
    names = raw[offset:].decode("utf-8", "surrogateescape").split("\0") if count else []
    if len(names) != 2 * count:
        raise ValueError("wrong number of names")
    if any(a >= b for a, b in itertools.pairwise([0, *uids])):
        raise ValueError("UIDs out of order")
    if any(not base for base in names[:count]):
        raise ValueError("empty base name")
    return uids, inCur, names[:count], names[count:], sizes, dates


_Number = TypeVar("_Number", int, float)


def _column(
    column: array.array[_Number], raw: bytes, offset: int, count: int
) -> tuple[array.array[_Number], int]:
    """Fill C{column} with C{count} items of C{raw} from C{offset}; return it and where it ended."""
    end = offset + count * column.itemsize
    column.frombytes(raw[offset:end])
    if len(column) != count:
        raise ValueError("short column")
    return column, end
