# -*- test-case-name: tests.queue.test_queue_client -*-
"""
What one delivery attempt at one host came to: a L{RecipientResult} per
recipient, gathered in a L{DeliveryResult}, which says where to try next
and turns them into the queue's L{Outcome}s.

Apart from the client so that the conversation that makes them
(L{tmail.queue.conversation}) and L{tmail.queue.client.deliver}, which
returns them, share them without importing each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from tmail.queue.entry import Diagnostic, Outcome, QueueEntry, State
from tmail.queue.schedule import RetrySchedule

__all__ = ["DeliveryResult", "RecipientResult"]


@dataclass(frozen=True, slots=True)
class RecipientResult:
    """
    What one attempt came to for one recipient.

    @ivar state: L{State.DELIVERED}, L{State.DEFERRED} or L{State.FAILED}.
    @ivar diagnostic: the reply (or what went wrong).
    @ivar dsnPassedOn: delivered to a server that took the DSN request.
    """

    state: State
    diagnostic: Diagnostic
    dsnPassedOn: bool = False


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """
    What an attempt at one host came to.

    @ivar recipients: a result per recipient address, every one attempted.
    @ivar hostFailed: the host could not be used (no connection, lost or
        timed out, C{421}, greeting or EHLO refused, TLS required and not
        had): the recipients it had not answered yet are deferred
        (L{retryElsewhere}) and the next MX host is worth a try; the ones it
        answered keep their answer.
    @ivar tls: whether the message went over TLS.
    """

    recipients: Mapping[str, RecipientResult]
    hostFailed: bool = False
    tls: bool = False

    def retryElsewhere(self) -> tuple[str, ...]:
        """The recipients to try at the next MX host (none unless L{hostFailed})."""
        if not self.hostFailed:
            return ()
        return tuple(a for a, r in self.recipients.items() if r.state is State.DEFERRED)

    def outcomes(
        self, schedule: RetrySchedule, entry: QueueEntry, now: float
    ) -> dict[str, Outcome]:
        """
        The queue outcomes for L{tmail.queue.store.QueueStore.record}: a
        temporary failure is deferred or, once the entry expired, failed.
        """
        outcomes = {}
        for address, result in self.recipients.items():
            if result.state is State.DELIVERED:
                outcomes[address] = Outcome.delivered(result.diagnostic, result.dsnPassedOn)
            elif result.state is State.FAILED:
                outcomes[address] = Outcome.failed(result.diagnostic)
            else:
                attempts = entry.recipient(address).attempts + 1
                outcomes[address] = schedule.judge(entry.arrival, attempts, result.diagnostic, now)
        return outcomes
