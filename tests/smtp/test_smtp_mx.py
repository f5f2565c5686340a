"""
The MX listener on a loopback port with a real realm and Maildir store,
driven by C{smtplib} and raw sockets.
"""

from __future__ import annotations

import os
import re
import smtplib
import socket
from collections.abc import Generator
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial.unittest import TestCase

from support.net import inThread, listen
from support.pki import makePKI
from support.realm import ALICE, BOB, makeRealm
from tmail.auth.throttle import AuthThrottle
from tmail.config.schema import AuthSettings, SMTPSettings, TLSSettings
from tmail.smtp.factory import SMTPFactory
from tmail.tls import serverContextFactory

BODY = b"From: someone@remote.example\r\nSubject: hello\r\n\r\nline one\r\n.dotted\r\n"

TRACE = re.compile(
    rb"\AReturn-Path: <(?P<sender>[^>]*)>\r\n"
    rb"Delivered-To: (?P<user>\S+)\r\n"
    rb"Received: from (?P<helo>\S+) \(127\.0\.0\.1 \[127\.0\.0\.1\]\)\r\n"
    rb"\tby mx\.example\.test \(tmail\) with (?P<proto>[A-Z]+) id (?P<id>[0-9A-F]+)\r\n"
    rb"\tfor <(?P<rcpt>[^>]+)>; "
    rb"[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d [+-]\d{4}\r\n"
)


