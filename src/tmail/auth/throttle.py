"""
Failed-login throttling per client address, shared by SMTP, IMAP and POP3.

Each failure delays the answer to the next one (2 s, 4 s, 8 s ... up to a
cap, as Dovecot's auth penalty does); too many failures in a window refuse
further attempts from that address until the window has passed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater

from tmail.config.schema import AuthSettings


@dataclass
class _Record:
    failures: list[float] = field(default_factory=list)


class AuthThrottle:
    """Tracks failed logins per client address (a host string)."""

    def __init__(self, settings: AuthSettings, clock: IReactorTime) -> None:
        self.settings = settings
        self.clock = clock
        self._records: dict[str, _Record] = {}

    def _recent(self, address: str) -> list[float]:
        record = self._records.get(address)
        if record is None:
            return []
        horizon = self.clock.seconds() - self.settings.failure_window
        record.failures = [t for t in record.failures if t > horizon]
        if not record.failures:
            del self._records[address]
            return []
        return record.failures

    def isBlocked(self, address: str) -> bool:
        """Whether attempts from C{address} are refused for now."""
        return len(self._recent(address)) >= self.settings.max_failures

    def delayFor(self, address: str) -> float:
        """Seconds to wait before answering a failed attempt from C{address}."""
        count = len(self._recent(address))
        if count == 0 or self.settings.failure_delay <= 0:
            return 0.0
        delay = self.settings.failure_delay * 2 ** (count - 1)
        return float(min(delay, self.settings.max_failure_delay))

    def failed(self, address: str) -> Deferred[None]:
        """
        Record a failure; the returned Deferred fires when the failure may
        be reported to the client.
        """
        self._records.setdefault(address, _Record()).failures.append(self.clock.seconds())
        return deferLater(self.clock, self.delayFor(address), lambda: None)

    def succeeded(self, address: str) -> None:
        """
        A login from C{address} worked.  Its failures are kept until they
        age out of the window: otherwise one valid account would let an
        attacker reset the count between guesses at other accounts.
        """
