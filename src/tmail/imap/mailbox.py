# -*- test-case-name: tests.imap.test_imap_mailbox -*-
"""
A selected folder as one IMAP session sees it.

Sequence numbers belong to a session, not to the folder: each session keeps
the list of UIDs it has told its client about and only changes it at the
moments RFC 3501 allows (L{IMAPMailbox.sync}).  A message expunged by another
session stays in this session's list, as a ghost, until an EXPUNGE response
may be sent.  A SEARCH over that view is evaluated a message at a time
(L{MailboxSearch}), and STORE and EXPUNGE change the folder a slice at a
time (L{FlagStore}, L{Expunge}), so the session can let others run between
slices.
"""

from __future__ import annotations

import array
import bisect
import itertools
import operator
from collections.abc import Callable, Iterable, Iterator, Sequence, Set
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from twisted.internet import defer
from twisted.mail import imap4
from zope.interface import Interface, implementer

from tmail.imap.largemessages import HEADER, INFO, LARGE_MESSAGE, WHOLE, Runner, inWorker, isLarge
from tmail.imap.message import IMAPMessage, MimeLimits, openTogether
from tmail.imap.messagecache import IMessageFacts
from tmail.imap.parse import MAX_NESTING
from tmail.imap.search import FlagsOnly, compileSearch
from tmail.imap.seqset import MAX_RANGES, Messages, Ranges, SavedResult, SequenceSet
from tmail.imap.view import SessionView
from tmail.imap.waiting import Steps, answered, finish, waitFor, waitOn
from tmail.interfaces import (
    SYSTEM_FLAGS,
    IFlagChangingFolder,
    IIncrementalFolder,
    IMailFolder,
    IModSeqFolder,
    IRetainingFolder,
    MessageInfo,
)
from tmail.steps import StepBudget
from tmail.store.listing import Listing, factsOf

#: Flags every folder offers, in the order SELECT lists them.
MAILBOX_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")

_STATUS_ITEMS = ("MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "HIGHESTMODSEQ")


class ISessionListener(Interface):
    """
    A session told that its selected folder changed in this process; it
    calls L{IMAPMailbox.sync} when the protocol lets it report changes.
    """

    def mailboxChanged() -> None:
        """The folder changed; the session decides when to look."""


@dataclass
class Changes:
    """
    What a session must tell its client after L{IMAPMailbox.sync}.

    @ivar expunged: sequence numbers for C{EXPUNGE} responses, in the order
        they must be sent (highest first, so none shifts another).
    @ivar vanished: the UIDs of the same messages, ascending (QRESYNC's
        C{VANISHED}).
    @ivar exists: the new message count, or C{None} when unchanged.
    @ivar recent: the new recent count, or C{None} when unchanged.
    @ivar flags: sequence number to flags, for messages whose flags changed.
    @ivar changed: sequence number to (UID, mod-sequence) of the same messages.
    @ivar modseq: a HIGHESTMODSEQ to send after the FETCH responses when
        expunges with lower mod-sequences are still held back (RFC 7162
        3.2), else C{None}.
    @ivar added: the UIDs of new messages in the view, ascending.
    """

    expunged: list[int] = field(default_factory=list)
    vanished: list[int] = field(default_factory=list)
    exists: int | None = None
    recent: int | None = None
    flags: dict[int, list[str]] = field(default_factory=dict)
    changed: dict[int, tuple[int, int]] = field(default_factory=dict)
    modseq: int | None = None
    added: list[int] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.expunged or self.exists is not None or self.flags)


def folderStatus(folder: IMailFolder, names: Iterable[str]) -> dict[str, int]:
    """
    The STATUS items C{names} (upper case) of a folder; C{DELETED} and
    C{DELETED-STORAGE} are the QUOTA extension's (RFC 9208), C{SIZE} is
    STATUS=SIZE's (RFC 8438).
    """
    infos = folder.messages(claimRecent=False)
    facts = factsOf(infos)
    values = {
        "HIGHESTMODSEQ": lambda: highestModSeq(folder),
        "MESSAGES": lambda: len(infos),
        "RECENT": lambda: len(facts.recent),
        "UIDNEXT": lambda: folder.uidNext(),
        "UIDVALIDITY": lambda: folder.uidValidity(),
        "UNSEEN": lambda: facts.unseen,
        "DELETED": lambda: facts.deleted,
        "DELETED-STORAGE": lambda: (facts.deletedSize + 1023) // 1024,
        "SIZE": lambda: facts.size,
    }
    return {name: values[name]() for name in names}


def highestModSeq(folder: IMailFolder) -> int:
    """
    The folder's HIGHESTMODSEQ (RFC 7162), 0 for a folder that keeps no
    mod-sequences (STATUS then reports 0, as RFC 7162 3.1.10 asks).
    """
    if IModSeqFolder.providedBy(folder):
        value: int = folder.highestModSeq()
        return value
    return 0


def flagList(info: MessageInfo, recent: bool = False) -> list[str]:
    """A message's flags as FETCH FLAGS lists them (with C{\\Recent})."""
    flags = sorted(info.flags)
    if recent:
        flags.append("\\Recent")
    return flags


class _InfoHolder:
    """What a SEARCH criterion that needs only the index sees of a message."""

    __slots__ = ("info",)
    info: MessageInfo


