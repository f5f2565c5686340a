"""Tests for L{tmail.pop3.transfer}: dot-stuffing across chunk edges and TOP."""

from __future__ import annotations

import io

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tmail.pop3.transfer import DotStuffer, TopReader


def stuff(message: bytes, chunkSize: int) -> bytes:
    """What goes on the wire for C{message} read in chunks of C{chunkSize}."""
    stuffer = DotStuffer()
    out = [stuffer(message[i : i + chunkSize]) for i in range(0, len(message), chunkSize)]
    return b"".join(out) + stuffer.terminator()


def unstuff(wire: bytes) -> bytes:
    """A client's reading of a multi-line response body (RFC 1939 section 3)."""
    assert wire.endswith(b"\r\n.\r\n") or wire == b".\r\n"
    lines = wire.split(b"\r\n")[:-2]
    out = []
    for line in lines:
        assert line != b".", "early end of the response"
        out.append(line[1:] if line.startswith(b".") else line)
    return b"".join(line + b"\r\n" for line in out)


class DotStufferTests(SynchronousTestCase):
    def test_dotAtStartOfMessage(self) -> None:
        """A message whose first byte is C{.} gets it stuffed."""
        self.assertEqual(stuff(b".\r\nbody\r\n", 16384), b"..\r\nbody\r\n.\r\n")

    def test_dotAtChunkEdge(self) -> None:
        """
        A line starting with C{.} exactly at a chunk edge is stuffed
        (Twisted's per-chunk C{transformChunk} misses it).
        """
        head = b"Subject: x\r\n\r\n"
        filler = b"a" * (16384 - len(head) - 2) + b"\r\n"
        message = head + filler + b".\r\nafter\r\n"
        self.assertEqual(message.index(b".\r\nafter"), 16384)
        wire = stuff(message, 16384)
        self.assertIn(b"\r\n..\r\nafter\r\n.\r\n", wire)
        self.assertEqual(unstuff(wire), message)

    def test_crlfSplitAcrossChunks(self) -> None:
        """A CR ending one chunk and LF starting the next stay one CRLF."""
        self.assertEqual(stuff(b"a\r\n.b\r\n", 2), b"a\r\n..b\r\n.\r\n")

    def test_bareLineFeeds(self) -> None:
        """Bare LFs become CRLF, so the terminator is unambiguous."""
        self.assertEqual(stuff(b"a\n.\nb", 3), b"a\r\n..\r\nb\r\n.\r\n")

    def test_terminatorAfterMissingLineEnd(self) -> None:
        """A message without a final CRLF gets one before the C{.}."""
        self.assertEqual(stuff(b"abc", 10), b"abc\r\n.\r\n")
        self.assertEqual(stuff(b"", 10), b".\r\n")

    @given(
        st.lists(st.sampled_from([b"a", b".", b"\r\n", b"..", b"x y", b"\r\n.\r\n"]), max_size=40),
        st.integers(min_value=1, max_value=7),
    )
    def test_roundTrip(self, parts: list[bytes], chunkSize: int) -> None:
        """Any CRLF message survives any chunking: the client reads back what was stored."""
        message = b"".join(parts)
        if message and not message.endswith(b"\r\n"):
            message += b"\r\n"
        self.assertEqual(unstuff(stuff(message, chunkSize)), message)


class TopReaderTests(SynchronousTestCase):
    message = b"From: a\r\nSubject: b\r\n\r\nline 1\r\nline 2\r\nline 3\r\n"

    def read(self, message: bytes, lines: int, size: int = 5) -> bytes:
        reader = TopReader(io.BytesIO(message), lines)
        out = []
        while chunk := reader.read(size):
            out.append(chunk)
        return b"".join(out)

    def test_headersOnly(self) -> None:
        """C{TOP n 0} gives the header and the blank line."""
        self.assertEqual(self.read(self.message, 0), b"From: a\r\nSubject: b\r\n\r\n")

    def test_someLines(self) -> None:
        self.assertEqual(self.read(self.message, 2), self.message[: -len(b"line 3\r\n")])

    def test_moreLinesThanBody(self) -> None:
        self.assertEqual(self.read(self.message, 99), self.message)

    def test_longLinesCountOnce(self) -> None:
        """A body line longer than a chunk counts as one line."""
        message = b"S: x\r\n\r\n" + b"y" * 50 + b"\r\nz\r\n"
        self.assertEqual(self.read(message, 1, size=7), b"S: x\r\n\r\n" + b"y" * 50 + b"\r\n")

    @given(
        st.lists(
            st.sampled_from([b"H: v\r\n", b"\r\n", b"body\r\n", b"x" * 9, b"\n"]), max_size=20
        ),
        st.integers(min_value=0, max_value=5),
        st.integers(min_value=1, max_value=9),
    )
    def test_matchesLineByLineReading(self, parts: list[bytes], lines: int, size: int) -> None:
        """Chunk size never changes what TOP sends."""
        message = b"".join(parts)
        expected, inHeader, left = [], True, lines
        for line in io.BytesIO(message):
            if not inHeader and left == 0:
                break
            expected.append(line)
            if inHeader:
                inHeader = line not in (b"\r\n", b"\n")
            elif line.endswith(b"\n"):
                left -= 1
        self.assertEqual(self.read(message, lines, size), b"".join(expected))
