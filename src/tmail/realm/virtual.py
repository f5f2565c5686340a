"""The virtual-domain realm: many domains, each with users, aliases and Maildirs."""

from __future__ import annotations

from pathlib import Path

from zope.interface import implementer

from tmail.fsutil import freeSpace
from tmail.interfaces import IFreeSpace, IUserDirectory
from tmail.realm.base import MailRealm, splitAddress
from tmail.store.filework import FileWork
from tmail.store.quota import QuotaLimits


@implementer(IFreeSpace)
class VirtualDomainRealm(MailRealm):
    """
    Users' Maildirs live at C{mailRoot/<domain>/<local part>/}, the layout of
    Dovecot's C{mail_location = maildir:/var/vmail/%d/%n}.
    """

    def __init__(
        self,
        directory: IUserDirectory,
        mailRoot: Path,
        *,
        quota: QuotaLimits | None = None,
        fileWork: FileWork | None = None,
    ) -> None:
        super().__init__(directory, quota=quota, fileWork=fileWork)
        self.mailRoot = mailRoot

    def mailboxPath(self, user: str) -> Path:
        local, domain = splitAddress(user)
        return self.mailRoot / domain / local

    def freeSpace(self) -> int:
        """The bytes left on the file system of C{mailRoot}."""
        return freeSpace(self.mailRoot)
