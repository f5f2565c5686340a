# -*- test-case-name: tests.pop3.test_pop3_mailbox -*-
"""
The POP3 view of a user's INBOX: Twisted's C{pop3.IMailbox} over an
L{IMailFolder}.
"""

from __future__ import annotations

from typing import BinaryIO, overload

from twisted.logger import Logger
from twisted.mail import pop3
from zope.interface import Interface, implementer

from tmail.errors import StoreFull
from tmail.interfaces import IFlagChangingFolder, IMailFolder, MessageInfo
from tmail.pop3 import uidl


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

    def getMessage(self, i: int) -> BinaryIO:
        """The exact stored bytes, as a binary file; C{ValueError} if deleted or gone."""
        info = self._info(i)
        if i in self._deleted:
            raise ValueError(f"message at index {i} is deleted")
        try:
            return self.folder.openMessage(info.uid)
        except KeyError:
            raise ValueError(f"message at index {i} no longer exists") from None

    def setUidlFormat(self, spec: str) -> None:
        """Give UIDLs in format C{spec} (see L{tmail.pop3.uidl}); the server's setting."""
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

    def sync(self) -> None:
        """
        Enter the RFC 1939 UPDATE state: mark the retrieved messages
        C{\\Seen} and expunge the ones marked deleted.  Messages another
        session removed meanwhile are skipped.
        """
        seen = self._retrieved - self._deleted
        if seen:
            current = {info.uid: info for info in self.folder.messages()}
            for index in sorted(seen):
                info = current.get(self._messages[index].uid)
                if info is not None and "\\Seen" not in info.flags:
                    try:
                        if IFlagChangingFolder.providedBy(self.folder):
                            self.folder.changeFlags(info.uid, ["\\Seen"], [])
                        else:
                            self.folder.setFlags(info.uid, info.flags | {"\\Seen"})
                    except KeyError:
                        pass
                    except StoreFull:
                        self._log.warn(
                            "Disk full: \\Seen not set on retrieved messages in {folder}",
                            folder=self.folder.name,
                        )
                        break
        if self._deleted:
            uids = [self._messages[index].uid for index in sorted(self._deleted)]
            removed = self.folder.expunge(uids)
            self._log.debug(
                "POP3 expunged {removed} of {marked} messages from {folder}",
                removed=len(removed),
                marked=len(uids),
                folder=self.folder.name,
            )
        self._deleted.clear()
        self._retrieved.clear()
