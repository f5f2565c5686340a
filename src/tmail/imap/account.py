# -*- test-case-name: tests.imap.test_imap_network -*-
"""
A user's IMAP account over their L{IMailStore}: folder names, hierarchy,
subscriptions and LIST matching.

Names arrive here already decoded from modified UTF-7.  The account refuses
names that could step outside the user's mail (empty, C{.} or C{..}
components, a leading delimiter, wildcards) before the store sees them; the
store validates again.
"""

from __future__ import annotations

from collections.abc import Iterator

from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.mail import imap4
from zope.interface import implementer

from tmail.errors import InvalidFolderName
from tmail.imap.mailbox import IMAPMailbox
from tmail.imap.waiting import finish, waitFor
from tmail.imap.wildcard import INBOX, MailboxPattern
from tmail.interfaces import IIncrementalFolder, IMailFolder, IMailStore, ISteppedStore


def canonicalName(name: str, delimiter: str = "/") -> str:
    """Spell C{INBOX} (and only it) in upper case, whatever the client used."""
    head, sep, tail = name.partition(delimiter)
    if head.upper() == INBOX:
        return INBOX + sep + tail
    return name


def checkName(name: str, delimiter: str = "/") -> str:
    """
    Return the canonical form of a folder name, or raise
    L{InvalidFolderName} for one that is empty, absolute, has empty, C{.}
    or C{..} components, or contains wildcards or control characters.
    """
    if not name:
        raise InvalidFolderName("Empty folder name")
    if "*" in name or "%" in name:
        raise InvalidFolderName("Folder names cannot contain * or %")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise InvalidFolderName("Folder names cannot contain control characters")
    parts = name.split(delimiter)
    if any(part in ("", ".", "..") for part in parts):
        raise InvalidFolderName("Invalid folder name")
    return canonicalName(name, delimiter)


def wildcardPattern(pattern: str, delimiter: str = "/") -> MailboxPattern:
    """A matcher for one LIST pattern: C{*} matches all, C{%} stops at the delimiter."""
    return MailboxPattern([pattern], delimiter)


@implementer(imap4.IMailboxInfo)
class MailboxInfo:
    """The LIST attributes and delimiter of one name."""

    def __init__(self, flags: list[str], delimiter: str) -> None:
        self.flags = flags
        self.delimiter = delimiter

    def getFlags(self) -> list[str]:
        return self.flags

    def getHierarchicalDelimiter(self) -> str:
        return self.delimiter


