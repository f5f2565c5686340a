"""
A store that keeps every folder and message in memory, for tests and
examples: nothing survives the process.

It implements L{IMailStore} and L{IMailFolder} with the optional parts a
front end can use (mod-sequences, object IDs, save dates, incremental
catch-up, flag changes that keep others' flags, linked copies, readers that
keep expunged messages, quotas, special-use attributes, METADATA and
URLAUTH keys), so the IMAP, POP3 and SMTP front ends serve it as they serve
a Maildir.  It is the smallest complete example of the store seam, and the
reference the contract tests of L{tmail.testing} are run against.

It answers as the store seam declares (L{tmail.interfaces}): what comes
from the index (C{messages}, C{info}, C{changesSince}...) at once, and the
operations a disk or network store answers later (C{getFolder},
C{openMessage}, C{commit}, flag changes, C{expunge}, C{copyMessage},
folder operations, quotas, special use, METADATA) with a L{Deferred},
already fired; an error is its failure.  All of it runs in the reactor
thread; L{MemoryPendingMessage.publish} does nothing, so a caller may
still run it in a worker thread.
"""

from __future__ import annotations

import io
import itertools
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import BinaryIO

from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.python.failure import Failure
from zope.interface import implementer

from tmail.errors import FolderExists, InvalidFolderName, NoSuchFolder, OverQuota
from tmail.interfaces import (
    IFlagChangingFolder,
    IIncrementalFolder,
    IInsertablePendingMessage,
    ILinkingFolder,
    IMailFolder,
    IMailStore,
    IMetadataStore,
    IModSeqFolder,
    IObjectIdFolder,
    IPendingMessage,
    IQuotaStore,
    IRetainingFolder,
    ISaveDateFolder,
    ISpecialUseStore,
    IURLAuthStore,
    MessageInfo,
    QuotaUsage,
)
from tmail.store.flags import canonicalFlag
from tmail.store.naming import DELIMITER, INBOX, normalizeName
from tmail.store.quota import QuotaLimits
from tmail.store.urlauthkeys import MemoryMailboxKeys

__all__ = ["MemoryFolder", "MemoryPendingMessage", "MemoryStore"]

Reader = Callable[[int], bool]
Listener = Callable[[IMailFolder], None]

#: Object IDs of folders and messages, unique in the process.
_objectIds = itertools.count(1)


def _flagSet(flags: Iterable[str]) -> frozenset[str]:
    """The flags a store keeps, in their stored spelling."""
    return frozenset(kept for kept in map(canonicalFlag, flags) if kept is not None)


@dataclass(slots=True)
class _Message:
    info: MessageInfo
    body: bytes
    emailId: str
    saveDate: float


@implementer(IInsertablePendingMessage)
class MemoryPendingMessage:
    """A message being written: bytes in a buffer until L{commit}."""

    def __init__(
        self, folder: MemoryFolder, flags: Iterable[str], internaldate: float | None
    ) -> None:
        self.folder = folder
        self.flags = _flagSet(flags)
        self.internaldate = time.time() if internaldate is None else internaldate
        self.emailId: str | None = None
        self._buffer = bytearray()
        self._done = False

    def write(self, data: bytes) -> None:
        if self._done:
            raise ValueError("the message was already committed or aborted")
        self._buffer += data

    def insert(self, offset: int, data: bytes) -> None:
        if self._done:
            raise ValueError("the message was already committed or aborted")
        if not 0 <= offset <= len(self._buffer):
            raise ValueError(f"offset {offset} is past the end of the message")
        self._buffer[offset:offset] = data

    def content(self) -> bytes:
        """The bytes written so far."""
        return bytes(self._buffer)

    def publish(self) -> None:
        """Nothing to make durable: memory is all there is."""

    def commit(self) -> Deferred[int]:  # type: ignore[override]
        return maybeDeferred(self._commit)

    def _commit(self) -> int:
        if self._done:
            raise ValueError("the message was already committed or aborted")
        self._done = True
        body = bytes(self._buffer)
        self._buffer = bytearray()
        return self.folder._add(body, self.flags, self.internaldate, self.emailId)

    def abort(self) -> None:
        self._done = True
        self._buffer = bytearray()