def exchange(port: int, *writes: tuple[bytes, int]) -> bytes:
    """
    Connect, read the greeting, then send each C{(data, replies)} write and
    read that many final reply lines; return everything read.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        received = [readReplies(s, 1)]
        for data, replies in writes:
            s.sendall(data)
            received.append(readReplies(s, replies))
        return b"".join(received)


def readReplies(s: socket.socket, count: int = 1) -> bytes:
    """Read until C{count} final reply lines (C{NNN text}) have arrived."""
    data = b""
    while len(re.findall(rb"^\d{3} ", data, re.M)) < count or not data.endswith(b"\r\n"):
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


class MXTests(TestCase):
    @inlineCallbacks
    def setUp(self) -> Generator[Deferred[Any], Any, None]:
        self.fixture = makeRealm(Path(self.mktemp()))
        self.pki = makePKI(Path(self.mktemp()))
        self.factory = SMTPFactory(
            self.fixture.realm,
            SMTPSettings(greet_pause=0),
            hostname="mx.example.test",
            submission=False,
            portal=self.fixture.portal,
            tlsContextFactory=serverContextFactory(TLSSettings(self.pki.certificate, self.pki.key)),
            throttle=AuthThrottle(AuthSettings(), reactor),
        )
        self.port = yield listen(self, self.factory)

    def send(
        self, sender: str, recipients: list[str], body: bytes, helo: str = "client.example.org"
    ) -> dict[str, tuple[int, bytes]]:
        with smtplib.SMTP("127.0.0.1", self.port, timeout=5) as client:
            client.ehlo(helo)
            return client.sendmail(sender, recipients, body)

    @inlineCallbacks
    def test_deliveryStoresExactBytes(self) -> Generator[Deferred[Any], Any, None]:
        """
        The stored message is the trace headers followed by the body exactly
        as sent (CRLF line ends, dot-unstuffed); C{+tag} reaches the user.
        """
        refused = yield inThread(
            self.send, "someone@remote.example", ["alice+news@example.test"], BODY
        )
        self.assertEqual(refused, {})
        [message] = self.fixture.inbox(ALICE)
        match = TRACE.match(message)
        assert match is not None, message
        self.assertEqual(
            match.group("sender", "user", "helo", "proto", "rcpt"),
            (
                b"someone@remote.example",
                b"alice@example.test",
                b"client.example.org",
                b"ESMTP",
                b"alice+news@example.test",
            ),
        )
        self.assertEqual(message[match.end() :], BODY)
        self.assertEqual(self.fixture.inbox(BOB), [])

    @inlineCallbacks
    def test_aliasesAndCatchAll(self) -> Generator[Deferred[Any], Any, None]:
        """Aliases fan out, a catch-all takes unknown local parts, each user gets one copy."""
        self.fixture.directory.addAlias("team@example.test", [ALICE, BOB])
        self.fixture.directory.addAlias("@example.test", [BOB])
        refused = yield inThread(
            self.send, "s@remote.example", ["team@example.test", "whoever@example.test", BOB], BODY
        )
        self.assertEqual(refused, {})
        [toAlice] = self.fixture.inbox(ALICE)
        [toBob] = self.fixture.inbox(BOB)
        self.assertEqual(toAlice, toBob)
        self.assertNotIn(b"Delivered-To:", toBob)
        self.assertNotIn(b"\tfor <", toBob)

    @inlineCallbacks
    def test_one_message_for_several_users_is_stored_once_and_linked(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        """Each mailbox has its own name for the same file (one inode), as Dovecot's LMTP does."""
        refused = yield inThread(self.send, "s@remote.example", [ALICE, BOB], BODY)
        self.assertEqual(refused, {})
        inodes = set()
        for user in (ALICE, BOB):
            folder = self.fixture.store(user).getFolder("INBOX")
            [info] = folder.messages()
            with folder.openMessage(info.uid) as f:
                inodes.add(os.fstat(f.fileno()).st_ino)
        self.assertEqual(len(inodes), 1)

    @inlineCallbacks
    def test_a_single_recipient_copy_names_its_user(self) -> Generator[Deferred[Any], Any, None]:
        yield inThread(self.send, "s@remote.example", ["alice+tag@example.test"], BODY)
        [toAlice] = self.fixture.inbox(ALICE)
        self.assertIn(b"Delivered-To: " + ALICE.encode() + b"\r\n", toAlice)
        self.assertIn(b"\r\n\tfor <alice+tag@example.test>; ", toAlice)

    def recipientReplies(self, recipients: list[str]) -> list[tuple[int, bytes]]:
        with smtplib.SMTP("127.0.0.1", self.port, timeout=5) as client:
            client.ehlo("client.example.org")
            client.mail("s@remote.example")
            return [client.docmd("RCPT", f"TO:<{r}>") for r in recipients]

    @inlineCallbacks
    def test_noOpenRelay(self) -> Generator[Deferred[Any], Any, None]:
        """
        Other domains are refused, also through the C{%} hack, source routes
        and quoted local parts; unknown users are C{5.1.1}; an alias that
        points outside is C{5.1.2} on a server without an outbound queue.
        """
        self.fixture.directory.addAlias("fwd@example.test", ["someone@elsewhere.example"])
        replies = yield inThread(
            self.recipientReplies,
            [
                "victim@elsewhere.example",
                "victim%elsewhere.example@example.test",
                "@example.test:victim@elsewhere.example",
                '"victim@elsewhere.example"@example.test',
                "nobody@example.test",
                "fwd@example.test",
                "alice@example.test",
            ],
        )
        self.assertEqual(
            [(code, text[:5]) for code, text in replies],
            [
                (550, b"5.7.1"),
                (550, b"5.1.1"),
                (550, b"5.7.1"),
                (550, b"5.1.1"),
                (550, b"5.1.1"),
                (550, b"5.1.2"),
                (250, b"2.1.5"),
            ],
        )
        self.assertEqual(replies[0][1], b"5.7.1 Relaying denied")
        self.assertIn(b"points outside", replies[5][1])

    @inlineCallbacks
    def test_noAuthOnMX(self) -> Generator[Deferred[Any], Any, None]:
        """The MX advertises the ESMTP extensions but never AUTH."""

        def extensions() -> tuple[dict[str, str], tuple[int, bytes]]:
            with smtplib.SMTP("127.0.0.1", self.port, timeout=5) as client:
                client.ehlo("client.example.org")
                return dict(client.esmtp_features), client.docmd("AUTH", "PLAIN")

        features, auth = yield inThread(extensions)
        self.assertEqual(
            set(features),
            {
                "pipelining",
                "size",
                "8bitmime",
                "enhancedstatuscodes",
                "smtputf8",
                "chunking",
                "binarymime",
                "dsn",
                "help",
                "starttls",
            },
        )
        self.assertEqual(features["size"], str(25 * 1024 * 1024))
        self.assertEqual(auth, (503, b"5.5.1 Error: authentication not enabled"))

    @inlineCallbacks
    def test_pipelining(self) -> Generator[Deferred[Any], Any, None]:
        """MAIL, RCPT, RCPT, DATA in one write: replies come back in order."""
        wire = yield inThread(
            exchange,
            self.port,
            (b"EHLO client.example.org\r\n", 1),
            (
                b"MAIL FROM:<s@remote.example>\r\nRCPT TO:<alice@example.test>\r\n"
                b"RCPT TO:<nobody@example.test>\r\nDATA\r\n",
                4,
            ),
            (BODY + b".\r\nQUIT\r\n", 2),
        )
        codes = re.findall(rb"^(\d{3}) ", wire, re.M)
        self.assertEqual(codes, [b"220", b"250", b"250", b"250", b"550", b"354", b"250", b"221"])
        self.assertEqual(len(self.fixture.inbox(ALICE)), 1)

    @inlineCallbacks
    def test_smtp_smuggling_bare_lf_dot(self) -> Generator[Deferred[Any], Any, None]:
        """
        For C{\\n.\\n}, C{\\r.\\r}, C{\\r.\\n} and C{\\n.\\r\\n}, the message
        with the smuggled second one inside is refused as a whole: nothing
        is stored and no second transaction runs.
        """
        for ending in (b"\n.\n", b"\r.\r", b"\r.\n", b"\n.\r\n"):
            wire = yield inThread(
                exchange,
                self.port,
                (b"EHLO client.example.org\r\n", 1),
                (b"MAIL FROM:<s@remote.example>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n", 3),
                (
                    b"Subject: first\r\n\r\nhi" + ending + b"MAIL FROM:<evil@remote.example>\r\n"
                    b"RCPT TO:<bob@example.test>\r\nDATA\r\nSubject: smuggled\r\n\r\nboo\r\n"
                    b".\r\n",
                    1,
                ),
                (b"QUIT\r\n", 1),
            )
            codes = re.findall(rb"^(\d{3}) ", wire, re.M)
            self.assertEqual(
                codes, [b"220", b"250", b"250", b"250", b"354", b"550", b"221"], ending
            )
            self.assertIn(b"550 5.5.2 Bare <CR> or <LF> received\r\n", wire)
        self.assertEqual(self.fixture.inbox(ALICE), [])
        self.assertEqual(self.fixture.inbox(BOB), [])

    @inlineCallbacks
    def test_heloCannotInjectHeaders(self) -> Generator[Deferred[Any], Any, None]:
        """
        C{EHLO x\\nBcc: ...} is refused, and a HELO that is not a host name
        appears as C{invalid} in the Received header.
        """
        wire = yield inThread(
            exchange, self.port, (b"EHLO x\nBcc: victim@elsewhere.example\r\n", 1)
        )
        self.assertIn(b"500 5.5.2 Bare <CR> or <LF> in command\r\n", wire)
        yield inThread(
            self.send, "s@remote.example", [ALICE], BODY, "x Bcc: victim@elsewhere.example"
        )
        [message] = self.fixture.inbox(ALICE)
        self.assertTrue(message.startswith(b"Return-Path: <s@remote.example>\r\n"))
        self.assertIn(b"\r\nReceived: from invalid (127.0.0.1 [127.0.0.1])\r\n", message)
        self.assertNotIn(b"victim", message)

    @inlineCallbacks
    def test_starttls_discards_pipelined_plaintext(self) -> Generator[Deferred[Any], Any, None]:
        """
        Commands written in the same packet as STARTTLS never run: neither
        C{RSET} (no extra reply) nor C{MAIL} (no transaction after TLS).
        """

        def session(pipelined: bytes) -> tuple[bytes, bytes]:
            with socket.create_connection(("127.0.0.1", self.port), timeout=5) as raw:
                readReplies(raw)
                raw.sendall(b"EHLO client.example.org\r\n")
                readReplies(raw)
                raw.sendall(b"STARTTLS\r\n" + pipelined)
                ready = readReplies(raw)
                tls = self.pki.clientContext().wrap_socket(raw, server_hostname="localhost")
                tls.sendall(b"EHLO client.example.org\r\n")
                readReplies(tls)
                tls.sendall(b"RCPT TO:<alice@example.test>\r\n")
                after = readReplies(tls)
                tls.sendall(b"QUIT\r\n")
                return ready, after

        for pipelined in (b"RSET\r\n", b"MAIL FROM:<a@remote.example>\r\n"):
            ready, after = yield inThread(session, pipelined)
            self.assertEqual(ready, b"220 2.0.0 Ready to start TLS\r\n")
            self.assertEqual(after, b"503 5.5.1 Error: need MAIL command\r\n")

    @inlineCallbacks
    def test_starttlsDelivery(self) -> Generator[Deferred[Any], Any, None]:
        """After STARTTLS the Received header says C{ESMTPS}; a second STARTTLS is C{503}."""

        def send() -> tuple[int, bytes]:
            with smtplib.SMTP("localhost", self.port, timeout=5) as client:
                client.starttls(context=self.pki.clientContext())
                client.sendmail("s@remote.example", [BOB], BODY)
                return client.docmd("STARTTLS")

        again = yield inThread(send)
        self.assertEqual(again, (503, b"5.5.1 Error: TLS already active"))
        [message] = self.fixture.inbox(BOB)
        self.assertIn(b" with ESMTPS id ", message)

    @inlineCallbacks
    def test_longLines(self) -> Generator[Deferred[Any], Any, None]:
        """
        An over-long command line is refused and skipped; one inside DATA
        rejects the message without running the rest of the body as commands.
        """
        long = b"x" * 3000
        wire = yield inThread(
            exchange,
            self.port,
            (b"NOOP " + long + b"\r\nEHLO client.example.org\r\n", 2),
            (b"MAIL FROM:<s@remote.example>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n", 3),
            (
                b"Subject: x\r\n\r\n" + long + b"\r\nRSET\r\nMAIL FROM:<e@remote.example>\r\n"
                b"RCPT TO:<bob@example.test>\r\nDATA\r\nboo\r\n.\r\n",
                1,
            ),
            (b"QUIT\r\n", 1),
        )
        codes = re.findall(rb"^(\d{3}) ", wire, re.M)
        self.assertEqual(codes, [b"220", b"500", b"250", b"250", b"250", b"354", b"552", b"221"])
        self.assertEqual(self.fixture.inbox(ALICE), [])
        self.assertEqual(self.fixture.inbox(BOB), [])
