"""
A realm that keeps mail in SQLite instead of Maildir.

A realm is the one place that maps a user to storage, so custom storage is a
realm subclass whose C{createStore} returns an object providing
L{tmail.interfaces.IMailStore}.  Everything else -- SMTP delivery, IMAP,
POP3, the admin CLI, the user directory -- works unchanged.

Use it from a configuration file (with this folder on C{PYTHONPATH})::

    [realm]
    backend = "custom_realm:SQLiteRealm"

Mail then lives in C{data_dir/mail.sqlite3}.

The store seam (L{tmail.interfaces}) splits a store's methods in two: what
a front end reads from the folder's index (C{messages}, C{uidValidity},
C{uidNext}) answers at once, and the operations that touch disk or network
(C{getFolder}, C{openMessage}, C{commit}, C{setFlags}, C{expunge},
C{copyMessage}, the folder operations) answer with a C{Deferred}.  Here
each of those does its SQLite work at once and answers with a Deferred
that has fired (C{maybeDeferred}: an exception becomes its failure); a
store over a network database would fire it when the answer comes.
"""

from __future__ import annotations

import io
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import BinaryIO

from twisted.internet.defer import Deferred, maybeDeferred
from zope.interface import implementer

from tmail.config.schema import Settings
from tmail.errors import FolderExists, InvalidFolderName, NoSuchFolder
from tmail.interfaces import (
    IMailFolder,
    IMailStore,
    IPendingMessage,
    IUserDirectory,
    MessageInfo,
)
from tmail.realm.virtual import VirtualDomainRealm

SCHEMA = """
CREATE TABLE IF NOT EXISTS folders (
    user TEXT NOT NULL, name TEXT NOT NULL,
    uidvalidity INTEGER NOT NULL, uidnext INTEGER NOT NULL,
    subscribed INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user, name));
CREATE TABLE IF NOT EXISTS messages (
    user TEXT NOT NULL, folder TEXT NOT NULL, uid INTEGER NOT NULL,
    flags TEXT NOT NULL, internaldate REAL NOT NULL, body BLOB NOT NULL,
    PRIMARY KEY (user, folder, uid));
CREATE TABLE IF NOT EXISTS uidvalidities (
    user TEXT PRIMARY KEY, last INTEGER NOT NULL);
"""


@implementer(IPendingMessage)
class SQLitePendingMessage:
    """Collects the bytes in memory; commit inserts them in one transaction."""

    def __init__(self, folder: SQLiteFolder, flags: Iterable[str], date: float | None) -> None:
        self.folder = folder
        self.flags = frozenset(flags)
        self.date = time.time() if date is None else date
        self.buffer = io.BytesIO()

    def write(self, data: bytes) -> None:
        self.buffer.write(data)

    def publish(self) -> None:
        """Nothing to do ahead: SQLite makes the row durable at commit."""

    def commit(self) -> Deferred[int]:  # type: ignore[override]
        return maybeDeferred(self.folder._insert, self.buffer.getvalue(), self.flags, self.date)

    def abort(self) -> None:
        self.buffer = io.BytesIO()


