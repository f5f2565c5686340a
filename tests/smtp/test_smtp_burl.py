"""
BURL (RFC 4468) on submission: a draft saved over IMAP is sent by URL,
resolved in-process against tmail's own store.  The RFC's examples as
transcripts over a C{StringTransport}, the refusals (5.7.0, 5.7.14, 5.6.6,
530, 503, 501), BURL mixed with BDAT, the submission checks and size limit
applied to what a URL brings; and end to end: C{imaplib} APPENDs a draft
and asks GENURLAUTH for it, C{smtplib} sends it with BURL over STARTTLS, and
the recipient's INBOX holds it intact.
"""

from __future__ import annotations

import imaplib
import re
import smtplib
import ssl
from collections.abc import Generator
from pathlib import Path
from typing import Any

from test_smtp_session import Session, authenticate
from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.cred.portal import Portal
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks, maybeDeferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from support.imaploop import listenIMAP
from support.net import inThread, listen
from support.pki import makePKI
from support.realm import ALICE, BOB, PASSWORD, RealmFixture, makeRealm
from tmail.auth.throttle import AuthThrottle
from tmail.config.schema import AuthSettings, SubmissionSettings, TLSSettings
from tmail.imap.urlauth import computeToken
from tmail.smtp.factory import SMTPFactory
from tmail.tls import serverContextFactory

HOST = "mail.example.test"
DRAFT = (
    b"From: Alice <alice@example.test>\r\n"
    b"To: Bob <bob@example.test>\r\n"
    b"Subject: lunch\r\n"
    b"Date: Mon, 2 Jun 2025 10:00:00 +0000\r\n"
    b"Message-ID: <draft-1@example.test>\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="x"\r\n'
    b"\r\n"
    b"--x\r\n"
    b"Content-Type: text/plain\r\n"
    b"\r\n"
    b"Noon at the usual place?\r\n"
    b"--x--\r\n"
)
OWNER = "imap://alice%40example.test@" + HOST


def makeSubmission(
    fixture: RealmFixture, clock: Clock, burlHost: str = HOST, **settings: Any
) -> SMTPFactory:
    checker = InMemoryUsernamePasswordDatabaseDontUse(**{ALICE: PASSWORD.encode()})
    factory = SMTPFactory(
        fixture.realm,
        SubmissionSettings(burl_imap_host=burlHost, **settings),
        hostname="mx.example.test",
        submission=True,
        portal=Portal(fixture.realm, [checker]),
        tlsContextFactory=None,
        throttle=AuthThrottle(AuthSettings(failure_delay=0), clock),
        clock=clock,
    )
    factory.runInThread = maybeDeferred  # type: ignore[method-assign]
    return factory


class BURLTranscriptTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.fixture = makeRealm(Path(self.mktemp()))
        self.clock = Clock()
        self.store = self.fixture.store(ALICE)
        self.drafts = self.store.createFolder("Drafts")
        pending = self.drafts.beginMessage(["\\Draft"])
        pending.write(DRAFT)
        self.uid = pending.commit()
        self.factory = makeSubmission(self.fixture, self.clock)
        self.session = self.connect()

    def connect(self, factory: SMTPFactory | None = None) -> Session:
        session = Session(factory or self.factory, self.clock, secure=True)
        self.addCleanup(session.protocol.connectionLost, None)
        return session

    def url(
        self, access: str = "submit+alice%40example.test", rest: str = "", uid: int = 0
    ) -> bytes:
        rump = (
            f"{OWNER}/Drafts;UIDVALIDITY={self.drafts.uidValidity()}/;UID={uid or self.uid}"
            f"{rest};URLAUTH={access}"
        )
        key = self.store.mailboxKeys().keyFor("Drafts", self.drafts.uidValidity())
        return f"{rump}:INTERNAL:{computeToken(key, rump)}".encode()

    def begin(self, session: Session | None = None) -> Session:
        session = session or self.session
        session.send(b"EHLO client.example.org\r\n")
        self.assertTrue(authenticate(session).startswith(b"235 "))
        self.assertTrue(session.command(b"MAIL FROM:<alice@example.test>").startswith(b"250 "))
        self.assertTrue(session.command(b"RCPT TO:<bob@example.test>").startswith(b"250 "))
        return session

    def delivered(self) -> list[bytes]:
        return self.fixture.inbox(BOB)

    def test_ehlo_offers_burl_imap_only_when_configured(self) -> None:
        self.assertIn(b"BURL imap", [line[4:] for line in self.session.send(b"EHLO c.example\r\n")])
        plain = self.connect(makeSubmission(self.fixture, self.clock, burlHost=""))
        self.assertNotIn(b"BURL", b"\r\n".join(plain.send(b"EHLO client.example.org\r\n")))
        self.assertEqual(
            plain.command(b"BURL " + self.url() + b" LAST"),
            b"500 5.5.2 Error: command not recognized",
        )

    def test_rfc4468_example_burl_last(self) -> None:
        """RFC 4468 7: one BURL with LAST sends the whole draft."""
        session = self.begin()
        reply = session.command(b"BURL " + self.url() + b" LAST")
        self.assertRegex(reply, rb"^250 2\.0\.0 Ok: queued as ")
        [stored] = self.delivered()
        self.assertTrue(stored.endswith(DRAFT), stored)
        self.assertEqual(self.drafts.messages()[0].flags, {"\\Draft"})

    def test_rfc4468_example_burl_and_bdat_mixed(self) -> None:
        """RFC 4468 7: header by BDAT, body part by BURL, end by BDAT LAST."""
        session = self.begin()
        header = b"From: alice@example.test\r\nTo: bob@example.test\r\nSubject: fwd\r\n\r\n"
        self.assertEqual(
            session.send(b"BDAT %d\r\n" % len(header) + header),
            [b"250 2.0.0 %d octets received" % len(header)],
        )
        self.assertEqual(
            session.command(b"BURL " + self.url(rest="/;SECTION=1")),
            b"250 2.5.0 Waiting for additional BURL or BDAT commands",
        )
        self.assertRegex(session.send(b"BDAT 2 LAST\r\n\r\n")[-1], rb"^250 2\.0\.0 Ok: queued")
        [stored] = self.delivered()
        self.assertIn(header[:-2], stored)
        self.assertTrue(stored.endswith(b"\r\n\r\nNoon at the usual place?\r\n"), stored)

    def test_urls_not_authorized_for_the_user_are_refused_with_5_7_0(self) -> None:
        session = self.begin()
        good = self.url()
        for url in (
            self.url(access="submit+bob%40example.test"),
            self.url(access="user+alice%40example.test"),
            good[:-4] + (b"0000" if not good.endswith(b"0000") else b"1111"),
            good[: good.index(b";URLAUTH")],
            good.replace(b"alice%40", b"nobody%40"),
            b"/Drafts/;UID=1",
            b"not-a-url",
        ):
            self.assertEqual(
                session.command(b"BURL " + url + b" LAST"),
                b"554 5.7.0 Invalid URL or URL authorization",
                url,
            )
            self.assertTrue(session.command(b"RSET").startswith(b"250 "))
            session.command(b"MAIL FROM:<alice@example.test>")
            session.command(b"RCPT TO:<bob@example.test>")
        self.assertRegex(session.command(b"BURL " + good + b" LAST"), rb"^250 2\.0\.0 Ok")
        self.assertEqual(len(self.delivered()), 1)
        self.assertFalse((self.fixture.root / "data" / "mail" / "example.test" / "nobody").exists())

    def test_an_anonymous_url_may_be_sent(self) -> None:
        session = self.begin()
        reply = session.command(b"BURL " + self.url(access="anonymous") + b" LAST")
        self.assertRegex(reply, rb"^250 2\.0\.0 Ok")

    def test_another_imap_server_needs_a_trust_relationship(self) -> None:
        session = self.begin()
        url = self.url().replace(HOST.encode(), b"imap.elsewhere.example")
        self.assertEqual(
            session.command(b"BURL " + url + b" LAST"),
            b"554 5.7.14 URL resolution requires trust relationship",
        )

    def test_a_message_or_part_that_is_gone_is_5_6_6(self) -> None:
        session = self.begin()
        for url in (self.url(uid=self.uid + 5), self.url(rest="/;SECTION=9")):
            self.assertEqual(
                session.command(b"BURL " + url + b" LAST"), b"554 5.6.6 IMAP URL resolution failed"
            )
            session.command(b"MAIL FROM:<alice@example.test>")
            session.command(b"RCPT TO:<bob@example.test>")
        self.assertEqual(self.delivered(), [])

    def test_order_authentication_and_syntax(self) -> None:
        session = self.session
        session.send(b"EHLO client.example.org\r\n")
        self.assertEqual(
            session.command(b"BURL " + self.url() + b" LAST"), b"530 5.7.0 Authentication required"
        )
        authenticate(session)
        session.command(b"MAIL FROM:<alice@example.test>")
        self.assertEqual(
            session.command(b"BURL " + self.url() + b" LAST"),
            b"503 5.5.0 Valid RCPT TO required before BURL",
        )
        for line in (b"BURL", b"BURL a b c", b"BURL " + self.url() + b" FIRST"):
            self.assertEqual(session.command(line), b"501 5.5.4 Syntax: BURL absolute-URI [LAST]")

    def test_submission_checks_apply_to_what_the_url_brings(self) -> None:
        forged = DRAFT.replace(b"From: Alice <alice@example.test>", b"From: bob@example.test")
        pending = self.drafts.beginMessage()
        pending.write(forged)
        uid = pending.commit()
        session = self.begin()
        reply = session.command(b"BURL " + self.url(uid=uid) + b" LAST")
        self.assertTrue(reply.startswith(b"553 5.7.1 From header address rejected"), reply)
        bare = b"Subject: no ids\r\n\r\nhello\r\n"
        pending = self.drafts.beginMessage()
        pending.write(bare)
        uid = pending.commit()
        session.command(b"MAIL FROM:<alice@example.test>")
        session.command(b"RCPT TO:<bob@example.test>")
        self.assertRegex(session.command(b"BURL " + self.url(uid=uid) + b" LAST"), rb"^250 ")
        [stored] = self.delivered()
        self.assertIn(b"\r\nMessage-ID: <", stored)
        self.assertTrue(stored.endswith(b"\r\n\r\nhello\r\n"))

    def test_the_size_limit_applies(self) -> None:
        session = self.begin(
            self.connect(makeSubmission(self.fixture, self.clock, max_message_size=50))
        )
        self.assertEqual(
            session.command(b"BURL " + self.url() + b" LAST"),
            b"552 5.3.4 Message size exceeds fixed maximum message size",
        )
        self.assertEqual(self.delivered(), [])


