# -*- test-case-name: tests.imap.test_imap_search_flags -*-
"""
One SEARCH over a session's view (L{MailboxSearch}), evaluated a slice of
messages at a time so that the session lets others run between slices.

Apart from the view itself (L{tmail.imap.mailbox}): how criteria meet the
messages (by flag sets, by index entries, file by file, large messages in
a worker thread, files a store gives later opened together) is the
search's own concern.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from twisted.internet import defer

from tmail.imap.largemessages import HEADER, INFO, LARGE_MESSAGE, WHOLE, Runner, inWorker, isLarge
from tmail.imap.message import IMAPMessage, openTogether
from tmail.imap.search import FlagsOnly
from tmail.imap.waiting import answered
from tmail.interfaces import MessageInfo
from tmail.store.listing import Listing

if TYPE_CHECKING:
    from tmail.imap.mailbox import IMAPMailbox


class _InfoHolder:
    """What a SEARCH criterion that needs only the index sees of a message."""

    __slots__ = ("info",)
    info: MessageInfo


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
