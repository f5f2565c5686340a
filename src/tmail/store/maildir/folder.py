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

L{MaildirFolder} is made of mixins, one concern each, in modules of their
own: the index kept in step with the directories
(L{tmail.store.maildir.directorysync}), the saved index
(L{tmail.store.maildir.indexsaving}), the uidlist
(L{tmail.store.maildir.uidnumbering}), flags and their changes
(L{tmail.store.maildir.flagchanges}), deliveries
(L{tmail.store.maildir.delivery}) and expunges
(L{tmail.store.maildir.expunge}).  Here are the folder's state, its turn,
what sessions read, and copies.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from twisted.internet.defer import Deferred, ensureDeferred, fail, maybeDeferred
from twisted.logger import Logger
from twisted.python.components import registerAdapter
from twisted.python.failure import Failure
from zope.interface import implementer

from tmail.changes import hub as _changes
from tmail.errors import NoSuchFolder, StoreError
from tmail.fsutil import fullDiskIsStoreFull
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
from tmail.store.flags import canonicalFlag
from tmail.store.maildir import scan as _scan
from tmail.store.maildir.delivery import Delivering
from tmail.store.maildir.directorysync import DirectorySync
from tmail.store.maildir.expunge import Expunging
from tmail.store.maildir.flagchanges import FlagChanges
from tmail.store.maildir.index import Entry, FolderIndex
from tmail.store.maildir.indexsaving import IndexSaving
from tmail.store.maildir.pending import (
    _NO_HARD_LINKS,
    _PendingMessage,
    _uniqueName,
)
from tmail.store.maildir.uidnumbering import UidNumbering, _timeUidValidity
from tmail.store.quota import MaildirQuota
from tmail.store.retained import RetainedFiles

_log = Logger()

T = TypeVar("T")

#: Files left in tmp/ longer than this are debris of a crash (qmail's rule).
TMP_MAX_AGE = 36 * 3600
#: How often an open folder looks for such debris again (Dovecot's interval).
_SWEEP_EVERY = 8 * 3600

_SUBDIRS = _scan.SUBDIRECTORIES
_DELETED_SUFFIX = _scan.DELETED_SUFFIX

#: Journals of folder renames in progress, in the Maildir's root.
_RENAME_JOURNAL = "tmail-rename"

#: Times a message renamed by other processes is looked for before giving up.
_OPEN_ATTEMPTS = 8


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


@implementer(IMailFolder)
@implementer(
    IModSeqFolder, IIncrementalFolder, ILinkingFolder, IFlagChangingFolder, IRetainingFolder
)
@implementer(IObjectIdFolder, ISaveDateFolder)
class MaildirFolder(DirectorySync, IndexSaving, UidNumbering, FlagChanges, Delivering, Expunging):
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

    def expunge(self, uids: Iterable[int]) -> Deferred[list[int]]:  # type: ignore[override]
        return self._serial.run(self._expunge, sorted(set(uids)))

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


def _openForReading(path: str) -> BinaryIO:
    return open(path, "rb")


registerAdapter(_maildirfields.fieldCacheOf, MaildirFolder, IFieldCacheFolder)  # type: ignore[no-untyped-call]
