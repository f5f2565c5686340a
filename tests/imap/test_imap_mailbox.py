"""The adapters from tmail's store to Twisted's IMAP interfaces, and per-session state."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

from twisted.mail import imap4
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from tmail.imap.account import IMAPAccount
from tmail.imap.mailbox import IMAPMailbox
from tmail.imap.message import IMAPMessage
from tmail.imap.seqset import parseSequenceSet
from tmail.interfaces import IMailFolder
from tmail.store.maildir import BlockingMaildirStore

MESSAGE = b"Subject: hi\r\n\r\nbody\r\n"


def deliver(folder: IMailFolder, flags: tuple[str, ...] = ()) -> int:
    pending = folder.beginMessage(flags)
    pending.write(MESSAGE)
    return pending.commit()


class AdapterTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.store = BlockingMaildirStore(Path(self.mktemp()))
        self.account = IMAPAccount(self.store, "alice@example.test")
        self.inbox = self.store.getFolder("INBOX")

    def test_interfaces(self) -> None:
        """The adapters provide the Twisted interfaces they claim."""
        deliver(self.inbox)
        verifyObject(imap4.IAccount, self.account)
        verifyObject(imap4.INamespacePresenter, self.account)
        mailbox = self.successResultOf(self.account.select("INBOX"))
        for interface in (
            imap4.IMailbox,
            imap4.ISearchableMailbox,
            imap4.IMessageCopier,
            imap4.ICloseableMailbox,
        ):
            verifyObject(interface, mailbox)
        message = mailbox.fetch(parseSequenceSet(b"1"), False)[0][1]
        verifyObject(imap4.IMessage, message)
        verifyObject(imap4.IMessageFile, message)
        self.assertEqual(message.open().read(), MESSAGE)
        self.assertEqual(message.getHeaders(False, "subject"), {"subject": "hi"})

    def test_resolve(self) -> None:
        """UIDs that do not exist are skipped; sequence numbers past the end are an error."""
        for _ in range(4):
            deliver(self.inbox)
        self.inbox.messages()
        self.inbox.expunge([2])
        mailbox = IMAPMailbox(self.inbox)
        self.assertEqual(mailbox.resolve(parseSequenceSet(b"1:*"), True), [(1, 1), (2, 3), (3, 4)])
        self.assertEqual(mailbox.resolve(parseSequenceSet(b"2"), True), [])
        self.assertEqual(mailbox.resolve(parseSequenceSet(b"9:*"), True), [(3, 4)])
        self.assertEqual(mailbox.resolve(parseSequenceSet(b"*"), False), [(3, 4)])
        self.assertEqual(mailbox.resolve(parseSequenceSet(b"1:4294967295"), True)[-1], (3, 4))
        self.assertRaises(
            imap4.IllegalIdentifierError, mailbox.resolve, parseSequenceSet(b"4"), False
        )

    def test_emptyMailbox(self) -> None:
        mailbox = IMAPMailbox(self.inbox)
        self.assertEqual(mailbox.resolve(parseSequenceSet(b"1:*"), True), [])
        self.assertEqual(mailbox.resolve(parseSequenceSet(b"*"), False), [])
        self.assertIsNone(mailbox.firstUnseen())

    def test_ghostsStayUntilExpungeMayBeSent(self) -> None:
        """Another session's expunge keeps this session's numbering until it may be told."""
        for _ in range(3):
            deliver(self.inbox)
        mine, other = IMAPMailbox(self.inbox), IMAPMailbox(self.inbox)
        other.store(parseSequenceSet(b"2"), ["\\Deleted"], 1, False)
        self.assertEqual(other.expunge().expunged, [2])
        self.assertTrue(mine.dirty)
        held = mine.sync(allowExpunge=False)
        self.assertEqual((held.expunged, held.exists), ([], None))
        self.assertEqual(mine.getMessageCount(), 3)
        told = mine.sync(allowExpunge=True)
        self.assertEqual((told.expunged, told.exists), ([2], 2))
        self.assertEqual(mine.getUID(2), 3)

    def test_copyAndAddMessage(self) -> None:
        deliver(self.inbox, ("\\Flagged",))
        archive = self.successResultOf(self.account.select(self.store.createFolder("Archive").name))
        source = self.successResultOf(self.account.select("INBOX"))
        message = source.fetch(parseSequenceSet(b"1"), False)[0][1]
        self.assertIsInstance(message, IMAPMessage)
        self.assertEqual(self.successResultOf(archive.copy(message)), 1)
        uid = self.successResultOf(archive.addMessage(BytesIO(MESSAGE), ["\\Seen"]))
        self.assertEqual(uid, 2)
        archive.sync(True)
        self.assertEqual(
            archive.requestStatus(["MESSAGES", "UNSEEN"]), {"MESSAGES": 2, "UNSEEN": 1}
        )
        archive.close()