@implementer(IMailFolder)
class SQLiteFolder:
    """One folder: rows of the C{messages} table."""

    def __init__(self, store: SQLiteStore, name: str) -> None:
        self.store = store
        self.name = name
        self._listeners: list[Callable[[IMailFolder], None]] = []

    @property
    def _db(self) -> sqlite3.Connection:
        return self.store.db

    def _key(self) -> tuple[str, str]:
        return (self.store.user, self.name)

    def _folderRow(self) -> tuple[int, int]:
        row = self._db.execute(
            "SELECT uidvalidity, uidnext FROM folders WHERE user=? AND name=?", self._key()
        ).fetchone()
        if row is None:
            raise NoSuchFolder(self.name)
        return int(row[0]), int(row[1])

    def _changed(self) -> None:
        for listener in list(self._listeners):
            listener(self)

    def uidValidity(self) -> int:
        return self._folderRow()[0]

    def uidNext(self) -> int:
        return self._folderRow()[1]

    def messages(self, claimRecent: bool = True) -> Sequence[MessageInfo]:
        rows = self._db.execute(
            "SELECT uid, flags, length(body), internaldate FROM messages"
            " WHERE user=? AND folder=? ORDER BY uid",
            self._key(),
        )
        return [
            MessageInfo(
                uid=uid,
                flags=frozenset(flags.split()),
                size=size,
                internaldate=date,
                key=f"{self.uidValidity()}.{uid}",
            )
            for uid, flags, size, date in rows
        ]

    def openMessage(self, uid: int) -> Deferred[BinaryIO]:  # type: ignore[override]
        return maybeDeferred(self._open, uid)

    def _open(self, uid: int) -> BinaryIO:
        row = self._db.execute(
            "SELECT body FROM messages WHERE user=? AND folder=? AND uid=?", (*self._key(), uid)
        ).fetchone()
        if row is None:
            raise KeyError(uid)
        return io.BytesIO(row[0])

    def beginMessage(
        self, flags: Iterable[str] = (), internaldate: float | None = None
    ) -> IPendingMessage:
        return SQLitePendingMessage(self, flags, internaldate)

    def _insert(self, body: bytes, flags: frozenset[str], date: float) -> int:
        with self._db:
            _, uid = self._folderRow()
            self._db.execute(
                "INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?)",
                (*self._key(), uid, " ".join(sorted(flags)), date, body),
            )
            self._db.execute(
                "UPDATE folders SET uidnext=? WHERE user=? AND name=?", (uid + 1, *self._key())
            )
        self._changed()
        return uid

    def setFlags(self, uid: int, flags: Iterable[str]) -> Deferred[MessageInfo]:  # type: ignore[override]
        return maybeDeferred(self._setFlags, uid, frozenset(flags))

    def _setFlags(self, uid: int, flagSet: frozenset[str]) -> MessageInfo:
        with self._db:
            cursor = self._db.execute(
                "UPDATE messages SET flags=? WHERE user=? AND folder=? AND uid=?",
                (" ".join(sorted(flagSet)), *self._key(), uid),
            )
        if cursor.rowcount == 0:
            raise KeyError(uid)
        self._changed()
        return next(info for info in self.messages() if info.uid == uid)

    def expunge(self, uids: Iterable[int]) -> Deferred[list[int]]:  # type: ignore[override]
        return maybeDeferred(self._expunge, list(uids))

    def _expunge(self, uids: Iterable[int]) -> list[int]:
        removed = []
        with self._db:
            for uid in uids:
                cursor = self._db.execute(
                    "DELETE FROM messages WHERE user=? AND folder=? AND uid=?", (*self._key(), uid)
                )
                if cursor.rowcount:
                    removed.append(uid)
        if removed:
            self._changed()
        return removed

    def copyMessage(self, uid: int, target: IMailFolder) -> Deferred[int]:  # type: ignore[override]
        def copy() -> Deferred[int]:
            info = next((m for m in self.messages() if m.uid == uid), None)
            if info is None:
                raise KeyError(uid)
            pending = target.beginMessage(info.flags, info.internaldate)
            pending.write(self._open(uid).read())
            committed: Deferred[int] = maybeDeferred(pending.commit)
            return committed

        return maybeDeferred(copy)

    def addListener(self, listener: Callable[[IMailFolder], None]) -> None:
        self._listeners.append(listener)

    def removeListener(self, listener: Callable[[IMailFolder], None]) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)


