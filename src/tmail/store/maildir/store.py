"""
One user's Maildir++ directory: its folders, subscriptions, special uses,
metadata and quota.

Every operation that touches the disk answers with a L{Deferred}: it is a
coroutine that hands each piece of file work (a listing, the renames of a
folder tree, a dot-lock wait, an fsync) to the store's
L{tmail.store.filework.FileWork} and changes the shared folder objects
only between those pieces, in the caller's (the reactor) thread.  The
operations that change the folder tree or the files kept beside it
(create, delete, rename, subscriptions, special uses, metadata) run one at
a time through the store's L{Serial}; readers do not wait for them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from twisted.internet.defer import Deferred, ensureDeferred, maybeDeferred, succeed
from twisted.logger import Logger
from zope.interface import implementer

from tmail.changes import hub as _changes
from tmail.errors import FolderExists, InvalidFolderName, NoSuchFolder
from tmail.fsutil import (
    fsyncDirectory,
    fullDiskIsStoreFull,
    writeAll,
)
from tmail.interfaces import (
    IDeliveryStore,
    IMailFolder,
    IMailStore,
    IMetadataStore,
    IQuotaStore,
    ISpecialUseStore,
    IURLAuthStore,
    QuotaUsage,
)
from tmail.store import keywords as _keywords
from tmail.store import metadata as _metadata
from tmail.store import specialuse as _specialuse
from tmail.store import subscriptions as _subscriptions
from tmail.store.dotlock import DotLock
from tmail.store.filework import FileWork, Serial, defaultFileWork
from tmail.store.flags import splitFilename
from tmail.store.maildir.folder import (
    _DELETED_SUFFIX,
    _RENAME_JOURNAL,
    _SUBDIRS,
    MaildirFolder,
)
from tmail.store.maildir.pending import _uniqueName
from tmail.store.naming import (
    DELIMITER,
    INBOX,
    diskName,
    nameFromDisk,
    normalizeName,
)
from tmail.store.quota import MaildirQuota, QuotaLimits, folderUsage
from tmail.store.uidvalidity import nextUidValidity
from tmail.store.urlauthkeys import MailboxKeyFile

_log = Logger()


@implementer(
    IMailStore, IDeliveryStore, IQuotaStore, ISpecialUseStore, IMetadataStore, IURLAuthStore
)
class MaildirStore:
    """
    One user's Maildir++ directory as an L{IMailStore}.

    With C{quota} (a callable returning the user's current L{QuotaLimits}),
    the store keeps the Maildir++ C{maildirsize} file (see
    L{tmail.store.quota}): deliveries and copies that would go over a limit
    fail with L{tmail.errors.OverQuota}, and expunges and folder deletions
    count back down.  Without it, L{quota} answers C{None}.

    C{fileWork} runs the file work: a server's thread pool
    (L{defaultFileWork} when not given), or
    L{tmail.store.filework.INLINE} for tools and tests, whose every
    Deferred has fired when returned (see L{tmail.store.blocking}).

    Renaming and deleting folders need no steps (L{ISteppedStore}): their
    file work, however long, runs out of the caller's thread.

    @ivar root: the Maildir (C{cur/ new/ tmp/} of INBOX directly in it),
        created with mode 0700 on first use.
    """

    delimiter = DELIMITER

    def __init__(
        self,
        root: Path,
        quota: Callable[[], QuotaLimits] | None = None,
        fileWork: FileWork | None = None,
    ) -> None:
        self.root = Path(root)
        self._folders: dict[str, MaildirFolder] = {}
        self._rootReady = False
        self._quota = None if quota is None else MaildirQuota(self.root, quota)
        self._fileWork: FileWork = defaultFileWork() if fileWork is None else fileWork
        self._tree = Serial()

    def __repr__(self) -> str:
        return f"<MaildirStore {str(self.root)!r}>"

    # File work: plain functions of paths, run by the FileWork.

    def _ensureRoot(self) -> None:
        if self._rootReady:
            return
        with fullDiskIsStoreFull():
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            for sub in _SUBDIRS:
                (self.root / sub).mkdir(mode=0o700, exist_ok=True)
        self._finishInterruptedRenames()
        self._rootReady = True

    def _pathOf(self, name: str) -> Path:
        return self.root if name == INBOX else self.root / diskName(name)

    def _newUidValidity(self, notBefore: int) -> int:
        self._ensureRoot()
        return nextUidValidity(self.root, notBefore)

    def _exists(self, name: str) -> bool:
        return name == INBOX or self._pathOf(name).is_dir()

    def _makeFolderDirectory(self, name: str) -> bool:
        """Create folder C{name}'s directory; return False when it already existed."""
        path = self._pathOf(name)
        with fullDiskIsStoreFull():
            try:
                path.mkdir(mode=0o700)
            except FileExistsError:
                return False
            for sub in _SUBDIRS:
                (path / sub).mkdir(mode=0o700, exist_ok=True)
            (path / "maildirfolder").touch(mode=0o600)
            fsyncDirectory(self.root)
        return True

    def _makeParents(self, name: str) -> None:
        components = name.split(DELIMITER)
        for depth in range(1, len(components)):
            parent = DELIMITER.join(components[:depth])
            if parent != INBOX:
                self._makeFolderDirectory(parent)

    def _makeFolder(self, name: str) -> None:
        """Create folder C{name} and its missing parents; L{FolderExists} if it exists."""
        if name == INBOX or self._exists(name):
            raise FolderExists(name)
        self._makeParents(name)
        if not self._makeFolderDirectory(name):
            raise FolderExists(name)

    def _folderNames(self) -> list[str]:
        self._ensureRoot()
        names = []
        with os.scandir(self.root) as entries:
            for entry in entries:
                if entry.name.startswith(".") and entry.is_dir():
                    name = nameFromDisk(entry.name)
                    if name is not None:
                        names.append(name)
        return [INBOX, *sorted(names)]

    def _trash(self, name: str) -> tuple[Path, int, int]:
        """
        Move folder C{name}'s directory into C{tmp/} (the folder is gone at
        once); where it went and the bytes and messages it held.
        """
        trash = self.root / "tmp" / (_uniqueName() + _DELETED_SUFFIX)
        try:
            os.rename(self._pathOf(name), trash)
        except FileNotFoundError:
            raise NoSuchFolder(name) from None
        fsyncDirectory(self.root)
        freedBytes, freedCount = (0, 0) if self._quota is None else folderUsage(trash)
        return trash, freedBytes, freedCount

    def _renameTree(self, source: str, target: str) -> list[tuple[str, str]]:
        """Rename folder C{source} and its sub-folders durably; the (old, new) names."""
        if not self._exists(source):
            raise NoSuchFolder(source)
        if target.startswith(source + DELIMITER):
            raise InvalidFolderName(f"cannot move {source!r} into itself")
        moves = [(source, target)] + [
            (child, normalizeName(target + child[len(source) :]))
            for child in self._folderNames()
            if child.startswith(source + DELIMITER)
        ]
        for _, newName in moves:
            if self._exists(newName):
                raise FolderExists(newName)
        self._makeParents(target)
        diskMoves = [(diskName(a), diskName(b)) for a, b in moves]
        journal = self._writeRenameJournal(diskMoves)
        self._applyRenames(diskMoves)
        fsyncDirectory(self.root)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(journal)
        return moves

    def _writeRenameJournal(self, moves: list[tuple[str, str]]) -> Path:
        """
        Durably record the directory renames a folder rename is about to
        make, so that a crash half-way is finished by the next process to
        open the Maildir instead of leaving the tree split between names.
        """
        name = f"{_RENAME_JOURNAL}.{_uniqueName()}"
        temporary = self.root / "tmp" / name
        text = "".join(f"{a}\t{b}\n" for a, b in moves).encode("utf-8", "surrogateescape")
        with fullDiskIsStoreFull():
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                writeAll(fd, text)
                os.fsync(fd)
            finally:
                os.close(fd)
            journal = self.root / name
            os.rename(temporary, journal)
            fsyncDirectory(self.root)
        return journal

    def _applyRenames(self, moves: list[tuple[str, str]]) -> None:
        """Rename Maildir++ directories; one already moved (by a recovery) is skipped."""
        for old, new in moves:
            try:
                os.rename(self.root / old, self.root / new)
            except FileNotFoundError:
                if not (self.root / new).is_dir():
                    raise

    def _finishInterruptedRenames(self) -> None:
        """Complete the folder renames a crashed process left journals of."""
        prefix = _RENAME_JOURNAL + "."
        for entry in os.listdir(self.root):
            if not entry.startswith(prefix):
                continue
            journal = self.root / entry
            try:
                text = journal.read_text("utf-8", "surrogateescape")
            except FileNotFoundError:
                continue
            moves = [
                (old, new)
                for line in text.splitlines()
                for old, tab, new in [line.partition("\t")]
                if tab
                and old.startswith(".")
                and new.startswith(".")
                and "/" not in old + new
                and (self.root / old).is_dir()
                and not (self.root / new).exists()
            ]
            _log.info(
                "Finishing an interrupted folder rename in {root}: {count} folders",
                root=str(self.root),
                count=len(moves),
            )
            self._applyRenames(moves)
            fsyncDirectory(self.root)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(journal)

    def _moveInboxFiles(self, target: str) -> None:
        """
        Move INBOX's messages (and its keywords) into folder C{target}.  A
        file renamed meanwhile (a flag change) is looked for once more.
        """
        destination = self._pathOf(target)
        keywords = self.root / _keywords.FILENAME
        if keywords.exists():
            shutil.copyfile(keywords, destination / _keywords.FILENAME)
        for sub in ("new", "cur"):
            source, moved = self.root / sub, False
            prefix, targetPrefix = f"{source}{os.sep}", f"{destination / sub}{os.sep}"
            missed: set[str] = set()
            for attempt in range(2):
                names = os.listdir(source)
                if attempt:
                    names = [name for name in names if splitFilename(name)[0] in missed]
                for filename in names:
                    if filename.startswith("."):
                        continue
                    try:
                        os.rename(prefix + filename, targetPrefix + filename)
                        moved = True
                    except FileNotFoundError:
                        missed.add(splitFilename(filename)[0])
                if not missed:
                    break
            if moved:
                fsyncDirectory(destination / sub)
                fsyncDirectory(source)

    # The folder tree

    async def _ready(self) -> None:
        if not self._rootReady:
            await self._fileWork.run(self._ensureRoot)

    def listFolders(self) -> Deferred[list[str]]:
        return self._fileWork.run(self._folderNames)

    def getFolder(self, name: str) -> Deferred[IMailFolder]:
        """
        The folder, its index loaded (a first look at a large folder reads
        its saved index or lists it, out of the caller's thread).
        """
        return ensureDeferred(self._getFolder(name))

    async def _getFolder(self, name: str, refreshed: bool = True) -> IMailFolder:
        canonical = normalizeName(name)
        await self._ready()
        if canonical != INBOX and not await self._fileWork.run(self._exists, canonical):
            self._folders.pop(canonical, None)
            raise NoSuchFolder(canonical)
        if not refreshed:
            return self._folderObject(canonical)
        return await self._opened(canonical)

    def deliveryFolder(self, name: str) -> Deferred[IMailFolder]:
        """
        The folder, its index not loaded for it: a delivery leaves new
        mail in C{new/} and costs no listing of the folder.
        """
        return ensureDeferred(self._getFolder(name, refreshed=False))

    def _folderObject(self, canonical: str) -> MaildirFolder:
        """The one folder object of C{canonical} (which exists)."""
        folder = self._folders.get(canonical)
        if folder is None:
            folder = self._folders[canonical] = MaildirFolder(
                canonical, self._pathOf(canonical), self._newUidValidity, fileWork=self._fileWork
            )
            folder._quota = self._quota
            _changes.opened(str(self._pathOf(canonical)), folder)
        return folder

    async def _opened(self, canonical: str) -> MaildirFolder:
        """The one folder object of C{canonical} (which exists), refreshed."""
        folder = self._folderObject(canonical)
        await maybeDeferred(folder.refresh)
        return folder

    def createFolder(self, name: str) -> Deferred[IMailFolder]:
        return self._tree.run(self._createFolder, name)

    async def _createFolder(self, name: str) -> IMailFolder:
        canonical = normalizeName(name)
        await self._ready()
        await self._fileWork.run(self._makeFolder, canonical)
        return await self._opened(canonical)

    def deleteFolder(self, name: str) -> Deferred[None]:
        """
        Delete a folder and its messages; its sub-folders stay (a Maildir++
        parent is only a name prefix).  Fails with L{InvalidFolderName} for
        INBOX.  The folder is gone (its quota given back) at once; the
        Deferred fires when its files are removed too.  What a stop half
        way leaves in C{tmp/} is swept with the rest of its debris.
        """
        return ensureDeferred(self._deleteFolder(name))

    async def _deleteFolder(self, name: str) -> None:
        trash = await self._tree.run(self._unlinkFolder, name)
        await self._fileWork.run(shutil.rmtree, trash, ignore_errors=True)

    async def _unlinkFolder(self, name: str) -> Path:
        canonical = normalizeName(name)
        if canonical == INBOX:
            raise InvalidFolderName("INBOX cannot be deleted")
        await self._ready()
        trash, freedBytes, freedCount = await self._fileWork.run(self._trash, canonical)
        if self._quota is not None:
            await self._fileWork.run(self._quota.record, -freedBytes, -freedCount)
        folder = self._folders.pop(canonical, None)
        if folder is not None:
            folder._markDeleted()
        await self._fileWork.run(
            self._changeSpecialUse, lambda current: {**current, canonical: frozenset()}
        )
        return trash

    def renameFolder(self, old: str, new: str) -> Deferred[None]:
        """
        Rename a folder and its sub-folders, creating missing parents of the
        new name.  Renaming INBOX moves its messages into a new folder and
        leaves INBOX empty (RFC 3501 6.3.5): INBOX loses them and the new
        folder gains them, as if another program moved them.
        """
        return self._tree.run(self._renameFolder, old, new)

    async def _renameFolder(self, old: str, new: str) -> None:
        source = normalizeName(old)
        target = normalizeName(new)
        if target == INBOX:
            raise FolderExists(INBOX)
        await self._ready()
        if source == INBOX:
            await self._renameInbox(target)
            return
        moves = await self._fileWork.run(self._renameTree, source, target)
        for oldName, newName in moves:
            folder = self._folders.pop(oldName, None)
            if folder is not None:
                folder._moved(newName, self._pathOf(newName))
                self._folders[newName] = folder
                _changes.opened(str(self._pathOf(newName)), folder)
        await self._fileWork.run(
            self._changeSpecialUse,
            lambda current: _specialuse.renamed(current, source, target, DELIMITER),
        )

    async def _renameInbox(self, target: str) -> None:
        """
        Move INBOX's messages into a new folder C{target}, indexed when
        first used, as a folder another program filled; INBOX's sessions
        (if any) see them expunged.
        """
        await self._fileWork.run(self._makeFolder, target)
        await self._fileWork.run(self._moveInboxFiles, target)
        inbox = self._folders.get(INBOX)
        if inbox is not None:
            inbox._dirStamp = None
            await maybeDeferred(inbox.refresh)

    # Quota

    def quota(self) -> Deferred[QuotaUsage | None]:
        quota = self._quota
        if quota is None:
            return succeed(None)

        def usage() -> QuotaUsage:
            self._ensureRoot()
            return quota.usage()

        return self._fileWork.run(usage)

    def checkQuota(self, size: int, count: int = 1) -> Deferred[None]:
        """Fails with L{tmail.errors.OverQuota}; reads nothing without limits."""
        quota = self._quota
        if quota is None or quota.limits().unlimited:
            return succeed(None)

        def check() -> None:
            self._ensureRoot()
            quota.check(size, count)

        return self._fileWork.run(check)

    def recalculateQuota(self) -> Deferred[QuotaUsage | None]:
        quota = self._quota
        if quota is None:
            return succeed(None)

        def recalculate() -> QuotaUsage:
            self._ensureRoot()
            return quota.recalculate()

        return self._fileWork.run(recalculate)

    # Subscriptions

    def _readSubscriptions(self) -> list[str]:
        try:
            text = (self.root / _subscriptions.FILENAME).read_text("utf-8", errors="replace")
        except FileNotFoundError:
            return []
        return _subscriptions.parse(text)

    def _changeSubscriptions(self, change: Callable[[list[str]], list[str]]) -> None:
        self._ensureRoot()
        with DotLock(self.root / _subscriptions.FILENAME) as lock:
            current = self._readSubscriptions()
            updated = change(current)
            if updated != current:
                lock.replace(_subscriptions.serialize(updated))

    def subscriptions(self) -> Deferred[list[str]]:
        return self._fileWork.run(self._readSubscriptions)

    def subscribe(self, name: str) -> Deferred[None]:
        return self._tree.run(self._subscribe, name, True)

    def unsubscribe(self, name: str) -> Deferred[None]:
        return self._tree.run(self._subscribe, name, False)

    async def _subscribe(self, name: str, subscribed: bool) -> None:
        canonical = normalizeName(name)

        def change(names: list[str]) -> list[str]:
            others = [n for n in names if n != canonical]
            if not subscribed:
                return others
            return names if canonical in names else [*names, canonical]

        await self._fileWork.run(self._changeSubscriptions, change)

    # Special-use attributes (RFC 6154)

    def _readSpecialUse(self) -> dict[str, frozenset[str]] | None:
        try:
            text = (self.root / _specialuse.FILENAME).read_text("utf-8", errors="surrogateescape")
        except FileNotFoundError:
            return None
        return _specialuse.parse(text)

    def _changeSpecialUse(
        self,
        change: Callable[[dict[str, frozenset[str]]], dict[str, frozenset[str]]],
        create: bool = False,
    ) -> None:
        """Apply C{change} to the recorded attributes (only if recorded, unless C{create})."""
        path = self.root / _specialuse.FILENAME
        if not create and not path.exists():
            return
        self._ensureRoot()
        with DotLock(path) as lock:
            current = self._readSpecialUse()
            updated = {name: values for name, values in change(current or {}).items() if values}
            if current is None or updated != current:
                lock.replace(_specialuse.serialize(updated))

    def specialUse(self) -> Deferred[dict[str, frozenset[str]] | None]:
        def read() -> dict[str, frozenset[str]] | None:
            self._ensureRoot()
            return self._readSpecialUse()

        return self._fileWork.run(read)

    def updateSpecialUse(self, changes: dict[str, frozenset[str]]) -> Deferred[None]:
        return self._tree.run(self._updateSpecialUse, changes)

    async def _updateSpecialUse(self, changes: dict[str, frozenset[str]]) -> None:
        canonical = {normalizeName(name): frozenset(values) for name, values in changes.items()}
        await self._fileWork.run(
            self._changeSpecialUse, lambda current: current | canonical, create=True
        )

    # METADATA (RFC 5464)

    def _metadataPath(self, folder: str | None) -> Path:
        self._ensureRoot()
        if folder is None:
            return self.root / _metadata.SERVER_FILENAME
        canonical = normalizeName(folder)
        if not self._exists(canonical):
            raise NoSuchFolder(canonical)
        return self._pathOf(canonical) / _metadata.FILENAME

    def _readMetadata(self, folder: str | None) -> dict[str, bytes]:
        return _metadata.read(self._metadataPath(folder))

    def _writeMetadata(
        self,
        folder: str | None,
        changes: dict[str, bytes | None],
        check: Callable[[dict[str, bytes]], None] | None,
    ) -> None:
        path = self._metadataPath(folder)
        try:
            _metadata.update(path, changes, check)
        except FileNotFoundError:
            raise NoSuchFolder(folder or "") from None

    def metadata(self, folder: str | None) -> Deferred[dict[str, bytes]]:
        return self._fileWork.run(self._readMetadata, folder)

    def updateMetadata(
        self,
        folder: str | None,
        changes: dict[str, bytes | None],
        check: Callable[[dict[str, bytes]], None] | None = None,
    ) -> Deferred[None]:
        """C{check} is called where the file work runs (a worker thread)."""
        return self._tree.run(self._updateMetadata, folder, changes, check)

    async def _updateMetadata(
        self,
        folder: str | None,
        changes: dict[str, bytes | None],
        check: Callable[[dict[str, bytes]], None] | None,
    ) -> None:
        await self._fileWork.run(self._writeMetadata, folder, changes, check)

    def mailboxKeys(self) -> MailboxKeyFile:
        """The URLAUTH mailbox access keys, in the Maildir's root."""
        self._ensureRoot()
        return MailboxKeyFile(self.root)
