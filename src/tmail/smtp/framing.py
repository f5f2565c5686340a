# -*- test-case-name: tests.smtp.test_smtp_session -*-
"""
How an SMTP session reads its input: CRLF-terminated command lines (a line
over the limit answered with 500 and skipped to its end, however long),
message content handed to the DATA or BDAT reader without being split
into lines, and input held while an answer is pending (a policy, a store)
so that pipelined commands are answered in order, the connection paused
when too much waits.  Replaces Twisted's line handling (C{LineReceiver}
and ESMTP's DATA state), which trusts a client's line lengths and reads
DATA line by line in a way a client can smuggle commands through.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.mail import smtp
from twisted.python.failure import Failure

from tmail.smtp.chunking import BDAT
from tmail.smtp.commands import Reply
from tmail.smtp.data import ChunkReader, DataReader
from tmail.smtp.replies import INTERNAL_ERROR

if TYPE_CHECKING:
    from twisted.logger import Logger

    from tmail.smtp.deadlines import SessionDeadlines
    from tmail.smtp.factory import SMTPFactory
    from tmail.smtp.sasl import Mechanism

__all__ = ["InputFraming"]

COMMAND, DATA = smtp.COMMAND, smtp.DATA


class InputFraming:
    """The input side of an L{tmail.smtp.server.SMTPServer}."""

    if TYPE_CHECKING:
        factory: SMTPFactory
        transport: Any
        log: Logger
        mode: str
        _buffer: bytes
        _blocked: bool
        _greeted: bool
        _held: int
        _paused: bool
        _pipelined: bool
        _processing: bool
        _skipping: bool
        _discardInput: bool
        _deadlines: SessionDeadlines
        _reader: DataReader | ChunkReader | None
        _mechanism: Mechanism | None

        def reply(self, reply: Reply) -> None: ...
        def sendCode(self, code: int, message: bytes = b"") -> None: ...
        def resetTimeout(self) -> None: ...
        def lineReceived(self, line: bytes) -> Any: ...
        def _earlyTalker(self) -> None: ...
        def _abortMessages(self) -> None: ...
        def _endOfData(self) -> None: ...
        def _endOfChunk(self) -> None: ...

    def dataReceived(self, data: bytes) -> None:
        self.resetTimeout()
        if self.mode in (DATA, BDAT):
            self._deadlines.dataReceived(len(data))
        self._buffer += data
        if not self._greeted:
            self._earlyTalker()
            return
        if self._blocked:
            if len(self._buffer) > self.factory.settings.max_line_length:
                self._pause()
            return
        self._process()

    def _process(self) -> None:
        """Handle every complete line in the buffer, unless an answer is pending."""
        if self._processing:
            return
        self._processing = True
        try:
            self._processLines()
        finally:
            self._processing = False

    def _processLines(self) -> None:
        limit = self.factory.settings.max_line_length
        buffer, start = self._buffer, 0
        while not self._blocked and not self.transport.disconnecting:
            if self.mode in (DATA, BDAT):
                used = self._readContent(buffer, start)
                if used is None:
                    buffer, start = b"", 0
                    break
                start += used
                continue
            end = buffer.find(b"\r\n", start)
            if end < 0:
                break
            line, start = buffer[start:end], end + 2
            self._held = len(buffer) - start
            self._pipelined = self._held > 0
            if self._skipping:
                self._skipping = False
            elif len(line) > limit:
                self._lineTooLong()
            else:
                self._handleLine(line)
            if self._discardInput:
                self._discardInput = False
                buffer, start = b"", 0
        rest = buffer[start:]
        if self.transport.disconnecting:
            # After a goodbye (QUIT, too many errors) nothing more is answered.
            self._buffer = b""
            self._deadlines.partialLine(False)
            return
        if not self._blocked and len(rest.removesuffix(b"\r")) > limit:
            if not self._skipping:
                self._skipping = True
                self._lineTooLong()
            rest = rest[-1:] if rest.endswith(b"\r") else b""
        self._buffer = rest
        self._deadlines.partialLine(
            not self._blocked
            and self.mode not in (DATA, BDAT)
            and bool(rest or self._skipping)
            and not self.transport.disconnecting
        )

    def _readContent(self, buffer: bytes, start: int) -> int | None:
        """
        Hand message octets to the reader; return how many were the
        message's (or the chunk's) when it ended, else C{None}: all taken.
        """
        reader = self._reader
        assert reader is not None
        data = buffer[start:] if start else buffer
        try:
            if isinstance(reader, DataReader):
                used = reader.feed(data)
                if used is not None:
                    self._held = len(data) - used
                    self._endOfData()
                return used
            used = reader.feed(data)
            if reader.remaining == 0:
                self._held = len(data) - used
                self._endOfChunk()
                return used
            return None
        except Exception:
            # Where the message ends is unknown now: the stream cannot be
            # followed any further.
            self.log.failure("Unexpected error reading a message")
            self._abortMessages()
            self.mode = COMMAND
            self._reader = None
            self.sendCode(451, b"4.3.0 Internal error; closing the connection")
            self.transport.loseConnection()
            return None

    def _handleLine(self, line: bytes) -> None:
        try:
            self.lineReceived(line)
        except Exception:
            self.log.failure("Unexpected error in SMTP session")
            self.mode = COMMAND
            self._mechanism = None
            self.reply(INTERNAL_ERROR)

    def _lineTooLong(self) -> None:
        self.mode = COMMAND
        self._mechanism = None
        self.reply(Reply(500, "5.5.2", "Line too long"))

    def lineLengthExceeded(self, line: bytes) -> None:
        """Unused: L{_processLines} enforces C{max_line_length} itself."""

    def _wait(self, pending: Deferred[Any]) -> None:
        """
        Read no further line until C{pending} has a result, so that replies
        to pipelined commands go out in order.  The transport is paused
        only once more than a line's worth of input waits (see
        L{dataReceived}): a client that waits for its reply costs no
        reactor registration changes.
        """
        fired = False

        def unblock(result: object) -> None:
            nonlocal fired
            fired = True
            if self._blocked:
                self._blocked = False
                if self._paused:
                    self._paused = False
                    if not self.transport.disconnecting:
                        self.transport.resumeProducing()
                if not self.transport.disconnecting:
                    self._process()

        pending.addErrback(self._unhandled)
        pending.addBoth(unblock)
        if not fired:
            self._blocked = True
            held = self._held if self._processing else len(self._buffer)
            if held > self.factory.settings.max_line_length:
                self._pause()

    def _pause(self) -> None:
        """Stop reading from the client until the pending answer is given."""
        if not self._paused:
            self._paused = True
            self.transport.pauseProducing()

    def _unhandled(self, failure: Failure) -> None:
        self.log.failure("Unexpected error in SMTP session", failure)
        self.reply(INTERNAL_ERROR)
