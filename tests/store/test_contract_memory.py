"""The in-memory store passes the store and folder contracts and answers as the seam declares."""

from __future__ import annotations

from twisted.trial.unittest import TestCase

from tmail.errors import NoSuchFolder, OverQuota
from tmail.interfaces import IMailStore
from tmail.store.memory import MemoryStore
from tmail.store.quota import QuotaLimits
from tmail.testing import MailFolderTestsMixin, MailStoreTestsMixin
from tmail.testing.stateful import FolderModelTestsMixin, StoreModelTestsMixin


class MemoryStoreContractTests(MailStoreTestsMixin, MailFolderTestsMixin, TestCase):
    def makeStore(self) -> IMailStore:
        return MemoryStore()

    def makeLimitedStore(self, limits: QuotaLimits) -> IMailStore:
        return MemoryStore(quota=limits)


class MemoryFolderModelTests(FolderModelTestsMixin, TestCase):
    timeout = 300

    def makeStore(self) -> IMailStore:
        return MemoryStore()


class MemoryStoreModelTests(StoreModelTestsMixin, TestCase):
    timeout = 300

    def makeStore(self) -> IMailStore:
        return MemoryStore()


class MemoryStoreSeamTests(TestCase):
    """The memory store answers as the store seam declares."""

    def test_errors_are_failures_of_the_deferreds(self) -> None:
        store = MemoryStore(quota=QuotaLimits(messages=1))
        self.failureResultOf(store.getFolder("Nowhere"), NoSuchFolder)
        inbox = store.folders["INBOX"]
        self.failureResultOf(inbox.openMessage(1), KeyError)
        self.failureResultOf(inbox.setFlags(1, ()), KeyError)
        pending = inbox.beginMessage()
        pending.write(b"Subject: one\r\n\r\n")
        self.successResultOf(pending.commit())
        self.failureResultOf(store.checkQuota(1), OverQuota)

    def test_index_readers_answer_at_once(self) -> None:
        inbox = MemoryStore().folders["INBOX"]
        self.assertEqual(list(inbox.messages()), [])
        self.assertEqual((inbox.uidNext(), inbox.messageCount(), inbox.info(1)), (1, 0, None))
