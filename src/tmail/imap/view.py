"""
What one IMAP session has told its client of each message of its folder.

A session starts from the folder's listing, which every session selecting
the same state shares, and keeps only what changed for it since: SELECT
costs no object per message, and a change costs one entry.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from tmail.interfaces import MessageInfo
from tmail.store.listing import Listing, ListingFacts, byUidOf

__all__ = ["SessionView"]


class SessionView:
    """
    A mapping of UID to the L{MessageInfo} a session last saw: a shared
    listing, and the messages added, changed or dropped since.

    @ivar unseen: how many messages in the view lack C{\\Seen}.
    """

    def __init__(self, listing: Sequence[MessageInfo], facts: ListingFacts) -> None:
        self._listing = listing
        self._facts = facts
        #: The listing by UID, made at the first look (shared with other sessions).
        self._byUid: Mapping[int, MessageInfo] | None = None
        self._changed: dict[int, MessageInfo | None] = {}
        self.unseen = facts.unseen

    @property
    def pristine(self) -> bool:
        """Whether the view is still the listing it started from."""
        return not self._changed

    def firstUnseen(self) -> int | None:
        """
        The position of the first message without C{\\Seen} while the
        view is still its listing (C{None} once it changed, or when none).
        """
        if self._changed or self._facts.firstUnseen < 0:
            return None
        return self._facts.firstUnseen

    def listing(self) -> Sequence[MessageInfo] | None:
        """
        The listing, in the view's order (sequence number - 1 is the
        position), while the view is still it; else C{None}.
        """
        return None if self._changed else self._listing

    def get(self, uid: int) -> MessageInfo | None:
        changed = self._changed
        if changed and uid in changed:
            return changed[uid]
        byUid = self._byUid
        if byUid is None:
            byUid = self._byUid = byUidOf(self._listing)
        return byUid.get(uid)

    def flags(self, uid: int) -> frozenset[str]:
        """
        The flags of message C{uid} (C{KeyError} when not in the view),
        without making its L{MessageInfo}.
        """
        changed = self._changed
        if changed and uid in changed:
            info = changed[uid]
            if info is None:
                raise KeyError(uid)
            return info.flags
        listing = self._listing
        if isinstance(listing, Listing):
            flags = listing.flagsOf(uid)
            if flags is None:
                raise KeyError(uid)
            return flags
        return self[uid].flags

    def __getitem__(self, uid: int) -> MessageInfo:
        changed = self._changed
        if changed and uid in changed:
            info = changed[uid]
            if info is None:
                raise KeyError(uid)
            return info
        byUid = self._byUid
        if byUid is None:
            byUid = self._byUid = byUidOf(self._listing)
        return byUid[uid]

    def __contains__(self, uid: object) -> bool:
        return isinstance(uid, int) and self.get(uid) is not None

    def __setitem__(self, uid: int, info: MessageInfo) -> None:
        old = self.get(uid)
        if old is not None and "\\Seen" not in old.flags:
            self.unseen -= 1
        if "\\Seen" not in info.flags:
            self.unseen += 1
        self._changed[uid] = info

    def pop(self, uid: int, default: None = None) -> MessageInfo | None:
        """Drop a message from the view; return what it was (or C{default})."""
        old = self.get(uid)
        if old is None:
            return default
        if "\\Seen" not in old.flags:
            self.unseen -= 1
        self._changed[uid] = None
        return old
