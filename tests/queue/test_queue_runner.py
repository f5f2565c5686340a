"""
The queue runner against a real name server and real SMTP servers on
loopback: what happens to queued mail, and what its sender hears.
"""

from __future__ import annotations

import email
import email.policy
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Generator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import dkim
from tests.support.dns import a, mx, startDNS
from tests.support.net import eventually
from tests.support.sink import SILENT, STALL, SinkFactory, SinkProtocol, startSink
from twisted.internet import defer, reactor, task, tcp
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from tmail.config.remotes import parseNameserver
from tmail.queue.clientsettings import Timeouts, TLSMode, TLSPolicy
from tmail.queue.dkim import DKIMKeyStore, DKIMSigner, generateKey
from tmail.queue.entry import Diagnostic, Envelope, Outcome, QueueEntry, Recipient, State
from tmail.queue.relaysettings import RelaySettings
from tmail.queue.runner import QueueRunner
from tmail.queue.schedule import RetrySchedule
from tmail.queue.smarthost import Smarthost
from tmail.queue.store import QueueStore

SENDER = "alice@sender.test"
MESSAGE = (
    b"From: Alice <alice@sender.test>\r\nTo: bob@ok.test\r\nSubject: hello\r\n"
    b"Message-ID: <hello.1@sender.test>\r\n\r\nHello, Bob.\r\n"
)
SHORT = Timeouts(connect=2.0, initial=2.0, mail=2.0, rcpt=2.0, dataInit=2.0, dataBlock=2.0)

ZONE = {
    "sender.test": [mx(10, "mx.sender.test")],
    "mx.sender.test": [a("127.0.0.1")],
    "ok.test": [mx(10, "mx.ok.test")],
    "mx.ok.test": [a("127.0.0.1")],
    # The preferred host refuses connections; the backup takes the mail.
    "fallback.test": [mx(10, "down.fallback.test"), mx(20, "up.fallback.test")],
    "down.fallback.test": [a("127.0.0.2")],
    "up.fallback.test": [a("127.0.0.1")],
    "null.test": [mx(0, "")],
    "broken.test": [mx(10, "mx.ok.test")],
}


