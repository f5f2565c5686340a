"""
Live SEARCH and SORT results: RFC 5267's UPDATE return option (CONTEXT=SEARCH,
CONTEXT=SORT), the CANCELUPDATE command and the NOUPDATE response code.

Twisted has none of this.  A context keeps what the client was told (the
UIDs of a SEARCH's result; a SORT's results in order, with the key each
sorts by) and is told of every change the session reports: each new,
changed or expunged message is looked at alone, so the work per change is
one test of that message (and a binary search in a SORT's order), never a
new search of the folder.  The responses keep sequence numbers valid: a
C{REMOVEFROM} for expunged messages goes before the C{EXPUNGE} (or
C{VANISHED}), an C{ADDTO} for new ones after the C{EXISTS} (RFC 5267 4.3.3,
4.3.4).  Criteria whose result changes with no change to any message
(sequence numbers, OLDER/YOUNGER) are answered, but not kept up to date:
C{NO [NOUPDATE]}, as for a session that has C{imap.max_search_contexts}
contexts already.  A live result whose criteria read message files ends,
with an untagged C{NO [NOUPDATE]}, when one report of changes would make it
read more than C{imap.max_update_reads} messages, or the whole of a large
one (L{tmail.imap.largemessages}: a SEARCH reads those in a worker thread):
the report is sent at once, and that reading would keep the other sessions
waiting.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from twisted.internet.defer import Deferred, gatherResults
from twisted.mail import imap4

from tmail.imap.esearch import ReturnOptions, numberSet
from tmail.imap.mailbox import IMAPMailbox
from tmail.imap.mailboxsearch import MailboxSearch
from tmail.imap.mailboxsync import Changes
from tmail.imap.parse import parseQuoted, splitAtom
from tmail.imap.seqset import SequenceSet
from tmail.imap.sort import MessageFacts, sortKey
from tmail.imap.structure import quoted

Pairs = Iterable[tuple[int, int]]

#: Sort keys the index holds; the others are read from the header.
_INDEX_KEYS = frozenset({b"ARRIVAL", b"SIZE"})


class _Descending:
    """A sort key compared the other way round (C{REVERSE})."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Descending) and self.value == other.value

    def __lt__(self, other: _Descending) -> bool:
        return bool(other.value < self.value)

    __hash__ = None  # type: ignore[assignment]


class SearchContext:
    """
    The live result of a SEARCH (or UID SEARCH): the UIDs that match.
    Changes are told with context position 0, in mailbox order (RFC 5267
    4.3.3).
    """

    def __init__(
        self, mailbox: IMAPMailbox, search: MailboxSearch, uid: bool, pairs: Pairs
    ) -> None:
        self.mailbox = mailbox
        self.search = search
        self.uid = uid
        self.members = {u for _, u in pairs}

    @property
    def readsMessages(self) -> bool:
        """Whether testing a changed message reads its file."""
        return self.search.readsMessages

    def _number(self, seq: int, u: int) -> int:
        return u if self.uid else seq

    def forget(self, gone: Sequence[tuple[int, int]]) -> list[bytes]:
        """The C{REMOVEFROM} for expunged messages (sequence numbers from before)."""
        removed = [self._number(seq, u) for seq, u in gone if u in self.members]
        self.members.difference_update(u for _, u in gone)
        return [b"REMOVEFROM (0 %s)" % numberSet(sorted(removed))] if removed else []

    def review(self, pairs: Sequence[tuple[int, int]]) -> list[bytes]:
        """C{REMOVEFROM} and C{ADDTO} for messages that left or joined the result."""
        removed: list[int] = []
        added: list[int] = []
        for seq, u in pairs:
            matches = self.search.matches(seq, u)
            if matches and u not in self.members:
                self.members.add(u)
                added.append(self._number(seq, u))
            elif not matches and u in self.members:
                self.members.discard(u)
                removed.append(self._number(seq, u))
        items = []
        if removed:
            items.append(b"REMOVEFROM (0 %s)" % numberSet(sorted(removed)))
        if added:
            items.append(b"ADDTO (0 %s)" % numberSet(sorted(added)))
        return items


