"""
The MX's deadlines over loopback sockets, with small configured values: a
client that trickles a command or a message, or stretches a transaction,
without ever going silent for C{timeout}, is cut off with C{421 4.4.2};
junk commands past C{junk_command_limit} end the session; a normal session
never notices any of it.  Faster checks of the same rules over a
C{StringTransport} and a fake clock follow.
"""

from __future__ import annotations

import select
import smtplib
import socket
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

from test_smtp_session import MESSAGE, SessionTestCase, makeFactory, transaction
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial.unittest import TestCase

from support.net import eventually, inThread, listen
from support.realm import ALICE, makeRealm
from tmail.auth.throttle import AuthThrottle
from tmail.config.schema import AuthSettings, SMTPSettings
from tmail.smtp.factory import SMTPFactory

TIMEOUT = b"421 4.4.2 mx.example.test Error: timeout exceeded\r\n"


def command(sock: socket.socket, line: bytes) -> bytes:
    """Send one command line and read its reply (up to the final line)."""
    sock.sendall(line + b"\r\n")
    return reply(sock)


def reply(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\r\n") or data.split(b"\r\n")[-2][3:4] == b"-":
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def trickle(sock: socket.socket, data: bytes, every: float, within: float) -> tuple[bytes, float]:
    """
    Send C{data} over and over, one byte every C{every} seconds, until the
    server closes the connection or C{within} seconds pass; return what it
    sent meanwhile and how long the trickle lasted.
    """
    start = time.monotonic()
    received = b""
    position = 0
    waiting = select.poll()
    waiting.register(sock, select.POLLIN)
    while time.monotonic() - start < within:
        try:
            sock.sendall(data[position : position + 1])
        except OSError:
            break
        position = (position + 1) % len(data)
        if waiting.poll(every * 1000):
            try:
                chunk = sock.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            received += chunk
    return received, time.monotonic() - start


class DeadlineTests(TestCase):
    """An MX whose deadlines are short, and whose idle timeout is long."""

    limits: dict[str, Any] = dict(command_deadline=1.0, min_data_rate=1000, timeout=30.0)

    @inlineCallbacks
    def setUp(self) -> Generator[Deferred[Any], Any, None]:
        self.fixture = makeRealm(Path(self.mktemp()))
        self.factory = SMTPFactory(
            self.fixture.realm,
            SMTPSettings(greet_pause=0, **self.limits),
            hostname="mx.example.test",
            submission=False,
            portal=self.fixture.portal,
            tlsContextFactory=None,
            throttle=AuthThrottle(AuthSettings(), reactor),
        )
        self.port = yield listen(self, self.factory)

    def connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        self.addCleanup(sock.close)
        assert reply(sock).startswith(b"220 ")
        return sock

    def leftovers(self) -> list[Path]:
        """Files in any Maildir's tmp/: what an unfinished message left."""
        return [p for p in self.fixture.root.rglob("tmp/*") if p.is_file()]

    @inlineCallbacks
    def test_a_command_trickled_a_byte_at_a_time_is_cut_off_at_the_deadline(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        """
        A byte every 0.2 s never leaves the client silent for C{timeout}
        (30 s), but the line is not complete within C{command_deadline}
        (1 s): C{421 4.4.2} and the connection is closed.
        """

        def talk() -> tuple[bytes, float]:
            return trickle(self.connect(), b"NOOP " + b"x" * 200, every=0.2, within=15)

        received, lasted = yield inThread(talk)
        self.assertEqual(received, TIMEOUT)
        self.assertLess(lasted, 10)

    @inlineCallbacks
    def test_an_over_long_line_trickled_after_its_limit_is_cut_off_too(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        """A line past C{max_line_length} is skipped, but its rest is timed all the same."""

        def talk() -> tuple[bytes, float]:
            sock = self.connect()
            sock.sendall(b"NOOP " + b"x" * 3000)
            return trickle(sock, b"x", every=0.2, within=15)

        received, lasted = yield inThread(talk)
        self.assertEqual(received, b"500 5.5.2 Line too long\r\n" + TIMEOUT)
        self.assertLess(lasted, 10)

    @inlineCallbacks
    def test_data_slower_than_the_minimum_rate_is_cut_off_and_nothing_is_kept(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        """
        After 100 KB at full speed (in the Maildir's C{tmp/} by then),
        content at 20 bytes/s, under C{min_data_rate} (100 KB/s): C{421
        4.4.2}, nothing delivered, nothing left in C{tmp/}.
        """
        self.limits = dict(command_deadline=1.0, min_data_rate=100_000, timeout=30.0)
        yield self.setUp()
        started: list[list[Path]] = []

        def talk() -> tuple[bytes, float]:
            sock = self.connect()
            assert command(sock, b"EHLO client.example.org").startswith(b"250")
            assert command(sock, b"MAIL FROM:<s@remote.example>").startswith(b"250")
            assert command(sock, b"RCPT TO:<" + ALICE.encode() + b">").startswith(b"250")
            assert command(sock, b"DATA").startswith(b"354")
            sock.sendall(b"Subject: slow\r\n\r\n" + b"a line of the body\r\n" * 5000)
            time.sleep(0.3)
            started.append(self.leftovers())
            return trickle(sock, b"one more line\r\n", every=0.05, within=15)

        received, lasted = yield inThread(talk)
        self.assertEqual(received, TIMEOUT)
        self.assertLess(lasted, 10)
        self.assertEqual(len(started[0]), 1)
        yield eventually(lambda: not self.leftovers(), failure=lambda: str(self.leftovers()))
        self.assertEqual(self.fixture.inbox(ALICE), [])

    @inlineCallbacks
    def test_a_transaction_stretched_past_its_bound_is_cut_off(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        """
        RCPT after RCPT, each answered at once and never 2 s apart (the
        idle C{timeout}): the transaction may last C{timeout} plus
        C{max_message_size / min_data_rate} (2 + 1 s), then C{421 4.4.2}.
        """
        self.limits = dict(
            command_deadline=1.0, min_data_rate=1000, timeout=2.0, max_message_size=1000
        )
        yield self.setUp()

        def talk() -> tuple[bytes, float]:
            sock = self.connect()
            assert command(sock, b"EHLO client.example.org").startswith(b"250")
            assert command(sock, b"MAIL FROM:<s@remote.example>").startswith(b"250")
            start = time.monotonic()
            received = b""
            while time.monotonic() - start < 15:
                answer = command(sock, b"RCPT TO:<" + ALICE.encode() + b">")
                if not answer.startswith(b"250 "):
                    received = answer
                    break
                time.sleep(0.5)
            return received, time.monotonic() - start

        received, lasted = yield inThread(talk)
        self.assertEqual(received, TIMEOUT)
        self.assertLess(lasted, 10)

    @inlineCallbacks
    def test_junk_commands_past_the_limit_end_the_session(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        """
        With C{junk_command_limit = 3} and C{max_errors = 2}, the fourth
        NOOP counts as an error and the fifth ends the session, as
        Postfix's C{smtpd_junk_command_limit} does.
        """
        self.limits = dict(junk_command_limit=3, max_errors=2)
        yield self.setUp()

        def talk() -> list[bytes]:
            sock = self.connect()
            replies = [command(sock, b"NOOP") for _ in range(5)]
            replies.append(sock.recv(100))
            return replies

        replies = yield inThread(talk)
        self.assertEqual(
            replies,
            [b"250 2.0.0 Ok\r\n"] * 4
            + [b"421 4.7.0 mx.example.test Error: too many errors\r\n", b""],
        )

    @inlineCallbacks
    def test_a_normal_session_is_unaffected(self) -> Generator[Deferred[Any], Any, None]:
        """
        Three messages of 200 KB, sent the usual way, with the same short
        deadlines: all delivered.
        """
        body = b"Subject: big\r\n\r\n" + (b"0123456789abcdef" * 6 + b"\r\n") * 2000

        def send() -> list[dict[str, tuple[int, bytes]]]:
            with smtplib.SMTP("127.0.0.1", self.port, timeout=10) as client:
                client.ehlo("client.example.org")
                client.noop()
                return [client.sendmail("s@remote.example", [ALICE], body) for _ in range(3)]

        refused = yield inThread(send)
        self.assertEqual(refused, [{}, {}, {}])
        self.assertEqual(len(self.fixture.inbox(ALICE)), 3)


class DeadlineSessionTests(SessionTestCase):
    """The same rules on a fake clock."""

    def setUp(self) -> None:
        super().setUp()
        self.factory = self.limited()
        self.session = self.connect()

    def limited(self, **limits: Any) -> SMTPFactory:
        settings: dict[str, Any] = dict(
            command_deadline=10.0, min_data_rate=100, timeout=60.0, max_message_size=1000
        )
        return makeFactory(self.realm, self.clock, **{**settings, **limits})

    def startData(self) -> None:
        self.ehlo()
        transaction(self.session, b"alice@example.test")
        self.assertTrue(self.session.command(b"DATA").startswith(b"354 "))

    def test_a_partial_command_line_has_command_deadline_seconds(self) -> None:
        self.assertEqual(self.session.send(b"NO"), [])
        self.clock.advance(9)
        self.assertEqual(self.session.send(b"O"), [])
        self.clock.advance(1)
        self.assertEqual(self.session.take(), [TIMEOUT.rstrip()])
        self.assertTrue(self.session.closed)

    def test_each_complete_line_starts_a_new_deadline(self) -> None:
        self.ehlo()
        self.assertEqual(self.session.command(b"MAIL FROM:<s@remote.example>"), b"250 2.1.0 Ok")
        for _ in range(3):
            self.assertEqual(self.session.send(b"RCPT TO:<alice"), [])
            self.clock.advance(9)
            self.assertEqual(self.session.send(b"@example.test>\r\n"), [b"250 2.1.5 Ok"])
        self.clock.advance(30)
        self.assertFalse(self.session.closed)

    def test_content_buys_time_at_the_minimum_rate(self) -> None:
        """
        Content starts with C{command_deadline} (10 s); 500 bytes at 100
        bytes/s add 5 s; past the 15th second: C{421 4.4.2}.
        """
        self.startData()
        self.clock.advance(5)
        self.assertEqual(self.session.send(b"x" * 98 + b"\r\n" + b"y" * 398 + b"\r\n"), [])
        self.clock.advance(9.5)
        self.assertFalse(self.session.closed)
        self.clock.advance(1)
        self.assertEqual(self.session.take(), [TIMEOUT.rstrip()])
        self.assertEqual(self.realm.inbox("alice").stored, [])

    def test_content_never_buys_more_than_timeout(self) -> None:
        """
        10,000 bytes would buy 100 s, but the time left never exceeds
        C{timeout} (60 s): 30 s later another 100 bytes make it 61 s from
        the start, and then the session ends (before its idle timeout).
        """
        self.startData()
        self.session.send((b"z" * 98 + b"\r\n") * 100)
        self.clock.advance(30)
        self.session.send(b"z" * 98 + b"\r\n")
        self.clock.advance(30.5)
        self.assertFalse(self.session.closed)
        self.clock.advance(1)
        self.assertEqual(self.session.take(), [TIMEOUT.rstrip()])

    def test_the_transaction_deadline_passes_only_while_the_client_has_the_turn(self) -> None:
        """Once the message is in, its transaction's deadline no longer applies."""
        self.startData()
        self.assertEqual(self.session.send(MESSAGE + b".\r\n")[0][:3], b"250")
        for _ in range(4):
            self.clock.advance(30)
            self.assertEqual(self.session.command(b"NOOP"), b"250 2.0.0 Ok")
        self.assertFalse(self.session.closed)

    def test_a_delivered_message_resets_the_junk_count(self) -> None:
        """
        EHLO and NOOP are junk (limit 2); a delivery starts the count
        again; then three more count as errors (C{max_errors} 3).
        """
        self.factory = self.limited(junk_command_limit=2, max_errors=3)
        self.session = self.connect()
        self.startData()
        self.assertEqual(self.session.send(MESSAGE + b".\r\n")[0][:3], b"250")
        for _ in range(3):
            self.assertEqual(self.session.command(b"NOOP"), b"250 2.0.0 Ok")
        self.assertEqual(
            self.session.command(b"VRFY x"),
            b"252 2.5.2 Cannot verify the user, but will try delivery",
        )
        self.assertFalse(self.session.closed)
        self.assertEqual(
            self.session.send(b"HELP\r\n"), [b"421 4.7.0 mx.example.test Error: too many errors"]
        )
        self.assertTrue(self.session.closed)
