"""tmail's realms pass the realm contract: virtual domains, Maildir and in-memory."""

from __future__ import annotations

from pathlib import Path

from twisted.trial.unittest import TestCase

from tmail.interfaces import IMailRealm, IUserDirectory
from tmail.realm.maildir import MaildirRealm
from tmail.realm.memory import MemoryRealm
from tmail.realm.virtual import VirtualDomainRealm
from tmail.testing import MailRealmTestsMixin


class VirtualDomainRealmContractTests(MailRealmTestsMixin, TestCase):
    def makeRealm(self, directory: IUserDirectory) -> IMailRealm:
        return VirtualDomainRealm(directory, Path(self.mktemp()))


class MaildirRealmContractTests(MailRealmTestsMixin, TestCase):
    def makeRealm(self, directory: IUserDirectory) -> IMailRealm:
        return MaildirRealm(directory, Path(self.mktemp()), "example.test")


class MemoryRealmContractTests(MailRealmTestsMixin, TestCase):
    def makeRealm(self, directory: IUserDirectory) -> IMailRealm:
        return MemoryRealm(directory)
