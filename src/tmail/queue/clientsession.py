# -*- test-case-name: tests.queue.test_queue_client -*-
"""
The SMTP client's wire session: commands out, complete (multi-line)
replies in (L{Reply}), every wait with its own timeout, and the message
written no faster than the network takes it (L{MessageFlow}).

It knows the framing, the timeouts and how a connection ends
(L{SessionLost}), not what the replies mean: that is the conversation's
(L{tmail.queue.conversation}).  A session between transactions is what
L{tmail.queue.connections.ConnectionCache} keeps.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from dataclasses import dataclass

from OpenSSL import SSL
from twisted.internet import defer
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.protocols.basic import LineOnlyReceiver
from twisted.python.failure import Failure

from tmail.queue.entry import Diagnostic
from tmail.queue.tlsa import DANEMismatch

__all__ = ["ClientSession", "MessageFlow", "Reply", "SessionLost", "parseExtensions"]

_STATUS = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})(?:\s+|\Z)")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


@dataclass(frozen=True, slots=True)
class Reply:
    """One complete reply: its code and the text of each of its lines."""

    code: int
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        return _CONTROL.sub(" ", " ".join(self.lines)).strip()

    def diagnostic(self, remoteMta: str) -> Diagnostic:
        """The reply as a diagnostic; a status from the reply code when it has none."""
        text = self.text
        match = _STATUS.match(text)
        if match is not None and match.group(1) == str(self.code)[0]:
            status = f"{match.group(1)}.{match.group(2)}.{match.group(3)}"
            text = text[match.end() :]
        else:
            status = f"{str(self.code)[0]}.0.0"
        return Diagnostic(status, text, self.code, remoteMta)


class SessionLost(Exception):
    """The connection ended (or was aborted after a timeout)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ClientSession(LineOnlyReceiver):
    """The wire: commands out, complete (multi-line) replies in, with timeouts."""

    delimiter = b"\r\n"
    MAX_LENGTH = 65536

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._lines: list[str] = []
        self._replies: list[Reply] = []
        self._waiter: defer.Deferred[Reply] | None = None
        self._timer: IDelayedCall | None = None
        self._lost: str | None = None
        self._gone = False
        self._goneWaiters: list[defer.Deferred[None]] = []
        self._idleWatcher: Callable[[], object] | None = None
        self.tlsFailed = False

    def lineReceived(self, line: bytes) -> None:
        text = line.decode("utf-8", "replace")
        code = text[:3]
        if len(code) < 3 or not code.isdigit() or code[0] not in "2345":
            self._lose("unintelligible reply: " + _CONTROL.sub(" ", text[:100]))
            return
        self._lines.append(text[4:])
        if text[3:4] == "-":
            if len(self._lines) > 1000:
                self._lose("reply too long")
            return
        reply = Reply(int(code), tuple(self._lines))
        self._lines = []
        waiter, self._waiter = self._waiter, None
        if waiter is None:
            self._replies.append(reply)
            self._idle()
        else:
            self._cancelTimer()
            waiter.callback(reply)

    def lineLengthExceeded(self, line: bytes) -> None:
        self._lose("reply line too long")

    def _lose(self, reason: str) -> None:
        self._fail(reason)
        if self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def connectionLost(self, reason: Failure | None = None) -> None:
        if reason is None or reason.check(ConnectionDone):  # type: ignore[no-untyped-call]
            self._fail("connection closed by the server")
        elif reason.check(SSL.Error, DANEMismatch):  # type: ignore[no-untyped-call]
            self.tlsFailed = True
            self._fail(f"TLS failed: {reason.getErrorMessage()}")
        else:
            self._fail(f"connection lost: {reason.getErrorMessage()}")
        self._gone = True
        waiters, self._goneWaiters = self._goneWaiters, []
        for waiter in waiters:
            waiter.callback(None)
        self._idle()

    def _idle(self) -> None:
        """Something happened while nobody was waiting: tell the cache, if parked."""
        watcher, self._idleWatcher = self._idleWatcher, None
        if watcher is not None:
            watcher()

    def watchIdle(self, callback: Callable[[], object] | None) -> None:
        self._idleWatcher = callback

    def usable(self) -> bool:
        return self._lost is None and not self._replies and self.transport is not None

    def quit(self, timeout: float) -> defer.Deferred[None]:
        return defer.Deferred.fromCoroutine(self._quitAndWait(timeout))

    async def _quitAndWait(self, timeout: float) -> None:
        with contextlib.suppress(SessionLost):
            await self.command("QUIT", timeout)
        self.close()
        if self.transport is not None:
            await self.whenGone()

    def whenGone(self) -> defer.Deferred[None]:
        """Fires once the connection is lost (at once if it is)."""
        gone: defer.Deferred[None] = defer.Deferred()
        if self._gone:
            gone.callback(None)
        else:
            self._goneWaiters.append(gone)
        return gone

    def _fail(self, reason: str) -> None:
        if self._lost is None:
            self._lost = reason
        self._cancelTimer()
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            waiter.errback(SessionLost(self._lost))

    def _cancelTimer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def expect(self, timeout: float, what: str) -> defer.Deferred[Reply]:
        """The next reply, or L{SessionLost} after C{timeout} seconds of waiting."""
        if self._replies:
            return defer.succeed(self._replies.pop(0))
        if self._lost is not None:
            return defer.fail(SessionLost(self._lost))
        self._waiter = defer.Deferred(self._stopWaiting)
        self._timer = self._clock.callLater(timeout, self._lose, f"timeout waiting for {what}")
        return self._waiter

    def _stopWaiting(self, waiter: defer.Deferred[Reply]) -> None:
        """The wait was cancelled: no timeout, and no reply is owed to it."""
        self._waiter = None
        self._cancelTimer()

    def abort(self) -> None:
        """Drop the connection now, whatever is still to be written."""
        self._fail("the attempt was cancelled")
        if self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def command(self, line: str, timeout: float, what: str | None = None) -> defer.Deferred[Reply]:
        """Send C{line} and wait for its reply."""
        if self._lost is None:
            self.transport.write(line.encode("utf-8") + b"\r\n")  # type: ignore[union-attr]
        return self.expect(timeout, what or line.split(" ", 1)[0])

    def write(self, data: bytes) -> None:
        if self._lost is None and data:
            self.transport.write(data)  # type: ignore[union-attr]

    def startTLS(self, context: object) -> None:
        self.transport.startTLS(context)  # type: ignore[union-attr]

    def close(self) -> None:
        if self.transport is not None:
            self.transport.loseConnection()


