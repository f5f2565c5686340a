"""
A Maildir folder's UIDs: given under the lock of its C{dovecot-uidlist}.

L{UidNumbering} is the part of L{tmail.store.maildir.folder.MaildirFolder}
that reads and writes the uidlist: UIDs for new messages (delivered, or
found by a listing), the lines of messages gone removed, and what a full
disk refuses kept in memory until it can be written.  Its file work
touches the uidlist, never the index, so it may run in a worker thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from tmail.errors import StoreFull
from tmail.store import modseq as _modseq
from tmail.store.maildir import scan as _scan
from tmail.store.maildir.index import FolderIndex
from tmail.store.uidlist import UidListData, UidListFile

_log = Logger()

T = TypeVar("T")

#: Lines of expunged messages a uidlist keeps before it is compacted.
_COMPACT_AT = 64

#: Seconds between attempts to write UIDs a full disk left in memory.
_RETRY_UNWRITTEN = 1.0


def _timeUidValidity(notBefore: int) -> int:
    """A UIDVALIDITY from the clock, for a folder outside any L{MaildirStore}."""
    return max(int(time.time()), notBefore + 1)


class UidNumbering:
    """The uidlist of a L{tmail.store.maildir.folder.MaildirFolder}."""

    if TYPE_CHECKING:
        _newUidValidity: Callable[[int], int]
        _uidValidity: int | None
        _knownNext: int
        _dirStamp: tuple[int, int] | None
        _index: FolderIndex
        _staleLines: set[str]
        _retryUnwrittenAt: float
        _log: _modseq.ModSeqLog
        _uidlist: UidListFile

        def _run(self, function: Callable[..., T], *args: Any) -> Deferred[T]: ...
        def _resetIndex(self) -> None: ...

    def _freshUidlist(self) -> UidListData:
        """
        An empty uidlist with a UIDVALIDITY this folder's name never had:
        one recorded under the mail root, or on a disk too full to record
        it, the clock's (which a later claim passes).
        """
        data = UidListData.fresh()
        try:
            data.uidValidity = self._newUidValidity(self._uidValidity or 0)
        except StoreFull:
            data.uidValidity = _timeUidValidity(self._uidValidity or 0)
        return data

    async def _currentUidlist(self) -> UidListData:
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

    def _createUidlist(self) -> UidListData | None:
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
        data: UidListData, bases: Iterable[str], fields: dict[str, str] | None = None
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

    def _keepUnwritten(self, data: UidListData, added: list[tuple[str, int]], whole: bool) -> None:
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
