# -*- test-case-name: tests.imap.test_imap_notify -*-
"""
NOTIFY (RFC 5465): events of other mailboxes, pushed to the client.

Twisted has no NOTIFY.  A session that sets one gets, while it sends no
command, while it idles, and before the tagged reply of any command:

  - for other mailboxes, an untagged C{STATUS} (MESSAGES UIDNEXT
    UIDVALIDITY, and HIGHESTMODSEQ under CONDSTORE or with FlagChange) when
    messages arrive or go (and with FlagChange when flags change), and
    C{LIST} responses for MailboxName (C{\\NonExistent}, C{OLDNAME}) and
    SubscriptionChange events;
  - for the selected mailbox with C{SELECTED}, its EXISTS, EXPUNGE and
    FETCH FLAGS at once, and a FETCH of the MessageNew attributes for each
    new message; C{SELECTED-DELAYED} keeps them for the next command (or
    IDLE), as RFC 3501 7.4.1 has it.

Changes made in this process reach a session through the folders'
listeners (L{IMailFolder.addListener}) and, for folder names and
subscriptions, L{foldersChanged}; changes made by other processes (a
delivery agent, another worker) are found by a poll every
C{imap.notify_poll_interval} seconds that asks each watched folder to look
at its directory mtimes (L{IIncrementalFolder.refresh}: two C{stat}s when
nothing changed), a slice of folders at a time (L{tmail.steps}), so a user
with thousands of folders keeps no one else waiting.  What a session cannot
send at once waits in a queue that keeps one entry per mailbox; past
C{imap.notify_queue_limit} entries the session gets
C{OK [NOTIFICATIONOVERFLOW]} and NOTIFY is off, as after C{NOTIFY NONE}
(RFC 5465 5.8).  The arguments are read by L{tmail.imap.notifyparse}.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from twisted.internet import task
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from tmail.errors import NoSuchFolder, StoreError
from tmail.imap.account import IMAPAccount, canonicalName
from tmail.imap.fetch import FileRange, MessageRange, OpenedAhead, Piece, messageItems
from tmail.imap.folderstatus import highestModSeq
from tmail.imap.mailbox import IMAPMailbox
from tmail.imap.notifyparse import (
    FLAG_CHANGE,
    INBOXES,
    MAILBOX_NAME,
    MAILBOXES,
    MESSAGE_EVENTS,
    MESSAGE_NEW,
    SELECTED,
    SUBSCRIBED,
    SUBSCRIPTION_CHANGE,
    SUBTREE,
    EventGroup,
    NotifyRequest,
)
from tmail.imap.seqset import SequenceSet
from tmail.imap.waiting import Steps, drive, waitFor, waitOn
from tmail.imap.wildcard import INBOX
from tmail.interfaces import IIncrementalFolder, IMailFolder, IModSeqFolder
from tmail.steps import StepBudget

_log = Logger()

_LAST_UID = 2**32 - 1


class NotifyHost(Protocol):
    """What a L{Notifier} needs of its IMAP session."""

    clock: IReactorTime
    cooperator: task.Cooperator
    mbox: IMAPMailbox | None
    transport: Any
    parseState: str

    @property
    def condstore(self) -> bool: ...

    @property
    def qresync(self) -> bool: ...

    def sendUntaggedResponse(self, message: bytes, isAsync: Any = None) -> None: ...

    def encodeMailbox(self, name: str) -> bytes: ...

    def canNotify(self) -> bool:
        """Whether a response may go out now: no command runs, or the client idles."""

    def reportChanges(self, force: bool = False) -> None: ...

    def pushSelectedChanges(self) -> None:
        """Send the selected mailbox's changes now, expunges included."""


@dataclass(frozen=True)
class _Told:
    """What the client was last told of a folder."""

    messages: int
    uidNext: int
    uidValidity: int
    modseq: int


#: Every running notifier, by the store it watches: folder names and
#: subscriptions changed in this process reach them without a poll.
_NOTIFIERS: weakref.WeakKeyDictionary[Any, weakref.WeakSet[Notifier]] = weakref.WeakKeyDictionary()


