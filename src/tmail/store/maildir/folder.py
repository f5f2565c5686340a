"""
One Maildir folder: Dovecot-compatible UIDs and flags over C{cur/ new/ tmp/}.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import operator
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO

from twisted.logger import Logger
from twisted.python.components import registerAdapter
from zope.interface import implementer

from tmail.changes import hub as _changes
from tmail.errors import NoSuchFolder, StoreError, StoreFull
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
from tmail.store.filework import FileWork
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
from tmail.store.fsutil import (
    fsyncDirectory,
    fullDiskIsStoreFull,
    isDiskFull,
)
from tmail.store.maildir import savedindex as _savedindex
from tmail.store.maildir import scan as _scan
from tmail.store.maildir.index import Entry, FolderIndex
from tmail.store.maildir.pending import (
    _FLUSH_AT,
    _NO_HARD_LINKS,
    _PendingMessage,
    _Placed,
    _placeFile,
    _uniqueName,
)
from tmail.store.maildir.savedindex import _SAVED_INDEX, _SAVED_INDEX_MIN
from tmail.store.quota import MaildirQuota, messageSize
from tmail.store.retained import Reader, RetainedFiles

#: How often an expunge follows a message file other processes keep renaming.
_EXPUNGE_RELOCATIONS = 20

_log = Logger()

#: Files left in tmp/ longer than this are debris of a crash (qmail's rule).
TMP_MAX_AGE = 36 * 3600
#: How often an open folder looks for such debris again (Dovecot's interval).
_SWEEP_EVERY = 8 * 3600

#: A directory modified this recently may change again within the same
#: mtime tick without its mtime moving, so it is rescanned on the next call.
_UNSETTLED_NS = 2_000_000_000
#: How often such a directory is rescanned while its mtime stays put.
_RESCAN_UNSETTLED_NS = 50_000_000

_SUBDIRS = ("cur", "new", "tmp")
_DELETED_SUFFIX = ".deleted"

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


def _withModSeq(info: MessageInfo, modseq: int) -> MessageInfo:
    """C{info} with another mod-sequence (faster than C{dataclasses.replace})."""
    return MessageInfo(
        info.uid, info.flags, info.size, info.internaldate, info.key, info.recent, modseq
    )


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
        fileWork: FileWork | None = None,
    ) -> None:
        self.name = name
        self._fileWork = fileWork
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
        had = bool(self._index.entries)
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

    def _open(self) -> None:
        """Create missing subdirectories once; sweep C{tmp/} then and every few hours."""
        if self._gone:
            raise NoSuchFolder(self.name)
        if self._opened:
            if time.monotonic() >= self._nextSweep:
                with contextlib.suppress(FileNotFoundError):
                    self._sweepTemporaries()
            return
        try:
            with fullDiskIsStoreFull():
                for sub in _SUBDIRS:
                    (self._path / sub).mkdir(mode=0o700, exist_ok=True)
        except FileNotFoundError:
            raise NoSuchFolder(self.name) from None
        self._sweepTemporaries()
        self._opened = True

    def _sweepTemporaries(self) -> None:
        self._nextSweep = time.monotonic() + _SWEEP_EVERY
        cutoff = time.time() - TMP_MAX_AGE
        with os.scandir(self._path / "tmp") as entries:
            for entry in entries:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        if entry.name.endswith(_DELETED_SUFFIX):
                            shutil.rmtree(entry.path, ignore_errors=True)
                    elif entry.stat(follow_symlinks=False).st_mtime < cutoff:
                        os.unlink(entry.path)
                except FileNotFoundError:
                    pass

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

    def _currentUidlist(self) -> _uidlist.UidListData:
        """
        The uidlist, created if missing (in memory while the disk is full).
        A UIDVALIDITY other than the one the index was built on empties the
        index.
        """
        self._uidlist.refresh()
        if self._uidlist.data is None:
            fresh = None
            try:
                with self._uidlist.lock() as lock:
                    self._uidlist.refresh()
                    if self._uidlist.data is None:
                        fresh = self._freshUidlist()
                        self._uidlist.write(lock, fresh)
            except StoreFull:
                self._keepUnwritten(fresh or self._freshUidlist(), [], whole=True)
        data = self._uidlist.data
        assert data is not None
        if data.uidValidity != self._uidValidity:
            if self._uidValidity is not None:
                self._resetIndex()
            self._uidValidity = data.uidValidity
        return data

    def _assignUids(
        self, bases: Iterable[str], strict: bool = True, fields: dict[str, str] | None = None
    ) -> tuple[dict[str, int], bool]:
        """
        Under the uidlist lock: give UIDs to the C{bases} that have none
        (their lines with the extension C{fields} given for them),
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
        """Write what a full disk left in memory, if the disk now takes it."""
        self._retryUnwrittenAt = time.monotonic() + _RETRY_UNWRITTEN
        if self._uidlist.unwritten:
            self._assignUids((), strict=False)
        if self._log.unwritten:
            self._log.append([])

    def _compactionDue(self) -> bool:
        """
        Whether the uidlist has gathered enough lines of expunged messages
        to be worth a rewrite.  Until then they stay, as in Dovecot's own
        uidlists: harmless to every reader, and an expunge costs no copy
        of the whole list.
        """
        return len(self._staleLines) >= max(_COMPACT_AT, len(self._index.entries) // 4)

    def _listDirectory(self, sub: str) -> dict[str, str]:
        """Base name -> file name of the messages in C{sub}."""
        return _scan.listDirectory(self._path / sub)

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

    def _lettersFor(self, base: str, flags: frozenset[str], current: str = "") -> str:
        """
        The info letters for C{flags}, allocating keyword letters as needed
        and keeping the letters of C{current} tmail does not manage.
        """
        keywords = sorted(flag for flag in flags if not flag.startswith("\\"))
        if keywords:
            renamed = self._keywords.refresh()
            renamed |= any(self._keywords.letterOf(k) is None for k in keywords)
            self._keywords.allocate(keywords)
            if renamed and self._reinterpretFlags():
                self._notify()
        letters = [letter for flag in flags if (letter := systemLetter(flag)) is not None]
        inMemory = set()
        for keyword in keywords:
            letter = self._keywords.letterOf(keyword)
            if letter is None:
                inMemory.add(keyword)
            else:
                letters.append(letter)
        if inMemory:
            self._memoryKeywords[base] = frozenset(inMemory)
        else:
            self._memoryKeywords.pop(base, None)
        letters.append(preservedLetters(current))
        letters.extend(
            c for c in current if c in KEYWORD_LETTERS and self._keywords.nameOf(c) is None
        )
        return "".join(letters)

    def _setLocation(self, entry: Entry, subdir: str, filename: str) -> None:
        self._index.setLocation(entry, subdir, filename)

    def _insert(self, uid: int, entry: Entry) -> None:
        self._staleLines.discard(entry.info.key)
        self._index.insert(uid, entry)

    def _remove(self, uid: int) -> Entry:
        """Drop a message from the index (the caller fixes the UIDs)."""
        entry = self._index.remove(uid)
        self._memoryKeywords.pop(entry.info.key, None)
        return entry

    def _markRecent(self, uid: int) -> None:
        entry = self._index.entries.get(uid)
        if entry is not None and not entry.info.recent:
            entry.info = replace(entry.info, recent=True)
            self._index.recent.add(uid)
            self._index.snapshot = None

    def _sync(self, force: bool = False) -> bool:
        """
        Bring the index up to date with the directories when their mtimes
        moved (or they changed too recently to trust the mtime); return
        whether any message appeared, vanished or changed flags since the
        index was first built.
        """
        if self._gone:
            return False
        self._open()
        if (
            self._uidlist.unwritten or self._log.unwritten
        ) and time.monotonic() >= self._retryUnwrittenAt:
            self._retryUnwritten()
        try:
            stamp = self._stamp()
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
        data = self._currentUidlist()
        changed = wasIndexed and not self._indexed
        loading = not self._indexed
        if loading:
            with _noCollection():
                self._log.load(data.uidValidity)
        saved = self._loadSavedIndex(data.uidValidity) if loading else None
        restored = saved is not None
        wasIndexed |= restored
        if self._keywords.refresh():
            changed |= self._reinterpretFlags()
        self._knownNext = data.nextUid

        # A saved index current for the directories as they are needs no
        # listing: no file was added, renamed or removed since it was saved.
        current = saved is not None and saved == self._directoryState()
        found, gone = ({}, set()) if current else self._listChanges()
        if loading:
            gone |= data.uids.keys() - found.keys() - self._index.byBase.keys()
        if gone and not current:
            again = self._listDirectory("cur")
            for base in gone & again.keys():
                found[base] = ("cur", again[base])
            gone -= again.keys()
        arrived = self._moveNewToCur(found)

        removed = [uid for base in gone if (uid := self._index.byBase.get(base)) is not None]
        for uid in removed:
            self._remove(uid)
        self._goneUnlogged += removed
        if loading:
            # A uidlist line whose file is gone, of a message the log never
            # had: numbered and expunged by a process that could log neither
            # (a full disk) before it stopped.
            self._goneUnlogged += [
                uid
                for base in gone
                if base not in self._index.byBase
                and (uid := data.uids.get(base)) is not None
                and not self._log.mayHaveLogged(uid)
            ]
        if removed:
            self._index.dropUids(set(removed))
            changed = True
        self._staleLines |= gone

        for base, (subdir, filename) in found.items():
            known = self._index.byBase.get(base)
            if known is None:
                continue
            entry = self._index.entries[known]
            if entry.filename != filename:
                flags = self._flagsOf(base, filename)
                if flags != entry.info.flags:
                    entry.info = replace(entry.info, flags=flags, modseq=0)
                    self._touched.add(known)
                    self._index.snapshot = None
                    changed = True
            self._setLocation(entry, subdir, filename)

        foreign = False
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
                assigned, foreign = self._assignUids(unassigned, strict=False)
                uids.update(assigned)
                if self._uidlist.data is None or self._uidlist.data.uidValidity != (
                    self._uidValidity
                ):
                    return self._sync(force=True) or True
            prefixes = {sub: f"{self._path}{os.sep}{sub}{os.sep}" for sub in ("cur", "new")}
            relisted: dict[str, tuple[str, str]] | None = None
            for base in sorted(uids, key=uids.__getitem__):
                uid = uids[base]
                if uid in self._index.entries:
                    continue
                subdir, filename = found[base]
                try:
                    status = os.stat(prefixes[subdir] + filename)
                except FileNotFoundError:
                    # Renamed (a flag change) or removed by another process
                    # since the listing: look again, once per sync.
                    if relisted is None:
                        relisted = {
                            b: (sub, name)
                            for sub in ("new", "cur")
                            for b, name in self._listDirectory(sub).items()
                        }
                    if base not in relisted:
                        continue
                    subdir, filename = relisted[base]
                    try:
                        status = os.stat(prefixes[subdir] + filename)
                    except FileNotFoundError:
                        # Still moving: list nothing above it until the next look.
                        self._dirStamp = None
                        break
                size = sizeFromBase(base)
                info = MessageInfo(
                    uid=uid,
                    flags=self._flagsOf(base, filename),
                    size=status.st_size if size is None else size,
                    internaldate=status.st_mtime_ns / 1_000_000_000,
                    key=base,
                    recent=base in arrived or base in self._deliveredUnindexed,
                )
                self._insert(uid, Entry(subdir, filename, info))
                self._touched.add(uid)
                changed = True
        self._indexed = True
        self._deliveredUnindexed.clear()
        if loading:
            # Each message keeps the mod-sequence the log has for the letters
            # its file has now; those the log knew that are not here were
            # expunged while no process of ours was looking.
            self._logChanges(claim=True)
            self._goneUnlogged += self._log.forgetUnclaimed()
        self._logChanges()
        if foreign:
            # Another process gave out UIDs meanwhile: index its messages
            # now, before anyone sees a higher UID without the lower ones.
            changed |= self._sync(force=True)
        return changed and wasIndexed and not restored

    # Mod-sequences

    @staticmethod
    def _lettersOf(filename: str) -> str:
        return infoLetters(splitFilename(filename)[1])

    def _logChanges(self, claim: bool = False) -> None:
        """
        Log new and changed messages, and expunges found, under one new
        mod-sequence.  With C{claim} (the log was just loaded), messages
        and expunges the log already has keep their mod-sequences.
        """
        if not self._touched and not self._goneUnlogged:
            return
        entries = self._index.entries
        pending = sorted(
            uid
            for uid in self._touched
            if (entry := entries.get(uid)) is not None and entry.info.modseq == 0
        )
        gone = self._goneUnlogged
        if claim:
            unclaimed = []
            for uid in pending:
                entry = entries[uid]
                logged = self._log.claim(uid, self._lettersOf(entry.filename))
                if logged:
                    entry.info = _withModSeq(entry.info, logged)
                    self._changed(uid)
                else:
                    unclaimed.append(uid)
            pending = unclaimed
            gone = [uid for uid in gone if not self._log.hasExpunged(uid)]
            self._index.snapshot = None
        changes: list[tuple[int, str | None]] = [(uid, None) for uid in gone]
        changes += [(uid, self._lettersOf(entries[uid].filename)) for uid in pending]
        self._touched, self._goneUnlogged = set(), []
        if not changes:
            return
        modseq = self._log.append(changes)
        for uid in pending:
            entry = entries[uid]
            entry.info = _withModSeq(entry.info, modseq)
            self._changed(uid)
        if pending:
            self._index.snapshot = None
        self._maybeCompactLog()

    def _maybeCompactLog(self) -> None:
        entries = self._index.entries
        if not self._log.needsCompaction(len(entries)):
            return
        states = [
            (uid, entries[uid].info.modseq, self._lettersOf(entries[uid].filename))
            for uid in self._index.uids
        ]
        try:
            self._log.compact(states)
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
        self.refresh()
        current = self.changeSerial()
        changed = self._index.changes.since(serial)
        if changed is None:
            return current, None
        changes: list[MessageInfo | int] = []
        entries = self._index.entries
        for uid in changed:
            entry = entries.get(uid)
            if entry is None:
                changes.append(uid)
                continue
            info = entry.info
            if info.recent and claimRecent:
                # Recent for the first session told about it, as with messages().
                entry.info = replace(info, recent=False)
                self._index.recent.discard(uid)
                self._index.snapshot = None
            changes.append(info)
        return current, changes

    def refresh(self) -> None:
        if self._sync():
            self._notify()
        self._maybeSaveIndex()

    def info(self, uid: int) -> MessageInfo | None:
        entry = self._index.entries.get(uid)
        return None if entry is None else entry.info

    def messageCount(self) -> int:
        self._open()
        return len(self._index.uids)

    def _loadSavedIndex(self, uidValidity: int) -> _savedindex.DirectoryState | None:
        """
        Start the index from the one a process saved earlier (see
        L{_saveIndex}); return the state of the directories it was current
        for, or C{None} when there is no usable one (the folder is then
        indexed from scratch).  When the directories changed since, the
        listing that follows finds what changed, as it does for a running
        process.
        """
        saved = _savedindex.readSavedIndex(self._path, uidValidity)
        if saved is None:
            return None
        with _noCollection():
            return self._restoreIndex(saved)

    def _restoreIndex(self, saved: _savedindex.SavedIndex) -> _savedindex.DirectoryState:
        """Make the index of the messages of a saved index (see L{_loadSavedIndex})."""
        # Column at a time, in C loops where possible: a saved folder has
        # a hundred thousand messages, and a handful of distinct suffixes.
        uids, inCur, suffixes = saved.uids.tolist(), saved.inCur, saved.suffixes
        bases = list(map(sys.intern, saved.bases))
        filenames = list(map(operator.add, bases, suffixes))
        self._keywords.refresh()
        bySuffix = {s: (self._flagsOf("", s), infoLetters(s[1:])) for s in set(suffixes)}
        flags = [bySuffix[suffix][0] for suffix in suffixes]
        if self._memoryKeywords:
            memory = self._memoryKeywords
            flags = [
                f | extra if (extra := memory.get(base)) else f
                for f, base in zip(flags, bases, strict=True)
            ]
        # Messages keep the mod-sequence the log has for the letters they
        # were saved with; the listing that follows finds those changed since.
        modseqs = list(
            map(self._log.claimMatching, uids, [bySuffix[suffix][1] for suffix in suffixes])
        )
        touched = {uid for uid, modseq in zip(uids, modseqs, strict=True) if not modseq}
        infos = map(
            MessageInfo,
            uids,
            flags,
            saved.sizes.tolist(),
            saved.dates.tolist(),
            bases,
            itertools.repeat(False),
            modseqs,
        )
        subdirs = ["cur" if cur else "new" for cur in inCur]
        entries = dict(zip(uids, map(Entry, subdirs, filenames, infos), strict=True))
        byBase = dict(zip(bases, uids, strict=True))
        curNames = set(itertools.compress(filenames, inCur))
        newBases = {base for base, cur in zip(bases, inCur, strict=True) if not cur}
        self._index.restore(entries, byBase, saved.uids, curNames, newBases)
        self._touched = touched
        self._indexed = True
        return saved.state

    def _directoryState(self) -> _savedindex.DirectoryState:
        try:
            return _savedindex.directoryState(self._path)
        except OSError:
            return _savedindex.UNKNOWN_STATE

    def _saveIndex(self) -> None:
        """
        Save the index for the next process that opens this folder, so a
        restart does not stat every message again (see
        L{tmail.store.maildir.savedindex}).  It is marked current for the
        directories' state when the index mirrors them as they are now and
        they were last listed long enough after they changed that nothing
        can have changed unseen within the same modification time.
        """
        assert self._uidValidity is not None
        state = self._directoryState()
        if self._unsettled or self._dirStamp != (state[0], state[2]):
            state = _savedindex.UNKNOWN_STATE
        entries = [self._index.entries[uid] for uid in self._index.uids]
        data = _savedindex.encodeSavedIndex(
            self._uidValidity,
            state,
            self._index.uids,
            [entry.subdir == "cur" for entry in entries],
            [entry.info.key for entry in entries],
            [entry.filename[len(entry.info.key) :] for entry in entries],
            [entry.info.size for entry in entries],
            [entry.info.internaldate for entry in entries],
        )
        temporary = self._path / "tmp" / f"{_uniqueName()}.{_SAVED_INDEX}"
        try:
            _savedindex.writeSavedIndex(self._path, temporary, data)
        except OSError as e:
            _log.warn("Could not save the index of {folder!r}: {error}", folder=self, error=e)
            return
        self._index.unsaved = 0

    def _maybeSaveIndex(self) -> None:
        """Save the index of a large folder when enough has changed since the last save."""
        count = len(self._index.entries)
        if count >= _SAVED_INDEX_MIN and self._index.unsaved >= max(_SAVED_INDEX_MIN, count // 10):
            self._saveIndex()

    def _listChanges(self) -> tuple[_scan.Found, set[str]]:
        """Compare the directories with the index (see L{_scan.listChanges})."""
        return _scan.listChanges(self._path, self._index.curNames, self._index.newBases)

    def _moveNewToCur(self, found: dict[str, tuple[str, str]]) -> set[str]:
        """
        Move the files of C{new/} into C{cur/} (adding C{:2,}), as Dovecot
        does, and return the base names this process saw arrive.  A file
        that cannot be moved (no permission, a full disk) stays in C{new/}
        and is served from there; a later look moves it.
        """
        arrived = set()
        for base, (subdir, filename) in list(found.items()):
            if subdir != "new":
                continue
            target = filename if splitFilename(filename)[1] else filenameWith(base, "")
            try:
                os.rename(self._path / "new" / filename, self._path / "cur" / target)
            except FileNotFoundError:
                located = self._locate(base)
                if located is None:
                    del found[base]
                else:
                    found[base] = located
                continue
            except PermissionError:
                continue
            except OSError as e:
                if not isDiskFull(e):
                    raise
            else:
                found[base] = ("cur", target)
            if base not in self._index.byBase:
                arrived.add(base)
        return arrived

    def _reinterpretFlags(self) -> bool:
        """Recompute keyword names after C{dovecot-keywords} changed."""
        self._flagSets.clear()
        changed = False
        for uid, entry in self._index.entries.items():
            flags = self._flagsOf(entry.info.key, entry.filename)
            if flags != entry.info.flags:
                entry.info = replace(entry.info, flags=flags, modseq=0)
                self._touched.add(uid)
                changed = True
        if changed:
            self._index.snapshot = None
        return changed

    def _vanished(self) -> bool:
        """The folder's directory is gone: report its messages as removed."""
        had = bool(self._index.entries)
        self._resetIndex()
        self._uidValidity = None
        self._dirStamp = None
        return had

    def _entry(self, uid: int) -> Entry:
        """The index entry of C{uid}, indexing the folder first if needed."""
        self._open()
        if uid not in self._index.entries and self._sync():
            self._notify()
        return self._index.entries[uid]

    def _relocate(self, uid: int, entry: Entry) -> None:
        """
        Find C{entry}'s file after another process renamed it; raise
        C{KeyError} when it is gone for good.  A flag change found this way
        is told to the listeners as one found by listing the directory is:
        a session that did not come across it hears of it only so.
        """
        located = self._locate(entry.info.key)
        if located is None:
            self._dirStamp = None
            raise KeyError(uid)
        self._setLocation(entry, *located)
        flags = self._flagsOf(entry.info.key, entry.filename)
        if flags != entry.info.flags:
            entry.info = replace(entry.info, flags=flags, modseq=0)
            self._touched.add(uid)
            self._logChanges()
            self._index.snapshot = None
            self._notify()

    def _stamp(self) -> tuple[int, int]:
        return _scan.directoryStamp(self._newDir, self._curDir)

    @contextlib.contextmanager
    def _ownChanges(self) -> Iterator[None]:
        """
        Renames and unlinks this process makes and mirrors in the index:
        when nothing else changed the directories since the last listing,
        the next look need not list them again (it does, a little later,
        in case another process changed them within the same mtime tick).
        """
        before = self._dirStamp
        try:
            current = before is not None and self._stamp() == before
        except FileNotFoundError:
            current = False
        try:
            yield
        finally:
            if current and self._dirStamp == before:
                with contextlib.suppress(FileNotFoundError):
                    self._dirStamp = self._stamp()
                    self._unsettled = True

    def _pathOf(self, entry: Entry) -> str:
        return f"{self._curDir if entry.subdir == 'cur' else self._newDir}{os.sep}{entry.filename}"

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

    def _place(self, tmpPath: Path, flags: frozenset[str], crlfSize: int | None = None) -> _Placed:
        """
        Move a complete, fsync'ed file from C{tmp/} into C{new/} (or C{cur/}
        with its flags) and fsync that directory.  Touches no shared state
        when C{flags} has no keywords, so it may run in a worker thread.
        C{crlfSize}, when it differs from the file's size (a copy of a file
        stored with LF line ends), is kept in the name as C{,W=}.
        """
        status = os.stat(tmpPath)
        base = f"{tmpPath.name},S={status.st_size}"
        if crlfSize is not None and crlfSize != status.st_size:
            base += f",W={crlfSize}"
        if flags:
            subdir, filename = "cur", filenameWith(base, self._lettersFor(base, flags))
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

    def _register(self, placed: _Placed, guid: str | None = None) -> int:
        """
        Give a placed file its UID (recording C{guid} as its GUID, for a
        copy), index it and tell the listeners.
        """
        self._open()
        known = self._index.byBase.get(placed.base)
        if known is not None:
            return known
        try:
            fields = {placed.base: _objectid.withGuid(None, guid)} if guid else None
            uids, foreign = self._assignUids([placed.base], fields=fields)
        except BaseException:
            self._memoryKeywords.pop(placed.base, None)
            raise
        uid = uids[placed.base]
        if self._indexed:
            if foreign:
                self._sync(force=True)
                self._markRecent(uid)
            elif uid not in self._index.entries:
                info = MessageInfo(
                    uid=uid,
                    flags=self._flagsOf(placed.base, placed.filename),
                    size=placed.size,
                    internaldate=placed.mtimeNs / 1_000_000_000,
                    key=placed.base,
                    recent=True,
                )
                self._insert(uid, Entry(placed.subdir, placed.filename, info))
                self._touched.add(uid)
                self._logChanges()
        else:
            self._deliveredUnindexed.add(placed.base)
            if len(self._deliveredUnindexed) > _MAX_UNINDEXED_DELIVERIES:
                self._sync(force=True)
        self._notify()
        return uid

    def linkedCopy(self, source: IPendingMessage) -> IPendingMessage:
        if not isinstance(source, _PendingMessage) or not source._writable:
            raise TypeError("a linked copy needs a Maildir message still being written")
        self._open()
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

    def _deliverLink(
        self, source: str | Path, flags: frozenset[str], crlfSize: int, guid: str | None = None
    ) -> int | None:
        """
        Deliver a hard link to C{source}, whose size with CRLF line ends is
        C{crlfSize}, with GUID C{guid}; C{None} when the filesystem
        cannot link it here (the caller then copies the bytes).
        """
        self._open()
        tmpPath = self._path / "tmp" / _uniqueName()
        try:
            with fullDiskIsStoreFull():
                os.link(source, tmpPath)
        except OSError as e:
            if e.errno in _NO_HARD_LINKS:
                return None
            raise
        pending = _PendingMessage(self, flags, None, existing=tmpPath, crlfSize=crlfSize)
        pending.guid = guid
        return pending.commit()

    # IMailFolder

    def uidValidity(self) -> int:
        self._open()
        return self._currentUidlist().uidValidity

    def uidNext(self) -> int:
        if self._sync():
            self._notify()
        data = self._uidlist.data
        return self._knownNext if data is None else max(data.nextUid, self._knownNext)

    def messages(self, claimRecent: bool = True) -> Sequence[MessageInfo]:
        changed = self._sync()
        snapshot = self._index.listing()
        if self._index.recent and claimRecent:
            for uid in self._index.recent:
                entry = self._index.entries[uid]
                entry.info = replace(entry.info, recent=False)
            self._index.recent.clear()
            self._index.snapshot = None
        if changed:
            self._notify()
        self._maybeSaveIndex()
        return snapshot

    def openMessage(self, uid: int) -> BinaryIO:
        if uid not in self._index.entries:
            kept = self._retained.path(uid)
            if kept is not None:
                try:
                    return open(kept, "rb")
                except FileNotFoundError:
                    raise KeyError(uid) from None
        entry = self._entry(uid)
        for _attempt in range(_OPEN_ATTEMPTS):
            try:
                return open(self._pathOf(entry), "rb")
            except FileNotFoundError:
                # Renamed by another process (a flag change), maybe again
                # while it was being found: look for it once more.
                self._relocate(uid, entry)
        raise StoreError(f"message {uid} of {self.name!r} keeps being renamed")

    def beginMessage(
        self, flags: Iterable[str] = (), internaldate: float | None = None
    ) -> IPendingMessage:
        self._open()
        return _PendingMessage(self, _canonicalFlags(flags), internaldate)

    def setFlags(self, uid: int, flags: Iterable[str]) -> MessageInfo:
        wanted = _canonicalFlags(flags)
        return self._updateFlags(uid, lambda current: wanted)

    def changeFlags(self, uid: int, add: Iterable[str], remove: Iterable[str]) -> MessageInfo:
        added, removed = _canonicalFlags(add), _canonicalFlags(remove)
        return self._updateFlags(uid, lambda current: (current | added) - removed)

    def _updateFlags(
        self, uid: int, change: Callable[[frozenset[str]], frozenset[str]]
    ) -> MessageInfo:
        """
        Rename the message's file to the flags C{change} makes of its
        current ones, taken again from the file found when another process
        renamed it first.
        """
        entry = self._entry(uid)
        base = entry.info.key
        modseq = 0
        with self._ownChanges():
            for _attempt in range(3):
                wanted = change(entry.info.flags)
                letters = infoLetters(splitFilename(entry.filename)[1])
                target = filenameWith(base, self._lettersFor(base, wanted, letters))
                if entry.subdir == "cur" and target == entry.filename:
                    break
                targetLetters = self._lettersOf(target)
                unlogged = False
                if targetLetters != letters:
                    # Logged first: a crash before the rename leaves a higher
                    # mod-sequence for the same flags, never a silent change.
                    # On a full disk the rename comes first (it needs no
                    # space on most file systems), logged in memory after.
                    try:
                        modseq = self._log.append([(uid, targetLetters)], strict=True)
                    except StoreFull:
                        unlogged = True
                source = self._pathOf(entry)
                try:
                    with fullDiskIsStoreFull():
                        os.rename(source, f"{self._curDir}{os.sep}{target}")
                except FileNotFoundError:
                    self._relocate(uid, entry)
                    continue
                self._setLocation(entry, "cur", target)
                if unlogged:
                    modseq = self._log.append([(uid, targetLetters)])
                break
            else:
                raise StoreError(f"message {uid} of {self.name!r} keeps being renamed")
        flagsNow = self._flagsOf(base, entry.filename)
        if flagsNow != entry.info.flags and not modseq:
            # Keywords past the 26 letters live in memory: no rename, still a change.
            modseq = self._log.append([(uid, self._lettersOf(entry.filename))])
        # Another process's change of the same message found meanwhile
        # (in _relocate) may have a higher mod-sequence than ours.
        info = replace(entry.info, flags=flagsNow, modseq=max(modseq, entry.info.modseq))
        if info != entry.info:
            entry.info = info
            self._index.snapshot = None
            self._changed(uid)
            self._notify()
            self._maybeCompactLog()
        return info

    def expunge(self, uids: Iterable[int]) -> list[int]:
        self._open()
        wanted = sorted(set(uids))
        if any(uid not in self._index.entries for uid in wanted) and self._sync():
            self._notify()
        present = [uid for uid in wanted if uid in self._index.entries]
        unlogged = False
        if present:
            try:
                self._log.append([(uid, None) for uid in present], strict=True)
            except StoreFull:
                # The files go first, which frees the space; their expunges
                # are logged after, in memory until the log takes them.
                unlogged = True
        removed: list[int] = []
        freedBytes = freedCount = 0
        # Deleting is what frees space: on a disk that refused a write,
        # nothing is kept for sessions, and what was kept goes too.
        retain = not (unlogged or self._log.unwritten or self._uidlist.unwritten)
        if not retain:
            self._retained.forget()
        with self._ownChanges():
            for uid in wanted:
                entry = self._index.entries.get(uid)
                if entry is None:
                    continue
                size = self._quotaSize(entry)
                try:
                    self._discard(uid, entry, retain)
                    freedBytes, freedCount = freedBytes + size, freedCount + 1
                except FileNotFoundError:
                    # Renamed by another process (a flag change), perhaps
                    # again while it was looked for: follow it until it is
                    # removed or gone, or the expunge would be reported while
                    # the file stays under its newest name.
                    for _ in range(_EXPUNGE_RELOCATIONS):
                        located = self._locate(entry.info.key)
                        if located is None:
                            break
                        self._setLocation(entry, *located)
                        size = self._quotaSize(entry)
                        try:
                            self._discard(uid, entry, retain)
                        except FileNotFoundError:
                            continue
                        freedBytes, freedCount = freedBytes + size, freedCount + 1
                        break
                    else:
                        continue
                removed.append(uid)
        if not removed:
            return []
        if unlogged:
            self._log.append([(uid, None) for uid in removed])
        self._recordQuota(-freedBytes, -freedCount)
        for uid in removed:
            self._staleLines.add(self._remove(uid).info.key)
        gone = set(removed)
        self._index.dropUids(gone)
        if self._uidlist.unwritten:
            # Space was just freed: the UIDs kept in memory may fit now.
            self._assignUids((), strict=False)
        if self._compactionDue():
            try:
                self._assignUids(())
            except StoreFull:
                _log.warn("Disk full: stale lines stay in the uidlist of {folder!r}", folder=self)
        self._notify()
        return removed

    def _discard(self, uid: int, entry: Entry, retain: bool) -> None:
        """
        Unlink the file of an expunged message, or (with C{retain}) move it
        aside while a reader still holds the message (L{RetainedFiles});
        raises C{FileNotFoundError} when it is not where the index says.
        """
        path = self._pathOf(entry)
        retained = self._retained
        holders = retained.holders(uid) if retain and retained.readers else set()
        if not holders:
            os.unlink(path)
        elif not retained.keep(uid, path, entry.info.key, holders):
            raise FileNotFoundError(path)

    def addReader(self, holds: Reader) -> None:
        self._retained.readers.append(holds)

    def removeReader(self, holds: Reader) -> None:
        self._retained.removeReader(holds)

    def release(self, holds: Reader, uids: Iterable[int]) -> None:
        self._retained.release(holds, uids)

    def copyMessage(self, uid: int, target: IMailFolder) -> int:
        entry = self._entry(uid)
        info = entry.info
        guid = _objectid.copyGuid(self._guid(uid))
        if isinstance(target, MaildirFolder):
            for _attempt in range(3):
                try:
                    newUid = target._deliverLink(self._pathOf(entry), info.flags, info.size, guid)
                except FileNotFoundError:
                    self._relocate(uid, entry)
                    continue
                if newUid is not None:
                    return newUid
                break
        pending = target.beginMessage(info.flags, info.internaldate)
        if isinstance(pending, _PendingMessage):
            pending.guid = guid
        try:
            with self.openMessage(uid) as source:
                while chunk := source.read(_FLUSH_AT):
                    pending.write(chunk)
        except BaseException:
            pending.abort()
            raise
        return pending.commit()

    def highestModSeq(self) -> int:
        self._open()
        return self._log.highest

    # IObjectIdFolder, ISaveDateFolder

    def mailboxId(self) -> str:
        self._open()
        return _objectid.objectId(self._currentUidlist().guid, "F")

    def _guid(self, uid: int) -> str:
        """The message's GUID, as Dovecot has it (see L{tmail.store.objectid})."""
        key = self._entry(uid).info.key
        data = self._uidlist.data
        return _objectid.messageGuid(key, data.fields.get(key) if data is not None else None)

    def emailId(self, uid: int) -> str:
        return _objectid.emailId(self._guid(uid))

    def saveDate(self, uid: int) -> float | None:
        return _objectid.saveDate(self._entry(uid).info.key)

    def expungedSince(self, modseq: int) -> tuple[list[int], bool]:
        self._open()
        uids, complete = self._log.expungedSince(modseq)
        return [uid for uid in uids if uid not in self._index.entries], complete

    def addListener(self, listener: Callable[[IMailFolder], None]) -> None:
        self._listeners.append(listener)
        _changes.watched(self, True)

    def removeListener(self, listener: Callable[[IMailFolder], None]) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)
        _changes.watched(self, bool(self._listeners))


registerAdapter(_maildirfields.fieldCacheOf, MaildirFolder, IFieldCacheFolder)  # type: ignore[no-untyped-call]
