# -*- test-case-name: tests.imap.test_imap_protocol -*-
"""
The IMAP4rev1 commands, bound to tmail's store through L{IMAPAccount} and
L{IMAPMailbox}, over the input handling of L{IMAPSession}.  L{IMAPServer}
keeps the session's life cycle, selecting, NOTIFY, IDLE and the reports of
changes; the commands are grouped by area in the classes it is made of:
L{tmail.imap.clientcommands} (ID, ENABLE), L{tmail.imap.logincommands},
L{tmail.imap.foldercommands}, L{tmail.imap.metadatacommands},
L{tmail.imap.appendcommands} (STATUS, APPEND), L{tmail.imap.searchcommands}
(SEARCH, SORT, THREAD), L{tmail.imap.messagecommands} (FETCH, STORE, COPY,
MOVE, UID), L{tmail.imap.quotacommands}, L{tmail.imap.urlcommands} and
L{tmail.imap.catenate}.

What the handlers fix in Twisted's (each has a regression test):
  - STARTTLS runs no command pipelined after it (CVE-2011-0411 class).
  - LOGIN and AUTHENTICATE follow the plaintext policy and the throttle.
  - Store errors are C{NO [TRYCREATE]}, C{[NONEXISTENT]}, C{[ALREADYEXISTS]}
    (Twisted turned several into C{BAD} through str/bytes errors), and
    C{[OVERQUOTA]} (RFC 5530) for an APPEND or COPY over the user's quota;
    an APPEND whose literal cannot fit is refused before the client sends it.
  - SELECT reports UNSEEN, UIDNEXT and PERMANENTFLAGS; FETCH sets C{\\Seen},
    honours partial ranges and serves exact bytes; APPEND and COPY report
    UIDPLUS codes.
  - A full disk refuses only writes that need space (APPEND, COPY, a new
    keyword: C{NO [OVERQUOTA]}); reading goes on, deleting works (STORE
    C{\\Deleted}, EXPUNGE, CLOSE, MOVE's expunge: it is what frees space),
    and a FETCH that cannot set C{\\Seen} serves the message without it.
  - IDLE ends only on C{DONE}; changes made by other sessions reach a
    session (EXPUNGE included) only when RFC 3501 7.4.1 allows, each
    EXPUNGE valid for the session's view when sent, none after LOGOUT's
    BYE.  A keyword is announced in FLAGS and PERMANENTFLAGS before a FETCH
    names it (RFC 3501 7.2.6); a message another session expunged is still
    served until the session is told (RFC 2180 4.1.1), else C{NO
    [EXPUNGEISSUED]} in Dovecot's words.  STATUS and EXAMINE leave
    C{\\Recent} to the next session that selects (RFC 3501 2.3.2); the
    first CONDSTORE-enabling command brings C{OK [HIGHESTMODSEQ]}.
  - SEARCH, SORT and THREAD (Twisted's SEARCH runs in the reactor at one
    go) are evaluated a message at a time through the session's
    L{task.Cooperator}, as FETCH is streamed; STORE, COPY, MOVE, EXPUNGE,
    UID EXPUNGE, CLOSE, FETCH's C{\\Seen}, LIST-STATUS, DELETE and RENAME
    of INBOX run a slice of a few milliseconds at a time (L{tmail.steps})
    the same way, so a large folder keeps no other session waiting.  The
    session's view does not change meanwhile, and a client that goes away
    stops the work, save what must not stay half done (COPY undoes its
    copies; MOVE, once every copy is made, still removes the originals;
    DELETE and RENAME finish).

The store may answer any disk or network operation in a later reactor turn
(the seam of L{tmail.interfaces}); every command waits for it before it
answers, and the session reads no further command meanwhile.  Long
commands wait inside their steps (L{tmail.imap.waiting}); FETCH, SEARCH,
SORT and THREAD open the files a slice of messages needs together, never
one wait per message.  The folder's index answers from memory, so SELECT,
EXAMINE, STATUS, LIST-STATUS, NOOP, CHECK, IDLE's polls and the report of
changes before a tagged reply (when the folder changed) ask it to take in
other processes' changes first.

Extensions beyond Twisted's: ENABLE (RFC 5161), ID (RFC 2971), MOVE (RFC
6851), UIDPLUS (RFC 4315), MULTIAPPEND (RFC 3502), APPENDLIMIT (RFC 7889),
QUOTA (RFC 9208), BINARY (RFC 3516, with L{tmail.imap.binary}), CONDSTORE and
QRESYNC (RFC 7162, with L{tmail.imap.condstore}), IMAP4rev2 (RFC 9051) and
UTF8=ACCEPT (RFC 6855) through ENABLE, LITERAL+ or LITERAL- (RFC 7888, in
L{IMAPSession}), OBJECTID (RFC 8474, L{tmail.imap.objectid}), SAVEDATE (RFC
8514, L{tmail.imap.savedate}), PREVIEW (RFC 8970, L{tmail.imap.preview}),
METADATA and METADATA-SERVER (RFC 5464, L{tmail.imap.metadata}), NOTIFY
(RFC 5465, L{tmail.imap.notify}), CATENATE (RFC 4469, L{tmail.imap.catenate}),
URLAUTH and URLAUTH=BINARY (RFC 4467, 5524, L{tmail.imap.urlcommands}), ESORT,
CONTEXT=SEARCH and CONTEXT=SORT (RFC 5267, with L{tmail.imap.esearch} and
L{tmail.imap.searchcontext}), PARTIAL (RFC 9394, L{tmail.imap.partial}) and
SORT=DISPLAY (RFC 5957, L{tmail.imap.sortdisplay}).
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import Any

from twisted.internet import task
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.logger import Logger
from twisted.mail import imap4
from twisted.python.failure import Failure
from zope.interface import implementer

from tmail.errors import NoSuchFolder
from tmail.imap.appendcommands import AppendCommands
from tmail.imap.catenate import CatenateAppend
from tmail.imap.clientcommands import ClientCommands
from tmail.imap.condstore import (
    parseSelectParams,
)
from tmail.imap.foldercommands import FolderCommands
from tmail.imap.logincommands import LoginCommands
from tmail.imap.mailbox import IMAPMailbox, ISessionListener
from tmail.imap.mailboxsync import Changes
from tmail.imap.messagecache import IMessageFacts
from tmail.imap.messagecommands import MessageCommands
from tmail.imap.metadatacommands import MetadataCommands
from tmail.imap.mimeentity import MimeLimits
from tmail.imap.notify import Notifier, foldersChanged
from tmail.imap.notifyparse import collectArguments, parseNotify
from tmail.imap.objectid import mailboxIdCode
from tmail.imap.quotacommands import QuotaCommands
from tmail.imap.responses import flagsResponses, uidSet
from tmail.imap.searchcommands import SearchCommands
from tmail.imap.seqset import EVERY_MESSAGE, Messages, SequenceSet
from tmail.imap.session import IMAPSession
from tmail.imap.structure import quoted
from tmail.imap.urlcommands import URLAuthCommands
from tmail.imap.waiting import Steps, answered
from tmail.interfaces import (
    IIncrementalFolder,
    IMetadataStore,
)
from tmail.steps import StepBudget

_log = Logger()

_S = imap4.IMAP4Server
_B = IMAPSession


@implementer(ISessionListener)
class IMAPServer(
    MessageCommands,
    SearchCommands,
    AppendCommands,
    MetadataCommands,
    FolderCommands,
    LoginCommands,
    ClientCommands,
    QuotaCommands,
    CatenateAppend,
    URLAuthCommands,
    IMAPSession,
):
    """
    One IMAP session with tmail's commands.

    @cvar idlePollInterval: seconds between looks at the folder while a
        client idles, to notice changes made by other processes.
    """

    idlePollInterval = 5.0
    #: Runs the slow, durable half of an APPEND (fsync, move into the
    #: folder); L{IMAPFactory} makes it a worker thread so one session's disk
    #: wait does not stall the others, a bare session runs it inline.
    runInThread: Callable[..., Deferred[Any]] = staticmethod(maybeDeferred)  # type: ignore[arg-type]
    #: Runs the reading and taking apart of a large message for SEARCH,
    #: SORT, THREAD and FETCH (L{tmail.imap.largemessages}); L{IMAPFactory}
    #: makes it a worker thread, a bare session runs it inline.
    runInWorker: Callable[..., Deferred[Any]] = staticmethod(maybeDeferred)  # type: ignore[arg-type]
    #: Parsed facts of messages shared by the sessions of the process
    #: (L{tmail.imap.messagecache}); L{IMAPFactory} gives its own, a bare
    #: session keeps none.
    messageCache: IMessageFacts | None = None

    _idleTag: bytes | None = None
    _idlePoll: task.LoopingCall | None = None
    _flushPending = False
    #: MODSEQs went out in this command's responses: if expunges are held
    #: back, a safe HIGHESTMODSEQ must follow (RFC 7162 3.2).
    _sentModSeq = False
    #: The SEARCH being run asked to SAVE its result: if it fails, C{$}
    #: becomes empty (RFC 5182 2.1).
    _savingSearch = False
    #: The command running a step at a time (L{_cooperate}), if any.
    _running: task.CooperativeTask[Any] | None = None
    #: Its steps, closed if the client goes away.
    _steps: Iterator[object] | None = None
    #: The NOTIFY SET in force (RFC 5465), if any.
    _notifier: Notifier | None = None

    def connectionLost(self, reason: Failure | None = None) -> None:
        self._stopNotify()
        self._stopIdle()
        self._deselect()
        super().connectionLost(reason)
        running, self._running = self._running, None
        steps, self._steps = self._steps, None
        if running is not None:
            with contextlib.suppress(task.TaskDone):
                running.stop()
        if isinstance(steps, Generator) and inspect.getgeneratorstate(steps) != inspect.GEN_RUNNING:
            steps.close()

    def capabilities(self) -> dict[bytes, list[bytes] | None]:
        literal = b"LITERAL-" if self.settings.literal_minus else b"LITERAL+"
        caps: dict[bytes, list[bytes] | None] = {
            b"IMAP4rev2": None,
            literal: None,
            b"IDLE": None,
            b"NAMESPACE": None,
            b"UIDPLUS": None,
            b"CHILDREN": None,
            b"UNSELECT": None,
            b"COMPRESS=DEFLATE": None,
            b"ESEARCH": None,
            b"SEARCHRES": None,
            b"WITHIN": None,
            b"SORT": None,
            b"ESORT": None,
            b"SORT=DISPLAY": None,
            b"CONTEXT": [b"SEARCH", b"SORT"],
            b"PARTIAL": None,
            b"THREAD": [b"ORDEREDSUBJECT", b"REFERENCES"],
            b"ENABLE": None,
            b"ID": None,
            b"MOVE": None,
            b"MULTIAPPEND": None,
            b"APPENDLIMIT": [b"%d" % self.settings.max_literal_size],
            b"QUOTA": None,
            b"QUOTA=RES-STORAGE": None,
            b"QUOTA=RES-MESSAGE": None,
            b"LIST-EXTENDED": None,
            b"LIST-STATUS": None,
            b"SPECIAL-USE": None,
            b"CREATE-SPECIAL-USE": None,
            b"STATUS=SIZE": None,
            b"BINARY": None,
            b"CONDSTORE": None,
            b"QRESYNC": None,
            b"UTF8": [b"ACCEPT"],
            b"OBJECTID": None,
            b"SAVEDATE": None,
            b"PREVIEW": None,
            b"METADATA": None,
            b"METADATA-SERVER": None,
            b"NOTIFY": None,
            b"UIDBATCHES": None,
        }
        caps.update(self.urlCapabilities())
        if self.state == "unauth":
            if self.ctx is not None and self.canStartTLS and not self._secure():
                caps[b"STARTTLS"] = None
            if self._plaintextOK():
                caps[b"SASL-IR"] = None
                caps[b"AUTH"] = [b"PLAIN", b"LOGIN"]
            else:
                caps[b"LOGINDISABLED"] = None
        else:
            # As Dovecot does: the list after login names every extension.
            caps[b"SASL-IR"] = None
            if self.account is not None and not IMetadataStore.providedBy(self.account.store):
                del caps[b"METADATA"], caps[b"METADATA-SERVER"]
        return caps

    def reportChanges(self, force: bool = False) -> None:
        """Send what changed in the selected folder, if anything, as RFC 3501 7.4.1 allows."""
        mbox = self.mbox
        if mbox is None or self.state != "select":
            return
        saidModSeq = False
        if force or mbox.dirty:
            try:
                changes = mbox.sync(allowExpunge=not self._noExpunge)
            except NoSuchFolder:
                self._deselect()
                self.sendUntaggedResponse(b"BYE Selected mailbox was deleted")
                self.transport.loseConnection()
                return
            saidModSeq = self._writeChanges(changes)
        if self._sentModSeq:
            self._sentModSeq = False
            if not saidModSeq:
                self._sayHeldModSeq(mbox)

    def _writeChanges(self, changes: Changes) -> bool:
        """Send the responses for C{changes}; return whether they ended with a HIGHESTMODSEQ."""
        for response in self._changeResponses(changes):
            self.sendUntaggedResponse(response)
        return bool(self.condstore and changes.flags and changes.modseq is not None)

    def _changeResponses(self, changes: Changes) -> Iterator[bytes]:
        """The untagged responses for C{changes}, in order."""
        yield from self.searchContexts.removed(changes)
        if self.qresync:
            if changes.vanished:
                yield b"VANISHED " + uidSet(changes.vanished)
        else:
            for seq in changes.expunged:
                yield b"%d EXPUNGE" % seq
        if changes.exists is not None:
            yield b"%d EXISTS" % changes.exists
        if changes.recent is not None and not self.rev2:
            yield b"%d RECENT" % changes.recent
        yield from self._flagsAnnouncement()
        for seq, flags in sorted(changes.flags.items()):
            uid, modseq = changes.changed.get(seq, (0, 0))
            yield b"%d FETCH (%s)" % (seq, self._flagItems(flags, uid, modseq))
        if self.condstore and changes.flags and changes.modseq is not None:
            yield b"OK [HIGHESTMODSEQ %d] Expunges are still to come" % changes.modseq
        if self.mbox is not None:
            yield from self.searchContexts.updated(self.mbox, changes)

    def _flagsAnnouncement(self) -> Iterator[bytes]:
        """
        FLAGS and PERMANENTFLAGS again when the selected mailbox's messages
        have a keyword the client was not told of: before any FETCH names
        it (RFC 3501 7.2.6, RFC 9051 7.3.5), another session's new keyword
        included.
        """
        mbox = self.mbox
        if mbox is not None and mbox.unannouncedKeywords():
            yield from flagsResponses(mbox)

    def _sending(self, responses: Iterable[bytes]) -> Iterator[None]:
        """Send untagged responses, a slice of them per step."""
        budget = StepBudget()
        for response in responses:
            self.sendUntaggedResponse(response)
            if budget.spent():
                yield None

    def _reviewing(self, mbox: IMAPMailbox, pairs: list[tuple[int, int]]) -> Steps[None]:
        """The live results' news for messages this session changed, their files read first."""
        if not self.searchContexts:
            return
        waiting = self.searchContexts.preparing(pairs)
        if waiting is not None:
            yield waiting
        yield from self._sending(self.searchContexts.review(mbox, pairs))

    def _sayHeldModSeq(self, mbox: IMAPMailbox) -> None:
        """
        After MODSEQs sent while expunges are held back, the HIGHESTMODSEQ
        the client may resynchronise from (RFC 7162 3.2), lest it skip them.
        """
        held = mbox.heldModSeq()
        if held is not None:
            self.sendUntaggedResponse(b"OK [HIGHESTMODSEQ %d] Expunges are still to come" % held)

    def _flagItems(self, flags: list[str], uid: int, modseq: int) -> bytes:
        """
        The items of a FETCH sent for a flag change: C{UID} under QRESYNC
        (the client keys its cache by UID) and NOTIFY's FlagChange (RFC 5465
        5.1), C{MODSEQ} under CONDSTORE.
        """
        items = [b"UID %d" % uid] if uid and (self.qresync or self._flagChangeUIDs) else []
        items.append(b"FLAGS (%s)" % " ".join(flags).encode())
        if modseq and self.condstore:
            items.append(b"MODSEQ (%d)" % modseq)
        return b" ".join(items)

    def mailboxChanged(self) -> None:
        notifier = self._notifier
        if notifier is not None and notifier.takesSelected(self.parseState == "idle"):
            notifier.selectedChanged()
            return
        if self.parseState == "idle" and not self._flushPending:
            self._flushPending = True
            self.clock.callLater(0, self._idleReport)

    # Any state

    def do_NOOP(self, tag: bytes) -> Deferred[None]:
        def refreshed(_: object) -> None:
            self.reportChanges(force=True)
            self.sendPositiveResponse(tag, b"NOOP completed")

        return self._refreshSelected().addCallback(refreshed)

    unauth_NOOP = auth_NOOP = select_NOOP = (do_NOOP,)

    def do_LOGOUT(self, tag: bytes) -> None:
        # Nothing more of the selected mailbox after BYE (as Dovecot): a
        # client that takes BYE as the end of the session would read an
        # EXPUNGE after it against a view it has already dropped.
        self._deselect()
        self.sendUntaggedResponse(b"BYE Logging out")
        self.sendPositiveResponse(tag, b"LOGOUT completed")
        self.transport.loseConnection()

    unauth_LOGOUT = auth_LOGOUT = select_LOGOUT = (do_LOGOUT,)

    # Selecting

    def _deselect(self) -> None:
        self.searchContexts.clear()
        mbox, self.mbox = self.mbox, None
        if mbox is not None:
            mbox.removeListener(self)
            mbox.close()
        if self.state == "select":
            self.state = "auth"

    def _selectWork(
        self, tag: bytes, name: str, params: bytes | None, rw: int, cmdName: bytes
    ) -> Deferred[None]:
        selectParams = parseSelectParams(params, self.settings.max_sequence_ranges)
        qresync = selectParams.qresync
        if qresync is not None and not self.qresync:
            raise imap4.IllegalClientResponse("QRESYNC must be enabled first")
        wasSelected = self.mbox is not None
        self._deselect()
        if selectParams.condstore:
            self._enableCondstore()
        if wasSelected and (self.qresync or self.rev2):
            self.sendUntaggedResponse(b"OK [CLOSED] Previous mailbox closed")
        return (
            self._account()
            .select(name, bool(rw))
            .addCallback(self._showSelected, tag, rw, cmdName, qresync)
        )

    def _showSelected(
        self, mbox: IMAPMailbox, tag: bytes, rw: int, cmdName: bytes, qresync: Any
    ) -> None:
        """SELECT's or EXAMINE's responses, once the folder is current."""
        if self._lost:
            mbox.close()
            return
        mbox.addListener(self)
        mbox.showRecent = not self.rev2
        mbox.maxSequenceRanges = self.settings.max_sequence_ranges
        mbox.maxNesting = self.settings.max_nesting
        mbox.mimeLimits = MimeLimits(self.settings.max_mime_depth, self.settings.max_mime_parts)
        mbox.previewScanBytes = self.settings.preview_scan_bytes
        mbox.messageCache = self.messageCache
        send = self.sendUntaggedResponse
        flags, permanentFlags = flagsResponses(mbox)
        send(flags)
        send(b"%d EXISTS" % mbox.getMessageCount())
        if self.rev2:
            delimiter = quoted(self._account().delimiter.encode())
            send(b"LIST () %s %s" % (delimiter, self.encodeMailbox(mbox.folder.name)))
        else:
            send(b"%d RECENT" % mbox.getRecentCount())
            unseen = mbox.firstUnseen()
            if unseen is not None:
                send(b"OK [UNSEEN %d] First unseen message" % unseen)
        send(b"OK [UIDVALIDITY %d] UIDs valid" % mbox.getUIDValidity())
        send(b"OK [UIDNEXT %d] Predicted next UID" % mbox.getUIDNext())
        objectId = mailboxIdCode(mbox.folder)
        if objectId is not None:
            send(b"OK " + objectId + b" Ok")
        send(permanentFlags)
        if mbox.modSeqs:
            send(b"OK [HIGHESTMODSEQ %d] Highest" % mbox.reportedModSeq)
        else:
            send(b"OK [NOMODSEQ] No mod-sequences in this mailbox")
        self.mbox, self.state = mbox, "select"
        if qresync is not None and mbox.modSeqs and qresync.uidValidity == mbox.getUIDValidity():
            self._resynchronise(mbox, qresync.modseq, qresync.knownUids)
        mode = b"[READ-WRITE] " if rw else b"[READ-ONLY] "
        self.sendPositiveResponse(tag, mode + cmdName + b" completed")

    auth_SELECT = select_SELECT = (_selectWork, _B.arg_mailbox, _B.opt_line, 1, b"SELECT")
    auth_EXAMINE = select_EXAMINE = (_selectWork, _B.arg_mailbox, _B.opt_line, 0, b"EXAMINE")

    def _resynchronise(self, mbox: IMAPMailbox, modseq: int, knownUids: SequenceSet | None) -> None:
        """
        QRESYNC (RFC 7162 3.2.5): what changed since the client's
        mod-sequence, the vanished UIDs first, then the changed messages.
        """
        vanished = mbox.expungedSince(modseq, knownUids)
        if vanished:
            self.sendUntaggedResponse(b"VANISHED (EARLIER) " + uidSet(vanished))
        for response in self._flagsAnnouncement():
            self.sendUntaggedResponse(response)
        known = None if knownUids is None else knownUids.resolve(mbox.lastUID())
        for seq, u in mbox.resolve(EVERY_MESSAGE, True):
            info = mbox.info(u)
            if info.modseq > modseq and (known is None or u in known):
                self.sendUntaggedResponse(
                    b"%d FETCH (%s)" % (seq, self._flagItems(mbox.flagsOf(u), u, info.modseq))
                )

    def _selected(self) -> IMAPMailbox:
        assert self.mbox is not None
        return self.mbox

    def do_CLOSE(self, tag: bytes) -> Deferred[None] | None:
        mbox = self._selected()

        def closed(_: object = None) -> None:
            self._deselect()
            self.sendPositiveResponse(tag, b"CLOSE completed")

        if not mbox.isWriteable():
            closed()
            return None
        return self._cooperate(mbox.expunging(None).steps()).addCallback(closed)

    select_CLOSE = (do_CLOSE,)

    def do_UNSELECT(self, tag: bytes) -> None:
        self._deselect()
        self.sendPositiveResponse(tag, b"UNSELECT completed")

    select_UNSELECT = (do_UNSELECT,)

    # NOTIFY (RFC 5465, with L{tmail.imap.notify})

    def arg_notify(self, line: bytes) -> Any:
        """NOTIFY's arguments, mailbox names sent as literals included."""
        return collectArguments(line, self._stringLiteral)

    def _notifyFetchAtts(self, text: bytes) -> list[Any]:
        (query, modifiers), _ = self.arg_fetchrequest(b"(" + text + b")")
        if modifiers.changedSince is not None or modifiers.vanished:
            raise imap4.IllegalClientResponse("MessageNew takes no FETCH modifiers")
        return query

    def do_NOTIFY(self, tag: bytes, line: bytes) -> Deferred[None] | None:
        request = parseNotify(line, self.decodeMailbox, self._notifyFetchAtts)
        self._stopNotify()
        if request is None:
            self.sendPositiveResponse(tag, b"NOTIFY completed")
            return None
        notifier = self._notifier = Notifier(
            self,
            self._account(),
            request,
            self.settings.notify_poll_interval,
            self.settings.notify_queue_limit,
        )

        def started(_: object) -> None:
            self.reportChanges(force=True)
            self.sendPositiveResponse(tag, b"NOTIFY completed")

        return self._cooperate(notifier.starting()).addCallback(started)

    auth_NOTIFY = select_NOTIFY = (do_NOTIFY, arg_notify)

    @property
    def _flagChangeUIDs(self) -> bool:
        notifier = self._notifier
        return notifier is not None and notifier.watchesSelectedFlags

    @property
    def _selectedSilenced(self) -> bool:
        """NOTIFY asks no event of the selected mailbox: IDLE sends none (RFC 5465 4)."""
        notifier = self._notifier
        return notifier is not None and notifier.silencesSelected

    def _stopNotify(self) -> None:
        notifier, self._notifier = self._notifier, None
        if notifier is not None:
            notifier.stop()

    def canNotify(self) -> bool:
        """Whether NOTIFY may send now: no command runs, or the client idles."""
        return self._connected() and (self._tag is None or self.parseState == "idle")

    def pushSelectedChanges(self) -> None:
        """NOTIFY SELECTED: the selected mailbox's changes, expunges too (RFC 5465 5.3)."""
        self._noExpunge = False
        self.reportChanges(force=True)

    def _foldersChanged(
        self, tag: bytes, text: bytes, renamed: tuple[str, str] | None = None
    ) -> Deferred[None]:
        told = foldersChanged(self._account().store, self, renamed)
        return told.addCallback(lambda _: self.sendPositiveResponse(tag, text))

    def _respond(self, state: bytes, tag: bytes | None, message: bytes | None) -> None:
        finishing = tag is not None and tag == self._tag and state in (b"OK", b"NO", b"BAD")
        if finishing:
            waiting = self._catchUp()
            if not answered(waiting)[0]:
                waiting.addCallback(lambda _: self._respond(state, tag, message))
                return
            self._caughtUpFor = None
        notifier = self._notifier
        if notifier is not None and tag is not None and tag == self._tag:
            if notifier.stopped:
                self._notifier = None
            elif state in (b"OK", b"NO", b"BAD"):
                notifier.beforeTagged()
        super()._respond(state, tag, message)

    def _refreshSelected(self) -> Deferred[None]:
        """
        Have the selected folder take in what other processes changed (its
        index answers from memory otherwise); a folder deleted meanwhile
        ends the session, as L{reportChanges} does.
        """
        mbox = self.mbox
        if mbox is None or self.state != "select" or not IIncrementalFolder.providedBy(mbox.folder):
            return succeed(None)

        def failed(failure: Failure) -> None:
            if self.mbox is not mbox:
                return
            if failure.check(NoSuchFolder):  # type: ignore[no-untyped-call]
                self._selectedGone()
                return
            _log.failure("Cannot look for changes in {folder}", failure, folder=mbox.folder.name)

        return maybeDeferred(mbox.folder.refresh).addErrback(failed)

    def _selectedGone(self) -> None:
        self._deselect()
        self.sendUntaggedResponse(b"BYE Selected mailbox was deleted")
        self.transport.loseConnection()

    #: The tag of the command whose tagged reply has waited for the store.
    _caughtUpFor: bytes | None = None

    def _catchUp(self) -> Deferred[None]:
        """
        Before a command's tagged reply: when the selected folder changed,
        have it look for other processes' changes too, so that the report
        that precedes the reply holds them.
        """
        tag = self._tag
        mbox = self.mbox
        if mbox is None or self.state != "select" or not mbox.dirty or self._caughtUpFor == tag:
            return succeed(None)

        def done(_: object) -> None:
            self._caughtUpFor = tag

        return self._refreshSelected().addCallback(done)

    # IDLE (RFC 2177)

    def do_IDLE(self, tag: bytes) -> None:
        self._idleTag = tag
        self.parseState = "idle"
        self.sendContinuationRequest(b"Idling")
        self._idlePolled()
        poll = self._idlePoll = task.LoopingCall(self._idlePolled)
        poll.clock = self.clock
        poll.start(self.idlePollInterval, now=False)

    def _idlePolled(self) -> Deferred[None]:
        """Look for other processes' changes, then report what changed."""
        return self._refreshSelected().addCallback(lambda _: self._idleReport())

    auth_IDLE = select_IDLE = (do_IDLE,)

    def parse_idle(self, line: bytes) -> None:
        if line.strip().upper() != b"DONE":
            self.sendBadResponse(None, b"Expected DONE")
            return
        self.parseState = "command"
        tag, self._idleTag = self._idleTag, None
        self._stopIdle()
        self.sendPositiveResponse(tag, b"IDLE terminated")

    def _idleReport(self) -> None:
        self._flushPending = False
        if self.parseState == "idle" and not self._lost and not self._selectedSilenced:
            self.reportChanges(force=True)

    def _stopIdle(self) -> None:
        poll, self._idlePoll = self._idlePoll, None
        if poll is not None and poll.running:
            poll.stop()

    # Selected: messages

    def do_CHECK(self, tag: bytes) -> Deferred[None]:
        def refreshed(_: object) -> None:
            self.reportChanges(force=True)
            self.sendPositiveResponse(tag, b"CHECK completed")

        return self._refreshSelected().addCallback(refreshed)

    select_CHECK = (do_CHECK,)

    def do_EXPUNGE(self, tag: bytes) -> Deferred[None]:
        return self._expunging(tag, None, b"EXPUNGE completed")

    select_EXPUNGE = (do_EXPUNGE,)

    def do_UIDEXPUNGE(self, tag: bytes, messages: Messages, uid: int = 1) -> Deferred[None]:
        return self._expunging(tag, messages, b"UID EXPUNGE completed")

    def _expunging(self, tag: bytes, allowed: Messages | None, done: bytes) -> Deferred[None]:
        """EXPUNGE or UID EXPUNGE, a slice at a time; the view changes after the last."""
        mbox = self._selected()
        expunge = mbox.expunging(allowed)

        def steps() -> Steps[None]:
            yield from expunge.steps()
            yield from self._sending(self._changeResponses(mbox.expunged(expunge)))

        return self._cooperate(steps()).addCallback(lambda _: self.sendPositiveResponse(tag, done))

    def _cooperate(self, steps: Iterator[object]) -> Deferred[None]:
        """
        Run a long command (SEARCH, SORT, THREAD, STORE, COPY, MOVE,
        EXPUNGE, CLOSE, LIST-STATUS, DELETE, RENAME) a step at a time among
        the other sessions' work.  If the client goes, the steps stop and a
        generator of them is closed: its C{finally} and C{GeneratorExit}
        clauses undo or finish what must not be left half done (see
        L{_finishing}).
        """
        running = self.cooperator.cooperate(steps)
        self._running, self._steps = running, steps
        self.watchForHangup()

        def forget(result: object) -> object:
            self._running = self._steps = None
            return result

        return running.whenDone().addBoth(forget).addCallback(lambda _: None)

    def _finishing(self, steps: Iterator[object]) -> Steps[None]:
        """
        Steps that go on without the client if it goes away meanwhile: a
        COPY's undoing, a MOVE's expunge of what it copied, the rest of a
        RENAME of INBOX or of a DELETE.
        """
        for step in steps:
            try:
                yield step
            except GeneratorExit:
                self._detach(steps)
                raise

    def _detach(self, steps: Iterator[object]) -> None:
        """
        Run steps among the others', for no client: work a command must
        finish.  A folder deleted meanwhile leaves nothing to finish.
        """

        def failed(failure: Failure) -> None:
            if not isinstance(failure.value, NoSuchFolder):
                _log.failure("Could not finish after a client left", failure)

        self.cooperator.cooperate(steps).whenDone().addErrback(failed)
