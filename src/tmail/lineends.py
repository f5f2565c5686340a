"""
Line ends and dot-stuffing of a message streamed in chunks of any size.

A message on the wire has CRLF line ends, whatever a client or another
program wrote into a Maildir.  L{LineEnds} turns every LF that has no CR
before it into CRLF, also when the CR and the LF come in different chunks;
what it does with a CR that has no LF after it is the one rule its users
choose differently:

  - C{bareCR="keep"}: a lone CR is passed on as it is.  A store keeps the
    bytes a client sent but for bare LFs (APPEND, CATENATE), and POP3 sends
    a stored message that way, so that its octets are the size LIST gave.
  - C{bareCR="crlf"}: a lone CR becomes CRLF too.  The outbound queue
    sends DATA so: the receiving server must never see a bare CR or LF
    (SMTP smuggling, see L{tmail.smtp.data}).

L{DotStuffer} adds what a multi-line SMTP DATA or POP3 response needs
(RFC 5321 4.5.2, RFC 1939 3): a dot doubled at the start of every line and
the terminating C{.<CRLF>}; Twisted's C{SMTPClient} stuffs each 16 KiB
chunk on its own and misses a dot at the start of a chunk that begins a
line.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Literal

__all__ = ["BareCR", "CRLFWriter", "DotStuffer", "LineEnds"]

_BARE_LF = re.compile(rb"(?<!\r)\n")

#: What becomes of a CR with no LF after it.
BareCR = Literal["keep", "crlf"]


class LineEnds:
    """
    Turns a message, fed in any pieces, into the same bytes with CRLF line
    ends; the result does not depend on where the pieces are cut.
    """

    def __init__(self, bareCR: BareCR = "keep") -> None:
        self._bareCR = bareCR
        # "keep": the last byte given was a CR (a first LF completes it).
        self._afterCR = False
        # "crlf": a CR held back at a piece's end until the next shows
        # whether an LF follows it.
        self._heldCR = False

    def feed(self, data: bytes) -> bytes:
        """The converted bytes of the next piece (a held CR may come with the next)."""
        if self._bareCR == "crlf":
            return self._feedCRLF(data)
        if not data:
            return data
        if b"\n" in data:
            fixed = _BARE_LF.sub(b"\r\n", data)
            if self._afterCR and data[:1] == b"\n":
                fixed = fixed[1:]
            data = fixed
        self._afterCR = data[-1:] == b"\r"
        return data

    def _feedCRLF(self, data: bytes) -> bytes:
        if self._heldCR:
            data = b"\r" + data
            self._heldCR = False
        if data.endswith(b"\r"):
            data = data[:-1]
            self._heldCR = True
        if b"\r" in data or b"\n" in data:
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
        return data

    def finish(self) -> bytes:
        """The last bytes: a CR still held back, as CRLF."""
        held, self._heldCR = self._heldCR, False
        return b"\r\n" if held else b""


class CRLFWriter:
    """
    Passes bytes on to C{write} with every bare LF turned into CRLF
    (L{LineEnds} keeping a lone CR), also when the CR and the LF arrive in
    different chunks.
    """

    def __init__(self, write: Callable[[bytes], object]) -> None:
        self._write = write
        self._ends = LineEnds("keep")

    def write(self, data: bytes) -> None:
        converted = self._ends.feed(data)
        if converted:
            self._write(converted)


class DotStuffer:
    """
    Turns a message, fed in any pieces, into a dot-stuffed multi-line body:
    L{LineEnds}' CRLF line ends, a dot doubled at the start of every line,
    and, from L{finish}, a last line end if the message lacks one and the
    terminating C{.<CRLF>}.
    """

    def __init__(self, bareCR: BareCR) -> None:
        self._ends = LineEnds(bareCR)
        self._lineStart = True
        self._finished = False

    def feed(self, data: bytes) -> bytes:
        """The stream for the next piece of the message."""
        if self._finished:
            raise ValueError("the message was already finished")
        data = self._ends.feed(data)
        if not data:
            return b""
        if self._lineStart and data[:1] == b".":
            data = b"." + data
        if b"\n." in data:
            data = data.replace(b"\n.", b"\n..")
        self._lineStart = data.endswith(b"\n")
        return data

    def finish(self) -> bytes:
        """The rest of the stream: a last line end if missing, then C{.<CRLF>}."""
        if self._finished:
            raise ValueError("the message was already finished")
        self._finished = True
        tail = self._ends.finish()
        if not tail and not self._lineStart:
            tail = b"\r\n"
        return tail + b".\r\n"
