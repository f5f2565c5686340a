"""The virtual-domain realm: many domains, each with users, aliases and Maildirs."""

from __future__ import annotations

from pathlib import Path

from tmail.interfaces import IUserDirectory
from tmail.realm.base import MailRealm, splitAddress
from tmail.store.quota import QuotaLimits


class VirtualDomainRealm(MailRealm):
    """
    Users' Maildirs live at C{mailRoot/<domain>/<local part>/}, the layout of
    Dovecot's C{mail_location = maildir:/var/vmail/%d/%n}.
    """

    def __init__(
        self, directory: IUserDirectory, mailRoot: Path, *, quota: QuotaLimits | None = None
    ) -> None:
        super().__init__(directory, quota=quota)
        self.mailRoot = mailRoot

    def mailboxPath(self, user: str) -> Path:
        local, domain = splitAddress(user)
        return self.mailRoot / domain / local