@implementer(
    imap4.IMailbox, imap4.ISearchableMailbox, imap4.IMessageCopier, imap4.ICloseableMailbox
)
class IMAPMailbox:
    """
    Twisted's L{imap4.IMailbox} over an L{IMailFolder}, holding one
    session's sequence-number-to-UID map.
    """

    def __init__(self, folder: IMailFolder, readWrite: bool = True, delimiter: str = "/") -> None:
        self.folder = folder
        self.readWrite = readWrite
        self.delimiter = delimiter
        self.dirty = False
        #: UIDs kept by SEARCH RETURN (SAVE) for C{$}; a new selection starts empty.
        self.saved: frozenset[int] = frozenset()
        self._listeners: list[Any] = []
        self._seen: Sequence[MessageInfo] | None = None
        # A read-only view (EXAMINE) sees which messages are recent
        # without taking that away from the next session (RFC 3501 6.3.2).
        current = folder.messages(claimRecent=readWrite)
        facts = factsOf(current)
        self._uids = array.array("q", facts.uids)
        self._infos = SessionView(current, facts)
        self._recent = set(facts.recent)
        self._seen = current
        #: Flag names the view's messages have had, and the keywords among
        #: them the client was told of in FLAGS (RFC 3501 7.2.6).
        self._flagNames: set[str] = set(SYSTEM_FLAGS)
        for flags in facts.flagSets:
            self._learnFlags(flags)
        self._announced: frozenset[str] = frozenset()
        #: With a folder that says what changed, the session catches up from
        #: its serial instead of comparing every message.
        self._feed: IIncrementalFolder | None = None
        if IIncrementalFolder.providedBy(folder):
            self._feed = folder
        self._serial = self._feed.changeSerial() if self._feed is not None else 0
        #: With a folder that adds and removes flags itself, STORE +FLAGS and
        #: -FLAGS keep what another process changed meanwhile.
        self._flagChanger: IFlagChangingFolder | None = None
        if IFlagChangingFolder.providedBy(folder):
            self._flagChanger = folder
        #: UIDs gone from the folder that the client has not been told about.
        self._ghosts: set[int] = set()
        #: Whether FETCH FLAGS show C{\\Recent}: not under IMAP4rev2, which dropped it.
        self.showRecent = True
        #: How deep, and into how many parts, messages are taken apart.
        self.mimeLimits = MimeLimits()
        #: Octets of a message read for its FETCH PREVIEW (RFC 8970).
        self.previewScanBytes = 64 * 1024
        #: Where parsed facts of messages are kept across FETCHes and sessions.
        self.messageCache: IMessageFacts | None = None
        #: Whether the folder keeps mod-sequences (else SELECT says NOMODSEQ).
        self.modSeqs = IModSeqFolder.providedBy(folder)
        #: Limits on SEARCH criteria: ranges of one sequence set, depth of keys.
        self.maxSequenceRanges = MAX_RANGES
        self.maxNesting = MAX_NESTING
        #: The HIGHESTMODSEQ of the last time the client was told everything,
        #: expunges included: what it may safely resynchronise from.
        self.reportedModSeq = self.highestModSeq()
        folder.addListener(self._folderChanged)
        #: With a folder that keeps what another session expunges while
        #: this one holds it, a FETCH of a message not yet reported gone
        #: is still served.
        self._keeper: IRetainingFolder | None = None
        if IRetainingFolder.providedBy(folder):
            self._keeper = folder
            folder.addReader(self.holds)

    def holds(self, uid: int) -> bool:
        """Whether the message is in the view (the client may still FETCH it)."""
        return uid in self._infos

    def _folderChanged(self, folder: IMailFolder) -> None:
        self.dirty = True
        for listener in list(self._listeners):
            if ISessionListener.providedBy(listener):
                listener.mailboxChanged()

    # IMailboxInfo

    def getFlags(self) -> list[str]:
        """
        The FLAGS response's list: the system flags and every keyword the
        view's messages have had while selected (the list never shrinks
        under the client).  Marks them as announced.
        """
        self._announced = frozenset(self._flagNames - SYSTEM_FLAGS)
        return [*MAILBOX_FLAGS, *sorted(self._announced)]

    def _learnFlags(self, flags: frozenset[str]) -> None:
        if not flags <= self._flagNames:
            self._flagNames.update(flags)

    def unannouncedKeywords(self) -> bool:
        """
        Whether a message in the view has a keyword the client was not
        told of in a FLAGS response: one must come before a FETCH names it.
        """
        return len(self._flagNames) - len(SYSTEM_FLAGS) > len(self._announced)

    def getHierarchicalDelimiter(self) -> str:
        return self.delimiter

    # IMailbox: state

    def getUIDValidity(self) -> int:
        return self.folder.uidValidity()

    def highestModSeq(self) -> int:
        """The folder's HIGHESTMODSEQ, 0 when it keeps none."""
        return highestModSeq(self.folder)

    def heldModSeq(self) -> int | None:
        """
        While expunges are held back from the client, the HIGHESTMODSEQ it
        may safely resynchronise from (RFC 7162 3.2): below theirs.
        """
        return self.reportedModSeq if self._ghosts else None

    def toldModSeq(self) -> int:
        """
        The HIGHESTMODSEQ the client may resynchronise from now: the
        folder's, unless changes are still to be reported to it.
        """
        if self._ghosts or self.dirty:
            return self.reportedModSeq
        return self.highestModSeq()

    def expungedSince(self, modseq: int, within: Messages | None) -> list[int]:
        """
        The UIDs (in C{within}, a UID set, when given) expunged after
        C{modseq}, for QRESYNC's C{VANISHED (EARLIER)}.  When the folder no
        longer remembers that far back, every UID up to UIDNEXT that is not
        here is reported, as RFC 7162 3.2.5 allows.
        """
        if not IModSeqFolder.providedBy(self.folder):
            return []
        uids, complete = self.folder.expungedSince(modseq)
        present = self._infos
        top = self.folder.uidNext() - 1
        if isinstance(within, SavedResult):
            within = SequenceSet.fromNumbers(self.saved)
        # C{*} is the highest UID ever given here, not the highest present.
        ranges = Ranges([(1, top)]) if within is None else within.resolve(top)
        if not complete:
            return [
                u
                for low, high in ranges
                for u in range(max(low, 1), min(high, top) + 1)
                if u not in present
            ]
        return sorted(u for u in uids if u not in present and u in ranges and u <= top)

    def getUIDNext(self) -> int:
        return self.folder.uidNext()

    def getUID(self, message: int) -> int:
        return self._uids[message - 1]

    def getMessageCount(self) -> int:
        return len(self._uids)

    def getRecentCount(self) -> int:
        return len(self._recent)

    def isRecent(self, uid: int) -> bool:
        """
        Whether the message is C{\\Recent} for this session: the store
        reports a new message as recent to the first session that looks.
        """
        return uid in self._recent

    def flagsOf(self, uid: int) -> list[str]:
        """The FETCH FLAGS of a message as this session last saw it."""
        return flagList(self._infos[uid], self.showRecent and uid in self._recent)

    def getUnseenCount(self) -> int:
        return self._infos.unseen

    def firstUnseen(self) -> int | None:
        """The sequence number of the first message without C{\\Seen}."""
        if not self._infos.unseen:
            return None
        if self._infos.pristine:
            first = self._infos.firstUnseen()
            return None if first is None else first + 1
        for seq, uid in enumerate(self._uids, 1):
            if "\\Seen" not in self._infos.flags(uid):
                return seq
        return None

    def lastUID(self) -> int:
        """The highest UID in the session's view (0 when empty): what C{*} means."""
        return self._uids[-1] if self._uids else 0

    def isWriteable(self) -> bool:
        return self.readWrite

    def destroy(self) -> None:
        """Nothing to release: the store deletes the folder's files."""

    def requestStatus(self, names: Iterable[str]) -> dict[str, int]:
        wanted = [name.upper() for name in names]
        unknown = [name for name in wanted if name not in _STATUS_ITEMS]
        if unknown:
            raise imap4.IllegalQueryError(f"unknown STATUS item {unknown[0]}")
        return folderStatus(self.folder, wanted)

    def addListener(self, listener: Any) -> None:
        self._listeners.append(listener)

    def removeListener(self, listener: Any) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    # Message sets

    def resolve(self, messages: Messages, uid: bool) -> list[tuple[int, int]]:
        """
        The C{(sequence number, UID)} pairs a message set names, in order,
        in time proportional to its ranges and the messages named.

        UIDs that do not exist are ignored; a sequence number past the last
        message raises L{imap4.IllegalIdentifierError} (RFC 3501 9, seq-number).
        C{$} names the saved messages still in the session's view.
        """
        uids = self._uids
        found: list[tuple[int, int]] = []
        for first, end in self._spans(messages, uid):
            found.extend(zip(range(first + 1, end + 1), uids[first:end], strict=True))
        return found

    def _spans(self, messages: Messages, uid: bool) -> Iterator[tuple[int, int]]:
        """The index ranges C{[first, end)} into the view a message set names, in order."""
        uids = self._uids
        if isinstance(messages, SavedResult):
            messages, uid = SequenceSet.fromNumbers(self.saved), True
        count = len(uids)
        if not uid and messages.highest() > count:
            raise imap4.IllegalIdentifierError(f"No message {messages.highest()}")
        for low, high in messages.resolve(self.lastUID() if uid else count):
            if uid:
                first, end = bisect.bisect_left(uids, low), bisect.bisect_right(uids, high)
            else:
                first, end = max(low, 1) - 1, min(high, count)
            yield first, end

    def resolveWindow(
        self, messages: Messages, uid: bool, window: Callable[[range], Sequence[int]]
    ) -> list[tuple[int, int]]:
        """
        L{resolve}, then C{window} (a PARTIAL range, RFC 9394 3.3) of the
        pairs, built only for the messages in the window: the positions
        are counted range by range.
        """
        uids = self._uids
        spans = [(first, end) for first, end in self._spans(messages, uid) if end > first]
        total = sum(end - first for first, end in spans)
        wanted = window(range(total))
        if not wanted:
            return []
        start, stop = wanted[0], wanted[-1] + 1
        found: list[tuple[int, int]] = []
        offset = 0
        for first, end in spans:
            size = end - first
            a, b = max(start - offset, 0), min(stop - offset, size)
            if a < b:
                found.extend((i + 1, uids[i]) for i in range(first + a, first + b))
            offset += size
        return found

    def message(self, uid: int) -> IMAPMessage:
        """The message with this UID as the session last saw it."""
        return IMAPMessage(self.folder, self._infos[uid], self.mimeLimits, self.messageCache)

    def info(self, uid: int) -> MessageInfo:
        """What the session last saw of a message."""
        return self._infos[uid]

    def flagSetsAt(self, work: Sequence[tuple[int, int]]) -> list[frozenset[str]] | None:
        """
        The flags of the messages of C{work} (sequence number, UID), read
        from the shared listing's columns while the session's view is still
        that listing; C{None} otherwise (ask L{flagSet} for each).
        """
        listing = self._infos.listing()
        if not isinstance(listing, Listing):
            return None
        return listing.flagsAtPositions([seq - 1 for seq, _ in work])

    @property
    def recentUids(self) -> Set[int]:
        """The UIDs that are C{\\Recent} for this session."""
        return self._recent

    def flagSet(self, uid: int) -> frozenset[str]:
        """The flags of a message as the session last saw them (without C{\\Recent})."""
        return self._infos.flags(uid)

    def fetch(self, messages: Messages, uid: bool) -> list[tuple[int, IMAPMessage]]:
        return [(seq, self.message(u)) for seq, u in self.resolve(messages, uid)]

    # Changes

    def _current(self) -> dict[int, MessageInfo]:
        return {info.uid: info for info in self.folder.messages(claimRecent=False)}

    def _knowledge(self) -> Steps[Callable[[int], MessageInfo | None]]:
        """
        The folder's current knowledge of a message, by UID: from its index
        (brought up to date first) when it keeps one, without listing every
        message; else from one listing taken now.
        """
        feed = self._feed
        if feed is None:
            return self._current().get
        yield from waitFor(feed.refresh)
        return feed.info

    def store(
        self,
        messages: Messages,
        flags: Iterable[str],
        mode: int,
        uid: bool,
        unchangedSince: int | None = None,
        modified: list[tuple[int, int]] | None = None,
        changed: set[int] | None = None,
    ) -> dict[int, list[str]]:
        """
        Change flags; returns the new flags by sequence number, and adds
        to C{changed} the sequence numbers of messages whose flags changed.
        With C{unchangedSince} (CONDSTORE), the messages changed after that
        mod-sequence are left alone and added to C{modified} as
        C{(sequence number, UID)}.
        """
        storing = self.storing(messages, flags, mode, uid, unchangedSince, modified, changed)
        return storing.finish().result

    def storing(
        self,
        messages: Messages,
        flags: Iterable[str],
        mode: int,
        uid: bool,
        unchangedSince: int | None = None,
        modified: list[tuple[int, int]] | None = None,
        changed: set[int] | None = None,
        silent: bool = False,
    ) -> FlagStore:
        """
        L{store}, to be run a slice of messages at a time (L{FlagStore.steps});
        C{silent} when the client is not sent the new flags (C{.SILENT}).
        """
        if not self.readWrite:
            raise imap4.ReadOnlyMailbox()
        pairs = self.resolve(messages, uid)
        return FlagStore(self, pairs, flags, mode, unchangedSince, modified, changed, silent)

    def addFlags(self, uids: list[int], flags: Iterable[str]) -> None:
        """Add flags to messages given by UID (FETCH setting C{\\Seen})."""
        self.addingFlags(uids, flags).finish()

    def addingFlags(self, uids: list[int], flags: Iterable[str]) -> FlagStore:
        """L{addFlags}, to be run a slice of messages at a time."""
        return FlagStore(self, [(0, u) for u in uids], flags, 1)

    def expunge(self) -> Changes:
        return self.expungeUIDs(None)

    def expungeUIDs(self, allowed: Messages | None) -> Changes:
        """
        Expunge the messages marked C{\\Deleted} (only those in C{allowed},
        a UID set, when given: UID EXPUNGE); return what to report.
        """
        return self.expunged(self.expunging(allowed).finish())

    def expunging(self, allowed: Messages | None) -> Expunge:
        """
        L{expungeUIDs}, to be run a slice of messages at a time
        (L{Expunge.steps}, then L{expunged}).
        """
        if not self.readWrite:
            raise imap4.ReadOnlyMailbox()
        if allowed is None:
            candidates = list(self._uids)
        else:
            candidates = [u for _, u in self.resolve(allowed, True)]
        # Without an index to ask, the flags as listed now, as before.
        listed = None if self._feed is not None else self._current().get

        #: The folder's listing and the change serial it is current for.
        seen: list[Any] = [None, -1]

        def deleted(batch: list[int]) -> Steps[list[int]]:
            if listed is None:
                known = yield from self._knowledge()
                # The folder's listing as it is now answers flags without
                # a message object per UID; taken again only after a change.
                feed = self._feed
                serial = feed.changeSerial() if feed is not None else -1
                if seen[0] is None or seen[1] != serial:
                    seen[:] = [self.folder.messages(claimRecent=False), serial]
                current = seen[0]
                if isinstance(current, Listing):
                    flagsOf = current.flagsOf
                    return [u for u in batch if "\\Deleted" in (flagsOf(u) or ())]
            else:
                known = listed
            infos = [(u, known(u)) for u in batch]
            return [u for u, info in infos if info is not None and "\\Deleted" in info.flags]

        return Expunge(self.folder, candidates, deleted)

    def removeMoved(self, uids: list[int]) -> Changes:
        """
        Expunge messages MOVE copied elsewhere, whatever their flags;
        return what to report.
        """
        return self.expunged(self.removingMoved(uids).finish())

    def removingMoved(self, uids: list[int]) -> Expunge:
        """L{removeMoved}, to be run a slice of messages at a time."""
        if not self.readWrite:
            raise imap4.ReadOnlyMailbox()
        return Expunge(self.folder, list(uids))

    def expunged(self, expunge: Expunge) -> Changes:
        """
        Take a finished expunge of this folder into the view; return what
        to report.  A MOVE's originals all leave the view, those another
        session expunged first included.
        """
        return self._drop(expunge.removed if expunge.picking else set(expunge.uids))

    def _drop(self, removed: set[int]) -> Changes:
        """Forget expunged messages; the EXPUNGE (or VANISHED) responses for them."""
        if not removed:
            return Changes()
        pairs = [(seq, u) for seq, u in enumerate(self._uids, 1) if u in removed]
        self._uids = array.array("q", [u for u in self._uids if u not in removed])
        for u in removed:
            self._infos.pop(u, None)
        if self._keeper is not None:
            self._keeper.release(self.holds, removed)
        self._recent -= removed
        return Changes(expunged=[seq for seq, _ in pairs][::-1], vanished=[u for _, u in pairs])

    def sync(self, allowExpunge: bool) -> Changes:
        """
        Catch up with the folder and say what changed since the client was
        last told: messages that are gone (only when C{allowExpunge}, else
        they stay as ghosts), new messages, and flag changes.
        """
        self.dirty = False
        feed = self._feed
        if feed is not None:
            serial, changed = feed.changesSince(self._serial, claimRecent=self.readWrite)
            if changed is not None:
                self._serial = serial
                return self._catchUp(changed, allowExpunge)
        current = self.folder.messages(claimRecent=self.readWrite)
        if feed is not None:
            self._serial = feed.changeSerial()
            self._ghosts = set()
            self._seen = None
        if current is self._seen:
            return Changes()
        self._seen = current
        byUid = {info.uid: info for info in current}
        gone = {u for u in self._uids if u not in byUid}
        if allowExpunge:
            changes = self._drop(gone)
        else:
            changes = Changes()
            if gone:
                self._seen = None
        new = [info for info in current if info.uid not in self._infos]
        for info in new:
            self._infos[info.uid] = info
            self._learnFlags(info.flags)
            if info.recent:
                self._recent.add(info.uid)
        if new:
            unordered = bool(self._uids) and self._uids[-1] > new[0].uid
            self._uids.extend(info.uid for info in new)
            if unordered:
                self._uids = array.array("q", sorted(self._uids))
            changes.added = sorted(info.uid for info in new)
        if new or changes.expunged:
            changes.exists = len(self._uids)
            changes.recent = self.getRecentCount()
        newUids = {info.uid for info in new}
        for seq, u in enumerate(self._uids, 1):
            fresh = byUid.get(u)
            if fresh is None or u in newUids:
                continue
            old = self._infos[u]
            if fresh.flags != old.flags or fresh.modseq != old.modseq:
                changes.flags[seq] = flagList(fresh, self.showRecent and u in self._recent)
                changes.changed[seq] = (u, fresh.modseq)
            self._infos[u] = fresh
            self._learnFlags(fresh.flags)
        held = gone - set(changes.vanished)
        if not held:
            self.reportedModSeq = self.highestModSeq()
        elif changes.changed:
            changes.modseq = self.reportedModSeq
        self._ghosts = held
        return changes

    def _catchUp(self, changed: list[MessageInfo | int], allowExpunge: bool) -> Changes:
        """
        L{sync} from the folder's list of changes: the same responses,
        in time proportional to what changed.
        """
        infos = self._infos
        gone = set(self._ghosts)
        new: list[MessageInfo] = []
        altered: list[MessageInfo] = []
        for item in changed:
            if isinstance(item, int):
                if item in infos:
                    gone.add(item)
                continue
            old = infos.get(item.uid)
            if old is None:
                new.append(item)
                continue
            if old.flags != item.flags or old.modseq != item.modseq:
                altered.append(item)
                self._learnFlags(item.flags)
            infos[item.uid] = item
        if allowExpunge:
            changes = self._drop(gone)
            self._ghosts = set()
        else:
            changes = Changes()
            self._ghosts = gone
        if new:
            new.sort(key=lambda info: info.uid)
            unordered = bool(self._uids) and self._uids[-1] > new[0].uid
            for info in new:
                infos[info.uid] = info
                self._learnFlags(info.flags)
                if info.recent:
                    self._recent.add(info.uid)
            self._uids.extend(info.uid for info in new)
            if unordered:
                self._uids = array.array("q", sorted(self._uids))
            changes.added = [info.uid for info in new]
        if new or changes.expunged:
            changes.exists = len(self._uids)
            changes.recent = self.getRecentCount()
        for info in altered:
            u = info.uid
            seq = bisect.bisect_left(self._uids, u) + 1
            changes.flags[seq] = flagList(info, self.showRecent and u in self._recent)
            changes.changed[seq] = (u, info.modseq)
        if not self._ghosts:
            self.reportedModSeq = self.highestModSeq()
        elif changes.changed:
            changes.modseq = self.reportedModSeq
        return changes

    # Adding and copying

    def addMessage(
        self, message: BinaryIO, flags: Iterable[str] = (), date: float | None = None
    ) -> defer.Deferred[int]:
        pending = self.folder.beginMessage(flags, date)
        try:
            while chunk := message.read(65536):
                pending.write(chunk)
        except BaseException:
            pending.abort()
            raise
        return defer.maybeDeferred(pending.commit)

    def copy(self, messageObject: Any) -> defer.Deferred[int]:
        if isinstance(messageObject, IMAPMessage):
            return defer.maybeDeferred(
                messageObject.folder.copyMessage, messageObject.info.uid, self.folder
            )
        with imap4.IMessageFile(messageObject).open() as f:
            return self.addMessage(f, messageObject.getFlags())

    def close(self) -> None:
        self.folder.removeListener(self._folderChanged)
        if self.messageCache is not None:
            self.messageCache.leave(self.folder)
        if self._keeper is not None:
            self._keeper.removeReader(self.holds)
            self._keeper = None
        self._listeners.clear()

    # Searching

    def search(self, query: list[Any], uid: bool, now: float | None = None) -> list[int]:
        """The sequence numbers (or UIDs) of the messages matching SEARCH criteria."""
        return [u if uid else seq for seq, u in self.searchPairs(query, now)]

    def searchPairs(self, query: list[Any], now: float | None = None) -> list[tuple[int, int]]:
        """The C{(sequence number, UID)} pairs of the messages matching SEARCH criteria."""
        return self.searchWithModSeq(query, now)[0]

    def searchWithModSeq(
        self, query: list[Any], now: float | None = None
    ) -> tuple[list[tuple[int, int]], bool]:
        """L{searchPairs}, and whether the criteria used C{MODSEQ} (RFC 7162 3.1.5)."""
        search = self.searching(query, now).finish()
        return search.pairs(), search.usesModSeq

    def searchMessages(
        self, query: list[Any], now: float | None = None
    ) -> list[tuple[int, IMAPMessage]]:
        """
        The matching messages, as objects whose header, once read by the
        criteria or the caller, is not read again (SORT, THREAD).
        """
        return self.searching(query, now, messages=True).finish().messages()

    def searching(
        self,
        query: list[Any],
        now: float | None = None,
        messages: bool = False,
        limit: int | None = None,
        fromEnd: bool = False,
    ) -> MailboxSearch:
        """
        SEARCH criteria compiled for this view, to be evaluated a slice at a
        time (L{MailboxSearch.steps}); raises L{imap4.IllegalQueryError} for
        malformed criteria.  With C{messages}, the matches keep their
        message objects (SORT, THREAD).  With C{limit}, the search stops
        after that many matches, looking from the last message back when
        C{fromEnd} (a PARTIAL window, RFC 9394).
        """
        notes: set[str] = set()
        needs, matcher, usesModSeq = compileSearch(query, self, now, notes)
        search = MailboxSearch(self, matcher, needs, usesModSeq, messages)
        search.limit, search.fromEnd, search.notes = limit, fromEnd, frozenset(notes)
        return search


