"""
Outbound mail through the real C{twistd -n tmail}: a message submitted on
the submission port is queued, routed by MX records from a name server on
loopback, DKIM-signed, and taken by a sink SMTP server on loopback; a
refused recipient comes back to the sender's INBOX as a delivery report,
read over IMAP; a deferred one is retried when the operator flushes the
queue with C{tmail queue flush}.
"""

from __future__ import annotations

import email
import email.policy
import imaplib
import json
import shlex
import smtplib
from collections.abc import Callable, Generator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import dkim
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial.unittest import TestCase

from support.dns import a, mx, startDNS
from support.net import eventually, inThread
from support.process import TmailServer
from support.sink import SinkFactory, startSink

ALICE = "alice@example.test"
PASSWORD = "alice-password"
MESSAGE = (
    "From: Alice <alice@example.test>\r\n"
    "To: Friend <friend@elsewhere.example>, Nobody <nobody@elsewhere.example>\r\n"
    "Subject: Lunch\r\n"
    "\r\n"
    "Noon at the usual place?\r\n"
)

ZONE = {
    "elsewhere.example": [mx(10, "mx.elsewhere.example")],
    "mx.elsewhere.example": [a("127.0.0.1")],
    "later.example": [mx(10, "mx.later.example")],
    "mx.later.example": [a("127.0.0.1")],
}


