# -*- test-case-name: tests.pop3.test_pop3_transfer -*-
"""
Cutting a stored message down for POP3's C{TOP}.

The response body itself is dot-stuffed by L{tmail.lineends.DotStuffer}
(Twisted's C{POP3.transformChunk} stuffs dots chunk by chunk, so a line
that starts with C{.} at byte 0 of the message or at a chunk edge would go
out unstuffed and end the response early).
"""

from __future__ import annotations

from typing import BinaryIO


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
