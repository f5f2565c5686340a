"""Tests for L{tmail.pop3.mailbox.POP3Mailbox} over the real Maildir store."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.mail import pop3
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from support.realm import ALICE, makeRealm
from tmail.interfaces import IMailFolder, IMailUser
from tmail.pop3.mailbox import POP3Mailbox, openMailbox
from tmail.realm.virtual import VirtualDomainRealm
from tmail.store.blocking import blocking
from tmail.store.filework import INLINE

MESSAGES = [b"Subject: a\r\n\r\none\r\n", b"Subject: b\r\n\r\ntwo\r\n", b"Subject: c\r\n\r\n3\r\n"]


def deliver(folder: IMailFolder, message: bytes) -> int:
    pending = folder.beginMessage()
    pending.write(message)
    return pending.commit()


class POP3MailboxTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.fixture = makeRealm(Path(self.mktemp()))
        self.folder = self.fixture.store(ALICE).getFolder("INBOX")
        self.uids = [deliver(self.folder, m) for m in MESSAGES]

    def mailbox(self) -> POP3Mailbox:
        return POP3Mailbox(self.fixture.store(ALICE).getFolder("INBOX"))

    def test_interface(self) -> None:
        self.assertTrue(verifyObject(pop3.IMailbox, self.mailbox()))

    def test_openedFromTheRealmsUser(self) -> None:
        """The mailbox of the realm's user is a L{POP3Mailbox} over its INBOX."""
        _, user, _logout = self.fixture.realm.requestAvatar(ALICE.encode(), None, IMailUser)
        folder = self.successResultOf(maybeDeferred(user.store.getFolder, "INBOX"))
        avatar = self.successResultOf(Deferred.fromCoroutine(openMailbox(folder)))
        self.assertIsInstance(avatar, POP3Mailbox)
        self.assertEqual(avatar.listMessages(), [len(m) for m in MESSAGES])

    def test_snapshot(self) -> None:
        """Mail arriving during a session waits for the next one (RFC 1939)."""
        mailbox = self.mailbox()
        deliver(self.folder, b"Subject: late\r\n\r\n")
        self.assertEqual(len(mailbox.listMessages()), 3)
        self.assertEqual(len(self.mailbox().listMessages()), 4)

    def test_exactBytes(self) -> None:
        mailbox = self.mailbox()
        for i, message in enumerate(MESSAGES):
            with self.successResultOf(mailbox.getMessage(i)) as f:
                self.assertEqual(f.read(), message)

    def test_indices(self) -> None:
        """Indices are 0-based; negative and out-of-range ones raise ValueError."""
        mailbox = self.mailbox()
        for bad in (-1, 3, 99):
            self.assertRaises(ValueError, mailbox.listMessages, bad)
            self.assertRaises(ValueError, mailbox.getMessage, bad)
            self.assertRaises(ValueError, mailbox.getUidl, bad)
            self.assertRaises(ValueError, mailbox.deleteMessage, bad)

    def test_deleteMarksUntilSync(self) -> None:
        mailbox = self.mailbox()
        mailbox.deleteMessage(0)
        self.assertEqual(mailbox.listMessages(0), 0)
        self.assertRaises(ValueError, mailbox.getMessage, 0)
        self.assertEqual(len(self.folder.messages()), 3)
        mailbox.undeleteMessages()
        self.assertEqual(mailbox.listMessages(0), len(MESSAGES[0]))
        mailbox.deleteMessage(1)
        self.successResultOf(mailbox.sync())
        self.assertEqual([m.uid for m in self.folder.messages()], [self.uids[0], self.uids[2]])

    def test_retrievedMessagesSeenAtSync(self) -> None:
        mailbox = self.mailbox()
        mailbox.messageRetrieved(2)
        self.assertEqual(self.folder.messages()[2].flags, frozenset())
        self.successResultOf(mailbox.sync())
        self.assertEqual(self.folder.messages()[2].flags, frozenset({"\\Seen"}))

    def test_seen_at_sync_keeps_a_flag_another_program_set_unseen(self) -> None:
        """
        C{\\Seen} is added to the flags the file has when QUIT marks it,
        also when another program changed them in the same mtime tick
        (the store had not seen that change yet).
        """
        mailbox = self.mailbox()
        mailbox.messageRetrieved(0)
        root = self.fixture.store(ALICE).root
        past = int((time.time() - 60) * 1_000_000_000)
        for sub in ("cur", "new"):
            os.utime(root / sub, ns=(past, past))
        key = self.folder.messages()[0].key
        os.rename(root / "cur" / f"{key}:2,", root / "cur" / f"{key}:2,F")
        for sub in ("cur", "new"):
            os.utime(root / sub, ns=(past, past))
        self.successResultOf(mailbox.sync())
        self.assertEqual(self.folder.messages()[0].flags, {"\\Flagged", "\\Seen"})

    def test_uidlForm(self) -> None:
        """
        UIDLs are 1-70 characters in 0x21-0x7E and unique, by default in
        Dovecot's default form (UID and UIDVALIDITY as 8 hex digits each).
        """
        mailbox = self.mailbox()
        uidls = [mailbox.getUidl(i) for i in range(3)]
        for uidl in uidls:
            self.assertTrue(re.fullmatch(rb"[\x21-\x7e]{1,70}", uidl))
        self.assertEqual(len(set(uidls)), 3)
        validity = self.folder.uidValidity()
        self.assertEqual(
            uidls, [b"%08x%08x" % (info.uid, validity) for info in self.folder.messages()]
        )

    def test_hashedUidlsDependOnTheFileNameAlone(self) -> None:
        """The C{hash} form: 32 hex digits that even a new UIDVALIDITY leaves alone."""
        mailbox = self.mailbox()
        mailbox.setUidlFormat("hash")
        uidls = [mailbox.getUidl(i) for i in range(3)]
        for uidl in uidls:
            self.assertTrue(re.fullmatch(rb"[0-9a-f]{32}", uidl))
        self.assertEqual(len(set(uidls)), 3)

    def test_uidlStableAcrossRealmsAndFlagChanges(self) -> None:
        """
        UIDLs survive a restart (a new realm over the same files) and a
        flag change by an IMAP client, which renames the Maildir file.
        """
        before = [self.mailbox().getUidl(i) for i in range(3)]
        self.folder.setFlags(self.uids[1], {"\\Seen", "\\Flagged"})
        realm = VirtualDomainRealm(
            self.fixture.directory, self.fixture.root / "data" / "mail", fileWork=INLINE
        )
        fresh = POP3Mailbox(blocking(realm.storeFor(ALICE)).getFolder("INBOX"))
        self.assertEqual([fresh.getUidl(i) for i in range(3)], before)

    def test_vanishedMessage(self) -> None:
        """A message expunged by another session reads as ValueError; sync skips it."""
        mailbox = self.mailbox()
        self.folder.expunge([self.uids[0]])
        self.failureResultOf(mailbox.getMessage(0), ValueError)
        mailbox.deleteMessage(0)
        mailbox.messageRetrieved(1)
        self.successResultOf(mailbox.sync())
        self.assertEqual(len(self.folder.messages()), 2)
