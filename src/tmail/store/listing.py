"""
A folder's listing of its messages, with the figures every session and
STATUS ask of it (UIDs, unseen and recent messages, sizes) worked out once
per listing rather than once per session: a folder returns the same
listing object to every caller until it changes.
"""

from __future__ import annotations

import array
import operator
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tmail.interfaces import MessageInfo

__all__ = ["Listing", "ListingFacts", "byUidOf", "factsOf"]


@dataclass(frozen=True, slots=True)
class ListingFacts:
    """
    What a listing holds, counted once.

    @ivar uids: the UIDs, ascending, in listing order (not to be changed:
        shared by every session that selected this listing).
    @ivar flagSets: each distinct set of flags a message has.
    @ivar unseen: messages without C{\\Seen}.
    @ivar firstUnseen: the position of the first of them, -1 when none.
    @ivar recent: the UIDs of the messages marked recent.
    @ivar deleted: messages with C{\\Deleted}, and their total size.
    @ivar size: the total size of all messages.
    """

    uids: array.array[int]
    flagSets: frozenset[frozenset[str]]
    unseen: int
    firstUnseen: int
    recent: frozenset[int]
    deleted: int
    deletedSize: int
    size: int


def _count(infos: Sequence[MessageInfo]) -> ListingFacts:
    bySet = Counter(info.flags for info in infos)
    unseen = sum(n for flags, n in bySet.items() if "\\Seen" not in flags)
    first = -1
    if unseen:
        first = next(i for i, info in enumerate(infos) if "\\Seen" not in info.flags)
    deletedSets = {flags for flags in bySet if "\\Deleted" in flags}
    deleted = [info.size for info in infos if info.flags in deletedSets] if deletedSets else []
    return ListingFacts(
        uids=array.array("q", [info.uid for info in infos]),
        flagSets=frozenset(bySet),
        unseen=unseen,
        firstUnseen=first,
        recent=frozenset(info.uid for info in infos if info.recent),
        deleted=len(deleted),
        deletedSize=sum(deleted),
        size=sum(info.size for info in infos),
    )


class Listing(tuple[MessageInfo, ...]):
    """An immutable listing of messages that keeps its L{ListingFacts} once counted."""

    _facts: ListingFacts | None = None
    _byUid: dict[int, MessageInfo] | None = None
    _positions: dict[frozenset[str], array.array[int]] | None = None

    def __new__(cls, infos: Iterable[MessageInfo]) -> Listing:
        return super().__new__(cls, infos)

    def facts(self) -> ListingFacts:
        facts = self._facts
        if facts is None:
            facts = self._facts = _count(self)
        return facts

    def byUid(self) -> dict[int, MessageInfo]:
        """UID -> message, made once and shared by every session over this listing."""
        byUid = self._byUid
        if byUid is None:
            byUid = self._byUid = {info.uid: info for info in self}
        return byUid

    def positionsByFlags(self) -> dict[frozenset[str], array.array[int]]:
        """
        Each distinct set of flags -> the positions of the messages that
        have it, ascending; made once and shared by every session over this
        listing, so a search that reads only flags (UNSEEN over a hundred
        thousand messages) takes the positions of the sets that match.
        """
        positions = self._positions
        if positions is None:
            groups: dict[frozenset[str], list[int]] = {}
            for position, flags in enumerate(map(_flagsOf, self)):
                group = groups.get(flags)
                if group is None:
                    group = groups[flags] = []
                group.append(position)
            positions = self._positions = {
                flags: array.array("q", group) for flags, group in groups.items()
            }
        return positions


_flagsOf = operator.attrgetter("flags")


def byUidOf(infos: Sequence[MessageInfo]) -> dict[int, MessageInfo]:
    """UID -> message of a listing: kept with a L{Listing}, else made now."""
    if isinstance(infos, Listing):
        return infos.byUid()
    return {info.uid: info for info in infos}


def factsOf(infos: Sequence[MessageInfo]) -> ListingFacts:
    """The facts of a listing: kept with a L{Listing}, else counted now."""
    if isinstance(infos, Listing):
        return infos.facts()
    return _count(infos)
