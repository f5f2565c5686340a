# -*- test-case-name: tests.store.test_fieldcache -*-
"""
A folder's field cache (L{IFieldCacheFolder}) over its cache file
(L{tmail.store.fieldcachefile}): the index of the file (message key -> the
span of its latest record) in memory, the records read on demand, new
fields kept in memory until a flush writes them in a worker thread.

The index is changed only in the reactor thread, from what the file work
returns; a flush runs at a time per folder, and the cache file is read in
the reactor thread only, so the descriptor a compaction replaces is closed
where nothing reads it any more.  Other processes serving the folder
append to the same file: a miss first reads what they appended since (two
C{stat}s when nothing was; at most every L{CATCH_UP_EVERY} seconds), and a
flush does the same before it writes.

A store gives a subclass what names its messages (L{messageKey}: a key
that changes when the content could, such as the UID, the Maildir base
name, the size and the date), the folder's UIDVALIDITY and where the file
is.  A key alone says which bytes a record was made of, so lookups do not
look at the UIDVALIDITY; a flush does, and a folder made anew (another
UIDVALIDITY) starts a new file.  A record of a message no longer in the
folder is only never asked for, and dropped by the next compaction.

Reading and writing failures (a full disk, a permission) make the cache
answer from memory only for L{RETRY_AFTER} seconds, then it loads the file
again: a cache is never worth an error.  A file gone with its folder
(deleted meanwhile), or a folder the store no longer has, is forgotten
without a word.
"""

from __future__ import annotations

import contextlib
import os
import time
from abc import abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred, succeed
from twisted.internet.threads import deferToThread
from twisted.logger import Logger
from zope.interface import implementer

from tmail.errors import StoreError
from tmail.interfaces import IFieldCacheFolder, MessageInfo
from tmail.store import fieldcachefile as _file

#: A cache file smaller than this is read when first asked for, in the
#: reactor thread (a few milliseconds); a larger one in a worker thread,
#: the cache missing until it is read.
LOAD_INLINE = 4 * 1024 * 1024
#: A file smaller than this is never compacted.
COMPACT_MIN = 64 * 1024
#: Seconds a field's last use may lag before it is written again.
USE_RESOLUTION = 3600.0
#: Seconds a cache that failed to read or write answers from memory only.
RETRY_AFTER = 60.0
#: Seconds between two looks, on misses, for what other processes wrote.
CATCH_UP_EVERY = 0.5

_log = Logger()


class FolderGone(Exception):
    """The folder of a field cache is no more (its object was collected)."""


