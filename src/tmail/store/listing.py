"""
A folder's listing of its messages, with the figures every session and
STATUS ask of it (UIDs, unseen and recent messages, sizes) worked out once
per listing rather than once per session: a folder returns the same
listing object to every caller until it changes.

A listing keeps its messages as columns (machine arrays of UIDs, flag-set
numbers, sizes, dates and mod-sequences, and the keys), not as one object
per message: a hundred thousand messages cost a few megabytes, and the
L{MessageInfo} of a message is made when it is asked for.  What is asked
of every message at once (the flags of each, the positions of each set of
flags, the counts) is answered from the columns.
"""

from __future__ import annotations

import array
import bisect
import itertools
import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import overload

from tmail.interfaces import MessageInfo

__all__ = ["Listing", "ListingFacts", "byUidOf", "factsOf", "positionIn"]


#: Where the low byte of each item of a C{flagIds} column ("I") sits.
_LOW_BYTE = 0 if sys.byteorder == "little" else 3
#: At most this many distinct sets of flags are grouped by one C pass each.
_GROUPED_IN_C = 16


def _flagBytes(flagIds: array.array[int], tableSize: int) -> bytes | None:
    """
    The flag-set numbers as one byte each, when the table is that small
    (it nearly always is): counted and searched by C{bytes} methods
    instead of a Python loop over a hundred thousand numbers.
    """
    if tableSize > 256:
        return None
    return flagIds.tobytes()[_LOW_BYTE :: flagIds.itemsize]


def positionIn(uids: array.array[int], uid: int) -> int:
    """The position of C{uid} in the ascending C{uids}, -1 when it is not there."""
    position = bisect.bisect_left(uids, uid)
    return position if position < len(uids) and uids[position] == uid else -1


@dataclass(frozen=True, slots=True)
class ListingFacts:
    """
    What a listing holds, counted once.

    @ivar uids: the UIDs, ascending, in listing order (not to be changed:
        shared by every session that selected this listing).
    @ivar flagSets: each distinct set of flags a message has.
    @ivar unseen: messages without C{\\Seen}.
    @ivar firstUnseen: the position of the first of them, -1 when none.
    @ivar recent: the UIDs of the messages marked recent.
    @ivar deleted: messages with C{\\Deleted}, and their total size.
    @ivar size: the total size of all messages.
    """

    uids: array.array[int]
    flagSets: frozenset[frozenset[str]]
    unseen: int
    firstUnseen: int
    recent: frozenset[int]
    deleted: int
    deletedSize: int
    size: int


