"""
The in-memory index of one Maildir folder: one per folder per process,
shared by every session that has the folder open.

It keeps its messages as columns in UID order: machine arrays of UIDs,
flag-set numbers (into a table of the folder's distinct sets of flags),
sizes, dates and mod-sequences, one byte for C{cur/} or C{new/}, the
file name suffixes as numbers (into a table of the folder's distinct
suffixes), and the base names.  A hundred thousand messages cost a few
megabytes, not an object or two per message; a message's L{MessageInfo}
is made when asked for, and a listing for sessions is a copy of the
columns.  An index taken up from a saved one keeps its base names packed
(L{PackedNames}) and makes the base name -> UID mapping and the set of
names in C{new/} only when first asked for: a restart that finds the
directories unchanged makes neither.  Every change is recorded
in a L{ChangeLog} from which sessions catch up.  It touches no file: the
folder applies what its file work found, in the reactor thread.
"""

from __future__ import annotations

import array
import bisect
import itertools
import operator
from collections.abc import Callable, Iterable, Iterator, Sequence, Set

from tmail.interfaces import MessageInfo
from tmail.store.listing import Listing, positionIn
from tmail.store.maildir.changelog import ChangeLog
from tmail.store.packednames import PackedNames

__all__ = ["Entry", "FolderIndex"]

#: Turns the C{cur/} column into one that is true for messages in C{new/}.
_IN_NEW = bytes([1]) + bytes(255)


class Entry:
    """
    One message of a L{FolderIndex}, by UID: where its file is and what
    the index knows of it, read from (and written to) the columns.  Once
    the message is removed from the index, using it raises C{KeyError}.
    """

    __slots__ = ("_index", "uid")

    def __init__(self, index: FolderIndex, uid: int) -> None:
        self._index = index
        self.uid = uid

    @property
    def subdir(self) -> str:
        return "cur" if self._index.inCur[self._index.positionOf(self.uid)] else "new"

    @property
    def filename(self) -> str:
        index = self._index
        position = index.positionOf(self.uid)
        return index.bases[position] + index.suffixAt(position)

    @property
    def key(self) -> str:
        return self._index.bases[self._index.positionOf(self.uid)]

    @property
    def info(self) -> MessageInfo:
        return self._index.infoAt(self._index.positionOf(self.uid))

    @info.setter
    def info(self, info: MessageInfo) -> None:
        self._index.update(self.uid, info.flags, info.modseq, info.recent)


