"""
One Maildir folder: Dovecot-compatible UIDs and flags over C{cur/ new/ tmp/}.

The folder ties its in-memory index to the files.  What the index knows is
answered at once, never from the disk; what needs the disk (L{refresh},
opening, flag changes, expunges, copies, commits) is a coroutine run
through the folder's L{Serial} (one at a time, in the order asked), each
piece of blocking file work awaited through its L{FileWork}: in a thread
pool for a server, where a slow disk or a dot-lock another process holds
delays only the operations waiting on this folder.  The index is changed
only between those awaits, in the reactor thread; the file work touches
the folder's files and their in-memory copies (uidlist, keywords, the
mod-sequence log) but no index.
"""

from __future__ import annotations

import array
import contextlib
import gc
import itertools
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from twisted.internet.defer import Deferred, ensureDeferred, fail, maybeDeferred
from twisted.logger import Logger
from twisted.python.components import registerAdapter
from twisted.python.failure import Failure
from zope.interface import implementer

from tmail.changes import hub as _changes
from tmail.errors import NoSuchFolder, StoreError, StoreFull
from tmail.fsutil import (
    fsyncDirectory,
    fullDiskIsStoreFull,
)
from tmail.interfaces import (
    IFieldCacheFolder,
    IFlagChangingFolder,
    IIncrementalFolder,
    ILinkingFolder,
    IMailFolder,
    IModSeqFolder,
    IObjectIdFolder,
    IPendingMessage,
    IRetainingFolder,
    ISaveDateFolder,
    MessageInfo,
)
from tmail.store import keywords as _keywords
from tmail.store import maildirfields as _maildirfields
from tmail.store import modseq as _modseq
from tmail.store import objectid as _objectid
from tmail.store import uidlist as _uidlist
from tmail.store.filework import INLINE, FileWork, Serial
from tmail.store.flags import (
    KEYWORD_LETTERS,
    canonicalFlag,
    filenameWith,
    infoLetters,
    preservedLetters,
    sizeFromBase,
    splitFilename,
    systemFlags,
    systemLetter,
)
from tmail.store.heap import releaseFreedMemory
from tmail.store.listing import positionIn
from tmail.store.maildir import savedindex as _savedindex
from tmail.store.maildir import scan as _scan
from tmail.store.maildir.index import Entry, FolderIndex
from tmail.store.maildir.pending import (
    _NO_HARD_LINKS,
    _PendingMessage,
    _Placed,
    _placeFile,
    _uniqueName,
)
from tmail.store.maildir.savedindex import _SAVED_INDEX, _SAVED_INDEX_MIN
from tmail.store.packednames import PackedNames, packNames
from tmail.store.quota import MaildirQuota, messageSize
from tmail.store.retained import Reader, RetainedFiles

#: How often an expunge follows a message file other processes keep renaming.
_EXPUNGE_RELOCATIONS = 20

_log = Logger()

T = TypeVar("T")

#: Files left in tmp/ longer than this are debris of a crash (qmail's rule).
TMP_MAX_AGE = 36 * 3600
#: How often an open folder looks for such debris again (Dovecot's interval).
_SWEEP_EVERY = 8 * 3600

#: A directory modified this recently may change again within the same
#: mtime tick without its mtime moving, so it is rescanned on the next call.
_UNSETTLED_NS = 2_000_000_000
#: How often such a directory is rescanned while its mtime stays put.
_RESCAN_UNSETTLED_NS = 50_000_000

_SUBDIRS = _scan.SUBDIRECTORIES
_DELETED_SUFFIX = _scan.DELETED_SUFFIX

#: Deliveries remembered as recent before anyone looked at the folder; past
#: this many the folder is indexed instead.
_MAX_UNINDEXED_DELIVERIES = 10_000

#: Journals of folder renames in progress, in the Maildir's root.
_RENAME_JOURNAL = "tmail-rename"

#: Times a message renamed by other processes is looked for before giving up.
_OPEN_ATTEMPTS = 8

#: Lines of expunged messages a uidlist keeps before it is compacted.
_COMPACT_AT = 64
#: Distinct flag combinations a folder keeps one shared set for.
_FLAG_SETS = 4096

#: Messages indexed from their files in one look after which the memory
#: that work freed is given back to the system (L{releaseFreedMemory}).
_RELEASE_AFTER = 10_000

#: Seconds between attempts to write UIDs a full disk left in memory.
_RETRY_UNWRITTEN = 1.0


def _timeUidValidity(notBefore: int) -> int:
    """A UIDVALIDITY from the clock, for a folder outside any L{MaildirStore}."""
    return max(int(time.time()), notBefore + 1)


def _canonicalFlags(flags: Iterable[str]) -> frozenset[str]:
    """Stored spellings of C{flags}; raises C{ValueError} for unstorable keywords."""
    result = set()
    for flag in flags:
        canonical = canonicalFlag(flag)
        if canonical is None:
            continue
        if not canonical.startswith("\\"):
            _keywords.checkKeyword(canonical)
        result.add(canonical)
    return frozenset(result)


