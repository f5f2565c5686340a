"""
SMTP policy hooks (L{tmail.smtp.policy}) as a client sees them, over a
C{StringTransport} session: each stage's accept, reject, tempfail and added
header fields, policies that answer later (pipelined replies stay in
order), several policies in order, and policies that break.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from test_smtp_session import (
    MESSAGE,
    FakeInsertablePending,
    FakeRealm,
    Session,
    SessionTestCase,
    makeFactory,
    transaction,
)
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from support.realm import ALICE, BOB, makeRealm
from tmail.auth.throttle import AuthThrottle
from tmail.config.schema import AuthSettings, LMTPSettings, SMTPSettings
from tmail.smtp.commands import Reply
from tmail.smtp.factory import SMTPFactory
from tmail.smtp.lmtp import LMTPFactory
from tmail.smtp.policy import (
    Answer,
    Decision,
    Policy,
    PolicyContext,
    accept,
    reject,
    tempfail,
)


class Scripted(Policy):
    """
    Answers each stage as told (a decision, C{None}, or a function of the
    context), and remembers every context it was shown.
    """

    def __init__(self, **answers: Any) -> None:
        self.answers = answers
        self.seen: list[PolicyContext] = []

    def answer(self, context: PolicyContext) -> Answer:
        self.seen.append(context)
        answer = self.answers.get(context.stage)
        return answer(context) if callable(answer) else answer

    def connect(self, context: PolicyContext) -> Answer:
        return self.answer(context)

    def helo(self, context: PolicyContext) -> Answer:
        return self.answer(context)

    def mail(self, context: PolicyContext) -> Answer:
        return self.answer(context)

    def rcpt(self, context: PolicyContext) -> Answer:
        return self.answer(context)

    def data(self, context: PolicyContext) -> Answer:
        return self.answer(context)

    def stages(self) -> list[str]:
        return [context.stage for context in self.seen]


class PolicyTestCase(SessionTestCase):
    """A session whose factory runs C{self.policies}."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.realm = FakeRealm()
        self.policies: list[Policy] = []
        self.factory = makeFactory(
            self.realm, self.clock, submission=self.submission, policies=self.policies
        )

    def start(self, *policies: Policy) -> Session:
        """Connect with C{policies} in force."""
        self.policies[:] = policies
        self.factory.policies = tuple(policies)
        self.session = self.connect()
        return self.session

    def send(self, *recipients: bytes, message: bytes = MESSAGE) -> list[bytes]:
        """EHLO, a transaction to C{recipients}, the message; the replies to DATA's end."""
        self.ehlo()
        transaction(self.session, *recipients)
        assert self.session.command(b"DATA").startswith(b"354 ")
        return self.session.send(message + b".\r\n")

    def stored(self, user: str) -> bytes:
        [message] = self.realm.inbox(user).stored
        return message


class ConnectTests(PolicyTestCase):
    def test_rejected_connection_gets_554_and_only_quit(self) -> None:
        """A refused client is greeted with 554 and its text, then served nothing but QUIT."""
        session = self.start(Scripted(connect=reject("Listed at dnsbl.example")))
        self.assertEqual(session.greeting, [b"554 5.7.1 Listed at dnsbl.example"])
        self.assertFalse(session.closed)
        self.assertEqual(
            session.command(b"EHLO client.example.org"),
            b"503 5.5.1 Error: connection refused; send QUIT",
        )
        self.assertEqual(session.command(b"MAIL FROM:<s@remote.example>")[:4], b"503 ")
        self.assertEqual(session.command(b"QUIT"), b"221 2.0.0 Bye")
        self.assertTrue(session.closed)

    def test_tempfailed_connection_gets_421_and_is_closed(self) -> None:
        session = self.start(Scripted(connect=tempfail("Busy, try later")))
        self.assertEqual(session.greeting, [b"421 4.7.1 Busy, try later"])
        self.assertTrue(session.closed)

    def test_connect_sees_the_client_address(self) -> None:
        policy = Scripted()
        self.start(policy)
        [context] = policy.seen
        self.assertEqual(
            (context.stage, context.clientAddress, context.helo, context.sender),
            ("connect", "192.0.2.7", None, None),
        )
        self.assertEqual(context.hostname, "mx.example.test")
        self.assertFalse(context.submission)

    def test_a_client_talking_before_a_late_greeting_is_answered_after_it(self) -> None:
        """
        With C{early_talkers = "allow"}, commands sent while the connect
        check runs wait for the greeting.
        """
        self.factory = makeFactory(
            self.realm, self.clock, policies=self.policies, early_talkers="allow"
        )
        pending: Deferred[Decision | None] = Deferred()
        session = self.start(Scripted(connect=lambda context: pending))
        self.assertEqual(session.greeting, [])
        self.assertEqual(session.send(b"EHLO early.example.org\r\nNOOP\r\n"), [])
        pending.callback(None)
        replies = session.take()
        self.assertEqual(replies[0], b"220 mx.example.test ESMTP tmail")
        self.assertEqual(replies[1], b"250-mx.example.test")
        self.assertEqual(replies[-1], b"250 2.0.0 Ok")

    def test_a_client_talking_before_a_late_greeting_is_refused_by_default(self) -> None:
        """
        The MX answers a client that talks while the connect check runs
        with C{521 5.5.1} and hangs up; the check's late answer sends
        nothing more.
        """
        pending: Deferred[Decision | None] = Deferred()
        session = self.start(Scripted(connect=lambda context: pending))
        self.assertEqual(session.send(b"EHLO early.example.org\r\n"), [b"521 5.5.1 Protocol error"])
        self.assertTrue(session.closed)
        pending.callback(None)
        self.assertEqual(session.take(), [])


