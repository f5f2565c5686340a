# -*- test-case-name: tests.smtp.test_smtp_deadlines -*-
"""
The time limits of an SMTP session besides its idle timeout, as Postfix's
C{smtpd_per_request_deadline} and C{smtpd_min_data_rate} set them.

An idle timeout alone restarts with every byte, so a client sending one
byte every few seconds keeps a session (and whatever it holds: a
connection slot, a half-written message) forever.  Three deadlines bound
what a client can stretch:

  - a command line (or AUTH response) must be complete within
    C{command_deadline} seconds of its first byte;
  - DATA and BDAT content starts with C{command_deadline} seconds, and each
    byte received adds 1/C{min_data_rate} seconds, the time left never
    exceeding C{timeout}: content slower than the minimum rate runs out;
  - a transaction, from an accepted C{MAIL} to the end of its content,
    must be over within C{timeout} plus the time the largest message takes
    at the minimum rate, whatever mix of slow commands and refused content
    fills it.

The command and content deadlines time only the client's turn: they stop
while the server works on an answer (a policy deciding, a commit).  The
transaction's runs on through its commands' answers (its C{timeout} of
slack leaves room for them) and is ignored once the content is in, so it
never cuts off a message being committed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from tmail.config.schema import SMTPSettings

__all__ = ["Deadline", "SessionDeadlines"]

#: Which deadline passed.
Deadline = Literal["command", "data", "transaction"]


class SessionDeadlines:
    """
    The deadlines of one session; C{expired} is called with the one that
    passed (once: the session is to end then).

    @param inTransaction: whether a transaction is still the client's to
        finish (its content not yet all received), asked when the
        transaction deadline passes.
    """

    def __init__(
        self,
        clock: IReactorTime,
        settings: SMTPSettings,
        expired: Callable[[Deadline], None],
        inTransaction: Callable[[], bool],
    ) -> None:
        self._clock = clock
        self._settings = settings
        self._expired = expired
        self._inTransaction = inTransaction
        self._line: IDelayedCall | None = None
        self._data: IDelayedCall | None = None
        self._dataDeadline = 0.0
        self._transaction: IDelayedCall | None = None

    @property
    def transactionLimit(self) -> float:
        """Seconds a transaction may take: see the module docstring."""
        settings = self._settings
        return settings.timeout + settings.max_message_size / settings.min_data_rate

    def partialLine(self, pending: bool) -> None:
        """
        Whether part of a command line has arrived without its end; the
        command deadline runs from the first byte until the line is
        complete (or the server takes its turn: call with C{False}).
        """
        if pending and self._line is None:
            self._line = self._clock.callLater(
                self._settings.command_deadline, self._expire, "command"
            )
        elif not pending:
            _cancel(self._line)
            self._line = None

    def dataStarted(self) -> None:
        """Content (DATA, or a BDAT chunk) is now the client's to send."""
        self.dataEnded()
        delay = min(self._settings.command_deadline, self._settings.timeout)
        self._dataDeadline = self._clock.seconds() + delay
        self._data = self._clock.callLater(delay, self._expire, "data")

    def dataReceived(self, count: int) -> None:
        """C{count} bytes of content arrived: they buy time, up to C{timeout}."""
        timer = self._data
        if timer is None:
            return
        now = self._clock.seconds()
        settings = self._settings
        self._dataDeadline = min(
            self._dataDeadline + count / settings.min_data_rate, now + settings.timeout
        )
        timer.reset(max(self._dataDeadline - now, 0.0))

    def dataEnded(self) -> None:
        """The content (or the chunk) is in."""
        _cancel(self._data)
        self._data = None

    def transactionStarted(self) -> None:
        """C{MAIL} was accepted: the transaction's clock starts."""
        _cancel(self._transaction)
        self._transaction = self._clock.callLater(self.transactionLimit, self._transactionExpired)

    def stop(self) -> None:
        """The session is over: cancel every deadline."""
        for call in (self._line, self._data, self._transaction):
            _cancel(call)
        self._line = self._data = self._transaction = None

    def _transactionExpired(self) -> None:
        self._transaction = None
        if self._inTransaction():
            self._expire("transaction")

    def _expire(self, which: Deadline) -> None:
        self.stop()
        self._expired(which)


def _cancel(call: IDelayedCall | None) -> None:
    if call is not None and call.active():
        call.cancel()
