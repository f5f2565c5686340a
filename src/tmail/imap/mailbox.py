# -*- test-case-name: tests.imap.test_imap_mailbox -*-
"""
A selected folder as one IMAP session sees it.

Sequence numbers belong to a session, not to the folder: each session keeps
the list of UIDs it has told its client about and only changes it at the
moments RFC 3501 allows (L{IMAPMailbox.sync}).  A message expunged by another
session stays in this session's list, as a ghost, until an EXPUNGE response
may be sent.  A SEARCH over that view is evaluated a message at a time
(L{tmail.imap.mailboxsearch.MailboxSearch}), and STORE and EXPUNGE change
the folder a slice at a time (L{tmail.imap.flagstore.FlagStore},
L{tmail.imap.expunge.Expunge}), so the session can let others run between
slices; the view catches up with the folder in L{tmail.imap.mailboxsync}.
"""

from __future__ import annotations

import array
import bisect
from collections.abc import Callable, Iterable, Iterator, Sequence, Set
from typing import Any, BinaryIO

from twisted.internet import defer
from twisted.mail import imap4
from zope.interface import Interface, implementer

from tmail.imap.expunge import Expunge
from tmail.imap.flagstore import FlagStore
from tmail.imap.folderstatus import folderStatus, highestModSeq
from tmail.imap.mailboxsearch import MailboxSearch
from tmail.imap.mailboxsync import Changes, dropExpunged, flagList, syncView
from tmail.imap.message import IMAPMessage
from tmail.imap.messagecache import IMessageFacts
from tmail.imap.mimeentity import MimeLimits
from tmail.imap.parse import MAX_NESTING
from tmail.imap.search import compileSearch
from tmail.imap.seqset import MAX_RANGES, Messages, Ranges, SavedResult, SequenceSet
from tmail.imap.view import SessionView
from tmail.imap.waiting import Steps, waitFor
from tmail.interfaces import (
    SYSTEM_FLAGS,
    IFlagChangingFolder,
    IIncrementalFolder,
    IMailFolder,
    IModSeqFolder,
    IRetainingFolder,
    MessageInfo,
)
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
        return dropExpunged(self, expunge.removed if expunge.picking else set(expunge.uids))

    def sync(self, allowExpunge: bool) -> Changes:
        """
        Catch up with the folder and say what changed since the client was
        last told: messages that are gone (only when C{allowExpunge}, else
        they stay as ghosts), new messages, and flag changes.
        """
        return syncView(self, allowExpunge)

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