@implementer(IFieldCacheFolder)
class FieldCache:
    """
    The field cache of one folder; subclasses say which folder.

    @ivar runInThread: runs the file work (a callable and its arguments),
        returning a L{Deferred} of its result.
    @ivar catchUpEvery: seconds between two looks, on misses, for what other
        processes appended.
    """

    runInThread: Callable[..., Deferred[Any]] = staticmethod(deferToThread)  # type: ignore[arg-type]
    #: Seconds between two looks, on misses, for what other processes wrote.
    catchUpEvery = CATCH_UP_EVERY

    def __init__(self) -> None:
        self._fd: int | None = None
        self._scan: _file.Scan | None = None
        self._validity: int | None = None
        self._loading = False
        self._brokenUntil = 0.0
        self._pending: dict[bytes, dict[str, bytes]] = {}
        self._writing: dict[bytes, dict[str, bytes]] = {}
        self._uses: dict[str, float] = {}
        self._usesDirty = False
        self._flushing: Deferred[None] | None = None
        self._nextCatchUp = 0.0

    @abstractmethod
    def cachePath(self) -> Path:
        """
        Where the cache file of the folder is.  This and the other methods
        that ask the folder raise L{FolderGone} when it is no more.
        """

    @abstractmethod
    def currentValidity(self) -> int:
        """The folder's UIDVALIDITY."""

    @abstractmethod
    def messageKey(self, info: MessageInfo) -> bytes:
        """What names the message C{info} describes and its content."""

    @abstractmethod
    def liveKeys(self) -> set[bytes]:
        """The keys of every message in the folder."""

    @abstractmethod
    def messageCount(self) -> int:
        """How many messages the folder holds."""

    # Loading

    def _ready(self) -> bool:
        """Whether the index is there to answer from; loads it (or starts to)."""
        if self._scan is not None:
            return True
        if self._loading or time.monotonic() < self._brokenUntil:
            return False
        validity = self.currentValidity()
        path = self.cachePath()
        try:
            size = os.stat(path).st_size
        except FileNotFoundError:
            size = 0
        except OSError as e:
            self._broken(e)
            return False
        if size <= LOAD_INLINE:
            try:
                self._loaded(validity, _file.load(path, validity))
            except OSError as e:
                self._broken(e)
                return False
            return True
        self._loading = True
        d = self.runInThread(_file.load, path, validity)

        def done(result: tuple[int, _file.Scan]) -> None:
            self._loading = False
            if validity != self.currentValidity():
                os.close(result[0])
                return
            self._loaded(validity, result)

        def failed(failure: Any) -> None:
            self._loading = False
            failure.trap(OSError)
            self._broken(failure.value)

        d.addCallbacks(done, failed)
        return False

    def _loaded(self, validity: int, result: tuple[int, _file.Scan]) -> None:
        self._close()
        self._fd, self._scan = result
        self._validity = validity
        for name, when in self._scan.uses.items():
            self._uses[name] = max(when, self._uses.get(name, 0.0))

    def _forget(self) -> None:
        """Drop what was read and waits: the folder is another one now."""
        self._close()
        self._scan = None
        self._validity = None
        self._pending.clear()

    def _close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def _broken(self, error: OSError) -> None:
        _log.warn(
            "field cache {path} unusable for now: {error}",
            path=error.filename or "",
            error=os.strerror(error.errno) if error.errno else str(error),
        )
        self._forget()
        self._writing.clear()
        self._brokenUntil = time.monotonic() + RETRY_AFTER

    # IFieldCacheFolder

    def cachedFields(self, info: MessageInfo) -> dict[str, bytes] | None:
        key = self.messageKey(info)
        if not self._ready():
            return None
        assert self._scan is not None and self._fd is not None
        fields: dict[str, bytes] = {}
        span = self._scan.index.get(key)
        if span is None and key not in self._pending and key not in self._writing:
            span = self._catchUp(key)
        if span is not None and self._scan is not None and self._fd is not None:
            try:
                found = _file.readRecord(self._fd, span)
            except OSError:
                found = None
            if found is None or found[0] != key:
                del self._scan.index[key]
                self._scan.dead += span[1]
            else:
                fields.update(found[1])
        fields.update(self._writing.get(key, {}))
        fields.update(self._pending.get(key, {}))
        return fields or None

    def _catchUp(self, key: bytes) -> _file.Span | None:
        """
        On a miss, read what other processes appended since (or the file
        one of them compacted into place), then look for C{key} again; not
        while a flush of this process, which does the same, is running.
        """
        scan, fd = self._scan, self._fd
        now = time.monotonic()
        if scan is None or fd is None or self._flushing is not None or now < self._nextCatchUp:
            return None
        self._nextCatchUp = now + self.catchUpEvery
        try:
            on = os.stat(self.cachePath())
            own = os.fstat(fd)
            if (on.st_dev, on.st_ino) != (own.st_dev, own.st_ino):
                validity = self._validity
                if validity is None or on.st_size > LOAD_INLINE:
                    return None
                self._loaded(validity, _file.load(self.cachePath(), validity))
                return self._scan.index.get(key) if self._scan is not None else None
            if own.st_size <= scan.end:
                return None
            found = _file.scan(fd, scan.end, own.st_size, _file.Scan(end=scan.end))
        except (OSError, FolderGone):
            return None
        for other, span in found.index.items():
            old = scan.index.get(other)
            if old is not None:
                scan.dead += old[1]
            scan.index[other] = span
        scan.dead += found.dead
        scan.end = found.end
        for name, when in found.uses.items():
            self._uses[name] = max(when, self._uses.get(name, 0.0))
        return scan.index.get(key)

    def cacheFields(self, info: MessageInfo, fields: dict[str, bytes]) -> None:
        key = self.messageKey(info)
        if not fields or not self._ready():
            return
        self._pending.setdefault(key, {}).update(fields)

    def useField(self, name: str, when: float) -> None:
        if when - self._uses.get(name, float("-inf")) >= USE_RESOLUTION:
            self._uses[name] = when
            self._usesDirty = True

    def fieldUses(self) -> dict[str, float]:
        return dict(self._uses)

    def pendingFields(self) -> int:
        return len(self._pending)

    def flushFields(self, dropUnusedBefore: float, compactShare: float) -> Deferred[None]:
        if self._flushing is not None:
            previous = self._flushing
            d: Deferred[None] = Deferred()

            def again(_: object) -> None:
                self.flushFields(dropUnusedBefore, compactShare).chainDeferred(d)

            previous.addBoth(again)
            return d
        if not (self._pending or self._usesDirty) or self._scan is None:
            return succeed(None)
        flushing: Deferred[None] = Deferred()
        self._flushing = flushing

        async def run() -> None:
            try:
                await self._flush(dropUnusedBefore, compactShare)
            finally:
                self._flushing = None

        ensureDeferred(run()).chainDeferred(flushing)
        return flushing

    # Writing

    async def _flush(self, dropUnusedBefore: float, compactShare: float) -> None:
        self._writing, self._pending = self._pending, {}
        uses, self._usesDirty = dict(self._uses) if self._usesDirty else None, False
        try:
            if self.currentValidity() != self._validity:
                self._forget()
                return
            await self._append(uses)
            if self._scan is not None and self._compactDue(dropUnusedBefore, compactShare):
                await self._compact(dropUnusedBefore)
        except (FileNotFoundError, FolderGone, StoreError):
            self._forget()
        except OSError as e:
            self._broken(e)
        finally:
            self._writing = {}

    async def _append(self, uses: dict[str, float] | None) -> None:
        for _ in range(3):
            scan, fd, validity = self._scan, self._fd, self._validity
            if scan is None or fd is None or validity is None:
                return
            spans = {key: scan.index[key] for key in self._writing if key in scan.index}
            path = self.cachePath()
            try:
                done = await self.runInThread(
                    _file.append, fd, path, scan.end, self._writing, spans, uses
                )
            except _file.Replaced:
                result = await self.runInThread(_file.load, path, validity)
                if self._validity != validity:
                    os.close(result[0])
                    return
                self._loaded(validity, result)
                continue
            if self._scan is not scan:
                return
            for key, span in [*done.found.index.items(), *done.spans.items()]:
                old = scan.index.get(key)
                if old is not None:
                    scan.dead += old[1]
                scan.index[key] = span
            scan.dead += done.found.dead
            scan.end = done.found.end
            for name, when in done.found.uses.items():
                self._uses[name] = max(when, self._uses.get(name, 0.0))
            return

    def _compactDue(self, dropUnusedBefore: float, compactShare: float) -> bool:
        scan = self._scan
        assert scan is not None
        if scan.end < COMPACT_MIN:
            return False
        if any(when < dropUnusedBefore for when in self._uses.values()):
            return True
        stale = max(0, len(scan.index) - self.messageCount())
        average = scan.end / max(1, len(scan.index))
        return scan.dead + stale * average > compactShare * scan.end

    async def _compact(self, dropUnusedBefore: float) -> None:
        scan, fd, validity = self._scan, self._fd, self._validity
        if scan is None or fd is None or validity is None:
            return
        keep = {name for name, when in self._uses.items() if when >= dropUnusedBefore}
        uses = {name: self._uses[name] for name in keep}
        try:
            result = await self.runInThread(
                _file.compact,
                fd,
                self.cachePath(),
                validity,
                dict(scan.index),
                self.liveKeys(),
                uses,
                keep,
            )
        except _file.Replaced:
            return
        if self._scan is not scan:
            os.close(result[0])
            return
        self._uses = uses
        self._loaded(validity, result)
