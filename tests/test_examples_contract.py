"""
The SQLite realm of C{examples/custom_realm.py} passes the store, folder and
realm contracts (which check that it answers as the store seam declares):
the example a developer copies is a complete store.
"""

from __future__ import annotations

import importlib.util
import sqlite3
import sys
from pathlib import Path
from types import ModuleType

from twisted.trial.unittest import TestCase

from tmail.interfaces import IMailRealm, IMailStore, IUserDirectory
from tmail.testing import MailFolderTestsMixin, MailRealmTestsMixin, MailStoreTestsMixin
from tmail.testing.stateful import FolderModelTestsMixin, StoreModelTestsMixin

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "custom_realm.py"


def loadExample() -> ModuleType:
    module = sys.modules.get("custom_realm")
    if module is None:
        spec = importlib.util.spec_from_file_location("custom_realm", EXAMPLE)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["custom_realm"] = module
        spec.loader.exec_module(module)
    return module


def sqliteStore(testCase: TestCase, path: Path | None = None) -> IMailStore:
    """
    The example's store of one user, in a new database (or, given C{path},
    over that database through a connection of its own, as another process).
    """
    example = loadExample()
    if path is None:
        path = Path(testCase.mktemp())
        path.mkdir()
        path = path / "mail.sqlite3"
    db = sqlite3.connect(path)
    testCase.addCleanup(db.close)
    db.executescript(example.SCHEMA)
    store: IMailStore = example.SQLiteStore(db, "alice@example.test")
    return store


def databasePath(store: IMailStore) -> Path:
    """The file of the example store's database."""
    [(_, _, path)] = store.db.execute("PRAGMA database_list").fetchall()  # type: ignore[attr-defined]
    return Path(path)


class SQLiteStoreContractTests(MailStoreTestsMixin, MailFolderTestsMixin, TestCase):
    def makeStore(self) -> IMailStore:
        return sqliteStore(self)

    def reopenStore(self, store: IMailStore) -> IMailStore:
        return sqliteStore(self, databasePath(store))


class SQLiteFolderModelTests(FolderModelTestsMixin, TestCase):
    timeout = 300

    def makeStore(self) -> IMailStore:
        return sqliteStore(self)

    def reopenStore(self, store: IMailStore) -> IMailStore:
        return sqliteStore(self, databasePath(store))


class SQLiteRealmContractTests(MailRealmTestsMixin, TestCase):
    def makeRealm(self, directory: IUserDirectory) -> IMailRealm:
        realm: IMailRealm = loadExample().SQLiteRealm(
            directory, Path(self.mktemp()) / "mail.sqlite3"
        )
        self.addCleanup(realm.db.close)  # type: ignore[attr-defined]
        return realm


class SQLiteStoreModelTests(StoreModelTestsMixin, TestCase):
    timeout = 300

    def makeStore(self) -> IMailStore:
        return sqliteStore(self)

    def reopenStore(self, store: IMailStore) -> IMailStore:
        return sqliteStore(self, databasePath(store))