class HeloTests(PolicyTestCase):
    def test_rejected_helo_must_be_sent_again(self) -> None:
        """A refused HELO leaves the client ungreeted; a later accepted one works."""
        names = iter([reject("Your HELO is forged", 550, "5.7.1"), None])
        session = self.start(Scripted(helo=lambda context: next(names)))
        self.assertEqual(session.command(b"EHLO localhost"), b"550 5.7.1 Your HELO is forged")
        self.assertEqual(
            session.command(b"MAIL FROM:<s@remote.example>"),
            b"503 5.5.1 Error: send HELO/EHLO first",
        )
        self.assertEqual(session.command(b"HELO client.example.org"), b"250 mx.example.test")
        self.assertEqual(session.command(b"MAIL FROM:<s@remote.example>"), b"250 2.1.0 Ok")

    def test_helo_sees_the_checked_name(self) -> None:
        policy = Scripted()
        session = self.start(policy)
        session.command(b"EHLO client.example.org")
        session.command(b"EHLO bad;name")
        self.assertEqual([c.helo for c in policy.seen[1:]], ["client.example.org", "invalid"])


class MailAndRcptTests(PolicyTestCase):
    def test_rejected_and_tempfailed_senders(self) -> None:
        """The policy's code, status and text are the reply; the next MAIL starts afresh."""
        verdicts = {
            "spammer@remote.example": reject("Sender blocked", 553, "5.7.1"),
            "slow@remote.example": tempfail("Greylisted, try again in 5 minutes", 451, "4.7.1"),
        }
        self.start(Scripted(mail=lambda context: verdicts.get(context.sender)))
        self.ehlo()
        s = self.session
        self.assertEqual(
            s.command(b"MAIL FROM:<spammer@remote.example>"), b"553 5.7.1 Sender blocked"
        )
        self.assertEqual(
            s.command(b"MAIL FROM:<slow@remote.example>"),
            b"451 4.7.1 Greylisted, try again in 5 minutes",
        )
        self.assertEqual(s.command(b"RCPT TO:<alice@example.test>")[:4], b"503 ")
        self.assertEqual(s.command(b"MAIL FROM:<s@remote.example>"), b"250 2.1.0 Ok")

    def test_mail_sees_the_envelope_sender_and_its_parameters(self) -> None:
        policy = Scripted()
        self.start(policy)
        self.ehlo()
        self.session.command(b"MAIL FROM:<s@remote.example> SIZE=1000 BODY=8BITMIME")
        context = policy.seen[-1]
        self.assertEqual((context.stage, context.sender), ("mail", "s@remote.example"))
        assert context.mail is not None
        self.assertEqual((context.mail.size, context.mail.body), (1000, "8BITMIME"))
        self.assertEqual(context.helo, "client.example.org")

    def test_a_recipient_refused_by_policy_does_not_get_the_message(self) -> None:
        """Each RCPT is decided alone; the others still get the message."""
        policy = Scripted(
            rcpt=lambda context: (
                reject("No mail for bob from you")
                if context.recipient == "bob@example.test"
                else None
            )
        )
        self.start(policy)
        self.ehlo()
        transaction(self.session, b"alice@example.test")
        self.assertEqual(
            self.session.command(b"RCPT TO:<bob@example.test>"),
            b"550 5.7.1 No mail for bob from you",
        )
        self.session.command(b"DATA")
        self.assertTrue(self.session.send(MESSAGE + b".\r\n")[0].startswith(b"250 "))
        self.assertEqual(len(self.realm.inbox("alice").stored), 1)
        self.assertEqual(self.realm.inbox("bob").stored, [])
        bob = policy.seen[-2]
        self.assertEqual(
            (bob.recipient, bob.recipients), ("bob@example.test", ("alice@example.test",))
        )
        self.assertEqual(policy.seen[-1].recipients, ("alice@example.test",))

    def test_a_recipients_header_fields_go_only_into_its_copies(self) -> None:
        self.start(Scripted(rcpt=lambda context: accept(("X-Rule", f"for {context.recipient}"))))
        self.send(b"alice@example.test", b"bob@example.test")
        self.assertIn(b"X-Rule: for alice@example.test\r\n", self.stored("alice"))
        self.assertNotIn(b"bob", self.stored("alice").split(b"Received:")[0])
        self.assertIn(b"X-Rule: for bob@example.test\r\n", self.stored("bob"))


