# -*- test-case-name: tests.imap.test_imap_messagecache,tests.imap.test_imap_fieldcache -*-
"""
Parsed facts of messages (ENVELOPE, BODYSTRUCTURE, the header) kept in
memory and in each folder's field cache file, so that a second FETCH of
them, in this process or after a restart, neither opens the message's file
nor takes its MIME tree apart again: the role of Dovecot's
C{dovecot.index.cache}.

A fact is only a copy of what the stored bytes give, found by what names
those bytes: the folder, the UID and the store's own name, size and
internal date of the message (L{MessageInfo.key}, C{size}, C{internaldate};
a Maildir file's content never changes under its base name).  A message
replaced under the same UID, or a file put back under an expunged
message's name (which Maildir may give the same UID), has another name or
date and so misses; nothing is ever served that the stored message would
not give.

One L{MessageCache} serves every session of the process: folders are
shared per process (one store per user, one folder object per name), and
the bound, in bytes, is on all of them together, the least recently used
message going first.  Large messages are taken apart in worker threads,
which also fill the cache: it takes a lock.

With C{persistent}, a fact memory misses is looked up in the folder's
L{IFieldCacheFolder} when the store offers one (in the thread of a running
reactor; a worker thread sees memory only, and without a running reactor,
as in unit tests of the protocol, nothing is written), and a fact made is
kept there too.  The decisions are Dovecot's, simplified: a fact is written to a folder's file
once a client fetched it there (every fact made was fetched), and the file
notes per fact when a client last asked for it; a fact no client asked for
in the folder for C{dropUnusedAfter} seconds is dropped when the file is
next compacted.  Nothing is parsed on the delivery path: a new message's
facts are made when a client first fetches them.  Facts are written in
batches out of the reactor thread: at most every C{flushInterval} seconds
while new ones come, at once when C{flushRecords} messages wait, and when
a session leaves the folder.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol, cast
from weakref import WeakKeyDictionary

from twisted.internet.defer import Deferred, DeferredList
from twisted.logger import Logger
from twisted.python import threadable

from tmail.config.schema import IMAPSettings
from tmail.interfaces import IFieldCacheFolder, MessageInfo

#: Bytes one cached message costs beyond its facts' bytes (the key, the
#: dictionary and its entries), counted against the bound.
ENTRY_OVERHEAD = 512

_Key = tuple[object, int, str, int, float]


class IMessageFacts(Protocol):
    """What FETCH asks of a cache of parsed facts."""

    def get(self, folder: object, info: MessageInfo, name: str) -> bytes | None:
        """The fact C{name} of a message, if it is kept."""

    def put(self, folder: object, info: MessageInfo, name: str, value: bytes) -> None:
        """Keep the fact C{name} of a message (or not, if it does not fit)."""

    def leave(self, folder: object) -> None:
        """A session no longer has C{folder} selected: write what waits."""


_log = Logger()
_inIOThread = cast(Callable[[], bool], threadable.isInIOThread)


class MessageCache:
    """
    Facts of messages, at most C{maxBytes} of them in memory (with
    L{ENTRY_OVERHEAD} per message), least recently used first out; 0 keeps
    nothing there.  A fact larger than an eighth of the bound is not kept
    in memory, so that one message cannot empty the cache; one larger than
    C{maxFileFact} is not written to a folder's file.

    @ivar made: facts made from messages' bytes (what was not found kept).
    @ivar fileHits: facts found in a folder's file, not in memory.
    """

    def __init__(
        self,
        maxBytes: int,
        *,
        persistent: bool = False,
        flushInterval: float = 1.0,
        flushRecords: int = 256,
        compactShare: float = 0.5,
        dropUnusedAfter: float = 30 * 86400.0,
        maxFileFact: int = 1024 * 1024,
        reactor: Any = None,
    ) -> None:
        self.maxBytes = maxBytes
        self.size = 0
        self.persistent = persistent
        self.flushInterval = flushInterval
        self.flushRecords = flushRecords
        self.compactShare = compactShare
        self.dropUnusedAfter = dropUnusedAfter
        self.maxFileFact = maxFileFact
        self.made = 0
        self.fileHits = 0
        self._entries: OrderedDict[_Key, dict[str, bytes]] = OrderedDict()
        self._lock = threading.Lock()
        self._dirty: dict[IFieldCacheFolder, None] = {}
        self._adapted: WeakKeyDictionary[object, IFieldCacheFolder | None] = WeakKeyDictionary()
        self._flushedAt = time.monotonic()
        if reactor is None:
            from twisted.internet import reactor
        self._reactor = reactor

    @classmethod
    def fromSettings(cls, settings: IMAPSettings, reactor: Any = None) -> MessageCache:
        """The cache C{[imap]} settings describe."""
        return cls(
            settings.message_cache_size,
            persistent=settings.message_cache_persistent,
            flushInterval=settings.message_cache_flush_interval,
            flushRecords=settings.message_cache_flush_records,
            compactShare=settings.message_cache_compact_share,
            dropUnusedAfter=settings.message_cache_drop_unused_after,
            maxFileFact=settings.message_cache_file_max_fact,
            reactor=reactor,
        )

    @staticmethod
    def _key(folder: object, info: MessageInfo) -> _Key:
        return (folder, info.uid, info.key, info.size, info.internaldate)

    def get(self, folder: object, info: MessageInfo, name: str) -> bytes | None:
        fields = self._fileCache(folder)
        if fields is not None:
            fields.useField(name, time.time())
        if self.maxBytes:
            key = self._key(folder, info)
            with self._lock:
                facts = self._entries.get(key)
                if facts is not None:
                    # What the folder's file held of the message was copied
                    # here when the first fact of it was looked for.
                    self._entries.move_to_end(key)
                    return facts.get(name)
        if fields is None:
            return None
        kept = fields.cachedFields(info)
        if not kept:
            return None
        for other, found in kept.items():
            self._remember(folder, info, other, found)
        value = kept.get(name)
        if value is not None:
            self.fileHits += 1
        return value

    def put(self, folder: object, info: MessageInfo, name: str, value: bytes) -> None:
        self.made += 1
        if not self._remember(folder, info, name, value):
            return
        if not self.persistent or len(value) > self.maxFileFact:
            return
        if _inIOThread():
            self._write(folder, info, name, value)
        elif self._reactor.running:
            self._reactor.callFromThread(self._write, folder, info, name, value)

    def _remember(self, folder: object, info: MessageInfo, name: str, value: bytes) -> bool:
        """Keep a fact in memory; whether it is new there."""
        if not self.maxBytes or len(value) > self.maxBytes // 8:
            return True
        key = self._key(folder, info)
        with self._lock:
            facts = self._entries.get(key)
            if facts is None:
                facts = self._entries[key] = {}
                self.size += ENTRY_OVERHEAD
            else:
                self._entries.move_to_end(key)
            old = facts.get(name)
            if old == value:
                return False
            if old is not None:
                self.size -= len(old)
            facts[name] = value
            self.size += len(value)
            while self.size > self.maxBytes and self._entries:
                _, dropped = self._entries.popitem(last=False)
                self.size -= ENTRY_OVERHEAD + sum(len(v) for v in dropped.values())
        return True

    def _fileCache(self, folder: object) -> IFieldCacheFolder | None:
        """The field cache of C{folder}, when it has one and this thread may use it."""
        if not self.persistent or not _inIOThread() or not self._reactor.running:
            return None
        try:
            return self._adapted[folder]
        except KeyError:
            found: IFieldCacheFolder | None = IFieldCacheFolder(folder, None)
            self._adapted[folder] = found
            return found
        except TypeError:
            adapted: IFieldCacheFolder | None = IFieldCacheFolder(folder, None)
            return adapted

    def _write(self, folder: object, info: MessageInfo, name: str, value: bytes) -> None:
        fields = self._fileCache(folder)
        if fields is None:
            return
        fields.useField(name, time.time())
        fields.cacheFields(info, {name: value})
        self._dirty[fields] = None
        if (
            fields.pendingFields() >= self.flushRecords
            or time.monotonic() - self._flushedAt >= self.flushInterval
        ):
            self.flush()

    def leave(self, folder: object) -> None:
        fields = self._fileCache(folder)
        if fields is not None and fields in self._dirty:
            del self._dirty[fields]
            self._flushOne(fields)

    def flush(self) -> Deferred[Any]:
        """Write every folder's waiting facts; fires when they are written."""
        self._flushedAt = time.monotonic()
        dirty, self._dirty = list(self._dirty), {}
        return DeferredList([self._flushOne(fields) for fields in dirty])

    def _flushOne(self, fields: IFieldCacheFolder) -> Deferred[None]:
        d = fields.flushFields(time.time() - self.dropUnusedAfter, self.compactShare)
        d.addErrback(lambda failure: _log.failure("writing cached facts", failure))
        return d

    def __len__(self) -> int:
        return len(self._entries)