def parse(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


class OutboundTests(TestCase):
    timeout = 90

    @inlineCallbacks
    def setUp(self) -> Generator[Deferred[Any], Any, None]:
        self.dns = yield startDNS(self, ZONE)
        self.sink = SinkFactory(
            rcptReplies={
                "nobody@elsewhere.example": "550 5.1.1 No such user",
                "pal@later.example": "451 4.3.0 Try again later",
            }
        )
        sinkPort = yield startSink(self, self.sink)
        self.server = TmailServer(
            Path(self.mktemp()).resolve(),
            extra=(
                "[relay]\n"
                f'nameservers = ["127.0.0.1:{self.dns.port}"]\n'
                f"port = {sinkPort}\n"
                "first_retry = 3600\n"
                "max_backoff = 3600\n"
            ),
        )
        self.server.write()
        self.server.addUser(ALICE, PASSWORD)
        keygen = self.server.cli("dkim", "keygen", "example.test", "--selector", "e2e")
        self.assertEqual(keygen.returncode, 0, keygen.stderr)
        name, _, rest = keygen.stdout.strip().splitlines()[-1].partition(" IN TXT ")
        self.dkimRecords = {name.encode(): "".join(shlex.split(rest)).encode()}
        yield inThread(self.server.start)
        self.addCleanup(self.server.stop)

    def submit(self, recipients: list[str], notify: str = "FAILURE") -> dict[str, Any]:
        assert self.server.pki is not None
        with smtplib.SMTP("127.0.0.1", self.server.ports["submission"], timeout=10) as client:
            client.starttls(context=self.server.pki.clientContext())
            client.login(ALICE, PASSWORD)
            return client.sendmail(
                ALICE, recipients, MESSAGE.encode(), rcpt_options=[f"NOTIFY={notify}"]
            )

    def inbox(self) -> list[bytes]:
        assert self.server.pki is not None
        with imaplib.IMAP4_SSL(
            "127.0.0.1", self.server.ports["imaps"], ssl_context=self.server.pki.clientContext()
        ) as client:
            client.login(ALICE, PASSWORD)
            client.select("INBOX")
            _, data = client.uid("FETCH", "1:*", "(BODY.PEEK[])")
            return [item[1] for item in data if isinstance(item, tuple)]

    def queue(self) -> list[dict[str, Any]]:
        listed = self.server.cli("queue", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        entries: list[dict[str, Any]] = json.loads(listed.stdout)
        return entries

    def waitFor(self, condition: Callable[[], bool]) -> Deferred[None]:
        return eventually(
            condition, 30.0, lambda: f"not reached in 30 s; log:\n{self.server.log.read_text()}"
        )

    @inlineCallbacks
    def waitForReports(self) -> Generator[Deferred[Any], Any, list[bytes]]:
        """Alice's INBOX, once something (a delivery report) is in it."""
        reports: list[bytes] = []

        def arrived() -> bool:
            reports[:] = self.inbox()
            return bool(reports)

        yield self.waitFor(arrived)
        return reports

    @inlineCallbacks
    def test_submitted_mail_reaches_the_mx_signed_and_a_refusal_comes_back_as_a_report(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        refused = yield inThread(
            self.submit, ["friend@elsewhere.example", "nobody@elsewhere.example"]
        )
        self.assertEqual(refused, {})
        yield self.waitFor(lambda: len(self.sink.messages) == 1)
        self.assertTrue(self.dns.asked("elsewhere.example"))
        [session] = self.sink.sessions
        [transaction] = session.transactions
        self.assertEqual(transaction.mailFrom.split()[0], f"FROM:<{ALICE}>")
        self.assertEqual(transaction.recipients, ["TO:<friend@elsewhere.example> NOTIFY=FAILURE"])
        [sent] = self.sink.messages
        self.assertTrue(sent.startswith(b"DKIM-Signature: "), sent[:60])
        self.assertTrue(
            dkim.verify(sent, dnsfunc=lambda name, timeout=5: self.dkimRecords.get(name))
        )
        self.assertIn(b"\r\nSubject: Lunch\r\n", sent)
        self.assertIn(b"\r\nMessage-ID: <", sent)
        self.assertTrue(sent.endswith(b"\r\n\r\nNoon at the usual place?\r\n"))

        reports = yield self.waitForReports()
        [report] = reports
        parsed = parse(report)
        self.assertTrue(report.startswith(b"Return-Path: <>\r\n"))
        self.assertEqual(parsed["Subject"], "Undelivered mail returned to sender")
        [status] = [
            p for p in parsed.iter_parts() if p.get_content_type() == "message/delivery-status"
        ]
        groups = [{k.lower(): str(v) for k, v in g.items()} for g in status.get_payload()]
        self.assertEqual(groups[1]["final-recipient"], "rfc822; nobody@elsewhere.example")
        self.assertEqual(groups[1]["action"], "failed")
        self.assertEqual(groups[1]["status"], "5.1.1")
        self.assertIn("550 5.1.1 No such user", groups[1]["diagnostic-code"])
        yield self.waitFor(lambda: self.queue() == [])

    @inlineCallbacks
    def test_a_deferred_recipient_is_retried_when_the_operator_flushes_the_queue(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        refused = yield inThread(self.submit, ["pal@later.example"])
        self.assertEqual(refused, {})

        def deferred() -> bool:
            entries = self.queue()
            return bool(entries) and entries[0]["recipients"][0]["state"] == "deferred"

        yield self.waitFor(deferred)
        self.assertEqual(self.sink.messages, [])
        del self.sink.rcptReplies["pal@later.example"]
        flushed = self.server.cli("queue", "flush")
        self.assertEqual(flushed.returncode, 0, flushed.stderr)
        yield self.waitFor(lambda: len(self.sink.messages) == 1)
        yield self.waitFor(lambda: self.queue() == [])
        self.assertEqual(self.inbox(), [])

    @inlineCallbacks
    def test_notify_success_to_a_server_without_dsn_is_reported_as_relayed(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        self.sink.extensions = ("8BITMIME", "ENHANCEDSTATUSCODES")
        refused = yield inThread(self.submit, ["friend@elsewhere.example"], "SUCCESS,FAILURE")
        self.assertEqual(refused, {})
        reports = yield self.waitForReports()
        self.assertEqual(len(self.sink.messages), 1)
        [report] = reports
        parsed = parse(report)
        self.assertEqual(parsed["Subject"], "Delivery report: mail relayed")
        [status] = [
            p for p in parsed.iter_parts() if p.get_content_type() == "message/delivery-status"
        ]
        perRecipient = {k.lower(): str(v) for k, v in status.get_payload()[1].items()}
        self.assertEqual(perRecipient["action"], "relayed")
        self.assertEqual(perRecipient["final-recipient"], "rfc822; friend@elsewhere.example")