class EndOfDataTests(PolicyTestCase):
    def test_rejected_message_is_refused_and_stored_nowhere(self) -> None:
        self.start(Scripted(data=reject("Message looks like spam", 554, "5.7.1")))
        self.assertEqual(
            self.send(b"alice@example.test", b"bob@example.test"),
            [b"554 5.7.1 Message looks like spam"],
        )
        self.assertEqual(self.realm.inbox("alice").stored, [])
        self.assertEqual(
            [p.state for p in self.realm.inbox("alice").pending + self.realm.inbox("bob").pending],
            ["aborted", "aborted"],
        )
        self.assertEqual(self.session.command(b"NOOP"), b"250 2.0.0 Ok")

    def test_tempfailed_message_is_refused_for_now(self) -> None:
        self.start(Scripted(data=tempfail("DKIM key lookup failed", 451, "4.7.5")))
        self.assertEqual(self.send(b"alice@example.test"), [b"451 4.7.5 DKIM key lookup failed"])
        self.assertEqual(self.realm.inbox("alice").stored, [])

    def test_the_message_end_sees_envelope_header_fields_and_size(self) -> None:
        policy = Scripted()
        self.start(policy)
        replies = self.send(b"alice@example.test", b"team@example.test")
        queueID = replies[0].rsplit(b" ", 1)[1].decode()
        context = policy.seen[-1]
        self.assertEqual(context.stage, "data")
        self.assertEqual(context.sender, "s@remote.example")
        self.assertEqual(context.recipients, ("alice@example.test", "team@example.test"))
        self.assertEqual(context.queueID, queueID)
        self.assertEqual(context.headers, (("Subject", b" hello"),))
        self.assertEqual(context.header("subject"), ["hello"])
        self.assertTrue(context.headersComplete)
        self.assertEqual(context.size, len(MESSAGE) - 1)  # one dot unstuffed

    def test_header_fields_of_every_stage_go_above_received_in_order(self) -> None:
        """
        Return-Path and Delivered-To stay first; then the fields of connect,
        HELO, MAIL, RCPT and the message's end; then Received.
        """
        self.start(
            Scripted(
                connect=accept(("X-Connect", "1")),
                helo=accept(("X-Helo", "2")),
                mail=accept(("X-Mail", "3")),
                rcpt=accept(("X-Rcpt", "4")),
                data=accept(("Authentication-Results", "mx.example.test;\r\n\tdkim=pass")),
            )
        )
        self.send(b"alice@example.test")
        stored = self.stored("alice")
        lines = stored.split(b"\r\n")
        self.assertEqual(
            [line.split(b":")[0] for line in lines[:9]],
            [
                b"Return-Path",
                b"Delivered-To",
                b"X-Connect",
                b"X-Helo",
                b"X-Mail",
                b"X-Rcpt",
                b"Authentication-Results",
                b"\tdkim=pass",
                b"Received",
            ],
        )
        self.assertTrue(stored.endswith(b"Subject: hello\r\n\r\nbody line\r\n.leading dot\r\n"))

    def test_connect_fields_go_into_every_message_of_the_session(self) -> None:
        self.start(Scripted(connect=accept(("X-Client-Checked", "yes"))))
        self.send(b"alice@example.test")
        transaction(self.session, b"alice@example.test")
        self.session.command(b"DATA")
        self.session.send(MESSAGE + b".\r\n")
        first, second = self.realm.inbox("alice").stored
        self.assertIn(b"X-Client-Checked: yes\r\n", first)
        self.assertIn(b"X-Client-Checked: yes\r\n", second)

    def test_late_fields_reach_a_store_that_cannot_insert(self) -> None:
        """
        A store without IInsertablePendingMessage is handed the copy only at
        the end, so a large message still gets the fields in place.
        """
        self.realm.inbox("alice").insertable = False
        self.start(Scripted(data=accept(("X-Verdict", "clean"))))
        big = b"Subject: big\r\n\r\n" + b"y" * 100 + b"\r\n" + (b"z" * 998 + b"\r\n") * 200
        self.assertTrue(self.send(b"alice@example.test", message=big)[0].startswith(b"250 "))
        [pending] = self.realm.inbox("alice").pending
        self.assertEqual(len(pending.data), 1)
        stored = self.stored("alice")
        self.assertIn(b"X-Verdict: clean\r\nReceived: ", stored)
        self.assertTrue(stored.endswith(big))

    def test_late_fields_reach_a_store_that_inserts(self) -> None:
        """The content went to the store before the end; the store inserts the fields."""
        self.start(Scripted(data=accept(("X-Verdict", "clean"))))
        big = b"Subject: big\r\n\r\n" + (b"z" * 998 + b"\r\n") * 200
        self.send(b"alice@example.test", message=big)
        [pending] = self.realm.inbox("alice").pending
        assert isinstance(pending, FakeInsertablePending)
        self.assertEqual(pending.inserts, 1)
        stored = self.stored("alice")
        self.assertIn(b"X-Verdict: clean\r\nReceived: ", stored)
        self.assertTrue(stored.endswith(big))

    def test_a_policy_can_hash_the_content_as_it_streams(self) -> None:
        """C{beginData}'s function sees exactly the content stored, e.g. for a DKIM body hash."""

        class BodyHash(Policy):
            def beginData(self, context: PolicyContext) -> Callable[[bytes], None]:
                self.digest = hashlib.sha256()
                return self.digest.update

            def data(self, context: PolicyContext) -> Answer:
                return accept(("X-Content-SHA256", self.digest.hexdigest()))

        self.start(BodyHash())
        self.send(b"alice@example.test")
        stored = self.stored("alice")
        content = stored.split(b"\r\n\tfor <alice@example.test>; ", 1)[1].split(b"\r\n", 1)[1]
        self.assertIn(
            b"X-Content-SHA256: " + hashlib.sha256(content).hexdigest().encode() + b"\r\n", stored
        )

    def test_bdat_message_is_decided_at_its_last_chunk(self) -> None:
        self.start(Scripted(data=reject("No thanks")))
        self.ehlo()
        transaction(self.session, b"alice@example.test")
        self.assertEqual(
            self.session.send(b"BDAT 12\r\nSubject: x\r\nBDAT 6 LAST\r\n\r\nbody"),
            [b"250 2.0.0 12 octets received", b"550 5.7.1 No thanks"],
        )
        self.assertEqual(self.realm.inbox("alice").stored, [])

    def test_client_gone_while_the_policy_decides_stores_nothing(self) -> None:
        pending: Deferred[Decision | None] = Deferred()
        self.start(Scripted(data=lambda context: pending))
        self.assertEqual(self.send(b"alice@example.test"), [])
        self.session.protocol.connectionLost(None)
        pending.callback(None)
        self.assertEqual(self.realm.inbox("alice").stored, [])
        self.assertEqual([p.state for p in self.realm.inbox("alice").pending], ["aborted"])


