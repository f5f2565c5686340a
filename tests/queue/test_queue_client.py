"""Handing a queued message to a remote SMTP server: what each server answer comes to."""

from __future__ import annotations

import base64
import io
import socket
from pathlib import Path

from tests.support.pki import TestPKI, makePKI
from tests.support.sink import (
    DROP,
    RESET_IN_DATA,
    SILENT,
    STALL,
    SinkFactory,
    serverTLS,
    startSink,
)
from twisted.internet import reactor
from twisted.internet.defer import CancelledError, Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, wrapClientTLS
from twisted.internet.ssl import Certificate
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from tmail.config.remotes import Credentials
from tmail.queue.client import deliver, envelopeFor
from tmail.queue.clientsettings import ClientSettings, Timeouts, TLSMode, TLSPolicy
from tmail.queue.entry import Diagnostic, Envelope, QueueEntry, Recipient, State
from tmail.queue.results import DeliveryResult
from tmail.queue.schedule import RetrySchedule

MESSAGE = b"From: alice@example.com\r\nSubject: hello\r\n\r\nHello, Bob.\r\n"
BOB, CAROL = "bob@example.net", "carol@example.net"
SHORT = Timeouts(initial=1.0, mail=1.0, rcpt=1.0, dataInit=1.0, dataBlock=1.0, dataEnd=1.0)


def envelope(*addresses: str, **kwargs: object) -> Envelope:
    recipients = tuple(Recipient(a) for a in addresses or (BOB,))
    return Envelope("alice@example.com", recipients, **kwargs)  # type: ignore[arg-type]


class ClientTestCase(TestCase):
    pki: TestPKI

    def settings(self, **tls: object) -> ClientSettings:
        return ClientSettings("client.example.com", TLSPolicy(**tls), SHORT)  # type: ignore[arg-type]

    def trust(self) -> Certificate:
        return Certificate.loadPEM(self.pki.caCertificate.read_bytes())

    def setUp(self) -> None:
        self.pki = makePKI(Path(self.mktemp()))

    @inlineCallbacks
    def send(
        self,
        sink: SinkFactory,
        env: Envelope | None = None,
        message: bytes = MESSAGE,
        settings: ClientSettings | None = None,
        remoteName: str = "localhost",
        requireTLS: bool = False,
        implicitTLS: bool = False,
    ):  # type: ignore[no-untyped-def]
        settings = settings or self.settings()
        port = yield startSink(self, sink)
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        if implicitTLS:
            endpoint = wrapClientTLS(settings.tls.contextFor(remoteName), endpoint)
        result = yield deliver(
            endpoint,
            remoteName,
            env or envelope(),
            io.BytesIO(message),
            settings,
            requireTLS=requireTLS,
            implicitTLS=implicitTLS,
        )
        return result


def states(result: DeliveryResult) -> dict[str, State]:
    return {a: r.state for a, r in result.recipients.items()}