class FolderIndex:
    """
    The messages of a folder as this process knows them.

    @ivar uids: the UIDs, ascending; the other columns are in their order.
    @ivar inCur: 1 for a message in C{cur/}, 0 for one in C{new/}.
    @ivar bases: the base names (a list once changed, L{PackedNames} before).
    @ivar suffixIds: what follows each base name in its file name, as a
        position in L{suffixTable}.
    @ivar flagIds: each message's set of flags, as a position in L{flagTable}.
    @ivar recent: the UIDs of the messages still recent for a session to claim.
    @ivar snapshot: the listing of the current state, once made (L{listing}).
    @ivar changes: every change, for sessions catching up.
    @ivar unsaved: changes since the index was last saved or restored.
    """

    def __init__(self) -> None:
        self.changes = ChangeLog()
        self._empty()

    def clear(self) -> None:
        """Forget every message; sessions' serials from before become too old."""
        self._empty()
        self.changes.forget()

    def _empty(self) -> None:
        self.uids = array.array("q")
        self.inCur = bytearray()
        self.bases: list[str] | PackedNames = []
        self.suffixIds = array.array("I")
        self.suffixTable: list[str] = []
        self.flagIds = array.array("I")
        self.sizes = array.array("q")
        self.dates = array.array("d")
        self.modseqs = array.array("q")
        self.flagTable: list[frozenset[str]] = []
        self._flagIdOf: dict[frozenset[str], int] = {}
        self._suffixIdOf: dict[str, int] = {}
        self._byBase: dict[str, int] | None = {}
        self._newBases: set[str] | None = set()
        self.recent: set[int] = set()
        self.snapshot: Listing | None = None
        self.unsaved = 0

    def __len__(self) -> int:
        return len(self.uids)

    def __contains__(self, uid: int) -> bool:
        return self.position(uid) >= 0

    def position(self, uid: int) -> int:
        """The position of C{uid} in the columns, -1 when it is not indexed."""
        return positionIn(self.uids, uid)

    def positionOf(self, uid: int) -> int:
        """The position of C{uid}; C{KeyError} when it is not indexed."""
        position = self.position(uid)
        if position < 0:
            raise KeyError(uid)
        return position

    def entry(self, uid: int) -> Entry:
        """The entry of an indexed message; C{KeyError} when it is not indexed."""
        self.positionOf(uid)
        return Entry(self, uid)

    def get(self, uid: int) -> Entry | None:
        return Entry(self, uid) if self.position(uid) >= 0 else None

    def flagId(self, flags: frozenset[str]) -> int:
        """The number of a set of flags in L{flagTable}."""
        number = self._flagIdOf.get(flags)
        if number is None:
            number = self._flagIdOf[flags] = len(self.flagTable)
            self.flagTable.append(flags)
        return number

    def suffixId(self, suffix: str) -> int:
        """The number of a file name suffix in L{suffixTable}."""
        number = self._suffixIdOf.get(suffix)
        if number is None:
            number = self._suffixIdOf[suffix] = len(self.suffixTable)
            self.suffixTable.append(suffix)
        return number

    def suffixAt(self, position: int) -> str:
        """What follows the base name in the file name of the message at C{position}."""
        return self.suffixTable[self.suffixIds[position]]

    @property
    def suffixes(self) -> list[str]:
        """Every message's file name suffix, in UID order (a new list)."""
        return list(map(self.suffixTable.__getitem__, self.suffixIds))

    @property
    def byBase(self) -> dict[str, int]:
        """Base name -> UID, made when first asked for."""
        byBase = self._byBase
        if byBase is None:
            bases = self._listOfBases()
            byBase = self._byBase = dict(zip(bases, self.uids, strict=True))
        return byBase

    @property
    def newBases(self) -> set[str]:
        """The base names of the messages in C{new/}, made when first asked for."""
        newBases = self._newBases
        if newBases is None:
            bases = self.bases
            newBases = self._newBases = {bases[p] for p in _zeroPositions(self.inCur)}
        return newBases

    def pack(self, names: PackedNames) -> None:
        """
        Keep the base names packed from now on (C{names} are the index's
        base names as they are), and the maps made from them only when
        next asked for: an index built from the directories becomes as
        compact as one taken up from a saved index.
        """
        if len(names) != len(self.uids):
            raise ValueError("one name per message")
        self.bases = names
        self._byBase = None
        self._newBases = None
        self.snapshot = None

    def _listOfBases(self) -> list[str]:
        """The base names as a list, made from the packed ones (once) if need be."""
        bases = self.bases
        if isinstance(bases, PackedNames):
            bases = self.bases = bases.tolist()
        return bases

    def infoAt(self, position: int) -> MessageInfo:
        uid = self.uids[position]
        return MessageInfo(
            uid,
            self.flagTable[self.flagIds[position]],
            self.sizes[position],
            self.dates[position],
            self.bases[position],
            uid in self.recent,
            self.modseqs[position],
        )

    def info(self, uid: int) -> MessageInfo | None:
        """
        What the index knows of message C{uid}: from the current listing
        while there is one (it keeps the messages it made for the next
        look-ups), else made from the columns; no listing is made for it,
        as that would copy every column after each change.
        """
        snapshot = self.snapshot
        if snapshot is not None:
            return snapshot.byUid().get(uid)
        position = self.position(uid)
        return None if position < 0 else self.infoAt(position)

    def flagsAt(self, position: int) -> frozenset[str]:
        return self.flagTable[self.flagIds[position]]

    def listing(self) -> Listing:
        """Every message, in UID order; the same object until something changes."""
        if self.snapshot is None:
            self.snapshot = Listing.fromColumns(
                array.array("q", self.uids),
                array.array("I", self.flagIds),
                self.flagTable,
                array.array("q", self.sizes),
                array.array("d", self.dates),
                self._basesCopy(),
                array.array("q", self.modseqs),
                frozenset(self.recent),
            )
        return self.snapshot

    def _basesCopy(self) -> Sequence[str]:
        """The base names, as a copy the index will not change (packed ones are immutable)."""
        bases = self.bases
        return bases.view() if isinstance(bases, PackedNames) else list(bases)

    def curNames(self) -> Callable[[], Set[str]]:
        """
        A maker of the set of the file names in C{cur/}, from copies of the
        columns taken now: it may run in a file-work thread while the index
        changes.
        """
        inCur, bases = bytes(self.inCur), self._basesCopy()
        suffixIds, table = self.suffixIds[:], list(self.suffixTable)

        def make() -> Set[str]:
            return set(
                map(
                    operator.add,
                    itertools.compress(bases, inCur),
                    map(table.__getitem__, itertools.compress(suffixIds, inCur)),
                )
            )

        return make

    def changed(self, uid: int) -> None:
        """Record a change of C{uid}, and drop the listing."""
        self.changes.changed(uid)
        self.snapshot = None

    def setLocation(self, uid: int, subdir: str, filename: str) -> None:
        """Move message C{uid} to a new file name."""
        position = self.positionOf(uid)
        base = self.bases[position]
        self.suffixIds[position] = self.suffixId(filename[len(base) :])
        cur = subdir == "cur"
        self.inCur[position] = cur
        newBases = self._newBases
        if newBases is not None:
            if cur:
                newBases.discard(base)
            else:
                newBases.add(base)

    def update(
        self, uid: int, flags: frozenset[str], modseq: int, recent: bool | None = None
    ) -> None:
        """Give message C{uid} new flags and mod-sequence (and recent mark)."""
        position = self.positionOf(uid)
        self.flagIds[position] = self.flagId(flags)
        self.modseqs[position] = modseq
        if recent is not None:
            if recent:
                self.recent.add(uid)
            else:
                self.recent.discard(uid)
        self.snapshot = None

    def setModSeq(self, uid: int, modseq: int) -> None:
        self.modseqs[self.positionOf(uid)] = modseq
        self.snapshot = None

    def insert(self, uid: int, subdir: str, filename: str, info: MessageInfo) -> None:
        """Add a message (its base name is C{info.key})."""
        self.unsaved += 1
        base = info.key
        uids = self.uids
        position = len(uids) if not uids or uid > uids[-1] else bisect.bisect_left(uids, uid)
        cur = subdir == "cur"
        uids.insert(position, uid)
        self.inCur.insert(position, cur)
        bases = self.bases
        if isinstance(bases, PackedNames) and position == len(bases):
            bases.append(base)
        else:
            self._listOfBases().insert(position, base)
        self.suffixIds.insert(position, self.suffixId(filename[len(base) :]))
        self.flagIds.insert(position, self.flagId(info.flags))
        self.sizes.insert(position, info.size)
        self.dates.insert(position, info.internaldate)
        self.modseqs.insert(position, info.modseq)
        if self._byBase is not None:
            self._byBase[base] = uid
        if not cur and self._newBases is not None:
            self._newBases.add(base)
        if info.recent:
            self.recent.add(uid)
        self.changed(uid)

    def restore(
        self,
        uids: array.array[int],
        inCur: bytes,
        bases: PackedNames,
        suffixIds: array.array[int],
        suffixTable: list[str],
        suffixFlags: Sequence[frozenset[str]],
        sizes: array.array[int],
        dates: array.array[float],
        modseqs: array.array[int],
        extraFlags: Callable[[str], frozenset[str] | None] | None = None,
    ) -> None:
        """
        Start again from a saved index's columns: C{suffixFlags} are the
        flags of each suffix of C{suffixTable}; C{extraFlags(base)}, when
        given, those a message has on top of its suffix's.
        """
        # In C loops: a saved folder has a hundred thousand messages, and a
        # handful of distinct suffixes and sets of flags.
        self.clear()
        self.uids = uids
        self.inCur = bytearray(inCur)
        self.bases = bases
        self.suffixTable = list(suffixTable)
        self._suffixIdOf = {suffix: number for number, suffix in enumerate(self.suffixTable)}
        if len(self._suffixIdOf) != len(self.suffixTable):
            # The same suffix twice (a writer's mistake): one number for each.
            self.suffixTable, self._suffixIdOf = [], {}
            numbers = [self.suffixId(suffix) for suffix in suffixTable]
            suffixIds = array.array("I", map(numbers.__getitem__, suffixIds))
        self.suffixIds = suffixIds
        flagNumbers = [self.flagId(flags) for flags in suffixFlags]
        if flagNumbers == list(range(len(flagNumbers))):
            self.flagIds = suffixIds[:]
        else:
            self.flagIds = array.array("I", map(flagNumbers.__getitem__, suffixIds))
        if extraFlags is not None:
            for position, base in enumerate(bases):
                if extra := extraFlags(base):
                    self.flagIds[position] = self.flagId(self.flagsAt(position) | extra)
        self.sizes, self.dates, self.modseqs = sizes, dates, modseqs
        self._byBase = None
        self._newBases = None

    def removeAll(self, gone: Iterable[int]) -> list[str]:
        """
        Drop the messages C{gone} (each must be indexed), in one pass over
        the columns; return their base names.
        """
        gone = set(gone)
        if not gone:
            return []
        self.unsaved += len(gone)
        keep = bytes(uid not in gone for uid in self.uids)
        bases = self.bases
        removed = [bases[position] for position in _zeroPositions(keep)]
        for base in removed:
            if self._byBase is not None:
                del self._byBase[base]
            if self._newBases is not None:
                self._newBases.discard(base)
        self.recent -= gone
        self.uids = array.array("q", itertools.compress(self.uids, keep))
        self.inCur = bytearray(itertools.compress(self.inCur, keep))
        self.bases = (
            bases.kept(keep)
            if isinstance(bases, PackedNames)
            else list(itertools.compress(bases, keep))
        )
        self.suffixIds = array.array("I", itertools.compress(self.suffixIds, keep))
        self.flagIds = array.array("I", itertools.compress(self.flagIds, keep))
        self.sizes = array.array("q", itertools.compress(self.sizes, keep))
        self.dates = array.array("d", itertools.compress(self.dates, keep))
        self.modseqs = array.array("q", itertools.compress(self.modseqs, keep))
        for uid in sorted(gone):
            self.changed(uid)
        return removed

    def reflag(self, flagsOf: Callable[[str, str], frozenset[str]]) -> list[int]:
        """
        Take every message's flags again from C{flagsOf(base, file name)}
        (after the keyword letters changed); the UIDs whose flags changed
        get mod-sequence 0.
        """
        self._flagIdOf.clear()
        table, self.flagTable = self.flagTable, []
        changed = []
        suffixes = self.suffixes
        for position, (base, suffix) in enumerate(zip(self.bases, suffixes, strict=True)):
            flags = flagsOf(base, base + suffix)
            if flags != table[self.flagIds[position]]:
                changed.append(self.uids[position])
                self.modseqs[position] = 0
            self.flagIds[position] = self.flagId(flags)
        self.snapshot = None
        return changed


def _zeroPositions(marks: bytes | bytearray) -> Iterator[int]:
    """The positions of the 0 bytes of C{marks}, found in C loops."""
    position = marks.find(0)
    while position >= 0:
        yield position
        position = marks.find(0, position + 1)