class OrderingTests(PolicyTestCase):
    def test_late_answers_keep_pipelined_replies_in_order(self) -> None:
        """
        Every stage answers a second later (a DNS lookup): a pipelined
        transaction gets its replies in order, each only once decided.
        """
        clock = self.clock

        def later(decision: Decision | None) -> Callable[[PolicyContext], Deferred[Any]]:
            def answer(context: PolicyContext) -> Deferred[Any]:
                d: Deferred[Any] = Deferred()
                clock.callLater(1, d.callback, decision)
                return d

            return answer

        self.start(
            Scripted(
                helo=later(None),
                mail=later(None),
                rcpt=lambda context: later(
                    reject("Unwanted") if context.recipient == "bob@example.test" else None
                )(context),
                data=later(accept(("X-Checked", "late"))),
            )
        )
        self.assertEqual(
            self.session.send(
                b"EHLO client.example.org\r\nMAIL FROM:<s@remote.example>\r\n"
                b"RCPT TO:<alice@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n"
                + MESSAGE
                + b".\r\nNOOP\r\n"
            ),
            [],
        )
        replies: list[bytes] = []
        for _ in range(6):
            clock.advance(1)
            replies += self.session.take()
        self.assertEqual(
            [r[:3] for r in replies if not r.startswith(b"250-")],
            [b"250", b"250", b"250", b"550", b"354", b"250", b"250"],
        )
        self.assertIn(b"X-Checked: late\r\n", self.stored("alice"))

    def test_policies_run_in_order_and_the_first_refusal_wins(self) -> None:
        """Fields add up across policies; after a refusal the next policies are not asked."""
        first = Scripted(mail=accept(("X-First", "1")), rcpt=accept(("X-First", "r")))
        second = Scripted(
            mail=accept(("X-Second", "2")),
            rcpt=lambda context: (
                reject("Second says no") if context.recipient == "bob@example.test" else None
            ),
        )
        third = Scripted()
        self.start(first, second, third)
        self.ehlo()
        transaction(self.session)
        self.assertEqual(
            self.session.command(b"RCPT TO:<bob@example.test>"), b"550 5.7.1 Second says no"
        )
        self.assertEqual(third.stages(), ["connect", "helo", "mail"])
        self.assertEqual(self.session.command(b"RCPT TO:<alice@example.test>"), b"250 2.1.5 Ok")
        self.session.command(b"DATA")
        self.session.send(MESSAGE + b".\r\n")
        self.assertIn(
            b"X-First: 1\r\nX-Second: 2\r\nX-First: r\r\nReceived: ", self.stored("alice")
        )


