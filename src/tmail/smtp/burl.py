# -*- test-case-name: tests.smtp.test_smtp_burl -*-
"""
BURL (RFC 4468) on the submission listener: a message part given by an
IMAP URLAUTH URL (RFC 4467) instead of its bytes, so a client sends a draft
it already saved over IMAP without uploading it again.  A mixin of
L{tmail.smtp.server.SMTPServer}.

  - Offered as C{BURL imap} only with C{[submission] burl_imap_host}, the
    host tmail's IMAP URLs name; URLs naming it are resolved in-process
    through the realm's store (L{tmail.imap.urlauth.URLAuthority}), read
    and cut in a worker thread.  A URL naming another host is refused
    (C{554 5.7.14}: no trust relationship with another IMAP server).
  - Only after AUTH, and only URLs authorized for C{submit+<user>} (or
    C{anonymous}) with a valid token: else C{554 5.7.0}.  A URL naming a
    message or part that is not there is C{554 5.6.6}.
  - The bytes go through the same reader as BDAT's chunks (RFC 3030): size
    and line limits, bare line ends, and the submission checks (From and
    Sender owned by the user, Message-ID and Date added); BURL and BDAT may
    be mixed in one transaction, the last command saying C{LAST}.
  - A refused BURL ends the transaction, as a refused BDAT chunk does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, BinaryIO

from twisted.cred.portal import Portal
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from tmail.imap.imapurl import BadURL, parseURL
from tmail.imap.mimeentity import MimeLimits
from tmail.imap.urlauth import Accessor, URLAuthority, URLError, URLGone
from tmail.imap.urlparts import Extracted, extract
from tmail.interfaces import IMailRealm
from tmail.smtp.commands import Reply
from tmail.smtp.data import ChunkReader

if TYPE_CHECKING:
    from tmail.smtp.factory import SMTPFactory
    from tmail.smtp.transaction import Transaction

__all__ = ["BURLCommand", "burlAuthority"]

_log = Logger()

SYNTAX = Reply(501, "5.5.4", "Syntax: BURL absolute-URI [LAST]")
NEED_AUTH = Reply(530, "5.7.0", "Authentication required")
NO_RECIPIENTS = Reply(503, "5.5.0", "Valid RCPT TO required before BURL")
UNAUTHORIZED = Reply(554, "5.7.0", "Invalid URL or URL authorization")
NO_TRUST = Reply(554, "5.7.14", "URL resolution requires trust relationship")
UNRESOLVED = Reply(554, "5.6.6", "IMAP URL resolution failed")
MORE = Reply(250, "2.5.0", "Waiting for additional BURL or BDAT commands")


def burlAuthority(realm: IMailRealm, host: str, portal: Portal | None) -> URLAuthority | None:
    """What resolves BURL's URLs: tmail's own IMAP store, when C{host} names it."""
    if not host:
        return None
    return URLAuthority.forRealm(realm, host, portal)


class BURLCommand:
    """BURL for an L{SMTPServer}."""

    if TYPE_CHECKING:
        factory: SMTPFactory
        _user: str | None
        _reader: Any
        _lastChunk: bool
        _chunkSize: int
        mode: str

        def reply(self, reply: Reply) -> None: ...
        def _noTransaction(self) -> Reply | None: ...
        def _startMessage(self) -> bool: ...
        def _wait(self, pending: Deferred[Any]) -> None: ...
        def _endOfData(self) -> None: ...
        def _abortMessages(self) -> None: ...
        def _endOfChunk(self) -> None: ...
        def _resetTransaction(self) -> None: ...

        _transaction: Transaction | None
        _lost: bool
        _dataTransaction: Transaction | None
        _scanner: Any
        _dataContext: Any
        _observers: list[Callable[[bytes], None]]

        def _writeContent(self, data: bytes) -> None: ...

    def burlExtension(self) -> dict[bytes, list[bytes] | None]:
        """C{BURL imap}, where BURL works."""
        if self.factory.burl is None:
            return {}
        return {b"BURL": [b"imap"]}

    def do_BURL(self, rest: bytes) -> None:
        authority = self.factory.burl
        if authority is None:
            self.reply(Reply(500, "5.5.2", "Error: command not recognized"))
            return
        words = rest.split()
        last = len(words) == 2 and words[1].upper() == b"LAST"
        if not words or len(words) > 2 or (len(words) == 2 and not last):
            self.reply(SYNTAX)
            return
        if self._user is None:
            self.reply(NEED_AUTH)
            return
        reader = self._reader
        if not isinstance(reader, ChunkReader):
            refusal = self._noTransaction()
            if refusal is not None:
                self.reply(NO_RECIPIENTS if refusal.code == 503 else refusal)
                return
            transaction = self._transaction
            if transaction is not None and transaction.mail.body == "BINARYMIME":
                self.reply(Reply(554, "5.6.3", "Conversion required but not supported"))
                return
            if not self._startMessage():
                return
            settings = self.factory.settings
            reader = ChunkReader(
                self._writeContent,
                settings.max_message_size,
                settings.max_line_length,
                settings.bare_newlines,
                onFailure=self._abortMessages,
            )
            self._reader = reader
        self._wait(self._resolve(authority, words[0], last))

    def _resolve(self, authority: URLAuthority, raw: bytes, last: bool) -> Deferred[None]:
        user = self._user
        assert user is not None
        try:
            url = parseURL(raw.decode("ascii"))
            if not url.absolute:
                raise BadURL("BURL needs an absolute URL")
            if not authority.isLocal(url):
                return self._refuse(NO_TRUST)
            if url.token is None:
                return self._refuse(UNAUTHORIZED)
        except (UnicodeDecodeError, BadURL):
            return self._refuse(UNAUTHORIZED)
        limits = MimeLimits()
        opened: Deferred[BinaryIO] = ensureDeferred(
            authority.opening(url, Accessor(user, submit=True))
        )

        def read(source: BinaryIO) -> Deferred[Extracted]:
            extracted: Deferred[Extracted] = self.factory.runInThread(extract, source, url, limits)
            return extracted

        def got(found: Extracted) -> None:
            if not self._lost:
                self._addChunk(found.data, last)

        def failed(failure: Failure) -> None:
            if self._lost:
                return
            if isinstance(failure.value, URLGone):
                self._endTransaction(UNRESOLVED)
                return
            if isinstance(failure.value, URLError):
                self._endTransaction(UNAUTHORIZED)
                return
            _log.failure("smtp: BURL could not read its URL", failure)
            self._endTransaction(Reply(451, "4.3.0", "Internal error"))

        return opened.addCallback(read).addCallbacks(got, failed)

    def _refuse(self, refusal: Reply) -> Deferred[None]:
        self._endTransaction(refusal)
        done: Deferred[None] = Deferred()
        done.callback(None)
        return done

    def _endTransaction(self, refusal: Reply) -> None:
        """A refused BURL: the message and its transaction are over."""
        self._abortMessages()
        self._reader = None
        self._dataTransaction = None
        self._scanner = None
        self._dataContext = None
        self._observers = []
        self.reply(refusal)

    def _addChunk(self, data: bytes, last: bool) -> None:
        """The URL's bytes, taken as a BDAT chunk of their size."""
        reader = self._reader
        assert isinstance(reader, ChunkReader)
        reader.expect(len(data))
        reader.feed(data)
        if not last:
            if reader.failure is not None:
                self._endTransaction(reader.failure)
                return
            self.reply(MORE)
            return
        reader.finish()
        self._endOfData()
