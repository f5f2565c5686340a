"""
L{tmail.changes}: a folder's changes in this process are announced under
its key; a change announced by another process has the folder open here
look again, and is not announced back.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from pathlib import Path

from tmail.changes import ChangeHub, hub
from tmail.store.maildir import MaildirStore


class _Folder:
    """A folder that has changed when told, as a store's would after a write."""

    def __init__(self) -> None:
        self.listeners: list[Callable[[object], None]] = []
        self.refreshed = 0
        self.pending = False

    def addListener(self, listener: Callable[[object], None]) -> None:
        self.listeners.append(listener)

    def changed(self) -> None:
        for listener in self.listeners:
            listener(self)

    def refresh(self) -> None:
        self.refreshed += 1
        if self.pending:
            self.pending = False
            self.changed()


def test_maildir_folders_are_registered_under_their_directory(tmp_path: Path) -> None:
    store = MaildirStore(tmp_path / "mail")
    store.createFolder("Archive")
    inbox = store.getFolder("INBOX")
    archive = store.getFolder("Archive")
    assert hub.changedElsewhere(str(tmp_path / "mail"))
    assert hub.changedElsewhere(str(tmp_path / "mail" / ".Archive"))
    store.renameFolder("Archive", "Old")
    assert hub.changedElsewhere(str(tmp_path / "mail" / ".Old"))
    del inbox, archive


def test_a_change_elsewhere_refreshes_the_open_folder_without_echo() -> None:
    from zope.interface import directlyProvides

    from tmail.interfaces import IIncrementalFolder

    hub = ChangeHub()
    heard: list[str] = []
    hub.announceTo(heard.append)
    folder = _Folder()
    directlyProvides(folder, IIncrementalFolder)
    hub.opened("/mail/alice", folder)  # type: ignore[arg-type]
    folder.pending = True
    assert hub.changedElsewhere("/mail/alice")
    assert folder.refreshed == 1
    assert heard == []
    folder.changed()
    assert heard == ["/mail/alice"]


def test_folders_nobody_holds_are_forgotten() -> None:
    from zope.interface import directlyProvides

    from tmail.interfaces import IIncrementalFolder

    hub = ChangeHub()
    folder = _Folder()
    directlyProvides(folder, IIncrementalFolder)
    hub.opened("/mail/bob", folder)  # type: ignore[arg-type]
    del folder
    gc.collect()
    assert not hub.changedElsewhere("/mail/bob")