#: When a NOTIFY poll last had each folder look at its directories.
_LOOKED: weakref.WeakKeyDictionary[IMailFolder, float] = weakref.WeakKeyDictionary()


def foldersChanged(
    store: Any, origin: object, renamed: tuple[str, str] | None = None
) -> Deferred[None]:
    """
    A session created, deleted, renamed, subscribed or unsubscribed a
    folder of C{store}: the other sessions watching it hear of it now
    (the one that did it does not, RFC 5465 5).  Fires once the one that
    did it knows the new names (its tagged reply waits for that).
    """
    own: Deferred[None] = succeed(None)
    for notifier in list(_NOTIFIERS.get(store, ())):
        looked = notifier.namesChanged(notifier.host is origin, renamed)
        if notifier.host is origin:
            own = looked
    return own


class Notifier:
    """
    One session's NOTIFY SET: which folders it watches, what it told the
    client of each, and what waits to be sent.
    """

    #: The messages of the next MessageNew FETCHes, their files opening.
    _ahead: OpenedAhead | None = None

    def __init__(
        self,
        host: NotifyHost,
        account: IMAPAccount,
        request: NotifyRequest,
        pollInterval: float,
        queueLimit: int,
    ) -> None:
        self.host = host
        self.account = account
        self.request = request
        self.stopped = False
        self._store = account.store
        self._delimiter = account.delimiter
        self._pollInterval = pollInterval
        self._queueLimit = queueLimit
        self._groups = [g for g in request.groups if not g.selected]
        self._roots = [self._canonical(g.mailboxes) for g in self._groups]
        self._selected = next((g for g in request.groups if g.selected), None)
        self._told: dict[str, _Told] = {}
        self._watched: dict[str, IMailFolder] = {}
        self._dirty: dict[int, IMailFolder] = {}
        self._names: set[str] = set()
        self._subscribed: set[str] = set()
        self._queue: dict[tuple[str, str], bytes] = {}
        self._overflowed = False
        self._selectedDirty = False
        self._flushCall: IDelayedCall | None = None
        self._poll: task.LoopingCall | None = None
        self._polling = False
        self._markBox: IMAPMailbox | None = None
        self._mark = 0

    # Which events apply where

    @property
    def _wantsNames(self) -> bool:
        return bool(self._groups)

    @property
    def _wantsSubscriptions(self) -> bool:
        return any(g.filter == SUBSCRIBED or SUBSCRIPTION_CHANGE in g.events for g in self._groups)

    def eventsFor(self, name: str) -> tuple[str, ...]:
        """
        The events asked for a mailbox other than the selected one: those of
        the most specific group that names it (MAILBOXES, then the deepest
        SUBTREE, INBOXES, SUBSCRIBED, PERSONAL; a later group over an
        earlier one of the same kind).
        """
        best: tuple[int, int, int] | None = None
        events: tuple[str, ...] = ()
        for index, group in enumerate(self._groups):
            rank = self._rank(group, self._roots[index], name)
            if rank is None:
                continue
            key = (rank[0], rank[1], index)
            if best is None or key > best:
                best, events = key, group.events
        return events

    def _rank(self, group: EventGroup, roots: list[str], name: str) -> tuple[int, int] | None:
        kind = group.filter
        if kind == MAILBOXES:
            return (5, 0) if name in roots else None
        if kind == SUBTREE:
            depth = -1
            for root in roots:
                if name == root or name.startswith(root + self._delimiter):
                    depth = max(depth, len(root))
            return (4, depth) if depth >= 0 else None
        if kind == INBOXES:
            # Deliveries go to INBOX only (no Sieve fileinto).
            return (3, 0) if name == INBOX else None
        if kind == SUBSCRIBED:
            return (2, 0) if name in self._subscribed else None
        return (1, 0)

    def _canonical(self, names: Iterable[str]) -> list[str]:
        return [canonicalName(n.rstrip(self._delimiter), self._delimiter) for n in names]

    def _watchesMessages(self, name: str) -> bool:
        return bool(MESSAGE_EVENTS.intersection(self.eventsFor(name)))

    @property
    def _active(self) -> bool:
        return not (self.stopped or self._overflowed)

    @property
    def watchesSelectedFlags(self) -> bool:
        """Whether FlagChange is asked for the selected mailbox: its FETCH FLAGS name the UID."""
        group = self._selected
        return self._active and group is not None and FLAG_CHANGE in group.events

    @property
    def silencesSelected(self) -> bool:
        """
        Whether no message event is asked for the selected mailbox (no
        SELECTED group, or SELECTED NONE): IDLE then sends none either.
        """
        group = self._selected
        return self._active and (group is None or not group.events)

    def takesSelected(self, idling: bool) -> bool:
        """
        Whether this NOTIFY sends the selected mailbox's changes as they
        come (SELECTED, or any while idling) rather than at the next command.
        """
        group = self._selected
        if not self._active or group is None or not group.events:
            return False
        return idling or group.filter == SELECTED

    # Starting and stopping

    def starting(self) -> Steps[None]:
        """
        Begin watching, a slice of folders at a time; with STATUS, queue a
        STATUS for each watched mailbox (RFC 5465 3.1).
        """
        _NOTIFIERS.setdefault(self._store, weakref.WeakSet()).add(self)
        if self._wantsNames:
            self._names = set((yield from waitFor(self._store.listFolders)))
        if self._wantsSubscriptions:
            subscribed = yield from waitFor(self._store.subscriptions)
            self._subscribed = set(self._canonical(subscribed))
        budget = StepBudget()
        for name in sorted(self._names):
            if self.stopped:
                return
            if self._watchesMessages(name):
                yield from self._watch(name, None)
                if self.request.status and not self._isSelected(name):
                    self._queueStatus(name)
            if budget.spent():
                yield None
        if self._wantsNames or self._selected is not None:
            poll = self._poll = task.LoopingCall(self._tick)
            poll.clock = self.host.clock
            poll.start(self._pollInterval, now=False)

    def stop(self) -> None:
        """Stop watching and forget what was queued (NOTIFY NONE, a new SET, logout)."""
        if self.stopped:
            return
        self.stopped = True
        self._release()
        self._queue.clear()

    def _release(self) -> None:
        """Stop watching: no listener, no poll."""
        watchers = _NOTIFIERS.get(self._store)
        if watchers is not None:
            watchers.discard(self)
        for folder in self._watched.values():
            folder.removeListener(self._folderChanged)
        self._watched.clear()
        self._dirty.clear()
        if self._poll is not None and self._poll.running:
            self._poll.stop()
        if self._flushCall is not None and self._flushCall.active():
            self._flushCall.cancel()
        self._flushCall = None
        if self._ahead is not None:
            self._ahead.clear()
            self._ahead = None

    # Folders

    def _isSelected(self, name: str) -> bool:
        mbox = self.host.mbox
        return mbox is not None and mbox.folder.name == name

    def _watch(self, name: str, told: _Told | None) -> Steps[None]:
        try:
            folder = yield from waitOn(self.account.current(name))
        except StoreError:
            return
        if self.stopped or name in self._watched:
            return
        folder.addListener(self._folderChanged)
        self._watched[name] = folder
        self._told[name] = told if told is not None else self._state(folder)

    def _unwatch(self, name: str) -> _Told | None:
        folder = self._watched.pop(name, None)
        if folder is not None:
            folder.removeListener(self._folderChanged)
        return self._told.pop(name, None)

    @staticmethod
    def _state(folder: IMailFolder) -> _Told:
        """
        The folder's counts as its index knows them (other processes'
        changes come with the polls), without listing it or taking
        C{\\Recent} from anyone.
        """
        if IIncrementalFolder.providedBy(folder):
            count = folder.messageCount()
        else:
            count = len(folder.messages())
        return _Told(count, folder.uidNext(), folder.uidValidity(), highestModSeq(folder))

    def _statusLine(self, name: str, told: _Told, events: Iterable[str]) -> bytes:
        items = [
            b"MESSAGES %d" % told.messages,
            b"UIDNEXT %d" % told.uidNext,
            b"UIDVALIDITY %d" % told.uidValidity,
        ]
        folder = self._watched.get(name)
        modseqs = folder is not None and IModSeqFolder.providedBy(folder)
        if modseqs and (self.host.condstore or FLAG_CHANGE in events):
            items.append(b"HIGHESTMODSEQ %d" % told.modseq)
        return b"STATUS %s (%s)" % (self.host.encodeMailbox(name), b" ".join(items))

    def _queueStatus(self, name: str) -> None:
        told = self._told.get(name)
        if told is not None:
            self._enqueue(("STATUS", name), self._statusLine(name, told, self.eventsFor(name)))

    def _folderChanged(self, folder: IMailFolder) -> None:
        if self.stopped:
            return
        self._dirty[id(folder)] = folder
        self._schedule()

    def selectedChanged(self) -> None:
        """The selected mailbox changed (in this process, or as a poll found)."""
        self._selectedDirty = True
        self._schedule()

    def _schedule(self) -> None:
        if self._flushCall is None and not self.stopped:
            self._flushCall = self.host.clock.callLater(0, self._flush)

    def _flush(self) -> None:
        self._flushCall = None
        if self.stopped:
            return
        if self._overflowed:
            self.deliver()
            return
        self._examineDirty()
        if self._selectedDirty and self.host.canNotify():
            self._selectedDirty = False
            mbox = self.host.mbox
            if self.takesSelected(self.host.parseState == "idle"):
                self._pushSelected()
            elif mbox is not None:
                self._sendNewMessages(mbox)
        self.deliver()

    def _examineDirty(self) -> None:
        dirty, self._dirty = list(self._dirty.values()), {}
        for folder in dirty:
            self._examine(folder)

    def _examine(self, folder: IMailFolder) -> None:
        name = folder.name
        if self._watched.get(name) is not folder or self._isSelected(name):
            return
        events = self.eventsFor(name)
        try:
            now = self._state(folder)
        except NoSuchFolder:
            return
        before = self._told.get(name)
        self._told[name] = now
        counts = before is None or (before.messages, before.uidNext, before.uidValidity) != (
            now.messages,
            now.uidNext,
            now.uidValidity,
        )
        flags = before is not None and before.modseq != now.modseq and FLAG_CHANGE in events
        if (counts and MESSAGE_NEW in events) or flags:
            self._enqueue(("STATUS", name), self._statusLine(name, now, events))

    # Names and subscriptions

    def namesChanged(self, own: bool, renamed: tuple[str, str] | None) -> Deferred[None]:
        """
        Folder names or subscriptions changed in this process; C{own}: this
        session did it.  Fires once the new names are taken in.
        """
        if self.stopped or not self._wantsNames:
            return succeed(None)

        def failed(failure: Failure) -> None:
            _log.failure("Cannot look at the folders for NOTIFY", failure)

        looked = drive(self._checkNames(silent=own, renamed=renamed))
        return looked.addErrback(failed).addCallback(lambda _: self.deliver())

    def _checkNames(self, silent: bool, renamed: tuple[str, str] | None = None) -> Steps[None]:
        names = set((yield from waitFor(self._store.listFolders)))
        subscribed = self._subscribed
        if self._wantsSubscriptions:
            subscribed = set(self._canonical((yield from waitFor(self._store.subscriptions))))
        created, deleted = names - self._names, self._names - names
        moved: list[tuple[str, str]] = []
        if renamed is not None:
            old, new = self._canonical(renamed)
            for name in sorted(deleted):
                if name == old or name.startswith(old + self._delimiter):
                    target = new + name[len(old) :]
                    if target in created:
                        moved.append((name, target))
                        deleted.discard(name)
                        created.discard(target)
        changedSubscriptions = subscribed ^ self._subscribed
        previousSubscriptions = self._subscribed
        self._names, self._subscribed = names, subscribed
        for old, new in moved:
            told = self._unwatch(old)
            if self._watchesMessages(new):
                yield from self._watch(new, told)
        for name in deleted:
            self._unwatch(name)
        for name in sorted(names):
            wanted = self._watchesMessages(name)
            if wanted and name not in self._watched:
                yield from self._watch(name, None)
                folder = self._watched.get(name)
                told = self._told.get(name)
                if name in created and folder is not None and told is not None:
                    # New to this session: what it already holds is news.
                    self._told[name] = replace(told, messages=0, uidNext=1)
                    self._folderChanged(folder)
            elif not wanted and name in self._watched:
                self._unwatch(name)
        if silent:
            return
        for name in sorted(deleted):
            if MAILBOX_NAME in self._eventsAround(name, previousSubscriptions):
                self._queueList(name, ["\\NonExistent"])
        for name in sorted(created):
            if MAILBOX_NAME in self.eventsFor(name):
                self._queueList(name, self._attributes(name))
        for old, new in moved:
            if MAILBOX_NAME in self.eventsFor(new):
                self._queueList(new, self._attributes(new), old)
        for name in sorted(changedSubscriptions):
            if SUBSCRIPTION_CHANGE in self._eventsAround(name, previousSubscriptions):
                self._queueList(name, self._attributes(name))

    def _eventsAround(self, name: str, before: set[str]) -> tuple[str, ...]:
        """The events of a name by the subscriptions now or before (it may just have left them)."""
        events = self.eventsFor(name)
        if events:
            return events
        now, self._subscribed = self._subscribed, before
        try:
            return self.eventsFor(name)
        finally:
            self._subscribed = now

    def _attributes(self, name: str) -> list[str]:
        if name not in self._names:
            attributes = ["\\NonExistent"]
        else:
            prefix = name + self._delimiter
            children = any(other.startswith(prefix) for other in self._names)
            attributes = ["\\HasChildren" if children else "\\HasNoChildren"]
        if name in self._subscribed:
            attributes.append("\\Subscribed")
        return attributes

    def _queueList(self, name: str, attributes: list[str], oldName: str | None = None) -> None:
        delimiter = b'"' + self._delimiter.encode() + b'"'
        line = b"LIST (%s) %s %s" % (
            " ".join(attributes).encode(),
            delimiter,
            self.host.encodeMailbox(name),
        )
        if oldName is not None:
            line += b' ("OLDNAME" (%s))' % self.host.encodeMailbox(oldName)
        self._enqueue(("LIST", name), line)

    # Polling for other processes' changes

    def _tick(self) -> None:
        if self._polling or self.stopped:
            return
        self._polling = True

        def done(_: object) -> None:
            self._polling = False

        def failed(failure: Failure) -> None:
            self._polling = False
            _log.failure("NOTIFY poll failed", failure)

        self.host.cooperator.cooperate(self._pollSteps()).whenDone().addCallbacks(done, failed)

    def _pollSteps(self) -> Steps[None]:
        """Look at the folder list and each watched folder, a slice at a time."""
        if self._wantsNames:
            yield from self._checkNames(silent=False)
            yield None
        budget = StepBudget()
        for folder in list(self._watched.values()):
            if self.stopped:
                return
            yield from self._lookAt(folder)
            if budget.spent():
                yield None
        mbox = self.host.mbox
        if mbox is not None and self._selected is not None and self._selected.events:
            yield from self._lookAt(mbox.folder)
        self.deliver()

    def _lookAt(self, folder: IMailFolder) -> Steps[None]:
        """
        Have a folder look for other processes' changes, unless another
        session's poll did within half an interval: what it found reached
        every listener, this one's too.
        """
        if not IIncrementalFolder.providedBy(folder):
            self._folderChanged(folder)
            return
        now = self.host.clock.seconds()
        last = _LOOKED.get(folder)
        if last is not None and 0 <= now - last < self._pollInterval / 2:
            return
        _LOOKED[folder] = now
        with contextlib.suppress(NoSuchFolder):
            yield from waitFor(folder.refresh)

    # Sending

    def _enqueue(self, key: tuple[str, str], line: bytes) -> None:
        if self._overflowed:
            return
        self._queue.pop(key, None)
        self._queue[key] = line
        if len(self._queue) > self._queueLimit:
            # RFC 5465 5.8: as after NOTIFY NONE, once the client is told.
            self._overflowed = True
            self._queue.clear()
            self._release()

    def deliver(self) -> None:
        """Send what is queued if the session may send now."""
        if self.host.canNotify():
            self._sendQueued()

    def beforeTagged(self) -> None:
        """A command ends: its tagged reply follows what is sent here."""
        if not self._active:
            self._sendQueued()
            return
        group = self._selected
        mbox = self.host.mbox
        if group is not None and group.fetchAtts and mbox is not None:
            self._markFor(mbox)
            self.host.reportChanges()
            self._sendNewMessages(mbox)
        self._examineDirty()
        self._sendQueued()

    def _sendQueued(self) -> None:
        if self.stopped:
            return
        if self._overflowed:
            self.stop()
            self.host.sendUntaggedResponse(
                b"OK [NOTIFICATIONOVERFLOW] Too many notifications; NOTIFY is off"
            )
            return
        queued, self._queue = list(self._queue.values()), {}
        for line in queued:
            self.host.sendUntaggedResponse(line)

    def _markFor(self, mbox: IMAPMailbox) -> None:
        if self._markBox is not mbox:
            self._markBox, self._mark = mbox, mbox.lastUID()

    def _pushSelected(self) -> None:
        mbox = self.host.mbox
        if mbox is None:
            return
        self._markFor(mbox)
        self.host.pushSelectedChanges()
        self._sendNewMessages(mbox)

    def _sendNewMessages(self, mbox: IMAPMailbox) -> None:
        """FETCH the MessageNew attributes of messages new since the last time, a slice per turn."""
        group = self._selected
        if group is None or not group.fetchAtts or self.host.mbox is not mbox:
            self._mark = mbox.lastUID()
            return
        if self._mark >= mbox.lastUID():
            return
        query = list(group.fetchAtts)
        new = mbox.resolve(SequenceSet(((self._mark + 1, _LAST_UID),)), True)
        ahead = self._ahead
        if ahead is None or ahead.mailbox is not mbox:
            ahead = self._ahead = OpenedAhead(mbox, query)
        some = new[: ahead.SLICE]
        waiting = ahead.prepare([uid for _, uid in some])
        if waiting is not None:
            # The files are opened first; the FETCHes go once they are.
            waiting.addCallback(lambda _: self.selectedChanged())
            return
        try:
            self._sendFetches(mbox, some, query, ahead, StepBudget())
        finally:
            ahead.clear()
        if self._mark < mbox.lastUID():
            self._selectedDirty = True
            self._schedule()

    def _sendFetches(
        self,
        mbox: IMAPMailbox,
        new: list[tuple[int, int]],
        query: list[Any],
        ahead: OpenedAhead,
        budget: StepBudget,
    ) -> None:
        for seq, uid in new:
            self._mark = uid
            try:
                message = ahead.message(uid)
                pieces = messageItems(seq, mbox, uid, query, self.host.qresync, message)
                self.host.transport.write(_joined(pieces))
            except KeyError:
                continue
            except Exception:
                _log.failure("Cannot build the NOTIFY FETCH for UID {uid}", uid=uid)
                continue
            if budget.spent() and self._mark < mbox.lastUID():
                self._selectedDirty = True
                self._schedule()
                return


def _joined(pieces: list[Piece]) -> bytes:
    """One FETCH response's bytes, file ranges read in."""
    out: list[bytes] = []
    for piece in pieces:
        if isinstance(piece, MessageRange):
            piece = piece.open()
        if isinstance(piece, FileRange):
            with piece.file as f:
                f.seek(piece.offset)
                data = f.read(piece.length)
            out.append(piece.marker % len(data) + b"\r\n" + data)
        else:
            out.append(piece)
    return b"".join(out)