@implementer(imap4.IAccount, imap4.INamespacePresenter)
class IMAPAccount:
    """
    Twisted's L{imap4.IAccount} for one user.  Errors are the store's own
    (L{NoSuchFolder}, L{FolderExists}, L{InvalidFolderName}); the server
    turns them into response codes.
    """

    def __init__(self, store: IMailStore, user: str) -> None:
        self.store = store
        self.user = user
        self.delimiter: str = getattr(store, "delimiter", "/")

    def folder(self, name: str) -> Deferred[IMailFolder]:
        """The folder called C{name}."""
        return maybeDeferred(self.store.getFolder, checkName(name, self.delimiter))

    def current(self, name: str) -> Deferred[IMailFolder]:
        """
        The folder called C{name}, with what other processes changed in it
        taken in (SELECT, STATUS): the store's index answers from memory.
        """

        def refreshed(folder: IMailFolder) -> Deferred[IMailFolder]:
            if not IIncrementalFolder.providedBy(folder):
                return succeed(folder)
            return maybeDeferred(folder.refresh).addCallback(lambda _: folder)

        return self.folder(name).addCallback(refreshed)

    def addMailbox(self, name: str, mbox: object = None) -> Deferred[bool]:
        return self.create(name)

    def create(self, pathspec: str) -> Deferred[bool]:
        name = pathspec[:-1] if pathspec.endswith(self.delimiter) else pathspec
        created = maybeDeferred(self.store.createFolder, checkName(name, self.delimiter))
        return created.addCallback(lambda _: True)

    def select(self, name: str, rw: bool = True) -> Deferred[IMAPMailbox]:
        return self.current(name).addCallback(IMAPMailbox, rw, self.delimiter)

    def delete(self, name: str) -> None:
        """
        Delete a folder (the store must answer at once).  Its sub-folders
        stay (RFC 3501 6.3.4); the name then lists as C{\\Noselect} while
        they exist.
        """
        finish(self.deleting(name))

    def deleting(self, name: str) -> Iterator[object]:
        """L{delete} as steps: the store's own (L{ISteppedStore}), or its one call."""
        canonical = checkName(name, self.delimiter)
        store = self.store
        if ISteppedStore.providedBy(store):
            steps: Iterator[object] = store.deleteFolderSteps(canonical)
            return steps
        return waitFor(store.deleteFolder, canonical)

    def rename(self, oldname: str, newname: str) -> None:
        """Rename a folder (the store must answer at once)."""
        finish(self.renaming(oldname, newname))

    def renaming(self, oldname: str, newname: str) -> Iterator[object]:
        """
        A rename as steps: the store's own, a slice of messages at a time
        (L{ISteppedStore}), or its one call.
        """
        old, new = checkName(oldname, self.delimiter), checkName(newname, self.delimiter)
        store = self.store
        if ISteppedStore.providedBy(store):
            steps: Iterator[object] = store.renameFolderSteps(old, new)
            return steps
        return waitFor(store.renameFolder, old, new)

    def isSubscribed(self, name: str) -> Deferred[bool]:
        subscribed = maybeDeferred(self.store.subscriptions)
        return subscribed.addCallback(lambda names: canonicalName(name, self.delimiter) in names)

    def subscribe(self, name: str) -> Deferred[None]:
        return maybeDeferred(self.store.subscribe, checkName(name, self.delimiter))

    def unsubscribe(self, name: str) -> Deferred[None]:
        return maybeDeferred(self.store.unsubscribe, canonicalName(name, self.delimiter))

    def _hierarchy(self, names: list[str]) -> dict[str, bool]:
        """Every name and implied parent, mapped to whether it really exists."""
        known = dict.fromkeys(names, True)
        for name in names:
            parts = name.split(self.delimiter)
            for i in range(1, len(parts)):
                known.setdefault(self.delimiter.join(parts[:i]), False)
        return known

    def _matches(self, ref: str, wildcard: str, names: list[str]) -> list[tuple[str, bool]]:
        pattern = wildcardPattern(ref + wildcard, self.delimiter)
        hierarchy = self._hierarchy(names)
        found = [(name, real) for name, real in hierarchy.items() if pattern.fullmatch(name)]
        return sorted(found, key=lambda item: (item[0] != INBOX, item[0]))

    def listMailboxes(self, ref: str, wildcard: str) -> Deferred[list[tuple[str, MailboxInfo]]]:
        listed: Deferred[list[str]] = maybeDeferred(self.store.listFolders)
        return listed.addCallback(self._listed, ref, wildcard)

    def _listed(self, names: list[str], ref: str, wildcard: str) -> list[tuple[str, MailboxInfo]]:
        hierarchy = self._hierarchy(names)
        result = []
        for name, real in self._matches(ref, wildcard, names):
            prefix = name + self.delimiter
            children = any(other.startswith(prefix) for other in hierarchy)
            flags = [] if real else ["\\Noselect"]
            flags.append("\\HasChildren" if children else "\\HasNoChildren")
            result.append((name, MailboxInfo(flags, self.delimiter)))
        return result

    def listSubscribed(self, ref: str, wildcard: str) -> Deferred[list[tuple[str, MailboxInfo]]]:
        """LSUB: subscribed names, and their unsubscribed parents as C{\\Noselect}."""
        names: Deferred[list[str]] = maybeDeferred(self.store.subscriptions)
        return names.addCallback(self._subscribedListed, ref, wildcard)

    def _subscribedListed(
        self, names: list[str], ref: str, wildcard: str
    ) -> list[tuple[str, MailboxInfo]]:
        subscribed = [canonicalName(name, self.delimiter) for name in names]
        found = self._matches(ref, wildcard, subscribed)
        matched = {name for name, real in found if real}
        result = []
        for name, real in found:
            prefix = name + self.delimiter
            if not real and any(other.startswith(prefix) for other in matched):
                continue
            result.append((name, MailboxInfo([] if real else ["\\Noselect"], self.delimiter)))
        return result

    def getPersonalNamespaces(self) -> list[list[str]]:
        return [["", self.delimiter]]

    def getSharedNamespaces(self) -> None:
        return None

    def getUserNamespaces(self) -> None:
        return None