class Listing(Sequence[MessageInfo]):
    """
    An immutable listing of messages, in UID order, kept as columns; it
    keeps its L{ListingFacts} once counted.
    """

    __slots__ = (
        "_byUid",
        "_dates",
        "_facts",
        "_flagIds",
        "_flagTable",
        "_keys",
        "_modseqs",
        "_positions",
        "_recent",
        "_sizes",
        "_uids",
    )

    def __init__(self, infos: Iterable[MessageInfo] = ()) -> None:
        listed = list(infos)
        table: dict[frozenset[str], int] = {}
        self._setColumns(
            array.array("q", [info.uid for info in listed]),
            array.array("I", [table.setdefault(info.flags, len(table)) for info in listed]),
            tuple(table),
            array.array("q", [info.size for info in listed]),
            array.array("d", [info.internaldate for info in listed]),
            [info.key for info in listed],
            array.array("q", [info.modseq for info in listed]),
            frozenset(info.uid for info in listed if info.recent),
        )

    @classmethod
    def fromColumns(
        cls,
        uids: array.array[int],
        flagIds: array.array[int],
        flagTable: Sequence[frozenset[str]],
        sizes: array.array[int],
        dates: array.array[float],
        keys: Sequence[str],
        modseqs: array.array[int],
        recent: frozenset[int],
    ) -> Listing:
        """
        A listing of these columns (UID order; C{flagIds} index
        C{flagTable}), which it takes as they are: the caller gives it
        copies it will not change.
        """
        listing = cls.__new__(cls)
        listing._setColumns(uids, flagIds, tuple(flagTable), sizes, dates, keys, modseqs, recent)
        return listing

    def _setColumns(
        self,
        uids: array.array[int],
        flagIds: array.array[int],
        flagTable: tuple[frozenset[str], ...],
        sizes: array.array[int],
        dates: array.array[float],
        keys: Sequence[str],
        modseqs: array.array[int],
        recent: frozenset[int],
    ) -> None:
        self._uids = uids
        self._flagIds = flagIds
        self._flagTable = flagTable
        self._sizes = sizes
        self._dates = dates
        self._keys = keys
        self._modseqs = modseqs
        self._recent = recent
        self._facts: ListingFacts | None = None
        self._byUid: _ByUid | None = None
        self._positions: dict[frozenset[str], array.array[int]] | None = None

    def __len__(self) -> int:
        return len(self._uids)

    def _info(self, position: int) -> MessageInfo:
        uid = self._uids[position]
        return MessageInfo(
            uid,
            self._flagTable[self._flagIds[position]],
            self._sizes[position],
            self._dates[position],
            self._keys[position],
            uid in self._recent,
            self._modseqs[position],
        )

    @overload
    def __getitem__(self, index: int) -> MessageInfo: ...

    @overload
    def __getitem__(self, index: slice) -> list[MessageInfo]: ...

    def __getitem__(self, index: int | slice) -> MessageInfo | list[MessageInfo]:
        if isinstance(index, slice):
            return [self._info(position) for position in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self._uids)
        if not 0 <= index < len(self._uids):
            raise IndexError(index)
        return self._info(index)

    def __iter__(self) -> Iterator[MessageInfo]:
        recent = self._recent
        return map(
            MessageInfo,
            self._uids,
            map(self._flagTable.__getitem__, self._flagIds),
            self._sizes,
            self._dates,
            self._keys,
            map(recent.__contains__, self._uids) if recent else itertools.repeat(False),
            self._modseqs,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str | bytes):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=False))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Listing({list(self)!r})"

    @property
    def uids(self) -> array.array[int]:
        """The UIDs, ascending (not to be changed)."""
        return self._uids

    def position(self, uid: int) -> int:
        """The position of C{uid}, -1 when it is not listed."""
        return positionIn(self._uids, uid)

    def flagsAt(self, position: int) -> frozenset[str]:
        """The flags of the message at C{position}."""
        return self._flagTable[self._flagIds[position]]

    def flagsAtPositions(self, positions: Iterable[int]) -> list[frozenset[str]]:
        """The flags of the messages at C{positions}, in C loops."""
        return list(map(self._flagTable.__getitem__, map(self._flagIds.__getitem__, positions)))

    def flagsOf(self, uid: int) -> frozenset[str] | None:
        """The flags of message C{uid}, C{None} when it is not listed."""
        position = self.position(uid)
        return None if position < 0 else self._flagTable[self._flagIds[position]]

    def facts(self) -> ListingFacts:
        facts = self._facts
        if facts is None:
            facts = self._facts = self._count()
        return facts

    def _count(self) -> ListingFacts:
        table = self._flagTable
        marks = _flagBytes(self._flagIds, len(table))
        if marks is None:
            counts = Counter(self._flagIds)
        else:
            counts = Counter(
                {flagId: n for flagId in range(len(table)) if (n := marks.count(flagId))}
            )
        bySet: Counter[frozenset[str]] = Counter()
        for flagId, count in counts.items():
            bySet[table[flagId]] += count
        unseenIds = {flagId for flagId in counts if "\\Seen" not in table[flagId]}
        first = -1
        if unseenIds and marks is not None:
            first = min(marks.find(flagId) for flagId in unseenIds)
        elif unseenIds:
            first = next(i for i, flagId in enumerate(self._flagIds) if flagId in unseenIds)
        deletedIds = {flagId for flagId in counts if "\\Deleted" in table[flagId]}
        deletedSizes = (
            [
                size
                for size, flagId in zip(self._sizes, self._flagIds, strict=False)
                if flagId in deletedIds
            ]
            if deletedIds
            else []
        )
        return ListingFacts(
            uids=self._uids,
            flagSets=frozenset(bySet),
            unseen=sum(counts[flagId] for flagId in unseenIds),
            firstUnseen=first,
            recent=self._recent,
            deleted=len(deletedSizes),
            deletedSize=sum(deletedSizes),
            size=sum(self._sizes),
        )

    def byUid(self) -> Mapping[int, MessageInfo]:
        """UID -> message, answered from the columns (one for every session over this listing)."""
        byUid = self._byUid
        if byUid is None:
            byUid = self._byUid = _ByUid(self)
        return byUid

    def positionsByFlags(self) -> dict[frozenset[str], array.array[int]]:
        """
        Each distinct set of flags -> the positions of the messages that
        have it, ascending; made once and shared by every session over this
        listing, so a search that reads only flags (UNSEEN over a hundred
        thousand messages) takes the positions of the sets that match.
        """
        positions = self._positions
        if positions is None:
            groups = self._groups()
            merged: dict[frozenset[str], array.array[int]] = {}
            for flagId, group in groups.items():
                flags = self._flagTable[flagId]
                if flags in merged:
                    merged[flags] = array.array("q", sorted(itertools.chain(merged[flags], group)))
                else:
                    merged[flags] = group
            positions = self._positions = merged
        return positions

    def _groups(self) -> dict[int, array.array[int]]:
        """Flag-set number -> the positions of the messages that have it."""
        marks = _flagBytes(self._flagIds, len(self._flagTable))
        if marks is not None:
            present = [flagId for flagId in range(len(self._flagTable)) if flagId in marks]
            if len(present) <= _GROUPED_IN_C:
                everyPosition = range(len(marks))
                return {
                    flagId: array.array(
                        "q",
                        itertools.compress(everyPosition, marks.translate(_only(flagId))),
                    )
                    for flagId in present
                }
        groups: dict[int, array.array[int]] = {}
        for position, flagId in enumerate(self._flagIds):
            group = groups.get(flagId)
            if group is None:
                group = groups[flagId] = array.array("q")
            group.append(position)
        return groups


