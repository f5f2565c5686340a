"""
L{tmail.changes}: a folder's changes in this process are announced under
its key; a change announced by another process has the folder open here
look again if a session watches it, and is not announced back.
"""

from __future__ import annotations

import gc
from pathlib import Path

from twisted.internet.defer import Deferred
from zope.interface import implementer

from tmail.changes import ChangeHub, hub
from tmail.interfaces import IIncrementalFolder
from tmail.store.maildir import BlockingMaildirStore


@implementer(IIncrementalFolder)
class _Folder:
    """A folder that finds a change when it looks, as a store's would after another's write."""

    def __init__(self, hub: ChangeHub) -> None:
        self.hub = hub
        self.refreshed = 0

    def refresh(self) -> None:
        self.refreshed += 1
        self.hub.changed(self)  # type: ignore[arg-type]


def test_a_change_elsewhere_refreshes_a_watched_folder_without_echo() -> None:
    changes = ChangeHub()
    heard: list[str] = []
    changes.announceTo(heard.append)
    folder = _Folder(changes)
    changes.opened("/mail/alice", folder)  # type: ignore[arg-type]
    changes.watched(folder, True)  # type: ignore[arg-type]
    assert changes.changedElsewhere("/mail/alice")
    assert folder.refreshed == 1
    assert heard == []
    changes.changed(folder)  # type: ignore[arg-type]
    assert heard == ["/mail/alice"]


@implementer(IIncrementalFolder)
class _SlowFolder:
    """A folder whose refresh answers later, finding a change as it ends."""

    def __init__(self, hub: ChangeHub) -> None:
        self.hub = hub
        self.refreshing: list[Deferred[None]] = []

    def refresh(self) -> Deferred[None]:
        refreshed: Deferred[None] = Deferred()
        refreshed.addCallback(lambda _: self.hub.changed(self))  # type: ignore[arg-type]
        self.refreshing.append(refreshed)
        return refreshed


def test_a_refresh_that_answers_later_is_not_announced_back() -> None:
    changes = ChangeHub()
    heard: list[str] = []
    changes.announceTo(heard.append)
    folder = _SlowFolder(changes)
    changes.opened("/mail/alice", folder)  # type: ignore[arg-type]
    changes.watched(folder, True)  # type: ignore[arg-type]
    assert changes.changedElsewhere("/mail/alice")
    assert changes.changedElsewhere("/mail/alice")
    first, second = folder.refreshing
    first.callback(None)
    second.callback(None)
    assert heard == []
    changes.changed(folder)  # type: ignore[arg-type]
    assert heard == ["/mail/alice"]


def test_a_folder_nobody_watches_is_left_alone() -> None:
    """Looking would move its new messages to cur/, claiming them for no session."""
    changes = ChangeHub()
    folder = _Folder(changes)
    changes.opened("/mail/alice", folder)  # type: ignore[arg-type]
    assert not changes.changedElsewhere("/mail/alice")
    changes.watched(folder, True)  # type: ignore[arg-type]
    changes.watched(folder, False)  # type: ignore[arg-type]
    assert not changes.changedElsewhere("/mail/alice")
    assert folder.refreshed == 0


def test_folders_nobody_holds_are_forgotten() -> None:
    changes = ChangeHub()
    folder = _Folder(changes)
    changes.opened("/mail/bob", folder)  # type: ignore[arg-type]
    changes.watched(folder, True)  # type: ignore[arg-type]
    del folder
    gc.collect()
    assert not changes.changedElsewhere("/mail/bob")


def test_maildir_folders_are_known_by_their_directory_while_watched(tmp_path: Path) -> None:
    store = BlockingMaildirStore(tmp_path / "mail")
    store.createFolder("Archive")
    inbox = store.getFolder("INBOX")
    archive = store.getFolder("Archive")
    assert not hub.changedElsewhere(str(tmp_path / "mail"))
    heard: list[object] = []
    inbox.addListener(heard.append)
    archive.addListener(heard.append)
    assert hub.changedElsewhere(str(tmp_path / "mail"))
    assert hub.changedElsewhere(str(tmp_path / "mail" / ".Archive"))
    store.renameFolder("Archive", "Old")
    assert hub.changedElsewhere(str(tmp_path / "mail" / ".Old"))
    inbox.removeListener(heard.append)
    assert not hub.changedElsewhere(str(tmp_path / "mail"))


def test_maildir_changes_are_announced(tmp_path: Path) -> None:
    heard: list[str] = []
    hub.announceTo(heard.append)
    try:
        folder = BlockingMaildirStore(tmp_path / "mail").getFolder("INBOX")
        pending = folder.beginMessage()
        pending.write(b"Subject: hi\r\n\r\nhello\r\n")
        uid = pending.commit()
        folder.changeFlags(uid, ["\\Seen"], [])
        folder.expunge([uid])
    finally:
        hub.stopAnnouncing(heard.append)
    assert len(heard) >= 3
    assert set(heard) == {str(tmp_path / "mail")}


def test_watchers_hear_when_a_folder_starts_and_stops_being_watched() -> None:
    changes = ChangeHub()
    reports: list[tuple[str, bool]] = []
    changes.reportWatchesTo(lambda key, watched: reports.append((key, watched)))
    folder = _Folder(changes)
    changes.opened("/mail/alice/.Drafts", folder)  # type: ignore[arg-type]
    changes.watched(folder, True)  # type: ignore[arg-type]
    changes.watched(folder, True)  # type: ignore[arg-type]
    changes.opened("/mail/alice/.Old", folder)  # type: ignore[arg-type]
    changes.watched(folder, False)  # type: ignore[arg-type]
    assert reports == [
        ("/mail/alice/.Drafts", True),
        ("/mail/alice/.Drafts", False),
        ("/mail/alice/.Old", True),
        ("/mail/alice/.Old", False),
    ]