class BrokenPolicyTests(PolicyTestCase):
    def test_a_policy_that_raises_is_a_temporary_refusal(self) -> None:
        """Mail is never accepted unchecked: 451 4.3.0, and the error is logged."""

        def broken(context: PolicyContext) -> Answer:
            raise ZeroDivisionError("secret detail")

        self.start(Scripted(rcpt=broken))
        self.ehlo()
        transaction(self.session)
        self.assertEqual(
            self.session.command(b"RCPT TO:<alice@example.test>"),
            b"451 4.3.0 Internal error; try again later",
        )
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_a_failed_deferred_or_a_wrong_answer_is_a_temporary_refusal(self) -> None:
        failing: Deferred[Decision | None] = Deferred()
        self.start(Scripted(mail=lambda context: failing, data="yes"))
        self.ehlo()
        self.session.send(b"MAIL FROM:<s@remote.example>\r\n")
        failing.errback(RuntimeError("lookup failed"))
        self.assertEqual(self.session.take(), [b"451 4.3.0 Internal error; try again later"])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.start(Scripted(data="yes"))
        self.assertEqual(
            self.send(b"alice@example.test"), [b"451 4.3.0 Internal error; try again later"]
        )
        self.assertEqual(self.realm.inbox("alice").stored, [])
        self.assertEqual(len(self.flushLoggedErrors(TypeError)), 1)

    def test_a_connect_check_that_breaks_is_421(self) -> None:
        def broken(context: PolicyContext) -> Answer:
            raise ValueError("oops")

        session = self.start(Scripted(connect=broken))
        self.assertEqual(session.greeting, [b"421 4.3.0 Internal error; try again later"])
        self.assertTrue(session.closed)
        self.flushLoggedErrors(ValueError)


class DecisionTests(SessionTestCase):
    def test_decisions_refuse_what_the_server_could_not_send(self) -> None:
        """A refusal needs a matching 4xx/5xx code and status; fields must be one header field."""
        for bad in (
            lambda: reject("x", 450),
            lambda: tempfail("x", 550, "5.7.1"),
            lambda: reject("two\r\nlines"),
            lambda: reject("x", 550, "4.7.1"),
            lambda: Decision(Reply(250, "2.0.0", "Ok")),
            lambda: accept(("Bad Name", "x")),
            lambda: accept(("X-Injected", "a\r\nBcc: victim@example.org")),
            lambda: accept(("X-Bare", "a\nb")),
        ):
            self.assertRaises(ValueError, bad)
        self.assertEqual(
            accept(("X-Folded", "a\r\n b"), ("X-Utf8", "Grüße")).encodedHeaders(),
            "X-Folded: a\r\n b\r\nX-Utf8: Grüße\r\n".encode(),
        )


