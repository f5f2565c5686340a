# -*- test-case-name: tests.smtp.test_smtp_extensions -*-
"""
CHUNKING (RFC 3030): C{BDAT size [LAST]}, the content of a message in
chunks of exactly announced sizes, as an alternative to DATA (and the only
way to send C{BODY=BINARYMIME}).

Each chunk but the last is answered when it is read; the last is answered
as DATA is.  A refused BDAT still has its octets read and thrown away, so
that they never run as commands; once a chunk failed, the transaction is
over and the chunks after it are refused too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.mail import smtp

from tmail.smtp.commands import Reply
from tmail.smtp.data import ChunkReader

if TYPE_CHECKING:
    from collections.abc import Callable

    from tmail.smtp.deadlines import SessionDeadlines
    from tmail.smtp.factory import SMTPFactory
    from tmail.smtp.transaction import Transaction

__all__ = ["BDAT", "ChunkingCommand"]

COMMAND = smtp.COMMAND
#: Reading the octets of a BDAT chunk.
BDAT = "BDAT"


class ChunkingCommand:
    """BDAT for an L{tmail.smtp.server.SMTPServer}."""

    if TYPE_CHECKING:
        factory: SMTPFactory
        mode: str
        _reader: Any
        _lastChunk: bool
        _chunkSize: int
        _deadlines: SessionDeadlines
        _transaction: Transaction | None
        _dataTransaction: Transaction | None
        _scanner: Any
        _dataContext: Any
        _observers: list[Callable[[bytes], None]]

        def reply(self, reply: Reply) -> None: ...
        def _noTransaction(self) -> Reply | None: ...
        def _startMessage(self) -> bool: ...
        def _writeContent(self, data: bytes) -> None: ...
        def _abortMessages(self) -> None: ...
        def _endOfData(self) -> None: ...

    def do_BDAT(self, rest: bytes) -> None:
        """
        BDAT (RFC 3030): a chunk of exactly the announced size follows the
        command.  Each chunk but the last is answered when it is read; the
        last is answered as DATA is.  A refused BDAT still has its octets
        read (and thrown away), so they never run as commands.
        """
        words = rest.split()
        last = len(words) == 2 and words[1].upper() == b"LAST"
        if not words or len(words) > 2 or (len(words) == 2 and not last):
            self.reply(Reply(501, "5.5.4", "Syntax: BDAT size [LAST]"))
            return
        if not words[0].isdigit() or len(words[0]) > 20:
            self.reply(Reply(501, "5.5.4", "Syntax: BDAT size [LAST]"))
            return
        size = int(words[0])
        self._lastChunk, self._chunkSize = last, size
        reader = self._reader
        if not isinstance(reader, ChunkReader):
            mail = self._transaction.mail if self._transaction is not None else None
            refusal = self._noTransaction()
            if refusal is None and size == 0 and not last:
                refusal = Reply(501, "5.5.4", "An empty chunk must be the last")
            if refusal is None and self._startMessage():
                settings = self.factory.settings
                reader = ChunkReader(
                    self._writeContent,
                    settings.max_message_size,
                    settings.max_line_length,
                    settings.bare_newlines,
                    binary=mail is not None and mail.body == "BINARYMIME",
                    onFailure=self._abortMessages,
                )
            else:
                if refusal is not None:
                    self._discardChunk(size, refusal)
                return
        self._reader = reader
        reader.expect(size)
        self.mode = BDAT
        self._deadlines.dataStarted()
        if size == 0:
            self._endOfChunk()

    def _discardChunk(self, size: int, refusal: Reply) -> None:
        """Read and throw away a refused chunk, then give the refusal."""
        reader = ChunkReader(lambda data: None, 0, 0)
        reader.fail(refusal)
        reader.expect(size)
        self._reader = reader
        self._refusedChunk = True
        self.mode = BDAT
        self._deadlines.dataStarted()
        if size == 0:
            self._endOfChunk()

    _refusedChunk = False

    def _endOfChunk(self) -> None:
        reader = self._reader
        assert isinstance(reader, ChunkReader)
        self._deadlines.dataEnded()
        if self._refusedChunk:
            self._refusedChunk = False
            self.mode = COMMAND
            self._reader = None
            assert reader.failure is not None
            self.reply(reader.failure)
            return
        if not self._lastChunk:
            self.mode = COMMAND
            if reader.failure is not None:
                # The transaction is over: later chunks are refused too.
                self._reader = None
                self._abortMessages()
                self._dataTransaction = None
                self._scanner = self._dataContext = None
                self._observers = []
                self.reply(reader.failure)
                return
            self.reply(Reply(250, "2.0.0", f"{self._chunkSize} octets received"))
            return
        reader.finish()
        self._endOfData()