@contextlib.contextmanager
def _noCollection() -> Iterator[None]:
    """
    No garbage collection while a folder's index or log is read: the
    hundred thousand objects made then live as long as the folder and hold
    no cycles, so collecting while making them is wasted work.
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


@implementer(IMailFolder)
@implementer(
    IModSeqFolder, IIncrementalFolder, ILinkingFolder, IFlagChangingFolder, IRetainingFolder
)
@implementer(IObjectIdFolder, ISaveDateFolder)
class MaildirFolder:
    """
    One Maildir folder with Dovecot-compatible UIDs and flags, and
    mod-sequences kept in C{tmail-modseq} (see L{tmail.store.modseq}).

    Keywords get letters a-z through C{dovecot-keywords}; once the 26 letters
    of a folder are taken, further keywords are kept in memory only (per
    message, for the life of this object) rather than refused.

    C{MessageInfo.recent} is true for messages this process delivered or
    moved out of C{new/} (Dovecot's Maildir counts a message recent while
    it is in C{new/}; here the process that moves it on keeps that), until
    the first L{messages} or L{changesSince} call that claims them: the one
    IMAP session that selects the folder read-write and looks first.
    STATUS and EXAMINE look without claiming.

    Obtain folders from L{MaildirStore.getFolder}, which shares one object
    per folder.
    """

    #: The user's quota, set by the store; C{None} keeps none.
    _quota: MaildirQuota | None = None

    def __init__(
        self,
        name: str,
        path: Path,
        newUidValidity: Callable[[int], int] | None = None,
        *,
        fileWork: FileWork = INLINE,
    ) -> None:
        self.name = name
        self._fileWork = fileWork
        #: This folder's operations, one at a time in the order asked.
        self._serial = Serial()
        self._newUidValidity = newUidValidity or _timeUidValidity
        self._listeners: list[Callable[[IMailFolder], None]] = []
        self._opened = False
        self._nextSweep = 0.0
        self._gone = False
        self._uidValidity: int | None = None
        self._knownNext = 0
        self._indexed = False
        self._dirStamp: tuple[int, int] | None = None
        self._unsettled = True
        self._scannedAt = 0
        #: The messages as this process knows them, shared by all sessions.
        self._index = FolderIndex()
        self._staleLines: set[str] = set()
        self._memoryKeywords: dict[str, frozenset[str]] = {}
        self._flagSets: dict[str, frozenset[str]] = {}
        self._deliveredUnindexed: set[str] = set()
        self._retryUnwrittenAt = 0.0
        self._log = _modseq.ModSeqLog(path / _modseq.FILENAME)
        #: UIDs whose entry has modseq 0: new or changed, to be logged.
        self._touched: set[int] = set()
        #: UIDs found gone, whose expunge is still to be logged.
        self._goneUnlogged: list[int] = []
        self._uidlist = _uidlist.UidListFile(path / _uidlist.FILENAME)
        #: Whether the uidlist was last taken up from a saved index.
        self._uidlistResumed = False
        #: Files of messages expunged here that sessions still hold.
        self._retained = RetainedFiles(str(path / "tmp"))
        self._bind(path)

    def __repr__(self) -> str:
        return f"<MaildirFolder {self.name!r} at {str(self._path)!r}>"

    @property
    def path(self) -> Path:
        """The folder's directory; another one after a rename."""
        return self._path

    def _bind(self, path: Path) -> None:
        self._path = path
        self._newDir = str(path / "new")
        self._curDir = str(path / "cur")
        self._retained.tmpDir = str(path / "tmp")
        self._uidlist.moved(path / _uidlist.FILENAME)
        self._keywords = _keywords.KeywordFile(path / _keywords.FILENAME)
        self._log.moved(path / _modseq.FILENAME)
        self._dirStamp = None

    def _moved(self, name: str, path: Path) -> None:
        """Follow a rename of the folder (the files and UIDs stay the same)."""
        self.name = name
        self._bind(path)

    def _markDeleted(self) -> None:
        """The folder was deleted: empty the index and tell the listeners."""
        self._gone = True
        had = bool(self._index.uids)
        self._resetIndex()
        self._log.close()
        if had:
            self._notify()

    def _resetIndex(self) -> None:
        self._retained.forget()
        self._index.clear()
        self._indexed = False
        self._touched = set()
        self._goneUnlogged = []

    def _run(self, function: Callable[..., T], *args: Any) -> Deferred[T]:
        """A piece of file work, where the folder's L{FileWork} runs it."""
        return self._fileWork.run(function, *args)

    async def _open(self) -> None:
        """Create missing subdirectories once; sweep C{tmp/} then and every few hours."""
        if self._gone:
            raise NoSuchFolder(self.name)
        if self._opened:
            if time.monotonic() >= self._nextSweep:
                self._nextSweep = time.monotonic() + _SWEEP_EVERY
                with contextlib.suppress(FileNotFoundError):
                    await self._run(_scan.sweepTemporaries, self._path / "tmp", TMP_MAX_AGE)
            return
        await self._run(_scan.makeSubdirectories, self._path, self.name)
        self._nextSweep = time.monotonic() + _SWEEP_EVERY
        await self._run(_scan.sweepTemporaries, self._path / "tmp", TMP_MAX_AGE)
        self._opened = True

    # Index maintenance

    def _freshUidlist(self) -> _uidlist.UidListData:
        """
        An empty uidlist with a UIDVALIDITY this folder's name never had:
        one recorded under the mail root, or on a disk too full to record
        it, the clock's (which a later claim passes).
        """
        data = _uidlist.UidListData.fresh()
        try:
            data.uidValidity = self._newUidValidity(self._uidValidity or 0)
        except StoreFull:
            data.uidValidity = _timeUidValidity(self._uidValidity or 0)
        return data

    async def _currentUidlist(self) -> _uidlist.UidListData:
        """
        The uidlist, created if missing (in memory while the disk is full).
        A UIDVALIDITY other than the one the index was built on empties the
        index.
        """
        await self._run(self._uidlist.refresh)
        if self._uidlist.data is None:
            unwritten = await self._run(self._createUidlist)
            if unwritten is not None:
                self._keepUnwritten(unwritten, [], whole=True)
        data = self._uidlist.data
        assert data is not None
        if data.uidValidity != self._uidValidity:
            if self._uidValidity is not None:
                self._resetIndex()
            self._uidValidity = data.uidValidity
        return data

    def _createUidlist(self) -> _uidlist.UidListData | None:
        """
        File work: write a fresh uidlist unless another process just did;
        the one to keep in memory when the disk is too full to write it.
        """
        fresh = None
        try:
            with self._uidlist.lock() as lock:
                self._uidlist.refresh()
                if self._uidlist.data is None:
                    fresh = self._freshUidlist()
                    self._uidlist.write(lock, fresh)
        except StoreFull:
            return fresh or self._freshUidlist()
        return None

    async def _assignUids(
        self, bases: Iterable[str], strict: bool = True, fields: dict[str, str] | None = None
    ) -> tuple[dict[str, int], bool]:
        """L{_assignUidsNow} as file work (it waits for the uidlist's lock)."""
        return await self._run(self._assignUidsNow, list(bases), strict, fields)

    def _assignUidsNow(
        self, bases: Iterable[str], strict: bool = True, fields: dict[str, str] | None = None
    ) -> tuple[dict[str, int], bool]:
        """
        File work that changes no index: under the uidlist lock, give UIDs
        to the C{bases} that have none (their lines with the extension
        C{fields} given for them),
        remove the lines of messages found gone, and write the uidlist, with
        the lines a full disk left unwritten before.

        When the disk is full: with C{strict} (a delivery, which must not be
        acknowledged without its UID) L{StoreFull} is raised; otherwise (a
        folder being read) the UIDs are kept in memory, to be written later.

        @return: the UID of each base, and whether another process had
            changed the uidlist since the index last read it.
        """
        lock = self._uidlist.lock()
        try:
            lock.acquire()
        except StoreFull:
            if strict or self._uidlist.data is None:
                raise
            data = self._uidlist.data
            result, added = self._giveUids(data, bases, fields)
            self._keepUnwritten(data, added, whole=self._uidlist.mustRewrite)
            self._knownNext = data.nextUid
            return result, False
        written = False
        try:
            self._uidlist.refresh()
            current = self._uidlist.data
            data = current or self._freshUidlist()
            foreign = data.nextUid != self._knownNext or data.uidValidity != self._uidValidity
            whole = current is None or self._uidlist.mustRewrite
            stale = set(self._staleLines) if whole or self._compactionDue() else set()
            for base in stale:
                data.uids.pop(base, None)
                data.fields.pop(base, None)
            nextBefore = data.nextUid
            result, added = self._giveUids(data, bases, fields)
            hadUnwritten = self._uidlist.unwritten
            try:
                if not whole and not stale:
                    if added or hadUnwritten:
                        self._uidlist.append(lock, data, added)
                else:
                    self._uidlist.write(lock, data)
                written = True
            except StoreFull:
                if strict:
                    for base, _ in added:
                        del data.uids[base]
                        data.fields.pop(base, None)
                    data.nextUid = nextBefore
                    self._uidlist.invalidate()
                    raise
                self._keepUnwritten(data, added, whole)
            except BaseException:
                self._uidlist.invalidate()
                raise
        finally:
            lock.release()
        if written:
            self._staleLines -= stale
            if hadUnwritten:
                _log.info("The UIDs of {folder!r} kept in memory are written", folder=self)
        if foreign:
            self._dirStamp = None
        else:
            self._knownNext = data.nextUid
        return result, foreign

    @staticmethod
    def _giveUids(
        data: _uidlist.UidListData, bases: Iterable[str], fields: dict[str, str] | None = None
    ) -> tuple[dict[str, int], list[tuple[str, int]]]:
        """
        The UID of each of C{bases} in C{data}, giving the next UIDs to
        those without one (with their C{fields}); returns them and the UIDs
        given.
        """
        result = {}
        added = []
        for base in sorted(bases, key=_scan.deliveryOrder):
            uid = data.uids.get(base)
            if uid is None:
                uid = data.nextUid
                data.nextUid += 1
                data.uids[base] = uid
                added.append((base, uid))
                if fields and base in fields:
                    data.fields[base] = fields[base]
            result[base] = uid
        return result, added

    def _keepUnwritten(
        self, data: _uidlist.UidListData, added: list[tuple[str, int]], whole: bool
    ) -> None:
        """
        The disk is full: keep the uidlist, with the UIDs just given, in
        memory (C{whole} when the file is missing or unreadable).
        """
        if not self._uidlist.unwritten:
            _log.warn(
                "Disk full: the UIDs of {folder!r} are kept in memory until they can be written",
                folder=self,
            )
        self._uidlist.keep(data, added, whole)
        self._retryUnwrittenAt = time.monotonic() + _RETRY_UNWRITTEN

    def _retryUnwritten(self) -> None:
        """File work: write what a full disk left in memory, if the disk now takes it."""
        self._retryUnwrittenAt = time.monotonic() + _RETRY_UNWRITTEN
        if self._uidlist.unwritten:
            self._assignUidsNow((), strict=False)
        if self._log.unwritten:
            self._log.append([])

    def _compactionDue(self) -> bool:
        """
        Whether the uidlist has gathered enough lines of expunged messages
        to be worth a rewrite.  Until then they stay, as in Dovecot's own
        uidlists: harmless to every reader, and an expunge costs no copy
        of the whole list.
        """
        return len(self._staleLines) >= max(_COMPACT_AT, len(self._index) // 4)

    def _locate(self, base: str) -> tuple[str, str] | None:
        """Find a message file that another process renamed (or moved to C{cur/})."""
        return _scan.locate(self._path, base)

    def _flagsOf(self, base: str, filename: str) -> frozenset[str]:
        """
        The flags a file name stands for.  One frozenset per distinct info
        part is shared by every message that has it: a large folder has
        a handful of flag combinations, not one set per message.
        """
        info = filename[len(base) + 1 :]
        flags = self._flagSets.get(info)
        if flags is None:
            letters = infoLetters(info)
            found = systemFlags(letters)
            for letter in letters:
                if letter in KEYWORD_LETTERS:
                    name = self._keywords.nameOf(letter)
                    if name is not None:
                        found.add(name)
            flags = frozenset(found)
            if len(self._flagSets) < _FLAG_SETS:
                self._flagSets[info] = flags
        extra = self._memoryKeywords.get(base)
        return flags | extra if extra else flags

    async def _lettersFor(self, base: str, flags: frozenset[str], current: str = "") -> str:
        """
        The info letters for C{flags}, allocating keyword letters as needed
        and keeping the letters of C{current} tmail does not manage.
        """
        letters, inMemory = await self._keywordLetters(flags, current)
        self._keepInMemory(base, inMemory)
        return letters

    async def _keywordLetters(
        self, flags: frozenset[str], current: str = ""
    ) -> tuple[str, frozenset[str]]:
        """
        The info letters for C{flags} (see L{_lettersFor}) once their
        keywords have letters, and the keywords that got none.
        """
        keywords = sorted(flag for flag in flags if not flag.startswith("\\"))
        if keywords:
            renamed = await self._run(self._allocateKeywords, keywords)
            if renamed and self._reinterpretFlags():
                self._notify()
        return self._lettersNow(flags, current)

    def _allocateKeywords(self, keywords: list[str]) -> bool:
        """
        File work: give C{keywords} letters in C{dovecot-keywords}; whether
        letters were renamed by another process meanwhile.
        """
        renamed = self._keywords.refresh()
        renamed |= any(self._keywords.letterOf(k) is None for k in keywords)
        self._keywords.allocate(keywords)
        return renamed

    def _lettersNow(self, flags: frozenset[str], current: str = "") -> tuple[str, frozenset[str]]:
        """The letters of L{_keywordLetters} for keywords already allocated."""
        letters = [letter for flag in flags if (letter := systemLetter(flag)) is not None]
        inMemory = set()
        for keyword in sorted(flag for flag in flags if not flag.startswith("\\")):
            letter = self._keywords.letterOf(keyword)
            if letter is None:
                inMemory.add(keyword)
            else:
                letters.append(letter)
        letters.append(preservedLetters(current))
        letters.extend(
            c for c in current if c in KEYWORD_LETTERS and self._keywords.nameOf(c) is None
        )
        return "".join(letters), frozenset(inMemory)

    def _keepInMemory(self, base: str, keywords: frozenset[str]) -> None:
        """Remember the keywords of C{base} that have no letter."""
        if keywords:
            self._memoryKeywords[base] = keywords
        else:
            self._memoryKeywords.pop(base, None)

    def _setLocation(self, entry: Entry, subdir: str, filename: str) -> None:
        self._index.setLocation(entry.uid, subdir, filename)

    def _insert(self, uid: int, subdir: str, filename: str, info: MessageInfo) -> None:
        self._staleLines.discard(info.key)
        self._index.insert(uid, subdir, filename, info)

    def _removeAll(self, uids: Iterable[int]) -> list[str]:
        """Drop messages from the index; return their base names."""
        bases = self._index.removeAll(uids)
        if self._memoryKeywords:
            for base in bases:
                self._memoryKeywords.pop(base, None)
        return bases

    def _markRecent(self, uid: int) -> None:
        if uid in self._index and uid not in self._index.recent:
            self._index.recent.add(uid)
            self._index.snapshot = None

    def _sync(self, force: bool = False) -> Deferred[bool]:
        """
        L{_syncIndex} as an operation of its own, for the store (after it
        moved files into or out of the folder); fires with whether anything
        changed, the listeners told.
        """
        return self._serial.run(self._syncAndNotify, force)

    def _exclusively(self, function: Callable[..., T], *args: Any) -> Deferred[T]:
        """
        C{function(*args)} in the reactor thread in this folder's turn, once
        the operations asked for before it are done and before those asked
        after start: for the store's changes to the folder itself (a rename,
        a delete) that must not meet file work in progress.
        """

        async def alone() -> T:
            return function(*args)

        return self._serial.run(alone)

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

    def _loadLog(self, uidValidity: int) -> None:
        """File work: read the mod-sequence log."""
        with _noCollection():
            self._log.load(uidValidity)

    # Mod-sequences

    @staticmethod
    def _lettersOf(filename: str) -> str:
        return infoLetters(splitFilename(filename)[1])

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

    # Changes for sessions

    def _changed(self, uid: int) -> None:
        self._index.changed(uid)

    def changeSerial(self) -> int:
        return self._index.changes.serial

    def changesSince(
        self, serial: int, claimRecent: bool = True
    ) -> tuple[int, list[MessageInfo | int] | None]:
        current = self.changeSerial()
        changed = self._index.changes.since(serial)
        if changed is None:
            return current, None
        changes: list[MessageInfo | int] = []
        index = self._index
        for uid in changed:
            info = index.info(uid)
            if info is None:
                changes.append(uid)
                continue
            if info.recent and claimRecent:
                # Recent for the first session told about it, as with messages().
                index.recent.discard(uid)
                index.snapshot = None
            changes.append(info)
        return current, changes

    def refresh(self) -> Deferred[None]:  # type: ignore[override]
        return self._serial.run(self._refresh)

    async def _refresh(self) -> None:
        if await self._syncIndex():
            self._notify()
        await self._maybeSaveIndex()

    def info(self, uid: int) -> MessageInfo | None:
        return self._index.info(uid)

    def messageCount(self) -> int:
        return len(self._index.uids)

    async def _loadSavedIndex(
        self, uidValidity: int, preloaded: _savedindex.SavedIndex | None = None
    ) -> _savedindex.DirectoryState | None:
        """
        Start the index from the one a process saved earlier (see
        L{_saveIndex}); return the state of the directories it was current
        for, or C{None} when there is no usable one (the folder is then
        indexed from scratch).  When the directories changed since, the
        listing that follows finds what changed, as it does for a running
        process.  C{preloaded}: the saved index, already read.
        """
        if preloaded is not None and preloaded.uidValidity == uidValidity:
            saved: _savedindex.SavedIndex | None = preloaded
        else:
            saved = await self._run(self._readSavedIndex, uidValidity)
        resumed = (
            saved is not None
            and saved.log is not None
            and await self._run(self._resumeLog, uidValidity, saved.log)
        )
        if not resumed:
            await self._run(self._loadLog, uidValidity)
        if saved is None:
            return None
        with _noCollection():
            return self._restoreIndex(saved, resumed)

    def _resumeLog(self, uidValidity: int, state: _modseq.LogState) -> bool:
        """File work: read only what the mod-sequence log gained since the index was saved."""
        try:
            with _noCollection():
                return self._log.resume(uidValidity, state)
        except OSError:
            return False

    def _restoreIndex(
        self, saved: _savedindex.SavedIndex, resumed: bool
    ) -> _savedindex.DirectoryState:
        """
        Make the index of the messages of a saved index (see
        L{_loadSavedIndex}); C{resumed}: the mod-sequence log was read only
        from where it stood when the index was saved.
        """
        # Column at a time, in C loops where possible: a saved folder has
        # a hundred thousand messages, and a handful of distinct suffixes.
        # The base names stay packed until something needs them all.
        uids, suffixIds, table = saved.uids, saved.suffixIds, saved.suffixTable
        letters = [infoLetters(suffix[1:]) for suffix in table]
        memory = self._memoryKeywords
        # Messages keep the mod-sequence the log has for the letters they
        # were saved with; the listing that follows finds those changed since.
        if resumed:
            # The saved column is the log up to where it stood; what it
            # gained since is claimed here, or (other letters) when the
            # listing finds the change.
            modseqs = saved.modseqs
            for uid in self._log.resumedUids():
                position = positionIn(uids, uid)
                if position >= 0:
                    modseqs[position] = self._log.claimMatching(uid, letters[suffixIds[position]])
        else:
            modseqs = array.array(
                "q", map(self._log.claimMatching, uids, map(letters.__getitem__, suffixIds))
            )
        touched = set(itertools.compress(uids, _zeros(modseqs)))
        self._index.restore(
            uids,
            saved.inCur,
            saved.bases,
            suffixIds,
            table,
            [self._flagsOf("", suffix) for suffix in table],
            saved.sizes,
            saved.dates,
            modseqs,
            memory.get if memory else None,
        )
        self._touched = touched
        self._indexed = True
        return saved.state

    def _directoryState(self) -> _savedindex.DirectoryState:
        try:
            return _savedindex.directoryState(self._path)
        except OSError:
            return _savedindex.UNKNOWN_STATE

    def _readSavedIndex(self, uidValidity: int | None) -> _savedindex.SavedIndex | None:
        """
        File work: the saved index (of any UIDVALIDITY with C{None}), and
        the keywords its flags are read with; the uidlist is taken up as it
        was saved with the index when it has not changed since, or only had
        lines appended.
        """
        saved = _savedindex.readSavedIndex(self._path, uidValidity)
        if saved is None:
            return None
        self._keywords.refresh()
        state = saved.uidlist
        if self._uidlist.data is None:
            self._uidlistResumed = False
            if state is not None and state.uidValidity == saved.uidValidity:
                with _noCollection():
                    self._uidlistResumed = self._uidlist.resume(state, saved.bases, saved.uids)
        return saved

    async def _saveIndex(self) -> None:
        """
        Save the index for the next process that opens this folder, so a
        restart does not stat every message again (see
        L{tmail.store.maildir.savedindex}).  It is marked current for the
        directories' state when the index mirrors them as they are now and
        they were last listed long enough after they changed that nothing
        can have changed unseen within the same modification time.
        """
        assert self._uidValidity is not None
        state = await self._run(self._directoryState)
        if self._unsettled or self._dirStamp != (state[0], state[2]):
            state = _savedindex.UNKNOWN_STATE
        index = self._index
        serial = index.changes.serial
        names = index.bases if isinstance(index.bases, PackedNames) else packNames(index.bases)
        uidlist = self._uidlist.state(index.byBase)
        data = _savedindex.encodeSavedIndex(
            self._uidValidity,
            state,
            index.uids,
            index.inCur,
            names,
            index.suffixIds,
            index.suffixTable,
            index.sizes,
            index.dates,
            index.modseqs,
            self._log.state(),
            uidlist,
        )
        temporary = self._path / "tmp" / f"{_uniqueName()}.{_SAVED_INDEX}"
        try:
            await self._run(_savedindex.writeSavedIndex, self._path, temporary, data)
        except OSError as e:
            _log.warn("Could not save the index of {folder!r}: {error}", folder=self, error=e)
            return
        self._index.unsaved = 0
        if index is self._index and index.changes.serial == serial:
            # As compact as after a restart: the names packed, the maps made
            # again when next needed (by a listing after a change).
            if uidlist is not None:
                self._uidlist.pack(uidlist, names, index.uids)
            index.pack(names)
        # The encoded copy of a large index (and the strings packed) are freed now.
        await self._run(releaseFreedMemory)

    async def _maybeSaveIndex(self) -> None:
        """Save the index of a large folder when enough has changed since the last save."""
        count = len(self._index)
        if count >= _SAVED_INDEX_MIN and self._index.unsaved >= max(_SAVED_INDEX_MIN, count // 10):
            await self._saveIndex()

    def _reinterpretFlags(self) -> bool:
        """Recompute keyword names after C{dovecot-keywords} changed."""
        self._flagSets.clear()
        changed = self._index.reflag(self._flagsOf)
        self._touched.update(changed)
        return bool(changed)

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

    def _pathOf(self, entry: Entry) -> str:
        index = self._index
        position = index.positionOf(entry.uid)
        directory = self._curDir if index.inCur[position] else self._newDir
        return f"{directory}{os.sep}{index.bases[position]}{index.suffixAt(position)}"

    def _notify(self) -> None:
        _changes.changed(self)
        for listener in list(self._listeners):
            try:
                listener(self)
            except Exception:
                _log.failure(
                    "Listener {listener!r} of {folder!r} failed", listener=listener, folder=self
                )

    # Delivery

    def _recordQuota(self, size: int, count: int) -> None:
        if self._quota is not None:
            self._quota.record(size, count)

    def _quotaSize(self, entry: Entry) -> int:
        """
        The bytes a message counts for in C{maildirsize}: its stored size
        (C{,S=}), as a recount finds it, not the CRLF size of C{,W=}.
        """
        if self._quota is None:
            return 0
        return messageSize(os.path.join(self._path, entry.subdir), entry.filename) or 0

    def _needsKeywordLetters(self, flags: frozenset[str]) -> bool:
        return any(not flag.startswith("\\") for flag in flags)

    def _place(
        self,
        tmpPath: Path,
        flags: frozenset[str],
        crlfSize: int | None = None,
        letters: str | None = None,
    ) -> _Placed:
        """
        File work: move a complete, fsync'ed file from C{tmp/} into C{new/}
        (or C{cur/} with its flags: C{letters}, from L{_keywordLetters}
        when C{flags} has keywords) and fsync that directory.  Touches no
        index, so it may run in a worker thread.  C{crlfSize}, when it
        differs from the file's size (a copy of a file stored with LF line
        ends), is kept in the name as C{,W=}.
        """
        status = os.stat(tmpPath)
        base = f"{tmpPath.name},S={status.st_size}"
        if crlfSize is not None and crlfSize != status.st_size:
            base += f",W={crlfSize}"
        if flags:
            if letters is None:
                letters = self._lettersNow(flags)[0]
            subdir, filename = "cur", filenameWith(base, letters)
        else:
            subdir, filename = "new", base
        target = self._path / subdir / filename
        with fullDiskIsStoreFull():
            _placeFile(tmpPath, target)
        try:
            with fullDiskIsStoreFull():
                fsyncDirectory(self._path / subdir)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(target)
            raise
        self._recordQuota(status.st_size, 1)
        return _Placed(base, subdir, filename, status.st_size, status.st_mtime_ns)

    async def _placeWithKeywords(
        self, tmpPath: Path, flags: frozenset[str], crlfSize: int | None
    ) -> _Placed:
        """L{_place} for flags with keywords, which get their letters first."""
        letters, inMemory = await self._keywordLetters(flags)
        placed = await self._run(self._place, tmpPath, flags, crlfSize, letters)
        self._keepInMemory(placed.base, inMemory)
        return placed

    async def _register(
        self,
        placed: _Placed,
        guid: str | None = None,
        numbered: tuple[int, bool, int] | None = None,
    ) -> int:
        """
        Give a placed file its UID (recording C{guid} as its GUID, for a
        copy), index it and tell the listeners; C{numbered} is what
        L{_numberAndLog} answered for it when the caller had it done.
        """
        await self._open()
        known = self._index.byBase.get(placed.base)
        if known is not None:
            return known
        if numbered is None:
            try:
                numbered = await self._run(
                    self._numberAndLog,
                    placed.base,
                    self._guidFields(placed.base, guid),
                    self._lettersOf(placed.filename) if self._logsWithNumbering() else None,
                )
            except BaseException:
                self._memoryKeywords.pop(placed.base, None)
                raise
        uid, foreign, modseq = numbered
        if self._indexed:
            if foreign:
                await self._syncIndex(force=True)
                self._markRecent(uid)
            elif uid not in self._index:
                # A copy of an LF-only file keeps its CRLF size in ,W=.
                named = sizeFromBase(placed.base)
                info = MessageInfo(
                    uid=uid,
                    flags=self._flagsOf(placed.base, placed.filename),
                    size=placed.size if named is None else named,
                    internaldate=placed.mtimeNs / 1_000_000_000,
                    key=placed.base,
                    recent=True,
                    modseq=modseq,
                )
                self._insert(uid, placed.subdir, placed.filename, info)
                if modseq:
                    self._changed(uid)
                    await self._maybeCompactLog()
                else:
                    self._touched.add(uid)
                    await self._logChanges()
        else:
            self._deliveredUnindexed.add(placed.base)
            if len(self._deliveredUnindexed) > _MAX_UNINDEXED_DELIVERIES:
                await self._syncIndex(force=True)
        self._notify()
        return uid

    def _logsWithNumbering(self) -> bool:
        """
        Whether a new message's letters are logged with its UID: when
        nothing else waits to be logged, one trip to the file work for both.
        """
        return self._indexed and not self._touched and not self._goneUnlogged

    @staticmethod
    def _guidFields(base: str, guid: str | None) -> dict[str, str] | None:
        """The uidlist fields recording C{guid} as the GUID of C{base}, for a copy."""
        return {base: _objectid.withGuid(None, guid)} if guid else None

    def _numberAndLog(
        self, base: str, fields: dict[str, str] | None, letters: str | None
    ) -> tuple[int, bool, int]:
        """
        File work of a delivery's registration: give C{base} its UID and,
        with C{letters} and no other process's UIDs found meanwhile, log it.

        @return: the UID, whether other processes gave out UIDs meanwhile,
            and the mod-sequence logged (0 for none).
        """
        uids, foreign = self._assignUidsNow([base], True, fields)
        uid = uids[base]
        if letters is None or foreign:
            return uid, foreign, 0
        return uid, foreign, self._log.append([(uid, letters)])

    def linkedCopy(self, source: IPendingMessage) -> IPendingMessage:
        if not isinstance(source, _PendingMessage) or not source._writable:
            raise TypeError("a linked copy needs a Maildir message still being written")
        if self._gone:
            raise NoSuchFolder(self.name)
        _scan.makeSubdirectories(self._path, self.name)
        source._flush()
        if source._inserts:
            # The linked copies share the file: it must hold the insertions first.
            assert source._fd is not None
            with fullDiskIsStoreFull():
                source._fd = source._applyInserts(source._fd)
        origin = source._file()
        target = self._path / "tmp" / _uniqueName()
        with fullDiskIsStoreFull():
            try:
                os.link(origin, target)
            except OSError as e:
                if e.errno not in _NO_HARD_LINKS:
                    raise
                shutil.copyfile(origin, target)
        return _PendingMessage(
            self, source._flags, source._internaldate, existing=target, syncExisting=True
        )

    # IMailFolder

    def uidValidity(self) -> int:
        return self._uidValidity or 0

    def uidNext(self) -> int:
        data = self._uidlist.data
        return max(1, self._knownNext if data is None else max(data.nextUid, self._knownNext))

    def messages(self, claimRecent: bool = True) -> Sequence[MessageInfo]:
        snapshot = self._index.listing()
        if self._index.recent and claimRecent:
            self._index.recent.clear()
            self._index.snapshot = None
        return snapshot

    def openMessage(self, uid: int) -> Deferred[BinaryIO]:  # type: ignore[override]
        """
        The message's file.  With nothing else in the folder's turn, the
        file the index names is opened at once, outside the turn, so the
        files a FETCH asks for together are opened side by side; a file
        renamed or removed meanwhile is looked for again in the turn.
        """
        entry = self._index.get(uid)
        if entry is None or not self._opened or self._serial.busy:
            return self._serial.run(self._openMessage, uid)

        def lookAgain(failure: Failure) -> Deferred[BinaryIO]:
            if not isinstance(failure.value, FileNotFoundError):
                return fail(failure)
            return self._serial.run(self._openMessage, uid)

        # Callbacks, not a coroutine: Twisted's coroutine Deferred is part
        # of a reference cycle, one per file opened, left to the garbage
        # collector.
        return self._run(_openForReading, self._pathOf(entry)).addErrback(lookAgain)

    async def _openMessage(self, uid: int) -> BinaryIO:
        if uid not in self._index:
            kept = self._retained.path(uid)
            if kept is not None:
                try:
                    return await self._run(_openForReading, kept)
                except FileNotFoundError:
                    raise KeyError(uid) from None
        entry = await self._entry(uid)
        for _attempt in range(_OPEN_ATTEMPTS):
            try:
                return await self._run(_openForReading, self._pathOf(entry))
            except FileNotFoundError:
                # Renamed by another process (a flag change), maybe again
                # while it was being found: look for it once more.
                await self._relocate(uid, entry)
        raise StoreError(f"message {uid} of {self.name!r} keeps being renamed")

    def beginMessage(
        self, flags: Iterable[str] = (), internaldate: float | None = None
    ) -> IPendingMessage:
        if self._gone:
            raise NoSuchFolder(self.name)
        return _PendingMessage(self, _canonicalFlags(flags), internaldate)

    def setFlags(self, uid: int, flags: Iterable[str]) -> Deferred[MessageInfo]:  # type: ignore[override]
        try:
            wanted = _canonicalFlags(flags)
        except ValueError as e:
            return fail(e)
        return self._serial.run(self._updateFlags, uid, lambda current: wanted)

    def changeFlags(  # type: ignore[override]
        self, uid: int, add: Iterable[str], remove: Iterable[str]
    ) -> Deferred[MessageInfo]:
        try:
            added, removed = _canonicalFlags(add), _canonicalFlags(remove)
        except ValueError as e:
            return fail(e)
        return self._serial.run(self._updateFlags, uid, lambda current: (current | added) - removed)

    async def _updateFlags(
        self, uid: int, change: Callable[[frozenset[str]], frozenset[str]]
    ) -> MessageInfo:
        """
        Rename the message's file to the flags C{change} makes of its
        current ones, taken again from the file found when another process
        renamed it first.
        """
        entry = await self._entry(uid)
        base = entry.key
        modseq = 0
        before = self._dirStamp
        current: bool | None = None
        for _attempt in range(3):
            wanted = change(entry.info.flags)
            letters = infoLetters(splitFilename(entry.filename)[1])
            target = filenameWith(base, await self._lettersFor(base, wanted, letters))
            if entry.subdir == "cur" and target == entry.filename:
                break
            targetLetters = self._lettersOf(target)
            renamed, current, logged, after = await self._run(
                self._renameForFlags,
                uid,
                self._pathOf(entry),
                f"{self._curDir}{os.sep}{target}",
                targetLetters if targetLetters != letters else None,
                before if current is None else None,
                bool(current),
            )
            modseq = logged or modseq
            if not renamed:
                await self._relocate(uid, entry)
                continue
            self._setLocation(entry, "cur", target)
            if after is not None and self._dirStamp == before:
                # Only our own rename moved the directory's mtime: the next
                # look need not list it (it does, a little later, in case
                # another process changed it within the same mtime tick).
                self._dirStamp = after
                self._unsettled = True
            break
        else:
            raise StoreError(f"message {uid} of {self.name!r} keeps being renamed")
        flagsNow = self._flagsOf(base, entry.filename)
        if flagsNow != entry.info.flags and not modseq:
            # Keywords past the 26 letters live in memory: no rename, still a change.
            modseq = await self._run(self._log.append, [(uid, self._lettersOf(entry.filename))])
        # Another process's change of the same message found meanwhile
        # (in _relocate) may have a higher mod-sequence than ours.
        info = replace(entry.info, flags=flagsNow, modseq=max(modseq, entry.info.modseq))
        if info != entry.info:
            entry.info = info
            self._index.snapshot = None
            self._changed(uid)
            self._notify()
            await self._maybeCompactLog()
        return info

    def _renameForFlags(
        self,
        uid: int,
        source: str,
        target: str,
        letters: str | None,
        before: tuple[int, int] | None,
        stampAfter: bool,
    ) -> tuple[bool, bool, int, tuple[int, int] | None]:
        """
        File work of a flag change, in one go: log the new C{letters} (when
        the letters change), then rename C{source} to C{target}.  Logged
        first: a crash before the rename leaves a higher mod-sequence for
        the same flags, never a silent change.  On a full disk the rename
        comes first (it needs no space on most file systems), logged after
        (in memory until the log takes it).

        With C{before}, the directories' stamp the index was listed at, it
        tells first whether they are still as listed; with that (or
        C{stampAfter}), their stamp after the rename, so that the index
        can mirror its own change without listing them again.

        @return: whether the file was there to rename, whether the
            directories were as listed, the mod-sequence logged (0 for
            none) and the stamp after the rename (or C{None}).
        """
        current = stampAfter
        if before is not None:
            try:
                current = self._stamp() == before
            except FileNotFoundError:
                current = False
        modseq = 0
        unlogged = False
        if letters is not None:
            try:
                modseq = self._log.append([(uid, letters)], strict=True)
            except StoreFull:
                unlogged = True
        try:
            _renameFile(source, target)
        except FileNotFoundError:
            return False, current, modseq, None
        if unlogged:
            assert letters is not None
            modseq = self._log.append([(uid, letters)])
        after = None
        if current:
            with contextlib.suppress(FileNotFoundError):
                after = self._stamp()
        return True, current, modseq, after

    def _appendStrictly(self, changes: list[tuple[int, str | None]]) -> int:
        """File work: log C{changes}, raising L{StoreFull} rather than keep them in memory."""
        return self._log.append(changes, strict=True)

    def expunge(self, uids: Iterable[int]) -> Deferred[list[int]]:  # type: ignore[override]
        return self._serial.run(self._expunge, sorted(set(uids)))

    async def _expunge(self, wanted: list[int]) -> list[int]:
        await self._open()
        if any(uid not in self._index for uid in wanted) and await self._syncIndex():
            self._notify()
        present = [uid for uid in wanted if uid in self._index]
        if not present:
            return []
        before = self._dirStamp
        # The files go first when the log refuses (a full disk): deleting
        # frees the space; their expunges are logged after, in memory until
        # the log takes them.
        current, unlogged = await self._run(
            self._logExpunges, [(uid, None) for uid in present], before
        )
        removed: list[int] = []
        freedBytes = freedCount = 0
        # Deleting is what frees space: on a disk that refused a write,
        # nothing is kept for sessions, and what was kept goes too.
        retain = not (unlogged or self._log.unwritten or self._uidlist.unwritten)
        if not retain:
            self._retained.forget()
        index = self._index
        retained = self._retained
        plain: list[tuple[int, Entry]] = []
        missing: list[tuple[int, Entry]] = []
        for uid in present:
            entry = index.entry(uid)
            holders = retained.holders(uid) if retain and retained.readers else set()
            if not holders:
                plain.append((uid, entry))
                continue
            size = self._quotaSize(entry)
            if retained.keep(uid, self._pathOf(entry), entry.key, holders):
                removed.append(uid)
                freedBytes, freedCount = freedBytes + size, freedCount + 1
            else:
                missing.append((uid, entry))
        sizes, after = await self._run(
            self._unlinkFiles,
            [(os.path.join(self._path, entry.subdir), entry.filename) for _, entry in plain],
            self._quota is not None,
            current,
        )
        for (uid, entry), unlinked in zip(plain, sizes, strict=True):
            if unlinked is None:
                missing.append((uid, entry))
            else:
                removed.append(uid)
                freedBytes, freedCount = freedBytes + unlinked, freedCount + 1
        for uid, entry in missing:
            # Renamed by another process (a flag change), perhaps
            # again while it was looked for: follow it until it is
            # removed or gone, or the expunge would be reported while
            # the file stays under its newest name.
            for _ in range(_EXPUNGE_RELOCATIONS):
                located = await self._run(self._locate, entry.key)
                if located is None:
                    break
                self._setLocation(entry, *located)
                size = self._quotaSize(entry)
                try:
                    await self._discard(uid, entry, retain)
                except FileNotFoundError:
                    continue
                freedBytes, freedCount = freedBytes + size, freedCount + 1
                break
            else:
                continue
            removed.append(uid)
        if missing:
            await self._ownChangesEnd(current, before)
        elif after is not None and self._dirStamp == before:
            # Only our own unlinks moved the directories' mtimes: the next
            # look need not list them (it does, a little later, in case
            # another process changed them within the same mtime tick).
            self._dirStamp = after
            self._unsettled = True
        if not removed:
            return []
        removed.sort()
        if unlogged:
            await self._run(self._log.append, [(uid, None) for uid in removed])
        if self._quota is not None:
            await self._run(self._recordQuota, -freedBytes, -freedCount)
        self._staleLines.update(self._removeAll(removed))
        if self._uidlist.unwritten:
            # Space was just freed: the UIDs kept in memory may fit now.
            await self._assignUids((), strict=False)
        if self._compactionDue():
            try:
                await self._assignUids(())
            except StoreFull:
                _log.warn("Disk full: stale lines stay in the uidlist of {folder!r}", folder=self)
        self._notify()
        return removed

    def _logExpunges(
        self, changes: list[tuple[int, str | None]], before: tuple[int, int] | None
    ) -> tuple[bool, bool]:
        """
        File work before an expunge: whether the directories are still as
        the index last listed them (at C{before}), and whether the log
        refused C{changes} (a full disk).
        """
        current = False
        if before is not None:
            with contextlib.suppress(FileNotFoundError):
                current = self._stamp() == before
        if changes:
            try:
                self._log.append(changes, strict=True)
            except StoreFull:
                return current, True
        return current, False

    def _unlinkFiles(
        self, files: list[tuple[str, str]], sizes: bool, stamp: bool
    ) -> tuple[list[int | None], tuple[int, int] | None]:
        """
        File work: unlink each (directory, file name) of C{files}.

        @return: for each, C{None} when it was not there, else its size for
            the quota (with C{sizes}) or 0; and, with C{stamp}, the
            directories' stamp after.
        """
        done: list[int | None] = []
        for directory, filename in files:
            size = (messageSize(directory, filename) or 0) if sizes else 0
            try:
                os.unlink(f"{directory}{os.sep}{filename}")
            except FileNotFoundError:
                done.append(None)
            else:
                done.append(size)
        after = None
        if stamp:
            with contextlib.suppress(FileNotFoundError):
                after = self._stamp()
        return done, after

    async def _discard(self, uid: int, entry: Entry, retain: bool) -> None:
        """
        Unlink the file of an expunged message, or (with C{retain}) move it
        aside while a reader still holds the message (L{RetainedFiles});
        raises C{FileNotFoundError} when it is not where the index says.
        """
        path = self._pathOf(entry)
        retained = self._retained
        holders = retained.holders(uid) if retain and retained.readers else set()
        if not holders:
            await self._run(os.unlink, path)
        elif not retained.keep(uid, path, entry.key, holders):
            raise FileNotFoundError(path)

    def addReader(self, holds: Reader) -> None:
        self._retained.readers.append(holds)

    def removeReader(self, holds: Reader) -> None:
        self._retained.removeReader(holds)

    def release(self, holds: Reader, uids: Iterable[int]) -> None:
        self._retained.release(holds, uids)

    def copyMessage(self, uid: int, target: IMailFolder) -> Deferred[int]:  # type: ignore[override]
        return ensureDeferred(self._copyMessage(uid, target))

    async def _copyMessage(self, uid: int, target: IMailFolder) -> int:
        # Read (or linked) under this folder's turn, committed under the
        # target's: never both at once, or copies both ways would wait for
        # each other.
        pending = await self._serial.run(self._copySource, uid, target)
        committed: Deferred[int] = maybeDeferred(pending.commit)
        return await committed

    async def _copySource(self, uid: int, target: IMailFolder) -> IPendingMessage:
        """A message in C{target} holding message C{uid}'s bytes, to be committed."""
        entry = await self._entry(uid)
        info = entry.info
        guid = _objectid.copyGuid(self._guid(uid))
        if isinstance(target, MaildirFolder):
            if target._gone:
                raise NoSuchFolder(target.name)
            for _attempt in range(3):
                try:
                    linked = await self._run(
                        _scan.linkInto, self._pathOf(entry), target._path, target.name
                    )
                except FileNotFoundError:
                    await self._relocate(uid, entry)
                    continue
                if linked is not None:
                    pending = _PendingMessage(
                        target, info.flags, None, existing=linked, crlfSize=info.size
                    )
                    pending.guid = guid
                    return pending
                break
        copy = target.beginMessage(info.flags, info.internaldate)
        if isinstance(copy, _PendingMessage):
            copy.guid = guid
        try:
            source = await self._openMessage(uid)
            try:
                data = await self._run(source.read)
            finally:
                source.close()
            copy.write(data)
        except BaseException:
            copy.abort()
            raise
        return copy

    def highestModSeq(self) -> int:
        return self._log.highest

    # IObjectIdFolder, ISaveDateFolder

    def mailboxId(self) -> str:
        data = self._uidlist.data
        return _objectid.objectId(data.guid if data is not None else "", "F")

    def _guid(self, uid: int) -> str:
        """The message's GUID, as Dovecot has it (see L{tmail.store.objectid})."""
        key = self._index.entry(uid).key
        data = self._uidlist.data
        return _objectid.messageGuid(key, data.fields.get(key) if data is not None else None)

    def emailId(self, uid: int) -> str:
        return _objectid.emailId(self._guid(uid))

    def saveDate(self, uid: int) -> float | None:
        return _objectid.saveDate(self._index.entry(uid).key)

    def expungedSince(self, modseq: int) -> tuple[list[int], bool]:
        uids, complete = self._log.expungedSince(modseq)
        return [uid for uid in uids if uid not in self._index], complete

    def addListener(self, listener: Callable[[IMailFolder], None]) -> None:
        self._listeners.append(listener)
        _changes.watched(self, True)

    def removeListener(self, listener: Callable[[IMailFolder], None]) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)
        _changes.watched(self, bool(self._listeners))


def _zeros(values: array.array[int]) -> bytes:
    """One byte per value, 1 where it is 0, found in C loops."""
    marks = bytearray(len(values))
    position = -1
    while True:
        try:
            position = values.index(0, position + 1)
        except ValueError:
            return bytes(marks)
        marks[position] = 1


def _openForReading(path: str) -> BinaryIO:
    return open(path, "rb")


def _renameFile(source: str, target: str) -> None:
    with fullDiskIsStoreFull():
        os.rename(source, target)


registerAdapter(_maildirfields.fieldCacheOf, MaildirFolder, IFieldCacheFolder)  # type: ignore[no-untyped-call]
