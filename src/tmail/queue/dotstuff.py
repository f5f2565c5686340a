# -*- test-case-name: tests.queue.test_queue_dotstuff -*-
"""
Writing a message as DATA's content (RFC 5321 4.5.2): CRLF line ends, a
dot doubled at the start of every line, and C{<CRLF>.<CRLF>} at the end.

Twisted's C{SMTPClient} stuffs each 16 KiB chunk on its own and misses a
dot at the start of a chunk that begins a line.  L{DotStuffer} keeps the
one fact that crosses a chunk edge (whether the next byte starts a line,
and a CR still waiting for its LF), so any chunking gives the same bytes.
A bare CR or LF is sent as CRLF: the receiving side must never see one
(SMTP smuggling, see L{tmail.smtp.data}).
"""

from __future__ import annotations

__all__ = ["DotStuffer"]


class DotStuffer:
    """Turns a message, fed in any pieces, into DATA's dot-stuffed stream."""

    def __init__(self) -> None:
        self._lineStart = True
        self._heldCR = False
        self._finished = False

    def feed(self, data: bytes) -> bytes:
        """The stream for the next piece of the message."""
        if self._finished:
            raise ValueError("the message was already finished")
        if self._heldCR:
            data = b"\r" + data
            self._heldCR = False
        if data.endswith(b"\r"):
            # It may be the first half of a CRLF split across pieces.
            data = data[:-1]
            self._heldCR = True
        if not data:
            return b""
        if b"\r" in data or b"\n" in data:
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
        if self._lineStart and data[:1] == b".":
            data = b"." + data
        if b"\r\n." in data:
            data = data.replace(b"\r\n.", b"\r\n..")
        self._lineStart = data.endswith(b"\r\n")
        return data

    def finish(self) -> bytes:
        """The rest of the stream: a last line end if missing, then C{.<CRLF>}."""
        if self._finished:
            raise ValueError("the message was already finished")
        self._finished = True
        tail = b""
        if self._heldCR or not self._lineStart:
            tail = b"\r\n"
        return tail + b".\r\n"
