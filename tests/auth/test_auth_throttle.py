"""Failed-login throttling, the plaintext policy and the directory checker."""

from __future__ import annotations

from pathlib import Path

from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.address import IPv4Address, UNIXAddress
from twisted.internet.defer import fail, succeed
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from support.realm import ALICE, PASSWORD, makeRealm
from tmail.auth.checker import DirectoryChecker
from tmail.auth.policy import plaintextAuthAllowed
from tmail.auth.throttle import AuthThrottle, settle
from tmail.config.schema import AuthSettings
from tmail.connections import sendPromptly
from tmail.interfaces import ILoginAttempt, ILoginThrottle


class ThrottleTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.throttle = AuthThrottle(
            AuthSettings(failure_delay=2, max_failure_delay=5, max_failures=4, failure_window=60),
            self.clock,
        )

    def begin(self, address: str = "192.0.2.1") -> ILoginAttempt:
        attempt = self.successResultOf(self.throttle.begin(address))
        assert attempt is not None, f"{address} was refused"
        return attempt

    def refused(self, address: str = "192.0.2.1") -> bool:
        return self.successResultOf(self.throttle.begin(address)) is None

    def test_the_in_memory_throttle_provides_the_interface(self) -> None:
        verifyObject(ILoginThrottle, self.throttle)
        verifyObject(ILoginAttempt, self.begin())

    def test_failure_answers_are_delayed_more_each_time_up_to_the_cap(self) -> None:
        delays = []
        for _ in range(3):
            fired: list[None] = []
            self.begin().failed().addCallback(fired.append)
            delays.append(self.throttle.delayFor("192.0.2.1"))
            self.clock.advance(delays[-1] - 0.01)
            self.assertEqual(fired, [])
            self.clock.advance(0.02)
            self.assertEqual(fired, [None])
        self.assertEqual(delays, [2, 4, 5])

    def test_too_many_failures_block_the_address_until_the_window_passes(self) -> None:
        for _ in range(4):
            self.begin().failed()
        self.assertTrue(self.refused("192.0.2.1"))
        self.assertFalse(self.refused("192.0.2.2"))
        self.clock.advance(61)
        self.assertFalse(self.refused("192.0.2.1"))

    def test_a_success_does_not_reset_the_count_between_guesses(self) -> None:
        for _ in range(4):
            self.begin().failed()
            if self.throttle.failures("192.0.2.1") < 4:
                self.begin().succeeded()
        self.assertEqual(self.throttle.failures("192.0.2.1"), 4)
        self.assertTrue(self.refused())

    def test_running_checks_count_against_the_limit(self) -> None:
        """Parallel attempts get no more checks than sequential ones."""
        running = [self.begin() for _ in range(4)]
        self.assertTrue(self.refused())
        self.assertFalse(self.refused("192.0.2.2"))
        running[0].failed()
        self.assertTrue(self.refused())
        self.assertEqual(
            (self.throttle.failures("192.0.2.1"), self.throttle.running("192.0.2.1")), (1, 3)
        )

    def test_a_success_or_an_abandoned_check_stops_counting(self) -> None:
        first, second, *_ = (self.begin() for _ in range(4))
        self.assertTrue(self.refused())
        first.succeeded()
        second.abandoned()
        self.assertEqual(self.throttle.running("192.0.2.1"), 2)
        self.assertEqual(self.throttle.failures("192.0.2.1"), 0)
        self.begin()
        self.begin()
        self.assertTrue(self.refused())

    def test_an_attempt_is_closed_by_its_first_verdict_only(self) -> None:
        attempt = self.begin()
        other = self.begin()
        attempt.failed()
        attempt.succeeded()
        attempt.abandoned()
        self.successResultOf(attempt.failed())
        self.assertEqual(self.throttle.failures("192.0.2.1"), 1)
        self.assertEqual(self.throttle.running("192.0.2.1"), 1)
        other.succeeded()
        self.assertEqual(self.throttle.running("192.0.2.1"), 0)

    def test_addresses_with_nothing_left_in_the_window_are_forgotten(self) -> None:
        """Many addresses failing once each cost no memory after the window."""
        for n in range(5000):
            self.begin(f"2001:db8:{n:x}::1").failed()
        self.clock.advance(61)
        for n in range(5000):
            self.begin(f"2001:db9:{n:x}::1").succeeded()
        self.assertLess(len(self.throttle._records), 2048)

    def test_addresses_of_one_ipv6_prefix_share_their_failures(self) -> None:
        """A client holding a /64 cannot get a fresh count by changing address."""
        for n in range(4):
            self.begin(f"2001:db8:1:2::{n + 1}").failed()
        self.assertTrue(self.refused("2001:db8:1:2:ffff::9"))
        self.assertFalse(self.refused("2001:db8:1:3::1"))
        self.assertFalse(self.refused("192.0.2.1"))


class SettleTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.throttle = AuthThrottle(
            AuthSettings(failure_delay=2, max_failures=2, failure_window=60), self.clock
        )
        attempt = self.successResultOf(self.throttle.begin("192.0.2.1"))
        assert attempt is not None
        self.attempt = attempt

    def test_a_result_succeeds_the_attempt(self) -> None:
        settled = settle(self.attempt, succeed(b"alice@example.test"))
        self.assertEqual(self.successResultOf(settled), b"alice@example.test")
        self.assertEqual(self.throttle.running("192.0.2.1"), 0)
        self.assertEqual(self.throttle.failures("192.0.2.1"), 0)

    def test_a_refusal_fails_the_attempt_after_the_delay(self) -> None:
        settled = settle(self.attempt, fail(UnauthorizedLogin("wrong")))
        self.assertNoResult(settled)
        self.assertEqual(self.throttle.failures("192.0.2.1"), 1)
        self.clock.advance(2)
        self.failureResultOf(settled, UnauthorizedLogin)

    def test_an_internal_error_abandons_the_attempt(self) -> None:
        settled = settle(self.attempt, fail(OSError("directory unreadable")))
        self.failureResultOf(settled, OSError)
        self.assertEqual(self.throttle.running("192.0.2.1"), 0)
        self.assertEqual(self.throttle.failures("192.0.2.1"), 0)


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
