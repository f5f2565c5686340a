# -*- test-case-name: tests.pop3.test_pop3_transfer -*-
"""
Turning stored message bytes into a POP3 multi-line response body.

Twisted's C{POP3.transformChunk} stuffs dots chunk by chunk, so a line that
starts with C{.} at byte 0 of the message or at a chunk edge goes out
unstuffed and ends the response early.  L{DotStuffer} keeps the state that
crosses chunk edges; L{TopReader} cuts a message down for C{TOP}.
"""

from __future__ import annotations

import re
from typing import BinaryIO

_BARE_LF = re.compile(rb"(?<!\r)\n")


class DotStuffer:
    """
    A stateful C{FileSender} transform: every line ends with CRLF on the wire
    (a bare LF, as in Maildirs written by other software, becomes CRLF) and
    every line starting with C{.} gets one more (RFC 1939 section 3).

    Feed it the chunks of one message in order; then L{terminator} gives the
    bytes that end the response.
    """

    def __init__(self) -> None:
        self._last = b"\n"

    def __call__(self, chunk: bytes) -> bytes:
        if not chunk:
            return chunk
        data = _BARE_LF.sub(b"\r\n", chunk)
        if chunk[:1] == b"\n" and self._last == b"\r":
            data = data[1:]
        if self._last == b"\n" and data[:1] == b".":
            data = b"." + data
        self._last = chunk[-1:]
        return data.replace(b"\n.", b"\n..")

    def terminator(self) -> bytes:
        """The end of the multi-line response, after a CRLF if the message lacked one."""
        return b".\r\n" if self._last == b"\n" else b"\r\n.\r\n"


class TopReader:
    """
    A read-only file over the header, the blank line and the first
    C{bodyLines} lines of the body of a message (RFC 1939 C{TOP}).

    It reads line by line with a bounded C{readline}, so a header block larger
    than one chunk or a line without an end costs no more memory than a chunk.
    """

    def __init__(self, file: BinaryIO, bodyLines: int) -> None:
        self._file = file
        self._remaining = bodyLines
        self._inHeader = True
        self._atLineStart = True
        self._lineHead = b""
        self._done = False

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = 1 << 16
        parts: list[bytes] = []
        total = 0
        while total < size and not self._done:
            if not self._inHeader and self._remaining <= 0 and self._atLineStart:
                self._done = True
                break
            line = self._file.readline(size - total)
            if not line:
                self._done = True
                break
            complete = line.endswith(b"\n")
            head = (self._lineHead + line)[:3]
            if not complete:
                self._lineHead = head
            elif self._inHeader:
                self._inHeader = head not in (b"\r\n", b"\n")
            else:
                self._remaining -= 1
            if complete:
                self._lineHead = b""
            self._atLineStart = complete
            parts.append(line)
            total += len(line)
        return b"".join(parts)

    def close(self) -> None:
        self._file.close()