def parse(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def reportFields(data: bytes) -> list[dict[str, str]]:
    """The per-message and per-recipient field groups of a DSN's status part."""
    report = parse(data)
    assert report.get_content_type() == "multipart/report"
    parts = [p for p in report.iter_parts() if p.get_content_type() == "message/delivery-status"]
    assert len(parts) == 1
    groups = []
    for group in parts[0].get_payload():
        groups.append({k.lower(): str(v) for k, v in group.items()})
    return groups


class SlowSink(SinkFactory):
    """A sink that greets after a pause and counts the connections open at once."""

    def __init__(self) -> None:
        super().__init__()
        self.open = 0
        self.most = 0

    def buildProtocol(self, addr: object) -> SinkProtocol:
        sink = self

        class Slow(SinkProtocol):
            def connectionMade(self) -> None:
                sink.open += 1
                sink.most = max(sink.most, sink.open)
                self.greeting = reactor.callLater(0.1, SinkProtocol.connectionMade, self)

            def connectionLost(self, reason: object = None) -> None:
                sink.open -= 1
                if self.greeting.active():
                    self.greeting.cancel()

        p = Slow(self)
        p.factory = self
        return p


class ThreadNotingSigner(DKIMSigner):
    """A signer that notes the thread each message is signed in."""

    def __init__(self, keys: DKIMKeyStore) -> None:
        super().__init__(keys)
        self.threads: list[threading.Thread] = []

    def signMessage(self, message: bytes, domain: str | None = None) -> bytes:
        self.threads.append(threading.current_thread())
        return super().signMessage(message, domain)


class ScanCountingStore(QueueStore):
    """A queue store that counts how often the whole queue is read."""

    scans = 0

    def scan(self) -> tuple[list[QueueEntry], dict[str, str]]:
        self.scans += 1
        return super().scan()


def clientConnectionsTo(port: int) -> list[tcp.Client]:
    """This process's TCP client connections to C{port} still in the reactor."""
    selectables = [*reactor.getReaders(), *reactor.getWriters()]  # type: ignore[attr-defined]
    return [s for s in selectables if isinstance(s, tcp.Client) and s.getPeer().port == port]


class RunnerTestCase(TestCase):
    """A queue, a name server serving L{ZONE} and a sink, for a runner to work with."""

    timeout = 20

    @defer.inlineCallbacks
    def setUp(self) -> Generator[Any, Any, None]:
        self.sink = SinkFactory()
        self.port = yield startSink(self, self.sink)
        self.dns = startDNS(self, ZONE, servfail=["broken.test"])
        self.store = QueueStore(Path(self.mktemp()) / "queue")
        self.store.create()

    def startRunner(
        self,
        signer: DKIMSigner | None = None,
        timeouts: Timeouts = SHORT,
        maxPerDomain: int = 4,
        rescanInterval: float = 0.2,
        smarthost: Smarthost | None = None,
        stopGrace: float = 5.0,
        tlsPolicies: dict[str, TLSPolicy] | None = None,
        **schedule: float,
    ) -> QueueRunner:
        schedule.setdefault("firstRetry", 0.2)
        schedule.setdefault("maxBackoff", 0.2)
        schedule.setdefault("delayWarning", 0.0)
        settings = RelaySettings(
            heloName="relay.example.org",
            nameservers=(f"127.0.0.1:{self.dns.port}",),
            port=self.port,
            dnsTimeouts=(1.0,),
            timeouts=timeouts,
            tls=TLSPolicy(TLSMode.NONE),
            tlsPolicies=tlsPolicies or {},
            schedule=RetrySchedule(**schedule),
            maxPerDomain=maxPerDomain,
            rescanInterval=rescanInterval,
            wakeupPoll=0.05,
            smarthost=smarthost,
            stopGrace=stopGrace,
        )
        runner = QueueRunner(self.store, settings, signer=signer)
        runner.startService()
        self.addCleanup(runner.stopService)
        return runner

    def enqueue(
        self, *recipients: str, sender: str = SENDER, message: bytes = MESSAGE
    ) -> QueueEntry:
        envelope = Envelope(sender, tuple(Recipient(r) for r in recipients))
        return self.store.enqueue(envelope, message, time.time())

    def waitFor(self, condition: Callable[[], bool], within: float = 10.0) -> Deferred[None]:
        return eventually(condition, within)

    def bounces(self) -> list[bytes]:
        """The messages the sink took from the null sender."""
        return [
            t.message
            for s in self.sink.sessions
            for t in s.transactions
            if t.message is not None and t.mailFrom.startswith("FROM:<>")
        ]


class RunnerTests(RunnerTestCase):
    @defer.inlineCallbacks
    def test_queued_mail_is_delivered_and_leaves_the_queue(self) -> Generator[Any, Any, None]:
        self.enqueue("bob@ok.test")
        self.startRunner()
        yield self.waitFor(lambda: not self.store.ids())
        self.assertEqual(self.sink.messages, [MESSAGE])
        transaction = self.sink.sessions[0].transactions[0]
        self.assertIn(f"<{SENDER}>", transaction.mailFrom)
        self.assertEqual(transaction.recipients, ["TO:<bob@ok.test>"])

    @defer.inlineCallbacks
    def test_mail_goes_to_the_backup_mx_when_the_first_refuses_connections(
        self,
    ) -> Generator[Any, Any, None]:
        self.enqueue("carol@fallback.test")
        self.startRunner()
        yield self.waitFor(lambda: not self.store.ids())
        self.assertEqual(self.sink.messages, [MESSAGE])

    @defer.inlineCallbacks
    def test_temporary_failure_is_retried_until_it_succeeds(self) -> Generator[Any, Any, None]:
        self.sink.replies["rcpt"] = "451 4.3.0 Try again later"
        entry = self.enqueue("bob@ok.test")
        self.startRunner()
        yield self.waitFor(lambda: self.store.load(entry.id).recipients[0].attempts >= 1)
        deferred = self.store.load(entry.id).recipients[0]
        self.assertEqual(deferred.state, State.DEFERRED)
        assert deferred.diagnostic is not None
        self.assertEqual(deferred.diagnostic.code, 451)
        del self.sink.replies["rcpt"]
        yield self.waitFor(lambda: not self.store.ids())
        self.assertEqual(self.sink.messages, [MESSAGE])
        self.assertEqual(self.bounces(), [])

    @defer.inlineCallbacks
    def test_permanent_failure_bounces_to_the_sender_and_spares_the_others(
        self,
    ) -> Generator[Any, Any, None]:
        self.sink.rcptReplies["bob@ok.test"] = "550 5.1.1 No such user"
        self.enqueue("bob@ok.test", "carol@ok.test")
        self.startRunner()
        yield self.waitFor(lambda: not self.store.ids() and len(self.bounces()) == 1)
        self.assertEqual(self.sink.messages[0], MESSAGE)
        bounce = self.bounces()[0]
        self.assertEqual(parse(bounce)["To"].addresses[0].addr_spec, SENDER)
        perMessage, *perRecipient = reportFields(bounce)
        self.assertEqual(perMessage["reporting-mta"], "dns; relay.example.org")
        self.assertEqual(len(perRecipient), 1)
        self.assertEqual(perRecipient[0]["final-recipient"], "rfc822; bob@ok.test")
        self.assertEqual(perRecipient[0]["action"], "failed")
        self.assertEqual(perRecipient[0]["status"], "5.1.1")
        bounceTransaction = next(
            t for s in self.sink.sessions for t in s.transactions if t.message == bounce
        )
        self.assertEqual(bounceTransaction.recipients, [f"TO:<{SENDER}>"])

    @defer.inlineCallbacks
    def test_mail_still_failing_when_it_expires_bounces(self) -> Generator[Any, Any, None]:
        self.sink.rcptReplies["bob@ok.test"] = "451 4.3.0 Try again later"
        self.enqueue("bob@ok.test")
        self.startRunner(lifetime=0.6)
        yield self.waitFor(lambda: not self.store.ids() and len(self.bounces()) == 1)
        perRecipient = reportFields(self.bounces()[0])[1]
        self.assertEqual(perRecipient["action"], "failed")
        self.assertTrue(perRecipient["status"].startswith("4."))
        tries = [c for s in self.sink.sessions for c in s.commands if c.startswith("RCPT TO:<bob@")]
        self.assertGreater(len(tries), 1)

    @defer.inlineCallbacks
    def test_domain_with_null_mx_bounces_at_once(self) -> Generator[Any, Any, None]:
        self.enqueue("dave@null.test")
        self.startRunner()
        yield self.waitFor(lambda: not self.store.ids() and len(self.bounces()) == 1)
        perRecipient = reportFields(self.bounces()[0])[1]
        self.assertEqual(perRecipient["status"], "5.1.10")
        self.assertEqual(self.sink.messages, self.bounces())

    @defer.inlineCallbacks
    def test_failed_bounce_is_never_bounced(self) -> Generator[Any, Any, None]:
        self.sink.rcptReplies["bob@ok.test"] = "550 5.1.1 No such user"
        self.enqueue("bob@ok.test", sender="")
        self.startRunner()
        yield self.waitFor(lambda: not self.store.ids())
        yield task.deferLater(reactor, 0.3, lambda: None)
        self.assertEqual(self.store.ids(), [])
        self.assertEqual(self.sink.messages, [])

    @defer.inlineCallbacks
    def test_held_mail_waits_until_released(self) -> Generator[Any, Any, None]:
        entry = self.enqueue("bob@ok.test")
        self.store.hold(entry.id)
        self.startRunner()
        yield task.deferLater(reactor, 0.5, lambda: None)
        self.assertEqual(self.sink.sessions, [])
        self.assertEqual(self.store.load(entry.id).recipients[0].attempts, 0)
        self.store.release(entry.id)
        yield self.waitFor(lambda: not self.store.ids())
        self.assertEqual(self.sink.messages, [MESSAGE])

    @defer.inlineCallbacks
    def test_delay_warning_goes_to_the_sender_once(self) -> Generator[Any, Any, None]:
        self.sink.rcptReplies["bob@ok.test"] = "451 4.3.0 Try again later"
        entry = self.enqueue("bob@ok.test")
        self.startRunner(delayWarning=0.3)
        yield self.waitFor(lambda: len(self.bounces()) == 1)
        perRecipient = reportFields(self.bounces()[0])[1]
        self.assertEqual(perRecipient["action"], "delayed")
        self.assertIn("will-retry-until", perRecipient)
        yield task.deferLater(reactor, 0.5, lambda: None)
        self.assertEqual(len(self.bounces()), 1)
        self.assertTrue(self.store.load(entry.id).recipients[0].delayNoticeSent)

    @defer.inlineCallbacks
    def test_notice_owed_when_the_server_stopped_is_sent_after_restart(
        self,
    ) -> Generator[Any, Any, None]:
        entry = self.enqueue("bob@ok.test")
        failure = Outcome.failed(Diagnostic("5.1.1", "No such user", 550, "mx.ok.test"))
        self.store.record(entry.id, {"bob@ok.test": failure}, time.time())
        self.startRunner()
        yield self.waitFor(lambda: not self.store.ids() and len(self.bounces()) == 1)
        self.assertEqual(reportFields(self.bounces()[0])[1]["status"], "5.1.1")
        self.assertEqual(self.sink.messages, self.bounces())

    @defer.inlineCallbacks
    def test_mail_deleted_during_its_attempt_stays_deleted(self) -> Generator[Any, Any, None]:
        self.sink.replies["greeting"] = "silent"
        entry = self.enqueue("bob@ok.test")
        self.startRunner(timeouts=Timeouts(connect=1.0, initial=0.5))
        yield self.waitFor(lambda: len(self.sink.sessions) == 1)
        self.store.delete(entry.id)
        del self.sink.replies["greeting"]
        yield task.deferLater(reactor, 1.0, lambda: None)
        self.assertEqual(self.store.ids(), [])
        self.assertEqual(self.sink.messages, [])

    @defer.inlineCallbacks
    def test_mail_of_a_domain_with_a_dkim_key_arrives_signed(self) -> Generator[Any, Any, None]:
        keys = DKIMKeyStore(Path(self.mktemp()))
        key = keys.add("sender.test", "s1", generateKey("ed25519"))
        self.enqueue("bob@ok.test")
        self.startRunner(signer=DKIMSigner(keys))
        yield self.waitFor(lambda: not self.store.ids())
        [signed] = self.sink.messages
        self.assertTrue(signed.startswith(b"DKIM-Signature: "))
        self.assertTrue(signed.endswith(MESSAGE))
        record = {f"{key.dnsName()}.".encode(): key.txtRecord().encode()}
        self.assertTrue(dkim.verify(signed, dnsfunc=lambda name, timeout=5: record.get(name)))

    @defer.inlineCallbacks
    def test_dkim_signing_runs_once_per_attempt_off_the_reactor_thread(
        self,
    ) -> Generator[Any, Any, None]:
        keys = DKIMKeyStore(Path(self.mktemp()))
        keys.add("sender.test", "s1", generateKey("rsa"))
        signer = ThreadNotingSigner(keys)
        self.enqueue("bob@ok.test", "carol@fallback.test")
        self.startRunner(signer=signer)
        yield self.waitFor(lambda: not self.store.ids())
        self.assertEqual(len(self.sink.messages), 2)
        self.assertEqual(len(signer.threads), 1)
        self.assertIsNot(signer.threads[0], threading.main_thread())

    @defer.inlineCallbacks
    def test_unusable_dkim_key_defers_the_mail(self) -> Generator[Any, Any, None]:
        keys = DKIMKeyStore(Path(self.mktemp()))
        keys.add("sender.test", "s1", generateKey("ed25519"))
        os.unlink(keys.keyPath("sender.test", "s1"))
        entry = self.enqueue("bob@ok.test")
        self.startRunner(signer=DKIMSigner(keys))
        yield self.waitFor(lambda: self.store.load(entry.id).recipients[0].attempts >= 1)
        recipient = self.store.load(entry.id).recipients[0]
        self.assertEqual(recipient.state, State.DEFERRED)
        assert recipient.diagnostic is not None
        self.assertTrue(recipient.diagnostic.status.startswith("4."))
        self.assertEqual(self.sink.sessions, [])

    @defer.inlineCallbacks
    def test_connections_to_one_domain_are_limited(self) -> Generator[Any, Any, None]:
        self.sink = SlowSink()
        self.port = yield startSink(self, self.sink)
        for n in range(5):
            self.enqueue(f"user{n}@ok.test")
        self.startRunner(maxPerDomain=2)
        yield self.waitFor(lambda: not self.store.ids())
        self.assertEqual(len(self.sink.messages), 5)
        self.assertEqual(self.sink.most, 2)

    @defer.inlineCallbacks
    def test_mail_in_flight_when_the_runner_is_killed_is_sent_after_restart(
        self,
    ) -> Generator[Any, Any, None]:
        self.sink.replies["end"] = SILENT
        entry = self.enqueue("bob@ok.test")
        tests = Path(__file__).resolve().parents[1]
        env = dict(
            os.environ, PYTHONPATH=os.pathsep.join([str(tests), os.environ.get("PYTHONPATH", "")])
        )
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "support.runnerworker",
                str(self.store.path),
                str(self.dns.port),
                str(self.port),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
        )
        self.addCleanup(worker.wait)
        self.addCleanup(lambda: worker.poll() is None and worker.kill())
        yield self.waitFor(
            lambda: any("DATA" in s.commands for s in self.sink.sessions), within=15.0
        )
        yield task.deferLater(reactor, 0.1, lambda: None)
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        self.assertEqual(self.sink.messages, [])
        self.assertEqual(self.store.load(entry.id).recipients[0].state, State.PENDING)
        del self.sink.replies["end"]
        self.startRunner()
        yield self.waitFor(lambda: not self.store.ids())
        self.assertEqual(self.sink.messages, [MESSAGE])

    @defer.inlineCallbacks
    def test_failing_name_server_defers_without_a_bounce(self) -> Generator[Any, Any, None]:
        entry = self.enqueue("erin@broken.test")
        self.startRunner()
        yield self.waitFor(lambda: self.store.load(entry.id).recipients[0].attempts >= 1)
        recipient = self.store.load(entry.id).recipients[0]
        self.assertEqual(recipient.state, State.DEFERRED)
        assert recipient.diagnostic is not None
        self.assertEqual(recipient.diagnostic.status, "4.4.3")
        self.assertEqual(self.sink.sessions, [])

    @defer.inlineCallbacks
    def test_one_domain_bouncing_does_not_hold_back_another(self) -> Generator[Any, Any, None]:
        self.enqueue("bob@ok.test", "dave@null.test")
        self.startRunner()
        yield self.waitFor(lambda: not self.store.ids() and len(self.bounces()) == 1)
        self.assertEqual(self.sink.messages[0], MESSAGE)
        perRecipient = reportFields(self.bounces()[0])[1:]
        self.assertEqual([r["final-recipient"] for r in perRecipient], ["rfc822; dave@null.test"])

    @defer.inlineCallbacks
    def test_flush_sends_deferred_mail_at_once(self) -> Generator[Any, Any, None]:
        self.sink.replies["rcpt"] = "451 4.3.0 Try again later"
        entry = self.enqueue("bob@ok.test")
        self.startRunner(rescanInterval=60.0, firstRetry=60.0, maxBackoff=60.0)
        yield self.waitFor(lambda: self.store.load(entry.id).recipients[0].attempts >= 1)
        del self.sink.replies["rcpt"]
        QueueStore(self.store.path).flush()
        yield self.waitFor(lambda: not self.store.ids(), within=3.0)
        self.assertEqual(self.sink.messages, [MESSAGE])

    @defer.inlineCallbacks
    def assertStopCutsShort(self, message: bytes, timeouts: Timeouts) -> Generator[Any, Any, None]:
        """
        Stopping the runner during an attempt that would take minutes ends
        it after the grace period, drops its connection and records nothing;
        the next runner sends the mail.
        """
        entry = self.enqueue("bob@ok.test", message=message)
        runner = self.startRunner(timeouts=timeouts, stopGrace=0.5)
        yield self.waitFor(lambda: any("DATA" in s.commands for s in self.sink.sessions))
        started = time.monotonic()
        yield runner.stopService()
        self.assertLess(time.monotonic() - started, 0.5 + 1.0)
        self.assertEqual(clientConnectionsTo(self.port), [])
        recipient = self.store.load(entry.id).recipients[0]
        self.assertEqual((recipient.state, recipient.attempts), (State.PENDING, 0))
        self.sink.replies.clear()
        self.startRunner()
        yield self.waitFor(lambda: not self.store.ids())
        self.assertEqual(self.sink.messages, [message])

    def test_stopping_cancels_an_attempt_waiting_for_a_reply_to_data(self) -> Any:
        self.sink.replies["data"] = SILENT
        return self.assertStopCutsShort(MESSAGE, Timeouts(connect=2.0))

    def test_stopping_cancels_an_attempt_whose_message_the_server_stopped_reading(
        self,
    ) -> Any:
        self.sink.replies["data"] = STALL
        message = MESSAGE + (b"x" * 998 + b"\r\n") * 8 * 1024
        return self.assertStopCutsShort(message, Timeouts(connect=2.0))


