"""
A Maildir folder's index kept in step with its directories, and the
changes found logged under new mod-sequences.

L{DirectorySync} is the part of L{tmail.store.maildir.folder.MaildirFolder}
that looks at C{cur/} and C{new/}: only when their mtimes moved (or they
changed too recently to trust them), listing them then for the messages
that appeared, vanished or were renamed for other flags, by this process
or another.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from tmail.interfaces import MessageInfo
from tmail.store import keywords as _keywords
from tmail.store import modseq as _modseq
from tmail.store.filework import Serial
from tmail.store.flags import infoLetters, sizeFromBase
from tmail.store.heap import releaseFreedMemory
from tmail.store.maildir import savedindex as _savedindex
from tmail.store.maildir import scan as _scan
from tmail.store.maildir.index import Entry, FolderIndex
from tmail.store.uidlist import UidListData, UidListFile

_log = Logger()

T = TypeVar("T")

#: A directory modified this recently may change again within the same
#: mtime tick without its mtime moving, so it is rescanned on the next call.
_UNSETTLED_NS = 2_000_000_000
#: How often such a directory is rescanned while its mtime stays put.
_RESCAN_UNSETTLED_NS = 50_000_000

#: Messages indexed from their files in one look after which the memory
#: that work freed is given back to the system (L{releaseFreedMemory}).
_RELEASE_AFTER = 10_000


class DirectorySync:
    """The directories of a L{tmail.store.maildir.folder.MaildirFolder}, as its index has them."""

    if TYPE_CHECKING:
        _serial: Serial
        _gone: bool
        _uidValidity: int | None
        _knownNext: int
        _indexed: bool
        _dirStamp: tuple[int, int] | None
        _unsettled: bool
        _scannedAt: int
        _index: FolderIndex
        _staleLines: set[str]
        _deliveredUnindexed: set[str]
        _retryUnwrittenAt: float
        _log: _modseq.ModSeqLog
        _touched: set[int]
        _goneUnlogged: list[int]
        _uidlist: UidListFile
        _path: Path
        _newDir: str
        _curDir: str
        _keywords: _keywords.KeywordFile

        def _run(self, function: Callable[..., T], *args: Any) -> Deferred[T]: ...
        async def _open(self) -> None: ...
        def _notify(self) -> None: ...
        def _changed(self, uid: int) -> None: ...
        def _resetIndex(self) -> None: ...
        def _setLocation(self, entry: Entry, subdir: str, filename: str) -> None: ...
        def _insert(self, uid: int, subdir: str, filename: str, info: MessageInfo) -> None: ...
        def _removeAll(self, uids: Iterable[int]) -> list[str]: ...
        async def _currentUidlist(self) -> UidListData: ...
        async def _assignUids(
            self, bases: Iterable[str], strict: bool = True, fields: dict[str, str] | None = None
        ) -> tuple[dict[str, int], bool]: ...
        def _retryUnwritten(self) -> None: ...
        def _flagsOf(self, base: str, filename: str) -> frozenset[str]: ...
        def _reinterpretFlags(self) -> bool: ...
        def _readSavedIndex(self, uidValidity: int | None) -> _savedindex.SavedIndex | None: ...
        async def _loadSavedIndex(
            self, uidValidity: int, preloaded: _savedindex.SavedIndex | None = None
        ) -> _savedindex.DirectoryState | None: ...
        def _directoryState(self) -> _savedindex.DirectoryState: ...

    def _locate(self, base: str) -> tuple[str, str] | None:
        """Find a message file that another process renamed (or moved to C{cur/})."""
        return _scan.locate(self._path, base)

    def _sync(self, force: bool = False) -> Deferred[bool]:
        """
        L{_syncIndex} as an operation of its own, for the store (after it
        moved files into or out of the folder); fires with whether anything
        changed, the listeners told.
        """
        return self._serial.run(self._syncAndNotify, force)

    async def _syncAndNotify(self, force: bool = False) -> bool:
        changed = await self._syncIndex(force)
        if changed:
            self._notify()
        return changed

    async def _syncIndex(self, force: bool = False) -> bool:
        """
        Bring the index up to date with the directories when their mtimes
        moved (or they changed too recently to trust the mtime); return
        whether any message appeared, vanished or changed flags since the
        index was first built.
        """
        if self._gone:
            return False
        await self._open()
        if (
            self._uidlist.unwritten or self._log.unwritten
        ) and time.monotonic() >= self._retryUnwrittenAt:
            await self._run(self._retryUnwritten)
        try:
            stamp = await self._run(self._stamp)
        except FileNotFoundError:
            return self._vanished()
        if (
            not force
            and stamp == self._dirStamp
            and (
                not self._unsettled or time.monotonic_ns() - self._scannedAt < _RESCAN_UNSETTLED_NS
            )
        ):
            return False
        self._dirStamp = stamp
        self._scannedAt = time.monotonic_ns()
        self._unsettled = time.time_ns() - max(stamp) < _UNSETTLED_NS

        wasIndexed = self._indexed
        preloaded = None
        if not self._indexed and self._uidlist.data is None:
            # Starting: the saved index first, so that the uidlist it was
            # saved with need not be read again.
            preloaded = await self._run(self._readSavedIndex, None)
        data = await self._currentUidlist()
        changed = wasIndexed and not self._indexed
        loading = not self._indexed
        saved = await self._loadSavedIndex(data.uidValidity, preloaded) if loading else None
        restored = saved is not None
        wasIndexed |= restored
        if await self._run(self._keywords.refresh):
            changed |= self._reinterpretFlags()
        self._knownNext = data.nextUid

        # A saved index current for the directories as they are needs no
        # listing: no file was added, renamed or removed since it was saved.
        current = saved is not None and saved == await self._run(self._directoryState)
        found, gone = (
            ({}, set())
            if current
            else await self._run(
                _scan.listChanges, self._path, self._index.curNames(), set(self._index.newBases)
            )
        )
        # Uidlist lines of files not indexed and not found: gone too.
        uidlistOnly: dict[str, int] = {}
        if loading:
            if data.made:
                indexed = self._index.byBase
                lines: Iterable[tuple[str, int]] = (
                    (base, uid) for base, uid in data.uids.items() if base not in indexed
                )
            else:
                # Taken up from the saved index, which records them apart
                # (none of their base names is indexed).
                lines = self._uidlist.resumedOthers
            uidlistOnly = {base: uid for base, uid in lines if base not in found}
            gone |= uidlistOnly.keys()
        if gone and not current:
            again = await self._run(_scan.listDirectory, self._path / "cur")
            for base in gone & again.keys():
                found[base] = ("cur", again[base])
            gone -= again.keys()
        moved = await self._run(_scan.moveNewToCur, self._path, found)
        arrived = {base for base in moved if base not in self._index.byBase}

        removed = [
            uid
            for base in gone
            if base not in uidlistOnly and (uid := self._index.byBase.get(base)) is not None
        ]
        self._removeAll(removed)
        self._goneUnlogged += removed
        # A uidlist line whose file is gone, of a message the log never
        # had: numbered and expunged by a process that could log neither
        # (a full disk) before it stopped.
        self._goneUnlogged += [
            uid
            for base, uid in uidlistOnly.items()
            if base in gone and not self._log.mayHaveLogged(uid)
        ]
        if removed:
            changed = True
        self._staleLines |= gone

        for base, (subdir, filename) in found.items():
            known = self._index.byBase.get(base)
            if known is None:
                continue
            index = self._index
            position = index.positionOf(known)
            if index.bases[position] + index.suffixAt(position) != filename:
                flags = self._flagsOf(base, filename)
                if flags != index.flagsAt(position):
                    index.update(known, flags, 0)
                    self._touched.add(known)
                    changed = True
            index.setLocation(known, subdir, filename)

        foreign = False
        indexedNow = 0
        newBases = [base for base in found if base not in self._index.byBase]
        if newBases:
            if len(newBases) > len(data.uids) // 2:
                # Building the index: take the uidlist's own strings as keys,
                # so each base name is kept once, not twice.
                indexed = self._index.byBase
                uids = {b: u for b, u in data.uids.items() if b in found and b not in indexed}
            else:
                uids = {base: data.uids[base] for base in newBases if base in data.uids}
            unassigned = [base for base in newBases if base not in uids]
            if unassigned:
                assigned, foreign = await self._assignUids(unassigned, strict=False)
                uids.update(assigned)
                if self._uidlist.data is None or self._uidlist.data.uidValidity != (
                    self._uidValidity
                ):
                    return await self._syncIndex(force=True) or True
            wanted = [
                (base, *found[base])
                for base in sorted(uids, key=uids.__getitem__)
                if uids[base] not in self._index
            ]
            statuses, complete = await self._run(_scan.statFiles, self._path, wanted)
            if not complete:
                # Still moving: list nothing above it until the next look.
                self._dirStamp = None
            indexedNow = len(statuses)
            for base, subdir, filename, fileSize, mtimeNs in statuses:
                uid = uids[base]
                size = sizeFromBase(base)
                info = MessageInfo(
                    uid=uid,
                    flags=self._flagsOf(base, filename),
                    size=fileSize if size is None else size,
                    internaldate=mtimeNs / 1_000_000_000,
                    key=base,
                    recent=base in arrived or base in self._deliveredUnindexed,
                )
                self._insert(uid, subdir, filename, info)
                self._touched.add(uid)
                changed = True
        self._indexed = True
        self._deliveredUnindexed.clear()
        if loading:
            # Each message keeps the mod-sequence the log has for the letters
            # its file has now; those the log knew that are not here were
            # expunged while no process of ours was looking.
            await self._logChanges(claim=True)
            self._goneUnlogged += self._log.forgetUnclaimed()
        await self._logChanges()
        if indexedNow >= _RELEASE_AFTER:
            await self._run(releaseFreedMemory)
        if foreign:
            # Another process gave out UIDs meanwhile: index its messages
            # now, before anyone sees a higher UID without the lower ones.
            changed |= await self._syncIndex(force=True)
        return changed and wasIndexed and not restored

    def _vanished(self) -> bool:
        """The folder's directory is gone: report its messages as removed."""
        had = bool(self._index.uids)
        self._resetIndex()
        self._uidValidity = None
        self._dirStamp = None
        return had

    async def _entry(self, uid: int) -> Entry:
        """The index entry of C{uid}, indexing the folder first if needed."""
        await self._open()
        if uid not in self._index and await self._syncIndex():
            self._notify()
        return self._index.entry(uid)

    async def _relocate(self, uid: int, entry: Entry) -> None:
        """
        Find C{entry}'s file after another process renamed it; raise
        C{KeyError} when it is gone for good.  A flag change found this way
        is told to the listeners as one found by listing the directory is:
        a session that did not come across it hears of it only so.
        """
        located = await self._run(self._locate, entry.key)
        if located is None:
            self._dirStamp = None
            raise KeyError(uid)
        self._setLocation(entry, *located)
        index = self._index
        position = index.positionOf(uid)
        flags = self._flagsOf(entry.key, entry.filename)
        if flags != index.flagsAt(position):
            index.update(uid, flags, 0)
            self._touched.add(uid)
            await self._logChanges()
            self._notify()

    def _stamp(self) -> tuple[int, int]:
        return _scan.directoryStamp(self._newDir, self._curDir)

    async def _ownChangesEnd(self, current: bool, before: tuple[int, int] | None) -> None:
        """
        After renames and unlinks this process made and mirrored in the
        index, starting from directories still as listed at C{before}
        (C{current}): the next look need not list them again (it does, a
        little later, in case another process changed them within the same
        mtime tick).
        """
        if current and self._dirStamp == before:
            with contextlib.suppress(FileNotFoundError):
                self._dirStamp = await self._run(self._stamp)
                self._unsettled = True

    # Mod-sequences

    async def _logChanges(self, claim: bool = False) -> None:
        """
        Log new and changed messages, and expunges found, under one new
        mod-sequence.  With C{claim} (the log was just loaded), messages
        and expunges the log already has keep their mod-sequences.
        """
        if not self._touched and not self._goneUnlogged:
            return
        index = self._index
        positions = {
            uid: position
            for uid in self._touched
            if (position := index.position(uid)) >= 0 and index.modseqs[position] == 0
        }
        pending = sorted(positions)
        gone = self._goneUnlogged
        if claim:
            unclaimed = []
            for uid in pending:
                position = positions[uid]
                logged = self._log.claim(uid, infoLetters(index.suffixAt(position)[1:]))
                if logged:
                    index.modseqs[position] = logged
                    self._changed(uid)
                else:
                    unclaimed.append(uid)
            pending = unclaimed
            gone = [uid for uid in gone if not self._log.hasExpunged(uid)]
            index.snapshot = None
        changes: list[tuple[int, str | None]] = [(uid, None) for uid in gone]
        changes += [(uid, infoLetters(index.suffixAt(positions[uid])[1:])) for uid in pending]
        self._touched, self._goneUnlogged = set(), []
        if not changes:
            return
        modseq = await self._run(self._log.append, changes)
        for uid in pending:
            if uid in index:
                index.setModSeq(uid, modseq)
                self._changed(uid)
        await self._maybeCompactLog()

    async def _maybeCompactLog(self) -> None:
        index = self._index
        if not self._log.needsCompaction(len(index)):
            return
        letters = [infoLetters(suffix[1:]) for suffix in index.suffixTable]
        states = list(
            zip(index.uids, index.modseqs, map(letters.__getitem__, index.suffixIds), strict=True)
        )
        try:
            await self._run(self._log.compact, states)
        except OSError as e:
            _log.warn(
                "Could not compact the mod-sequences of {folder!r}: {error}", folder=self, error=e
            )
