"""A realm whose users' mail lives in memory, for tests and examples."""

from __future__ import annotations

from tmail.interfaces import IMailStore, IUserDirectory
from tmail.realm.base import MailRealm
from tmail.store.memory import MemoryStore
from tmail.store.quota import QuotaLimits


class MemoryRealm(MailRealm):
    """
    The users and domains of C{directory}, each user's mail in a
    L{MemoryStore} that keeps the quota L{MailRealm.quotaLimits} gives.
    """

    def __init__(self, directory: IUserDirectory, *, quota: QuotaLimits | None = None) -> None:
        super().__init__(directory, quota=quota)

    def createStore(self, user: str) -> IMailStore:
        return MemoryStore(quota=lambda: self.quotaLimits(user))
