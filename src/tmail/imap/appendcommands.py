# -*- test-case-name: tests.imap.test_imap_protocol -*-
"""
STATUS, and APPEND with MULTIAPPEND (RFC 3502), UTF8 (RFC 6855) and
APPENDLIMIT (RFC 7889): a message's literal refused before the client
sends it when it cannot fit, its durable half (fsync, move into the folder)
run in a worker thread, C{NO [OVERQUOTA]} over the user's quota.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, ensureDeferred, maybeDeferred
from twisted.mail import imap4
from twisted.python.failure import Failure

from tmail.errors import OverQuota
from tmail.imap.account import IMAPAccount
from tmail.imap.binaryappend import BinaryLiteral
from tmail.imap.folderstatus import folderStatus
from tmail.imap.listing import parseStatusItems
from tmail.imap.mimeentity import MimeLimits
from tmail.imap.objectid import mailboxId
from tmail.imap.parse import (
    parseDateTime,
    parseFlags,
    parseQuoted,
    wholeLiteral,
)
from tmail.imap.responses import uidSet
from tmail.imap.session import IMAPSession, no
from tmail.interfaces import (
    IMailFolder,
    IPendingMessage,
    IQuotaStore,
)
from tmail.lineends import CRLFWriter

_S = imap4.IMAP4Server
_B = IMAPSession

__all__ = ["AppendCommands"]

_UTF8_DATA = re.compile(rb"UTF8 +\(", re.IGNORECASE)


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


class AppendCommands(IMAPSession):
    """STATUS and APPEND for an L{tmail.imap.server.IMAPServer}."""

    if TYPE_CHECKING:
        runInThread: Callable[..., Deferred[Any]]

        def _account(self) -> IMAPAccount: ...
        def _target(self, name: str) -> Deferred[IMailFolder]: ...
        def catenate(
            self, batch: Any, flags: list[str], date: float | None, rest: bytes
        ) -> Deferred[None] | None: ...

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
