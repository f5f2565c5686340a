"""
A Maildir folder's index saved for the next process, and started from it.

L{IndexSaving} is the part of L{tmail.store.maildir.folder.MaildirFolder}
that writes its index to C{tmail-index} and restores it at a restart,
with the mod-sequence log and the uidlist read only from where they
stood when it was saved (the format: L{tmail.store.maildir.savedindex}),
so a large folder starts without stat'ing every message.
"""

from __future__ import annotations

import array
import contextlib
import gc
import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from tmail.store import keywords as _keywords
from tmail.store import modseq as _modseq
from tmail.store import uidlist as _uidlist
from tmail.store.flags import infoLetters
from tmail.store.heap import releaseFreedMemory
from tmail.store.listing import positionIn
from tmail.store.maildir import savedindex as _savedindex
from tmail.store.maildir.index import FolderIndex
from tmail.store.maildir.pending import _uniqueName
from tmail.store.maildir.savedindex import _SAVED_INDEX, _SAVED_INDEX_MIN
from tmail.store.packednames import PackedNames, packNames

_log = Logger()

T = TypeVar("T")


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


class IndexSaving:
    """The saved index of a L{tmail.store.maildir.folder.MaildirFolder}."""

    if TYPE_CHECKING:
        _uidValidity: int | None
        _indexed: bool
        _dirStamp: tuple[int, int] | None
        _unsettled: bool
        _index: FolderIndex
        _memoryKeywords: dict[str, frozenset[str]]
        _log: _modseq.ModSeqLog
        _touched: set[int]
        _uidlist: _uidlist.UidListFile
        _uidlistResumed: bool
        _path: Path
        _keywords: _keywords.KeywordFile

        def _run(self, function: Callable[..., T], *args: Any) -> Deferred[T]: ...
        def _flagsOf(self, base: str, filename: str) -> frozenset[str]: ...

    def _loadLog(self, uidValidity: int) -> None:
        """File work: read the mod-sequence log."""
        with _noCollection():
            self._log.load(uidValidity)

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
