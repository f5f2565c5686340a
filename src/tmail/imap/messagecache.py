# -*- test-case-name: tests.imap.test_messagecache -*-
"""
Parsed facts of messages (ENVELOPE, BODYSTRUCTURE, the header) kept in
memory, so that a second FETCH of them neither opens the message's file nor
takes its MIME tree apart again: the role of Dovecot's
C{dovecot.index.cache}, in memory for now.

A fact is only a copy of what the stored bytes give, found by what names
those bytes: the folder, the UID and the store's own name and size of the
message (L{MessageInfo.key}, C{size}; a Maildir file's content never
changes under its base name).  A message replaced under the same UID, or a
folder made again, has another name and so misses; nothing is ever served
that the stored message would not give.

One L{MessageCache} serves every session of the process: folders are
shared per process (one store per user, one folder object per name), and
the bound, in bytes, is on all of them together, the least recently used
message going first.  Large messages are taken apart in worker threads,
which also fill the cache: it takes a lock.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Protocol

from tmail.interfaces import MessageInfo

#: Bytes one cached message costs beyond its facts' bytes (the key, the
#: dictionary and its entries), counted against the bound.
ENTRY_OVERHEAD = 512

_Key = tuple[object, int, str, int]


class IMessageFacts(Protocol):
    """
    What FETCH asks of a cache of parsed facts; an on-disk cache would
    offer the same.
    """

    def get(self, folder: object, info: MessageInfo, name: str) -> bytes | None:
        """The fact C{name} of a message, if it is kept."""

    def put(self, folder: object, info: MessageInfo, name: str, value: bytes) -> None:
        """Keep the fact C{name} of a message (or not, if it does not fit)."""


class MessageCache:
    """
    Facts of messages, at most C{maxBytes} of them (with L{ENTRY_OVERHEAD}
    per message), least recently used first out; 0 keeps nothing.  A fact
    larger than an eighth of the bound is not kept, so that one message
    cannot empty the cache.
    """

    def __init__(self, maxBytes: int) -> None:
        self.maxBytes = maxBytes
        self.size = 0
        self._entries: OrderedDict[_Key, dict[str, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _key(folder: object, info: MessageInfo) -> _Key:
        return (folder, info.uid, info.key, info.size)

    def get(self, folder: object, info: MessageInfo, name: str) -> bytes | None:
        if not self.maxBytes:
            return None
        key = self._key(folder, info)
        with self._lock:
            facts = self._entries.get(key)
            if facts is None:
                return None
            self._entries.move_to_end(key)
            return facts.get(name)

    def put(self, folder: object, info: MessageInfo, name: str, value: bytes) -> None:
        if not self.maxBytes or len(value) > self.maxBytes // 8:
            return
        key = self._key(folder, info)
        with self._lock:
            facts = self._entries.get(key)
            if facts is None:
                facts = self._entries[key] = {}
                self.size += ENTRY_OVERHEAD
            else:
                self._entries.move_to_end(key)
            old = facts.get(name)
            if old is not None:
                self.size -= len(old)
            facts[name] = value
            self.size += len(value)
            while self.size > self.maxBytes and self._entries:
                _, dropped = self._entries.popitem(last=False)
                self.size -= ENTRY_OVERHEAD + sum(len(v) for v in dropped.values())

    def __len__(self) -> int:
        return len(self._entries)
