"""
Early talkers and unnegotiated pipelining on the MX (its defaults, with a
short greeting pause), over loopback sockets; submission and LMTP with their
defaults stay lenient.
"""

from __future__ import annotations

import smtplib
import socket
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from test_smtp_session import _LINE, FakeRealm, Session, makeFactory
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from support.net import inThread, listen, readLine, readUntil
from support.realm import ALICE, makeRealm
from tmail.auth.throttle import AuthThrottle
from tmail.config.schema import AuthSettings, LMTPSettings, SMTPSettings, SubmissionSettings
from tmail.smtp.factory import SMTPFactory
from tmail.smtp.lmtp import LMTPFactory
from tmail.smtp.synchronization import mayBePipelined

MESSAGE = b"Subject: hello\r\n\r\nbody\r\n"
TRANSACTION = (
    b"MAIL FROM:<s@remote.example>\r\nRCPT TO:<" + ALICE.encode() + b">\r\nDATA\r\n"
    b"" + MESSAGE + b".\r\nQUIT\r\n"
)
UNSYNCHRONIZED = b"554 5.5.0 Error: SMTP protocol synchronization\r\n"


def everything(sock: socket.socket) -> bytes:
    """All the server sends until it closes the connection."""
    return readUntil(sock, b"\0never\0")


