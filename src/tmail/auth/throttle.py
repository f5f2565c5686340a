"""
Failed-login throttling per client address, shared by SMTP, IMAP and POP3.

Each failure delays the answer to the next one (2 s, 4 s, 8 s ... up to a
cap, as Dovecot's auth penalty does); too many failures in a window refuse
further attempts from that address until the window has passed.

A check counts against the limit from before it starts until its verdict
(L{ILoginAttempt}): failures and checks still running together never exceed
C{max_failures}, so a client opening many connections at once gets no more
guesses than one that waits for each answer.  A successful login stops
counting at once and never resets the failures.

L{AuthThrottle} keeps the counts of one process in memory.  Several worker
processes must share one L{ILoginThrottle} that asks a common keeper of the
counts (the supervisor), so that the limit holds across them; the
protocols use only that interface.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeVar

from twisted.cred.error import LoginFailed
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from zope.interface import implementer

from tmail.clientaddress import IPV6_PREFIX_LENGTH, clientKey
from tmail.config.schema import AuthSettings
from tmail.interfaces import ILoginAttempt, ILoginThrottle

__all__ = ["AuthThrottle", "settle"]

T = TypeVar("T")


@dataclass
class _Record:
    failures: list[float] = field(default_factory=list)
    running: int = 0


@implementer(ILoginAttempt)
class _Attempt:
    """A running check of L{AuthThrottle}; closed once, by its verdict."""

    def __init__(self, throttle: AuthThrottle, address: str) -> None:
        self._throttle = throttle
        self._address = address
        self._open = True

    def _close(self) -> bool:
        if not self._open:
            return False
        self._open = False
        self._throttle._finished(self._address)
        return True

    def succeeded(self) -> None:
        self._close()

    def failed(self) -> Deferred[None]:
        if not self._close():
            return succeed(None)
        return self._throttle._failed(self._address)

    def abandoned(self) -> None:
        self._close()


@implementer(ILoginThrottle)
class AuthThrottle:
    """
    Counts failed and running logins per client, in memory: per address,
    or for IPv6 per prefix of C{ipv6Prefix} bits (L{clientKey}).
    """

    def __init__(
        self, settings: AuthSettings, clock: IReactorTime, ipv6Prefix: int = IPV6_PREFIX_LENGTH
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.ipv6Prefix = ipv6Prefix
        self._records: dict[str, _Record] = {}
        self._nextSweep = 0.0

    def _record(self, address: str) -> _Record | None:
        """The address's record with failures older than the window dropped."""
        record = self._records.get(address)
        if record is None:
            return None
        horizon = self.clock.seconds() - self.settings.failure_window
        if record.failures and record.failures[0] <= horizon:
            record.failures = [t for t in record.failures if t > horizon]
        if not record.failures and not record.running:
            del self._records[address]
            return None
        return record

    def _sweep(self) -> None:
        """Forget the addresses with nothing left in the window, once per window."""
        now = self.clock.seconds()
        if now < self._nextSweep:
            return
        self._nextSweep = now + self.settings.failure_window
        for address in list(self._records):
            self._record(address)

    def failures(self, address: str) -> int:
        """Failures from C{address} within the window."""
        record = self._record(clientKey(address, self.ipv6Prefix))
        return 0 if record is None else len(record.failures)

    def running(self, address: str) -> int:
        """Checks from C{address} begun and not closed yet."""
        record = self._record(clientKey(address, self.ipv6Prefix))
        return 0 if record is None else record.running

    def isBlocked(self, address: str) -> bool:
        """Whether a check from C{address} would be refused now."""
        record = self._record(clientKey(address, self.ipv6Prefix))
        if record is None:
            return False
        return len(record.failures) + record.running >= self.settings.max_failures

    def delayFor(self, address: str) -> float:
        """Seconds to wait before answering a failed attempt from C{address}."""
        count = self.failures(address)
        if count == 0 or self.settings.failure_delay <= 0:
            return 0.0
        delay = self.settings.failure_delay * 2 ** (count - 1)
        return float(min(delay, self.settings.max_failure_delay))

    def begin(self, address: str) -> Deferred[ILoginAttempt | None]:
        if self.isBlocked(address):
            return succeed(None)
        self._sweep()
        key = clientKey(address, self.ipv6Prefix)
        self._records.setdefault(key, _Record()).running += 1
        return succeed(_Attempt(self, key))

    def _finished(self, address: str) -> None:
        record = self._records.get(address)
        if record is not None:
            record.running -= 1
            self._record(address)

    def _failed(self, key: str) -> Deferred[None]:
        self._records.setdefault(key, _Record()).failures.append(self.clock.seconds())
        return deferLater(self.clock, self.delayFor(key), lambda: None)


def settle(attempt: ILoginAttempt, check: Deferred[T]) -> Deferred[T]:
    """
    Close C{attempt} with the verdict of C{check} (a credentials check or a
    portal login): a result succeeds it; L{LoginFailed} fails it, and the
    returned Deferred fails with that error only once the throttle's delay
    has passed; any other error abandons it.  The protocol chains its
    answers after this.
    """

    def right(result: T) -> T:
        attempt.succeeded()
        return result

    def wrong(failure: Failure) -> Any:
        if isinstance(failure.value, LoginFailed):
            return attempt.failed().addCallback(lambda _: failure)
        attempt.abandoned()
        return failure

    return check.addCallbacks(right, wrong)
