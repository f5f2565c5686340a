"""
How many sessions a listener holds: per client (an IPv4 address, or an
IPv6 prefix) and in all.  Past a limit a new session gets its protocol's
refusal and is closed; what it opened before stays served.
"""

from __future__ import annotations

import imaplib
import ipaddress
import poplib
import smtplib
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import reactor
from twisted.internet.address import IPv6Address
from twisted.internet.defer import inlineCallbacks
from twisted.internet.protocol import ServerFactory
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase, TestCase

from support.net import eventually, inThread, listen
from support.realm import makeRealm
from tmail.auth.throttle import AuthThrottle
from tmail.clientaddress import clientKey
from tmail.config.schema import AuthSettings, IMAPSettings, POP3Settings, SMTPSettings
from tmail.connections import ConnectionCounter, Refusal
from tmail.imap.factory import IMAPFactory
from tmail.pop3.factory import POP3Factory
from tmail.smtp.factory import SMTPFactory


class ClientKeyTests(SynchronousTestCase):
    @given(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1))
    def test_one_ipv6_prefix_is_one_client(self, network: int, one: int, other: int) -> None:
        first = str(ipaddress.IPv6Address((network << 64) | one))
        second = str(ipaddress.IPv6Address((network << 64) | other))
        if ipaddress.IPv6Address(first).ipv4_mapped is None:
            self.assertEqual(clientKey(first), clientKey(second))

    @given(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))
    def test_ipv4_addresses_are_clients_of_their_own(self, one: int, other: int) -> None:
        first, second = str(ipaddress.IPv4Address(one)), str(ipaddress.IPv4Address(other))
        self.assertEqual(clientKey(first) == clientKey(second), one == other)
        self.assertEqual(clientKey("::ffff:" + first), clientKey(first))

    def test_prefix_length_and_other_hosts(self) -> None:
        self.assertNotEqual(clientKey("2001:db8::1", 128), clientKey("2001:db8::2", 128))
        self.assertEqual(clientKey("2001:db8:0:1::1", 48), clientKey("2001:db8:0:2::1", 48))
        self.assertEqual(clientKey("local"), "local")


class ConnectionCounterTests(SynchronousTestCase):
    def test_limit_applies_per_client(self) -> None:
        counter = ConnectionCounter(2)
        self.assertIsNone(counter.admit("192.0.2.1"))
        self.assertIsNone(counter.admit("192.0.2.1"))
        self.assertIs(counter.admit("192.0.2.1"), Refusal.CLIENT)
        self.assertIsNone(counter.admit("192.0.2.2"))
        counter.release("192.0.2.1")
        self.assertIsNone(counter.admit("192.0.2.1"))

    def test_addresses_of_one_ipv6_prefix_count_together(self) -> None:
        counter = ConnectionCounter(2)
        self.assertIsNone(counter.admit("2001:db8:1:2::1"))
        self.assertIsNone(counter.admit("2001:db8:1:2::2"))
        self.assertIs(counter.admit("2001:db8:1:2:ffff::3"), Refusal.CLIENT)
        self.assertIsNone(counter.admit("2001:db8:1:3::1"))
        self.assertEqual(counter.count("2001:db8:1:2::9"), 2)

    def test_total_limit_applies_to_all_clients_together(self) -> None:
        counter = ConnectionCounter(0, total=3)
        for n in range(3):
            self.assertIsNone(counter.admit(f"192.0.2.{n}"))
        self.assertIs(counter.admit("192.0.2.9"), Refusal.SERVER)
        self.assertEqual(len(counter), 3)
        counter.release("192.0.2.0")
        self.assertIsNone(counter.admit("192.0.2.9"))


def ipv6Sessions(testCase: TestCase, factory: ServerFactory, count: int) -> list[bytes]:
    """What C{count} sessions from one IPv6 /64, each from an address of its own, are told first."""
    greetings = []
    for n in range(count):
        transport = StringTransport(peerAddress=IPv6Address("TCP", f"2001:db8::{n + 1}", 40000))
        protocol = factory.buildProtocol(None)
        protocol.makeConnection(transport)
        testCase.addCleanup(protocol.connectionLost, None)
        greetings.append(transport.value().split(b"\r\n")[0])
    return greetings