class MXTests(TestCase):
    """The MX with its defaults but a greeting pause of 0.5 s."""

    pause = 0.5

    @inlineCallbacks
    def setUp(self) -> Generator[Deferred[Any], Any, None]:
        self.fixture = makeRealm(Path(self.mktemp()))
        self.port = yield listen(self, self.factory(SMTPSettings(greet_pause=self.pause)))

    def factory(self, settings: SMTPSettings, submission: bool = False) -> SMTPFactory:
        return SMTPFactory(
            self.fixture.realm,
            settings,
            hostname="mx.example.test",
            submission=submission,
            portal=self.fixture.portal,
            tlsContextFactory=None,
            throttle=AuthThrottle(AuthSettings(), reactor),
        )

    def connect(self, port: int | None = None) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", port or self.port), timeout=10)
        self.addCleanup(sock.close)
        return sock

    def greet(self, sock: socket.socket) -> list[bytes]:
        """Read the greeting, every line of it."""
        lines = [readLine(sock)]
        while lines[-1][:4] == b"220-":
            lines.append(readLine(sock))
        return lines

    def replies(self, sock: socket.socket, data: bytes, count: int) -> list[bytes]:
        """Send C{data}; read C{count} replies (their last lines)."""
        sock.sendall(data)
        finals = []
        while len(finals) < count:
            line = readLine(sock)
            if not line:
                break
            if line[3:4] != b"-":
                finals.append(line)
        return finals

    @inlineCallbacks
    def test_a_client_talking_before_the_greeting_ends_is_refused(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        """
        A whole transaction sent at once on connect, before the last
        greeting line: C{521 5.5.1 Protocol error}, the connection closed,
        nothing delivered.
        """

        def talk() -> bytes:
            sock = self.connect()
            sock.sendall(b"EHLO early.example.org\r\n" + TRANSACTION)
            return everything(sock)

        received = yield inThread(talk)
        self.assertEqual(
            received, b"220-mx.example.test ESMTP tmail\r\n521 5.5.1 Protocol error\r\n"
        )
        self.assertEqual(self.fixture.inbox(ALICE), [])

    @inlineCallbacks
    def test_a_patient_client_gets_the_greeting_after_the_pause(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        def talk() -> tuple[list[bytes], float]:
            start = time.monotonic()
            sock = self.connect()
            return self.greet(sock), time.monotonic() - start

        lines, waited = yield inThread(talk)
        self.assertEqual(
            lines,
            [b"220-mx.example.test ESMTP tmail\r\n", b"220 mx.example.test ESMTP tmail\r\n"],
        )
        self.assertGreaterEqual(waited, self.pause)

    @inlineCallbacks
    def test_smtplib_reads_the_two_line_greeting_and_delivers(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        def send() -> dict[str, tuple[int, bytes]]:
            with smtplib.SMTP("127.0.0.1", self.port, timeout=10) as client:
                return client.sendmail("s@remote.example", [ALICE], MESSAGE)

        refused = yield inThread(send)
        self.assertEqual(refused, {})
        self.assertEqual(len(self.fixture.inbox(ALICE)), 1)

    @inlineCallbacks
    def test_helo_then_pipelined_mail_rcpt_data_is_refused(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        """
        After HELO (no PIPELINING), MAIL with RCPT and DATA behind it:
        C{554 5.5.0}, the connection closed, MAIL unanswered, nothing
        delivered.
        """

        def talk() -> tuple[list[bytes], bytes]:
            sock = self.connect()
            self.greet(sock)
            helo = self.replies(sock, b"HELO client.example.org\r\n", 1)
            sock.sendall(TRANSACTION)
            return helo, everything(sock)

        helo, received = yield inThread(talk)
        self.assertEqual(helo, [b"250 mx.example.test\r\n"])
        self.assertEqual(received, UNSYNCHRONIZED)
        self.assertEqual(self.fixture.inbox(ALICE), [])

    @inlineCallbacks
    def test_ehlo_with_commands_behind_it_is_refused(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        """EHLO must end a pipelined group (RFC 2920 3.1)."""

        def talk() -> bytes:
            sock = self.connect()
            self.greet(sock)
            sock.sendall(b"EHLO client.example.org\r\n" + TRANSACTION)
            return everything(sock)

        received = yield inThread(talk)
        self.assertEqual(received, UNSYNCHRONIZED)
        self.assertEqual(self.fixture.inbox(ALICE), [])

    @inlineCallbacks
    def test_data_with_the_message_behind_it_is_refused(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        """
        After EHLO, MAIL and RCPT may be pipelined, but the message must
        wait for DATA's 354.
        """

        def talk() -> tuple[list[bytes], bytes]:
            sock = self.connect()
            self.greet(sock)
            self.replies(sock, b"EHLO client.example.org\r\n", 1)
            sock.sendall(TRANSACTION)
            return everything(sock).split(b"\r\n")[:-1], b""

        received, _ = yield inThread(talk)
        self.assertEqual(received, [b"250 2.1.0 Ok", b"250 2.1.5 Ok", UNSYNCHRONIZED.rstrip()])
        self.assertEqual(self.fixture.inbox(ALICE), [])

    @inlineCallbacks
    def test_pipelining_as_ehlo_offered_it_delivers(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        """
        EHLO, then MAIL, RCPT, RCPT and DATA in one write, the message after
        354, then RSET and NOOP in one write: as RFC 2920 allows.
        """

        def talk() -> list[bytes]:
            sock = self.connect()
            self.greet(sock)
            replies = self.replies(sock, b"EHLO client.example.org\r\n", 1)
            replies += self.replies(
                sock,
                b"MAIL FROM:<s@remote.example>\r\nRCPT TO:<" + ALICE.encode() + b">\r\n"
                b"RCPT TO:<nobody@example.test>\r\nDATA\r\n",
                4,
            )
            replies += self.replies(sock, MESSAGE + b".\r\n", 1)
            replies += self.replies(sock, b"RSET\r\nNOOP\r\n", 2)
            replies += self.replies(sock, b"QUIT\r\n", 1)
            return [reply[:3] for reply in replies]

        codes = yield inThread(talk)
        self.assertEqual(
            codes, [b"250", b"250", b"250", b"550", b"354", b"250", b"250", b"250", b"221"]
        )
        self.assertEqual(len(self.fixture.inbox(ALICE)), 1)

    @inlineCallbacks
    def test_the_checks_can_be_turned_off(self) -> Generator[Deferred[Any], Any, None]:
        """
        C{early_talkers = "allow"} with a pause: what came early waits for
        the greeting; C{unauth_pipelining = "allow"}: HELO and a pipelined
        transaction are served.
        """
        port = yield listen(
            self,
            self.factory(
                SMTPSettings(greet_pause=0.2, early_talkers="allow", unauth_pipelining="allow")
            ),
        )

        def talk() -> bytes:
            sock = self.connect(port)
            sock.sendall(b"HELO early.example.org\r\n" + TRANSACTION)
            return everything(sock)

        received = yield inThread(talk)
        self.assertEqual(
            received.split(b"\r\n")[:-1],
            [
                b"220-mx.example.test ESMTP tmail",
                b"220 mx.example.test ESMTP tmail",
                b"250 mx.example.test",
                b"250 2.1.0 Ok",
                b"250 2.1.5 Ok",
                b"354 End data with <CR><LF>.<CR><LF>",
                received.split(b"\r\n")[6],
                b"221 2.0.0 Bye",
            ],
        )
        self.assertTrue(received.split(b"\r\n")[6].startswith(b"250 2.0.0 Ok: queued as "))
        self.assertEqual(len(self.fixture.inbox(ALICE)), 1)

    @inlineCallbacks
    def test_submission_with_its_defaults_stays_lenient(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        """
        Mail clients are no spambots: submission greets at once and serves
        a client that talks first and pipelines after HELO.
        """
        port = yield listen(self, self.factory(SubmissionSettings(), submission=True))

        def talk() -> bytes:
            sock = self.connect(port)
            sock.sendall(b"HELO early.example.org\r\nNOOP\r\nMAIL FROM:<a@b.example>\r\nQUIT\r\n")
            return everything(sock)

        received = yield inThread(talk)
        self.assertEqual(
            received.split(b"\r\n")[:-1],
            [
                b"220 mx.example.test ESMTP tmail",
                b"250 mx.example.test",
                b"250 2.0.0 Ok",
                b"530 5.7.0 Authentication required",
                b"221 2.0.0 Bye",
            ],
        )

    @inlineCallbacks
    def test_lmtp_with_its_defaults_stays_lenient(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        """The MTA in front may send LHLO and a whole transaction at once."""
        port = yield listen(
            self,
            LMTPFactory(self.fixture.realm, LMTPSettings(), hostname="mx.example.test"),
        )

        def talk() -> bytes:
            sock = self.connect(port)
            sock.sendall(b"LHLO mta.example.org\r\n" + TRANSACTION)
            return everything(sock)

        received = yield inThread(talk)
        codes = [line[:4] for line in received.split(b"\r\n")[:-1] if line[3:4] == b" "]
        self.assertEqual(codes, [b"220 ", b"250 ", b"250 ", b"250 ", b"354 ", b"250 ", b"221 "])
        self.assertEqual(len(self.fixture.inbox(ALICE)), 1)


class PipeliningRuleTests(TestCase):
    def test_rfc2920_last_commands_of_a_group(self) -> None:
        for verb in (b"EHLO", b"HELO", b"LHLO", b"DATA", b"VRFY", b"EXPN", b"noop"):
            self.assertFalse(mayBePipelined(verb, pipelining=True), verb)
        for verb in (b"MAIL", b"RCPT", b"RSET", b"BDAT", b"QUIT", b"STARTTLS", b"AUTH"):
            self.assertTrue(mayBePipelined(verb, pipelining=True), verb)

    def test_without_pipelining_nothing_may_be_pipelined(self) -> None:
        for verb in (b"MAIL", b"RCPT", b"RSET", b"NOOP", b"HELO", b"XYZZY"):
            self.assertFalse(mayBePipelined(verb, pipelining=False), verb)
        for verb in (b"QUIT", b"STARTTLS", b"BDAT"):
            self.assertTrue(mayBePipelined(verb, pipelining=False), verb)


class RandomInputTests(SynchronousTestCase):
    @settings(max_examples=150, deadline=None)
    @given(st.lists(_LINE, max_size=25), st.lists(st.integers(1, 60), max_size=10))
    def test_the_mx_checks_end_a_session_cleanly_or_not_at_all(
        self, lines: list[bytes], cuts: list[int]
    ) -> None:
        """
        Random commands, arriving in random pieces, on an MX with its
        checks on: every reply is well formed, nothing is logged as
        unexpected, and a session the checks end got C{554 5.5.0} last.
        """
        clock = Clock()
        factory = makeFactory(FakeRealm(), clock, unauth_pipelining="reject", max_errors=10**6)
        session = Session(factory, clock)
        data = b"".join(line + b"\r\n" for line in lines)
        for cut in cuts:
            piece, data = data[:cut], data[cut:]
            session.protocol.dataReceived(piece)
            clock.advance(0.01)
        session.protocol.dataReceived(data)
        output = session.transport.value()
        self.assertEqual(self.flushLoggedErrors(), [])
        replies = output.split(b"\r\n")[:-1]
        for reply in replies:
            self.assertRegex(reply, rb"\A[2345]\d\d[ -]")
        if session.closed:
            self.assertIn(
                replies[-1],
                (UNSYNCHRONIZED.rstrip(), b"421 4.7.0 mx.example.test Error: too many errors"),
            )
        session.protocol.connectionLost(None)
