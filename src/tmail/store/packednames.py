"""
A column of names kept as one encoded block, each name read when asked.

A folder of a hundred thousand messages has as many file base names: as
Python strings they cost about a hundred bytes each and take a while to
make.  A saved index keeps them as one UTF-8 block with the offset where
each starts; L{PackedNames} serves a name by position from that block
without making the others, so a folder taken up from its saved index
makes its names only when something needs all of them (a listing of the
directory after a change).  It is immutable, so a listing may share it.
"""

from __future__ import annotations

import array
import itertools
import operator
from collections.abc import Iterable, Iterator, Sequence
from typing import overload

__all__ = ["PackedNames", "packNames"]

_ENCODING = "utf-8"
_ERRORS = "surrogateescape"


class _Block:
    """The storage a column of packed names shares with its views (it only ever grows)."""

    __slots__ = ("data", "made", "starts")

    def __init__(self, data: bytes | bytearray, starts: array.array[int]) -> None:
        self.data = data
        self.starts = starts
        #: The first names made into strings, shared by every list made after.
        self.made: list[str] = []


class PackedNames(Sequence[str]):
    """
    Names packed in C{block} (each followed by a NUL), the one at position
    C{p} starting at byte C{starts[p]}; C{starts} has one more item, the
    length of the block.  A column may have names appended (L{append});
    a L{view} taken before keeps the names it had, sharing the block.
    """

    __slots__ = ("_isView", "_length", "_shared")

    def __init__(self, block: bytes | bytearray, starts: array.array[int]) -> None:
        self._shared = _Block(block, starts)
        self._length = len(starts) - 1
        self._isView = False

    @property
    def block(self) -> bytes | bytearray:
        """The names' bytes (with those appended after a view was taken)."""
        shared = self._shared
        return shared.data[: shared.starts[self._length]]

    @property
    def starts(self) -> array.array[int]:
        return self._shared.starts[: self._length + 1]

    def view(self) -> PackedNames:
        """These names as they are now, unchanged by later appends (no copy)."""
        view = PackedNames.__new__(PackedNames)
        view._shared, view._length, view._isView = self._shared, self._length, True
        return view

    def append(self, name: str) -> None:
        """Add a name at the end (views taken before do not see it)."""
        encoded = name.encode(_ENCODING, _ERRORS)
        if b"\0" in encoded:
            raise ValueError("a name holds a NUL")
        shared = self._shared
        if self._isView:
            raise ValueError("only the column itself is appended to, not a view")
        if not isinstance(shared.data, bytearray):
            shared.data = bytearray(shared.data)
        shared.data += encoded + b"\0"
        shared.starts.append(len(shared.data))
        self._length += 1

    def __len__(self) -> int:
        return self._length

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> list[str]: ...

    def __getitem__(self, index: int | slice) -> str | list[str]:
        if isinstance(index, slice):
            return [self[position] for position in range(*index.indices(len(self)))]
        if index < 0:
            index += self._length
        if not 0 <= index < self._length:
            raise IndexError(index)
        shared = self._shared
        made = shared.made
        if index < len(made):
            return made[index]
        starts = shared.starts
        return shared.data[starts[index] : starts[index + 1] - 1].decode(_ENCODING, _ERRORS)

    def __iter__(self) -> Iterator[str]:
        """Every name, made for this pass only unless already made."""
        shared, length = self._shared, self._length
        if len(shared.made) >= length:
            return itertools.islice(shared.made, length)
        return iter(self._decode())

    def _decode(self) -> list[str]:
        if not self._length:
            return []
        shared = self._shared
        return shared.data[: shared.starts[self._length] - 1].decode(_ENCODING, _ERRORS).split("\0")

    def tolist(self) -> list[str]:
        """
        Every name, in a new list; the strings are made in one pass the
        first time and shared by the lists made after, from this column or
        its views (the index and the uidlist of a folder taken up from its
        saved index keep the same strings).
        """
        shared, length = self._shared, self._length
        if len(shared.made) < length:
            shared.made = self._decode()
        return shared.made[:length]

    def kept(self, keep: bytes | bytearray) -> PackedNames:
        """
        A new column of the names whose byte in C{keep} is not 0: the
        block copied in pieces around the names dropped, the starts moved
        down in C loops (an expunge of a few messages of a hundred
        thousand makes no string).
        """
        if len(keep) != self._length:
            raise ValueError("one byte per name")
        shared, length = self._shared, self._length
        data, allStarts = shared.data, shared.starts
        pieces: list[bytes | bytearray] = []
        starts = array.array("q")
        shift = previous = 0
        dropped = keep.find(0)
        while True:
            end = length if dropped < 0 else dropped
            if end > previous:
                pieces.append(data[allStarts[previous] : allStarts[end]])
                starts.extend(map(operator.sub, allStarts[previous:end], itertools.repeat(shift)))
            if dropped < 0:
                break
            shift += allStarts[dropped + 1] - allStarts[dropped]
            previous = dropped + 1
            dropped = keep.find(0, previous)
        starts.append(allStarts[length] - shift)
        return PackedNames(bytearray().join(pieces), starts)

    def forget(self) -> None:
        """Drop the strings made (the block is all that is kept)."""
        self._shared.made = []

    def __repr__(self) -> str:
        return f"PackedNames({self.tolist()!r})"


def packNames(names: Iterable[str]) -> PackedNames:
    """The names packed; C{ValueError} when one holds a NUL."""
    listed = list(names)
    text = "".join(name + "\0" for name in listed)
    block = text.encode(_ENCODING, _ERRORS)
    if text.count("\0") != len(listed):
        raise ValueError("a name holds a NUL")
    if len(block) == len(text):
        lengths: Iterable[int] = map(len, listed)
    else:
        lengths = (len(name.encode(_ENCODING, _ERRORS)) for name in listed)
    starts = array.array("q", [0])
    starts.extend(itertools.accumulate(map(operator.add, lengths, itertools.repeat(1))))
    return PackedNames(block, starts)
