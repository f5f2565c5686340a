"""
A real virtual-domain realm over a temporary folder, with users.  Its
stores do their file work inline (every Deferred they answer has fired),
so that tests set up and inspect mail through L{RealmFixture.store}.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.cred.portal import Portal

from tmail.auth.checker import DirectoryChecker
from tmail.directory.passwdfile import PasswdFileDirectory
from tmail.interfaces import IMailStore
from tmail.realm.virtual import VirtualDomainRealm
from tmail.store.blocking import blocking
from tmail.store.filework import INLINE
from tmail.store.quota import overrideFields

DOMAIN = "example.test"
ALICE = "alice@example.test"
BOB = "bob@example.test"
PASSWORD = "secret-password"


@dataclass
class RealmFixture:
    directory: PasswdFileDirectory
    realm: VirtualDomainRealm
    checker: DirectoryChecker
    portal: Portal
    root: Path

    def store(self, user: str) -> Any:
        """The store of C{user} the realm serves, answering synchronously."""
        return blocking(self.realm.storeFor(user))

    def inbox(self, user: str) -> list[bytes]:
        """The raw bytes of every message in C{user}'s INBOX, oldest first."""
        folder = self.store(user).getFolder("INBOX")
        folder.refresh()
        out = []
        for info in folder.messages():
            with folder.openMessage(info.uid) as f:
                out.append(f.read())
        return out

    def setLimits(self, user: str, storage: int | None = None, messages: int | None = None) -> None:
        """Give C{user} a storage limit in bytes and a message limit (C{None}: none)."""
        fields = self.directory.userFields(user)
        self.directory.setUserFields(user, overrideFields(fields, storage, messages))


class BlockingStoresRealm(VirtualDomainRealm):
    """
    The realm, with its stores wrapped by L{blocking}: tests read and set up
    mail with plain calls, and the servers, which accept stores that answer
    at once, run on the same objects.
    """

    def createStore(self, user: str) -> IMailStore:
        store: IMailStore = blocking(super().createStore(user))
        return store


def makeRealm(root: Path, users: tuple[str, ...] = (ALICE, BOB)) -> RealmFixture:
    """
    A realm hosting C{example.test} with the given users, each with the
    password L{PASSWORD}.
    """
    directory = PasswdFileDirectory(root / "data")
    directory.addDomain(DOMAIN)
    for user in users:
        directory.addUser(user, PASSWORD.encode())
    realm = BlockingStoresRealm(directory, root / "data" / "mail", fileWork=INLINE)
    checker = DirectoryChecker(directory)
    return RealmFixture(directory, realm, checker, Portal(realm, [checker]), root)
