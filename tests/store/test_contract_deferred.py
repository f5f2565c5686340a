"""
The contract mixins hold for a store that answers with Deferreds, as the
store seam's disk and network operations will: the in-memory store behind
proxies whose asynchronous operations answer in a later reactor turn.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from tmail.interfaces import IMailFolder, IMailStore
from tmail.store.memory import MemoryStore
from tmail.store.quota import QuotaLimits
from tmail.testing import MailFolderTestsMixin, MailStoreTestsMixin
from tmail.testing.deferring import deferringStore
from tmail.testing.stateful import FolderModelTestsMixin, StoreModelTestsMixin


def deferringMemoryStore(quota: QuotaLimits | None = None) -> IMailStore:
    return deferringStore(MemoryStore(quota=quota))


class DeferringStoreContractTests(MailStoreTestsMixin, MailFolderTestsMixin, TestCase):
    def makeStore(self) -> IMailStore:
        return deferringMemoryStore()

    def makeLimitedStore(self, limits: QuotaLimits) -> IMailStore:
        return deferringMemoryStore(limits)

    async def test_operations_answer_later(self) -> None:
        """The proxies do defer: a folder is not there before the reactor turns."""
        store = self.makeStore()
        answer = store.getFolder("INBOX")
        self.assertIsInstance(answer, Deferred)
        self.assertNoResult(answer)  # type: ignore[attr-defined]
        folder = await answer
        self.assertTrue(IMailFolder.providedBy(folder))


class DeferringFolderModelTests(FolderModelTestsMixin, TestCase):
    timeout = 300

    def makeStore(self) -> IMailStore:
        return deferringMemoryStore()


class DeferringStoreModelTests(StoreModelTestsMixin, TestCase):
    timeout = 300

    def makeStore(self) -> IMailStore:
        return deferringMemoryStore()
