"""L{tmail.pop3.transfer}: TOP reads the header and the first lines, whatever the chunk size."""

from __future__ import annotations

import io

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tmail.pop3.transfer import TopReader


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
