"""
The bundled rate limit policy (L{tmail.smtp.ratelimit}) in SMTP sessions,
with time kept by a C{Clock}.
"""

from __future__ import annotations

import pytest
from test_smtp_session import FakeRealm, Session, SessionTestCase, makeFactory
from twisted.internet.task import Clock

from tmail.smtp.policy import PolicyError
from tmail.smtp.ratelimit import RateLimit


class RateLimitTestCase(SessionTestCase):
    def limit(self, **settings: object) -> None:
        self.clock = Clock()
        self.realm = FakeRealm()
        self.policy = RateLimit.fromSettings(settings, self.clock)
        self.factory = makeFactory(
            self.realm, self.clock, policies=[self.policy], max_connections_per_address=100
        )

    def session(self, peer: str = "192.0.2.7") -> Session:
        session = self.connect(peer=peer)
        session.protocol.connectionLost(None)
        return session

    def mail(self, session: Session) -> bytes:
        return session.command(b"MAIL FROM:<s@remote.example>")


class ConnectionRateTests(RateLimitTestCase):
    def setUp(self) -> None:
        self.limit(connections=3, window=60)

    def test_connections_beyond_the_limit_get_421_until_the_window_ends(self) -> None:
        for _ in range(3):
            self.assertTrue(self.session().greeting[0].startswith(b"220 "))
        refused = self.session()
        self.assertEqual(
            refused.greeting, [b"421 4.7.1 Error: too many connections from 192.0.2.7"]
        )
        self.assertTrue(refused.closed)
        self.clock.advance(59)
        self.assertTrue(self.session().greeting[0].startswith(b"421 "))
        self.clock.advance(1)
        self.assertTrue(self.session().greeting[0].startswith(b"220 "))

    def test_each_address_has_its_own_count(self) -> None:
        for _ in range(3):
            self.session()
        self.assertTrue(self.session().greeting[0].startswith(b"421 "))
        self.assertTrue(self.session(peer="192.0.2.8").greeting[0].startswith(b"220 "))

    def test_messages_are_not_limited_when_only_connections_are(self) -> None:
        session = self.connect()
        self.ehlo(session)
        for _ in range(10):
            self.assertEqual(self.mail(session), b"250 2.1.0 Ok")
            session.command(b"RSET")


class MessageRateTests(RateLimitTestCase):
    def setUp(self) -> None:
        self.limit(messages=2, window=3600)

    def test_mail_beyond_the_limit_gets_450_in_every_session(self) -> None:
        """The count is per address, not per session; refused attempts do not count."""
        first = self.connect()
        self.ehlo(first)
        self.assertEqual(self.mail(first), b"250 2.1.0 Ok")
        first.command(b"RSET")
        second = self.connect()
        self.ehlo(second)
        self.assertEqual(self.mail(second), b"250 2.1.0 Ok")
        second.command(b"RSET")
        for _ in range(3):
            self.assertEqual(self.mail(second), b"450 4.7.1 Error: too much mail from 192.0.2.7")
        other = self.connect(peer="2001:db8::1")
        self.ehlo(other)
        self.assertEqual(self.mail(other), b"250 2.1.0 Ok")
        self.clock.advance(3600)
        later = self.connect()
        self.ehlo(later)
        self.assertEqual(self.mail(later), b"250 2.1.0 Ok")

    def test_connections_are_not_limited_when_only_messages_are(self) -> None:
        for _ in range(20):
            self.assertTrue(self.session().greeting[0].startswith(b"220 "))


def test_old_windows_are_forgotten() -> None:
    """Addresses seen once do not pile up: a later visit sweeps windows that ended."""
    clock = Clock()
    limit = RateLimit(connections=5, window=10, clock=clock)
    for n in range(100):
        limit._countsFor(f"192.0.2.{n}")
    assert len(limit._counts) == 100
    clock.advance(10)
    limit._countsFor("198.51.100.1")
    assert list(limit._counts) == ["198.51.100.1"]


@pytest.mark.parametrize(
    ("settings", "key", "problem"),
    [
        ({}, "", "set connections or messages"),
        ({"messages": -1}, "messages", "must not be negative"),
        ({"messages": True}, "messages", "expected an integer"),
        ({"messages": 5, "window": 0}, "window", "must be a positive number"),
        ({"messages": 5, "window": "1h"}, "window", "expected a number"),
        ({"messages": 5, "burst": 3}, "burst", "unknown key"),
    ],
)
def test_bad_settings_name_the_key(settings: dict[str, object], key: str, problem: str) -> None:
    with pytest.raises(PolicyError) as raised:
        RateLimit.fromSettings(settings, Clock())
    assert raised.value.key == key
    assert problem in raised.value.problem
