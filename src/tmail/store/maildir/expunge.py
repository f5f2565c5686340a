"""
Expunging from a Maildir folder: unlinking message files, or keeping them
aside while sessions still hold the messages.

L{Expunging} is the part of L{tmail.store.maildir.folder.MaildirFolder}
that removes messages.  Deleting is what frees space, so it works on a
full disk too: the files go first when the mod-sequence log refuses the
expunges, which are logged after, in memory until the log takes them.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from tmail.errors import StoreFull
from tmail.store import modseq as _modseq
from tmail.store import uidlist as _uidlist
from tmail.store.filework import Serial
from tmail.store.maildir.index import Entry, FolderIndex
from tmail.store.quota import MaildirQuota, messageSize
from tmail.store.retained import Reader, RetainedFiles

_log = Logger()

T = TypeVar("T")

#: How often an expunge follows a message file other processes keep renaming.
_EXPUNGE_RELOCATIONS = 20


class Expunging:
    """Expunges from a L{tmail.store.maildir.folder.MaildirFolder}."""

    if TYPE_CHECKING:
        _quota: MaildirQuota | None
        _serial: Serial
        _dirStamp: tuple[int, int] | None
        _unsettled: bool
        _index: FolderIndex
        _staleLines: set[str]
        _log: _modseq.ModSeqLog
        _uidlist: _uidlist.UidListFile
        _retained: RetainedFiles
        _path: Path

        def _run(self, function: Callable[..., T], *args: Any) -> Deferred[T]: ...
        async def _open(self) -> None: ...
        def _notify(self) -> None: ...
        def _pathOf(self, entry: Entry) -> str: ...
        def _setLocation(self, entry: Entry, subdir: str, filename: str) -> None: ...
        def _removeAll(self, uids: Iterable[int]) -> list[str]: ...
        async def _syncIndex(self, force: bool = False) -> bool: ...
        def _locate(self, base: str) -> tuple[str, str] | None: ...
        def _stamp(self) -> tuple[int, int]: ...
        async def _ownChangesEnd(self, current: bool, before: tuple[int, int] | None) -> None: ...
        def _recordQuota(self, size: int, count: int) -> None: ...
        async def _assignUids(
            self, bases: Iterable[str], strict: bool = True, fields: dict[str, str] | None = None
        ) -> tuple[dict[str, int], bool]: ...
        def _compactionDue(self) -> bool: ...

    def _quotaSize(self, entry: Entry) -> int:
        """
        The bytes a message counts for in C{maildirsize}: its stored size
        (C{,S=}), as a recount finds it, not the CRLF size of C{,W=}.
        """
        if self._quota is None:
            return 0
        return messageSize(os.path.join(self._path, entry.subdir), entry.filename) or 0

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
