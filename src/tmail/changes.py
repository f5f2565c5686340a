"""
Folder changes announced between the processes that serve one store.

A folder's listeners (L{IMailFolder.addListener}) hear of the changes
made in their own process at once; another process (another worker, the
queue runner's supervisor) would otherwise find them only by its next
poll.  A store registers each folder object it opens here (L{opened}) with
a key that names the folder in every process (a Maildir: its directory),
tells when it changed (L{changed}, from where it tells its listeners) and
whether anything listens to it (L{watched}).  A change made in this
process is announced with the key to whoever listens (L{tmail.workers}
forwards it to the other processes); a key announced by another process
has the folder open here look again (L{IIncrementalFolder.refresh}, which
tells its listeners) if a session watches it.  A folder nobody watches is
left alone: looking would claim its new messages (C{new/} to C{cur/})
for a process with no session to tell.

Folders are held weakly: a folder no session keeps open is forgotten.  A
change learnt from an announcement is not announced again.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

from twisted.internet.defer import maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from tmail.interfaces import IIncrementalFolder, IMailFolder

__all__ = ["ChangeHub", "hub"]

_log = Logger()


class ChangeHub:
    """The folders of this process by key, and who hears of their changes."""

    def __init__(self) -> None:
        self._folders: weakref.WeakValueDictionary[str, IMailFolder] = weakref.WeakValueDictionary()
        self._keys: weakref.WeakKeyDictionary[IMailFolder, str] = weakref.WeakKeyDictionary()
        self._watched: weakref.WeakSet[IMailFolder] = weakref.WeakSet()
        self._announcers: list[Callable[[str], object]] = []
        self._watchers: list[Callable[[str, bool], object]] = []
        #: Keys whose folders are refreshing after a change elsewhere, and how often.
        self._quiet: dict[str, int] = {}

    def opened(self, key: str, folder: IMailFolder) -> None:
        """Register C{folder} under C{key} (again after a rename)."""
        old = self._keys.get(folder)
        self._folders[key] = folder
        self._keys[folder] = key
        if old is not None and old != key and folder in self._watched:
            self._tellWatchers(old, False)
            self._tellWatchers(key, True)

    def watched(self, folder: IMailFolder, watched: bool) -> None:
        """Whether anything listens to C{folder} now."""
        if watched == (folder in self._watched):
            return
        if watched:
            self._watched.add(folder)
        else:
            self._watched.discard(folder)
        key = self._keys.get(folder)
        if key is not None:
            self._tellWatchers(key, watched)

    def reportWatchesTo(self, watcher: Callable[[str, bool], object]) -> None:
        """
        Call C{watcher} with a folder's key and C{True} when something
        here starts listening to it, C{False} when nothing does any more,
        so that changes made elsewhere are sent only where they are watched.
        """
        self._watchers.append(watcher)

    def _tellWatchers(self, key: str, watched: bool) -> None:
        for watcher in list(self._watchers):
            try:
                watcher(key, watched)
            except Exception:
                _log.failure("Reporting the watch of {key} failed", key=key)

    def announceTo(self, announcer: Callable[[str], object]) -> None:
        """Call C{announcer} with the key of each folder changed in this process."""
        self._announcers.append(announcer)

    def stopAnnouncing(self, announcer: Callable[[str], object]) -> None:
        if announcer in self._announcers:
            self._announcers.remove(announcer)

    def changed(self, folder: IMailFolder) -> None:
        """C{folder} changed: announce it, unless the change came from elsewhere."""
        key = self._keys.get(folder)
        if key is None or key in self._quiet:
            return
        for announcer in list(self._announcers):
            try:
                announcer(key)
            except Exception:
                _log.failure("Announcing a change of {key} failed", key=key)

    def changedElsewhere(self, key: str) -> bool:
        """
        Another process changed the folder C{key}: the folder open here, if
        a session watches it, looks again (not announcing what it finds
        back, until its refresh has finished).  Returns whether it did.
        """
        folder = self._folders.get(key)
        if (
            folder is None
            or folder not in self._watched
            or not IIncrementalFolder.providedBy(folder)
        ):
            return False
        self._quiet[key] = self._quiet.get(key, 0) + 1

        def failed(failure: Failure) -> None:
            _log.failure(
                "Refreshing {key} after a change elsewhere failed", failure=failure, key=key
            )

        def done(_: object) -> None:
            left = self._quiet[key] - 1
            if left:
                self._quiet[key] = left
            else:
                del self._quiet[key]

        maybeDeferred(folder.refresh).addErrback(failed).addBoth(done)
        return True


#: The hub of this process.
hub = ChangeHub()
