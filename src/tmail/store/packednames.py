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


class PackedNames(Sequence[str]):
    """
    Names packed in C{block} (each followed by a NUL), the one at position
    C{p} starting at byte C{starts[p]}; C{starts} has one more item, the
    length of the block.
    """

    __slots__ = ("_block", "_made", "_starts")

    def __init__(self, block: bytes | bytearray, starts: array.array[int]) -> None:
        self._block = block
        self._starts = starts
        self._made: list[str] | None = None

    @property
    def block(self) -> bytes | bytearray:
        return self._block

    @property
    def starts(self) -> array.array[int]:
        return self._starts

    def __len__(self) -> int:
        return len(self._starts) - 1

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> list[str]: ...

    def __getitem__(self, index: int | slice) -> str | list[str]:
        if isinstance(index, slice):
            return [self[position] for position in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        starts = self._starts
        return self._block[starts[index] : starts[index + 1] - 1].decode(_ENCODING, _ERRORS)

    def __iter__(self) -> Iterator[str]:
        """Every name, made for this pass only (nothing is kept)."""
        made = self._made
        if made is not None:
            return iter(made)
        return iter(self._block[:-1].decode(_ENCODING, _ERRORS).split("\0") if self._block else [])

    def tolist(self) -> list[str]:
        """
        Every name, in a new list; the strings are made in one pass the
        first time and shared by the lists made after (the index and the
        uidlist of a folder taken up from its saved index keep the same
        strings).
        """
        made = self._made
        if made is None:
            made = self._made = (
                self._block[:-1].decode(_ENCODING, _ERRORS).split("\0") if self._block else []
            )
        return list(made)

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
