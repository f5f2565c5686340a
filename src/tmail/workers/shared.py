"""
A worker's side of the state its supervisor keeps for all workers: the
failed-login throttle (L{RemoteThrottle}) and the per-client connection
limits (L{SharedConnectionCounter}, L{AdmissionFactory}).

The protocols count connections synchronously, in C{connectionMade}
(L{tmail.connections.ConnectionCounter.admit}).  So that they need not
change, L{AdmissionFactory} wraps a listener's factory: a new connection
is held (not read) until the supervisor has counted it, then handed to the
protocol, whose C{admit} call is answered with the supervisor's verdict.
"""

from __future__ import annotations

from typing import Any, Protocol, cast

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IProtocolFactory, IReactorTime, ITransport
from twisted.internet.protocol import Protocol as TwistedProtocol
from twisted.internet.protocol import connectionDone
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from zope.interface import directlyProvides, implementer, providedBy

from tmail.auth.policy import peerHost
from tmail.clientaddress import IPV6_PREFIX_LENGTH
from tmail.connections import ConnectionCounter, Refusal
from tmail.interfaces import ILoginAttempt, ILoginThrottle
from tmail.workers import channel

__all__ = ["AdmissionFactory", "Caller", "RemoteThrottle", "SharedConnectionCounter"]

_log = Logger()


class Caller(Protocol):
    """What these clients need of the channel to the supervisor (an AMP protocol)."""

    def callRemote(self, command: type[Any], **kw: Any) -> Deferred[Any] | None: ...


@implementer(ILoginAttempt)
class _RemoteAttempt:
    def __init__(self, throttle: RemoteThrottle, number: int) -> None:
        self._throttle = throttle
        self._number = number
        self._open = True

    def _close(self, verdict: str) -> Deferred[None]:
        if not self._open:
            return succeed(None)
        self._open = False
        return self._throttle._end(self._number, verdict)

    def succeeded(self) -> None:
        self._close("succeeded")

    def failed(self) -> Deferred[None]:
        return self._close("failed")

    def abandoned(self) -> None:
        self._close("abandoned")


@implementer(ILoginThrottle)
class RemoteThrottle:
    """
    L{ILoginThrottle} kept by the supervisor
    (L{tmail.auth.throttle.AuthThrottle} there), so that the limit holds
    across workers.  If the supervisor cannot be asked, the worker is about
    to exit: a check is refused rather than made uncounted.
    """

    def __init__(self, caller: Caller, clock: IReactorTime, fallbackDelay: float) -> None:
        self.caller = caller
        self.clock = clock
        self.fallbackDelay = fallbackDelay

    def begin(self, address: str) -> Deferred[ILoginAttempt | None]:
        def begun(answer: dict[str, Any]) -> ILoginAttempt | None:
            number = int(answer["attempt"])
            return _RemoteAttempt(self, number) if number else None

        def unavailable(failure: Failure) -> None:
            _log.warn("Login throttle unavailable: {error}", error=failure.getErrorMessage())
            return None

        d = self.caller.callRemote(channel.BeginLogin, address=address)
        assert d is not None
        return d.addCallbacks(begun, unavailable)

    def _end(self, number: int, verdict: str) -> Deferred[None]:
        d = self.caller.callRemote(channel.EndLogin, attempt=number, verdict=verdict)
        assert d is not None

        def unavailable(failure: Failure) -> Deferred[None]:
            return deferLater(self.clock, self.fallbackDelay, lambda: None)

        return d.addCallbacks(lambda _: None, unavailable)


class SharedConnectionCounter(ConnectionCounter):
    """
    A listener's L{ConnectionCounter} whose verdicts come from the
    supervisor, for all workers: L{AdmissionFactory} asks it
    (L{decide}) just before the protocol calls L{admit}.  Counts here are
    this worker's own.

    @ivar name: what the supervisor counts these listeners' sessions under.
    """

    def __init__(
        self,
        caller: Caller,
        name: str,
        limit: int,
        total: int = 0,
        ipv6Prefix: int = IPV6_PREFIX_LENGTH,
    ) -> None:
        super().__init__(limit, total, ipv6Prefix)
        self.caller = caller
        self.name = name
        self._verdict: tuple[str, Refusal | None] | None = None

    def decide(self, host: str) -> Deferred[Refusal | None]:
        """Have the supervisor count a connection from C{host}, or refuse it."""

        def answered(answer: dict[str, Any]) -> Refusal | None:
            refusal = str(answer["refusal"])
            return Refusal(refusal) if refusal else None

        d = self.caller.callRemote(
            channel.Admit, counter=self.name, limit=self.limit, total=self.total, host=host
        )
        assert d is not None
        return d.addCallback(answered)

    def expect(self, host: str, verdict: Refusal | None) -> None:
        """The verdict the next L{admit} of C{host} answers."""
        self._verdict = (host, verdict)

    def admit(self, host: str) -> Refusal | None:
        expected, self._verdict = self._verdict, None
        if expected is None or expected[0] != host:
            return super().admit(host)
        if expected[1] is None:
            self.add(host)
        return expected[1]

    def release(self, host: str) -> None:
        super().release(host)
        self.caller.callRemote(channel.Release, counter=self.name, host=host)


class _Admission(ProtocolWrapper):
    """
    Holds a new connection, unread, until the supervisor has counted it;
    then connects the listener's protocol.
    """

    factory: AdmissionFactory
    _connected = False
    _lost = False
    _socket: Any = None

    def makeConnection(self, transport: ITransport) -> None:
        directlyProvides(self, providedBy(transport))
        TwistedProtocol.makeConnection(self, transport)  # type: ignore[no-untyped-call]
        self.factory.registerProtocol(self)  # type: ignore[no-untyped-call]
        self._socket = transport
        self._socket.pauseProducing()
        host = peerHost(transport)
        self.factory.counter.decide(host).addCallbacks(
            lambda verdict: self._decided(host, verdict), self._failed
        )

    def _decided(self, host: str, verdict: Refusal | None) -> None:
        counter = self.factory.counter
        if self._lost:
            if verdict is None:
                counter.caller.callRemote(channel.Release, counter=counter.name, host=host)
            return
        counter.expect(host, verdict)
        self._connected = True
        self._socket.resumeProducing()
        self.wrappedProtocol.makeConnection(cast(ITransport, self))

    def startTLS(self, contextFactory: object, normal: bool = True) -> None:
        """STARTTLS: the connection provides L{ISSLTransport} from now on, as the socket does."""
        self._socket.startTLS(contextFactory, normal)
        directlyProvides(self, providedBy(self._socket))

    def _failed(self, failure: Failure) -> None:
        _log.warn("Connection count unavailable: {error}", error=failure.getErrorMessage())
        if not self._lost:
            self._socket.loseConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._lost = True
        if self._connected:
            super().connectionLost(reason)  # type: ignore[no-untyped-call]
        else:
            self.factory.unregisterProtocol(self)  # type: ignore[no-untyped-call]


class AdmissionFactory(WrappingFactory):
    """Wraps a listener's factory so that its connections are counted by the supervisor."""

    protocol = _Admission
    noisy = False

    def __init__(self, wrapped: IProtocolFactory, counter: SharedConnectionCounter) -> None:
        super().__init__(wrapped)  # type: ignore[no-untyped-call]
        self.counter = counter
