"""
Dovecot's C{dovecot-uidlist}: the permanent UID of every message file.

Version 3 (written)::

    3 V<uidvalidity> N<nextuid> G<guid>
    <uid> [<field> ...] :<base name>

Version 1 (Courier's C{courierimapuiddb} layout) is read too.  Lines are
looked up by base name (the file name without its C{:2,} info), so a flag
change by any client keeps the UID.  Dovecot appends lines without updating
C{N}, so the next UID is the larger of C{N} and the last UID plus one.

UIDs given out while the file cannot be written (a full disk, a full quota)
are kept in memory as unwritten lines, on top of what the file says, until
a later write puts them in: a folder stays readable, and its UIDs stay what
clients were told.  Another process does not see them meanwhile; should it
give out UIDs first, the file wins (those messages get new UIDs).
"""

from __future__ import annotations

import itertools
import operator
import os
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tmail.fsutil import fullDiskIsStoreFull, writeAll
from tmail.store.dotlock import DotLock
from tmail.store.flags import splitFilename
from tmail.store.packednames import PackedNames

FILENAME = "dovecot-uidlist"


class UidListData:
    """
    The parsed contents of a uidlist.

    @ivar uids: base name -> UID, in increasing UID order.  Taken up from
        a saved index (L{UidListFile.resume}), it is made the first time it
        is asked for: a restart that finds the folder unchanged never needs
        it.
    @ivar fields: base name -> the extension fields Dovecot wrote on the line
        (kept verbatim so a rewrite does not lose them).
    """

    __slots__ = ("_make", "_uids", "fields", "guid", "nextUid", "uidValidity")

    def __init__(
        self,
        uidValidity: int,
        nextUid: int,
        guid: str,
        uids: dict[str, int] | None = None,
        fields: dict[str, str] | None = None,
    ) -> None:
        self.uidValidity = uidValidity
        self.nextUid = nextUid
        self.guid = guid
        self._uids = {} if uids is None else uids
        self.fields = {} if fields is None else fields
        self._make: Callable[[], dict[str, int]] | None = None

    @classmethod
    def fresh(cls, notBefore: int = 0) -> UidListData:
        """A new, empty uidlist with a time-based UIDVALIDITY above C{notBefore}."""
        return cls(max(int(time.time()), notBefore + 1), 1, uuid.uuid4().hex)

    @classmethod
    def later(
        cls,
        uidValidity: int,
        nextUid: int,
        guid: str,
        make: Callable[[], dict[str, int]],
        fields: dict[str, str],
    ) -> UidListData:
        """Contents whose C{uids} are made by C{make()} when first asked for."""
        data = cls(uidValidity, nextUid, guid, None, fields)
        data._make = make
        return data

    @property
    def made(self) -> bool:
        """Whether C{uids} has been made."""
        return self._make is None

    @property
    def uids(self) -> dict[str, int]:
        make = self._make
        if make is not None:
            self._uids = make()
            self._make = None
        return self._uids

    @uids.setter
    def uids(self, uids: dict[str, int]) -> None:
        self._uids = uids
        self._make = None

    def __repr__(self) -> str:
        return (
            f"UidListData(V{self.uidValidity} N{self.nextUid} G{self.guid}, {len(self.uids)} lines)"
        )


@dataclass(frozen=True, slots=True)
class UidListState:
    """
    Where a uidlist stood when a folder's index was saved with it: what a
    process starting from that index takes up (L{UidListFile.resume})
    instead of reading a hundred thousand lines.

    @ivar stamp: the file's inode, modification time and size.
    @ivar parsedTo: the offset past its last complete line; C{lastLine}: that line.
    @ivar others: the lines (base name, UID) that are not the index's
        messages (expunged ones not yet compacted away, ones not indexed yet).
    @ivar fields: the extension fields of its lines, by base name.
    """

    stamp: tuple[int, int, int]
    parsedTo: int
    lastLine: bytes
    uidValidity: int
    nextUid: int
    guid: str
    others: list[tuple[str, int]]
    fields: dict[str, str]