class OutcomeTests(ClientTestCase):
    @inlineCallbacks
    def test_accepted_message_is_delivered_byte_for_byte(self):  # type: ignore[no-untyped-def]
        sink = SinkFactory()
        message = MESSAGE + b".leading dot\r\n..two\r\n.\r\nend"
        result = yield self.send(sink, envelope(BOB, CAROL), message)
        self.assertEqual(states(result), {BOB: State.DELIVERED, CAROL: State.DELIVERED})
        self.assertFalse(result.hostFailed)
        self.assertEqual(sink.messages, [message + b"\r\n"])
        d = result.recipients[BOB].diagnostic
        self.assertEqual(
            (d.code, d.status, d.text, d.remoteMta), (250, "2.0.0", "Ok: queued", "localhost")
        )
        self.assertEqual(sink.sessions[0].commands[-1], "QUIT")

    @inlineCallbacks
    def test_large_message_in_small_chunks_arrives_intact(self):  # type: ignore[no-untyped-def]
        sink = SinkFactory()
        body = b"".join(b".%d " % n + b"x" * (n % 97) + b"\r\n" for n in range(20000))
        settings = ClientSettings("client.example.com", TLSPolicy(), SHORT, chunkSize=1000)
        result = yield self.send(sink, message=MESSAGE + body, settings=settings)
        self.assertEqual(states(result), {BOB: State.DELIVERED})
        self.assertEqual(sink.messages, [MESSAGE + body])

    @inlineCallbacks
    def test_each_recipient_gets_its_own_rcpt_answer(self):  # type: ignore[no-untyped-def]
        sink = SinkFactory(
            rcptReplies={CAROL: "550 5.1.1 No such user", "dave@example.net": "452 4.2.2 Full"}
        )
        result = yield self.send(sink, envelope(BOB, CAROL, "dave@example.net"))
        self.assertEqual(
            states(result),
            {BOB: State.DELIVERED, CAROL: State.FAILED, "dave@example.net": State.DEFERRED},
        )
        self.assertEqual(
            result.recipients[CAROL].diagnostic,
            Diagnostic("5.1.1", "No such user", 550, "localhost"),
        )
        self.assertEqual(result.recipients["dave@example.net"].diagnostic.status, "4.2.2")
        self.assertFalse(result.hostFailed)

    @inlineCallbacks
    def test_no_data_when_no_recipient_is_accepted(self):  # type: ignore[no-untyped-def]
        sink = SinkFactory(replies={"rcpt": "550 5.1.1 No such user"})
        result = yield self.send(sink, envelope(BOB, CAROL))
        self.assertEqual(states(result), {BOB: State.FAILED, CAROL: State.FAILED})
        self.assertNotIn("DATA", sink.sessions[0].commands)

    @inlineCallbacks
    def test_final_reply_applies_to_accepted_recipients(self):  # type: ignore[no-untyped-def]
        sink = SinkFactory(
            replies={"end": "554 5.7.1 Spam"}, rcptReplies={CAROL: "451 4.3.0 Later"}
        )
        result = yield self.send(sink, envelope(BOB, CAROL))
        self.assertEqual(states(result), {BOB: State.FAILED, CAROL: State.DEFERRED})
        self.assertEqual(result.recipients[BOB].diagnostic.text, "Spam")

    @inlineCallbacks
    def test_temporary_end_of_data_reply_defers(self):  # type: ignore[no-untyped-def]
        result = yield self.send(SinkFactory(replies={"end": "451 4.3.0 Try later"}))
        self.assertEqual(states(result), {BOB: State.DEFERRED})
        self.assertFalse(result.hostFailed)

    @inlineCallbacks
    def test_mail_from_refused_fails_everyone(self):  # type: ignore[no-untyped-def]
        result = yield self.send(
            SinkFactory(replies={"mail": "553 5.7.1 Sender refused"}), envelope(BOB, CAROL)
        )
        self.assertEqual(states(result), {BOB: State.FAILED, CAROL: State.FAILED})

    @inlineCallbacks
    def test_reply_without_enhanced_status_gets_one_from_its_class(self):  # type: ignore[no-untyped-def]
        result = yield self.send(SinkFactory(replies={"rcpt": "550 nope"}))
        self.assertEqual(
            result.recipients[BOB].diagnostic, Diagnostic("5.0.0", "nope", 550, "localhost")
        )

    @inlineCallbacks
    def test_helo_when_ehlo_is_refused(self):  # type: ignore[no-untyped-def]
        sink = SinkFactory(replies={"ehlo": "502 5.5.1 No EHLO here"})
        result = yield self.send(sink)
        self.assertEqual(states(result), {BOB: State.DELIVERED})
        self.assertEqual(
            sink.sessions[0].commands[:2], ["EHLO client.example.com", "HELO client.example.com"]
        )
        self.assertEqual(sink.sessions[0].commands[2], "MAIL FROM:<alice@example.com>")

    @inlineCallbacks
    def test_outcomes_for_the_queue(self):  # type: ignore[no-untyped-def]
        sink = SinkFactory(
            rcptReplies={CAROL: "450 4.2.1 Busy", "dave@example.net": "550 5.1.1 No"}
        )
        entry = QueueEntry(
            "0" * 24,
            "alice@example.com",
            1000.0,
            tuple(Recipient(a) for a in (BOB, CAROL, "dave@example.net")),
        )
        result = yield self.send(sink, envelopeFor(entry, entry.recipients))
        outcomes = result.outcomes(RetrySchedule(), entry, 2000.0)
        self.assertEqual(outcomes[BOB].state, State.DELIVERED)
        self.assertTrue(outcomes[BOB].dsnPassedOn)
        self.assertEqual(outcomes[CAROL].state, State.DEFERRED)
        self.assertEqual(outcomes[CAROL].nextAttempt, 2300.0)
        self.assertEqual(outcomes["dave@example.net"].state, State.FAILED)


