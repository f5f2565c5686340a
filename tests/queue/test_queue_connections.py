"""Several messages over one SMTP connection: sessions parked in a ConnectionCache and reused."""

from __future__ import annotations

import io
from collections.abc import Callable, Generator
from typing import Any

from tests.queue.test_queue_client import MESSAGE, ClientTestCase, envelope, states
from tests.support.net import eventually
from tests.support.sink import DROP, SinkFactory, SinkProtocol, serverTLS, startSink
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint

from tmail.config.remotes import Credentials
from tmail.queue.client import deliver
from tmail.queue.clientsettings import ClientSettings, TLSMode
from tmail.queue.connections import ConnectionCache
from tmail.queue.entry import State
from tmail.queue.results import DeliveryResult


class KeepingSink(SinkFactory):
    """A sink that keeps its protocols, so a test can close a connection from the server's side."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.protocols: list[SinkProtocol] = []

    def buildProtocol(self, addr: object) -> SinkProtocol:
        protocol = super().buildProtocol(addr)
        self.protocols.append(protocol)
        return protocol


class ReuseTests(ClientTestCase):
    """L{deliver} with a L{ConnectionCache}, against a sink on loopback."""

    def makeCache(self, **kwargs: Any) -> ConnectionCache:
        cache = ConnectionCache(reactor, **kwargs)
        self.addCleanup(cache.close, 1.0)
        return cache

    @inlineCallbacks
    def start(self, sink: SinkFactory) -> Generator[Any, Any, int]:
        port: int = yield startSink(self, sink)
        return port

    def sendTo(
        self,
        port: int,
        cache: ConnectionCache,
        settings: ClientSettings | None = None,
        recipient: str = "bob@example.net",
    ) -> Any:
        return deliver(
            TCP4ClientEndpoint(reactor, "127.0.0.1", port),
            "localhost",
            envelope(recipient),
            io.BytesIO(MESSAGE),
            settings or self.settings(),
            cache=cache,
            destination=("127.0.0.1", port),
        )

    def waitFor(self, condition: Callable[[], bool], within: float = 5.0) -> Deferred[None]:
        return eventually(condition, within)

    def assertDelivered(self, result: DeliveryResult) -> None:
        self.assertEqual(set(states(result).values()), {State.DELIVERED})
        self.assertFalse(result.hostFailed)

    @inlineCallbacks
    def test_next_message_goes_over_the_same_connection_after_rset(
        self,
    ) -> Generator[Any, Any, None]:
        sink = SinkFactory()
        port = yield self.start(sink)
        cache = self.makeCache()
        for n in range(3):
            result = yield self.sendTo(port, cache, recipient=f"user{n}@example.net")
            self.assertDelivered(result)
        [session] = sink.sessions
        self.assertEqual(len(session.transactions), 3)
        verbs = [c.split(" ")[0] for c in session.commands]
        self.assertEqual(verbs.count("EHLO"), 1)
        self.assertNotIn("QUIT", verbs)
        self.assertEqual(verbs[verbs.index("DATA") + 1 :].count("RSET"), 2)
        self.assertEqual(len(cache), 1)

    @inlineCallbacks
    def test_connection_the_server_closed_while_parked_is_not_used(
        self,
    ) -> Generator[Any, Any, None]:
        sink = KeepingSink()
        port = yield self.start(sink)
        cache = self.makeCache()
        self.assertDelivered((yield self.sendTo(port, cache)))
        sink.protocols[0].transport.loseConnection()  # type: ignore[union-attr]
        yield self.waitFor(lambda: len(cache) == 0)
        self.assertDelivered((yield self.sendTo(port, cache)))
        self.assertEqual(len(sink.sessions), 2)
        self.assertNotIn("RSET", sink.sessions[1].commands)
        self.assertEqual(len(sink.messages), 2)

    @inlineCallbacks
    def test_session_refusing_rset_is_replaced_by_a_new_connection(
        self,
    ) -> Generator[Any, Any, None]:
        for refusal in ("421 4.3.2 Shutting down", DROP):
            sink = SinkFactory()
            port = yield self.start(sink)
            cache = self.makeCache()
            self.assertDelivered((yield self.sendTo(port, cache)))
            sink.replies["rset"] = refusal
            self.assertDelivered((yield self.sendTo(port, cache)))
            self.assertEqual([len(s.transactions) for s in sink.sessions], [1, 1])
            self.assertIn("RSET", sink.sessions[0].commands)
            self.assertNotIn("RSET", sink.sessions[1].commands)

    @inlineCallbacks
    def test_connection_carries_at_most_the_reuse_limit(self) -> Generator[Any, Any, None]:
        sink = SinkFactory()
        port = yield self.start(sink)
        cache = self.makeCache(reuseLimit=2)
        for _ in range(5):
            self.assertDelivered((yield self.sendTo(port, cache)))
        self.assertEqual([len(s.transactions) for s in sink.sessions], [2, 2, 1])
        self.assertEqual([s.commands[-1] for s in sink.sessions[:2]], ["QUIT", "QUIT"])

    @inlineCallbacks
    def test_idle_connection_is_closed_with_quit_after_the_reuse_time(
        self,
    ) -> Generator[Any, Any, None]:
        sink = SinkFactory()
        port = yield self.start(sink)
        cache = self.makeCache(reuseTime=0.2)
        self.assertDelivered((yield self.sendTo(port, cache)))
        self.assertEqual(len(cache), 1)
        yield self.waitFor(lambda: sink.sessions[0].closed)
        self.assertEqual(sink.sessions[0].commands[-1], "QUIT")
        self.assertEqual(len(cache), 0)

    @inlineCallbacks
    def test_reused_tls_session_stays_tls(self) -> Generator[Any, Any, None]:
        sink = SinkFactory(tls=serverTLS(self.pki))
        port = yield self.start(sink)
        cache = self.makeCache()
        settings = self.settings(mode=TLSMode.REQUIRED, verify=True, trustRoot=self.trust())
        for _ in range(2):
            result = yield self.sendTo(port, cache, settings)
            self.assertDelivered(result)
            self.assertTrue(result.tls)
        [session] = sink.sessions
        self.assertTrue(session.tls)
        self.assertEqual(session.commands.count("STARTTLS"), 1)
        self.assertEqual(len(session.transactions), 2)

    @inlineCallbacks
    def test_other_tls_policy_or_credentials_get_their_own_connection(
        self,
    ) -> Generator[Any, Any, None]:
        sink = SinkFactory(tls=serverTLS(self.pki), credentials=("relay", "secret"))
        port = yield self.start(sink)
        cache = self.makeCache()
        clear = self.settings(mode=TLSMode.NONE)
        tls = self.settings(mode=TLSMode.REQUIRED)
        login = ClientSettings(
            tls.heloName, tls.tls, tls.timeouts, credentials=Credentials("relay", "secret")
        )
        for settings in (clear, tls, login, clear, tls, login):
            self.assertDelivered((yield self.sendTo(port, cache, settings)))
        self.assertEqual(
            [(s.tls, s.user, len(s.transactions)) for s in sink.sessions],
            [(False, None, 2), (True, None, 2), (True, "relay", 2)],
        )

    @inlineCallbacks
    def test_closing_the_cache_quits_every_parked_connection(
        self,
    ) -> Generator[Any, Any, None]:
        sink = SinkFactory()
        port = yield self.start(sink)
        cache = self.makeCache()
        first = self.sendTo(port, cache, recipient="bob@example.net")
        second = self.sendTo(port, cache, recipient="carol@example.net")
        self.assertDelivered((yield first))
        self.assertDelivered((yield second))
        self.assertEqual(len(cache), 2)
        yield cache.close(1.0)
        self.assertEqual(len(cache), 0)
        yield self.waitFor(lambda: all(s.closed for s in sink.sessions))
        self.assertEqual([s.commands[-1] for s in sink.sessions], ["QUIT", "QUIT"])
        self.assertDelivered((yield self.sendTo(port, cache)))
        self.assertEqual(sink.sessions[2].commands[-1], "QUIT")

    @inlineCallbacks
    def test_without_a_destination_nothing_is_parked(self) -> Generator[Any, Any, None]:
        sink = SinkFactory()
        port = yield self.start(sink)
        cache = self.makeCache()
        result = yield deliver(
            TCP4ClientEndpoint(reactor, "127.0.0.1", port),
            "localhost",
            envelope(),
            io.BytesIO(MESSAGE),
            self.settings(),
            cache=cache,
        )
        self.assertDelivered(result)
        self.assertEqual(len(cache), 0)
        self.assertEqual(sink.sessions[0].commands[-1], "QUIT")
