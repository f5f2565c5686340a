# -*- test-case-name: tests.imap.test_imap_protocol -*-
"""
FETCH (streamed, with BINARY, CONDSTORE's MODSEQ and the extensions'
items), STORE (with UNCHANGEDSINCE), COPY and MOVE (with UIDPLUS codes;
COPY undoes its copies when the client leaves, MOVE finishes once every
copy is made), UID and UIDBATCHES: each a slice of steps at a time, so a
large folder keeps no other session waiting.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from twisted.internet import task
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger
from twisted.mail import imap4
from twisted.python.failure import Failure

from tmail.errors import NoSuchFolder, StoreFull
from tmail.imap.account import IMAPAccount
from tmail.imap.condstore import (
    FetchModifiers,
    ModSeqItem,
    parseFetchModifiers,
    parseStoreModifiers,
    splitModSeqItem,
)
from tmail.imap.expunge import Expunge
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
from tmail.imap.parse import (
    parseFlags,
)
from tmail.imap.responses import EXPUNGE_ISSUED, uidSet
from tmail.imap.seqset import Messages
from tmail.imap.session import CommandError, IMAPSession, no
from tmail.imap.uidbatches import answerUIDBatches, parseUIDBatches
from tmail.imap.waiting import Steps, waitOn
from tmail.interfaces import (
    IMailFolder,
)
from tmail.steps import StepBudget

_log = Logger()
_S = imap4.IMAP4Server
_B = IMAPSession

__all__ = ["MessageCommands"]


class MessageCommands(IMAPSession):
    """FETCH, STORE, COPY, MOVE and UID for an L{tmail.imap.server.IMAPServer}."""

    if TYPE_CHECKING:

        def _account(self) -> IMAPAccount: ...
        def _cooperate(self, steps: Iterator[object]) -> Deferred[None]: ...

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
            b"EXPUNGE": (type(self).do_UIDEXPUNGE, _B.arg_seqset),
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