def _only(value: int) -> bytes:
    """A C{bytes.translate} table that keeps C{value} (as 1) and makes every other byte 0."""
    table = bytearray(256)
    table[value] = 1
    return bytes(table)


#: Messages a listing keeps made after a look-up by UID (then it starts over):
#: a FETCH asks for the same message several times, a scan of a large
#: folder asks each once.
_MADE_KEPT = 4096


class _ByUid(Mapping[int, MessageInfo]):
    """
    A listing looked up by UID: a binary search in its UID column, the
    messages made kept for the next look-ups (at most L{_MADE_KEPT}).
    """

    __slots__ = ("_listing", "_made")

    def __init__(self, listing: Listing) -> None:
        self._listing = listing
        self._made: dict[int, MessageInfo] = {}

    def __getitem__(self, uid: int) -> MessageInfo:
        info = self.get(uid)
        if info is None:
            raise KeyError(uid)
        return info

    def get(self, uid: int, default: MessageInfo | None = None) -> MessageInfo | None:  # type: ignore[override]
        made = self._made
        info = made.get(uid)
        if info is None:
            position = self._listing.position(uid)
            if position < 0:
                return default
            if len(made) >= _MADE_KEPT:
                made.clear()
            info = made[uid] = self._listing._info(position)
        return info

    def __contains__(self, uid: object) -> bool:
        return isinstance(uid, int) and self._listing.position(uid) >= 0

    def __iter__(self) -> Iterator[int]:
        return iter(self._listing.uids)

    def __len__(self) -> int:
        return len(self._listing)


def byUidOf(infos: Sequence[MessageInfo]) -> Mapping[int, MessageInfo]:
    """UID -> message of a listing: kept with a L{Listing}, else made now."""
    if isinstance(infos, Listing):
        return infos.byUid()
    return {info.uid: info for info in infos}


def factsOf(infos: Sequence[MessageInfo]) -> ListingFacts:
    """The facts of a listing: kept with a L{Listing}, else counted now."""
    if isinstance(infos, Listing):
        return infos.facts()
    return Listing(infos).facts()
