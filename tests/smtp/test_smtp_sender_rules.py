"""
Submission rules over a C{StringTransport} session (L{tmail.smtp.submission}):
the sender addresses an authenticated user may use in C{MAIL FROM} and in
C{From}/C{Sender}, per-user settings, and the C{Message-ID} and C{Date} a
submitted message gets when it has none.
"""

from __future__ import annotations

import re
from email.utils import parsedate_to_datetime
from typing import Any

from test_smtp_session import (
    MESSAGE,
    Session,
    SessionTestCase,
    authenticate,
    makeFactory,
    transaction,
)

ALICE = b"alice@example.test"
NOT_OWNED = b"553 5.7.1 Sender address rejected: not owned by user alice@example.test"
FROM_NOT_OWNED = b"553 5.7.1 From header address rejected: not owned by user alice@example.test"
SENDER_NOT_OWNED = b"553 5.7.1 Sender header address rejected: not owned by user alice@example.test"
DATED = b"Date: Mon, 2 Jun 2025 10:00:00 +0000\r\nMessage-ID: <m1@example.test>\r\n"


class SubmissionTestCase(SessionTestCase):
    submission = True
    secure = True

    def setUp(self) -> None:
        super().setUp()
        self.login(self.session)

    def login(self, session: Session) -> None:
        self.ehlo(session)
        assert authenticate(session).startswith(b"235 ")

    def useFactory(self, **kwargs: Any) -> None:
        """Start over with a factory built with C{kwargs}."""
        self.factory = makeFactory(self.realm, self.clock, submission=True, **kwargs)
        self.session = self.connect()
        self.login(self.session)

    def mailFrom(self, address: bytes) -> bytes:
        reply = self.session.command(b"MAIL FROM:<" + address + b">")
        if reply.startswith(b"250 "):
            self.session.command(b"RSET")
        return reply

    def submit(self, message: bytes, sender: bytes = ALICE) -> list[bytes]:
        """Send C{message} to bob; the replies to the end of DATA."""
        transaction(self.session, b"bob@example.test", sender=sender)
        assert self.session.command(b"DATA").startswith(b"354 ")
        return self.session.send(message + b".\r\n")

    def stored(self) -> bytes:
        [message] = self.realm.inbox("bob").stored
        return message


class EnvelopeSenderTests(SubmissionTestCase):
    def test_own_addresses_are_accepted(self) -> None:
        """Its address (any case), a sub-address, an alias it is in, and the null sender."""
        for address in (
            ALICE,
            b"Alice@Example.TEST",
            b"alice+lists@example.test",
            b"team@example.test",
            b"",
        ):
            self.assertEqual(self.mailFrom(address), b"250 2.1.0 Ok", address)

    def test_other_addresses_get_553(self) -> None:
        """Another user's address or a foreign one: Postfix's wording."""
        for address in (b"bob@example.test", b"bob+x@example.test", b"ceo@elsewhere.example"):
            self.assertEqual(self.mailFrom(address), NOT_OWNED, address)
        self.assertEqual(self.session.command(b"RCPT TO:<bob@example.test>")[:4], b"503 ")

    def test_extra_addresses_from_the_users_field(self) -> None:
        """C{tmail_senders} lists more addresses, or whole domains with C{@domain}."""
        self.realm.directory.fields[ALICE.decode()] = {
            "tmail_senders": "news@elsewhere.example, @partner.example"
        }
        self.assertEqual(self.mailFrom(b"news@elsewhere.example"), b"250 2.1.0 Ok")
        self.assertEqual(self.mailFrom(b"anyone@partner.example"), b"250 2.1.0 Ok")
        self.assertEqual(self.mailFrom(b"anyone@sub.partner.example"), NOT_OWNED)
        self.assertEqual(self.mailFrom(b"bob@example.test"), NOT_OWNED)

    def test_the_users_field_turns_the_check_off(self) -> None:
        self.realm.directory.fields[ALICE.decode()] = {"tmail_sender_check": "off"}
        self.assertEqual(self.mailFrom(b"bob@example.test"), b"250 2.1.0 Ok")
        self.assertEqual(self.submit(b"From: bob@example.test\r\n\r\nhi\r\n")[0][:4], b"250 ")

    def test_a_users_field_with_an_unknown_value_keeps_the_default(self) -> None:
        self.realm.directory.fields[ALICE.decode()] = {"tmail_sender_check": "no"}
        self.assertEqual(self.mailFrom(b"bob@example.test"), NOT_OWNED)

    def test_setting_off_for_everyone(self) -> None:
        self.useFactory(senderCheck="off")
        self.assertEqual(self.mailFrom(b"bob@example.test"), b"250 2.1.0 Ok")

    def test_the_mx_checks_no_sender(self) -> None:
        factory = makeFactory(self.realm, self.clock, submission=False)
        session = Session(factory, self.clock)
        self.addCleanup(session.protocol.connectionLost, None)
        self.ehlo(session)
        self.assertEqual(session.command(b"MAIL FROM:<bob@example.test>"), b"250 2.1.0 Ok")