class ConnectionReuseTests(RunnerTestCase):
    @defer.inlineCallbacks
    def test_mail_for_one_domain_shares_the_connections_it_opens(
        self,
    ) -> Generator[Any, Any, None]:
        refused = {f"user{n}@ok.test" for n in range(0, 20, 5)}
        for address in refused:
            self.sink.rcptReplies[address] = "550 5.1.1 No such user"
        for n in range(20):
            # Refused mail comes from the null sender: no bounce joins the traffic.
            address = f"user{n}@ok.test"
            self.enqueue(address, sender="" if address in refused else SENDER)
        self.startRunner(maxPerDomain=2)
        yield self.waitFor(lambda: not self.store.ids())
        sessions = self.sink.sessions
        self.assertLessEqual(len(sessions), 2)
        delivered = sorted(
            r
            for s in sessions
            for t in s.transactions
            if t.message is not None
            for r in t.recipients
        )
        expected = sorted(f"TO:<user{n}@ok.test>" for n in range(20) if n % 5)
        self.assertEqual(delivered, expected)
        for session in sessions:
            self.assertGreater(len(session.transactions), 1)
            verbs = [c.split(" ")[0] for c in session.commands]
            mails = [n for n, verb in enumerate(verbs) if verb == "MAIL"]
            self.assertEqual([verbs[n - 1] for n in mails[1:]], ["RSET"] * (len(mails) - 1))

    @defer.inlineCallbacks
    def test_domains_with_other_tls_policies_do_not_share_a_connection(
        self,
    ) -> Generator[Any, Any, None]:
        # ok.test and sender.test have the same MX address.
        runner = self.startRunner(tlsPolicies={"sender.test": TLSPolicy(TLSMode.OPPORTUNISTIC)})
        for n, address in enumerate(["bob@ok.test", "carol@ok.test", "dave@sender.test"]):
            runner.attemptSoon(self.enqueue(address, sender="").id)
            yield self.waitFor(lambda n=n: len(self.sink.messages) == n + 1)
        self.assertEqual([len(s.transactions) for s in self.sink.sessions], [2, 1])
        self.assertEqual(
            self.sink.sessions[1].transactions[0].recipients, ["TO:<dave@sender.test>"]
        )

    @defer.inlineCallbacks
    def test_stopping_closes_the_idle_connections(self) -> Generator[Any, Any, None]:
        self.enqueue("bob@ok.test")
        runner = self.startRunner()
        yield self.waitFor(lambda: not self.store.ids())
        self.assertEqual(len(runner.connections), 1)
        self.assertFalse(self.sink.sessions[0].closed)
        yield runner.stopService()
        self.assertEqual(len(runner.connections), 0)
        self.assertEqual(clientConnectionsTo(self.port), [])
        yield self.waitFor(lambda: self.sink.sessions[0].closed)
        self.assertEqual(self.sink.sessions[0].commands[-1], "QUIT")


