# -*- test-case-name: tests.smtp.test_smtp_data -*-
"""
Reading a message's content off the wire: DATA's dot-stuffed stream (RFC
5321 4.1.1.4) and BDAT's counted chunks (RFC 3030).

Bytes are handled a buffer at a time, not a line at a time: one search for
the end of data, counts of CR, LF and CRLF for bare line ends, one replace
for dot-unstuffing, all in C.  Only C{<CRLF>.<CRLF>} ends DATA; every other
end-of-data look-alike of the SMTP smuggling research (C{<LF>.<LF>},
C{<CR>.<CR>}, C{<LF>.<CRLF>}, ...) holds a bare CR or LF, so the message is
rejected (or, with C{bare_newlines = "normalise"}, its bare line ends become
CRLF), and never split into two.

A reader passes content to a sink as it goes; the first refusal (size, line
length, bare line end) stops the sink, calls C{onFailure} (so what was
written can be thrown away at once) and is kept in L{failure} while the
rest of the message is read and discarded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from tmail.smtp.commands import Reply
from tmail.smtp.headers import isHeaderField

__all__ = ["BARE_NEWLINE", "LINE_TOO_LONG", "TOO_BIG", "ChunkReader", "DataReader"]

TOO_BIG = Reply(552, "5.3.4", "Message size exceeds fixed maximum message size")
LINE_TOO_LONG = Reply(552, "5.3.4", "Message line too long")
BARE_NEWLINE = Reply(550, "5.5.2", "Bare <CR> or <LF> received")

BareNewlines = Literal["reject", "normalise"]

_END = b"\r\n.\r\n"


def hasBareNewline(data: bytes) -> bool:
    """Whether C{data} holds a CR or LF that is not part of a CRLF."""
    pairs = data.count(b"\r\n")
    return data.count(b"\r") != pairs or data.count(b"\n") != pairs


def normaliseNewlines(data: bytes) -> bytes:
    """Every CR, LF and CRLF as CRLF."""
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")


def longestLine(data: bytes) -> int:
    """The length of the longest CRLF-terminated line in C{data} (CRLF excluded)."""
    if len(data) <= 2:
        return 0
    return max(map(len, data.split(b"\r\n")))


class _Reader:
    """What DATA and BDAT readers share: limits, the sink and the first line."""

    def __init__(
        self,
        sink: Callable[[bytes], None],
        maxSize: int,
        maxLine: int | None,
        bareNewlines: BareNewlines,
        onFailure: Callable[[], None] | None = None,
    ) -> None:
        self._sink: Callable[[bytes], None] | None = sink
        self._onFailure = onFailure
        self._maxSize = maxSize
        self._maxLine = maxLine
        self._normalise = bareNewlines == "normalise"
        self._firstLine = True
        #: Octets of content kept so far (after unstuffing).
        self.size = 0
        #: Why the message is refused, once it is.
        self.failure: Reply | None = None

    def fail(self, reply: Reply) -> None:
        """Refuse the message (the first reason wins); write nothing more."""
        if self.failure is None:
            self.failure = reply
            if self._onFailure is not None:
                self._onFailure()
        self._sink = None

    def _lines(self, region: bytes) -> bytes | None:
        """
        Check complete CRLF-terminated lines; return them with bare line
        ends made CRLF (in normalise mode), or C{None} when refused.
        """
        if hasBareNewline(region):
            if not self._normalise:
                self.fail(BARE_NEWLINE)
                return None
            region = normaliseNewlines(region)
        limit = self._maxLine
        if limit is not None and len(region) > limit + 2 and longestLine(region) > limit:
            self.fail(LINE_TOO_LONG)
            return None
        return region

    def _deliver(self, content: bytes) -> None:
        sink = self._sink
        if sink is None or not content:
            return
        self.size += len(content)
        if self.size > self._maxSize:
            self.fail(TOO_BIG)
            return
        if self._firstLine:
            self._firstLine = False
            first = content[: content.find(b"\r\n")] if b"\r\n" in content else content
            if first and not isHeaderField(first):
                # A message without a header: the body starts after the trace fields.
                sink(b"\r\n")
        sink(content)


class DataReader(_Reader):
    """The content of one DATA command, up to C{<CRLF>.<CRLF>}."""

    def __init__(
        self,
        sink: Callable[[bytes], None],
        maxSize: int,
        maxLine: int,
        bareNewlines: BareNewlines = "reject",
        onFailure: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(sink, maxSize, maxLine, bareNewlines, onFailure)
        self._lineLimit = maxLine
        self._pending = b""

    def feed(self, data: bytes) -> int | None:
        """
        Take the next bytes of the stream.  Returns how many of them went
        up to and including the end of data when it came (the rest are
        commands), else C{None}: all were taken.
        """
        pending = self._pending
        buffer = pending + data if pending else data
        end = (b"\r\n" + buffer).find(_END)
        if end >= 0:
            self._pending = b""
            self._content(buffer[:end])
            return end + 3 - len(pending)
        cut = buffer.rfind(b"\r\n") + 2
        if cut >= 2:
            self._content(buffer[:cut])
        rest = buffer[cut:] if cut >= 2 else buffer
        if len(rest) > self._lineLimit + 1 and self.failure is None:
            self.fail(LINE_TOO_LONG)
        if self.failure is not None:
            # Keep only what could still begin the end of data.
            rest = rest[-4:]
        self._pending = rest
        return None

    def _content(self, region: bytes) -> None:
        """Complete lines of content, still dot-stuffed."""
        if self.failure is not None or not region:
            return
        lines = self._lines(region)
        if lines is None:
            return
        if b"\r\n." in lines or lines[:1] == b".":
            lines = (b"\r\n" + lines).replace(b"\r\n.", b"\r\n")[2:]
        self._deliver(lines)


class ChunkReader(_Reader):
    """
    The content of a BDAT transaction: chunks of exactly the announced
    size, not dot-stuffed.  With C{BODY=BINARYMIME} the octets are stored
    as sent; otherwise line ends are checked as in DATA, across chunks.
    """

    def __init__(
        self,
        sink: Callable[[bytes], None],
        maxSize: int,
        maxLine: int,
        bareNewlines: BareNewlines = "reject",
        binary: bool = False,
        onFailure: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(sink, maxSize, None if binary else maxLine, bareNewlines, onFailure)
        self._binary = binary
        self._remaining = 0
        self._held = b""

    def expect(self, size: int) -> None:
        """The next chunk has C{size} octets."""
        self._remaining = size

    @property
    def remaining(self) -> int:
        """Octets of the current chunk still to come."""
        return self._remaining

    def feed(self, data: bytes) -> int:
        """Take octets of the current chunk; return how many of C{data} were its."""
        taken = data[: self._remaining]
        self._remaining -= len(taken)
        if self.failure is None and taken:
            if self._binary:
                self._deliver(taken)
            else:
                self._text(taken)
        return len(taken)

    def _text(self, data: bytes) -> None:
        """Complete lines go on at once; a partial line waits for its CRLF."""
        buffer = self._held + data
        cut = buffer.rfind(b"\r\n") + 2
        if cut >= 2:
            lines = self._lines(buffer[:cut])
            if lines is None:
                self._held = b""
                return
            self._deliver(lines)
            buffer = buffer[cut:]
        if self._maxLine is not None and len(buffer) > self._maxLine + 1:
            self.fail(LINE_TOO_LONG)
            buffer = b""
        self._held = buffer

    def finish(self) -> None:
        """The last chunk is in: a last line without CRLF is kept as it is."""
        held, self._held = self._held, b""
        if not held or self.failure is not None:
            return
        if hasBareNewline(held):
            if not self._normalise:
                self.fail(BARE_NEWLINE)
                return
            held = normaliseNewlines(held)
        self._deliver(held)
