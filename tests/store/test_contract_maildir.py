"""The Maildir store passes the store and folder contracts."""

from __future__ import annotations

from pathlib import Path

from twisted.trial.unittest import TestCase

from tmail.interfaces import IMailStore
from tmail.store.maildir import MaildirStore
from tmail.store.quota import QuotaLimits
from tmail.testing import MailFolderTestsMixin, MailStoreTestsMixin
from tmail.testing.stateful import FolderModelTestsMixin


class MaildirStoreContractTests(MailStoreTestsMixin, MailFolderTestsMixin, TestCase):
    def makeStore(self) -> IMailStore:
        return MaildirStore(Path(self.mktemp()))

    def makeLimitedStore(self, limits: QuotaLimits) -> IMailStore:
        return MaildirStore(Path(self.mktemp()), quota=lambda: limits)


class MaildirFolderModelTests(FolderModelTestsMixin, TestCase):
    timeout = 300

    def makeStore(self) -> IMailStore:
        return MaildirStore(Path(self.mktemp()))
