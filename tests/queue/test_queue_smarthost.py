"""
The queue runner sending all mail through a smarthost on loopback: over
STARTTLS or implicit TLS, logged in, and deferring whatever keeps it from
getting through.
"""

from __future__ import annotations

import socket
from collections.abc import Generator
from pathlib import Path
from typing import Any

from tests.queue.test_queue_runner import MESSAGE, SENDER, RunnerTestCase, reportFields
from tests.support.pki import TestPKI, makePKI
from tests.support.sink import SinkFactory, serverTLS, startSink
from twisted.internet import defer
from twisted.internet.ssl import Certificate
from twisted.names import dns

from tmail.config.remotes import Credentials
from tmail.queue.entry import QueueEntry, Recipient, State
from tmail.queue.smarthost import Smarthost

USER, PASSWORD = "relay@example.org", "correct horse"
#: Domains the name server knows nothing of, or whose MX turns mail away.
NOWHERE, NULL_MX = "bob@nowhere.example", "carol@null.test"


class SmarthostTests(RunnerTestCase):
    pki: TestPKI

    @defer.inlineCallbacks
    def setUp(self) -> Generator[Any, Any, None]:
        yield super().setUp()
        self.pki = makePKI(Path(self.mktemp()), hostnames=("mx.ok.test",))

    @defer.inlineCallbacks
    def startSmarthost(self, **kwargs: Any) -> Generator[Any, Any, None]:
        """Replace the plain sink with one using the test PKI and wanting a login."""
        kwargs.setdefault("tls", serverTLS(self.pki))
        kwargs.setdefault("credentials", (USER, PASSWORD))
        self.sink = SinkFactory(**kwargs)
        self.port = yield startSink(self, self.sink)

    def smarthost(self, host: str = "mx.ok.test", **kwargs: Any) -> Smarthost:
        kwargs.setdefault("credentials", Credentials(USER, PASSWORD))
        kwargs.setdefault("trustRoot", Certificate.loadPEM(self.pki.caCertificate.read_bytes()))
        return Smarthost(host, self.port, **kwargs)

    def recipient(self, entry: QueueEntry, address: str) -> Recipient:
        return self.store.load(entry.id).recipient(address)

    @defer.inlineCallbacks
    def assertDeferred(self, smarthost: Smarthost, status: str) -> Generator[Any, Any, Recipient]:
        """The mail waits, with C{status}, and nothing reached the sink."""
        entry = self.enqueue(NOWHERE)
        self.startRunner(smarthost=smarthost)
        yield self.waitFor(lambda: self.recipient(entry, NOWHERE).attempts >= 1)
        recipient = self.recipient(entry, NOWHERE)
        self.assertEqual(recipient.state, State.DEFERRED)
        assert recipient.diagnostic is not None
        self.assertEqual(recipient.diagnostic.status, status)
        self.assertEqual(self.sink.messages, [])
        return recipient

    def authCommands(self) -> list[str]:
        return [c for s in self.sink.sessions for c in s.commands if c.upper().startswith("AUTH")]

    @defer.inlineCallbacks
    def test_mail_for_two_domains_goes_over_starttls_logged_in_without_mx_lookup(
        self,
    ) -> Generator[Any, Any, None]:
        yield self.startSmarthost()
        self.enqueue(NOWHERE, NULL_MX)
        self.startRunner(smarthost=self.smarthost())
        yield self.waitFor(lambda: not self.store.ids())
        [session] = self.sink.sessions
        self.assertTrue(session.tls)
        self.assertEqual(session.user, USER)
        self.assertEqual(self.authCommands()[0].split(" ")[:2], ["AUTH", "PLAIN"])
        [transaction] = session.transactions
        self.assertEqual(transaction.recipients, [f"TO:<{NOWHERE}>", f"TO:<{NULL_MX}>"])
        self.assertEqual(transaction.message, MESSAGE)
        self.assertEqual([t for _, t in self.dns.queries if t == dns.MX], [])
        self.assertTrue(self.dns.asked("mx.ok.test"))

    @defer.inlineCallbacks
    def test_implicit_tls_smarthost_at_an_address_needs_no_dns(
        self,
    ) -> Generator[Any, Any, None]:
        yield self.startSmarthost(implicitTLS=True)
        self.enqueue(NOWHERE)
        self.startRunner(smarthost=self.smarthost("127.0.0.1", implicitTLS=True))
        yield self.waitFor(lambda: not self.store.ids())
        [session] = self.sink.sessions
        self.assertNotIn("STARTTLS", session.commands)
        self.assertEqual(session.user, USER)
        self.assertEqual(self.sink.messages, [MESSAGE])
        self.assertEqual(self.dns.queries, [])

    @defer.inlineCallbacks
    def test_auth_login_only_smarthost_takes_the_mail(self) -> Generator[Any, Any, None]:
        yield self.startSmarthost(mechanisms=("LOGIN",))
        self.enqueue(NOWHERE)
        self.startRunner(smarthost=self.smarthost())
        yield self.waitFor(lambda: not self.store.ids())
        self.assertEqual(self.authCommands(), ["AUTH LOGIN"])
        self.assertEqual(self.sink.sessions[0].user, USER)
        self.assertEqual(self.sink.messages, [MESSAGE])

    @defer.inlineCallbacks
    def test_smarthost_without_starttls_defers_and_gets_no_credentials(
        self,
    ) -> Generator[Any, Any, None]:
        yield self.startSmarthost(tls=None, authInClear=True)
        yield self.assertDeferred(self.smarthost(), "4.7.10")
        self.assertEqual(self.authCommands(), [])
        self.assertFalse(any(PASSWORD in c for s in self.sink.sessions for c in s.commands))

    @defer.inlineCallbacks
    def test_wrong_password_defers_with_the_smarthosts_reply(self) -> Generator[Any, Any, None]:
        yield self.startSmarthost()
        smarthost = self.smarthost(credentials=Credentials(USER, "wrong"))
        recipient = yield self.assertDeferred(smarthost, "4.7.8")
        self.assertIn("535 5.7.8 Authentication credentials invalid", recipient.diagnostic.text)
        self.assertEqual(self.bounces(), [])

    @defer.inlineCallbacks
    def test_untrusted_certificate_defers_when_verifying(self) -> Generator[Any, Any, None]:
        yield self.startSmarthost()
        yield self.assertDeferred(self.smarthost(trustRoot=None), "4.7.5")
        self.assertEqual(self.authCommands(), [])

    @defer.inlineCallbacks
    def test_unverified_certificate_is_taken_when_verification_is_off(
        self,
    ) -> Generator[Any, Any, None]:
        yield self.startSmarthost()
        self.enqueue(NOWHERE)
        self.startRunner(smarthost=self.smarthost(trustRoot=None, verify=False))
        yield self.waitFor(lambda: not self.store.ids())
        self.assertEqual(self.sink.messages, [MESSAGE])

    @defer.inlineCallbacks
    def test_unreachable_smarthost_defers(self) -> Generator[Any, Any, None]:
        yield self.startSmarthost()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        yield self.assertDeferred(self.smarthost("127.0.0.1"), "4.4.1")

    @defer.inlineCallbacks
    def test_smarthost_name_without_address_defers(self) -> Generator[Any, Any, None]:
        yield self.startSmarthost()
        yield self.assertDeferred(self.smarthost("relay.nowhere.example"), "4.4.4")

    @defer.inlineCallbacks
    def test_recipient_refused_by_the_smarthost_bounces_through_it(
        self,
    ) -> Generator[Any, Any, None]:
        yield self.startSmarthost(rcptReplies={NOWHERE: "550 5.1.1 No such user"})
        self.enqueue(NOWHERE, NULL_MX)
        self.startRunner(smarthost=self.smarthost())
        yield self.waitFor(lambda: not self.store.ids() and len(self.bounces()) == 1)
        perRecipient = reportFields(self.bounces()[0])[1:]
        self.assertEqual([r["final-recipient"] for r in perRecipient], [f"rfc822; {NOWHERE}"])
        self.assertEqual(perRecipient[0]["status"], "5.1.1")
        bounceSession, bounce = next(
            (s, t)
            for s in self.sink.sessions
            for t in s.transactions
            if t.mailFrom.startswith("FROM:<>")
        )
        self.assertEqual(bounceSession.user, USER)
        self.assertEqual(bounce.recipients, [f"TO:<{SENDER}>"])
