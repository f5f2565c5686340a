"""
The LMTP listener (RFC 2033) on a loopback port and on a unix socket, with a
real realm and Maildir store, driven by C{smtplib.LMTP} and raw sockets.

C{smtplib.LMTP.sendmail} reads only the first reply after DATA, so with
several recipients the others' replies would be taken as the answers to
later commands; L{transaction} reads every one with C{getreply()}.
"""

from __future__ import annotations

import re
import shutil
import smtplib
import socket
import tempfile
from collections.abc import Generator
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort
from twisted.trial.unittest import SynchronousTestCase, TestCase

from support.net import inThread, listen
from support.pki import makePKI
from support.realm import ALICE, BOB, makeRealm
from tmail.config.schema import LMTPSettings, TLSSettings
from tmail.smtp.lmtp import LMTPFactory, lmtpProtocolName
from tmail.tls import serverContextFactory

SENDER = "someone@remote.example"
BODY = b"From: someone@remote.example\r\nSubject: hello\r\n\r\nline one\r\n.dotted\r\n"
BIG = b"From: someone@remote.example\r\nSubject: big\r\n\r\n" + (b"x" * 70 + b"\r\n") * 40

Replies = dict[str, tuple[int, bytes]]


def transaction(client: smtplib.LMTP, recipients: list[str], body: bytes = BODY) -> Replies:
    """
    MAIL (without SIZE, so quotas are checked at the end of DATA), RCPT for
    each recipient, DATA: what each recipient was told, its RCPT refusal or
    its own reply after DATA, in RCPT order.
    """
    client.ehlo_or_helo_if_needed()
    code, text = client.mail(SENDER)
    assert code == 250, (code, text)
    replies: Replies = {}
    accepted = []
    for recipient in recipients:
        code, text = client.rcpt(recipient)
        if code == 250:
            accepted.append(recipient)
        replies[recipient] = (code, text)
    if accepted:
        replies[accepted[0]] = client.data(body)
        for recipient in accepted[1:]:
            replies[recipient] = client.getreply()
    return replies


def readReplies(s: socket.socket, count: int) -> list[bytes]:
    """Read until C{count} final reply lines have arrived; return every line."""
    data = b""
    while len(re.findall(rb"^\d{3} ", data, re.M)) < count or not data.endswith(b"\r\n"):
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    return data.splitlines()


