# -*- test-case-name: tests.pop3.test_pop3_mailbox -*-
"""
The POP3 view of a user's INBOX: Twisted's C{pop3.IMailbox} over an
L{IMailFolder}.

The store's disk and network operations may answer with Deferreds (the
store seam): the snapshot is taken once L{openMailbox} has waited for the
folder's C{refresh}, a message is opened with a Deferred C{openMessage},
and L{POP3Mailbox.sync} fires only once its flag changes and expunge are
done, so C{QUIT}'s C{+OK} follows them.
"""

from __future__ import annotations

from typing import Any, BinaryIO, overload

from twisted.internet.defer import Deferred, DeferredList, maybeDeferred
from twisted.logger import Logger
from twisted.mail import pop3
from twisted.python.failure import Failure
from zope.interface import Interface, implementer

from tmail.errors import StoreFull
from tmail.interfaces import IFlagChangingFolder, IMailFolder, MessageInfo
from tmail.store import uidl


class IRetrievalListener(Interface):
    """
    A mailbox that wants to hear which messages a client downloaded with
    C{RETR} (not C{TOP}), so it can mark them read when the session ends.
    """

    def messageRetrieved(index: int) -> None:  # noqa: N805
        """The message at 0-based C{index} was sent in full."""


@implementer(pop3.IMailbox, IRetrievalListener)
class POP3Mailbox:
    """
    A snapshot of a folder taken when the user logs in: RFC 1939 keeps the
    maildrop fixed for the session, so messages that arrive later wait for
    the next session and message numbers never shift.

    C{DELE} only marks a message; L{sync} (called by C{QUIT}, and only by
    C{QUIT}) removes the marked ones and sets C{\\Seen} on the messages that
    were retrieved, as Dovecot does.  A session that ends any other way
    changes nothing.  On a full disk the messages marked are removed all
    the same (that frees space), and C{\\Seen} is left unset where it
    cannot be set, so the session still ends well.

    @ivar folder: the folder the snapshot was taken of.
    """

    loginDelay = 0
    messageExpiration = None

    _log = Logger()

    def __init__(self, folder: IMailFolder, uidlFormat: str = uidl.DEFAULT) -> None:
        self.folder = folder
        self._messages: tuple[MessageInfo, ...] = tuple(folder.messages())
        self._uidValidity = folder.uidValidity()
        self.setUidlFormat(uidlFormat)
        self._deleted: set[int] = set()
        self._retrieved: set[int] = set()

    def _info(self, index: int) -> MessageInfo:
        if not isinstance(index, int) or not 0 <= index < len(self._messages):
            raise ValueError(f"no message at index {index!r}")
        return self._messages[index]

    @overload
    def listMessages(self) -> list[int]: ...

    @overload
    def listMessages(self, i: int) -> int: ...

    def listMessages(self, i: int | None = None) -> int | list[int]:
        """Sizes in octets, 0 for a message marked deleted."""
        if i is None:
            return [0 if n in self._deleted else info.size for n, info in enumerate(self._messages)]
        info = self._info(i)
        return 0 if i in self._deleted else info.size

    def getMessage(self, i: int) -> Deferred[BinaryIO]:
        """
        The exact stored bytes, as a binary file; C{ValueError} if deleted,
        and a Deferred that fails with it if gone.
        """
        info = self._info(i)
        if i in self._deleted:
            raise ValueError(f"message at index {i} is deleted")

        def gone(failure: Failure) -> Failure:
            if failure.check(KeyError):  # type: ignore[no-untyped-call]
                raise ValueError(f"message at index {i} no longer exists")
            return failure

        opened: Deferred[BinaryIO] = maybeDeferred(self.folder.openMessage, info.uid)
        return opened.addErrback(gone)

    def setUidlFormat(self, spec: str) -> None:
        """Give UIDLs in format C{spec} (see L{tmail.store.uidl}); the server's setting."""
        self._uidl = uidl.compileFormat(spec)

    def getUidl(self, i: int) -> bytes:
        """The message's unique id in the configured format."""
        return self._uidl(self._info(i), self._uidValidity)

    def deleteMessage(self, i: int) -> None:
        """Mark a message for removal at L{sync}."""
        self._info(i)
        self._deleted.add(i)

    def undeleteMessages(self) -> None:
        """Unmark all messages (C{RSET})."""
        self._deleted.clear()

    def messageRetrieved(self, index: int) -> None:
        self._info(index)
        self._retrieved.add(index)

    def sync(self) -> Deferred[None]:
        """
        Enter the RFC 1939 UPDATE state: mark the retrieved messages
        C{\\Seen} and expunge the ones marked deleted.  Messages another
        session removed meanwhile are skipped.  Fires once the store has
        made every change.
        """
        return Deferred.fromCoroutine(self._sync())

    async def _sync(self) -> None:
        await refreshed(self.folder)
        seen = self._retrieved - self._deleted
        if seen:
            current = {info.uid: info for info in self.folder.messages()}
            changes: list[Deferred[Any]] = []
            for index in sorted(seen):
                info = current.get(self._messages[index].uid)
                if info is not None and "\\Seen" not in info.flags:
                    if IFlagChangingFolder.providedBy(self.folder):
                        changes.append(
                            maybeDeferred(self.folder.changeFlags, info.uid, ["\\Seen"], [])
                        )
                    else:
                        changes.append(
                            maybeDeferred(self.folder.setFlags, info.uid, info.flags | {"\\Seen"})
                        )
            await self._flagsChanged(changes)
        if self._deleted:
            uids = [self._messages[index].uid for index in sorted(self._deleted)]
            removed = await maybeDeferred(self.folder.expunge, uids)
            self._log.debug(
                "POP3 expunged {removed} of {marked} messages from {folder}",
                removed=len(removed),
                marked=len(uids),
                folder=self.folder.name,
            )
        self._deleted.clear()
        self._retrieved.clear()

    async def _flagsChanged(self, changes: list[Deferred[Any]]) -> None:
        """
        Wait for every flag change, all under way at once; a message gone
        meanwhile is skipped and a full disk only leaves C{\\Seen} unset.
        Any other failure is raised once all are done.
        """
        results = await DeferredList(changes, consumeErrors=True)
        full = False
        for succeeded, result in results:
            if succeeded or result.check(KeyError):
                continue
            if result.check(StoreFull):
                full = True
                continue
            result.raiseException()
        if full:
            self._log.warn(
                "Disk full: \\Seen not set on retrieved messages in {folder}",
                folder=self.folder.name,
            )


async def refreshed(folder: IMailFolder) -> None:
    """Wait for C{folder} to pick up other processes' changes, where it can."""
    refresh = getattr(folder, "refresh", None)
    if refresh is not None:
        await maybeDeferred(refresh)


async def openMailbox(folder: IMailFolder, uidlFormat: str = uidl.DEFAULT) -> POP3Mailbox:
    """A L{POP3Mailbox} of C{folder} as it is now, other processes' changes included."""
    await refreshed(folder)
    return POP3Mailbox(folder, uidlFormat)