@dataclass(frozen=True)
class _FlagsView:
    """What a flags-only search predicate reads of a message: its flags."""

    flags: frozenset[str]


class MailboxSearch:
    """
    One SEARCH over a session's view, evaluated message by message.

    The view does not change while it runs: the session runs one command
    at a time and takes in other sessions' changes only between commands.
    A message another session expunges meanwhile does not match.

    @ivar usesModSeq: whether the criteria used C{MODSEQ}.
    """

    #: Messages tested per step by criteria that read no file.
    INFO_SLICE = 512
    #: Messages kept or left per step by criteria that read only flags.
    FLAGS_SLICE = 16384
    #: Messages whose files are opened together, at most.
    OPEN_SLICE = 32
    #: Stop after this many matches (None: test every message) ...
    limit: int | None = None
    #: ... looking from the last message back.
    fromEnd = False
    #: What makes the result change with no change to a message (L{compileSearch}).
    notes: frozenset[str] = frozenset()

    def __init__(
        self,
        mailbox: IMAPMailbox,
        matcher: Any,
        needs: int,
        usesModSeq: bool,
        messages: bool,
    ) -> None:
        self.mailbox = mailbox
        self.usesModSeq = usesModSeq
        self._matcher = matcher
        self._needs = needs
        self._messages = messages
        self._hits: list[tuple[int, int, IMAPMessage | None]] = []
        #: Messages L{testsAtOnce} opened for L{matches}.
        self._ready: dict[int, IMAPMessage] = {}

    def _byFlagSets(
        self, uids: list[int], listing: Sequence[MessageInfo] | None, holder: _InfoHolder
    ) -> Iterator[object]:
        """
        Criteria that read only flags: each distinct set of flags is tested
        once, and the messages are kept by their set's verdict a slice at a
        time in C loops (UNSEEN over 100,000 messages is a few milliseconds).
        """
        mailbox = self.mailbox
        infos = mailbox._infos
        verdicts: dict[frozenset[str], bool] = {}
        flagsOf = operator.attrgetter("flags")
        keep = self._messages
        hits = self._hits
        if isinstance(listing, Listing):
            # The listing knows where each set of flags is: take the
            # positions of the sets that pass.
            passing: list[Sequence[int]] = []
            for flagSet, positions in listing.positionsByFlags().items():
                holder.info = _FlagsView(flagSet)  # type: ignore[assignment]
                if self._matcher(0, holder):
                    passing.append(positions)
            matched: Sequence[int] = (
                passing[0] if len(passing) == 1 else sorted(itertools.chain(*passing))
            )
            for start in range(0, len(matched), self.FLAGS_SLICE):
                hits.extend(
                    (index + 1, uids[index], mailbox.message(uids[index]) if keep else None)
                    for index in matched[start : start + self.FLAGS_SLICE]
                )
                yield None
            return
        for start in range(0, len(uids), self.FLAGS_SLICE):
            part = uids[start : start + self.FLAGS_SLICE]
            if listing is None:
                flags = [infos[u].flags for u in part]
            else:
                flags = list(map(flagsOf, listing[start : start + len(part)]))
            for unseen in set(flags).difference(verdicts):
                holder.info = _FlagsView(unseen)  # type: ignore[assignment]
                verdicts[unseen] = bool(self._matcher(0, holder))
            found = itertools.compress(
                range(start, start + len(part)), map(verdicts.__getitem__, flags)
            )
            hits.extend(
                (index + 1, uids[index], mailbox.message(uids[index]) if keep else None)
                for index in found
            )
            yield None

    def steps(self, runInWorker: Runner | None = None) -> Iterator[object]:
        """
        Test the messages, yielding after each one that is read (or each
        slice).  With C{runInWorker}, a large message is read and tested in
        a worker thread, and its step yields the Deferred of that.
        """
        mailbox = self.mailbox
        hits = self._hits
        uids = list(mailbox._uids)
        limit = self.limit
        order: Iterable[tuple[int, int]] = enumerate(uids, 1)
        if self.fromEnd:
            order = zip(range(len(uids), 0, -1), reversed(uids), strict=True)
        if limit is not None and limit <= 0:
            return
        if self._needs == INFO:
            # One reused holder instead of a message object per message:
            # criteria such as UNSEEN look at the index entry alone.
            holder = _InfoHolder()
            infos = mailbox._infos
            listing = infos.listing()
            if isinstance(self._matcher, FlagsOnly) and limit is None:
                yield from self._byFlagSets(uids, listing, holder)
                return
            matcher, keep, size = self._matcher, self._messages, self.INFO_SLICE
            seqs = range(len(uids), 0, -1) if self.fromEnd else range(1, len(uids) + 1)
            for start in range(0, len(seqs), size):
                for seq in seqs[start : start + size]:
                    u = uids[seq - 1]
                    holder.info = infos[u] if listing is None else listing[seq - 1]
                    if matcher(seq, holder):
                        hits.append((seq, u, mailbox.message(u) if keep else None))
                        if len(hits) == limit:
                            return
                if start + size <= len(seqs):
                    yield None
            return
        pairs = list(order)
        start = 0
        while start < len(pairs):
            # With a limit, no more files than the matches still wanted.
            size = self.OPEN_SLICE if limit is None else min(self.OPEN_SLICE, limit - len(hits))
            messages = [(seq, u, mailbox.message(u)) for seq, u in pairs[start : start + size]]
            start += size
            waiting = openTogether(m for _, _, m in messages if self._readsFile(m))
            if waiting is not None:
                yield waiting
            try:
                for seq, _, message in messages:
                    if runInWorker is not None and isLarge(message):
                        waiting = self._testInWorker(runInWorker, seq, message)
                        if waiting is not None:
                            yield waiting
                            if len(hits) == limit:
                                return
                            continue
                    self._tested(seq, message, self._matcher(seq, message))
                    if len(hits) == limit:
                        return
                    yield None
            finally:
                for _, _, message in messages:
                    message.drop()

    def _readsFile(self, message: IMAPMessage, headers: bool = False) -> bool:
        """
        Whether testing C{message} (or, with C{headers}, reading its
        header) reads its file: a header kept as a fact does not.
        """
        if self._needs == HEADER or (headers and self._needs == INFO):
            return not message.hasHeader() and message.cachedFact("header") is None
        return self._needs == WHOLE

    def _testInWorker(
        self, runInWorker: Runner, seq: int, message: IMAPMessage
    ) -> defer.Deferred[None] | None:
        """Test a large message in a worker thread; C{None} when it is gone."""
        try:
            tested = inWorker(
                runInWorker, message, self._needs, lambda: self._matcher(seq, message)
            )
        except KeyError:
            return None
        return tested.addCallback(lambda matched: self._tested(seq, message, matched))

    def _tested(self, seq: int, message: IMAPMessage, matched: bool) -> None:
        if matched:
            self._hits.append((seq, message.info.uid, message))
        if self._messages:
            # SORT and THREAD keep the matches: their bodies need not stay.
            message.keepHeaderOnly()

    @property
    def readsMessages(self) -> bool:
        """Whether the criteria read message files (headers or text), not the index alone."""
        return self._needs != INFO

    def testsAtOnce(self, uids: Iterable[int], headers: bool = False) -> bool:
        """
        Whether L{matches} may test these messages in the reactor thread
        (and, with C{headers}, their headers be read for sort keys): not
        when the criteria read whole messages and one is large (a worker
        thread's work in a SEARCH, L{tmail.imap.largemessages}), nor when
        the folder does not give the files they read at once (a store
        answering later).  The files are then open for L{matches} and
        L{take}.
        """
        if self._needs == INFO and not headers:
            return True
        wanted = list(uids)
        info = self.mailbox.info
        if self._needs == WHOLE and any(info(u).size > LARGE_MESSAGE for u in wanted):
            return False
        ready: dict[int, IMAPMessage] = {}
        late = False
        for u in wanted:
            message = self._ready.pop(u, None) or self.mailbox.message(u)
            if self._readsFile(message, headers) and message.needsOpening():
                opening = message.opening()
                if opening is not None and not answered(opening)[0]:
                    late = True
                    opening.addCallback(_dropWhenOpen, message)
                    continue
            ready[u] = message
        if late:
            for message in ready.values():
                message.drop()
            return False
        self._ready.update(ready)
        return True

    def prepare(self, uids: Iterable[int], headers: bool = False) -> defer.Deferred[None] | None:
        """
        Open together the files L{matches} (and, with C{headers}, a sort
        key) will read for C{uids}; C{None} when the folder gave them at
        once.
        """
        if self._needs == INFO and not headers:
            return None
        reading: list[IMAPMessage] = []
        for u in uids:
            if u in self._ready:
                continue
            try:
                message = self._ready[u] = self.mailbox.message(u)
            except KeyError:
                continue
            if self._readsFile(message, headers):
                reading.append(message)
        return openTogether(reading)

    def take(self, u: int) -> IMAPMessage:
        """The message opened for C{u} by L{prepare} or L{testsAtOnce}, or a new one."""
        return self._ready.pop(u, None) or self.mailbox.message(u)

    def matches(self, seq: int, u: int) -> bool:
        """Whether one message of the view matches now (a live result, RFC 5267 4.3)."""
        mailbox = self.mailbox
        if self._needs == INFO:
            holder = _InfoHolder()
            holder.info = mailbox.info(u)
            return bool(self._matcher(seq, holder))
        message = self._ready.get(u) or mailbox.message(u)
        return bool(self._matcher(seq, message))

    def release(self) -> None:
        """Close the files opened for L{matches} and L{take} that were not used."""
        ready, self._ready = self._ready, {}
        for message in ready.values():
            message.drop()

    def finish(self) -> MailboxSearch:
        """Run all the steps now."""
        for _ in self.steps():
            pass
        return self

    def pairs(self) -> list[tuple[int, int]]:
        """The C{(sequence number, UID)} of each match, in order."""
        pairs = [(seq, u) for seq, u, _ in self._hits]
        return pairs[::-1] if self.fromEnd else pairs

    def messages(self) -> list[tuple[int, IMAPMessage]]:
        """The sequence number and message of each match (with C{messages=True})."""
        found = [(seq, m) for seq, _, m in self._hits if m is not None]
        return found[::-1] if self.fromEnd else found


