"""
The in-memory index of one Maildir folder: one per folder per process,
shared by every session that has the folder open.

It maps each UID to where the message's file is and what is known of it
(L{Entry}), keeps the UIDs in order in an array, mirrors the directory
listing (file names in C{cur/}, base names in C{new/}) so that a new
listing is compared with it in one set operation, and records every
change in a L{ChangeLog} from which sessions catch up.  It touches no
file: the folder applies what its file work found, in the reactor thread.
"""

from __future__ import annotations

import array
import bisect
from dataclasses import dataclass

from tmail.interfaces import MessageInfo
from tmail.store.listing import Listing
from tmail.store.maildir.changelog import ChangeLog

__all__ = ["Entry", "FolderIndex"]


@dataclass(slots=True)
class Entry:
    """Where a message's file is and what the index knows about it."""

    subdir: str
    filename: str
    info: MessageInfo


class FolderIndex:
    """
    The messages of a folder as this process knows them.

    @ivar entries: UID -> L{Entry}.
    @ivar byBase: base name -> UID.
    @ivar uids: the UIDs, ascending.
    @ivar curNames: the file names of the messages in C{cur/}.
    @ivar newBases: the base names of the messages in C{new/}.
    @ivar recent: the UIDs of the messages still recent for a session to claim.
    @ivar snapshot: the listing of the current state, once made (L{listing}).
    @ivar changes: every change, for sessions catching up.
    @ivar unsaved: changes since the index was last saved or restored.
    """

    def __init__(self) -> None:
        self.changes = ChangeLog()
        self._empty()

    def clear(self) -> None:
        """Forget every message; sessions' serials from before become too old."""
        self._empty()
        self.changes.forget()

    def _empty(self) -> None:
        self.entries: dict[int, Entry] = {}
        self.byBase: dict[str, int] = {}
        self.uids = array.array("q")
        self.curNames: set[str] = set()
        self.newBases: set[str] = set()
        self.recent: set[int] = set()
        self.snapshot: Listing | None = None
        self.unsaved = 0

    def restore(
        self,
        entries: dict[int, Entry],
        byBase: dict[str, int],
        uids: array.array[int],
        curNames: set[str],
        newBases: set[str],
    ) -> None:
        """Start again from a saved index's messages."""
        self.clear()
        self.entries, self.byBase, self.uids = entries, byBase, uids
        self.curNames, self.newBases = curNames, newBases

    def listing(self) -> Listing:
        """Every message, in UID order; the same object until something changes."""
        if self.snapshot is None:
            entries = self.entries
            self.snapshot = Listing([entries[uid].info for uid in self.uids])
        return self.snapshot

    def changed(self, uid: int) -> None:
        """Record a change of C{uid} for sessions, and drop the listing."""
        self.changes.changed(uid)
        self.snapshot = None

    def setLocation(self, entry: Entry, subdir: str, filename: str) -> None:
        """Move C{entry} to a new file name, keeping the listing mirrors right."""
        if entry.subdir == "cur":
            self.curNames.discard(entry.filename)
        else:
            self.newBases.discard(entry.info.key)
        entry.subdir, entry.filename = subdir, filename
        if subdir == "cur":
            self.curNames.add(filename)
        else:
            self.newBases.add(entry.info.key)

    def insert(self, uid: int, entry: Entry) -> None:
        self.unsaved += 1
        self.entries[uid] = entry
        self.byBase[entry.info.key] = uid
        if entry.subdir == "cur":
            self.curNames.add(entry.filename)
        else:
            self.newBases.add(entry.info.key)
        uids = self.uids
        if not uids or uid > uids[-1]:
            uids.append(uid)
        else:
            bisect.insort(uids, uid)
        if entry.info.recent:
            self.recent.add(uid)
        self.changed(uid)

    def remove(self, uid: int) -> Entry:
        """Drop a message (the caller then drops the UIDs removed from L{uids})."""
        self.unsaved += 1
        entry = self.entries.pop(uid)
        base = entry.info.key
        del self.byBase[base]
        if entry.subdir == "cur":
            self.curNames.discard(entry.filename)
        else:
            self.newBases.discard(base)
        self.recent.discard(uid)
        self.changed(uid)
        return entry

    def dropUids(self, gone: set[int]) -> None:
        """Take the UIDs of removed messages out of L{uids}, in one pass."""
        self.uids = array.array("q", [uid for uid in self.uids if uid not in gone])