def parse(text: str) -> UidListData:
    """
    Parse a version 1 or 3 uidlist, ignoring an unterminated last line.
    Raises C{ValueError} when malformed.
    """
    lines = text.split("\n")
    if lines[-1]:
        # A line still being appended (Dovecot appends under its lock).
        lines.pop()
    header = lines[0].split()
    if not header:
        raise ValueError("empty uidlist header")
    if header[0] == "1" and len(header) == 3:
        data = UidListData(int(header[1]), int(header[2]), uuid.uuid4().hex)
        for line in lines[1:]:
            if line:
                uid, _, filename = line.partition(" ")
                _add(data, int(uid), filename, "")
    elif header[0] == "3":
        values = {token[0]: token[1:] for token in header[1:] if token}
        data = UidListData(int(values["V"]), int(values.get("N", "1")), values.get("G", ""))
        if not data.guid:
            data.guid = uuid.uuid4().hex
        _addLines(data, lines[1:])
    else:
        raise ValueError(f"unknown uidlist version {header[0]!r}")
    if data.uidValidity <= 0:
        raise ValueError("uidlist UIDVALIDITY must be positive")
    uids = list(data.uids.values())
    if any(a >= b for a, b in itertools.pairwise(uids)):
        data.uids = dict(sorted(data.uids.items(), key=lambda item: item[1]))
    return data


def _addLines(data: UidListData, lines: list[str]) -> int:
    """
    Add the entries of version 3 uidlist C{lines} to C{data}; return the
    highest UID among them (0 for none).  Raises C{ValueError} when one is
    malformed.
    """
    known, extras = data.uids, data.fields
    highest = 0
    for line in lines:
        if not line:
            continue
        number, _, rest = line.partition(" ")
        extra, colon, filename = rest.partition(":")
        if not colon:
            raise ValueError(f"uidlist line without ':': {line!r}")
        # Inline, as a large folder has a hundred thousand lines; the
        # base names are interned so the folder's index shares them.
        base = sys.intern(filename.partition(":")[0])
        value = int(number)
        if value <= 0 or not base:
            raise ValueError(f"bad uidlist entry {value} {filename!r}")
        known[base] = value
        if extra and (extra := extra.strip()):
            extras[base] = extra
        if value > highest:
            highest = value
    data.nextUid = max(data.nextUid, highest + 1)
    return highest


def _add(data: UidListData, uid: int, filename: str, extra: str) -> None:
    base = splitFilename(filename)[0]
    if uid <= 0 or not base:
        raise ValueError(f"bad uidlist entry {uid} {filename!r}")
    data.uids[base] = uid
    if extra:
        data.fields[base] = extra
    data.nextUid = max(data.nextUid, uid + 1)


def serialize(data: UidListData) -> bytes:
    """
    Serialize C{data} as a version 3 uidlist.  C{data.uids} must be in UID
    order, as L{parse} leaves it and appending new UIDs keeps it.
    """
    out = [f"3 V{data.uidValidity} N{data.nextUid} G{data.guid}\n"]
    for base, uid in data.uids.items():
        extra = data.fields.get(base)
        out.append(f"{uid} {extra} :{base}\n" if extra else f"{uid} :{base}\n")
    return "".join(out).encode("utf-8", "surrogateescape")


@dataclass
class _Unwritten:
    """
    UIDs given out that the file does not have yet.

    @ivar uids: base name -> UID, in UID order.
    @ivar whole: the file itself is missing: C{uids} are all its lines.
    """

    uidValidity: int
    guid: str
    nextUid: int
    uids: dict[str, int]
    whole: bool

    def data(self) -> UidListData:
        return UidListData(self.uidValidity, self.nextUid, self.guid, dict(self.uids))


