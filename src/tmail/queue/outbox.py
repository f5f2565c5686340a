# -*- test-case-name: tests.smtp.test_smtp_relay -*-
"""
The outbox: where the server's SMTP sessions hand mail that leaves for
other servers, and how the queue runner hears of it at once.

A session writes a new entry with L{Outbox.begin} (the two-phase
L{PendingEntry}) and answers C{250} only once it is committed; the commit
tells every listener (the runner, L{Outbox.listen}) the new entry's ID, so
the runner attempts it without reading the whole queue.  The queue itself
is the only state: a listener that misses a call (or a process that dies)
loses nothing, the runner's next look finds the entry.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.logger import Logger
from zope.interface import implementer

from tmail.fsutil import freeSpace
from tmail.interfaces import IFreeSpace, IPendingMessage
from tmail.queue.entry import Envelope, QueueEntry
from tmail.queue.store import PendingEntry, QueueStore

__all__ = ["Outbox"]


@implementer(IFreeSpace)
class Outbox:
    """
    The queue as the SMTP sessions see it.

    @ivar store: the queue.
    """

    log = Logger()

    def __init__(self, store: QueueStore) -> None:
        self.store = store
        self._listeners: list[Callable[[str], object]] = []

    def listen(self, listener: Callable[[str], object]) -> None:
        """Call C{listener} with the ID of every entry committed from now on."""
        self._listeners.append(listener)

    def unlisten(self, listener: Callable[[str], object]) -> None:
        """Stop calling C{listener}."""
        if listener in self._listeners:
            self._listeners.remove(listener)

    def freeSpace(self) -> int:
        """The bytes left on the queue's file system."""
        return freeSpace(self.store.path)

    def begin(self, envelope: Envelope) -> IPendingMessage:
        """A new entry for C{envelope}, as a store's pending message."""
        return _PendingCopy(self, self.store.begin(envelope))

    def enqueue(self, envelope: Envelope, data: bytes) -> QueueEntry:
        """Queue the message C{data} at once (blocks on the disk: use a thread)."""
        return self.store.enqueue(envelope, data)

    def committed(self, entryId: str) -> None:
        """Tell the listeners of a new entry; call it in the reactor thread."""
        for listener in list(self._listeners):
            try:
                listener(entryId)
            except Exception:
                self.log.failure("queue: a listener failed on {id}", id=entryId)


@implementer(IPendingMessage)
class _PendingCopy:
    """A L{PendingEntry} behind the store contract the SMTP delivery writes to."""

    def __init__(self, outbox: Outbox, pending: PendingEntry) -> None:
        self._outbox = outbox
        self._pending = pending
        self.entry: QueueEntry | None = None

    def write(self, data: bytes) -> None:
        self._pending.write(data)

    def publish(self) -> None:
        self._pending.publish()

    def commit(self) -> int:
        self.entry = self._pending.commit()
        self._outbox.committed(self.entry.id)
        return 0

    def abort(self) -> None:
        self._pending.abort()