def _dropWhenOpen(_: object, message: IMAPMessage) -> None:
    message.drop()


class FlagStore:
    """
    One STORE (or FETCH setting C{\\Seen}) over a session's view, a slice
    of messages at a time.

    Each slice starts from what the folder knows of its messages then, so
    a flag another session (or program) changed meanwhile is kept as the
    same change made in one go keeps it, and a message expunged meanwhile
    is left out.  A client that goes away stops the work: the changes made
    so far stay made, as after a crash.

    @ivar result: the new flags of each message changed or left alone (not
        those expunged or skipped by C{unchangedSince}), by sequence number.
    @ivar met: the sequence numbers of messages whose change met another
        program's (a silent STORE leaves their news to the next report).
    """

    #: Messages whose changes are asked of the folder together, at most.
    SLICE = 256

    def __init__(
        self,
        mailbox: IMAPMailbox,
        pairs: list[tuple[int, int]],
        flags: Iterable[str],
        mode: int,
        unchangedSince: int | None = None,
        modified: list[tuple[int, int]] | None = None,
        changed: set[int] | None = None,
        silent: bool = False,
    ) -> None:
        self.mailbox = mailbox
        self._silent = silent
        self.result: dict[int, list[str]] = {}
        self.met: set[int] = set()
        self._pairs = pairs
        self._change = frozenset(flags) - {"\\Recent"}
        self._mode = mode
        self._unchangedSince = unchangedSince
        self._modified = modified
        self._changed = changed

    def steps(self) -> Steps[None]:
        """
        Change the flags, yielding after each slice of messages; the
        changes of a slice are asked of the folder together, and waited
        for together.
        """
        budget = StepBudget()
        known = yield from self.mailbox._knowledge()
        started: list[_Started] = []
        for seq, u in self._pairs:
            begun = self._begin(seq, u, known(u))
            if begun is not None:
                started.append(begun)
            if budget.spent() or len(started) >= self.SLICE:
                yield from self._finishing(started)
                started = []
                yield None
                known = yield from self.mailbox._knowledge()
        yield from self._finishing(started)

    def finish(self) -> FlagStore:
        """Run all the steps now (the folder must answer at once)."""
        finish(self.steps())
        return self

    def _begin(self, seq: int, u: int, info: MessageInfo | None) -> _Started | None:
        """Ask the folder for one message's change, if it needs one."""
        if info is None:
            # Expunged meanwhile (by another session, not yet reported):
            # nothing to change and, unlike Dovecot, no FETCH for it: a
            # MODSEQ there could not be higher than the one told before.
            return None
        unchangedSince = self._unchangedSince
        if unchangedSince is not None and info.modseq > unchangedSince:
            if self._modified is not None:
                self._modified.append((seq, u))
            return None
        mailbox, mode, change = self.mailbox, self._mode, self._change
        if mode > 0:
            wanted = info.flags | change
        elif mode < 0:
            wanted = info.flags - change
        else:
            wanted = change
        call: defer.Deferred[MessageInfo] | None = None
        if wanted != info.flags:
            if mode and mailbox._flagChanger is not None:
                call = defer.maybeDeferred(
                    mailbox._flagChanger.changeFlags,
                    u,
                    change if mode > 0 else (),
                    change if mode < 0 else (),
                )
            else:
                call = defer.maybeDeferred(mailbox.folder.setFlags, u, wanted)
        return _Started(seq, u, info, wanted, call)

    def _finishing(self, started: list[_Started]) -> Steps[None]:
        """Wait for the changes of a slice, in order; take each into the view."""
        for i, begun in enumerate(started):
            info = begun.before
            if begun.call is not None:
                try:
                    info = yield from waitOn(begun.call)
                except KeyError:
                    continue
                except BaseException:
                    for rest in started[i + 1 :]:
                        if rest.call is not None:
                            rest.call.addErrback(lambda _: None)
                    raise
                if self._changed is not None:
                    self._changed.add(begun.seq)
            self._apply(begun, info)

    def _apply(self, begun: _Started, info: MessageInfo) -> None:
        mailbox, u, before = self.mailbox, begun.uid, begun.before
        told = mailbox._infos.get(u)
        if (
            told is None
            or not self._silent
            or (told.flags == before.flags and info.flags == begun.wanted)
        ):
            # The response names the flags as they are now, another
            # session's change included; a silent one leaves the client
            # with exactly the flags it asked for.
            mailbox._infos[u] = info
            mailbox._learnFlags(info.flags)
        else:
            self.met.add(begun.seq)
        # Otherwise another session (or program, its rename come across
        # while storing) changed the flags first and the client is told
        # nothing now: keeping what it was told lets the next sync report
        # the whole change.
        self.result[begun.seq] = mailbox.flagsOf(u)