class HostFailureTests(ClientTestCase):
    """Failures of the host as a whole: everyone waits, and the next MX is worth a try."""

    @inlineCallbacks
    def assertHostFailed(self, sink: SinkFactory, status: str):  # type: ignore[no-untyped-def]
        result = yield self.send(sink, envelope(BOB, CAROL))
        self.assertTrue(result.hostFailed)
        self.assertEqual(states(result), {BOB: State.DEFERRED, CAROL: State.DEFERRED})
        self.assertEqual(result.recipients[BOB].diagnostic.status, status)
        self.assertEqual(sink.messages, [])
        return result

    @inlineCallbacks
    def test_connection_refused(self):  # type: ignore[no-untyped-def]
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        result = yield deliver(
            endpoint, "mx.example.net", envelope(), io.BytesIO(MESSAGE), self.settings()
        )
        self.assertTrue(result.hostFailed)
        d = result.recipients[BOB].diagnostic
        self.assertEqual((d.status, d.code, d.remoteMta), ("4.4.1", None, "mx.example.net"))

    def test_greeting_421(self) -> Deferred[None]:
        return self.assertHostFailed(SinkFactory(replies={"greeting": "421 4.3.2 Busy"}), "4.3.2")

    def test_greeting_554_is_tried_elsewhere(self) -> Deferred[None]:
        return self.assertHostFailed(
            SinkFactory(replies={"greeting": "554 5.7.1 Go away"}), "4.7.1"
        )

    def test_421_after_rcpt(self) -> Deferred[None]:
        return self.assertHostFailed(SinkFactory(replies={"rcpt": "421 4.4.2 Closing"}), "4.4.2")

    def test_dropped_during_data(self) -> Deferred[None]:
        return self.assertHostFailed(SinkFactory(replies={"end": DROP}), "4.4.2")

    def test_dropped_at_greeting(self) -> Deferred[None]:
        return self.assertHostFailed(SinkFactory(replies={"greeting": DROP}), "4.4.2")

    @inlineCallbacks
    def test_silent_server_times_out(self):  # type: ignore[no-untyped-def]
        result = yield self.assertHostFailed(SinkFactory(replies={"mail": SILENT}), "4.4.2")
        self.assertEqual(result.recipients[BOB].diagnostic.text, "timeout waiting for MAIL")

    @inlineCallbacks
    def test_silent_after_data_times_out(self):  # type: ignore[no-untyped-def]
        result = yield self.assertHostFailed(SinkFactory(replies={"end": SILENT}), "4.4.2")
        self.assertEqual(
            result.recipients[BOB].diagnostic.text, "timeout waiting for the end of data"
        )

    @inlineCallbacks
    def test_server_that_stops_reading_the_message_times_out(self):  # type: ignore[no-untyped-def]
        sink = SinkFactory(replies={"data": STALL})
        message = MESSAGE + (b"x" * 998 + b"\r\n") * 8 * 1024
        result = yield self.send(sink, envelope(BOB, CAROL), message)
        self.assertTrue(result.hostFailed)
        self.assertEqual(states(result), {BOB: State.DEFERRED, CAROL: State.DEFERRED})
        self.assertEqual(result.recipients[BOB].diagnostic.text, "timeout sending the message")

    @inlineCallbacks
    def test_a_reset_while_the_message_is_backed_up_ends_the_attempt(self):  # type: ignore[no-untyped-def]
        """The transport stops the message before it says the connection is gone."""
        sink = SinkFactory(replies={"data": RESET_IN_DATA})
        message = MESSAGE + (b"x" * 998 + b"\r\n") * 8 * 1024
        result = yield self.send(sink, envelope(BOB), message)
        self.assertTrue(result.hostFailed)
        self.assertEqual(states(result), {BOB: State.DEFERRED})
        self.assertIn("connection lost", result.recipients[BOB].diagnostic.text)

    test_a_reset_while_the_message_is_backed_up_ends_the_attempt.timeout = 10  # type: ignore[attr-defined]

    @inlineCallbacks
    def test_recipients_answered_before_a_421_keep_their_answer(self):  # type: ignore[no-untyped-def]
        sink = SinkFactory(rcptReplies={BOB: "550 5.1.1 No", CAROL: "421 4.3.2 Shutting down"})
        result = yield self.send(sink, envelope(BOB, CAROL))
        self.assertTrue(result.hostFailed)
        self.assertEqual(states(result), {BOB: State.FAILED, CAROL: State.DEFERRED})
        self.assertEqual(result.retryElsewhere(), (CAROL,))