class SharedCopyTests(SynchronousTestCase):
    """
    Policy fields with the real Maildir realm, where a message for several
    users is one file linked into each INBOX.
    """

    def setUp(self) -> None:
        self.fixture = makeRealm(Path(self.mktemp()))
        self.clock = Clock()

    def deliver(self, policy: Policy, message: bytes) -> None:
        factory = SMTPFactory(
            self.fixture.realm,
            SMTPSettings(greet_pause=0),
            hostname="mx.example.test",
            submission=False,
            portal=None,
            tlsContextFactory=None,
            throttle=AuthThrottle(AuthSettings(), self.clock),
            policies=[policy],
        )
        factory.runInThread = maybeDeferred  # type: ignore[method-assign]
        session = Session(factory, self.clock)
        self.addCleanup(session.protocol.connectionLost, None)
        session.command(b"EHLO client.example.org")
        transaction(session, ALICE.encode(), BOB.encode())
        session.command(b"DATA")
        self.assertTrue(session.send(message + b".\r\n")[0].startswith(b"250 "))

    def copies(self) -> list[tuple[bytes, int]]:
        """Each user's one message, with the inode of its file."""
        found = []
        for user in (ALICE, BOB):
            folder = self.fixture.store(user).getFolder("INBOX")
            [info] = folder.messages()
            with folder.openMessage(info.uid) as f:
                found.append((f.read(), os.fstat(f.fileno()).st_ino))
        return found

    def test_late_fields_are_in_the_shared_file(self) -> None:
        """A large message is on disk before the verdict; the linked file has the field."""
        big = b"Subject: big\r\n\r\n" + (b"z" * 998 + b"\r\n") * 200
        self.deliver(Scripted(data=accept(("X-Verdict", "clean"))), big)
        (alice, inode), (_, other) = self.copies()
        self.assertEqual(inode, other)
        self.assertIn(b"X-Verdict: clean\r\nReceived: ", alice)
        self.assertTrue(alice.endswith(big))

    def test_recipients_with_their_own_fields_get_their_own_copies(self) -> None:
        """Fields for one recipient must not reach the other: no shared file then."""
        policy = Scripted(rcpt=lambda context: accept(("X-For", context.recipient or "")))
        self.deliver(policy, MESSAGE)
        (alice, inode), (bob, other) = self.copies()
        self.assertNotEqual(inode, other)
        self.assertIn(b"X-For: alice@example.test\r\nReceived: ", alice)
        self.assertNotIn(b"bob@", alice.split(b"\r\n\r\n")[0])
        self.assertIn(b"X-For: bob@example.test\r\nReceived: ", bob)


class LMTPPolicyTests(SynchronousTestCase):
    def test_lmtp_refusal_at_the_end_is_every_recipients_reply(self) -> None:
        """LMTP answers each recipient; a policy's refusal of the message is each one's answer."""
        clock = Clock()
        realm = FakeRealm()
        factory = LMTPFactory(
            realm,  # type: ignore[arg-type]
            LMTPSettings(),
            hostname="mx.example.test",
            throttle=AuthThrottle(AuthSettings(), clock),
            policies=[Scripted(data=reject("Virus found", 554, "5.7.1"))],
        )
        factory.runInThread = maybeDeferred  # type: ignore[method-assign]
        session = Session(factory, clock)
        self.addCleanup(session.protocol.connectionLost, None)
        session.command(b"LHLO mta.example.test")
        transaction(session, b"alice@example.test", b"bob@example.test")
        session.command(b"DATA")
        self.assertEqual(
            session.send(MESSAGE + b".\r\n"),
            [
                b"554 5.7.1 <alice@example.test> Virus found",
                b"554 5.7.1 <bob@example.test> Virus found",
            ],
        )
        self.assertEqual(realm.inbox("alice").stored, [])


class LateConnectTests(PolicyTestCase):
    def test_a_client_gone_before_the_connect_check_answers_is_not_greeted(self) -> None:
        """No greeting and no session timer for a connection that is already closed."""
        pending: Deferred[Decision | None] = Deferred()
        session = self.start(Scripted(connect=lambda context: pending))
        session.protocol.connectionLost(None)
        pending.callback(None)
        self.assertEqual(session.take(), [])
        self.assertEqual(self.clock.getDelayedCalls(), [])