class ScanTests(RunnerTestCase):
    @defer.inlineCallbacks
    def test_queue_is_not_read_whole_for_every_finished_attempt(
        self,
    ) -> Generator[Any, Any, None]:
        self.store = ScanCountingStore(self.store.path)
        deferred = [f"user{n}@ok.test" for n in range(0, 50, 10)]
        for address in deferred:
            self.sink.rcptReplies[address] = "451 4.3.0 Try again later"
        runner = self.startRunner(rescanInterval=60.0)
        yield self.waitFor(lambda: self.store.scans == 1)
        entries = [self.enqueue(f"user{n}@ok.test") for n in range(50)]
        for entry in entries:
            runner.attemptSoon(entry.id)
        yield self.waitFor(lambda: len(self.store.ids()) == len(deferred))
        yield self.waitFor(
            lambda: all(self.store.load(i).recipients[0].attempts >= 1 for i in self.store.ids())
        )
        self.sink.rcptReplies.clear()
        yield self.waitFor(lambda: not self.store.ids(), within=5.0)
        self.assertEqual(len(self.sink.messages), 50)
        self.assertLessEqual(self.store.scans, 3)


class NameserverTests(TestCase):
    def test_name_servers_are_written_as_address_and_optional_port(self) -> None:
        self.assertEqual(parseNameserver("127.0.0.1:5353"), ("127.0.0.1", 5353))
        self.assertEqual(parseNameserver("192.0.2.53"), ("192.0.2.53", 53))
        self.assertEqual(parseNameserver("[::1]:5353"), ("::1", 5353))
        self.assertEqual(parseNameserver("::1"), ("::1", 53))
        for bad in ("", "host:port", "1.2.3.4:0", "[::1]x", "1.2.3.4:99999"):
            self.assertRaises(ValueError, parseNameserver, bad)