class ExtensionTests(ClientTestCase):
    @inlineCallbacks
    def test_dsn_parameters_passed_on(self):  # type: ignore[no-untyped-def]
        sink = SinkFactory()
        env = Envelope(
            "alice@example.com",
            (Recipient(BOB, ("SUCCESS", "FAILURE"), "rfc822;bob+2Bx@example.net"),),
            ret="HDRS",
            envid="abc+2Bdef",
        )
        result = yield self.send(sink, env)
        commands = sink.sessions[0].commands
        self.assertIn(
            f"MAIL FROM:<alice@example.com> SIZE={len(MESSAGE)} RET=HDRS ENVID=abc+2Bdef", commands
        )
        self.assertIn(
            f"RCPT TO:<{BOB}> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob+2Bx@example.net", commands
        )
        self.assertTrue(result.recipients[BOB].dsnPassedOn)

    @inlineCallbacks
    def test_no_dsn_parameters_to_a_server_without_dsn(self):  # type: ignore[no-untyped-def]
        sink = SinkFactory(extensions=("8BITMIME",))
        env = Envelope(
            "alice@example.com",
            (Recipient(BOB, ("SUCCESS",), "rfc822;bob@example.net"),),
            ret="FULL",
            envid="x",
        )
        result = yield self.send(sink, env)
        self.assertIn("MAIL FROM:<alice@example.com>", sink.sessions[0].commands)
        self.assertIn(f"RCPT TO:<{BOB}>", sink.sessions[0].commands)
        self.assertFalse(result.recipients[BOB].dsnPassedOn)

    @inlineCallbacks
    def test_8bit_with_8bitmime(self):  # type: ignore[no-untyped-def]
        sink = SinkFactory()
        message = MESSAGE + "Grüße\r\n".encode()
        result = yield self.send(sink, envelope(body="8BITMIME"), message)
        self.assertEqual(states(result), {BOB: State.DELIVERED})
        self.assertIn(
            f"MAIL FROM:<alice@example.com> SIZE={len(message)} BODY=8BITMIME",
            sink.sessions[0].commands,
        )
        self.assertEqual(sink.messages, [message])

    @inlineCallbacks
    def test_8bit_to_server_without_8bitmime_fails_permanently(self):  # type: ignore[no-untyped-def]
        sink = SinkFactory(extensions=("SIZE 1000000",))
        result = yield self.send(
            sink, envelope(BOB, CAROL, body="8BITMIME"), MESSAGE + b"\xc3\xa9\r\n"
        )
        self.assertEqual(states(result), {BOB: State.FAILED, CAROL: State.FAILED})
        self.assertEqual(result.recipients[BOB].diagnostic.status, "5.6.3")
        self.assertFalse(result.hostFailed)
        self.assertFalse(any(c.startswith("MAIL") for c in sink.sessions[0].commands))

    @inlineCallbacks
    def test_smtputf8_to_server_without_it_fails_permanently(self):  # type: ignore[no-untyped-def]
        sink = SinkFactory(extensions=("8BITMIME",))
        env = Envelope(
            "alice@example.com", (Recipient("jörg@example.net"),), body="8BITMIME", utf8=True
        )
        result = yield self.send(sink, env)
        self.assertEqual(result.recipients["jörg@example.net"].state, State.FAILED)
        self.assertEqual(result.recipients["jörg@example.net"].diagnostic.status, "5.6.7")

    @inlineCallbacks
    def test_smtputf8_passed_on(self):  # type: ignore[no-untyped-def]
        sink = SinkFactory()
        env = Envelope(
            "älice@example.com", (Recipient("jörg@example.net"),), body="8BITMIME", utf8=True
        )
        result = yield self.send(sink, env)
        self.assertEqual(result.recipients["jörg@example.net"].state, State.DELIVERED)
        self.assertIn(
            f"MAIL FROM:<älice@example.com> SIZE={len(MESSAGE)} BODY=8BITMIME SMTPUTF8",
            sink.sessions[0].commands,
        )

    @inlineCallbacks
    def test_too_big_for_the_server_fails_without_sending(self):  # type: ignore[no-untyped-def]
        sink = SinkFactory(extensions=("SIZE 10",))
        result = yield self.send(sink)
        self.assertEqual(result.recipients[BOB].state, State.FAILED)
        self.assertEqual(result.recipients[BOB].diagnostic.status, "5.3.4")

    @inlineCallbacks
    def test_binary_goes_by_bdat(self):  # type: ignore[no-untyped-def]
        sink = SinkFactory(extensions=("BINARYMIME", "CHUNKING", "8BITMIME"))
        message = MESSAGE + bytes(range(256)) * 10 + b"\r\n.\r\n"
        settings = ClientSettings("client.example.com", TLSPolicy(), SHORT, chunkSize=1000)
        result = yield self.send(sink, envelope(body="BINARYMIME"), message, settings)
        self.assertEqual(states(result), {BOB: State.DELIVERED})
        self.assertEqual(sink.messages, [message])

    @inlineCallbacks
    def test_binary_to_server_without_chunking_fails(self):  # type: ignore[no-untyped-def]
        result = yield self.send(SinkFactory(), envelope(body="BINARYMIME"))
        self.assertEqual(result.recipients[BOB].diagnostic.status, "5.6.3")


