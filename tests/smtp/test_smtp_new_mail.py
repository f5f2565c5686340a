"""
Delivered mail stays in the Maildir's C{new/}, as Dovecot's LDA leaves
it: a delivery does not read the INBOX's index (which would list the
folder after every delivery and move new mail into C{cur/}, so a local
mail reader would no longer show it as new).  A reader's first look moves
it, as Dovecot's IMAP server does.
"""

from __future__ import annotations

import os
import smtplib
from collections.abc import Generator
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial.unittest import TestCase

from support.mx import mxFactory
from support.net import inThread, listen
from support.realm import ALICE, makeRealm


class NewMailTests(TestCase):
    @inlineCallbacks
    def setUp(self) -> Generator[Deferred[Any], Any, None]:
        self.fixture = makeRealm(Path(self.mktemp()).resolve())
        factory = mxFactory(self.fixture.realm, self.fixture.portal)
        self.port = yield listen(self, factory)
        self.maildir = self.fixture.root / "data" / "mail" / "example.test" / "alice"

    def send(self, count: int) -> None:
        with smtplib.SMTP("127.0.0.1", self.port, timeout=30) as client:
            client.ehlo("client.example.org")
            for number in range(count):
                client.sendmail("s@remote.example", [ALICE], f"Subject: {number}\r\n\r\nhi\r\n")

    @inlineCallbacks
    def test_delivered_mail_stays_in_new_until_a_reader_opens_the_inbox(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        yield inThread(self.send, 3)
        self.assertEqual(len(os.listdir(self.maildir / "new")), 3)
        self.assertEqual(os.listdir(self.maildir / "cur"), [])
        inbox = self.fixture.store(ALICE).getFolder("INBOX")
        self.assertEqual(len(inbox.messages()), 3)
        self.assertEqual(os.listdir(self.maildir / "new"), [])
        self.assertEqual(len(os.listdir(self.maildir / "cur")), 3)

    @inlineCallbacks
    def test_mail_delivered_while_a_reader_has_the_inbox_open_is_indexed_at_once(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        inbox = self.fixture.store(ALICE).getFolder("INBOX")
        self.assertEqual(list(inbox.messages()), [])
        yield inThread(self.send, 2)
        self.assertEqual(
            [info.uid for info in inbox.messages(claimRecent=False)],
            [1, 2],
            "the open index learns of deliveries without a refresh",
        )
