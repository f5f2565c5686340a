# -*- test-case-name: tests.imap.test_imap_catenate -*-
"""
CATENATE (RFC 4469): an APPEND whose message is put together from TEXT
literals and URLs naming messages, or parts of messages, already on the
server, so a client forwards an attachment without downloading it.  A
mixin of L{tmail.imap.server.IMAPServer}; with MULTIAPPEND each message
may be a CATENATE of its own.

  - A URL may be relative (C{/Drafts;UIDVALIDITY=1/;UID=20}, or
    C{;UID=20} in the selected mailbox) or absolute naming this server and
    the session's user; another user's message only through a URLAUTH URL
    (RFC 4467) that user issued for this one.  A URL that cannot be used
    fails the command with C{NO [BADURL <url>]} and nothing is stored.
  - The message is limited as an APPEND's literal is: C{imap.max_literal_size}
    (C{NO [TOOBIG]}), the user's quota (C{NO [OVERQUOTA]}); at most
    C{imap.max_catenate_parts} parts.
  - A URL's message is read and its section cut out in a worker thread,
    and written into the new message a slice at a time, so a large part
    keeps no other session waiting; the new message is written through the
    store (a pending message, published as an APPEND's is).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, BinaryIO

from twisted.internet import task
from twisted.internet.defer import Deferred, ensureDeferred, maybeDeferred, succeed
from twisted.mail import imap4
from twisted.python.failure import Failure

from tmail.errors import OverQuota
from tmail.imap.imapurl import IMAPURL, BadURL, parseURL
from tmail.imap.parse import parseQuoted, wholeLiteral
from tmail.imap.session import CommandError, no
from tmail.imap.urlauth import Accessor, URLAuthority, URLError
from tmail.imap.urlparts import Extracted, extract
from tmail.interfaces import IPendingMessage, IQuotaStore
from tmail.lineends import CRLFWriter

if TYPE_CHECKING:
    from tmail.config.schema import IMAPSettings
    from tmail.imap.account import IMAPAccount
    from tmail.imap.mailbox import IMAPMailbox
    from tmail.imap.mimeentity import MimeLimits

__all__ = ["CatenateAppend", "badURL"]

_ATOM = re.compile(rb'[^\x00-\x20\x7f(){"\\%*]+')
#: Bytes written into the new message per reactor turn.
WRITE_SLICE = 256 * 1024


def badURL(url: bytes) -> CommandError:
    """C{NO [BADURL url]}; the URL as sent, when it fits the response code."""
    shown = url if url and all(0x21 <= c <= 0x7E and c != 0x5D for c in url) else b"?"
    return no(b"[BADURL " + shown + b"] CATENATE append has failed")


def tooBig() -> CommandError:
    return no(b"[TOOBIG] Message too large")


class _Catenation:
    """One message being put together: its pending message and size so far."""

    def __init__(self, pending: IPendingMessage, limit: int) -> None:
        self.pending = pending
        self.limit = limit
        self.size = 0
        self.parts = 0
        self.text = CRLFWriter(self._write)

    def _write(self, data: bytes) -> None:
        self.add(len(data))
        self.pending.write(data)

    def add(self, size: int) -> None:
        self.size += size
        if self.size > self.limit:
            raise tooBig()


class CatenateAppend:
    """The CATENATE form of an APPEND message, for an L{IMAPServer}."""

    if TYPE_CHECKING:
        settings: IMAPSettings
        mbox: IMAPMailbox | None
        cooperator: task.Cooperator

        def _account(self) -> IMAPAccount: ...
        def urlAuthority(self) -> URLAuthority | None: ...
        def _mimeLimits(self) -> MimeLimits: ...
        def _string(self, line: bytes, allowed: bytes) -> Any: ...
        def _readLiteral(
            self, size: int, synchronizing: bool, sink: Callable[[bytes], object] | None
        ) -> Deferred[bytes]: ...
        def _appendMessage(self, batch: Any, rest: bytes) -> Deferred[None] | None: ...
        def _connected(self) -> bool: ...

        _lost: bool

        def resumeProducing(self) -> None: ...

        paused: bool
        parseState: str

        runInThread: Callable[..., Deferred[Any]]

    def catenate(
        self, batch: Any, flags: list[str], date: float | None, rest: bytes
    ) -> Deferred[None] | None:
        """
        An APPEND message given as C{CATENATE (...)}; C{rest} follows the
        word CATENATE.  Goes on with the next message of the APPEND.
        """
        rest = rest.lstrip(b" ")
        if rest[:1] != b"(":
            raise imap4.IllegalClientResponse("Expected CATENATE parts in parentheses")
        pending = batch.begin(flags, date, 0)
        return self._catenatePart(  # type: ignore[no-any-return]
            batch, _Catenation(pending, self.settings.max_literal_size), rest[1:]
        )

    def _catenatePart(self, batch: Any, message: _Catenation, rest: bytes) -> Any:
        rest = rest.lstrip(b" ")
        if rest[:1] == b")":
            if message.size == 0:
                raise no(b"[CANNOT] Empty message; APPEND cancelled")

            def checked(_: object) -> Any:
                following = self._appendMessage(batch, rest[1:])
                self._readAgain()
                return following

            return self._checkQuota(batch, message).addCallback(checked)
        message.parts += 1
        if message.parts > self.settings.max_catenate_parts:
            raise no(b"[LIMIT] Too many CATENATE parts")
        word, _, after = rest.partition(b" ")
        kind = word.upper()
        if kind == b"TEXT":
            binary = after[:1] == b"~"
            marker = wholeLiteral(after[1:] if binary else after)
            if marker is None:
                raise imap4.IllegalClientResponse("TEXT needs a literal")
            size, synchronizing = marker
            if message.size + size > message.limit:
                raise tooBig()
            sink = self._binaryText(message) if binary else message.text.write
            literal = self._readLiteral(size, synchronizing, sink).addCallback(
                lambda line: self._catenatePart(batch, message, line)
            )
            self._readAgain()
            return literal
        if kind == b"URL":
            if after[:1] == b'"':
                value, end = parseQuoted(after)
                return self._catenateURL(batch, message, value, after[end:])
            if after[:1] == b"{":
                parsed = self._string(after, b"")
                parsed.addCallback(lambda p: self._catenateURL(batch, message, *p))
                self._readAgain()
                return parsed
            match = _ATOM.match(after)
            if match is None:
                raise imap4.IllegalClientResponse("URL needs a string")
            return self._catenateURL(batch, message, match.group(), after[match.end() :])
        raise imap4.IllegalClientResponse("Expected TEXT or URL")

    def _readAgain(self) -> None:
        """
        Take input again for a literal asked for after a URL part was
        read: the session stopped reading while the command worked.  Only
        while a literal is awaited: the next command waits for this one.
        """
        if self.paused and self._connected() and self.parseState == "pending":
            self.resumeProducing()

    @staticmethod
    def _binaryText(message: _Catenation) -> Callable[[bytes], None]:
        def write(data: bytes) -> None:
            if b"\x00" in data:
                raise no(b"[UNKNOWN-CTE] Messages with NUL octets cannot be stored")
            message.add(len(data))
            message.pending.write(data)

        return write

    def _catenateURL(self, batch: Any, message: _Catenation, raw: bytes, rest: bytes) -> Any:
        authority = self.urlAuthority()
        if authority is None:
            raise badURL(raw)
        try:
            url = parseURL(raw.decode("ascii"), self._baseURL(), self._account().user)
            if url.token is not None and not self.settings.urlauth:
                raise URLError("URLAUTH is off")
        except (UnicodeDecodeError, BadURL, URLError):
            raise badURL(raw) from None
        opening = ensureDeferred(authority.opening(url, Accessor(self._account().user), own=True))

        def opened(source: BinaryIO) -> Deferred[Extracted]:
            read: Deferred[Extracted] = self.runInThread(extract, source, url, self._mimeLimits())
            return read

        def failed(failure: Failure) -> Extracted:
            if isinstance(failure.value, URLError):
                raise badURL(raw)
            raise failure.value  # type: ignore[misc]

        read = opening.addCallback(opened)

        def write(found: Extracted) -> Deferred[Any]:
            if not found.data:
                return succeed(None)
            message.add(len(found.data))
            work = self.cooperator.cooperate(self._writing(message.pending, found.data))
            return work.whenDone()

        def goOn(_: object) -> Any:
            if self._lost:
                raise task.TaskStopped()
            return self._catenatePart(batch, message, rest)

        return read.addErrback(failed).addCallback(write).addCallback(goOn)

    def _writing(self, pending: IPendingMessage, data: bytes) -> Iterator[None]:
        """Write C{data} a slice per step; stop if the client goes away (the message is aborted)."""
        view = memoryview(data)
        for start in range(0, len(data), WRITE_SLICE):
            if self._lost:
                return
            pending.write(bytes(view[start : start + WRITE_SLICE]))
            yield None

    def _baseURL(self) -> IMAPURL | None:
        """The selected mailbox, which C{;UID=} URLs are relative to."""
        mbox = self.mbox
        if mbox is None:
            return None
        return IMAPURL(
            text="", user=None, host=None, mailbox=mbox.folder.name, uidvalidity=None, uid=1
        )

    def _checkQuota(self, batch: Any, message: _Catenation) -> Deferred[None]:
        batch.size += message.size
        store = self._account().store
        if not IQuotaStore.providedBy(store):
            return succeed(None)

        def over(failure: Failure) -> Failure:
            if failure.check(OverQuota):  # type: ignore[no-untyped-call]
                raise no(b"[OVERQUOTA] Quota exceeded (mailbox for user is full)")
            return failure

        return maybeDeferred(store.checkQuota, batch.size, len(batch.messages)).addErrback(over)
