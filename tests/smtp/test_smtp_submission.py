"""
The submission listener on loopback ports (STARTTLS and implicit TLS) with a
real realm, password checker and throttle, driven by C{smtplib}.
"""

from __future__ import annotations

import smtplib
from collections.abc import Generator
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.trial.unittest import TestCase

from support.net import inThread, listen
from support.pki import makePKI
from support.realm import ALICE, BOB, PASSWORD, makeRealm
from tmail.auth.throttle import AuthThrottle
from tmail.config.schema import AuthSettings, SubmissionSettings, TLSSettings
from tmail.queue.outbox import Outbox
from tmail.queue.store import QueueStore
from tmail.smtp.factory import SMTPFactory
from tmail.tls import serverContextFactory

BODY = (
    b"From: alice@example.test\r\nTo: bob@example.test\r\nSubject: hi\r\n"
    b"Date: Mon, 2 Jun 2025 10:00:00 +0000\r\nMessage-ID: <hi-1@example.test>\r\n"
    b"\r\nhello bob\r\n"
)


class SubmissionTests(TestCase):
    @inlineCallbacks
    def setUp(self) -> Generator[Deferred[Any], Any, None]:
        self.fixture = makeRealm(Path(self.mktemp()))
        self.pki = makePKI(Path(self.mktemp()))
        tls = serverContextFactory(TLSSettings(self.pki.certificate, self.pki.key))
        self.throttle = AuthThrottle(
            AuthSettings(failure_delay=0.05, max_failure_delay=0.1, max_failures=3), reactor
        )
        self.queue = QueueStore(Path(self.mktemp()))
        self.factory = SMTPFactory(
            self.fixture.realm,
            SubmissionSettings(),
            hostname="mx.example.test",
            submission=True,
            portal=self.fixture.portal,
            tlsContextFactory=tls,
            throttle=self.throttle,
            outbox=Outbox(self.queue),
        )
        self.port = yield listen(self, self.factory)
        self.tlsPort = yield listen(self, TLSMemoryBIOFactory(tls, False, self.factory))

    @inlineCallbacks
    def test_plaintextOffersNoAuth(self) -> Generator[Deferred[Any], Any, None]:
        """Before STARTTLS: STARTTLS offered, AUTH not, MAIL needs authentication."""

        def session() -> tuple[set[str], tuple[int, bytes], tuple[int, bytes]]:
            with smtplib.SMTP("127.0.0.1", self.port, timeout=5) as client:
                client.ehlo("client.example.org")
                features = set(client.esmtp_features)
                auth = client.docmd(
                    "AUTH", "PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABzZWNyZXQtcGFzc3dvcmQ="
                )
                return features, auth, client.mail(ALICE)

        features, auth, mail = yield inThread(session)
        self.assertIn("starttls", features)
        self.assertNotIn("auth", features)
        self.assertEqual(auth[0], 538)
        self.assertEqual(mail, (530, b"5.7.0 Authentication required"))

    @inlineCallbacks
    def test_starttlsLoginAndSend(self) -> Generator[Deferred[Any], Any, None]:
        """
        STARTTLS, then AUTH, then mail to a local user is stored C{with
        ESMTPSA}; a remote recipient of the same message is queued.
        """

        def session() -> tuple[set[str], dict[str, tuple[int, bytes]]]:
            with smtplib.SMTP("localhost", self.port, timeout=5) as client:
                client.starttls(context=self.pki.clientContext())
                client.ehlo("client.example.org")
                features = set(client.esmtp_features)
                client.login(ALICE, PASSWORD)
                return features, client.sendmail(ALICE, [BOB, "friend@elsewhere.example"], BODY)

        features, refused = yield inThread(session)
        self.assertIn("auth", features)
        self.assertNotIn("starttls", features)
        self.assertEqual(refused, {})
        [message] = self.fixture.inbox(BOB)
        self.assertTrue(message.startswith(b"Return-Path: <alice@example.test>\r\n"))
        self.assertIn(b" with ESMTPSA id ", message)
        self.assertTrue(message.endswith(b"\r\n" + BODY))
        [entry] = self.queue.entries()
        self.assertEqual(entry.sender, ALICE)
        self.assertEqual([r.address for r in entry.recipients], ["friend@elsewhere.example"])
        with self.queue.openMessage(entry.id) as f:
            queued = f.read()
        self.assertTrue(queued.startswith(b"Received: from client.example.org"), queued[:80])
        self.assertIn(b" with ESMTPSA id ", queued)
        self.assertTrue(queued.endswith(b"\r\n" + BODY))

    @inlineCallbacks
    def test_implicitTLS(self) -> Generator[Deferred[Any], Any, None]:
        """On an implicit-TLS port AUTH is offered at once and STARTTLS is not (RFC 8314)."""

        def session() -> tuple[set[str], tuple[int, bytes]]:
            with smtplib.SMTP_SSL(
                "localhost", self.tlsPort, context=self.pki.clientContext(), timeout=5
            ) as client:
                client.ehlo("client.example.org")
                features = set(client.esmtp_features)
                client.login(ALICE, PASSWORD)
                client.sendmail(ALICE, [ALICE], BODY)
                return features, client.docmd("STARTTLS")

        features, starttls = yield inThread(session)
        self.assertIn("auth", features)
        self.assertNotIn("starttls", features)
        self.assertEqual(starttls, (503, b"5.5.1 Error: TLS already active"))
        [message] = self.fixture.inbox(ALICE)
        self.assertIn(b" with ESMTPSA id ", message)

    @inlineCallbacks
    def test_wrongPasswordThrottled(self) -> Generator[Deferred[Any], Any, None]:
        """
        Wrong passwords get C{535 5.7.8} after the throttle's delay; after
        C{max_failures} the address gets C{454 4.7.0} even with the right one.
        """

        def session() -> list[tuple[int, bytes]]:
            results = []
            with smtplib.SMTP("localhost", self.port, timeout=5) as client:
                client.starttls(context=self.pki.clientContext())
                client.ehlo("client.example.org")
                client.esmtp_features["auth"] = "PLAIN"
                for password in ("wrong", "wrong", "wrong", PASSWORD):
                    try:
                        results.append(client.login(ALICE, password))
                    except smtplib.SMTPAuthenticationError as e:
                        results.append((e.smtp_code, e.smtp_error))
            return results

        results = yield inThread(session)
        self.assertEqual(
            results,
            [(535, b"5.7.8 Authentication credentials invalid")] * 3
            + [(454, b"4.7.0 Too many failed authentications, try later")],
        )
        self.assertTrue(self.throttle.isBlocked("127.0.0.1"))