@dataclass
class _Started:
    """A message's flag change asked of the folder (C{call}: C{None} when none is needed)."""

    seq: int
    uid: int
    before: MessageInfo
    wanted: frozenset[str]
    call: defer.Deferred[MessageInfo] | None


class Expunge:
    """
    Messages expunged from a folder a slice at a time: by EXPUNGE, UID
    EXPUNGE and CLOSE (with C{pick}, which keeps those of each slice still
    marked C{\\Deleted} when the slice runs: a message another session
    undeleted meanwhile stays), by MOVE (the originals) or by a COPY
    undoing its copies.

    A session's view changes only once the last step is done
    (L{IMAPMailbox.expunged}), so sequence numbers hold while it runs.

    @ivar uids: the messages to expunge.
    @ivar removed: the UIDs expunged so far.
    """

    #: Messages expunged in one call to the store.
    SLICE = 256

    def __init__(
        self,
        folder: IMailFolder,
        uids: list[int],
        pick: Callable[[list[int]], Steps[list[int]]] | None = None,
    ) -> None:
        self.folder = folder
        self.uids = uids
        self.removed: set[int] = set()
        self._pick = pick

    @property
    def picking(self) -> bool:
        """Whether only some of L{uids} are expunged (those C{pick} keeps)."""
        return self._pick is not None

    def steps(self) -> Steps[None]:
        """Expunge, yielding after each slice."""
        for start in range(0, len(self.uids), self.SLICE):
            batch = self.uids[start : start + self.SLICE]
            if self._pick is not None:
                batch = yield from self._pick(batch)
            if batch:
                removed = yield from waitFor(self.folder.expunge, batch)
                self.removed.update(removed)
            yield None

    def finish(self) -> Expunge:
        """Run all the steps now (the folder must answer at once)."""
        finish(self.steps())
        return self
