"""
The changes of a folder, in order, for the sessions that catch up with it.

Each change is the UID of a message added, changed or removed; a serial
counts them.  A session remembers the serial it last saw and asks for what
came after: time proportional to the changes, not to the folder.  The log
keeps the last L{CHANGES_KEPT}; a session further behind lists the folder.
"""

from __future__ import annotations

import array

__all__ = ["CHANGES_KEPT", "ChangeLog"]

#: Changes a folder remembers for sessions catching up.
CHANGES_KEPT = 8192


class ChangeLog:
    """The UIDs of a folder's messages in the order they changed."""

    def __init__(self) -> None:
        self._uids = array.array("q")
        #: The serial of the first change kept.
        self._base = 0

    def changed(self, uid: int) -> None:
        """Record a change of C{uid}, dropping the older half when full."""
        uids = self._uids
        uids.append(uid)
        if len(uids) > CHANGES_KEPT:
            dropped = len(uids) // 2
            del uids[:dropped]
            self._base += dropped

    def forget(self) -> None:
        """The index was rebuilt wholesale: every earlier serial is too old."""
        self._base += len(self._uids) + 1
        self._uids = array.array("q")

    @property
    def serial(self) -> int:
        """The serial of the latest change."""
        return self._base + len(self._uids)

    def since(self, serial: int) -> list[int] | None:
        """
        The UIDs changed after C{serial}, each once, in the order of their
        first change; C{None} when C{serial} is too old (or unknown).
        """
        if serial < self._base or serial > self.serial:
            return None
        return list(dict.fromkeys(self._uids[serial - self._base :]))
