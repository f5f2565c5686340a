"""Failed-login throttling, the plaintext policy and the directory checker."""

from __future__ import annotations

from pathlib import Path

from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.address import IPv4Address, UNIXAddress
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase, TestCase

from support.realm import ALICE, PASSWORD, makeRealm
from tmail.auth.checker import DirectoryChecker
from tmail.auth.policy import plaintextAuthAllowed
from tmail.auth.throttle import AuthThrottle
from tmail.config.schema import AuthSettings
from tmail.connections import ConnectionCounter, sendPromptly


class ThrottleTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.throttle = AuthThrottle(
            AuthSettings(failure_delay=2, max_failure_delay=5, max_failures=4, failure_window=60),
            self.clock,
        )

    def test_failure_answers_are_delayed_more_each_time_up_to_the_cap(self) -> None:
        delays = []
        for _ in range(3):
            fired: list[None] = []
            self.throttle.failed("192.0.2.1").addCallback(fired.append)
            delays.append(self.throttle.delayFor("192.0.2.1"))
            self.clock.advance(delays[-1] - 0.01)
            self.assertEqual(fired, [])
            self.clock.advance(0.02)
            self.assertEqual(fired, [None])
        self.assertEqual(delays, [2, 4, 5])

    def test_too_many_failures_block_the_address_until_the_window_passes(self) -> None:
        for _ in range(4):
            self.throttle.failed("192.0.2.1")
        self.assertTrue(self.throttle.isBlocked("192.0.2.1"))
        self.assertFalse(self.throttle.isBlocked("192.0.2.2"))
        self.clock.advance(61)
        self.assertFalse(self.throttle.isBlocked("192.0.2.1"))

    def test_a_success_does_not_reset_the_count_between_guesses(self) -> None:
        for _ in range(4):
            self.throttle.failed("192.0.2.1")
            self.throttle.succeeded("192.0.2.1")
        self.assertTrue(self.throttle.isBlocked("192.0.2.1"))


class PlaintextPolicyTests(SynchronousTestCase):
    def transport(self, host: str) -> StringTransport:
        return StringTransport(peerAddress=IPv4Address("TCP", host, 1234))

    def test_loopback_policy_allows_only_local_peers(self) -> None:
        self.assertTrue(plaintextAuthAllowed("loopback", self.transport("127.0.0.1")))
        self.assertFalse(plaintextAuthAllowed("loopback", self.transport("192.0.2.1")))

    def test_never_and_always(self) -> None:
        self.assertFalse(plaintextAuthAllowed("never", self.transport("127.0.0.1")))
        self.assertTrue(plaintextAuthAllowed("always", self.transport("192.0.2.1")))

    def test_unix_socket_peers_count_as_local(self) -> None:
        transport = StringTransport(peerAddress=UNIXAddress(None))
        self.assertTrue(plaintextAuthAllowed("loopback", transport))


class ConnectionCounterTests(SynchronousTestCase):
    def test_limit_applies_per_address(self) -> None:
        counter = ConnectionCounter(2)
        self.assertTrue(counter.acquire("a"))
        self.assertTrue(counter.acquire("a"))
        self.assertFalse(counter.acquire("a"))
        self.assertTrue(counter.acquire("b"))
        counter.release("a")
        self.assertTrue(counter.acquire("a"))


class CheckerTests(TestCase):
    def setUp(self) -> None:
        self.fixture = makeRealm(Path(self.mktemp()))

    async def test_right_password_gives_the_canonical_address(self) -> None:
        checker = DirectoryChecker(self.fixture.directory)
        credentials = UsernamePassword(b"ALICE@example.test", PASSWORD.encode())
        avatar = await checker.requestAvatarId(credentials)
        self.assertEqual(avatar, ALICE.encode())

    async def test_wrong_password_and_unknown_user_fail_alike(self) -> None:
        checker = DirectoryChecker(self.fixture.directory)
        for name, password in ((ALICE, b"wrong"), ("nobody@example.test", PASSWORD.encode())):
            with self.assertRaises(UnauthorizedLogin):
                await checker.requestAvatarId(UsernamePassword(name.encode(), password))

    async def test_bare_local_part_uses_the_default_domain(self) -> None:
        checker = DirectoryChecker(self.fixture.directory, defaultDomain="example.test")
        avatar = await checker.requestAvatarId(UsernamePassword(b"alice", PASSWORD.encode()))
        self.assertEqual(avatar, ALICE.encode())


class SendPromptlyTests(SynchronousTestCase):
    def test_nagle_is_turned_off_on_tcp_and_ignored_elsewhere(self) -> None:
        class TCPLike:
            noDelay = False

            def setTcpNoDelay(self, enabled: bool) -> None:
                self.noDelay = enabled

        tcp = TCPLike()
        sendPromptly(tcp)
        self.assertTrue(tcp.noDelay)
        sendPromptly(StringTransport())