class HeaderSenderTests(SubmissionTestCase):
    def test_from_of_another_user_is_refused_at_the_end_of_data(self) -> None:
        replies = self.submit(b"From: Bob <bob@example.test>\r\n" + DATED + b"\r\nhi\r\n")
        self.assertEqual(replies, [FROM_NOT_OWNED])
        self.assertEqual(self.realm.inbox("bob").stored, [])
        self.assertEqual([p.state for p in self.realm.inbox("bob").pending], ["aborted"])
        self.assertEqual(self.session.command(b"NOOP"), b"250 2.0.0 Ok")

    def test_own_from_and_sender_are_accepted(self) -> None:
        message = (
            b'From: "Alice" <alice@example.test>, team@example.test\r\n'
            b"Sender: alice+out@example.test\r\n" + DATED + b"\r\nhi\r\n"
        )
        self.assertTrue(self.submit(message)[0].startswith(b"250 2.0.0 "))
        self.assertTrue(self.stored().endswith(message))

    def test_every_from_address_must_be_owned(self) -> None:
        message = b"From: alice@example.test, bob@example.test\r\n\r\nhi\r\n"
        self.assertEqual(self.submit(message), [FROM_NOT_OWNED])

    def test_own_sender_does_not_excuse_a_foreign_from(self) -> None:
        message = b"From: bob@example.test\r\nSender: alice@example.test\r\n\r\nhi\r\n"
        self.assertEqual(self.submit(message), [FROM_NOT_OWNED])

    def test_a_foreign_sender_field_is_refused(self) -> None:
        message = b"From: alice@example.test\r\nSender: bob@example.test\r\n\r\nhi\r\n"
        self.assertEqual(self.submit(message), [SENDER_NOT_OWNED])

    def test_a_from_that_does_not_parse_cleanly_is_refused(self) -> None:
        """A client could read an address the check did not: refused."""
        for value in (
            b"alice@example.test (me) <bob@example.test>",
            b"Alice <alice@example.test> <bob@example.test>",
            b"<bob@example.test",
            b"alice",
        ):
            self.setUp()
            self.assertEqual(self.submit(b"From: " + value + b"\r\n\r\nhi\r\n"), [FROM_NOT_OWNED])

    def test_a_message_without_from_is_let_through(self) -> None:
        self.assertTrue(self.submit(b"Subject: no from\r\n\r\nhi\r\n")[0].startswith(b"250 "))

    def test_a_folded_from_split_across_reads(self) -> None:
        """The From field arrives in pieces and folded; its second address is still seen."""
        transaction(self.session, b"bob@example.test", sender=ALICE)
        self.session.command(b"DATA")
        for piece in (b"Subject: x\r\nFr", b"om: alice@exa", b"mple.test,\r\n", b" bob@exam"):
            self.assertEqual(self.session.send(piece), [])
        self.assertEqual(self.session.send(b"ple.test\r\n\r\nhi\r\n.\r\n"), [FROM_NOT_OWNED])

    def test_a_from_after_a_header_larger_than_one_read(self) -> None:
        head = b"".join(b"X-Long-%d: %s\r\n" % (n, b"v" * 900) for n in range(100))
        self.assertEqual(
            self.submit(head + b"From: bob@example.test\r\n\r\nhi\r\n"), [FROM_NOT_OWNED]
        )

    def test_a_header_too_large_to_check_is_refused(self) -> None:
        head = b"".join(b"X-Long-%d: %s\r\n" % (n, b"v" * 900) for n in range(300))
        self.assertEqual(
            self.submit(head + b"From: alice@example.test\r\n\r\nhi\r\n"),
            [b"552 5.3.4 Message header too large"],
        )

    def test_bdat_from_is_checked_too(self) -> None:
        transaction(self.session, b"bob@example.test", sender=ALICE)
        body = b"From: bob@example.test\r\n\r\nhi\r\n"
        self.assertEqual(
            self.session.send(b"BDAT %d LAST\r\n" % len(body) + body), [FROM_NOT_OWNED]
        )

    def test_envelope_only_leaves_the_header_alone(self) -> None:
        self.useFactory(senderCheck="envelope")
        self.assertEqual(self.mailFrom(b"bob@example.test"), NOT_OWNED)
        self.assertTrue(self.submit(b"From: bob@example.test\r\n\r\nhi\r\n")[0].startswith(b"250 "))


