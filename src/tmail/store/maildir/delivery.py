"""
Delivery into a Maildir folder: a written message's file placed in C{new/}
or C{cur/}, given its UID and indexed.

L{Delivering} is the part of L{tmail.store.maildir.folder.MaildirFolder}
that L{tmail.store.maildir.pending} commits through: the file is placed
and its directory fsync'ed before the message gets a UID, so a
delivery acknowledged is on disk and numbered.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from twisted.internet.defer import Deferred

from tmail.fsutil import fsyncDirectory, fullDiskIsStoreFull
from tmail.interfaces import MessageInfo
from tmail.store import modseq as _modseq
from tmail.store import objectid as _objectid
from tmail.store.flags import filenameWith, sizeFromBase
from tmail.store.maildir.index import FolderIndex
from tmail.store.maildir.pending import _Placed, _placeFile
from tmail.store.quota import MaildirQuota

T = TypeVar("T")

#: Deliveries remembered as recent before anyone looked at the folder; past
#: this many the folder is indexed instead.
_MAX_UNINDEXED_DELIVERIES = 10_000


class Delivering:
    """Deliveries into a L{tmail.store.maildir.folder.MaildirFolder}."""

    if TYPE_CHECKING:
        _quota: MaildirQuota | None
        _indexed: bool
        _index: FolderIndex
        _memoryKeywords: dict[str, frozenset[str]]
        _deliveredUnindexed: set[str]
        _log: _modseq.ModSeqLog
        _touched: set[int]
        _goneUnlogged: list[int]
        _path: Path

        def _run(self, function: Callable[..., T], *args: Any) -> Deferred[T]: ...
        async def _open(self) -> None: ...
        def _notify(self) -> None: ...
        def _changed(self, uid: int) -> None: ...
        def _insert(self, uid: int, subdir: str, filename: str, info: MessageInfo) -> None: ...
        def _markRecent(self, uid: int) -> None: ...
        async def _syncIndex(self, force: bool = False) -> bool: ...
        async def _logChanges(self, claim: bool = False) -> None: ...
        async def _maybeCompactLog(self) -> None: ...
        def _assignUidsNow(
            self, bases: Iterable[str], strict: bool = True, fields: dict[str, str] | None = None
        ) -> tuple[dict[str, int], bool]: ...
        def _flagsOf(self, base: str, filename: str) -> frozenset[str]: ...
        def _lettersNow(
            self, flags: frozenset[str], current: str = ""
        ) -> tuple[str, frozenset[str]]: ...
        async def _keywordLetters(
            self, flags: frozenset[str], current: str = ""
        ) -> tuple[str, frozenset[str]]: ...
        def _keepInMemory(self, base: str, keywords: frozenset[str]) -> None: ...
        @staticmethod
        def _lettersOf(filename: str) -> str: ...

    def _recordQuota(self, size: int, count: int) -> None:
        if self._quota is not None:
            self._quota.record(size, count)

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