class LMTPTests(TestCase):
    """LMTP over TCP on loopback."""

    timeout = 20

    def setUp(self) -> None:
        self.fixture = makeRealm(Path(self.mktemp()))

    def listen(
        self, settings: LMTPSettings | None = None, tls: TLSSettings | None = None
    ) -> Deferred[int]:
        factory = LMTPFactory(
            self.fixture.realm,
            settings or LMTPSettings(),
            hostname="lmtp.example.test",
            tlsContextFactory=serverContextFactory(tls) if tls else None,
        )
        return listen(self, factory)

    def deliver(self, port: int, recipients: list[str], body: bytes = BODY) -> Replies:
        with smtplib.LMTP("127.0.0.1", port, local_hostname="client.example.org") as client:
            replies = transaction(client, recipients, body)
            assert client.noop() == (250, b"2.0.0 Ok"), "a reply too many or too few"
        return replies

    def commands(self, port: int, *lines: str) -> list[tuple[int, bytes]]:
        with smtplib.LMTP("127.0.0.1", port) as client:
            return [client.docmd(line) for line in lines]

    @inlineCallbacks
    def test_lhlo_advertises_pipelining_and_status_codes_but_no_auth(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        port = yield self.listen()

        def lhlo() -> tuple[bytes, int, dict[str, str]]:
            with smtplib.LMTP("127.0.0.1", port) as client:
                code, _ = client.ehlo("client.example.org")
                return client.ehlo_resp or b"", code, client.esmtp_features

        response, code, features = yield inThread(lhlo)
        self.assertEqual(code, 250)
        self.assertTrue(response.startswith(b"lmtp.example.test\n"))
        self.assertLessEqual(
            {"pipelining", "enhancedstatuscodes", "size", "8bitmime", "chunking"}, set(features)
        )
        self.assertNotIn("auth", features)
        self.assertNotIn("starttls", features)

    @inlineCallbacks
    def test_greeting_says_lmtp(self) -> Generator[Deferred[Any], Any, None]:
        port = yield self.listen()

        def greet() -> list[bytes]:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                return readReplies(s, 1)

        greeting = yield inThread(greet)
        self.assertEqual(greeting, [b"220 lmtp.example.test LMTP tmail"])

    @inlineCallbacks
    def test_helo_and_ehlo_are_refused_and_mail_needs_lhlo(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        """RFC 2033 4.1: HELO and EHLO are not LMTP commands."""
        port = yield self.listen()
        replies = yield inThread(
            self.commands,
            port,
            "HELO client.example.org",
            "EHLO client.example.org",
            f"MAIL FROM:<{SENDER}>",
            "LHLO",
        )
        self.assertEqual(
            replies,
            [
                (500, b"5.5.1 Error: this is an LMTP server; send LHLO"),
                (500, b"5.5.1 Error: this is an LMTP server; send LHLO"),
                (503, b"5.5.1 Error: send LHLO first"),
                (501, b"5.5.4 Syntax: LHLO hostname"),
            ],
        )

    @inlineCallbacks
    def test_each_recipient_gets_its_own_reply_after_data(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        port = yield self.listen()
        replies = yield inThread(self.deliver, port, [BOB, ALICE])
        self.assertEqual(list(replies), [BOB, ALICE])
        for recipient, (code, text) in replies.items():
            self.assertEqual(code, 250)
            self.assertRegex(
                text, rb"\A2\.0\.0 <%s> Ok: queued as [0-9A-F]+\Z" % recipient.encode()
            )
        for user in (ALICE, BOB):
            [message] = self.fixture.inbox(user)
            self.assertTrue(message.endswith(BODY))

    @inlineCallbacks
    def test_recipient_over_quota_gets_552_while_the_others_get_250_and_the_message(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        """
        Without SIZE the full mailbox shows only at the end of DATA: its
        recipient alone is refused, and the MTA need not resend to bob.
        """
        self.fixture.setLimits(ALICE, storage=2000)
        port = yield self.listen()
        replies = yield inThread(self.deliver, port, [BOB, ALICE, "alice+tag@example.test"], BIG)
        self.assertEqual(replies[BOB][0], 250)
        self.assertEqual(
            replies[ALICE], (552, b"5.2.2 <alice@example.test> Mailbox full: quota exceeded")
        )
        self.assertEqual(
            replies["alice+tag@example.test"],
            (552, b"5.2.2 <alice+tag@example.test> Mailbox full: quota exceeded"),
        )
        self.assertEqual(self.fixture.inbox(ALICE), [])
        [message] = self.fixture.inbox(BOB)
        self.assertTrue(message.endswith(BIG))

    @inlineCallbacks
    def test_alias_gets_the_refusal_of_any_of_its_users(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        self.fixture.directory.addAlias("team@example.test", [ALICE, BOB])
        self.fixture.setLimits(ALICE, storage=2000)
        port = yield self.listen()
        replies = yield inThread(self.deliver, port, ["team@example.test", BOB], BIG)
        self.assertEqual(replies["team@example.test"][0], 552)
        self.assertEqual(replies[BOB][0], 250)
        self.assertEqual(len(self.fixture.inbox(BOB)), 1)

    @inlineCallbacks
    def test_unknown_user_and_foreign_domain_are_refused_at_rcpt(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        """LMTP never relays; only the accepted recipient gets a reply after DATA."""
        port = yield self.listen()
        replies = yield inThread(
            self.deliver, port, ["nobody@example.test", ALICE, "someone@elsewhere.example"]
        )
        self.assertEqual(
            replies["nobody@example.test"],
            (550, b"5.1.1 Recipient address rejected: User unknown"),
        )
        self.assertEqual(
            replies["someone@elsewhere.example"],
            (550, b"5.1.2 Recipient domain is not hosted here"),
        )
        self.assertEqual(replies[ALICE][0], 250)
        self.assertEqual(len(self.fixture.inbox(ALICE)), 1)

    @inlineCallbacks
    def test_message_too_big_gets_the_same_refusal_for_every_recipient(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        port = yield self.listen(LMTPSettings(max_message_size=1000))
        replies = yield inThread(self.deliver, port, [ALICE, BOB], BIG)
        self.assertEqual(
            list(replies.values()),
            [
                (
                    552,
                    b"5.3.4 <alice@example.test> Message size exceeds fixed maximum message size",
                ),
                (552, b"5.3.4 <bob@example.test> Message size exceeds fixed maximum message size"),
            ],
        )
        self.assertEqual(self.fixture.inbox(ALICE) + self.fixture.inbox(BOB), [])

    @inlineCallbacks
    def test_smuggled_bare_lf_rejects_the_message_for_every_recipient(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        port = yield self.listen()
        body = b"Subject: x\r\n\r\nhello\n.\nMAIL FROM:<evil@example.org>\r\n"
        replies = yield inThread(self.deliver, port, [ALICE, BOB], body)
        self.assertEqual(
            list(replies.values()),
            [
                (550, b"5.5.2 <alice@example.test> Bare <CR> or <LF> received"),
                (550, b"5.5.2 <bob@example.test> Bare <CR> or <LF> received"),
            ],
        )
        self.assertEqual(self.fixture.inbox(ALICE) + self.fixture.inbox(BOB), [])

    @inlineCallbacks
    def test_pipelined_transactions_get_every_reply_in_order(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        """A whole session in two writes, as an MTA using PIPELINING sends it."""
        port = yield self.listen()

        def session() -> list[bytes]:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                lines = readReplies(s, 1)
                s.sendall(
                    b"LHLO client.example.org\r\n"
                    b"MAIL FROM:<a@remote.example>\r\n"
                    b"RCPT TO:<alice@example.test>\r\n"
                    b"RCPT TO:<nobody@example.test>\r\n"
                    b"RCPT TO:<bob@example.test>\r\n"
                    b"DATA\r\n"
                )
                lines += readReplies(s, 6)
                s.sendall(
                    BODY + b".\r\n"
                    b"MAIL FROM:<b@remote.example>\r\n"
                    b"RCPT TO:<bob@example.test>\r\n"
                    b"DATA\r\n" + BODY + b".\r\n"
                    b"QUIT\r\n"
                )
                return lines + readReplies(s, 7)

        lines = yield inThread(session)
        finals = [
            re.sub(rb"queued as [0-9A-F]+", b"queued as ID", line)
            for line in lines
            if re.match(rb"\d{3} ", line)
        ]
        self.assertEqual(finals[0], b"220 lmtp.example.test LMTP tmail")
        self.assertTrue(finals[1].startswith(b"250 "), finals[1])  # the LHLO list's last line
        self.assertEqual(
            finals[2:],
            [
                b"250 2.1.0 Ok",
                b"250 2.1.5 Ok",
                b"550 5.1.1 Recipient address rejected: User unknown",
                b"250 2.1.5 Ok",
                b"354 End data with <CR><LF>.<CR><LF>",
                b"250 2.0.0 <alice@example.test> Ok: queued as ID",
                b"250 2.0.0 <bob@example.test> Ok: queued as ID",
                b"250 2.1.0 Ok",
                b"250 2.1.5 Ok",
                b"354 End data with <CR><LF>.<CR><LF>",
                b"250 2.0.0 <bob@example.test> Ok: queued as ID",
                b"221 2.0.0 Bye",
            ],
        )
        self.assertEqual(len(self.fixture.inbox(ALICE)), 1)
        self.assertEqual(len(self.fixture.inbox(BOB)), 2)

    @inlineCallbacks
    def test_bdat_last_gets_one_reply_per_recipient(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        """CHUNKING (RFC 3030): the last chunk is answered as DATA is, per recipient."""
        port = yield self.listen()
        head, tail = BODY[:20], BODY[20:]

        def session() -> list[bytes]:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                readReplies(s, 1)
                s.sendall(b"LHLO client.example.org\r\n")
                readReplies(s, 1)
                s.sendall(
                    b"MAIL FROM:<a@remote.example>\r\n"
                    b"RCPT TO:<alice@example.test>\r\n"
                    b"RCPT TO:<bob@example.test>\r\n"
                    b"BDAT %d\r\n%s"
                    % (len(head), head)
                    + b"BDAT %d LAST\r\n%s" % (len(tail), tail)
                    + b"NOOP\r\n"
                )
                return readReplies(s, 7)

        lines = yield inThread(session)
        self.assertEqual(
            [re.sub(rb"queued as [0-9A-F]+", b"queued as ID", line) for line in lines],
            [
                b"250 2.1.0 Ok",
                b"250 2.1.5 Ok",
                b"250 2.1.5 Ok",
                b"250 2.0.0 20 octets received",
                b"250 2.0.0 <alice@example.test> Ok: queued as ID",
                b"250 2.0.0 <bob@example.test> Ok: queued as ID",
                b"250 2.0.0 Ok",
            ],
        )
        for user in (ALICE, BOB):
            [message] = self.fixture.inbox(user)
            self.assertTrue(message.endswith(BODY))

    @inlineCallbacks
    def test_smtputf8_transaction_is_received_with_utf8lmtp(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        """RFC 6531 4.3: an SMTPUTF8 transaction over LMTP is C{UTF8LMTP}."""
        port = yield self.listen()

        def send() -> dict[str, tuple[int, bytes]]:
            with smtplib.LMTP("127.0.0.1", port, local_hostname="client.example.org") as client:
                return client.sendmail("jöran@remote.example", [ALICE], BODY, ["SMTPUTF8"])

        refused = yield inThread(send)
        self.assertEqual(refused, {})
        [message] = self.fixture.inbox(ALICE)
        self.assertIn(b" with UTF8LMTP id ", message)

    @inlineCallbacks
    def test_stored_message_has_a_received_header_with_lmtp(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        port = yield self.listen()
        yield inThread(self.deliver, port, [ALICE])
        [message] = self.fixture.inbox(ALICE)
        self.assertRegex(
            message,
            rb"\AReturn-Path: <someone@remote\.example>\r\n"
            rb"Delivered-To: alice@example\.test\r\n"
            rb"Received: from client\.example\.org \(127\.0\.0\.1 \[127\.0\.0\.1\]\)\r\n"
            rb"\tby lmtp\.example\.test \(tmail\) with LMTP id [0-9A-F]+\r\n"
            rb"\tfor <alice@example\.test>; ",
        )

    @inlineCallbacks
    def test_refused_recipients_do_not_count_as_client_errors(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        """
        With max_errors = 2, three unknown recipients and three full
        mailboxes in one session still get every reply, and the session
        goes on.
        """
        self.fixture.setLimits(ALICE, storage=2000)
        port = yield self.listen(LMTPSettings(max_errors=2))
        recipients = [f"nobody{i}@example.test" for i in range(3)]
        recipients += [ALICE, "alice+a@example.test", "alice+b@example.test", BOB]
        replies = yield inThread(self.deliver, port, recipients, BIG)
        self.assertEqual([code for code, _ in replies.values()], [550] * 3 + [552] * 3 + [250])

    @inlineCallbacks
    def test_starttls_when_tls_is_configured_and_received_says_lmtps(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        pki = makePKI(Path(self.mktemp()))
        port = yield self.listen(tls=TLSSettings(pki.certificate, pki.key))

        def overTLS() -> Replies:
            with smtplib.LMTP("localhost", port, local_hostname="client.example.org") as client:
                client.ehlo()
                assert client.has_extn("starttls")
                client.starttls(context=pki.clientContext())
                return transaction(client, [ALICE])

        replies = yield inThread(overTLS)
        self.assertEqual(replies[ALICE][0], 250)
        [message] = self.fixture.inbox(ALICE)
        self.assertIn(b" with LMTPS id ", message)


class LMTPUnixSocketTests(TestCase):
    """LMTP over a unix socket, as Postfix's C{lmtp:unix:} transport connects."""

    timeout = 20

    @inlineCallbacks
    def test_delivery_over_a_unix_socket_with_one_reply_per_recipient(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        fixture = makeRealm(Path(self.mktemp()))
        folder = Path(tempfile.mkdtemp(prefix="tmail-lmtp-"))
        self.addCleanup(shutil.rmtree, folder, True)
        path = folder / "lmtp"
        factory = LMTPFactory(fixture.realm, LMTPSettings(), hostname="lmtp.example.test")
        endpoint = serverFromString(reactor, f"unix:{path}:mode=600")
        port: IListeningPort = yield endpoint.listen(factory)
        self.addCleanup(port.stopListening)
        self.assertEqual(path.stat().st_mode & 0o777, 0o600)

        def deliver() -> Replies:
            with smtplib.LMTP(str(path), local_hostname="mx.example.org") as client:
                return transaction(client, [ALICE, BOB])

        replies = yield inThread(deliver)
        self.assertEqual([code for code, _ in replies.values()], [250, 250])
        [message] = fixture.inbox(ALICE)
        self.assertIn(
            b"Received: from mx.example.org\r\n\tby lmtp.example.test (tmail) with LMTP id ",
            message,
        )
        self.assertEqual(len(fixture.inbox(BOB)), 1)


class ProtocolNameTests(SynchronousTestCase):
    def test_received_names_lmtp_for_each_smtp_variant(self) -> None:
        """RFC 3848 and RFC 6531 names: the TLS, AUTH and UTF-8 marks carry over."""
        for smtp, lmtp in [
            ("ESMTP", "LMTP"),
            ("ESMTPS", "LMTPS"),
            ("ESMTPSA", "LMTPSA"),
            ("ESMTPA", "LMTPA"),
            ("UTF8SMTPS", "UTF8LMTPS"),
        ]:
            self.assertEqual(lmtpProtocolName(smtp), lmtp)