class SenderRuleTests(TestCase):
    """What an authenticated user may send as, with the real directory and passwd file."""

    @inlineCallbacks
    def setUp(self) -> Generator[Deferred[Any], Any, None]:
        self.fixture = makeRealm(Path(self.mktemp()))
        self.fixture.directory.addAlias("sales@example.test", [ALICE, BOB])
        self.pki = makePKI(Path(self.mktemp()))
        tls = serverContextFactory(TLSSettings(self.pki.certificate, self.pki.key))
        factory = SMTPFactory(
            self.fixture.realm,
            SubmissionSettings(),
            hostname="mx.example.test",
            submission=True,
            portal=self.fixture.portal,
            tlsContextFactory=tls,
            throttle=AuthThrottle(AuthSettings(), reactor),
        )
        self.port = yield listen(self, factory)

    def session(self, work: Any) -> Deferred[Any]:
        def run() -> Any:
            with smtplib.SMTP("localhost", self.port, timeout=5) as client:
                client.starttls(context=self.pki.clientContext())
                client.login(ALICE, PASSWORD)
                return work(client)

        return inThread(run)

    @inlineCallbacks
    def test_envelope_sender_must_be_owned(self) -> Generator[Deferred[Any], Any, None]:
        """Another user's address gets 553 5.7.1; an alias alice is in is hers to use."""

        def work(client: smtplib.SMTP) -> list[tuple[int, bytes]]:
            replies = [client.mail(BOB)]
            client.rset()
            replies.append(client.mail("sales@example.test"))
            return replies

        replies = yield self.session(work)
        self.assertEqual(
            replies,
            [
                (553, b"5.7.1 Sender address rejected: not owned by user alice@example.test"),
                (250, b"2.1.0 Ok"),
            ],
        )

    @inlineCallbacks
    def test_from_header_must_be_owned(self) -> Generator[Deferred[Any], Any, None]:
        """A From naming bob is refused at the end of DATA; nothing is delivered."""

        def work(client: smtplib.SMTP) -> tuple[int, bytes]:
            try:
                client.sendmail(ALICE, [BOB], BODY.replace(b"From: alice@", b"From: bob@"))
            except smtplib.SMTPDataError as e:
                return e.smtp_code, e.smtp_error
            raise AssertionError("the message was accepted")

        refused = yield self.session(work)
        self.assertEqual(
            refused,
            (553, b"5.7.1 From header address rejected: not owned by user alice@example.test"),
        )
        self.assertEqual(self.fixture.inbox(BOB), [])

    @inlineCallbacks
    def test_passwd_field_limits_the_check_to_the_envelope(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        """C{userdb_tmail_sender_check=envelope} in the passwd file: the From is not checked."""
        self.fixture.directory.setUserFields(ALICE, {"tmail_sender_check": "envelope"})
        passwd = (self.fixture.root / "data" / "passwd").read_text()
        self.assertIn("userdb_tmail_sender_check=envelope", passwd)
        sent = BODY.replace(b"From: alice@", b"From: bob@")
        refused = yield self.session(lambda client: client.sendmail(ALICE, [BOB], sent))
        self.assertEqual(refused, {})
        [message] = self.fixture.inbox(BOB)
        self.assertTrue(message.endswith(sent))

    @inlineCallbacks
    def test_message_id_and_date_are_added(self) -> Generator[Deferred[Any], Any, None]:
        """A message without them gets both at the end of its header, and ESMTPSA."""
        bare = b"From: alice@example.test\r\nTo: bob@example.test\r\nSubject: bare\r\n\r\nhi\r\n"
        yield self.session(lambda client: client.sendmail(ALICE, [BOB], bare))
        [message] = self.fixture.inbox(BOB)
        self.assertIn(b" with ESMTPSA id ", message)
        self.assertRegex(
            message,
            rb"\r\nSubject: bare\r\nMessage-ID: <[0-9a-f]{32}@mx\.example\.test>\r\n"
            rb"Date: [A-Z][a-z]{2}, \d\d? [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d [+-]\d{4}\r\n"
            rb"\r\nhi\r\n\Z",
        )
