# -*- test-case-name: tests.queue.test_queue_connections -*-
"""
SMTP sessions kept open between deliveries, to send several messages per
connection (as Postfix's C{smtp_connection_cache_on_demand} does).

After a transaction ends normally, L{tmail.queue.client.deliver} parks
its session here instead of saying QUIT, under the key of what it is
connected to (address, port, host name and TLS settings: see
L{tmail.queue.client}).  The next delivery with the same key takes it
(L{ConnectionCache.take}), resets it with RSET and sends its message on
it.  A parked session is closed with QUIT once it has been idle for
C{reuseTime} seconds; one that has carried C{reuseLimit} messages is not
parked again; one the server closes, or speaks on unasked, is dropped.

A runner owns one cache and closes it (L{ConnectionCache.close}) when it
stops.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime

__all__ = ["REUSE_LIMIT", "REUSE_TIME", "ConnectionCache", "Parked", "Reusable"]

#: Seconds a parked session may stay idle (Postfix's smtp_connection_cache_time_limit).
REUSE_TIME = 2.0
#: Messages one connection carries at most (Postfix's smtp_connection_reuse_count_limit).
REUSE_LIMIT = 100
#: Seconds a parked session's QUIT waits for its reply.
QUIT_TIMEOUT = 10.0


class Reusable(Protocol):
    """What the cache needs of a session."""

    def watchIdle(self, callback: Callable[[], object] | None) -> None:
        """Call C{callback} once when the idle session stops being usable (C{None}: stop)."""

    def usable(self) -> bool:
        """Whether the connection is open and nothing arrived unasked."""

    def quit(self, timeout: float) -> defer.Deferred[None]:
        """Say QUIT, close; fires, never failing, once the connection is gone."""

    def abort(self) -> None:
        """Drop the connection at once."""


@dataclass(eq=False)
class Parked:
    """
    A session between transactions, and what it was set up with.

    @ivar extensions: what the server offered in its last EHLO.
    @ivar tls: whether the session is over TLS.
    @ivar uses: how many messages it has carried.
    """

    session: Reusable
    extensions: Mapping[str, str]
    tls: bool
    uses: int
    _timer: IDelayedCall | None = field(default=None, repr=False)


class ConnectionCache:
    """
    Idle sessions by key, each kept at most C{reuseTime} seconds and used
    for at most C{reuseLimit} messages.
    """

    def __init__(
        self,
        clock: IReactorTime,
        reuseTime: float = REUSE_TIME,
        reuseLimit: int = REUSE_LIMIT,
        quitTimeout: float = QUIT_TIMEOUT,
    ) -> None:
        self.clock = clock
        self.reuseTime = reuseTime
        self.reuseLimit = reuseLimit
        self.quitTimeout = quitTimeout
        self._parked: dict[Hashable, list[Parked]] = {}
        self._closing: dict[Reusable, defer.Deferred[None]] = {}
        self._closed = False

    def __len__(self) -> int:
        """How many sessions are parked."""
        return sum(len(sessions) for sessions in self._parked.values())

    def take(self, key: Hashable) -> Parked | None:
        """The most recently parked usable session for C{key}, no longer parked."""
        sessions = self._parked.get(key)
        while sessions:
            parked = sessions.pop()
            if not sessions:
                del self._parked[key]
            self._unwatch(parked)
            if parked.session.usable():
                return parked
            self._retire(parked.session)
            sessions = self._parked.get(key)
        return None

    def park(self, key: Hashable, parked: Parked) -> bool:
        """
        Keep C{parked} for the next delivery to C{key}; C{False} (and the
        caller closes it) when it has carried enough messages, when reuse
        is off, or once the cache is closed.
        """
        if (
            self._closed
            or self.reuseTime <= 0
            or parked.uses >= self.reuseLimit
            or not parked.session.usable()
        ):
            return False
        self._parked.setdefault(key, []).append(parked)
        parked._timer = self.clock.callLater(self.reuseTime, self._expire, key, parked)
        parked.session.watchIdle(lambda: self._expire(key, parked))
        return True

    def _expire(self, key: Hashable, parked: Parked) -> None:
        """Idle too long, or unusable: no longer parked, and closed."""
        sessions = self._parked.get(key, [])
        if parked not in sessions:
            return
        sessions.remove(parked)
        if not sessions:
            del self._parked[key]
        self._unwatch(parked)
        self._retire(parked.session)

    def _unwatch(self, parked: Parked) -> None:
        if parked._timer is not None and parked._timer.active():
            parked._timer.cancel()
        parked._timer = None
        parked.session.watchIdle(None)

    def discard(self, session: Reusable) -> None:
        """Close a session that was taken but would not do (QUIT, or dropped once closed)."""
        if self._closed:
            session.abort()
        else:
            self._retire(session)

    def _retire(self, session: Reusable) -> None:
        if session in self._closing:
            return
        d = session.quit(self.quitTimeout)
        self._closing[session] = d

        def gone(_: object) -> None:
            self._closing.pop(session, None)

        d.addBoth(gone)

    def close(self, grace: float) -> defer.Deferred[None]:
        """
        Close every parked session with QUIT and park no more; fires once
        every connection the cache closes is gone, those still open after
        C{grace} seconds dropped.
        """
        self._closed = True
        for key in list(self._parked):
            for parked in self._parked.pop(key):
                self._unwatch(parked)
                self._retire(parked.session)
        closing = dict(self._closing)
        if not closing:
            return defer.succeed(None)

        def dropAll() -> None:
            for session in closing:
                session.abort()

        timer = self.clock.callLater(grace, dropAll)

        def done(_: object) -> None:
            if timer.active():
                timer.cancel()

        return defer.DeferredList(list(closing.values())).addCallback(done)