class TLSTests(ClientTestCase):
    def tlsSink(self, **kwargs: object) -> SinkFactory:
        return SinkFactory(tls=serverTLS(self.pki), **kwargs)  # type: ignore[arg-type]

    @inlineCallbacks
    def test_opportunistic_starttls_used_when_offered(self):  # type: ignore[no-untyped-def]
        sink = self.tlsSink()
        result = yield self.send(sink)
        self.assertTrue(result.tls)
        self.assertTrue(sink.sessions[0].tls)
        self.assertEqual(sink.messages, [MESSAGE])
        commands = sink.sessions[0].commands
        self.assertEqual(
            commands[:3], ["EHLO client.example.com", "STARTTLS", "EHLO client.example.com"]
        )

    @inlineCallbacks
    def test_large_message_over_tls_arrives_intact(self):  # type: ignore[no-untyped-def]
        sink = self.tlsSink()
        body = b"".join(b".%d " % n + b"y" * (n % 991) + b"\r\n" for n in range(8000))
        settings = ClientSettings("client.example.com", TLSPolicy(), SHORT, chunkSize=4096)
        result = yield self.send(sink, message=MESSAGE + body, settings=settings)
        self.assertTrue(result.tls)
        self.assertEqual(sink.messages, [MESSAGE + body])

    @inlineCallbacks
    def test_opportunistic_sends_in_clear_without_starttls(self):  # type: ignore[no-untyped-def]
        sink = SinkFactory()
        result = yield self.send(sink)
        self.assertFalse(result.tls)
        self.assertEqual(sink.messages, [MESSAGE])

    @inlineCallbacks
    def test_opportunistic_goes_on_in_clear_when_starttls_is_refused(self):  # type: ignore[no-untyped-def]
        sink = self.tlsSink(replies={"starttls": "454 4.7.0 TLS not available"})
        result = yield self.send(sink)
        self.assertEqual(result.recipients[BOB].state, State.DELIVERED)
        self.assertFalse(result.tls)
        mail = f"MAIL FROM:<alice@example.com> SIZE={len(MESSAGE)}"
        self.assertEqual(sink.sessions[0].commands[2], mail)

    @inlineCallbacks
    def test_required_tls_without_starttls_is_a_temporary_host_failure(self):  # type: ignore[no-untyped-def]
        sink = SinkFactory()
        result = yield self.send(sink, settings=self.settings(mode=TLSMode.REQUIRED))
        self.assertTrue(result.hostFailed)
        self.assertEqual(result.recipients[BOB].state, State.DEFERRED)
        self.assertEqual(result.recipients[BOB].diagnostic.status, "4.7.10")
        self.assertEqual(sink.messages, [])

    @inlineCallbacks
    def test_required_verified_tls_delivers(self):  # type: ignore[no-untyped-def]
        sink = self.tlsSink()
        settings = self.settings(mode=TLSMode.REQUIRED, verify=True, trustRoot=self.trust())
        result = yield self.send(sink, settings=settings)
        self.assertEqual(result.recipients[BOB].state, State.DELIVERED)
        self.assertTrue(result.tls)

    @inlineCallbacks
    def test_certificate_for_another_name_fails_verification(self):  # type: ignore[no-untyped-def]
        sink = self.tlsSink()
        settings = self.settings(mode=TLSMode.REQUIRED, verify=True, trustRoot=self.trust())
        result = yield self.send(sink, settings=settings, remoteName="mx.other.test")
        self.assertTrue(result.hostFailed)
        self.assertEqual(result.recipients[BOB].state, State.DEFERRED)
        self.assertEqual(result.recipients[BOB].diagnostic.status, "4.7.5")
        self.assertEqual(sink.messages, [])

    @inlineCallbacks
    def test_untrusted_certificate_fails_verification(self):  # type: ignore[no-untyped-def]
        sink = self.tlsSink()
        result = yield self.send(sink, settings=self.settings(mode=TLSMode.REQUIRED, verify=True))
        self.assertTrue(result.hostFailed)
        self.assertEqual(result.recipients[BOB].diagnostic.status, "4.7.5")
        self.assertEqual(sink.messages, [])

    @inlineCallbacks
    def test_opportunistic_falls_back_to_clear_after_failed_handshake(self):  # type: ignore[no-untyped-def]
        sink = self.tlsSink()
        settings = self.settings(verify=True, trustRoot=self.trust())
        result = yield self.send(sink, settings=settings, remoteName="mx.other.test")
        self.assertEqual(result.recipients[BOB].state, State.DELIVERED)
        self.assertFalse(result.tls)
        self.assertEqual(len(sink.sessions), 2)
        self.assertNotIn("STARTTLS", sink.sessions[1].commands)
        self.assertEqual(sink.messages, [MESSAGE])

    @inlineCallbacks
    def test_opportunistic_without_clear_fallback_defers(self):  # type: ignore[no-untyped-def]
        sink = self.tlsSink()
        settings = self.settings(verify=True, trustRoot=self.trust(), clearOnFailure=False)
        result = yield self.send(sink, settings=settings, remoteName="mx.other.test")
        self.assertTrue(result.hostFailed)
        self.assertEqual(len(sink.sessions), 1)
        self.assertEqual(sink.messages, [])

    @inlineCallbacks
    def test_requiretls_mail_never_goes_in_clear(self):  # type: ignore[no-untyped-def]
        sink = SinkFactory(extensions=("REQUIRETLS",))
        result = yield self.send(sink, requireTLS=True)
        self.assertTrue(result.hostFailed)
        self.assertEqual(sink.messages, [])
        self.assertEqual(len(sink.sessions), 1)

    @inlineCallbacks
    def test_requiretls_mail_after_failed_handshake_is_not_resent_in_clear(self):  # type: ignore[no-untyped-def]
        sink = self.tlsSink(extensions=("REQUIRETLS",))
        result = yield self.send(sink, requireTLS=True)
        self.assertTrue(result.hostFailed)
        self.assertEqual(len(sink.sessions), 1)
        self.assertEqual(sink.messages, [])

    @inlineCallbacks
    def test_requiretls_over_verified_tls(self):  # type: ignore[no-untyped-def]
        sink = self.tlsSink(extensions=("REQUIRETLS",))
        settings = self.settings(trustRoot=self.trust())
        result = yield self.send(sink, settings=settings, requireTLS=True)
        self.assertEqual(result.recipients[BOB].state, State.DELIVERED)
        self.assertIn("MAIL FROM:<alice@example.com> REQUIRETLS", sink.sessions[0].commands)