class ListenerLimitTests(TestCase):
    """Each protocol over loopback sockets, with real clients."""

    def setUp(self) -> None:
        self.fixture = makeRealm(Path(self.mktemp()))
        self.throttle = AuthThrottle(AuthSettings(), reactor)

    def smtp(self, **settings: Any) -> SMTPFactory:
        return SMTPFactory(
            self.fixture.realm,
            SMTPSettings(greet_pause=0, **settings),
            hostname="mail.example.test",
            submission=False,
            portal=None,
            tlsContextFactory=None,
            throttle=self.throttle,
        )

    def imap(self, **settings: Any) -> IMAPFactory:
        return IMAPFactory(
            self.fixture.portal,
            IMAPSettings(**settings),
            tlsContextFactory=None,
            throttle=self.throttle,
            hostname="mail.example.test",
        )

    def pop3(self, **settings: Any) -> POP3Factory:
        return POP3Factory(
            self.fixture.portal,
            POP3Settings(**settings),
            tlsContextFactory=None,
            throttle=self.throttle,
            hostname="mail.example.test",
        )

    @inlineCallbacks
    def overTheLimit(
        self, factory: ServerFactory, connect: Callable[[int], Callable[[], object]], refusal: bytes
    ) -> Any:
        """
        Two sessions are served, a third is refused, and once one ends a new
        one is served; C{connect} opens a session and returns what ends it.
        """
        port = yield listen(self, factory)
        first = yield inThread(connect, port)
        second = yield inThread(connect, port)

        def third() -> bytes:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                answer = b""
                while data := sock.recv(4096):
                    answer += data
                return answer

        answer = yield inThread(third)
        self.assertEqual(answer, refusal)
        yield inThread(first)
        yield eventually(lambda: len(factory.connections) == 1)  # type: ignore[attr-defined]
        fourth = yield inThread(connect, port)
        for end in (second, fourth):
            yield inThread(end)

    def test_smtp_refuses_sessions_over_max_connections(self) -> Any:
        def connect(port: int) -> Callable[[], object]:
            client = smtplib.SMTP("127.0.0.1", port, timeout=10)
            self.assertEqual(client.noop()[0], 250)
            return client.quit

        return self.overTheLimit(
            self.smtp(max_connections=2),
            connect,
            b"421 4.3.2 mail.example.test Too many connections; try later\r\n",
        )

    def test_imap_refuses_sessions_over_max_connections(self) -> Any:
        def connect(port: int) -> Callable[[], object]:
            client = imaplib.IMAP4("127.0.0.1", port, timeout=10)
            self.assertEqual(client.noop()[0], "OK")
            return client.logout

        return self.overTheLimit(
            self.imap(max_connections=2),
            connect,
            b"* BYE [UNAVAILABLE] Too many connections; try later\r\n",
        )

    def test_pop3_refuses_sessions_over_max_connections(self) -> Any:
        def connect(port: int) -> Callable[[], object]:
            client = poplib.POP3("127.0.0.1", port, timeout=10)
            self.assertTrue(client.getwelcome().startswith(b"+OK"))
            return client.quit

        return self.overTheLimit(
            self.pop3(max_connections=2),
            connect,
            b"-ERR [SYS/TEMP] Too many connections; try later\r\n",
        )

    def test_one_ipv6_prefix_is_one_client_on_every_protocol(self) -> None:
        self.assertEqual(
            ipv6Sessions(self, self.smtp(max_connections_per_address=2), 3)[2],
            b"421 4.7.0 Too many connections from your address",
        )
        self.assertEqual(
            ipv6Sessions(self, self.imap(max_connections_per_address=2), 3)[2],
            b"* BYE Too many connections from your address",
        )
        self.assertEqual(
            ipv6Sessions(self, self.pop3(max_connections_per_address=2), 3)[2],
            b"-ERR [SYS/TEMP] Too many connections from your address",
        )