@implementer(IMailStore)
class SQLiteStore:
    """All folders of one user, in a shared SQLite database."""

    delimiter = "/"

    def __init__(self, db: sqlite3.Connection, user: str) -> None:
        self.db = db
        self.user = user
        self._folders: dict[str, SQLiteFolder] = {}
        self._ensure("INBOX")

    def _ensure(self, name: str) -> None:
        """
        Create folder C{name} unless it exists, with a UIDVALIDITY above any
        this user's folders ever had: a folder re-created under a name (after
        a delete or a rename) must not give old UIDs to new messages.
        """
        with self.db:
            exists = self.db.execute(
                "SELECT 1 FROM folders WHERE user=? AND name=?", (self.user, name)
            ).fetchone()
            if exists:
                return
            (last,) = self.db.execute(
                "SELECT max(coalesce((SELECT last FROM uidvalidities WHERE user=?), 0),"
                " coalesce((SELECT max(uidvalidity) FROM folders WHERE user=?), 0))",
                (self.user, self.user),
            ).fetchone()
            validity = max(int(time.time()), last + 1)
            self.db.execute(
                "INSERT OR REPLACE INTO uidvalidities (user, last) VALUES (?, ?)",
                (self.user, validity),
            )
            self.db.execute(
                "INSERT INTO folders (user, name, uidvalidity, uidnext) VALUES (?, ?, ?, 1)",
                (self.user, name, validity),
            )

    @staticmethod
    def _normal(name: str) -> str:
        if name.upper() == "INBOX":
            return "INBOX"
        parts = name.split("/")
        if not name or any(not part or part in (".", "..") for part in parts):
            raise InvalidFolderName(name)
        return name

    def listFolders(self) -> Deferred[list[str]]:
        return maybeDeferred(self._names)

    def getFolder(self, name: str) -> Deferred[IMailFolder]:
        return maybeDeferred(self._folder, name)

    def createFolder(self, name: str) -> Deferred[IMailFolder]:
        return maybeDeferred(self._create, name)

    def deleteFolder(self, name: str) -> Deferred[None]:
        return maybeDeferred(self._delete, name)

    def renameFolder(self, old: str, new: str) -> Deferred[None]:
        return maybeDeferred(self._rename, old, new)

    def subscriptions(self) -> Deferred[list[str]]:
        return maybeDeferred(self._subscribed)

    def subscribe(self, name: str) -> Deferred[None]:
        return maybeDeferred(self._subscribe, name, 1)

    def unsubscribe(self, name: str) -> Deferred[None]:
        return maybeDeferred(self._subscribe, name, 0)

    def _names(self) -> list[str]:
        rows = self.db.execute("SELECT name FROM folders WHERE user=? ORDER BY name", (self.user,))
        return [name for (name,) in rows]

    def _folder(self, name: str) -> SQLiteFolder:
        name = self._normal(name)
        if name not in self._names():
            raise NoSuchFolder(name)
        return self._folders.setdefault(name, SQLiteFolder(self, name))

    def _create(self, name: str) -> SQLiteFolder:
        name = self._normal(name)
        if name in self._names():
            raise FolderExists(name)
        parts = name.split("/")
        for depth in range(1, len(parts) + 1):
            self._ensure("/".join(parts[:depth]))
        return self._folder(name)

    def _delete(self, name: str) -> None:
        name = self._normal(name)
        if name == "INBOX":
            raise InvalidFolderName("INBOX cannot be deleted")
        self._folder(name)
        with self.db:
            self.db.execute("DELETE FROM messages WHERE user=? AND folder=?", (self.user, name))
            self.db.execute("DELETE FROM folders WHERE user=? AND name=?", (self.user, name))
        self._folders.pop(name, None)

    def _rename(self, old: str, new: str) -> None:
        old, new = self._normal(old), self._normal(new)
        if new in self._names():
            raise FolderExists(new)
        source = self._folder(old)
        if old == "INBOX":
            target = self._create(new)
            for info in source.messages():
                target._insert(source._open(info.uid).read(), info.flags, info.internaldate)
            source._expunge(info.uid for info in source.messages())
            return
        with self.db:
            for name in self._names():
                if name == old or name.startswith(old + "/"):
                    renamed = new + name[len(old) :]
                    for table, column in (("folders", "name"), ("messages", "folder")):
                        self.db.execute(
                            f"UPDATE {table} SET {column}=? WHERE user=? AND {column}=?",
                            (renamed, self.user, name),
                        )
        self._folders.clear()

    def _subscribed(self) -> list[str]:
        rows = self.db.execute(
            "SELECT name FROM folders WHERE user=? AND subscribed=1 ORDER BY name", (self.user,)
        )
        return [name for (name,) in rows]

    def _subscribe(self, name: str, value: int) -> None:
        with self.db:
            self.db.execute(
                "UPDATE folders SET subscribed=? WHERE user=? AND name=?",
                (value, self.user, self._normal(name)),
            )


class SQLiteRealm(VirtualDomainRealm):
    """The virtual-domain realm, with every user's mail in one SQLite file."""

    def __init__(self, directory: IUserDirectory, database: Path) -> None:
        super().__init__(directory, database.parent / "mail")
        database.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(database, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)
        self.db.isolation_level = "DEFERRED"

    @classmethod
    def fromSettings(cls, settings: Settings, directory: IUserDirectory) -> SQLiteRealm:
        """How C{backend = "custom_realm:SQLiteRealm"} builds it."""
        return cls(directory, settings.data_dir / "mail.sqlite3")

    def createStore(self, user: str) -> IMailStore:
        return SQLiteStore(self.db, user)