class AddedFieldTests(SubmissionTestCase):
    def test_message_id_and_date_are_added_when_missing(self) -> None:
        """They go at the end of the header section; the rest is as sent."""
        self.assertTrue(self.submit(MESSAGE)[0].startswith(b"250 "))
        stored = self.stored()
        match = re.search(
            rb"\r\nSubject: hello\r\n"
            rb"Message-ID: <[0-9a-f]{32}@mx\.example\.test>\r\n"
            rb"Date: ([^\r\n]+)\r\n"
            rb"\r\nbody line\r\n\.leading dot\r\n\Z",
            stored,
        )
        self.assertIsNotNone(match, stored)
        assert match is not None
        self.assertIsNotNone(parsedate_to_datetime(match.group(1).decode()).tzinfo)

    def test_fields_present_are_left_alone(self) -> None:
        message = (
            b"From: alice@example.test\r\nmessage-id: <x@example.test>\r\nDATE: today\r\n\r\nhi\r\n"
        )
        self.submit(message)
        self.assertTrue(self.stored().endswith(message))
        self.assertEqual(self.stored().lower().count(b"message-id:"), 1)

    def test_fields_split_across_reads_are_not_added_twice(self) -> None:
        transaction(self.session, b"bob@example.test", sender=ALICE)
        self.session.command(b"DATA")
        for piece in (b"Message-", b"ID: <x@example.test>\r\nDa", b"te: today\r\n", b"\r\nhi\r\n"):
            self.session.send(piece)
        self.assertTrue(self.session.send(b".\r\n")[0].startswith(b"250 "))
        self.assertTrue(
            self.stored().endswith(b"Message-ID: <x@example.test>\r\nDate: today\r\n\r\nhi\r\n")
        )

    def test_a_message_without_header_gets_them(self) -> None:
        self.submit(b"just text\r\n")
        self.assertRegex(
            self.stored(), rb"\r\nMessage-ID: <[^>]+>\r\nDate: [^\r]+\r\n\r\njust text\r\n\Z"
        )

    def test_submission_is_received_with_esmtpsa(self) -> None:
        """RFC 3848: ESMTP, over TLS (S), authenticated (A)."""
        self.submit(MESSAGE)
        self.assertRegex(self.stored(), rb"\tby mx\.example\.test \(tmail\) with ESMTPSA id ")

    def test_the_mx_adds_nothing(self) -> None:
        factory = makeFactory(self.realm, self.clock, submission=False)
        session = Session(factory, self.clock)
        self.addCleanup(session.protocol.connectionLost, None)
        self.ehlo(session)
        transaction(session, b"bob@example.test")
        session.command(b"DATA")
        session.send(MESSAGE + b".\r\n")
        self.assertTrue(
            self.stored().endswith(b"\r\nSubject: hello\r\n\r\nbody line\r\n.leading dot\r\n")
        )
        self.assertNotIn(b"Message-ID", self.stored())
