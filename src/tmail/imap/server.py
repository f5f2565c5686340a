# -*- test-case-name: tests.imap.test_imap_protocol -*-
"""
The IMAP4rev1 commands, bound to tmail's store through L{IMAPAccount} and
L{IMAPMailbox}, over the input handling of L{IMAPSession}.

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

import base64
import binascii
import contextlib
import inspect
import re
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import Any

from twisted.cred import credentials
from twisted.cred.error import LoginFailed
from twisted.internet import task
from twisted.internet.defer import Deferred, ensureDeferred, maybeDeferred, succeed
from twisted.logger import Logger
from twisted.mail import imap4
from twisted.python.failure import Failure
from zope.interface import implementer

from tmail import __version__
from tmail.auth.throttle import settle
from tmail.errors import NoSuchFolder, OverQuota, StoreFull
from tmail.imap import metadata
from tmail.imap.account import IMAPAccount, checkName
from tmail.imap.binaryappend import BinaryLiteral
from tmail.imap.catenate import CatenateAppend
from tmail.imap.condstore import (
    FetchModifiers,
    ModSeqItem,
    parseFetchModifiers,
    parseSelectParams,
    parseStoreModifiers,
    splitModSeqItem,
)
from tmail.imap.esearch import (
    ReturnOptions,
    esearchResponse,
    parseReturnOptions,
    parseSortReturnOptions,
)
from tmail.imap.fetch import (
    FetchOutcome,
    FetchStream,
    OpenedAhead,
    fetchNeeds,
    largeMessageItems,
    metadataBuilder,
    setsSeen,
)
from tmail.imap.fetchatt import SimpleItem
from tmail.imap.largemessages import HEADER, INFO, inWorker, isLarge
from tmail.imap.listing import Listed, listNames, parseList, parseStatusItems
from tmail.imap.mailbox import (
    Changes,
    Expunge,
    IMAPMailbox,
    ISessionListener,
    MailboxSearch,
    folderStatus,
)
from tmail.imap.message import MimeLimits, openTogether
from tmail.imap.messagecache import IMessageFacts
from tmail.imap.mutf7 import decodePattern, decodeUTF8Name, encodeName
from tmail.imap.notify import Notifier, foldersChanged
from tmail.imap.notifyparse import collectArguments, parseNotify
from tmail.imap.objectid import mailboxId, mailboxIdCode
from tmail.imap.parse import (
    parseDateTime,
    parseFlags,
    parseQuoted,
    splitAtom,
    wholeLiteral,
)
from tmail.imap.searchcontext import SearchContext, SearchContexts, SortContext, parseTags
from tmail.imap.seqset import EVERY_MESSAGE, Messages, SequenceSet
from tmail.imap.session import CommandError, IMAPSession, clientText, no
from tmail.imap.sort import MessageFacts, parseSortCriteria, sortSteps
from tmail.imap.specialuse import makeSpecialFolders, parseCreateUses, specialUses
from tmail.imap.structure import quoted
from tmail.imap.thread import ALGORITHMS, Node, formatThreads, threadSteps
from tmail.imap.uidbatches import answerUIDBatches, parseUIDBatches
from tmail.imap.urlcommands import URLAuthCommands
from tmail.imap.waiting import Steps, answered, waitOn
from tmail.interfaces import (
    IIncrementalFolder,
    ILoginAttempt,
    IMailFolder,
    IMailUser,
    IMetadataStore,
    IPendingMessage,
    IQuotaStore,
    ISpecialUseStore,
    QuotaUsage,
)
from tmail.lineends import CRLFWriter
from tmail.steps import StepBudget

_log = Logger()

_S = imap4.IMAP4Server
_B = IMAPSession
_CHARSETS = (b"US-ASCII", b"UTF-8")
_SAVE_REQUESTED = re.compile(rb" *RETURN +\([^)]*\bSAVE\b", re.IGNORECASE)
_UTF8_DATA = re.compile(rb"UTF8 +\(", re.IGNORECASE)

#: The one quota root of a user, named as Dovecot names its default root.
QUOTA_ROOT = b"User quota"
_VERSION = __version__.encode("ascii")

#: RFC 2971 3.3: limits on the client's ID parameters.
ID_MAX_FIELD = 30
ID_MAX_VALUE = 1024
ID_MAX_PAIRS = 30


def _printable(value: bytes) -> str:
    """A client-given string for the log, with no control characters."""
    return "".join(c if c.isprintable() else "?" for c in value.decode("utf-8", "replace"))


#: The answer to a FETCH, COPY or MOVE of a message another session
#: expunged that can no longer be read, worded as Dovecot words it: client
#: code looks for it.
EXPUNGE_ISSUED = b"[EXPUNGEISSUED] Some of the requested messages no longer exist"


def flagsResponses(mbox: IMAPMailbox) -> tuple[bytes, bytes]:
    """
    The FLAGS and C{OK [PERMANENTFLAGS]} responses for a selected mailbox,
    both with its keywords (as Dovecot lists them; PERMANENTFLAGS is empty
    when the mailbox is read-only); the keywords they list count as
    announced.
    """
    names = mbox.getFlags()
    flags = b"FLAGS (" + " ".join(names).encode() + b")"
    permanent = " ".join([*names, "\\*"]).encode() if mbox.isWriteable() else b""
    return flags, b"OK [PERMANENTFLAGS (%s)] Flags allowed" % permanent


def uidSet(uids: list[int]) -> bytes:
    """C{1:3,7} for the UIDs 1, 2, 3, 7 (in the given order)."""
    ranges: list[list[int]] = []
    for uid in uids:
        if ranges and uid == ranges[-1][1] + 1:
            ranges[-1][1] = uid
        else:
            ranges.append([uid, uid])
    return b",".join(b"%d" % a if a == b else b"%d:%d" % (a, b) for a, b in ranges)


class _AppendBatch:
    """The pending messages of one APPEND, stored all together or not at all."""

    def __init__(self, folder: IMailFolder) -> None:
        self.folder = folder
        self.messages: list[IPendingMessage] = []
        self.size = 0

    def begin(self, flags: list[str], date: float | None, size: int) -> IPendingMessage:
        pending = self.folder.beginMessage(flags, date)
        self.messages.append(pending)
        self.size += size
        return pending

    def publish(self) -> None:
        """
        Make every message durable (in a worker thread, as one APPEND
        does), when the store's pending messages can (C{publish} is
        optional: a store may do it all in C{commit}).
        """
        for pending in self.messages:
            publish = getattr(pending, "publish", None)
            if publish is not None:
                publish()

    async def commit(self) -> list[int]:
        """Commit every message; if one fails, expunge those already committed."""
        uids: list[int] = []
        pending, self.messages = self.messages, []
        try:
            for message in pending:
                uids.append(await maybeDeferred(message.commit))
        except BaseException:
            for message in pending[len(uids) :]:
                message.abort()
            if uids:
                await maybeDeferred(self.folder.expunge, uids)
            raise
        return uids

    def abort(self) -> None:
        for pending in self.messages:
            pending.abort()


def _overQuota(failure: Failure) -> Failure:
    if failure.check(OverQuota):  # type: ignore[no-untyped-call]
        raise no(b"[OVERQUOTA] Quota exceeded (mailbox for user is full)")
    return failure


#: The LOGIN mechanism's prompts, base64 of "Username:" and "Password:".
_USERNAME_PROMPT = base64.b64encode(b"Username:")
_PASSWORD_PROMPT = base64.b64encode(b"Password:")


def _decodeBase64(encoded: bytes) -> bytes:
    """A SASL response; C{=} is the empty one (RFC 4959).  BAD when not base64."""
    try:
        return base64.b64decode(b"" if encoded == b"=" else encoded, validate=True)
    except binascii.Error:
        raise imap4.IllegalClientResponse("Invalid base64") from None


@implementer(ISessionListener)
class IMAPServer(CatenateAppend, URLAuthCommands, IMAPSession):
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

    _authTag: bytes | None = None
    _authMechanism = b"PLAIN"
    _authUser: bytes | None = None
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

    # ID (RFC 2971)

    def do_ID(self, tag: bytes, params: list[tuple[bytes, bytes | None]] | None) -> None:
        if params:
            shown = ", ".join(
                f"{_printable(field)}={'NIL' if value is None else _printable(value[:100])}"
                for field, value in params
            )
            _log.info("IMAP client {host} identifies as {params}", host=self._host, params=shown)
        fields = b" ".join(quoted(item) for item in (b"name", b"tmail", b"version", _VERSION))
        self.sendUntaggedResponse(b"ID (%s)" % fields)
        self.sendPositiveResponse(tag, b"ID completed")

    def arg_idparams(self, line: bytes) -> Any:
        """
        C{NIL} or a list of field and value strings (RFC 2971 4), within
        the limits of RFC 2971 3.3; fields and values may be literals.
        """
        line = line.lstrip(b" ")
        word = line.split(b" ", 1)[0]
        if word.upper() == b"NIL":
            return None, line[3:]
        if line[:1] != b"(":
            raise imap4.IllegalClientResponse("ID takes NIL or a parenthesized list")
        return self._idItems(line[1:], [])

    def _idItems(self, line: bytes, items: list[bytes | None]) -> Any:
        while True:
            line = line.lstrip(b" ")
            isValue = len(items) % 2 == 1
            if line[:1] == b")":
                if isValue:
                    raise imap4.IllegalClientResponse("ID field without a value")
                if not items:
                    raise imap4.IllegalClientResponse("Empty ID list; send NIL")
                pairs = [(items[i], items[i + 1]) for i in range(0, len(items), 2)]
                return pairs, line[1:]
            if isValue and line[:3].upper() == b"NIL" and line[3:4] in (b" ", b")"):
                items.append(None)
                line = line[3:]
                continue
            if line[:1] == b'"':
                value, end = parseQuoted(line)
                self._addIdItem(items, value)
                line = line[end:]
                self._idSeparator(line)
                continue
            marker = wholeLiteral(line)
            if marker is not None:
                if marker[0] > ID_MAX_VALUE:
                    raise imap4.IllegalClientResponse("ID value too long")

                def literal(parsed: tuple[bytes, bytes]) -> Any:
                    self._addIdItem(items, parsed[0])
                    self._idSeparator(parsed[1])
                    return self._idItems(parsed[1], items)

                return self._stringLiteral(*marker).addCallback(literal)
            if not line:
                raise imap4.IllegalClientResponse("Unbalanced parenthesis in ID list")
            raise imap4.IllegalClientResponse("ID fields and values must be strings")

    def _idSeparator(self, rest: bytes) -> None:
        if not rest:
            raise imap4.IllegalClientResponse("Unbalanced parenthesis in ID list")
        if rest[:1] not in (b" ", b")"):
            raise imap4.IllegalClientResponse("Missing space in ID list")

    def _addIdItem(self, items: list[bytes | None], value: bytes) -> None:
        if len(items) % 2 == 0:
            if len(value) > ID_MAX_FIELD:
                raise imap4.IllegalClientResponse("ID field name too long")
            if len(items) >= 2 * ID_MAX_PAIRS:
                raise imap4.IllegalClientResponse("Too many ID fields")
        elif len(value) > ID_MAX_VALUE:
            raise imap4.IllegalClientResponse("ID value too long")
        items.append(value)

    unauth_ID = auth_ID = select_ID = (do_ID, arg_idparams)

    # ENABLE (RFC 5161)

    #: Extensions a client may turn on with ENABLE (upper case).
    ENABLEABLE: frozenset[bytes] = frozenset(
        {b"CONDSTORE", b"QRESYNC", b"IMAP4REV2", b"UTF8=ACCEPT"}
    )
    #: How ENABLED spells them, when not in upper case.
    _SPELLING = {b"IMAP4REV2": b"IMAP4rev2"}
    #: The extensions this session's client turned on (upper case).
    enabled: frozenset[bytes] = frozenset()

    @property
    def rev2(self) -> bool:
        """
        Whether the client enabled IMAP4rev2 (RFC 9051): no C{RECENT}, SEARCH
        answered with ESEARCH, a LIST response in SELECT, UTF-8 names.
        """
        return b"IMAP4REV2" in self.enabled

    @property
    def utf8Names(self) -> bool:
        """Whether mailbox names travel as UTF-8 (IMAP4rev2 or UTF8=ACCEPT, RFC 6855)."""
        return bool(self.enabled & {b"IMAP4REV2", b"UTF8=ACCEPT"})

    def decodeMailbox(self, raw: bytes) -> str:
        return decodeUTF8Name(raw) if self.utf8Names else super().decodeMailbox(raw)

    def decodeListPattern(self, raw: bytes) -> str:
        return decodePattern(raw, self.utf8Names)

    def encodeMailbox(self, name: str) -> bytes:
        """A mailbox name as this client reads it, quoted."""
        return quoted(name.encode("utf-8") if self.utf8Names else encodeName(name))

    @property
    def condstore(self) -> bool:
        """Whether CONDSTORE is on: FETCH responses for flag changes carry MODSEQ."""
        return b"CONDSTORE" in self.enabled

    @property
    def qresync(self) -> bool:
        """Whether QRESYNC is on: VANISHED instead of EXPUNGE."""
        return b"QRESYNC" in self.enabled

    def _enableCondstore(self) -> None:
        """
        A CONDSTORE-enabling command (RFC 7162 3.1) was used: the first
        one with a mailbox selected brings its HIGHESTMODSEQ, in an
        untagged OK before the command's tagged reply, as Dovecot sends it.
        """
        if b"CONDSTORE" in self.enabled:
            return
        self.enabled = self.enabled | {b"CONDSTORE"}
        mbox = self.mbox
        if mbox is not None and self.state == "select" and mbox.modSeqs:
            self.sendUntaggedResponse(b"OK [HIGHESTMODSEQ %d] Highest" % mbox.toldModSeq())

    def do_ENABLE(self, tag: bytes, line: bytes) -> None:
        names: list[bytes] = []
        rest = line.strip(b" ")
        if not rest:
            raise imap4.IllegalClientResponse("ENABLE needs a capability name")
        while rest:
            name, rest = splitAtom(rest)
            names.append(name.upper())
        turnedOn = [name for name in dict.fromkeys(names) if name in self.ENABLEABLE - self.enabled]
        self.enabled = self.enabled | frozenset(turnedOn)
        if b"QRESYNC" in turnedOn:
            self._enableCondstore()
        spelled = [self._SPELLING.get(name, name) for name in turnedOn]
        self.sendUntaggedResponse(b" ".join([b"ENABLED", *spelled]))
        self.sendPositiveResponse(tag, b"ENABLE completed")

    auth_ENABLE = (do_ENABLE, _S.arg_line)

    # Not authenticated

    def do_STARTTLS(self, tag: bytes) -> None:
        if self._secure():
            raise CommandError(b"BAD", b"TLS is already active")
        if self.ctx is None or not self.canStartTLS:
            raise no(b"TLS is not available")
        discarded = self.clearLineBuffer()
        if discarded:
            _log.info(
                "Discarded {count} bytes pipelined after STARTTLS from {host}",
                count=len(discarded),
                host=self._host,
            )
        self.sendPositiveResponse(tag, b"Begin TLS negotiation now")
        self.transport.startTLS(self.ctx)
        self.startedTLS = True

    unauth_STARTTLS = (do_STARTTLS,)

    def do_LOGIN(self, tag: bytes, user: bytes, password: bytes) -> Deferred[None]:
        if not self._plaintextOK():
            raise no(b"[PRIVACYREQUIRED] Use STARTTLS before logging in")
        return self._login(tag, credentials.UsernamePassword(user, password))

    unauth_LOGIN = (do_LOGIN, _B.arg_astring, _B.arg_finalastring)

    def do_AUTHENTICATE(self, tag: bytes, mechanism: bytes, initial: bytes | None) -> Any:
        mechanism = mechanism.upper()
        if mechanism not in (b"PLAIN", b"LOGIN"):
            raise no(b"[CANNOT] Unsupported authentication mechanism")
        if not self._plaintextOK():
            raise no(b"[PRIVACYREQUIRED] Use STARTTLS before authenticating")
        self._authMechanism, self._authUser = mechanism, None
        if mechanism == b"PLAIN":
            if initial is not None:
                return self._plain(tag, initial)
            self._challenge(tag, b"")
        elif initial is not None:
            self._authUser = _decodeBase64(initial)
            self._challenge(tag, _PASSWORD_PROMPT)
        else:
            self._challenge(tag, _USERNAME_PROMPT)
        return None

    unauth_AUTHENTICATE = (do_AUTHENTICATE, _S.arg_atom, _B.opt_line)

    def do_COMPRESS(self, tag: bytes, mechanism: bytes) -> Deferred[None]:
        if mechanism.upper() != b"DEFLATE":
            raise imap4.IllegalClientResponse("Unknown compression mechanism")
        if self._inflater is not None:
            raise no(b"[COMPRESSIONACTIVE] DEFLATE is active already")

        def caughtUp(_: object) -> None:
            # The tagged reply goes out uncompressed, at once: the store
            # was asked first.
            self.sendPositiveResponse(tag, b"DEFLATE active")
            self.startCompressing()

        return self._catchUp().addCallback(caughtUp)

    auth_COMPRESS = select_COMPRESS = (do_COMPRESS, _S.arg_atom)

    def _challenge(self, tag: bytes, prompt: bytes) -> None:
        """Ask for the next SASL response (RFC 3501 7.5: C{+ <base64>})."""
        self._authTag = tag
        self.parseState = "authenticate"
        self.sendLine(b"+ " + prompt)

    def parse_authenticate(self, line: bytes) -> None:
        self.parseState = "command"
        tag, self._authTag = self._authTag, None
        assert tag is not None
        line = line.strip()
        if line == b"*":
            self._authUser = None
            self.sendBadResponse(tag, b"AUTHENTICATE cancelled")
            return
        if self._authMechanism == b"PLAIN":
            maybeDeferred(self._plain, tag, line).addErrback(self._commandFailed, tag)
        elif self._authUser is None:
            try:
                self._authUser = _decodeBase64(line)
            except imap4.IllegalClientResponse as e:
                self.sendBadResponse(tag, clientText(e, b"Invalid base64"))
                return
            self._challenge(tag, _PASSWORD_PROMPT)
        else:
            user, self._authUser = self._authUser, None
            maybeDeferred(
                lambda: self._login(tag, credentials.UsernamePassword(user, _decodeBase64(line)))
            ).addErrback(self._commandFailed, tag)

    def _plain(self, tag: bytes, encoded: bytes) -> Deferred[None]:
        data = _decodeBase64(encoded)
        plain = imap4.PLAINCredentials()
        plain.setResponse(data)
        authzid = data.split(b"\0", 1)[0]
        if authzid and authzid != plain.username:
            raise no(b"[AUTHORIZATIONFAILED] Cannot log in as another user")
        return self._login(tag, plain)

    def _login(self, tag: bytes, creds: credentials.IUsernamePassword) -> Deferred[None]:
        """
        Log in once the throttle counts the check as running
        (L{tmail.auth.throttle}); an address at its limit is refused
        without a check.
        """
        host = self._host
        user = creds.username.decode("utf-8", "replace")

        def begun(attempt: ILoginAttempt | None) -> Deferred[None]:
            if attempt is None:
                raise no(b"[UNAVAILABLE] Too many failed logins; try again later")
            login: Deferred[Any] = self.portal.login(creds, None, IMailUser)
            return settle(attempt, login).addCallbacks(succeeded, failed)

        def succeeded(result: tuple[Any, IMailUser, Callable[[], None]]) -> Deferred[None] | None:
            interface, mailUser, logout = result
            if self._lost:
                logout()
                return None
            if interface is not IMailUser:
                logout()
                raise TypeError(f"realm returned {interface!r}, not IMailUser")
            avatar = IMAPAccount(mailUser.store, mailUser.name)
            self.account, self._onLogout, self.state = avatar, logout, "auth"

            def notMade(failure: Failure) -> None:
                if failure.check(StoreFull):  # type: ignore[no-untyped-call]
                    _log.warn("Disk full: no special folders made for {user}", user=avatar.user)
                else:
                    _log.failure(
                        "Could not make the special folders of {user}", failure, user=avatar.user
                    )

            made = makeSpecialFolders(self.settings, avatar.store).addErrback(notMade)
            return made.addCallback(lambda _: loggedIn(avatar))

        def loggedIn(avatar: IMAPAccount) -> None:
            self.setTimeout(self.POSTAUTH_TIMEOUT)
            _log.info("IMAP login {user} from {host}", user=avatar.user, host=host)
            caps = b" ".join(self.listCapabilities())
            self.sendPositiveResponse(tag, b"[CAPABILITY " + caps + b"] Logged in")

        def failed(failure: Failure) -> Failure:
            if not isinstance(failure.value, LoginFailed):
                return failure
            _log.info("IMAP login failed for {user} from {host}", user=user, host=host)
            raise no(b"[AUTHENTICATIONFAILED] Authentication failed")

        return self.throttle.begin(host).addCallback(begun)

    # Authenticated: folders

    def do_NAMESPACE(self, tag: bytes) -> None:
        delimiter = quoted(self._account().delimiter.encode())
        self.sendUntaggedResponse(b'NAMESPACE (("" %s)) NIL NIL' % delimiter)
        self.sendPositiveResponse(tag, b"NAMESPACE completed")

    auth_NAMESPACE = select_NAMESPACE = (do_NAMESPACE,)

    def _account(self) -> IMAPAccount:
        assert self.account is not None
        return self.account

    def do_CREATE(self, tag: bytes, name: str, params: bytes | None) -> Deferred[None]:
        return ensureDeferred(self._create(tag, name, params))

    async def _create(self, tag: bytes, name: str, params: bytes | None) -> None:
        uses = parseCreateUses(params)
        account = self._account()
        store = account.store
        if uses and not ISpecialUseStore.providedBy(store):
            raise no(b"[USEATTR] This server cannot keep special-use attributes")
        await account.create(name)
        if uses and ISpecialUseStore.providedBy(store):
            canonical = checkName(name.removesuffix(account.delimiter), account.delimiter)
            await maybeDeferred(store.updateSpecialUse, {canonical: uses})
        await foldersChanged(store, self)
        code = mailboxIdCode(await account.folder(name.removesuffix(account.delimiter)))
        self.sendPositiveResponse(tag, (code + b" " if code else b"") + b"CREATE completed")

    auth_CREATE = select_CREATE = (do_CREATE, _B.arg_mailbox, _B.opt_line)

    def do_DELETE(self, tag: bytes, name: str) -> Deferred[None]:
        """DELETE; the messages' files go a slice at a time, even if the client leaves."""
        return self._cooperate(self._finishing(self._account().deleting(name))).addCallback(
            lambda _: self._foldersChanged(tag, b"DELETE completed")
        )

    auth_DELETE = select_DELETE = (do_DELETE, _B.arg_mailbox)

    def do_RENAME(self, tag: bytes, old: str, new: str) -> Deferred[None]:
        """
        RENAME; of INBOX, whose messages all move, a slice at a time, to
        the end even if the client leaves.
        """
        return self._cooperate(self._finishing(self._account().renaming(old, new))).addCallback(
            lambda _: self._foldersChanged(tag, b"RENAME completed", (old, new))
        )

    auth_RENAME = select_RENAME = (do_RENAME, _B.arg_mailbox, _B.arg_mailbox)

    def do_SUBSCRIBE(self, tag: bytes, name: str) -> Deferred[None]:
        return (
            self._account()
            .subscribe(name)
            .addCallback(lambda _: self._foldersChanged(tag, b"SUBSCRIBE completed"))
        )

    auth_SUBSCRIBE = select_SUBSCRIBE = (do_SUBSCRIBE, _B.arg_mailbox)

    def do_UNSUBSCRIBE(self, tag: bytes, name: str) -> Deferred[None]:
        return (
            self._account()
            .unsubscribe(name)
            .addCallback(lambda _: self._foldersChanged(tag, b"UNSUBSCRIBE completed"))
        )

    auth_UNSUBSCRIBE = select_UNSUBSCRIBE = (do_UNSUBSCRIBE, _B.arg_mailbox)

    def do_LIST(self, tag: bytes, tokens: list[Any]) -> Deferred[None] | None:
        request = parseList(tokens, self.decodeListPattern)
        account = self._account()
        delimiter = quoted(account.delimiter.encode())
        selecting = request.selectSubscribed or request.selectSpecialUse
        if not selecting and not any(request.patterns):
            self.sendUntaggedResponse(b'LIST (\\Noselect) %s ""' % delimiter)
            self.sendPositiveResponse(tag, b"LIST completed")
            return None
        request.patterns = [pattern for pattern in request.patterns if pattern]
        return ensureDeferred(self._list(tag, request))

    async def _list(self, tag: bytes, request: Any) -> None:
        account = self._account()
        delimiter = quoted(account.delimiter.encode())
        store = account.store
        names: list[str] = await maybeDeferred(store.listFolders)
        subscribed: list[str] = await maybeDeferred(store.subscriptions)
        found = listNames(
            request,
            names,
            subscribed,
            await specialUses(self.settings, store),
            account.delimiter,
        )
        status = request.status

        def listed(item: Listed) -> None:
            line = b"LIST (%s) %s %s" % (
                " ".join(item.attributes).encode(),
                delimiter,
                self.encodeMailbox(item.name),
            )
            if item.childInfo:
                criteria = b" ".join(quoted(c.encode()) for c in item.childInfo)
                line += b' ("CHILDINFO" (%s))' % criteria
            self.sendUntaggedResponse(line)

        if status is None:
            for item in found:
                listed(item)
            self.sendPositiveResponse(tag, b"LIST completed")
            return

        def steps() -> Steps[None]:
            # LIST-STATUS (RFC 5819) looks into every folder: a few per
            # step, the folders of a slice asked of the store together.
            budget = StepBudget()
            for start in range(0, len(found), self.STATUS_SLICE):
                some = found[start : start + self.STATUS_SLICE]
                asked = [account.current(i.name) if i.selectable else None for i in some]
                try:
                    for item, current in zip(some, asked, strict=True):
                        listed(item)
                        if current is not None:
                            try:
                                folder = yield from waitOn(current)
                            except NoSuchFolder:
                                continue
                            self._sendStatus(item.name, folder, status)
                        if budget.spent():
                            yield None
                finally:
                    for current in asked:
                        if current is not None:
                            current.addErrback(lambda _: None)

        await self._cooperate(steps())
        self.sendPositiveResponse(tag, b"LIST completed")

    #: Folders whose STATUS a LIST-STATUS asks of the store together, at most.
    STATUS_SLICE = 4

    auth_LIST = select_LIST = (do_LIST, _B.arg_searchkeys)

    def do_LSUB(self, tag: bytes, ref: str, pattern: str) -> Deferred[None]:
        return ensureDeferred(self._lsub(tag, ref, pattern))

    async def _lsub(self, tag: bytes, ref: str, pattern: str) -> None:
        account = self._account()
        delimiter = quoted(account.delimiter.encode())
        for name, info in await account.listSubscribed(ref, pattern):
            flags = " ".join(info.getFlags()).encode()
            self.sendUntaggedResponse(
                b"LSUB (%s) %s %s" % (flags, delimiter, self.encodeMailbox(name))
            )
        self.sendPositiveResponse(tag, b"LSUB completed")

    auth_LSUB = select_LSUB = (do_LSUB, _B.arg_listmailbox, _B.arg_listmailbox)

    # METADATA and METADATA-SERVER (RFC 5464, with L{tmail.imap.metadata})

    def arg_metadata(self, line: bytes) -> Any:
        """GETMETADATA or SETMETADATA arguments, values possibly literals (literal8 too)."""
        tokenizer = metadata.metadataTokenizer()

        def feed(line: bytes) -> Any:
            marker = tokenizer.feed(line)
            if marker is None:
                return tokenizer.result(), b""
            if marker[0] > self.settings.max_metadata_size:
                limit = self.settings.max_metadata_size
                raise no(b"[METADATA MAXSIZE %d] Metadata value too long" % limit)

            def literal(parsed: tuple[bytes, bytes]) -> Any:
                tokenizer.addLiteral(parsed[0])
                return feed(parsed[1])

            return self._stringLiteral(*marker).addCallback(literal)

        return feed(line)

    def _metadataTarget(self, raw: bytes) -> tuple[IMetadataStore, str | None, bytes]:
        """The store, the folder (C{None}: the server) and its name as sent back."""
        account = self._account()
        store = account.store
        if not IMetadataStore.providedBy(store):
            raise no(b"This server keeps no metadata")
        if not raw:
            return store, None, b'""'
        name = checkName(self.decodeMailbox(raw), account.delimiter)
        return store, name, self.encodeMailbox(name)

    def do_GETMETADATA(self, tag: bytes, tokens: list[Any]) -> Deferred[None]:
        return ensureDeferred(self._getMetadata(tag, tokens))

    async def _getMetadata(self, tag: bytes, tokens: list[Any]) -> None:
        request = metadata.parseGet(tokens)
        store, folder, mailbox = self._metadataTarget(request.mailbox)
        found = metadata.select(await maybeDeferred(store.metadata, folder), request)
        if found.entries:
            self.sendUntaggedResponse(metadata.response(mailbox, found.entries))
        code = b"[METADATA LONGENTRIES %d] " % found.longest if found.longest else b""
        self.sendPositiveResponse(tag, code + b"GETMETADATA completed")

    auth_GETMETADATA = select_GETMETADATA = (do_GETMETADATA, arg_metadata)

    def do_SETMETADATA(self, tag: bytes, tokens: list[Any]) -> Deferred[None]:
        raw, changes = metadata.parseSet(tokens)
        settings = self.settings
        store, folder, _ = self._metadataTarget(raw)
        metadata.checkSizes(changes, settings.max_metadata_size)
        check = metadata.limitCheck(settings.max_metadata_entries, settings.max_metadata_total)
        updated = maybeDeferred(store.updateMetadata, folder, changes, check)
        return updated.addCallback(
            lambda _: self.sendPositiveResponse(tag, b"SETMETADATA completed")
        )

    auth_SETMETADATA = select_SETMETADATA = (do_SETMETADATA, arg_metadata)

    def _sendStatus(self, name: str, folder: IMailFolder, items: list[str]) -> None:
        status = self.statusItems(folder, [item for item in items if item != "MAILBOXID"])
        pairs = [b"%s %d" % (key.encode(), value) for key, value in status.items()]
        if "MAILBOXID" in items:
            objectId = mailboxId(folder)
            pairs.append(b"MAILBOXID " + (b"NIL" if objectId is None else b"(%s)" % objectId))
        values = b" ".join(pairs)
        self.sendUntaggedResponse(b"STATUS %s (%s)" % (self.encodeMailbox(name), values))

    def do_STATUS(self, tag: bytes, name: str, names: list[Any]) -> Deferred[None]:
        items = parseStatusItems(names)
        if "HIGHESTMODSEQ" in items:
            self._enableCondstore()

        def found(folder: IMailFolder) -> None:
            self._sendStatus(name, folder, items)
            self.sendPositiveResponse(tag, b"STATUS completed")

        return self._account().current(name).addCallback(found)

    auth_STATUS = select_STATUS = (do_STATUS, _B.arg_mailbox, _B.arg_plist)

    def statusItems(self, folder: IMailFolder, keys: list[str]) -> dict[str, int]:
        """
        The STATUS items C{keys} (upper case, known) of a folder, in the
        order asked; C{APPENDLIMIT} (RFC 7889) is C{imap.max_literal_size}.
        """
        known = folderStatus(folder, set(keys) - {"APPENDLIMIT"})
        known["APPENDLIMIT"] = self.settings.max_literal_size
        return {key: known[key] for key in keys}

    def do_APPEND(self, tag: bytes, name: str, rest: bytes) -> Deferred[None]:
        """
        APPEND of one message or, with MULTIAPPEND (RFC 3502), several: all
        of them are stored or none.  Each literal is written to its own
        pending message as it arrives; the messages are published together
        at the end, and a failure aborts (or expunges) every one of them.
        """
        return self._target(name).addCallback(self._appendTo, tag, rest)

    def _appendTo(self, folder: IMailFolder, tag: bytes, rest: bytes) -> Deferred[None]:
        batch = _AppendBatch(folder)
        self._abortOnLost = batch

        def received(_: object) -> Deferred[None]:
            self._abortOnLost = None

            def published(_: object) -> Deferred[None]:
                return ensureDeferred(batch.commit()).addCallback(committed)

            def committed(uids: list[int]) -> None:
                code = b"[APPENDUID %d %s]" % (folder.uidValidity(), uidSet(uids))
                self.sendPositiveResponse(tag, code + b" APPEND completed")

            return self.runInThread(batch.publish).addCallback(published)

        def failed(failure: Failure) -> Failure:
            self._abortOnLost = None
            batch.abort()
            return failure

        return (
            maybeDeferred(self._appendMessage, batch, rest).addCallback(received).addErrback(failed)
        )

    def _appendMessage(self, batch: _AppendBatch, rest: bytes) -> Deferred[None] | None:
        """
        Parse one message's flags, date and literal from C{rest} and read
        the literal into a new pending message; then the next message, if
        the line after the literal holds one.
        """
        rest = rest.strip(b" ")
        if not rest and batch.messages:
            return None
        flags: list[str] = []
        if rest[:1] == b"(":
            end = rest.find(b")")
            if end < 0:
                raise imap4.IllegalClientResponse("Unbalanced flag list")
            flags = parseFlags(rest[1:end].split())
            rest = rest[end + 1 :].lstrip(b" ")
        date = None
        if rest[:1] == b'"':
            value, end = parseQuoted(rest)
            date = parseDateTime(value)
            rest = rest[end:].lstrip(b" ")
        if rest[:9].upper() in (b"CATENATE ", b"CATENATE(") and self.urlAuthority() is not None:
            return self.catenate(batch, flags, date, rest[8:])
        utf8 = _UTF8_DATA.match(rest) if self.utf8Names else None
        wrapped = utf8 is not None
        if utf8 is not None:
            # RFC 6855 4: UTF8 (~{n}...) holds a message with UTF-8 headers.
            rest = rest[utf8.end() :]
            if rest[:1] != b"~":
                raise imap4.IllegalClientResponse("UTF8 data must be a literal8")
        literal8 = rest[:1] == b"~"
        marker = wholeLiteral(rest[1:] if literal8 else rest)
        if marker is None:
            if batch.messages:
                raise imap4.IllegalClientResponse("Unexpected data after the message")
            raise imap4.IllegalClientResponse("Missing message literal")
        size, synchronizing = marker
        if size == 0:
            raise no(b"[CANNOT] Empty message; APPEND cancelled")
        if size > self.settings.max_literal_size:
            raise no(b"[TOOBIG] Message too large")
        store = self._account().store
        literal = (batch, flags, date, size, synchronizing, rest, literal8, wrapped)
        if not IQuotaStore.providedBy(store):
            return self._appendLiteral(*literal)
        checked = maybeDeferred(store.checkQuota, batch.size + size, len(batch.messages) + 1)
        return checked.addCallbacks(lambda _: self._appendLiteral(*literal), _overQuota)

    def _appendLiteral(
        self,
        batch: _AppendBatch,
        flags: list[str],
        date: float | None,
        size: int,
        synchronizing: bool,
        rest: bytes,
        literal8: bool,
        wrapped: bool,
    ) -> Deferred[None]:
        """Read one message's literal into a new pending message, then the next message."""
        pending = batch.begin(flags, date, size)
        if not literal8:
            return self._readLiteral(
                size, synchronizing, CRLFWriter(pending.write).write
            ).addCallback(self._afterAppendLiteral, batch, wrapped)
        octets = BinaryLiteral()
        limits = MimeLimits(self.settings.max_mime_depth, self.settings.max_mime_parts)

        def keep(rest: bytes) -> Deferred[bytes]:
            d = self.runInThread(lambda: pending.write(octets.storable(limits)))
            return d.addCallback(lambda _: rest)

        read: Deferred[Any] = self._readLiteral(size, synchronizing, octets.write)
        return read.addCallback(keep).addCallback(self._afterAppendLiteral, batch, wrapped)

    def _afterAppendLiteral(self, rest: bytes, batch: _AppendBatch, wrapped: bool) -> Any:
        if wrapped:
            if rest[:1] != b")":
                raise imap4.IllegalClientResponse("Missing ) after UTF8 data")
            rest = rest[1:]
        return self._appendMessage(batch, rest)

    auth_APPEND = select_APPEND = (do_APPEND, _B.arg_mailbox, _S.arg_line)

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

    def arg_searchprogram(self, line: bytes) -> Any:
        """SEARCH arguments: C{[RETURN (...)] [CHARSET x] keys}, as tokens."""
        self._savingSearch = _SAVE_REQUESTED.match(line) is not None
        return self.arg_searchkeys(line)

    def _commandFailed(self, failure: Failure, tag: bytes) -> None:
        if self._savingSearch:
            self._savingSearch = False
            if self.mbox is not None:
                self.mbox.saved = frozenset()
        super()._commandFailed(failure, tag)

    @staticmethod
    def _checkCharset(token: Any) -> None:
        if not isinstance(token, bytes):
            raise imap4.IllegalClientResponse("Invalid charset")
        if token.upper() not in _CHARSETS:
            raise no(b"[BADCHARSET (US-ASCII UTF-8)] Unsupported charset")

    def do_SEARCH(self, tag: bytes, tokens: list[Any], uid: int = 0) -> Deferred[None]:
        options, tokens = parseReturnOptions(tokens)
        if options is None and self.rev2:
            options = ReturnOptions(frozenset({b"ALL"}))
        if tokens and isinstance(tokens[0], bytes) and tokens[0].upper() == b"CHARSET":
            if len(tokens) < 2:
                raise imap4.IllegalClientResponse("Missing charset")
            self._checkCharset(tokens[1])
            tokens = tokens[2:]
        mbox = self._selected()
        limit, fromEnd = (None, False) if options is None else options.scan()
        self.searchContexts.check(tag, options)
        search = mbox.searching(tokens, limit=limit, fromEnd=fromEnd)
        # What a live result tests changed messages with; it keeps no matches.
        live = mbox.searching(tokens) if options is not None and options.update else None
        return self._cooperate(search.steps(self.runInWorker)).addCallback(
            lambda _: self._searched(tag, mbox, search, options, uid, live)
        )

    def _searched(
        self,
        tag: bytes,
        mbox: IMAPMailbox,
        search: MailboxSearch,
        options: ReturnOptions | None,
        uid: int,
        live: MailboxSearch | None = None,
    ) -> None:
        pairs = search.pairs()
        hits = [u if uid else seq for seq, u in pairs]
        modseq = None
        if search.usesModSeq:
            self._enableCondstore()
            returned = pairs if options is None else options.returned(pairs)
            if returned:
                modseq = max(mbox.info(u).modseq for _, u in returned)
        if options is None:
            words = [b"SEARCH", *(b"%d" % hit for hit in hits)]
            if modseq is not None:
                words.append(b"(MODSEQ %d)" % modseq)
            self.sendUntaggedResponse(b" ".join(words))
        else:
            if b"SAVE" in options.names:
                mbox.saved = frozenset(u for _, u in options.returned(pairs))
            if live is not None:
                self._openContext(tag, SearchContext(mbox, live, bool(uid), pairs))
            if options.answered:
                response = esearchResponse(tag, options, hits, bool(uid))
                if modseq is not None:
                    response += b" MODSEQ %d" % modseq
                self.sendUntaggedResponse(response)
        self._savingSearch = False
        self.sendPositiveResponse(tag, b"SEARCH completed")

    # CONTEXT=SEARCH and CONTEXT=SORT (RFC 5267 4)

    _searchContexts: SearchContexts | None = None

    @property
    def searchContexts(self) -> SearchContexts:
        """The live results of SEARCH and SORT RETURN (UPDATE) in the selected mailbox."""
        if self._searchContexts is None:
            settings = self.settings
            self._searchContexts = SearchContexts(
                settings.max_search_contexts, settings.max_update_reads
            )
        return self._searchContexts

    def _openContext(self, tag: bytes, context: SearchContext | SortContext) -> None:
        refusal = self.searchContexts.open(tag, context)
        if refusal is not None:
            self.sendUntaggedResponse(refusal)

    def do_CANCELUPDATE(self, tag: bytes, line: bytes) -> None:
        self.searchContexts.cancel(parseTags(line))
        self.sendPositiveResponse(tag, b"CANCELUPDATE completed")

    select_CANCELUPDATE = (do_CANCELUPDATE, _S.arg_line)

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

    select_SEARCH = (do_SEARCH, arg_searchprogram)

    def _factSteps(
        self, tokens: list[Any], then: Callable[[list[MessageFacts]], Generator[None, None, Any]]
    ) -> Deferred[Any]:
        """
        Charset check, then the matching messages of SORT and THREAD handed
        to C{then}, all a step at a time; fires with what C{then} returns.
        """
        self._checkCharset(tokens[1])
        search = self._selected().searching(tokens[2:], messages=True)
        result: list[Any] = []

        def steps() -> Iterator[object]:
            yield from search.steps(self.runInWorker)
            facts = [MessageFacts(seq, m) for seq, m in search.messages()]
            budget = StepBudget()
            for start in range(0, len(facts), OpenedAhead.SLICE):
                some = facts[start : start + OpenedAhead.SLICE]
                # The headers not read yet: their files are opened together.
                unread = [
                    f.message
                    for f in some
                    if not f.message.hasHeader() and f.message.cachedFact("header") is None
                ]
                waiting = openTogether(unread)
                if waiting is not None:
                    yield waiting
                try:
                    for fact in some:
                        if isLarge(fact.message):
                            # Its header is read and taken apart in a worker thread.
                            need = INFO if fact.message.hasHeader() else HEADER
                            with contextlib.suppress(KeyError):
                                yield inWorker(self.runInWorker, fact.message, need, fact.readAll)
                        elif fact.message in unread:
                            with contextlib.suppress(KeyError, OSError):
                                fact.message.header()
                            if budget.spent():
                                yield None
                finally:
                    for message in unread:
                        message.drop()
            result.append((yield from then(facts)))

        return self._cooperate(steps()).addCallback(lambda _: result[0])

    def do_SORT(self, tag: bytes, tokens: list[Any], uid: int = 0) -> Deferred[None]:
        """SORT (RFC 5256), with ESORT's and CONTEXT=SORT's RETURN options (RFC 5267)."""
        options, tokens = parseSortReturnOptions(tokens)
        if len(tokens) < 3:
            raise imap4.IllegalClientResponse("SORT needs criteria, a charset and search keys")
        try:
            criteria = parseSortCriteria(tokens[0])
        except ValueError as e:
            raise imap4.IllegalClientResponse(str(e)) from None
        self.searchContexts.check(tag, options)
        mbox = self._selected()

        def respond(ordered: list[MessageFacts]) -> None:
            if options is None:
                numbers = (b"%d" % (f.uid if uid else f.seq) for f in ordered)
                self.sendUntaggedResponse(b" ".join([b"SORT", *numbers]))
            else:
                if b"SAVE" in options.names:
                    mbox.saved = frozenset(f.uid for f in options.returned(ordered))
                if options.update:
                    search = mbox.searching(tokens[2:])
                    context = SortContext(mbox, search, bool(uid), criteria, ordered)
                    self._openContext(tag, context)
                if options.answered:
                    hits = [f.uid if uid else f.seq for f in ordered]
                    self.sendUntaggedResponse(esearchResponse(tag, options, hits, bool(uid)))
            self.sendPositiveResponse(tag, b"SORT completed")

        return self._factSteps(tokens, lambda facts: sortSteps(facts, criteria)).addCallback(
            respond
        )

    select_SORT = (do_SORT, _B.arg_searchkeys)

    def do_THREAD(self, tag: bytes, tokens: list[Any], uid: int = 0) -> Deferred[None]:
        if len(tokens) < 3:
            raise imap4.IllegalClientResponse(
                "THREAD needs an algorithm, a charset and search keys"
            )
        algorithm = tokens[0]
        if not isinstance(algorithm, bytes) or algorithm.upper() not in ALGORITHMS:
            raise imap4.IllegalClientResponse("Unknown threading algorithm")

        def threaded(root: Node) -> None:
            threads = formatThreads(root, bool(uid))
            self.sendUntaggedResponse(b"THREAD " + threads if threads else b"THREAD")
            self.sendPositiveResponse(tag, b"THREAD completed")

        return self._factSteps(
            tokens, lambda facts: threadSteps(algorithm.upper(), facts)
        ).addCallback(threaded)

    select_THREAD = (do_THREAD, _B.arg_searchkeys)

    def arg_fetchrequest(self, line: bytes) -> tuple[tuple[list[Any], FetchModifiers], bytes]:
        """FETCH items (with CONDSTORE's C{MODSEQ}) and modifiers (RFC 7162)."""
        items, modifiers = parseFetchModifiers(line)
        items, wantsModSeq = splitModSeqItem(items)
        query: list[Any] = []
        if not (wantsModSeq and items in (b"", b"()")):
            query = self.arg_fetchatt(items)[0]
        if wantsModSeq:
            query.append(ModSeqItem())
        return (query, modifiers), b""

    def do_FETCH(
        self,
        tag: bytes,
        messages: Messages,
        request: tuple[list[Any], FetchModifiers],
        uid: int = 0,
    ) -> Deferred[None]:
        query, modifiers = request
        mbox = self._selected()
        changedSince = modifiers.changedSince
        wantsModSeq = any(item.type == "modseq" for item in query)
        if changedSince is not None or wantsModSeq:
            if not mbox.modSeqs:
                raise CommandError(b"BAD", b"This mailbox keeps no mod-sequences")
            self._enableCondstore()
        if modifiers.vanished:
            if not (uid and self.qresync):
                raise imap4.IllegalClientResponse("VANISHED needs UID FETCH and QRESYNC enabled")
            assert changedSince is not None
            vanished = mbox.expungedSince(changedSince, messages)
            if vanished:
                self.sendUntaggedResponse(b"VANISHED (EARLIER) " + uidSet(vanished))
        partial = modifiers.partial
        if partial is not None and not uid:
            raise imap4.IllegalClientResponse("PARTIAL needs UID FETCH")
        if partial is not None and changedSince is None:
            work = mbox.resolveWindow(messages, True, partial.window)
        else:
            work = mbox.resolve(messages, bool(uid))
        if changedSince is not None:
            work = [(seq, u) for seq, u in work if mbox.info(u).modseq > changedSince]
            if partial is not None:
                work = list(partial.window(work))
        seeing = mbox.isWriteable() and any(setsSeen(item) for item in query)
        if seeing and not any(item.type == "flags" for item in query):
            query = [*query, SimpleItem("flags")]
        withFlags = any(item.type == "flags" for item in query)
        if (
            not wantsModSeq
            and mbox.modSeqs
            and (changedSince is not None or (self.condstore and withFlags))
        ):
            query = [*query, ModSeqItem()]

        # Under QRESYNC every FETCH names its UID: the client keys its cache by it.
        withUID = bool(uid) or self.qresync

        needs = fetchNeeds(query)

        metadataOnly = metadataBuilder(mbox, query, withUID)
        ahead = None if metadataOnly is not None else OpenedAhead(mbox, query)

        def items(seq: int, u: int) -> list[Any] | Deferred[list[Any]]:
            message = None if ahead is None else ahead.message(u)
            return largeMessageItems(seq, mbox, u, query, withUID, needs, self.runInWorker, message)

        build = metadataOnly or items

        def stopped(failure: Failure) -> Failure | None:
            return None if isinstance(failure.value, task.TaskStopped) else failure

        def done(outcome: FetchOutcome) -> None:
            if any(item.type == "modseq" for item in query):
                self._sentModSeq = True
            if outcome.failed:
                raise no(b"[SERVERBUG] Some messages could not be fetched")
            if outcome.unknownCTE:
                raise no(b"[UNKNOWN-CTE] Cannot decode the content transfer encoding")
            if outcome.expunged:
                raise no(EXPUNGE_ISSUED)
            self.sendPositiveResponse(tag, b"FETCH completed")

        def fetch(_: object = None) -> Deferred[None]:
            for response in self._flagsAnnouncement():
                self.sendUntaggedResponse(response)
            previousTimeout = self.setTimeout(None)

            def restore(result: object) -> object:
                if not self._lost:
                    self.setTimeout(previousTimeout)
                return result

            stream = FetchStream(self.transport, work, build, self.cooperator, ahead)
            return stream.start().addBoth(restore).addCallbacks(done, stopped)

        if not seeing or not work:
            return fetch()

        def seen() -> Steps[None]:
            live = self.searchContexts
            unseen = [(s, u) for s, u in work if "\\Seen" not in mbox.info(u).flags] if live else []
            # Asked of the folder, not of this session's view: another
            # session may have taken \Seen away meanwhile.
            try:
                yield from mbox.addingFlags([u for _, u in work], ["\\Seen"]).steps()
            except StoreFull:
                _log.warn("Disk full: FETCH leaves \\Seen unset in {folder}", folder=mbox.folder)
            yield from self._reviewing(mbox, unseen)

        return self._cooperate(seen()).addCallback(fetch)

    select_FETCH = (do_FETCH, _B.arg_seqset, arg_fetchrequest)

    def arg_storemodifiers(self, line: bytes) -> tuple[int | None, bytes]:
        """CONDSTORE's C{(UNCHANGEDSINCE n)} before STORE's item name."""
        return parseStoreModifiers(line)

    def do_STORE(
        self,
        tag: bytes,
        messages: Messages,
        unchangedSince: int | None,
        mode: bytes,
        flags: list[bytes],
        uid: int = 0,
    ) -> Deferred[None]:
        """
        STORE, and with CONDSTORE the conditional STORE of RFC 7162 3.1.3:
        messages changed since C{UNCHANGEDSINCE} are left alone and named
        in C{[MODIFIED ...]}; every message whose flags changed gets a FETCH
        with its new MODSEQ, even under C{.SILENT}.
        """
        mode = mode.upper()
        silent = mode.endswith(b".SILENT")
        kind = mode[: -len(b".SILENT")] if silent else mode
        signs = {b"FLAGS": 0, b"+FLAGS": 1, b"-FLAGS": -1}
        if kind not in signs:
            raise imap4.IllegalClientResponse("Invalid STORE item")
        mbox = self._selected()
        if unchangedSince is not None:
            if not mbox.modSeqs:
                raise CommandError(b"BAD", b"This mailbox keeps no mod-sequences")
            self._enableCondstore()
        modified: list[tuple[int, int]] = []
        changed: set[int] = set()
        storing = mbox.storing(
            messages,
            parseFlags(flags),
            signs[kind],
            bool(uid),
            unchangedSince,
            modified,
            changed,
            silent,
        )
        withModSeq = self.condstore and mbox.modSeqs

        def responses() -> Iterator[bytes]:
            if not silent:
                yield from self._flagsAnnouncement()
            for seq, current in sorted(storing.result.items()):
                if silent and not (withModSeq and seq in changed):
                    continue
                if silent and seq in storing.met:
                    # Its FETCH of the flags and mod-sequence as they are now
                    # follows with the news: a MODSEQ here would be the one
                    # the client knew, older than the change it just made.
                    continue
                u = mbox.getUID(seq)
                items = [] if silent else [b"FLAGS (%s)" % " ".join(current).encode()]
                if uid or self.qresync:
                    items.append(b"UID %d" % u)
                if withModSeq:
                    items.append(b"MODSEQ (%d)" % mbox.info(u).modseq)
                    self._sentModSeq = True
                yield b"%d FETCH (%s)" % (seq, b" ".join(items))

        def steps() -> Steps[None]:
            yield from storing.steps()
            yield from self._sending(responses())
            changes = [(seq, mbox.getUID(seq)) for seq in sorted(changed)]
            yield from self._reviewing(mbox, changes)

        def stored(_: object) -> None:
            if modified:
                numbers = sorted(u if uid else seq for seq, u in modified)
                self.sendPositiveResponse(
                    tag, b"[MODIFIED %s] Conditional STORE failed" % uidSet(numbers)
                )
                return
            self.sendPositiveResponse(tag, b"STORE completed")

        return self._cooperate(steps()).addCallback(stored)

    select_STORE = (do_STORE, _B.arg_seqset, arg_storemodifiers, _S.arg_atom, _S.arg_flaglist)

    def _target(self, name: str) -> Deferred[IMailFolder]:
        def missing(failure: Failure) -> Failure:
            if failure.check(NoSuchFolder):  # type: ignore[no-untyped-call]
                raise no(b"[TRYCREATE] No such mailbox")
            return failure

        return self._account().folder(name).addErrback(missing)

    def _copying(
        self, messages: Messages, target: IMailFolder, uid: int, copied: list[tuple[int, int]]
    ) -> Steps[None]:
        """
        Copy the messages into C{target}, a slice at a time: all of them,
        or none (the copies made are expunged again when one fails, or when
        the client goes away before the last); adds C{(source UID, new UID)}
        pairs to C{copied}, in source UID order.
        """
        mbox = self._selected()
        source = mbox.folder
        pairs = mbox.resolve(messages, bool(uid))

        def undo() -> Expunge:
            return Expunge(target, [new for _, new in copied])

        budget = StepBudget()
        try:
            calls: list[tuple[int, Deferred[int]]] = []
            for _, u in pairs:
                calls.append((u, maybeDeferred(source.copyMessage, u, target)))
                if len(calls) >= self.COPY_SLICE or budget.spent():
                    yield from self._copied(calls, copied)
                    calls = []
                    yield None
            yield from self._copied(calls, copied)
        except GeneratorExit:
            self._detach(undo().steps())
            raise
        except KeyError:
            yield from self._finishing(undo().steps())
            raise no(EXPUNGE_ISSUED) from None
        except BaseException:
            yield from self._finishing(undo().steps())
            raise

    #: Messages a COPY or MOVE asks the store to copy together, at most.
    COPY_SLICE = 64

    @staticmethod
    def _copied(
        calls: list[tuple[int, Deferred[int]]], copied: list[tuple[int, int]]
    ) -> Steps[None]:
        """
        Wait for copies asked together, in order, adding each made to
        C{copied}; the first error is raised once all have answered, so
        that every copy made can be undone.
        """
        error: BaseException | None = None
        for u, call in calls:
            try:
                copied.append((u, (yield from waitOn(call))))
            except Exception as e:
                error = error or e
        if error is not None:
            raise error

    def _copyUID(self, target: IMailFolder, copied: list[tuple[int, int]]) -> bytes:
        """The UIDPLUS COPYUID response code (RFC 4315 3): the two sets in matching order."""
        return b"[COPYUID %d %s %s]" % (
            target.uidValidity(),
            uidSet([u for u, _ in copied]),
            uidSet([new for _, new in copied]),
        )

    def do_COPY(self, tag: bytes, messages: Messages, name: str, uid: int = 0) -> Deferred[None]:
        copied: list[tuple[int, int]] = []

        def found(target: IMailFolder) -> Deferred[None]:
            def done(_: object) -> None:
                code = self._copyUID(target, copied) + b" " if copied else b""
                self.sendPositiveResponse(tag, code + b"COPY completed")

            copying = self._copying(messages, target, uid, copied)
            return self._cooperate(copying).addCallback(done)

        return self._target(name).addCallback(found)

    select_COPY = (do_COPY, _B.arg_seqset, _B.arg_mailbox)

    def do_MOVE(self, tag: bytes, messages: Messages, name: str, uid: int = 0) -> Deferred[None]:
        """
        MOVE (RFC 6851): copy every message, then expunge the originals.
        The client sees COPYUID in an untagged OK, then the EXPUNGEs; a
        failed copy (e.g. over quota) leaves both folders as they were.
        Once every copy is made, the originals go even if the client
        leaves meanwhile.
        """
        mbox = self._selected()
        if not mbox.isWriteable():
            raise imap4.ReadOnlyMailbox()
        return self._target(name).addCallback(self._move, tag, messages, uid)

    def _move(
        self, target: IMailFolder, tag: bytes, messages: Messages, uid: int
    ) -> Deferred[None]:
        mbox = self._selected()
        copied: list[tuple[int, int]] = []

        def steps() -> Steps[None]:
            yield from self._copying(messages, target, uid, copied)
            if not copied:
                return
            self.sendUntaggedResponse(b"OK " + self._copyUID(target, copied) + b" Moved")
            originals = mbox.removingMoved([u for u, _ in copied])
            yield from self._finishing(originals.steps())
            yield from self._sending(self._changeResponses(mbox.expunged(originals)))

        return self._cooperate(steps()).addCallback(
            lambda _: self.sendPositiveResponse(tag, b"MOVE completed")
        )

    select_MOVE = (do_MOVE, _B.arg_seqset, _B.arg_mailbox)

    def do_UID(self, tag: bytes, command: bytes, line: bytes) -> Deferred[Any]:
        command = command.upper()
        entries = {
            b"FETCH": self.select_FETCH,
            b"STORE": self.select_STORE,
            b"SEARCH": self.select_SEARCH,
            b"SORT": self.select_SORT,
            b"THREAD": self.select_THREAD,
            b"COPY": self.select_COPY,
            b"MOVE": self.select_MOVE,
            b"EXPUNGE": (IMAPServer.do_UIDEXPUNGE, _B.arg_seqset),
        }
        entry = entries.get(command)
        if entry is None:
            raise imap4.IllegalClientResponse("Unknown UID command")
        return self._run(tag, entry, line, 1)

    select_UID = (do_UID, _S.arg_atom, _S.arg_line)

    def do_UIDBATCHES(self, tag: bytes, line: bytes) -> None:
        """UIDBATCHES (RFC 10022), with L{tmail.imap.uidbatches}."""
        mbox = self._selected()
        response = answerUIDBatches(
            tag,
            parseUIDBatches(line),
            mbox.getMessageCount(),
            mbox.getUID,
            self.settings.uidbatches_max_messages,
        )
        self.sendUntaggedResponse(response)
        self.sendPositiveResponse(tag, b"UIDBATCHES completed")

    select_UIDBATCHES = (do_UIDBATCHES, _S.arg_line)

    # QUOTA (RFC 9208)

    def _quota(self) -> Deferred[QuotaUsage | None]:
        """The user's quota, or C{None} when the store keeps none (then there is no root)."""
        store = self._account().store
        if not IQuotaStore.providedBy(store):
            return succeed(None)
        return maybeDeferred(store.quota)

    def _sendQuota(self, usage: QuotaUsage) -> None:
        """One QUOTA response; STORAGE in units of 1024 octets, as RFC 9208 5.1 counts it."""
        resources = []
        if usage.storageLimit is not None:
            resources.append(b"STORAGE %d %d" % (usage.storage // 1024, usage.storageLimit // 1024))
        if usage.messagesLimit is not None:
            resources.append(b"MESSAGE %d %d" % (usage.messages, usage.messagesLimit))
        self.sendUntaggedResponse(b"QUOTA %s (%s)" % (quoted(QUOTA_ROOT), b" ".join(resources)))

    def do_GETQUOTAROOT(self, tag: bytes, name: str) -> Deferred[None]:
        return ensureDeferred(self._getQuotaRoot(tag, name))

    async def _getQuotaRoot(self, tag: bytes, name: str) -> None:
        await self._account().folder(name)
        usage = await self._quota()
        roots = [quoted(QUOTA_ROOT)] if usage is not None else []
        self.sendUntaggedResponse(b" ".join([b"QUOTAROOT", self.encodeMailbox(name), *roots]))
        if usage is not None:
            self._sendQuota(usage)
        self.sendPositiveResponse(tag, b"GETQUOTAROOT completed")

    auth_GETQUOTAROOT = select_GETQUOTAROOT = (do_GETQUOTAROOT, _B.arg_mailbox)

    def do_GETQUOTA(self, tag: bytes, root: bytes) -> Deferred[None]:
        def found(usage: QuotaUsage | None) -> None:
            if usage is None:
                raise no(b"[NONEXISTENT] No such quota root")
            self._sendQuota(usage)
            self.sendPositiveResponse(tag, b"GETQUOTA completed")

        return (self._quota() if root == QUOTA_ROOT else succeed(None)).addCallback(found)

    auth_GETQUOTA = select_GETQUOTA = (do_GETQUOTA, _B.arg_astring)

    def do_SETQUOTA(self, tag: bytes, root: bytes, limits: list[Any]) -> None:
        """Limits are the operator's to set (C{tmail quota}); a well-formed request is refused."""
        if len(limits) % 2 or not all(
            isinstance(name, bytes)
            and name.isalpha()
            and isinstance(limit, bytes)
            and limit.isdigit()
            and len(limit) <= 20
            for name, limit in zip(limits[::2], limits[1::2], strict=True)
        ):
            raise imap4.IllegalClientResponse("Invalid SETQUOTA resource list")
        raise no(b"[NOPERM] Quota limits are set by the administrator")

    auth_SETQUOTA = select_SETQUOTA = (do_SETQUOTA, _B.arg_astring, _B.arg_plist)
