"""
The ESMTP extensions beyond RFC 5321's core, as a client sees them:
CHUNKING and BINARYMIME (RFC 3030), SMTPUTF8 (RFC 6531), DSN parameters
(RFC 3461) and the C{bare_newlines} policy, over a session on a
C{StringTransport} (see L{test_smtp_session}) and over a real socket.
"""

from __future__ import annotations

import socket
from collections.abc import Generator
from pathlib import Path
from typing import Any

from test_smtp_session import SessionTestCase, makeFactory, transaction
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial.unittest import TestCase

from support.net import inThread, listen, readUntil
from support.realm import ALICE, makeRealm
from tmail.auth.throttle import AuthThrottle
from tmail.config.schema import AuthSettings, SMTPSettings
from tmail.smtp.factory import SMTPFactory

MESSAGE = b"Subject: chunked\r\n\r\nfirst part, second part\r\n"


class ChunkingTests(SessionTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.ehlo()

    def stored(self, user: str = "alice") -> list[bytes]:
        return self.realm.inbox(user).stored

    def body(self, user: str = "alice") -> bytes:
        [message] = self.stored(user)
        return message.split(b"\r\n\r\n", 1)[1]

    def test_one_last_chunk_stores_the_message(self) -> None:
        transaction(self.session, b"alice@example.test")
        replies = self.session.send(b"BDAT %d LAST\r\n%s" % (len(MESSAGE), MESSAGE))
        [reply] = replies
        self.assertTrue(reply.startswith(b"250 2.0.0 Ok: queued as "), reply)
        self.assertTrue(self.stored()[0].endswith(MESSAGE))

    def test_chunks_are_acknowledged_each_and_joined(self) -> None:
        transaction(self.session, b"alice@example.test")
        first, second = MESSAGE[:20], MESSAGE[20:]
        self.assertEqual(
            self.session.send(b"BDAT %d\r\n%s" % (len(first), first)),
            [b"250 2.0.0 20 octets received"],
        )
        replies = self.session.send(b"BDAT %d LAST\r\n%s" % (len(second), second))
        self.assertTrue(replies[0].startswith(b"250 2.0.0 Ok: queued"), replies)
        self.assertTrue(self.stored()[0].endswith(MESSAGE))

    def test_pipelined_chunks_and_commands_are_answered_in_order(self) -> None:
        wire = (
            b"MAIL FROM:<s@remote.example>\r\nRCPT TO:<alice@example.test>\r\n"
            b"BDAT 10\r\n"
            + MESSAGE[:10]
            + b"BDAT %d LAST\r\n" % (len(MESSAGE) - 10)
            + MESSAGE[10:]
            + b"NOOP\r\n"
        )
        replies = self.session.send(wire)
        self.assertEqual(len(replies), 5, replies)
        self.assertEqual(replies[2], b"250 2.0.0 10 octets received")
        self.assertTrue(replies[3].startswith(b"250 2.0.0 Ok: queued"))
        self.assertEqual(replies[4], b"250 2.0.0 Ok")

    def test_an_empty_last_chunk_ends_the_message(self) -> None:
        transaction(self.session, b"alice@example.test")
        self.session.send(b"BDAT %d\r\n%s" % (len(MESSAGE), MESSAGE))
        [reply] = self.session.send(b"BDAT 0 LAST\r\n")
        self.assertTrue(reply.startswith(b"250 2.0.0 Ok: queued"), reply)
        self.assertTrue(self.stored()[0].endswith(MESSAGE))

    def test_a_refused_chunk_is_read_and_never_run_as_commands(self) -> None:
        """BDAT without a transaction: 503, and its octets (commands here) are thrown away."""
        payload = b"MAIL FROM:<x@evil.example>\r\nRCPT TO:<bob@example.test>\r\n"
        replies = self.session.send(b"BDAT %d LAST\r\n%sNOOP\r\n" % (len(payload), payload))
        self.assertEqual(replies, [b"503 5.5.1 Error: need MAIL command", b"250 2.0.0 Ok"])
        self.assertEqual(self.session.command(b"RCPT TO:<bob@example.test>")[:3], b"503")

    def test_an_empty_chunk_that_is_not_last_is_refused(self) -> None:
        transaction(self.session, b"alice@example.test")
        self.assertEqual(self.session.command(b"BDAT 0")[:9], b"501 5.5.4")

    def test_bad_bdat_syntax_is_501(self) -> None:
        transaction(self.session, b"alice@example.test")
        for arguments in (b"", b"x", b"-1", b"10 FIRST", b"10 LAST more"):
            self.assertEqual(
                self.session.command(b"BDAT " + arguments)[:9], b"501 5.5.4", arguments
            )

    def test_a_message_too_big_across_chunks_is_refused_and_the_rest_too(self) -> None:
        self.factory = makeFactory(self.realm, self.clock, max_message_size=100)
        self.session = self.connect()
        self.ehlo()
        transaction(self.session, b"alice@example.test")
        chunk = b"Subject: x\r\n\r\n" + b"y" * 98 + b"\r\n"
        self.assertEqual(
            self.session.send(b"BDAT %d\r\n%s" % (len(chunk), chunk)),
            [b"552 5.3.4 Message size exceeds fixed maximum message size"],
        )
        self.assertEqual(
            self.session.send(b"BDAT 4 LAST\r\nzz\r\n"), [b"503 5.5.1 Error: need MAIL command"]
        )
        self.assertEqual(self.stored(), [])
        self.assertEqual([p.state for p in self.realm.inbox("alice").pending], ["aborted"])

    def test_bare_lf_in_a_text_chunk_is_refused(self) -> None:
        transaction(self.session, b"alice@example.test")
        data = b"Subject: x\r\n\r\nbare\nline\r\n"
        self.assertEqual(
            self.session.send(b"BDAT %d LAST\r\n%s" % (len(data), data)),
            [b"550 5.5.2 Bare <CR> or <LF> received"],
        )
        self.assertEqual(self.stored(), [])

    def test_binarymime_stores_octets_as_sent_and_needs_bdat(self) -> None:
        self.assertEqual(
            self.session.command(b"MAIL FROM:<s@remote.example> BODY=BINARYMIME"),
            b"250 2.1.0 Ok",
        )
        self.session.command(b"RCPT TO:<alice@example.test>")
        self.assertEqual(
            self.session.command(b"DATA"), b"503 5.5.1 Error: BODY=BINARYMIME needs BDAT"
        )
        data = b"Content-Type: application/octet-stream\r\n\r\n\x00\xff\nraw\r"
        [reply] = self.session.send(b"BDAT %d LAST\r\n%s" % (len(data), data))
        self.assertTrue(reply.startswith(b"250 "), reply)
        self.assertTrue(self.stored()[0].endswith(data))

    def test_data_after_a_chunk_is_refused(self) -> None:
        transaction(self.session, b"alice@example.test")
        self.session.send(b"BDAT 5\r\nabcde")
        reply = self.session.command(b"DATA")
        self.assertEqual(reply[:3], b"503", reply)


class SMTPUTF8Tests(SessionTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.ehlo()

    def test_utf8_sender_is_accepted_with_smtputf8(self) -> None:
        self.assertEqual(
            self.session.command("MAIL FROM:<jörg@exämple.org> SMTPUTF8".encode()),
            b"250 2.1.0 Ok",
        )

    def test_utf8_without_smtputf8_is_553_5_6_7(self) -> None:
        self.assertEqual(
            self.session.command("MAIL FROM:<jörg@exämple.org>".encode())[:9], b"553 5.6.7"
        )
        self.session.command(b"MAIL FROM:<s@remote.example>")
        self.assertEqual(
            self.session.command("RCPT TO:<jörg@example.test>".encode())[:9], b"553 5.6.7"
        )

    def test_an_smtputf8_message_is_received_with_utf8smtp(self) -> None:
        self.session.command("MAIL FROM:<jörg@exämple.org> SMTPUTF8".encode())
        self.session.command(b"RCPT TO:<alice@example.test>")
        self.session.command(b"DATA")
        message = "Subject: Grüße\r\n\r\nHallo\r\n".encode()
        [reply] = self.session.send(message + b".\r\n")
        self.assertTrue(reply.startswith(b"250 "), reply)
        [stored] = self.realm.inbox("alice").stored
        self.assertIn(b" with UTF8SMTP ", stored)
        self.assertTrue(stored.endswith(message))


class DSNTests(SessionTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.ehlo()

    def test_dsn_parameters_are_accepted(self) -> None:
        self.assertEqual(
            self.session.command(b"MAIL FROM:<s@remote.example> RET=HDRS ENVID=QQ314159"),
            b"250 2.1.0 Ok",
        )
        self.assertEqual(
            self.session.command(
                b"RCPT TO:<alice@example.test> NOTIFY=SUCCESS,FAILURE"
                b" ORCPT=rfc822;alice@example.test"
            ),
            b"250 2.1.5 Ok",
        )
        transaction = self.session.protocol._transaction
        self.assertEqual(transaction.recipients[0].rcpt.notify, ("SUCCESS", "FAILURE"))
        self.assertEqual(transaction.mail.envid, "QQ314159")

    def test_bad_dsn_parameters_are_501(self) -> None:
        self.assertEqual(self.session.command(b"MAIL FROM:<s@remote.example> RET=ALL")[:3], b"501")
        self.session.command(b"MAIL FROM:<s@remote.example>")
        self.assertEqual(
            self.session.command(b"RCPT TO:<alice@example.test> NOTIFY=NEVER,DELAY")[:3], b"501"
        )


class BareNewlinePolicyTests(SessionTestCase):
    def test_normalise_stores_bare_line_ends_as_crlf(self) -> None:
        self.factory = makeFactory(self.realm, self.clock, bare_newlines="normalise")
        self.session = self.connect()
        self.ehlo()
        transaction(self.session, b"alice@example.test")
        self.session.command(b"DATA")
        [reply] = self.session.send(b"Subject: x\r\n\r\none\ntwo\rthree\n.\nfour\r\n.\r\n")
        self.assertTrue(reply.startswith(b"250 "), reply)
        [stored] = self.realm.inbox("alice").stored
        self.assertTrue(stored.endswith(b"\r\n\r\none\r\ntwo\r\nthree\r\n\r\nfour\r\n"), stored)


class ChunkingSocketTests(TestCase):
    """BDAT over a real loopback socket, with the real Maildir realm."""

    timeout = 20

    @inlineCallbacks
    def test_bdat_over_a_socket_delivers_into_the_maildir(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        fixture = makeRealm(Path(self.mktemp()))
        factory = SMTPFactory(
            fixture.realm,
            SMTPSettings(greet_pause=0),
            hostname="mx.example.test",
            submission=False,
            portal=fixture.portal,
            tlsContextFactory=None,
            throttle=AuthThrottle(AuthSettings(), reactor),
        )
        port = yield listen(self, factory)

        def talk() -> bytes:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                greeted = readUntil(sock, b"\r\n")
                sock.sendall(b"EHLO client.example\r\n")
                greeted = readUntil(sock, b"250 HELP\r\n", greeted)
                wire = (
                    b"MAIL FROM:<s@remote.example> BODY=BINARYMIME\r\n"
                    b"RCPT TO:<" + ALICE.encode() + b">\r\n"
                    b"BDAT 5\r\nSubjeBDAT %d LAST\r\n"
                    % (len(MESSAGE) - 5)
                    + MESSAGE[5:]
                    + b"QUIT\r\n"
                )
                sock.sendall(wire)
                return readUntil(sock, b"221 2.0.0 Bye\r\n", greeted)

        replies = yield inThread(talk)
        self.assertIn(b"250-CHUNKING", replies)
        self.assertIn(b"250 2.0.0 5 octets received", replies)
        self.assertIn(b"Ok: queued as", replies)
        inbox = fixture.store(ALICE).getFolder("INBOX")
        [info] = inbox.messages()
        with inbox.openMessage(info.uid) as f:
            self.assertTrue(f.read().endswith(MESSAGE))
