"""The in-memory store passes the store and folder contracts."""

from __future__ import annotations

from twisted.trial.unittest import TestCase

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
