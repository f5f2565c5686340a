# -*- test-case-name: tests.queue.test_queue_schedule -*-
"""
When to try a deferred recipient again, when to give up, and when to warn
the sender of a delay: pure functions of the arrival time, the number of
attempts and the time now.

The defaults are Postfix's, rounded: the first retry 5 minutes after the
first failure, each wait twice the one before, capped at an hour; a
recipient still failing 5 days after arrival fails for good; a delay notice
once a recipient has been waiting 4 hours.  The last retry is moved to the
moment of expiry, so the sender hears of the failure then and not up to an
hour later.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tmail.queue.entry import Diagnostic, Outcome

__all__ = ["RetrySchedule"]

HOUR = 3600.0
DAY = 24 * HOUR


@dataclass(frozen=True, slots=True)
class RetrySchedule:
    """
    The retry settings.

    @ivar firstRetry: seconds from the first failed attempt to the second.
    @ivar factor: each wait is this times the one before (at least 1).
    @ivar maxBackoff: no wait is longer than this (seconds).
    @ivar lifetime: a recipient still failing this long after arrival fails
        for good (seconds).
    @ivar delayWarning: a delay notice is due this long after arrival
        (seconds); 0 sends none.
    """

    firstRetry: float = 5 * 60.0
    factor: float = 2.0
    maxBackoff: float = HOUR
    lifetime: float = 5 * DAY
    delayWarning: float = 4 * HOUR

    def __post_init__(self) -> None:
        for name in ("firstRetry", "factor", "maxBackoff", "lifetime", "delayWarning"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number of seconds, not {value!r}")
        if self.firstRetry <= 0 or self.maxBackoff <= 0:
            raise ValueError("firstRetry and maxBackoff must be positive")
        if self.factor < 1:
            raise ValueError("factor must be at least 1")

    def retryDelay(self, attempts: int) -> float:
        """The wait after the C{attempts}-th failed attempt (1 for the first)."""
        if attempts < 1:
            raise ValueError("no attempt has failed yet")
        first = min(self.firstRetry, self.maxBackoff)
        if self.factor == 1 or attempts == 1:
            return first
        # Past the cap the exponent no longer matters: stop before floats overflow.
        exponent = attempts - 1
        if exponent > math.log(self.maxBackoff / first) / math.log(self.factor):
            return self.maxBackoff
        return min(self.firstRetry * self.factor**exponent, self.maxBackoff)

    def expiry(self, arrival: float) -> float:
        """When a message that arrived at C{arrival} stops being retried."""
        return arrival + self.lifetime

    def expired(self, arrival: float, now: float) -> bool:
        """Whether a temporary failure at C{now} should be taken as final."""
        return now >= self.expiry(arrival)

    def nextAttempt(self, arrival: float, attempts: int, now: float) -> float:
        """
        When to try again after the C{attempts}-th attempt failed at C{now}:
        after L{retryDelay}, but no later than the expiry (unless that passed).
        """
        at = now + self.retryDelay(attempts)
        expiry = self.expiry(arrival)
        return min(at, expiry) if expiry > now else at

    def delayWarningDue(self, arrival: float, now: float) -> bool:
        """Whether a delay notice is due at C{now} (never once expired)."""
        if self.delayWarning <= 0 or self.expired(arrival, now):
            return False
        return now >= arrival + self.delayWarning

    def judge(self, arrival: float, attempts: int, diagnostic: Diagnostic, now: float) -> Outcome:
        """
        The outcome of a failed attempt (the C{attempts}-th, counting this
        one) at C{now}: failed when the failure is permanent or the message
        has expired, else deferred to L{nextAttempt}.
        """
        if diagnostic.permanent or self.expired(arrival, now):
            return Outcome.failed(diagnostic)
        return Outcome.deferred(diagnostic, self.nextAttempt(arrival, attempts, now))