@implementer(
    IModSeqFolder,
    IObjectIdFolder,
    ISaveDateFolder,
    IIncrementalFolder,
    IRetainingFolder,
    ILinkingFolder,
    IFlagChangingFolder,
)
class MemoryFolder:
    """
    One folder of a L{MemoryStore}.  Every change is made at once and seen
    by everyone; mod-sequences and the change log count from 1.
    """

    def __init__(self, store: MemoryStore, name: str, uidValidity: int) -> None:
        self.store = store
        self.name = name
        self._uidValidity = uidValidity
        self._uidNext = 1
        self._messages: dict[int, _Message] = {}
        self._recent: set[int] = set()
        self._modseq = 1
        self._expunged: list[tuple[int, int]] = []
        self._changeLog: list[int] = []
        self._listeners: list[Listener] = []
        self._readers: list[Reader] = []
        self._retained: dict[int, bytes] = {}
        self._mailboxId = f"M{next(_objectIds)}"

    def __repr__(self) -> str:
        return f"<MemoryFolder {self.name!r}>"

    def _notify(self) -> None:
        for listener in list(self._listeners):
            listener(self)

    def _nextModSeq(self) -> int:
        self._modseq += 1
        return self._modseq

    def _view(self, message: _Message) -> MessageInfo:
        recent = message.info.uid in self._recent
        return (
            message.info if message.info.recent == recent else replace(message.info, recent=recent)
        )

    def _add(
        self,
        body: bytes,
        flags: frozenset[str],
        internaldate: float,
        emailId: str | None,
        charge: bool = True,
    ) -> int:
        if self.store.folders.get(self.name) is not self:
            raise NoSuchFolder(self.name)
        if charge:
            self.store._charge(len(body), 1)
        uid = self._uidNext
        self._uidNext += 1
        info = MessageInfo(
            uid=uid,
            flags=flags,
            size=len(body),
            internaldate=internaldate,
            key=f"{self._mailboxId}.{uid}",
            modseq=self._nextModSeq(),
        )
        self._messages[uid] = _Message(info, body, emailId or f"E{next(_objectIds)}", time.time())
        self._recent.add(uid)
        self._changeLog.append(uid)
        self._notify()
        return uid

    def _message(self, uid: int) -> _Message:
        message = self._messages.get(uid)
        if message is None:
            raise KeyError(uid)
        return message

    # IMailFolder

    def uidValidity(self) -> int:
        return self._uidValidity

    def uidNext(self) -> int:
        return self._uidNext

    def messages(self, claimRecent: bool = True) -> Sequence[MessageInfo]:
        listed = [self._view(message) for message in self._messages.values()]
        if claimRecent:
            self._recent.clear()
        return listed

    def openMessage(self, uid: int) -> Deferred[BinaryIO]:  # type: ignore[override]
        return maybeDeferred(self._open, uid)

    def _open(self, uid: int) -> BinaryIO:
        message = self._messages.get(uid)
        if message is not None:
            return io.BytesIO(message.body)
        if uid in self._retained:
            return io.BytesIO(self._retained[uid])
        raise KeyError(uid)

    def beginMessage(
        self, flags: Iterable[str] = (), internaldate: float | None = None
    ) -> MemoryPendingMessage:
        return MemoryPendingMessage(self, flags, internaldate)

    def _replaceFlags(self, uid: int, flags: frozenset[str]) -> MessageInfo:
        message = self._message(uid)
        if flags != message.info.flags:
            message.info = replace(message.info, flags=flags, modseq=self._nextModSeq())
            self._changeLog.append(uid)
            self._notify()
        return self._view(message)

    def setFlags(self, uid: int, flags: Iterable[str]) -> Deferred[MessageInfo]:  # type: ignore[override]
        return maybeDeferred(lambda: self._replaceFlags(uid, _flagSet(flags)))

    def changeFlags(  # type: ignore[override]
        self, uid: int, add: Iterable[str], remove: Iterable[str]
    ) -> Deferred[MessageInfo]:
        def change() -> MessageInfo:
            current = self._message(uid).info.flags
            return self._replaceFlags(uid, (current | _flagSet(add)) - _flagSet(remove))

        return maybeDeferred(change)

    def expunge(self, uids: Iterable[int]) -> Deferred[list[int]]:  # type: ignore[override]
        return maybeDeferred(self._expunge, uids)

    def _expunge(self, uids: Iterable[int]) -> list[int]:
        removed = []
        for uid in sorted(set(uids)):
            message = self._messages.pop(uid, None)
            if message is None:
                continue
            removed.append(uid)
            self._recent.discard(uid)
            self._expunged.append((self._nextModSeq(), uid))
            self._changeLog.append(uid)
            self.store._charge(-message.info.size, -1)
            if any(holds(uid) for holds in self._readers):
                self._retained[uid] = message.body
        if removed:
            self._notify()
        return removed

    def copyMessage(self, uid: int, target: IMailFolder) -> Deferred[int]:  # type: ignore[override]
        """Copy through C{target}'s pending message, whose C{commit} may answer later."""

        def copy() -> Deferred[int]:
            message = self._message(uid)
            pending = target.beginMessage(message.info.flags, message.info.internaldate)
            if isinstance(pending, MemoryPendingMessage):
                pending.emailId = message.emailId

            def aborted(failure: Failure) -> Failure:
                pending.abort()
                return failure

            try:
                pending.write(message.body)
            except BaseException:
                pending.abort()
                raise
            committed: Deferred[int] = maybeDeferred(pending.commit)
            return committed.addErrback(aborted)

        return maybeDeferred(copy)

    def addListener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def removeListener(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    # IModSeqFolder

    def highestModSeq(self) -> int:
        return self._modseq

    def expungedSince(self, modseq: int) -> tuple[list[int], bool]:
        return sorted(uid for when, uid in self._expunged if when > modseq), True

    # IObjectIdFolder

    def mailboxId(self) -> str:
        return self._mailboxId

    def emailId(self, uid: int) -> str:
        return self._message(uid).emailId

    # ISaveDateFolder

    def saveDate(self, uid: int) -> float | None:
        return self._message(uid).saveDate

    # IIncrementalFolder

    def changeSerial(self) -> int:
        return len(self._changeLog)

    def changesSince(
        self, serial: int, claimRecent: bool = True
    ) -> tuple[int, list[MessageInfo | int] | None]:
        current = len(self._changeLog)
        if not 0 <= serial <= current:
            return current, None
        changed: list[MessageInfo | int] = []
        for uid in sorted(set(self._changeLog[serial:])):
            message = self._messages.get(uid)
            changed.append(uid if message is None else self._view(message))
        if claimRecent:
            self._recent.clear()
        return current, changed

    def refresh(self) -> Deferred[None]:  # type: ignore[override]
        """Nothing to pick up: no other process changes this folder."""
        return succeed(None)

    def info(self, uid: int) -> MessageInfo | None:
        message = self._messages.get(uid)
        return None if message is None else self._view(message)

    def messageCount(self) -> int:
        return len(self._messages)

    # IRetainingFolder

    def addReader(self, holds: Reader) -> None:
        self._readers.append(holds)

    def removeReader(self, holds: Reader) -> None:
        if holds in self._readers:
            self._readers.remove(holds)
        self._dropUnheld(list(self._retained))

    def release(self, holds: Reader, uids: Iterable[int]) -> None:
        self._dropUnheld([uid for uid in uids if uid in self._retained])

    def _dropUnheld(self, uids: list[int]) -> None:
        for uid in uids:
            if not any(holds(uid) for holds in self._readers):
                self._retained.pop(uid, None)

    # ILinkingFolder

    def linkedCopy(self, source: IPendingMessage) -> IPendingMessage:
        if not isinstance(source, MemoryPendingMessage):
            raise TypeError("a linked copy needs a message of another memory folder")
        pending = MemoryPendingMessage(self, source.flags, source.internaldate)
        pending.write(source.content())
        return pending


@implementer(IMailStore, IQuotaStore, ISpecialUseStore, IMetadataStore, IURLAuthStore)
class MemoryStore:
    """
    All folders of one user, in memory.

    @param quota: the user's limits, or a callable asked at every delivery
        (so a changed setting applies at once); C{None} keeps no quota
        (L{quota} is then C{None}).

    @ivar folders: the folders by name, INBOX always among them.
    """

    delimiter = DELIMITER

    def __init__(self, quota: QuotaLimits | Callable[[], QuotaLimits] | None = None) -> None:
        self.folders: dict[str, MemoryFolder] = {}
        self._subscriptions: list[str] = []
        self._specialUse: dict[str, frozenset[str]] | None = None
        self._metadata: dict[str | None, dict[str, bytes]] = {None: {}}
        self._keys = MemoryMailboxKeys()
        self._limits = quota
        self._storage = 0
        self._count = 0
        self._lastUidValidity = 0
        self._add(INBOX)

    def __repr__(self) -> str:
        return f"<MemoryStore {sorted(self.folders)!r}>"

    def _add(self, name: str) -> MemoryFolder:
        self._lastUidValidity = max(self._lastUidValidity + 1, int(time.time()))
        folder = self.folders[name] = MemoryFolder(self, name, self._lastUidValidity)
        self._metadata[name] = {}
        return folder

    def _existing(self, name: str) -> MemoryFolder:
        canonical = normalizeName(name)
        folder = self.folders.get(canonical)
        if folder is None:
            raise NoSuchFolder(canonical)
        return folder

    # The work of each operation; the public ones below answer with it in a Deferred

    def _listFolders(self) -> list[str]:
        return [INBOX, *sorted(name for name in self.folders if name != INBOX)]

    def _createFolder(self, name: str) -> MemoryFolder:
        canonical = normalizeName(name)
        if canonical in self.folders:
            raise FolderExists(canonical)
        components = canonical.split(DELIMITER)
        for depth in range(1, len(components)):
            parent = DELIMITER.join(components[:depth])
            if parent not in self.folders:
                self._add(parent)
        return self._add(canonical)

    def _deleteFolder(self, name: str) -> None:
        folder = self._existing(name)
        if folder.name == INBOX:
            raise InvalidFolderName("INBOX cannot be deleted")
        del self.folders[folder.name]
        del self._metadata[folder.name]
        for message in folder._messages.values():
            self._charge(-message.info.size, -1)
        folder._messages.clear()
        if self._specialUse is not None:
            self._specialUse.pop(folder.name, None)

    def _renameFolder(self, old: str, new: str) -> None:
        source = self._existing(old)
        target = normalizeName(new)
        if target in self.folders:
            raise FolderExists(target)
        if source.name == INBOX:
            created = self._createFolder(target)
            for message in source._messages.values():
                info = message.info
                created._add(message.body, info.flags, info.internaldate, message.emailId, False)
            moved = list(source._messages.values())
            self._storage += sum(message.info.size for message in moved)
            self._count += len(moved)
            source._expunge([message.info.uid for message in moved])
            return
        oldName = source.name
        if target.startswith(oldName + DELIMITER):
            raise InvalidFolderName(f"cannot move {oldName!r} into itself")
        moving = [
            name for name in self.folders if name == oldName or name.startswith(oldName + DELIMITER)
        ]
        renames = {name: target + name[len(oldName) :] for name in moving}
        for renamed in renames.values():
            if renamed in self.folders:
                raise FolderExists(renamed)
        components = target.split(DELIMITER)
        for depth in range(1, len(components)):
            parent = DELIMITER.join(components[:depth])
            if parent not in self.folders and parent not in moving:
                self._add(parent)
        for name, renamed in renames.items():
            folder = self.folders.pop(name)
            folder.name = renamed
            self.folders[renamed] = folder
            self._metadata[renamed] = self._metadata.pop(name)
            if self._specialUse is not None and name in self._specialUse:
                self._specialUse[renamed] = self._specialUse.pop(name)

    def _listSubscriptions(self) -> list[str]:
        return list(self._subscriptions)

    def _subscribe(self, name: str) -> None:
        canonical = normalizeName(name)
        if canonical not in self._subscriptions:
            self._subscriptions.append(canonical)

    def _unsubscribe(self, name: str) -> None:
        canonical = normalizeName(name)
        if canonical in self._subscriptions:
            self._subscriptions.remove(canonical)

    # IQuotaStore

    def _currentLimits(self) -> QuotaLimits | None:
        return self._limits() if callable(self._limits) else self._limits

    def _usage(self, limits: QuotaLimits) -> QuotaUsage:
        return QuotaUsage(
            self._storage, self._count, limits.storage or None, limits.messages or None
        )

    def _charge(self, size: int, count: int) -> None:
        """Count a delivery (or, negative, a removal); refuse one over a limit."""
        limits = self._currentLimits()
        if limits is not None and count > 0:
            resource = self._usage(limits).refusal(size, count)
            if resource is not None:
                raise OverQuota(f"quota exceeded ({resource})", resource)
        self._storage += size
        self._count += count

    def _quota(self) -> QuotaUsage | None:
        limits = self._currentLimits()
        return None if limits is None else self._usage(limits)

    def _checkQuota(self, size: int, count: int = 1) -> None:
        usage = self._quota()
        resource = None if usage is None else usage.refusal(size, count)
        if resource is not None:
            raise OverQuota(f"quota exceeded ({resource})", resource)

    def _recalculateQuota(self) -> QuotaUsage | None:
        messages = [m for folder in self.folders.values() for m in folder._messages.values()]
        self._storage = sum(m.info.size for m in messages)
        self._count = len(messages)
        return self._quota()

    # ISpecialUseStore

    def _currentSpecialUse(self) -> dict[str, frozenset[str]] | None:
        return None if self._specialUse is None else dict(self._specialUse)

    def _updateSpecialUse(self, changes: dict[str, frozenset[str]]) -> None:
        current = dict(self._specialUse or {})
        for name, values in changes.items():
            canonical = normalizeName(name)
            if values:
                current[canonical] = frozenset(values)
            else:
                current.pop(canonical, None)
        self._specialUse = current

    # IMetadataStore

    def _entries(self, folder: str | None) -> dict[str, bytes]:
        if folder is None:
            return self._metadata[None]
        return self._metadata[self._existing(folder).name]

    def _metadataOf(self, folder: str | None) -> dict[str, bytes]:
        return dict(self._entries(folder))

    def _updateMetadata(
        self,
        folder: str | None,
        changes: dict[str, bytes | None],
        check: Callable[[dict[str, bytes]], None] | None = None,
    ) -> None:
        entries = self._entries(folder)
        updated = dict(entries)
        for name, value in changes.items():
            known = next((old for old in updated if old.casefold() == name.casefold()), None)
            if known is not None:
                del updated[known]
            if value is not None:
                updated[known if known is not None else name] = value
        if updated == entries:
            return
        if check is not None:
            check(updated)
        entries.clear()
        entries.update(updated)

    # IMailStore, IQuotaStore, ISpecialUseStore, IMetadataStore: what a disk
    # or network store answers later answers with a Deferred

    def getFolder(self, name: str) -> Deferred[IMailFolder]:
        return maybeDeferred(self._existing, name)

    def listFolders(self) -> Deferred[list[str]]:
        return maybeDeferred(self._listFolders)

    def createFolder(self, name: str) -> Deferred[IMailFolder]:
        return maybeDeferred(self._createFolder, name)

    def deleteFolder(self, name: str) -> Deferred[None]:
        """Delete a folder and its messages; its sub-folders stay."""
        return maybeDeferred(self._deleteFolder, name)

    def renameFolder(self, old: str, new: str) -> Deferred[None]:
        """
        Rename a folder and its sub-folders (the folder objects keep their
        identity, UIDVALIDITY and MAILBOXID).  Renaming INBOX moves its
        messages into a new folder and leaves INBOX empty.
        """
        return maybeDeferred(self._renameFolder, old, new)

    def subscriptions(self) -> Deferred[list[str]]:
        return maybeDeferred(self._listSubscriptions)

    def subscribe(self, name: str) -> Deferred[None]:
        return maybeDeferred(self._subscribe, name)

    def unsubscribe(self, name: str) -> Deferred[None]:
        return maybeDeferred(self._unsubscribe, name)

    def quota(self) -> Deferred[QuotaUsage | None]:
        return maybeDeferred(self._quota)

    def checkQuota(self, size: int, count: int = 1) -> Deferred[None]:
        return maybeDeferred(self._checkQuota, size, count)

    def recalculateQuota(self) -> Deferred[QuotaUsage | None]:
        return maybeDeferred(self._recalculateQuota)

    def specialUse(self) -> Deferred[dict[str, frozenset[str]] | None]:
        return maybeDeferred(self._currentSpecialUse)

    def updateSpecialUse(self, changes: dict[str, frozenset[str]]) -> Deferred[None]:
        return maybeDeferred(self._updateSpecialUse, changes)

    def metadata(self, folder: str | None) -> Deferred[dict[str, bytes]]:
        return maybeDeferred(self._metadataOf, folder)

    def updateMetadata(
        self,
        folder: str | None,
        changes: dict[str, bytes | None],
        check: Callable[[dict[str, bytes]], None] | None = None,
    ) -> Deferred[None]:
        return maybeDeferred(self._updateMetadata, folder, changes, check)

    # IURLAuthStore

    def mailboxKeys(self) -> MemoryMailboxKeys:
        return self._keys