class SortContext:
    """
    The live result of a SORT (or UID SORT): the results in sort order,
    each with its key.  A message's key never changes (it is read from its
    header, size and dates), so a flag change only moves it in or out;
    each change is told at its context position, 1 being the first result.
    """

    def __init__(
        self,
        mailbox: IMAPMailbox,
        search: MailboxSearch,
        uid: bool,
        criteria: Sequence[tuple[bytes, bool]],
        ordered: Sequence[MessageFacts],
    ) -> None:
        self.mailbox = mailbox
        self.search = search
        self.uid = uid
        self._criteria = [(sortKey(name), reverse) for name, reverse in criteria]
        #: Whether a message's key is read from its header.
        self.keysRead = any(name not in _INDEX_KEYS for name, _ in criteria)
        self.keys = [self._key(facts) for facts in ordered]
        self.byUid = {key[-1]: key for key in self.keys}

    @property
    def readsMessages(self) -> bool:
        """Whether testing a changed message, or keying one that joins, reads its file."""
        return self.keysRead or self.search.readsMessages

    def _key(self, facts: MessageFacts) -> tuple[Any, ...]:
        parts: list[Any] = []
        for key, reverse in self._criteria:
            value = key(facts)
            parts.append(_Descending(value) if reverse else value)
        parts.append(facts.uid)
        return tuple(parts)

    def _number(self, seq: int, u: int) -> int:
        return u if self.uid else seq

    def _removing(self, leaving: Sequence[tuple[int, int]]) -> list[bytes]:
        """
        Take the messages out; their C{position set} pairs, runs of
        neighbours together, the last run first so that each position still
        holds when the client gets to it.
        """
        found = sorted(
            (bisect.bisect_left(self.keys, self.byUid[u]), self._number(seq, u))
            for seq, u in leaving
        )
        for position, _ in reversed(found):
            del self.keys[position]
        for _, u in leaving:
            del self.byUid[u]
        return [_pair(run) for run in reversed(_runs(found))]

    def _adding(self, joining: Sequence[tuple[int, int]]) -> list[bytes]:
        """Put the messages in; their pairs, runs together, the first run first."""
        numbers = {}
        for seq, u in joining:
            message = self.search.take(u)
            try:
                key = self._key(MessageFacts(seq, message))
            finally:
                message.drop()
            bisect.insort(self.keys, key)
            self.byUid[u] = key
            numbers[u] = self._number(seq, u)
        found = sorted(
            (bisect.bisect_left(self.keys, self.byUid[u]), number) for u, number in numbers.items()
        )
        return [_pair(run) for run in _runs(found)]

    def forget(self, gone: Sequence[tuple[int, int]]) -> list[bytes]:
        """The C{REMOVEFROM} for expunged messages (sequence numbers from before)."""
        removed = self._removing([(seq, u) for seq, u in gone if u in self.byUid])
        return [b"REMOVEFROM (%s)" % b" ".join(removed)] if removed else []

    def review(self, pairs: Sequence[tuple[int, int]]) -> list[bytes]:
        """C{REMOVEFROM} and then C{ADDTO}, at context positions (RFC 5267 4.3.2)."""
        leaving: list[tuple[int, int]] = []
        joining: list[tuple[int, int]] = []
        for seq, u in pairs:
            matches = self.search.matches(seq, u)
            if not matches and u in self.byUid:
                leaving.append((seq, u))
            elif matches and u not in self.byUid:
                joining.append((seq, u))
        removed = self._removing(leaving)
        added = self._adding(joining)
        items = []
        if removed:
            items.append(b"REMOVEFROM (%s)" % b" ".join(removed))
        if added:
            items.append(b"ADDTO (%s)" % b" ".join(added))
        return items


def _runs(found: Sequence[tuple[int, int]]) -> list[tuple[int, list[int]]]:
    """Ascending C{(index, number)} pairs as runs of neighbouring indices: C{(first, numbers)}."""
    runs: list[tuple[int, list[int]]] = []
    previous = -2
    for index, number in found:
        if index == previous + 1:
            runs[-1][1].append(number)
        else:
            runs.append((index, [number]))
        previous = index
    return runs


def _pair(run: tuple[int, list[int]]) -> bytes:
    """A context position (1 for the first result) and the set, in sort order."""
    return b"%d %s" % (run[0] + 1, numberSet(run[1]))


Context = SearchContext | SortContext


