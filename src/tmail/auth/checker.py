"""
The credentials checker every protocol logs in through: a username and
password checked against the L{IUserDirectory}.
"""

from __future__ import annotations

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import threads
from twisted.internet.defer import Deferred
from zope.interface import implementer

from tmail.interfaces import IUserDirectory


def _text(value: bytes | str) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


@implementer(ICredentialsChecker)
class DirectoryChecker:
    """
    Check C{IUsernamePassword} credentials against a directory.

    The avatar ID is the user's canonical address, UTF-8 encoded (Twisted's
    avatar IDs are bytes).  Password hashing
    is slow by design, so the check runs in a thread and does not stall other
    sessions.

    @ivar defaultDomain: appended to a login name without C{@} (the Maildir
        realm's users may log in with their local part only).
    """

    credentialInterfaces = (IUsernamePassword,)

    def __init__(self, directory: IUserDirectory, defaultDomain: str | None = None) -> None:
        self.directory = directory
        self.defaultDomain = defaultDomain

    def loginAddress(self, username: bytes | str) -> str:
        """The address a login name stands for."""
        name = _text(username).strip()
        if "@" not in name and self.defaultDomain:
            name = f"{name}@{self.defaultDomain}"
        return name.lower()

    def requestAvatarId(self, credentials: IUsernamePassword) -> Deferred[bytes | tuple[()]]:
        address = self.loginAddress(credentials.username)
        password = credentials.password

        def check() -> bytes | tuple[()]:
            user = self.directory.checkPassword(address, password)
            if user is None:
                raise UnauthorizedLogin("authentication failed")
            return user.encode("utf-8")

        return threads.deferToThread(check)
