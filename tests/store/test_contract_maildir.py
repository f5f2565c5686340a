"""The Maildir store passes the store and folder contracts."""

from __future__ import annotations

import itertools
import os
import socket
from pathlib import Path

from twisted.trial.unittest import TestCase

from tmail.interfaces import IMailStore
from tmail.store.maildir import MaildirStore, pending
from tmail.store.quota import QuotaLimits
from tmail.testing import MailFolderTestsMixin, MailStoreTestsMixin
from tmail.testing.stateful import FolderModelTestsMixin, StoreModelTestsMixin


class MaildirStoreContractTests(MailStoreTestsMixin, MailFolderTestsMixin, TestCase):
    def makeStore(self) -> IMailStore:
        return MaildirStore(Path(self.mktemp()))

    def makeLimitedStore(self, limits: QuotaLimits) -> IMailStore:
        return MaildirStore(Path(self.mktemp()), quota=lambda: limits)

    def reopenStore(self, store: IMailStore) -> IMailStore:
        assert isinstance(store, MaildirStore)
        return MaildirStore(store.root)

    async def test_rename_of_inbox_keeps_the_order_of_its_messages(self) -> None:
        """
        Messages delivered within one second, before and after its first
        tenth, get base names C{<secs>.M99999P...} and C{<secs>.M100000P...},
        whose text order is not their time order: the folder INBOX was
        renamed to must still give UIDs in delivery order.  The names are
        made so here; otherwise it happens by chance.
        """
        micros = itertools.count(1_765_000_000_099_997)
        host = socket.gethostname()

        def uniqueName() -> str:
            secs, usec = divmod(next(micros), 1_000_000)
            return f"{secs}.M{usec}P{os.getpid()}Q{usec}.{host}"

        self.patch(pending, "_uniqueName", uniqueName)
        await super().test_rename_of_inbox_keeps_the_order_of_its_messages()


class MaildirFolderModelTests(FolderModelTestsMixin, TestCase):
    timeout = 300

    def makeStore(self) -> IMailStore:
        return MaildirStore(Path(self.mktemp()))

    def reopenStore(self, store: IMailStore) -> IMailStore:
        assert isinstance(store, MaildirStore)
        return MaildirStore(store.root)


class MaildirStoreModelTests(StoreModelTestsMixin, TestCase):
    timeout = 300

    def makeStore(self) -> IMailStore:
        return MaildirStore(Path(self.mktemp()))

    def reopenStore(self, store: IMailStore) -> IMailStore:
        assert isinstance(store, MaildirStore)
        return MaildirStore(store.root)