USER, PASSWORD = "relay@example.com", "s3cret:with colon"


class AuthTests(ClientTestCase):
    """Logging in to a smarthost (RFC 4954): only over TLS, and any failure defers."""

    def authSink(self, **kwargs: object) -> SinkFactory:
        kwargs.setdefault("tls", serverTLS(self.pki))
        return SinkFactory(credentials=(USER, PASSWORD), **kwargs)  # type: ignore[arg-type]

    def loginSettings(self, password: str = PASSWORD, **tls: object) -> ClientSettings:
        tls.setdefault("mode", TLSMode.REQUIRED)
        tls.setdefault("verify", True)
        tls.setdefault("trustRoot", self.trust())
        policy = TLSPolicy(**tls)  # type: ignore[arg-type]
        return ClientSettings(
            "client.example.com", policy, SHORT, credentials=Credentials(USER, password)
        )

    def authCommands(self, sink: SinkFactory) -> list[str]:
        return [c for s in sink.sessions for c in s.commands if c.upper().startswith("AUTH")]

    @inlineCallbacks
    def test_auth_plain_after_starttls_logs_in_before_mail(self):  # type: ignore[no-untyped-def]
        sink = self.authSink()
        result = yield self.send(sink, settings=self.loginSettings())
        self.assertEqual(states(result), {BOB: State.DELIVERED})
        self.assertTrue(result.tls)
        self.assertEqual(sink.sessions[0].user, USER)
        commands = sink.sessions[0].commands
        token = base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode()
        self.assertEqual(commands[2:4], ["EHLO client.example.com", f"AUTH PLAIN {token}"])
        self.assertTrue(commands[4].startswith("MAIL FROM:"))
        self.assertEqual(sink.messages, [MESSAGE])

    @inlineCallbacks
    def test_auth_login_when_only_login_is_offered(self):  # type: ignore[no-untyped-def]
        sink = self.authSink(mechanisms=("LOGIN",))
        result = yield self.send(sink, settings=self.loginSettings())
        self.assertEqual(states(result), {BOB: State.DELIVERED})
        self.assertEqual(sink.sessions[0].user, USER)
        self.assertEqual(self.authCommands(sink), ["AUTH LOGIN"])

    @inlineCallbacks
    def test_credentials_are_never_sent_without_tls(self):  # type: ignore[no-untyped-def]
        sink = SinkFactory(credentials=(USER, PASSWORD), authInClear=True)
        settings = self.loginSettings(mode=TLSMode.OPPORTUNISTIC)
        result = yield self.send(sink, envelope(BOB, CAROL), settings=settings)
        self.assertTrue(result.hostFailed)
        self.assertEqual(states(result), {BOB: State.DEFERRED, CAROL: State.DEFERRED})
        self.assertEqual(result.recipients[BOB].diagnostic.status, "4.7.11")
        self.assertEqual(self.authCommands(sink), [])
        self.assertFalse(any(PASSWORD in c for s in sink.sessions for c in s.commands))
        self.assertEqual(sink.messages, [])

    @inlineCallbacks
    def test_wrong_password_defers_with_the_servers_reply(self):  # type: ignore[no-untyped-def]
        sink = self.authSink()
        result = yield self.send(sink, settings=self.loginSettings(password="wrong"))
        self.assertTrue(result.hostFailed)
        diagnostic = result.recipients[BOB].diagnostic
        self.assertEqual(result.recipients[BOB].state, State.DEFERRED)
        self.assertEqual(diagnostic.status, "4.7.8")
        self.assertIn("535 5.7.8 Authentication credentials invalid", diagnostic.text)
        self.assertIsNone(sink.sessions[0].user)
        self.assertFalse(any(c.startswith("MAIL") for c in sink.sessions[0].commands))

    @inlineCallbacks
    def test_temporary_auth_failure_defers(self):  # type: ignore[no-untyped-def]
        sink = self.authSink(replies={"auth": "454 4.7.0 Temporary authentication failure"})
        result = yield self.send(sink, settings=self.loginSettings())
        self.assertTrue(result.hostFailed)
        self.assertEqual(result.recipients[BOB].state, State.DEFERRED)
        self.assertEqual(result.recipients[BOB].diagnostic.code, 454)
        self.assertEqual(sink.messages, [])

    @inlineCallbacks
    def test_server_without_auth_defers_without_sending_credentials(self):  # type: ignore[no-untyped-def]
        sink = SinkFactory(tls=serverTLS(self.pki))
        result = yield self.send(sink, settings=self.loginSettings())
        self.assertTrue(result.hostFailed)
        self.assertEqual(result.recipients[BOB].state, State.DEFERRED)
        self.assertIn("does not offer AUTH", result.recipients[BOB].diagnostic.text)
        self.assertEqual(self.authCommands(sink), [])

    @inlineCallbacks
    def test_no_mechanism_in_common_defers_without_sending_credentials(self):  # type: ignore[no-untyped-def]
        sink = self.authSink(mechanisms=("CRAM-MD5",))
        result = yield self.send(sink, settings=self.loginSettings())
        self.assertTrue(result.hostFailed)
        self.assertIn("CRAM-MD5", result.recipients[BOB].diagnostic.text)
        self.assertEqual(self.authCommands(sink), [])

    @inlineCallbacks
    def test_implicit_tls_counts_as_tls_without_starttls(self):  # type: ignore[no-untyped-def]
        sink = self.authSink(implicitTLS=True)
        result = yield self.send(sink, settings=self.loginSettings(), implicitTLS=True)
        self.assertEqual(states(result), {BOB: State.DELIVERED})
        self.assertTrue(result.tls)
        self.assertEqual(sink.sessions[0].user, USER)
        self.assertNotIn("STARTTLS", sink.sessions[0].commands)

    @inlineCallbacks
    def test_implicit_tls_with_an_untrusted_certificate_defers(self):  # type: ignore[no-untyped-def]
        sink = self.authSink(implicitTLS=True)
        settings = self.loginSettings(trustRoot=None)
        result = yield self.send(sink, envelope(BOB, CAROL), settings=settings, implicitTLS=True)
        self.assertTrue(result.hostFailed)
        self.assertEqual(result.recipients[BOB].state, State.DEFERRED)
        self.assertEqual(result.recipients[BOB].diagnostic.status, "4.7.5")
        self.assertEqual(len(sink.sessions), 1)
        self.assertEqual(sink.sessions[0].commands, [])


class CancelTests(ClientTestCase):
    @inlineCallbacks
    def test_cancelled_delivery_drops_the_connection(self):  # type: ignore[no-untyped-def]
        sink = SinkFactory(replies={"end": SILENT})
        port = yield startSink(self, sink)
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        settings = ClientSettings("client.example.com", TLSPolicy(), Timeouts())
        attempt = deliver(endpoint, "localhost", envelope(), io.BytesIO(MESSAGE), settings)
        while not any("DATA" in s.commands for s in sink.sessions):
            yield deferLater(reactor, 0.01, lambda: None)
        yield deferLater(reactor, 0.05, lambda: None)
        attempt.cancel()
        yield self.assertFailure(attempt, CancelledError)
        while not sink.sessions[0].closed:
            yield deferLater(reactor, 0.01, lambda: None)
        self.assertEqual(sink.messages, [])