class UidListFile:
    """
    One folder's uidlist, re-read only when the file on disk changed.

    @ivar data: the contents with the lines still unwritten, or C{None} when
        the file is missing or unreadable (the folder then needs a new
        UIDVALIDITY) and nothing is kept in memory.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: UidListData | None = None
        self._stamp: tuple[int, int, int] | None = None
        self._unwritten: _Unwritten | None = None
        #: The offset just past the last complete line parsed, 0 when the
        #: next change must be read whole.
        self._parsedTo = 0
        #: The last complete line parsed, found again at the same offset
        #: before appended lines are trusted.
        self._lastLine = b""
        #: The lines of a uidlist taken up from a saved index that are not
        #: the index's messages (their base names are not indexed).
        self.resumedOthers: list[tuple[str, int]] = []

    @property
    def unwritten(self) -> bool:
        """Whether UIDs were given out that the file does not have yet."""
        return self._unwritten is not None

    @property
    def mustRewrite(self) -> bool:
        """Whether the next write must create the whole file (it has never been written)."""
        return self._unwritten is not None and self._unwritten.whole

    def lock(self) -> DotLock:
        """The lock writers of this uidlist hold."""
        return DotLock(self.path)

    def moved(self, path: Path) -> None:
        """The folder was renamed: the same file under a new path, read again."""
        self.path = path
        self.invalidate()

    def refresh(self) -> bool:
        """Re-read the file if it changed since the last look; return whether it did."""
        try:
            status = os.stat(self.path)
        except FileNotFoundError:
            if self._unwritten is not None and self._unwritten.whole:
                if self.data is not None:
                    return False
                self.data = self._unwritten.data()
                return True
            changed = self._stamp is not None or self.data is not None
            self._stamp = None
            self.data = None
            self._unwritten = None
            return changed
        stamp = (status.st_ino, status.st_mtime_ns, status.st_size)
        if stamp == self._stamp:
            return False
        if self._readAppended(stamp):
            return True
        data: UidListData | None
        self._parsedTo = 0
        try:
            raw = self.path.read_bytes()
            data = parse(raw.decode("utf-8", "surrogateescape"))
        except FileNotFoundError:
            return self.refresh()
        except (ValueError, KeyError):
            data = None
        else:
            if raw.startswith(b"3 "):
                self._remember(raw)
        self.data = self._withUnwritten(data)
        self._stamp = stamp
        return True

    def state(self, indexed: Mapping[str, int]) -> UidListState | None:
        """
        Where the uidlist stands, for a folder's saved index whose messages
        are C{indexed} (base name -> UID); C{None} when memory holds lines
        the file does not have, or the index a line the uidlist lacks.
        """
        data = self.data
        if data is None or self._unwritten is not None or self._stamp is None:
            return None
        if not self._parsedTo:
            return None
        others = [(base, uid) for base, uid in data.uids.items() if indexed.get(base) != uid]
        if len(data.uids) - len(others) != len(indexed) or any(
            base in indexed for base, _ in others
        ):
            return None
        return UidListState(
            self._stamp,
            self._parsedTo,
            self._lastLine,
            data.uidValidity,
            data.nextUid,
            data.guid,
            others,
            dict(data.fields),
        )

    def resume(self, state: UidListState, bases: Sequence[str], uids: Sequence[int]) -> bool:
        """
        Take the uidlist up as L{state} left it, its lines those of C{state}
        and of the index's messages (C{bases} and C{uids}, in UID order),
        when the file is the same or only had lines appended (which are
        read); C{False}, with nothing taken, otherwise.  The lines are made
        into a mapping only when asked for (L{UidListData.uids}); until
        then, L{resumedOthers} are the lines that are not the index's.
        """
        try:
            status = os.stat(self.path)
        except OSError:
            return False
        stamp = (status.st_ino, status.st_mtime_ns, status.st_size)
        saved = state.stamp
        if stamp[0] != saved[0] or stamp[2] < saved[2] or (stamp[2] == saved[2] and stamp != saved):
            return False
        self._takeUp(state, bases, uids)
        self._unwritten = None
        self._stamp, self._parsedTo, self._lastLine = saved, state.parsedTo, state.lastLine
        if stamp != saved and not self._readAppended(stamp):
            self.invalidate()
            return False
        return True

    def pack(self, state: UidListState, bases: Sequence[str], uids: Sequence[int]) -> bool:
        """
        A folder's index was just saved with L{state} (taken by L{state}
        from the index's C{bases} and C{uids}): keep the lines as a process
        taking them up from that saved index would, made into a mapping
        only when next asked for.  Nothing is done (C{False}) when the
        uidlist changed since.
        """
        data = self.data
        if (
            data is None
            or self._unwritten is not None
            or self._stamp != state.stamp
            or self._parsedTo != state.parsedTo
            or data.uidValidity != state.uidValidity
            or data.nextUid != state.nextUid
            or len(data.uids) != len(bases) + len(state.others)
        ):
            return False
        self._takeUp(state, bases, uids)
        return True

    def _takeUp(self, state: UidListState, bases: Sequence[str], uids: Sequence[int]) -> None:
        """Lines: those of C{state} and the index's (C{bases}, C{uids}), made when asked for."""
        others = list(state.others)
        indexedBases = bases.view() if isinstance(bases, PackedNames) else list(bases)
        indexedUids = uids[:]

        def make() -> dict[str, int]:
            names = indexedBases.tolist() if isinstance(indexedBases, PackedNames) else indexedBases
            known = dict(zip(names, indexedUids, strict=True))
            if others:
                known.update(others)
                known = dict(sorted(known.items(), key=operator.itemgetter(1)))
            return known

        self.data = UidListData.later(
            state.uidValidity, state.nextUid, state.guid, make, dict(state.fields)
        )
        self.resumedOthers = others

    def _readAppended(self, stamp: tuple[int, int, int]) -> bool:
        """
        Another process only appended lines to the file read last (same
        inode, larger): parse just those, as Dovecot reads its uidlist from
        the last offset it knows, instead of the whole file of a large
        folder on every delivery.  Returns C{False} (the caller reads it
        all) when that cannot be told for sure.
        """
        data, previous, start = self.data, self._stamp, self._parsedTo
        if (
            data is None
            or previous is None
            or not start
            or self._unwritten is not None
            or stamp[0] != previous[0]
            or stamp[2] <= previous[2]
        ):
            return False
        known = self._lastLine
        try:
            with open(self.path, "rb") as f:
                if os.fstat(f.fileno()).st_ino != stamp[0]:
                    return False
                f.seek(start - len(known))
                raw = f.read(stamp[2] - start + len(known))
        except OSError:
            return False
        end = raw.rfind(b"\n")
        if not known or not raw.startswith(known) or end < len(known):
            return False
        lines = raw[len(known) : end].decode("utf-8", "surrogateescape").split("\n")
        last = next(reversed(data.uids.values()), 0)
        added = UidListData(data.uidValidity, data.nextUid, data.guid)
        try:
            _addLines(added, lines)
        except ValueError:
            return False
        uids = list(added.uids.values())
        if not uids or uids[0] <= last or any(a >= b for a, b in itertools.pairwise(uids)):
            return False
        if not added.uids.keys().isdisjoint(data.uids):
            return False
        data.uids.update(added.uids)
        data.fields.update(added.fields)
        data.nextUid = max(data.nextUid, added.nextUid)
        self._parsedTo = start - len(known) + end + 1
        self._lastLine = raw[raw.rfind(b"\n", 0, end) + 1 : end + 1]
        self._stamp = stamp
        return True

    def _remember(self, text: bytes, offset: int = 0) -> None:
        """
        C{text}, ending at C{offset} plus its length in the file, is what
        the file holds up to there: appended lines may be read from its
        last complete line on.
        """
        end = text.rfind(b"\n")
        if end < 0:
            self._parsedTo = 0
            return
        self._parsedTo = offset + end + 1
        self._lastLine = text[text.rfind(b"\n", 0, end) + 1 : end + 1]

    def _withUnwritten(self, data: UidListData | None) -> UidListData | None:
        """
        C{data} read from the file, with the unwritten lines added that do
        not clash with it: a base name the file has, or a UID the file has
        passed, was given out by another process meanwhile, and the file
        wins.
        """
        unwritten, self._unwritten = self._unwritten, None
        if unwritten is None:
            return data
        if data is None and unwritten.whole:
            # Unreadable, and still to be replaced by what memory holds.
            self._unwritten = unwritten
            return unwritten.data()
        if data is None or data.uidValidity != unwritten.uidValidity:
            return data
        kept = {}
        for base, uid in unwritten.uids.items():
            if base not in data.uids and uid >= data.nextUid:
                data.uids[base] = uid
                data.nextUid = uid + 1
                kept[base] = uid
        if kept:
            self._unwritten = _Unwritten(
                data.uidValidity, data.guid, data.nextUid, kept, whole=False
            )
        return data

    def write(self, lock: DotLock, data: UidListData) -> None:
        """Replace the file with C{data} (releasing C{lock}) and remember it as current."""
        self._stamp = None
        self._parsedTo = 0
        text = serialize(data)
        status = lock.replace(text)
        self.data = data
        self._unwritten = None
        self._stamp = (status.st_ino, status.st_mtime_ns, status.st_size)
        if status.st_size == len(text):
            self._remember(text)

    def append(self, lock: DotLock, data: UidListData, added: list[tuple[str, int]]) -> None:
        """
        Append lines for newly given UIDs, after those still unwritten, as
        Dovecot does, leaving the header's C{N} behind (readers take the
        larger of C{N} and the last UID plus one), and remember C{data} as
        current.  Cheaper than a rewrite: no copy of every line and no
        fsync.  The message files themselves are already durable; the lines
        survive a crash of the process (they are in the page cache), and the
        next rewrite (after an expunge) is fsynced.  A failed write is cut
        back off, so the file never keeps half a line, and half a line a
        killed writer left (which readers ignore) is cut off before
        appending, so it cannot swallow the first new line.
        """
        pending = list(self._unwritten.uids.items()) if self._unwritten is not None else []
        fields = data.fields
        lines = "".join(
            f"{uid} {fields[base]} :{base}\n" if base in fields else f"{uid} :{base}\n"
            for base, uid in pending + added
        )
        self._stamp = None
        self._parsedTo = 0
        with fullDiskIsStoreFull():
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
            try:
                before = _cutUnterminatedLine(fd, os.fstat(fd).st_size)
                try:
                    writeAll(fd, lines.encode("utf-8", "surrogateescape"))
                except OSError:
                    os.ftruncate(fd, before)
                    raise
                status = os.fstat(fd)
            finally:
                os.close(fd)
        lock.release()
        self.data = data
        self._unwritten = None
        self._stamp = (status.st_ino, status.st_mtime_ns, status.st_size)
        written = lines.encode("utf-8", "surrogateescape")
        if written and status.st_size >= len(written):
            self._remember(written, status.st_size - len(written))

    def keep(self, data: UidListData, added: list[tuple[str, int]], whole: bool) -> None:
        """
        A write of C{data} failed for want of space: keep C{data} as current
        in memory, with the C{added} lines (and those kept before) to be
        written later; with C{whole} (the file is missing or unreadable),
        all of C{data}, to be written as a new file.
        """
        self.data = data
        self._parsedTo = 0
        unwritten = self._unwritten
        if unwritten is not None and unwritten.uidValidity != data.uidValidity:
            unwritten = None
        if unwritten is None:
            uids = dict(data.uids) if whole else {}
            unwritten = _Unwritten(data.uidValidity, data.guid, data.nextUid, uids, whole)
        elif unwritten.whole:
            unwritten.uids = dict(data.uids)
        unwritten.uids.update(added)
        unwritten.nextUid = data.nextUid
        self._unwritten = unwritten

    def invalidate(self) -> None:
        """
        Forget the cached contents, e.g. after a failed write mutated them;
        the next L{refresh} reads the file again, with the unwritten lines.
        """
        self._stamp = None
        self._parsedTo = 0
        self.data = None


def _cutUnterminatedLine(fd: int, size: int) -> int:
    """
    Truncate C{fd} after its last newline when the file does not end with
    one (the lock holder is the only writer, so the tail belongs to a writer
    that died mid-append) and return the size after.
    """
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return size
    end = size
    while end > 0:
        start = max(0, end - 4096)
        newline = os.pread(fd, end - start, start).rfind(b"\n")
        if newline >= 0:
            os.ftruncate(fd, start + newline + 1)
            return start + newline + 1
        end = start
    return size
