"""
The credentials checker every protocol logs in through: a username and
password checked against the L{IUserDirectory}.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import threads
from twisted.internet.defer import Deferred
from zope.interface import implementer

from tmail.interfaces import IUserDirectory

#: What a checker's Deferred fires with: an avatar ID (or Twisted's anonymous C{()}).
AvatarId = bytes | tuple[()]


def _text(value: bytes | str) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


@implementer(ICredentialsChecker)
class DirectoryChecker:
    """
    Check C{IUsernamePassword} credentials against a directory.

    The avatar ID is the user's canonical address, UTF-8 encoded (Twisted's
    avatar IDs are bytes).  Password hashing is slow by design, so the check
    runs in a thread and does not stall other sessions.

    @ivar defaultDomain: appended to a login name without C{@} (the Maildir
        realm's users may log in with their local part only).
    @ivar runInThread: runs a check in a thread: the reactor's pool unless
        given one (L{tmail.auth.workers.CheckerThreads.run}, which the
        service uses so that checks never hold up deliveries).
    """

    credentialInterfaces = (IUsernamePassword,)

    def __init__(
        self,
        directory: IUserDirectory,
        defaultDomain: str | None = None,
        runInThread: Callable[[Callable[[], AvatarId]], Deferred[AvatarId]] | None = None,
    ) -> None:
        self.directory = directory
        self.defaultDomain = defaultDomain
        self.runInThread = runInThread or threads.deferToThread

    def loginAddress(self, username: bytes | str) -> str:
        """The address a login name stands for."""
        name = _text(username).strip()
        if "@" not in name and self.defaultDomain:
            name = f"{name}@{self.defaultDomain}"
        return name.lower()

    def requestAvatarId(self, credentials: IUsernamePassword) -> Deferred[AvatarId]:
        address = self.loginAddress(credentials.username)
        password = credentials.password

        def check() -> AvatarId:
            user = self.directory.checkPassword(address, password)
            if user is None:
                raise UnauthorizedLogin("authentication failed")
            return user.encode("utf-8")

        return self.runInThread(check)