class MessageFlow:
    """
    A streaming producer on the session's transport, to write the message
    no faster than the network takes it, with the data block timeout.
    """

    def __init__(self, session: ClientSession, clock: IReactorTime, timeout: float) -> None:
        self._session = session
        self._clock = clock
        self._timeout = timeout
        self._paused = False
        self._stopped = False
        self._resumed: defer.Deferred[None] | None = None
        self._registered = False
        transport = session.transport
        if transport is not None:
            transport.registerProducer(self, True)  # type: ignore[attr-defined]
            self._registered = True

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        self._wake()

    def stopProducing(self) -> None:
        self._stopped = True
        self._wake()

    def _forget(self, resumed: defer.Deferred[None]) -> None:
        self._resumed = None

    def _wake(self) -> None:
        resumed, self._resumed = self._resumed, None
        if resumed is not None:
            resumed.callback(None)

    async def ready(self) -> None:
        """Return once the transport wants more; L{SessionLost} when the connection ended."""
        session = self._session
        if self._stopped:
            # The transport stops its producer before it tells the session
            # why the connection ended: wait for that, which is the reason.
            await session.whenGone()
        elif self._paused and session._lost is None:
            self._resumed = defer.Deferred(self._forget)
            timer = self._clock.callLater(self._timeout, self._timedOut)
            try:
                await self._resumed
            finally:
                if timer.active():
                    timer.cancel()
        if session._lost is not None:
            raise SessionLost(session._lost)

    def _timedOut(self) -> None:
        self._session._lose("timeout sending the message")
        # A transport that is gone already tells its producer nothing more.
        self._wake()

    def close(self) -> None:
        if self._registered and self._session.transport is not None:
            self._registered = False
            self._session.transport.unregisterProducer()  # type: ignore[attr-defined]


def parseExtensions(reply: Reply) -> dict[str, str]:
    """EHLO's keywords (upper case) and their parameters."""
    extensions = {}
    for line in reply.lines[1:]:
        keyword, _, params = line.strip().partition(" ")
        if keyword:
            extensions[keyword.upper()] = params.strip()
    return extensions
