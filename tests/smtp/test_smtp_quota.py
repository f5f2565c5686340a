"""
Quotas over SMTP: the MX listener on a loopback port with a real realm whose
users have limits in the passwd file, driven by C{smtplib} and raw sockets.
A full mailbox fails for its own recipient; the other recipients of the same
message get it.
"""

from __future__ import annotations

import re
import smtplib
import socket
from collections.abc import Generator
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial.unittest import TestCase

from support.mx import mxFactory
from support.net import inThread, listen
from support.realm import ALICE, BOB, makeRealm
from tmail.config.schema import OverQuotaPolicy

BIG = b"From: someone@remote.example\r\nSubject: big\r\n\r\n" + (b"x" * 70 + b"\r\n") * 40
SMALL = b"From: someone@remote.example\r\nSubject: small\r\n\r\nhi\r\n"


def dialogue(port: int, *commands: bytes) -> list[bytes]:
    """Send each command (or DATA payload) and collect its final reply line."""
    replies = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        f = s.makefile("rb")
        f.readline()
        for command in commands:
            s.sendall(command)
            while True:
                line = f.readline()
                if not re.match(rb"\d{3}-", line):
                    break
            replies.append(line.rstrip(b"\r\n"))
    return replies


def envelope(*recipients: str, body: bytes = BIG) -> list[bytes]:
    """A transaction without a declared SIZE, so only the end of DATA can tell."""
    return [
        b"EHLO client.example.org\r\n",
        b"MAIL FROM:<someone@remote.example>\r\n",
        *(b"RCPT TO:<%s>\r\n" % r.encode() for r in recipients),
        b"DATA\r\n",
        body + b".\r\n",
        b"QUIT\r\n",
    ]


class SMTPQuotaTests(TestCase):
    timeout = 20

    def setUp(self) -> None:
        self.fixture = makeRealm(Path(self.mktemp()))
        self.fixture.setLimits(ALICE, storage=2000)

    def listen(self, overQuota: OverQuotaPolicy = "reject") -> Deferred[int]:
        return listen(self, mxFactory(self.fixture.realm, self.fixture.portal, overQuota))

    def sendmail(self, port: int, recipients: list[str], body: bytes) -> dict[str, Any]:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            return client.sendmail("someone@remote.example", recipients, body)

    @inlineCallbacks
    def test_recipient_over_quota_gets_552_and_the_other_gets_the_message(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        """smtplib declares SIZE, so the full mailbox is refused at its RCPT."""
        port = yield self.listen()
        refused = yield inThread(self.sendmail, port, [ALICE, BOB], BIG)
        self.assertEqual(refused, {ALICE: (552, b"5.2.2 Mailbox full: quota exceeded")})
        self.assertEqual(self.fixture.inbox(ALICE), [])
        [message] = self.fixture.inbox(BOB)
        self.assertTrue(message.endswith(BIG))

    @inlineCallbacks
    def test_tempfail_setting_answers_452_4_2_2(self) -> Generator[Deferred[Any], Any, None]:
        port = yield self.listen("tempfail")
        refused = yield inThread(self.sendmail, port, [ALICE, BOB], BIG)
        self.assertEqual(refused, {ALICE: (452, b"4.2.2 Mailbox full: quota exceeded")})
        self.assertEqual(len(self.fixture.inbox(BOB)), 1)

    @inlineCallbacks
    def test_small_message_still_fits_next_to_a_refused_big_one(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        port = yield self.listen()
        refused = yield inThread(self.sendmail, port, [ALICE], SMALL)
        self.assertEqual(refused, {})
        with self.assertRaises(smtplib.SMTPRecipientsRefused):
            yield inThread(self.sendmail, port, [ALICE], BIG)
        self.assertEqual(len(self.fixture.inbox(ALICE)), 1)

    @inlineCallbacks
    def test_copy_that_does_not_fit_fails_at_end_of_data_and_the_others_are_delivered(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        """
        Without SIZE the RCPT is accepted; at the end of DATA only alice's
        copy is refused, bob keeps his, and the one reply says so.
        """
        port = yield self.listen()
        replies = yield inThread(dialogue, port, *envelope(ALICE, BOB))
        self.assertEqual(replies[2:4], [b"250 2.1.5 Ok", b"250 2.1.5 Ok"])
        self.assertEqual(
            replies[5],
            b"552 5.2.2 Mailbox full for 1 of 2 recipients; the others have the message",
        )
        self.assertEqual(self.fixture.inbox(ALICE), [])
        self.assertEqual(len(self.fixture.inbox(BOB)), 1)

    @inlineCallbacks
    def test_only_recipient_over_quota_at_end_of_data(self) -> Generator[Deferred[Any], Any, None]:
        port = yield self.listen("tempfail")
        replies = yield inThread(dialogue, port, *envelope(ALICE))
        self.assertEqual(replies[4], b"452 4.2.2 Mailbox full: quota exceeded")
        store = self.fixture.store(ALICE)
        self.assertEqual(self.fixture.inbox(ALICE), [])
        self.assertEqual(store.quota().storage, 0)  # type: ignore[attr-defined]

    @inlineCallbacks
    def test_full_mailbox_is_refused_at_rcpt_without_a_declared_size(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        """A message-count limit reached already needs no SIZE to refuse the recipient."""
        self.fixture.setLimits(BOB, messages=1)
        port = yield self.listen()
        yield inThread(self.sendmail, port, [BOB], SMALL)
        replies = yield inThread(dialogue, port, *envelope(BOB, body=SMALL))
        self.assertEqual(replies[2], b"552 5.2.2 Mailbox full: quota exceeded")
        self.assertEqual(len(self.fixture.inbox(BOB)), 1)

    @inlineCallbacks
    def test_raised_limit_applies_to_the_next_message(self) -> Generator[Deferred[Any], Any, None]:
        port = yield self.listen()
        with self.assertRaises(smtplib.SMTPRecipientsRefused):
            yield inThread(self.sendmail, port, [ALICE], BIG)
        self.fixture.setLimits(ALICE, storage=1024**2)
        refused = yield inThread(self.sendmail, port, [ALICE], BIG)
        self.assertEqual(refused, {})
        self.assertEqual(len(self.fixture.inbox(ALICE)), 1)
