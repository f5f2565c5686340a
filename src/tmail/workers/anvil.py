"""
The state the supervisor keeps for all its workers, as Postfix's and
Dovecot's C{anvil} services do: connections open per client and listener,
and failed and running logins per client (one
L{tmail.auth.throttle.AuthThrottle}).  Each worker's channel
(L{WorkerChannel}) answers that worker's questions and remembers what it
holds, so that a worker that dies gives its connections and running
checks back.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.protocols import amp
from twisted.python.failure import Failure

from tmail.auth.throttle import AuthThrottle
from tmail.clientaddress import IPV6_PREFIX_LENGTH
from tmail.config.schema import AuthSettings
from tmail.connections import ConnectionCounter
from tmail.interfaces import ILoginAttempt
from tmail.workers import channel

__all__ = ["Anvil", "WorkerChannel"]

_log = Logger()

_VERDICTS = ("succeeded", "failed", "abandoned")


class Anvil:
    """
    The counts shared by all workers.

    @ivar throttle: failed and running logins per client.
    @ivar queued: called with each queue entry a worker committed.
    @ivar changed: called with each folder key a worker changed and the
        channel of that worker.
    @ivar watches: called with a folder key when a worker starts or stops
        watching it.
    @ivar ready: called with the channel of a worker that is set up.
    """

    def __init__(
        self,
        auth: AuthSettings,
        clock: IReactorTime,
        ipv6Prefix: int = IPV6_PREFIX_LENGTH,
        queued: Callable[[str], object] = lambda entry: None,
        changed: Callable[[str, WorkerChannel], object] = lambda key, origin: None,
        watches: Callable[[str], object] = lambda key: None,
        ready: Callable[[WorkerChannel], object] = lambda link: None,
    ) -> None:
        self.throttle = AuthThrottle(auth, clock, ipv6Prefix)
        self.ipv6Prefix = ipv6Prefix
        self.queued = queued
        self.changed = changed
        self.watches = watches
        self.ready = ready
        self._counters: dict[str, ConnectionCounter] = {}
        self._numbers = itertools.count(1)

    def counter(self, name: str, limit: int, total: int) -> ConnectionCounter:
        """The count of the listeners C{name}, with the limits a worker last told."""
        counter = self._counters.get(name)
        if counter is None:
            counter = self._counters[name] = ConnectionCounter(limit, total, self.ipv6Prefix)
        counter.limit, counter.total = limit, total
        return counter

    def release(self, name: str, host: str) -> None:
        """An admitted connection from C{host} on the listeners C{name} ended."""
        counter = self._counters.get(name)
        if counter is not None:
            counter.release(host)

    def nextAttempt(self) -> int:
        return next(self._numbers)


class WorkerChannel(amp.AMP):
    """The supervisor's end of one worker's channel."""

    def __init__(self, anvil: Anvil, name: str) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.anvil = anvil
        self.name = name
        self._held: Counter[tuple[str, str]] = Counter()
        self._attempts: dict[int, ILoginAttempt] = {}
        #: The folders sessions in this worker watch.
        self.watching: set[str] = set()
        #: The folders this worker was told are watched in another worker.
        self.watchedElsewhere: set[str] = set()
        #: Whether the worker said it is set up (L{channel.Ready}).
        self.isReady = False
        self.lost: Deferred[None] = Deferred()

    @channel.Admit.responder
    def admit(self, counter: str, limit: int, total: int, host: str) -> dict[str, Any]:
        refusal = self.anvil.counter(counter, limit, total).admit(host)
        if refusal is None:
            self._held[counter, host] += 1
        return {"refusal": "" if refusal is None else refusal.value}

    @channel.Release.responder
    def release(self, counter: str, host: str) -> dict[str, Any]:
        if self._held[counter, host] > 0:
            self._held[counter, host] -= 1
            if not self._held[counter, host]:
                del self._held[counter, host]
            self.anvil.release(counter, host)
        return {}

    @channel.BeginLogin.responder
    def beginLogin(self, address: str) -> Deferred[dict[str, Any]]:
        def begun(attempt: ILoginAttempt | None) -> dict[str, Any]:
            if attempt is None:
                return {"attempt": 0}
            number = self.anvil.nextAttempt()
            self._attempts[number] = attempt
            return {"attempt": number}

        return self.anvil.throttle.begin(address).addCallback(begun)

    @channel.EndLogin.responder
    def endLogin(self, attempt: int, verdict: str) -> Deferred[dict[str, Any]]:
        running = self._attempts.pop(attempt, None)
        if running is None or verdict not in _VERDICTS:
            return succeed({})
        if verdict == "failed":
            return running.failed().addCallback(lambda _: {})
        if verdict == "succeeded":
            running.succeeded()
        else:
            running.abandoned()
        return succeed({})

    @channel.Queued.responder
    def queued(self, entry: str) -> dict[str, Any]:
        self.anvil.queued(entry)
        return {}

    @channel.FolderChanged.responder
    def folderChanged(self, key: str) -> dict[str, Any]:
        self.anvil.changed(key, self)
        return {}

    @channel.Watch.responder
    def watch(self, key: str, watched: bool) -> dict[str, Any]:
        if watched == (key in self.watching):
            return {}
        if watched:
            self.watching.add(key)
        else:
            self.watching.discard(key)
        self.anvil.watches(key)
        return {}

    @channel.Ready.responder
    def _ready(self) -> dict[str, Any]:
        self.isReady = True
        self.anvil.ready(self)
        return {}

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        """The worker is gone: what it held is given back."""
        super().connectionLost(reason)  # type: ignore[no-untyped-call]
        for (counter, host), count in self._held.items():
            for _ in range(count):
                self.anvil.release(counter, host)
        self._held.clear()
        for attempt in self._attempts.values():
            attempt.abandoned()
        self._attempts.clear()
        lost, self.lost = self.lost, Deferred()
        lost.callback(None)
