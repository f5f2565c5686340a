"""
Mail that leaves: submission to other domains and aliases pointing outside
go into the outbound queue (durable before C{250}), with their DSN
parameters and REQUIRETLS; local delivery that asked for C{NOTIFY=SUCCESS}
queues a success notice.  Real listeners on loopback, C{smtplib} clients,
a real queue directory.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import os
import smtplib
from collections.abc import Generator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial.unittest import TestCase

from support.disk import smallDisk
from support.net import eventually, inThread, listen
from support.pki import makePKI
from support.realm import ALICE, BOB, PASSWORD, makeRealm
from tmail.auth.throttle import AuthThrottle
from tmail.config.schema import (
    AuthSettings,
    LMTPSettings,
    SMTPSettings,
    SubmissionSettings,
    TLSSettings,
)
from tmail.queue.entry import QueueEntry
from tmail.queue.outbox import Outbox
from tmail.queue.store import QueueStore
from tmail.smtp.factory import SMTPFactory
from tmail.smtp.lmtp import LMTPFactory
from tmail.tls import serverContextFactory

BODY = (
    b"From: alice@example.test\r\nTo: friend@elsewhere.example\r\nSubject: plans\r\n"
    b"Date: Mon, 2 Jun 2025 10:00:00 +0000\r\nMessage-ID: <plans-1@example.test>\r\n"
    b"\r\nSee you at noon.\r\n"
)
REMOTE = "friend@elsewhere.example"


def parse(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def statusGroups(report: EmailMessage) -> list[dict[str, str]]:
    [status] = [p for p in report.iter_parts() if p.get_content_type() == "message/delivery-status"]
    return [{k.lower(): str(v) for k, v in group.items()} for group in status.get_payload()]


class RelayServers(TestCase):
    """MX, submission and LMTP listeners sharing one realm and one outbox."""

    def queueDirectory(self) -> Path:
        return Path(self.mktemp())

    @inlineCallbacks
    def setUp(self) -> Generator[Deferred[Any], Any, None]:
        self.fixture = makeRealm(Path(self.mktemp()))
        self.pki = makePKI(Path(self.mktemp()))
        self.queue = QueueStore(self.queueDirectory())
        self.outbox = Outbox(self.queue)
        #: Entry IDs the outbox announced, and whether each was on disk then.
        self.announced: list[tuple[str, bool]] = []
        self.outbox.listen(
            lambda entryId: self.announced.append((entryId, entryId in self.queue.ids()))
        )
        tls = serverContextFactory(TLSSettings(self.pki.certificate, self.pki.key))
        throttle = AuthThrottle(AuthSettings(), reactor)
        common: dict[str, Any] = dict(
            hostname="mx.example.test",
            portal=self.fixture.portal,
            tlsContextFactory=tls,
            throttle=throttle,
            outbox=self.outbox,
        )
        self.mx = yield listen(
            self,
            SMTPFactory(
                self.fixture.realm, SMTPSettings(greet_pause=0), submission=False, **common
            ),
        )
        self.submission = yield listen(
            self, SMTPFactory(self.fixture.realm, SubmissionSettings(), submission=True, **common)
        )
        self.lmtp = yield listen(
            self,
            LMTPFactory(
                self.fixture.realm,
                LMTPSettings(),
                hostname="mx.example.test",
                outbox=self.outbox,
            ),
        )

    def submit(
        self,
        recipients: list[str],
        mailOptions: tuple[str, ...] = (),
        rcptOptions: tuple[str, ...] = (),
    ) -> dict[str, tuple[int, bytes]]:
        with smtplib.SMTP("localhost", self.submission, timeout=5) as client:
            client.starttls(context=self.pki.clientContext())
            client.login(ALICE, PASSWORD)
            return client.sendmail(ALICE, recipients, BODY, list(mailOptions), list(rcptOptions))

    def entries(self) -> list[QueueEntry]:
        return self.queue.entries()

    def queued(self, entry: QueueEntry) -> bytes:
        with self.queue.openMessage(entry.id) as f:
            return f.read()


class RelayTests(RelayServers):
    @inlineCallbacks
    def test_submission_to_another_domain_is_queued_durably_before_250(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        """
        The entry is on disk (metadata and message) when the runner hears of
        it, which is before the client has its C{250}; the queued copy has
        the submission's C{Received} and no C{Return-Path}.
        """

        def send() -> tuple[dict[str, tuple[int, bytes]], list[QueueEntry]]:
            refused = self.submit([REMOTE])
            return refused, self.entries()

        refused, seenByClient = yield inThread(send)
        self.assertEqual(refused, {})
        [entry] = seenByClient
        self.assertEqual(self.announced, [(entry.id, True)])
        self.assertEqual(entry.sender, ALICE)
        self.assertEqual([r.address for r in entry.recipients], [REMOTE])
        message = self.queued(entry)
        self.assertTrue(message.startswith(b"Received: from "), message[:60])
        self.assertNotIn(b"Return-Path:", message)
        self.assertNotIn(b"Delivered-To:", message)
        self.assertTrue(message.endswith(b"\r\n\r\n" + BODY.split(b"\r\n\r\n", 1)[1]))
        self.assertEqual(entry.size, len(message))

    @inlineCallbacks
    def test_dsn_parameters_and_requiretls_travel_with_the_entry(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        refused = yield inThread(
            self.submit,
            [REMOTE, "other@elsewhere.example"],
            ("RET=HDRS", "ENVID=plans+2B1", "REQUIRETLS", "BODY=8BITMIME"),
            ("NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;friend@elsewhere.example"),
        )
        self.assertEqual(refused, {})
        [entry] = self.entries()
        self.assertEqual((entry.ret, entry.envid, entry.body), ("HDRS", "plans+2B1", "8BITMIME"))
        self.assertTrue(entry.requireTLS)
        first, second = entry.recipients
        self.assertEqual(first.notify, ("SUCCESS", "FAILURE"))
        self.assertEqual(first.orcpt, "rfc822;friend@elsewhere.example")
        self.assertEqual(second.address, "other@elsewhere.example")

    @inlineCallbacks
    def test_requiretls_is_offered_and_accepted_only_over_tls(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        def clear() -> tuple[bool, tuple[int, bytes]]:
            with smtplib.SMTP("localhost", self.mx, timeout=5) as client:
                client.ehlo("client.example.org")
                offered = client.has_extn("requiretls")
                return offered, client.mail("s@remote.example", ["REQUIRETLS"])

        def secure() -> bool:
            with smtplib.SMTP("localhost", self.mx, timeout=5) as client:
                client.starttls(context=self.pki.clientContext())
                client.ehlo("client.example.org")
                return client.has_extn("requiretls")

        offered, reply = yield inThread(clear)
        self.assertFalse(offered)
        self.assertEqual(reply, (530, b"5.7.10 REQUIRETLS needs a TLS session"))
        offeredOverTLS = yield inThread(secure)
        self.assertTrue(offeredOverTLS)

    @inlineCallbacks
    def test_alias_pointing_outside_is_forwarded_with_its_original_recipient(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        """
        Mail from the Internet to an alias of a local user and an outside
        address: the user gets a copy, the outside address a queued one
        with the envelope sender kept and the alias as C{ORCPT}.
        """
        self.fixture.directory.addAlias("team@example.test", [BOB, REMOTE])

        def send() -> dict[str, tuple[int, bytes]]:
            with smtplib.SMTP("localhost", self.mx, timeout=5) as client:
                return client.sendmail("someone@remote.example", ["team@example.test"], BODY)

        refused = yield inThread(send)
        self.assertEqual(refused, {})
        [entry] = self.entries()
        self.assertEqual(entry.sender, "someone@remote.example")
        [recipient] = entry.recipients
        self.assertEqual(recipient.address, REMOTE)
        self.assertEqual(recipient.orcpt, "rfc822;team@example.test")
        folder = self.fixture.store(BOB).getFolder("INBOX")
        self.assertEqual(len(folder.messages()), 1)

    @inlineCallbacks
    def test_mx_never_relays_for_strangers(self) -> Generator[Deferred[Any], Any, None]:
        def send() -> tuple[int, bytes]:
            with smtplib.SMTP("localhost", self.mx, timeout=5) as client:
                client.ehlo("client.example.org")
                client.mail("someone@remote.example")
                return client.rcpt(REMOTE)

        reply = yield inThread(send)
        self.assertEqual(reply, (550, b"5.7.1 Relaying denied"))
        self.assertEqual(self.entries(), [])

    @inlineCallbacks
    def test_lmtp_forwards_an_alias_pointing_outside(self) -> Generator[Deferred[Any], Any, None]:
        self.fixture.directory.addAlias("fwd@example.test", [REMOTE])

        def send() -> tuple[tuple[int, bytes], tuple[int, bytes]]:
            with smtplib.LMTP("127.0.0.1", self.lmtp) as client:
                client.ehlo_or_helo_if_needed()
                client.mail("someone@remote.example")
                rcpt = client.rcpt("fwd@example.test")
                client.putcmd("data")
                client.getreply()
                client.send(BODY + b".\r\n")
                return rcpt, client.getreply()

        rcpt, data = yield inThread(send)
        self.assertEqual(rcpt[0], 250)
        self.assertEqual(data[0], 250)
        self.assertIn(b"<fwd@example.test>", data[1])
        [entry] = self.entries()
        self.assertEqual([r.address for r in entry.recipients], [REMOTE])

    @inlineCallbacks
    def test_notify_success_for_local_delivery_queues_a_delivered_report(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        """
        C{NOTIFY=SUCCESS} to a local user: once the message is stored, a
        report from C{<>} to the sender says C{Action: delivered} and
        returns the header; recipients that did not ask get none.
        """

        def send() -> dict[str, tuple[int, bytes]]:
            with smtplib.SMTP("localhost", self.mx, timeout=5) as client:
                client.ehlo("client.example.org")
                client.mail("someone@remote.example", ["ENVID=env-7", "RET=FULL"])
                client.rcpt(ALICE, ["NOTIFY=SUCCESS", "ORCPT=rfc822;alice@example.test"])
                client.rcpt(BOB)
                code, text = client.data(BODY)
                return {"data": (code, text)}

        replies = yield inThread(send)
        self.assertEqual(replies["data"][0], 250)
        yield eventually(lambda: len(self.announced) == 1)
        [entry] = self.entries()
        self.assertEqual(entry.sender, "")
        self.assertEqual([r.address for r in entry.recipients], ["someone@remote.example"])
        report = parse(self.queued(entry))
        self.assertEqual(report["Subject"], "Delivery report: mail delivered")
        self.assertEqual(report["To"], "someone@remote.example")
        perMessage, perRecipient = statusGroups(report)
        self.assertEqual(perMessage["original-envelope-id"], "env-7")
        self.assertEqual(perRecipient["action"], "delivered")
        self.assertEqual(perRecipient["final-recipient"], "rfc822; alice@example.test")
        self.assertEqual(perRecipient["status"], "2.0.0")
        [returned] = [
            p for p in report.iter_parts() if p.get_content_type() == "text/rfc822-headers"
        ]
        self.assertIn("Subject: plans", returned.get_content())

    @inlineCallbacks
    def test_no_success_report_without_notify_or_to_a_null_sender(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        def send() -> None:
            with smtplib.SMTP("localhost", self.mx, timeout=5) as client:
                client.sendmail("someone@remote.example", [ALICE], BODY)
                client.sendmail("", [ALICE], BODY, rcpt_options=["NOTIFY=SUCCESS"])

        yield inThread(send)
        self.assertEqual(self.entries(), [])
        self.assertEqual(self.announced, [])


class FullQueueDiskTests(RelayServers):
    """
    The queue's disk is nearly full (16 KiB left): submission refuses at
    C{MAIL} a message whose declared size does not fit, and one that
    declared none as a whole at the end of DATA, nothing half kept.
    """

    def queueDirectory(self) -> Path:
        disk = contextlib.ExitStack()
        self.addCleanup(disk.close)
        mount = disk.enter_context(smallDisk(Path(self.mktemp()).resolve(), "256k"))
        QueueStore(mount / "queue").create()
        fd = os.open(mount / "filler", os.O_WRONLY | os.O_CREAT)
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"x" * 4096)
        os.ftruncate(fd, max(0, os.fstat(fd).st_size - 16 * 1024))
        os.close(fd)
        return mount / "queue"

    def submit(self, body: bytes, *options: str) -> tuple[tuple[int, bytes], ...]:
        """MAIL with C{options}, RCPT to a local and a remote user, DATA; every reply."""
        with smtplib.SMTP("localhost", self.submission, timeout=5) as client:
            client.starttls(context=self.pki.clientContext())
            client.login(ALICE, PASSWORD)
            mail = client.mail(ALICE, list(options))
            if mail[0] != 250:
                return (mail,)
            return mail, client.rcpt(BOB), client.rcpt(REMOTE), client.data(body)

    @inlineCallbacks
    def test_a_declared_size_the_queue_cannot_hold_is_refused_at_mail(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        replies = yield inThread(self.submit, BODY, f"SIZE={64 * 1024}")
        self.assertEqual(replies, ((452, b"4.3.1 Insufficient system storage"),))
        self.assertEqual(self.queue.ids(), [])

    @inlineCallbacks
    def test_submission_gets_452_and_no_copy_is_kept(self) -> Generator[Deferred[Any], Any, None]:
        body = BODY + (b"x" * 76 + b"\r\n") * 1000
        replies = yield inThread(self.submit, body)
        self.assertEqual(replies[0], (250, b"2.1.0 Ok"))
        self.assertEqual(replies[-1], (452, b"4.3.1 Insufficient system storage"))
        self.assertEqual(self.fixture.inbox(BOB), [])
        self.assertEqual(self.queue.ids(), [])
        self.assertEqual(self.queue.recover(grace=0).debris, [])
