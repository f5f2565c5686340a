# -*- test-case-name: tests.smtp.test_smtp_ratelimit -*-
"""
The bundled example policy: at most so many connections and messages per
client address in a window of time, as Postfix's anvil limits
(C{smtpd_client_connection_rate_limit}, C{smtpd_client_message_rate_limit}).

    [smtp]
    policies = ["ratelimit"]

    [policy.ratelimit]
    connections = 60      # per window and client address; 0 = no limit
    messages = 100        # MAIL FROM commands per window and address; 0 = no limit
    window = 60.0         # seconds

A connection beyond the limit is answered C{421 4.7.1} and closed; a C{MAIL
FROM} beyond it gets C{450 4.7.1}, so the client tries again later.  Every
accepted connection and C{MAIL FROM} counts, whatever becomes of the
message; refused ones do not.  Windows are fixed: an address's first
connection or message starts one, and its counts start again from zero when
it ends.  Counts are kept in memory per address (the whole address, IPv6
too), forgotten when their window ends and at a restart, and shared by
every listener that names the policy.  Time is the reactor's clock.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from twisted.internet.interfaces import IReactorTime

from tmail.smtp.policy import Answer, Policy, PolicyContext, PolicyError, tempfail

__all__ = ["RateLimit"]

_SETTINGS = ("connections", "messages", "window")


@dataclass(slots=True)
class _Counts:
    """What one address did in its current window."""

    start: float
    connections: int = 0
    messages: int = 0


def _count(key: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise PolicyError(f"expected an integer, got {value!r}", key)
    if value < 0:
        raise PolicyError("must not be negative", key)
    return value


class RateLimit(Policy):
    """
    Tempfails connections and messages from one client address beyond
    C{connections} and C{messages} per C{window} seconds (0: no limit).
    """

    def __init__(
        self,
        *,
        connections: int = 0,
        messages: int = 0,
        window: float = 60.0,
        clock: IReactorTime | None = None,
    ) -> None:
        self.connections = _count("connections", connections)
        self.messages = _count("messages", messages)
        if isinstance(window, bool) or not isinstance(window, int | float):
            raise PolicyError(f"expected a number of seconds, got {window!r}", "window")
        if not math.isfinite(window) or window <= 0:
            raise PolicyError("must be a positive number of seconds", "window")
        if not self.connections and not self.messages:
            raise PolicyError("set connections or messages (or both) to a limit above 0")
        self.window = float(window)
        self._clock = clock
        self._counts: dict[str, _Counts] = {}
        self._nextSweep = 0.0

    @classmethod
    def fromSettings(cls, options: Mapping[str, Any], clock: IReactorTime) -> RateLimit:
        """Build from a C{[policy.<name>]} table: C{connections}, C{messages}, C{window}."""
        for key in options:
            if key not in _SETTINGS:
                raise PolicyError(f"unknown key (known: {', '.join(_SETTINGS)})", key)
        return cls(**options, clock=clock)

    def _now(self) -> float:
        clock = self._clock
        if clock is None:
            from twisted.internet import reactor

            clock = self._clock = reactor
        assert clock is not None
        return clock.seconds()

    def _countsFor(self, address: str) -> _Counts:
        """The counts of C{address} in its current window (a new one if it ended)."""
        now = self._now()
        if now >= self._nextSweep:
            self._counts = {
                key: counts
                for key, counts in self._counts.items()
                if now < counts.start + self.window
            }
            self._nextSweep = now + self.window
        counts = self._counts.get(address)
        if counts is None or now >= counts.start + self.window:
            counts = self._counts[address] = _Counts(now)
        return counts

    def connect(self, context: PolicyContext) -> Answer:
        if not self.connections:
            return None
        counts = self._countsFor(context.clientAddress)
        if counts.connections >= self.connections:
            return tempfail(
                f"Error: too many connections from {context.clientAddress}", 421, "4.7.1"
            )
        counts.connections += 1
        return None

    def mail(self, context: PolicyContext) -> Answer:
        if not self.messages:
            return None
        counts = self._countsFor(context.clientAddress)
        if counts.messages >= self.messages:
            return tempfail(f"Error: too much mail from {context.clientAddress}", 450, "4.7.1")
        counts.messages += 1
        return None