class BURLEndToEndTests(TestCase):
    @inlineCallbacks
    def setUp(self) -> Generator[Deferred[Any], Any, None]:
        self.fixture = makeRealm(Path(self.mktemp()))
        pki = makePKI(Path(self.mktemp()))
        self.context = ssl.create_default_context(cafile=str(pki.caCertificate))
        tls = serverContextFactory(TLSSettings(pki.certificate, pki.key))
        self.imapPort = yield listenIMAP(self, self.fixture)
        factory = SMTPFactory(
            self.fixture.realm,
            SubmissionSettings(burl_imap_host=HOST),
            hostname="mx.example.test",
            submission=True,
            portal=self.fixture.portal,
            tlsContextFactory=tls,
            throttle=AuthThrottle(AuthSettings(failure_delay=0), reactor),
        )
        self.smtpPort = yield listen(self, factory)

    @inlineCallbacks
    def test_imaplib_draft_sent_by_smtplib_burl_arrives_intact(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        def imap() -> bytes:
            client = imaplib.IMAP4("127.0.0.1", self.imapPort, timeout=10)
            try:
                client.login(ALICE, PASSWORD)
                client.create("Drafts")
                typ, data = client.append("Drafts", "(\\Draft)", None, DRAFT)
                assert typ == "OK", data
                code = re.search(rb"APPENDUID (\d+) (\d+)", data[0])
                assert code is not None
                validity, uid = code.groups()
                rump = (
                    f"{OWNER}/Drafts;UIDVALIDITY={validity.decode()}/;UID={uid.decode()}"
                    ";URLAUTH=submit+alice%40example.test"
                )
                typ, data = client.xatom("GENURLAUTH", f'"{rump}"', "INTERNAL")
                assert typ == "OK", data
                _, found = client.response("GENURLAUTH")
                assert found and found[0] is not None
                return found[0].strip(b'"')
            finally:
                client.logout()

        def submit(url: bytes) -> tuple[int, bytes]:
            with smtplib.SMTP("127.0.0.1", self.smtpPort, timeout=10) as client:
                client.starttls(context=self.context)
                client.ehlo("client.example.org")
                assert client.has_extn("burl"), client.esmtp_features
                assert client.esmtp_features["burl"] == "imap"
                client.login(ALICE, PASSWORD)
                client.mail(ALICE)
                client.rcpt(BOB)
                return client.docmd("BURL", url.decode() + " LAST")

        url = yield inThread(imap)
        self.assertRegex(url, rb";URLAUTH=submit\+alice%40example\.test:internal:[0-9a-f]{64}$")
        code, text = yield inThread(submit, url)
        self.assertEqual(code, 250, text)
        [stored] = self.fixture.inbox(BOB)
        self.assertTrue(stored.endswith(DRAFT), stored)