class SearchContexts:
    """
    A session's live results, by the tag of the command that asked for
    them; ended by CANCELUPDATE or when the mailbox is no longer selected.
    """

    def __init__(self, limit: int, maxReads: int) -> None:
        self.limit = limit
        self.maxReads = maxReads
        self._contexts: dict[bytes, Context] = {}

    def __bool__(self) -> bool:
        return bool(self._contexts)

    def check(self, tag: bytes, options: ReturnOptions | None) -> None:
        """RFC 5267 4.3: UPDATE under a tag that already has a live result is BAD."""
        if options is not None and options.update and tag in self._contexts:
            raise imap4.IllegalClientResponse("Tag reuse")

    def open(self, tag: bytes, context: Context) -> bytes | None:
        """
        Keep C{context} up to date under C{tag}; or the C{NO [NOUPDATE]}
        response (RFC 5267 4.3.1) when it cannot be.
        """
        code = b"NO [NOUPDATE %s] " % quoted(tag)
        if context.search.notes:
            return code + b"Criteria with sequence numbers or times are not kept up to date"
        if len(self._contexts) >= self.limit:
            return code + b"Too many contexts"
        self._contexts[tag] = context
        return None

    def cancel(self, tags: list[bytes]) -> None:
        """CANCELUPDATE (RFC 5267 4.3.5); BAD for a tag with no live result."""
        if any(tag not in self._contexts for tag in tags):
            raise imap4.IllegalClientResponse("No update context with that tag")
        for tag in tags:
            del self._contexts[tag]

    def clear(self) -> None:
        self._contexts.clear()

    def _responses(self, item: str, pairs: Sequence[tuple[int, int]]) -> Iterator[bytes]:
        for tag, context in list(self._contexts.items()):
            if item == "review" and not self._canReview(context, pairs):
                del self._contexts[tag]
                yield b"NO [NOUPDATE %s] Cannot follow these changes at once" % quoted(tag)
                continue
            try:
                items = context.forget(pairs) if item == "forget" else context.review(pairs)
            finally:
                context.search.release()
            if items:
                head = b"ESEARCH (TAG %s)%s " % (quoted(tag), b" UID" if context.uid else b"")
                yield head + b" ".join(items)

    def _canReview(self, context: Context, pairs: Sequence[tuple[int, int]]) -> bool:
        """Whether testing C{pairs} again reads few enough messages, none of them large."""
        if not context.readsMessages:
            return True
        headers = isinstance(context, SortContext) and context.keysRead
        return len(pairs) <= self.maxReads and context.search.testsAtOnce(
            (u for _, u in pairs), headers
        )

    def removed(self, changes: Changes) -> Iterator[bytes]:
        """What to send before the EXPUNGE or VANISHED responses of C{changes}."""
        if not self._contexts or not changes.vanished:
            return iter(())
        gone = list(zip(reversed(changes.expunged), changes.vanished, strict=True))
        return self._responses("forget", gone)

    def updated(self, mailbox: IMAPMailbox, changes: Changes) -> Iterator[bytes]:
        """What to send after the EXISTS and FETCH responses of C{changes}."""
        if not self._contexts:
            return iter(())
        pairs = [(seq, u) for seq, (u, _) in sorted(changes.changed.items())]
        if changes.added:
            pairs += mailbox.resolve(SequenceSet.fromNumbers(changes.added), True)
        return self.review(mailbox, pairs)

    def preparing(self, pairs: Sequence[tuple[int, int]]) -> Deferred[None] | None:
        """
        Open together the files a L{review} of C{pairs} reads (when few
        enough to be reviewed); C{None} when none is awaited.
        """
        waiting: list[Deferred[None]] = []
        for context in self._contexts.values():
            if context.readsMessages and len(pairs) <= self.maxReads:
                headers = isinstance(context, SortContext) and context.keysRead
                opening = context.search.prepare((u for _, u in pairs), headers)
                if opening is not None:
                    waiting.append(opening)
        if not waiting:
            return None
        return gatherResults(waiting).addCallback(lambda _: None)

    def review(self, mailbox: IMAPMailbox, pairs: Pairs) -> Iterator[bytes]:
        """What to send for messages whose flags this session changed (or new ones)."""
        if not self._contexts:
            return iter(())
        return self._responses("review", list(pairs))


def parseTags(line: bytes) -> list[bytes]:
    """CANCELUPDATE's arguments: one or more tags, quoted (RFC 5267 5) or as atoms."""
    tags: list[bytes] = []
    rest = line.strip(b" ")
    while rest:
        if rest[:1] == b'"':
            tag, end = parseQuoted(rest)
            rest = rest[end:]
            if rest[:1] not in (b"", b" "):
                raise imap4.IllegalClientResponse("Missing space between tags")
        else:
            tag, rest = splitAtom(rest)
        tags.append(tag)
        rest = rest.lstrip(b" ")
    if not tags:
        raise imap4.IllegalClientResponse("CANCELUPDATE needs a tag")
    return tags
