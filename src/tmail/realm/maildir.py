"""The Maildir realm: one domain, every user's Maildir under one root."""

from __future__ import annotations

from pathlib import Path

from zope.interface import implementer

from tmail.errors import NotHostedDomain
from tmail.fsutil import freeSpace
from tmail.interfaces import IFreeSpace, IUserDirectory
from tmail.realm.base import MailRealm, splitAddress
from tmail.store.filework import FileWork
from tmail.store.quota import QuotaLimits


@implementer(IFreeSpace)
class MaildirRealm(MailRealm):
    """
    Serves the single domain C{domain}; the Maildir of C{local@domain} is
    C{root/<local part>/}.  Users may log in with their local part alone.
    """

    def __init__(
        self,
        directory: IUserDirectory,
        root: Path,
        domain: str,
        *,
        quota: QuotaLimits | None = None,
        fileWork: FileWork | None = None,
    ) -> None:
        super().__init__(directory, quota=quota, fileWork=fileWork)
        self.root = root
        self.domain = domain.lower()

    def mailboxPath(self, user: str) -> Path:
        local, domain = splitAddress(user)
        if domain != self.domain:
            raise NotHostedDomain(domain)
        return self.root / local

    def hostsDomain(self, domain: str) -> bool:
        return domain == self.domain

    def freeSpace(self) -> int:
        """The bytes left on the file system of C{root}."""
        return freeSpace(self.root)
