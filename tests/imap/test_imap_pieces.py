"""
Work over a large message goes a bounded piece at a time, and gives the
answer the same work over the whole buffer gives: byte scans, base64 and
quoted-printable decoding, charset decoding, RFC 2047 encoded words, the
header's fields and the case-folded search for a SEARCH needle.

The piece size is lowered to a few bytes here, so that pieces fall
everywhere: within an escape, a multibyte character, an encoded word, a
line end.
"""

from __future__ import annotations

import binascii
import codecs
import itertools
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tmail.imap import pieces
from tmail.imap.binary import contentPieces, decodeContent
from tmail.imap.charsets import (
    decodeBase64,
    decodeBase64Pieces,
    decodeText,
    decodeTextPieces,
    decodeWords,
    decodeWordsPieces,
    quotedPrintablePieces,
)
from tmail.imap.headerfields import (
    MAX_HEADER_LINES,
    fieldValue,
    headerFields,
    headerFieldSpans,
    unfoldedPieces,
)
from tmail.imap.mimeentity import MimeEntity
from tmail.imap.search import _decodeHeader, _decodeHeaderPieces, _textContains

_EXAMPLES = settings(max_examples=400, deadline=None)


@contextmanager
def pieceSize(size: int) -> Iterator[None]:
    """Scans and decoders work C{size} bytes (or characters) at a time."""
    previous = pieces.PIECE
    pieces.PIECE = size
    try:
        yield
    finally:
        pieces.PIECE = previous


def wholeBuffer() -> Iterator[None]:
    """One piece for everything: the functions' whole-buffer behaviour."""
    return pieceSize(1 << 40)


def cut(data: bytes, points: list[int]) -> list[bytes]:
    """C{data} cut at C{points} (taken modulo its length)."""
    at = sorted({p % (len(data) + 1) for p in points} | {0, len(data)})
    return [data[low:high] for low, high in itertools.pairwise(at)]


_SIZES = st.integers(1, 12)
_QP_BYTES = st.lists(
    st.sampled_from([b"=", b"==", b"=\r", b"=\n", b"\r\n", b"\r", b"\n", b"A", b"f", b"0"])
    | st.sampled_from([b"9", b"g", b"_", b" ", b"\t", b"x", b"=4", b"=41", b"\xe9", b"=E9"]),
    max_size=60,
).map(b"".join)
_BASE64_BYTES = st.lists(
    st.sampled_from([b"QUJD", b"ZA==", b"Zm9v", b"=", b"\r\n", b" ", b"!", b"A", b"B", b"-"]),
    max_size=40,
).map(b"".join)


class ScanTests(SynchronousTestCase):
    @_EXAMPLES
    @given(
        st.binary(max_size=80) | st.lists(st.sampled_from([b"a", b" ", b"\t", b"b"])).map(b"".join),
        st.integers(0, 90),
        st.integers(0, 90),
        _SIZES,
    )
    def test_runs_end_and_start_where_strip_says(
        self, data: bytes, start: int, end: int, size: int
    ) -> None:
        end = min(end, len(data))
        start = min(start, end)
        chars = b" \ta"
        span = data[start:end]
        with pieceSize(size):
            self.assertEqual(pieces.runEnd(data, start, end, chars), end - len(span.lstrip(chars)))
            self.assertEqual(
                pieces.runStart(data, start, end, chars), start + len(span.rstrip(chars))
            )

    @_EXAMPLES
    @given(
        st.lists(st.sampled_from([b"\r\n", b"\n", b"\r", b"ab", b"--b", b"\r\n\r\n"])).map(
            b"".join
        ),
        st.sampled_from([b"\n--b", b"\r\n\r\n", b"\n"]),
        _SIZES,
    )
    def test_find_count_and_search_answer_as_one_call(
        self, data: bytes, sub: bytes, size: int
    ) -> None:
        pattern = re.compile(rb"\r?\n\r?\n")
        with wholeBuffer():
            expected = pattern.search(data)
        with pieceSize(size):
            self.assertEqual(pieces.find(data, sub, 0, len(data)), data.find(sub))
            self.assertEqual(pieces.count(data, b"\n", 0, len(data)), data.count(b"\n"))
            found = pieces.search(pattern, data, 0, len(data), 4)
        self.assertEqual(
            None if found is None else found.span(), None if expected is None else expected.span()
        )


class TransferEncodingTests(SynchronousTestCase):
    @_EXAMPLES
    @given(_BASE64_BYTES | st.binary(max_size=60), st.lists(st.integers(0, 100), max_size=8))
    def test_base64_in_pieces_is_base64_whole(self, data: bytes, points: list[int]) -> None:
        self.assertEqual(b"".join(decodeBase64Pieces(cut(data, points))), decodeBase64(data))

    @_EXAMPLES
    @given(_QP_BYTES, _SIZES, st.booleans())
    def test_quoted_printable_in_pieces_is_quoted_printable_whole(
        self, data: bytes, size: int, header: bool
    ) -> None:
        """
        Pieces never end within an escape, nor within the skip C{=} CR begins;
        a body's blanks at the ends of lines go first (RFC 2045 6.7 (3)).
        """
        with pieceSize(size):
            decoded = b"".join(quotedPrintablePieces(data, 0, len(data), header=header))
        if not header:
            data = re.sub(rb"[ \t]+(?=\r?\n)", b"", data).rstrip(b" \t")
        self.assertEqual(decoded, binascii.a2b_qp(data, header=header))

    @_EXAMPLES
    @given(
        st.sampled_from(["base64", "quoted-printable", "7bit", " Base64 "]),
        _QP_BYTES | _BASE64_BYTES,
        st.integers(0, 10),
        _SIZES,
    )
    def test_part_content_in_pieces_is_the_whole_content(
        self, encoding: str, data: bytes, margin: int, size: int
    ) -> None:
        """Within the message's bytes: a part starts and ends anywhere."""
        framed = b"H" * margin + data + b"T" * margin
        with pieceSize(size):
            decoded = b"".join(contentPieces(framed, margin, margin + len(data), encoding))
        self.assertEqual(decoded, decodeContent(data, encoding))

    def test_long_runs_of_equals_signs_are_cut_between_pairs(self) -> None:
        """No place near the cut is safe but between two C{==}, counted from the run's start."""
        for data in (b"x" + b"=" * 41 + b"41", b"=" * 40 + b"A=\r" + b"y" * 9 + b"\n=41"):
            for size in range(4, 12):
                with pieceSize(size):
                    decoded = b"".join(quotedPrintablePieces(data, 0, len(data)))
                self.assertEqual(decoded, binascii.a2b_qp(data))


_CHARSETS = st.sampled_from(
    [
        "utf-8",
        "UTF-16",
        "utf-16le",
        "utf-16be",
        "utf-32",
        "shift_jis",
        "euc-jp",
        "iso-2022-jp",
        "gb18030",
        "big5",
        "koi8-r",
        "iso-8859-1",
        "us-ascii",
        "x-unknown",
        "punycode",
    ]
)
_TEXT = st.text(
    st.sampled_from("aZ é€日本語中文ßΣ😀\u0101\r\n") | st.characters(codec="utf-8"), max_size=30
)


def _encoded(text: str, charset: str, bom: bool) -> bytes:
    """C{text} in C{charset} (with or without a byte order mark), as far as it goes."""
    codec = {"x-unknown": "latin-1", "punycode": "latin-1"}.get(charset, charset)
    data = text.encode(codec, "replace")
    if charset.upper() in ("UTF-16", "UTF-32") and not bom:
        data = data[2:] if charset.upper() == "UTF-16" else data[4:]
    return data


class CharsetTests(SynchronousTestCase):
    @_EXAMPLES
    @given(
        _CHARSETS,
        _TEXT,
        st.booleans(),
        st.binary(max_size=3),
        st.lists(st.integers(0, 200), max_size=10),
    )
    def test_text_decoded_in_pieces_is_the_text_decoded_whole(
        self, charset: str, text: str, bom: bool, junk: bytes, points: list[int]
    ) -> None:
        """Multibyte characters and byte order marks split anywhere; broken bytes too."""
        data = _encoded(text, charset, bom) + junk
        chunks = cut(data, points)
        decoded = "".join(decodeTextPieces(lambda: iter(chunks), charset))
        self.assertEqual(decoded, decodeText(data, charset))

    @_EXAMPLES
    @given(st.binary(max_size=40), st.lists(st.integers(0, 50), max_size=8), _CHARSETS)
    def test_any_bytes_decode_in_pieces_as_whole(
        self, data: bytes, points: list[int], charset: str
    ) -> None:
        chunks = cut(data, points)
        decoded = "".join(decodeTextPieces(lambda: iter(chunks), charset))
        self.assertEqual(decoded, decodeText(data, charset))

    def test_utf16_with_byte_order_marks_split_from_the_text(self) -> None:
        for data in (
            codecs.BOM_UTF16_BE + "日本".encode("utf-16-be"),
            codecs.BOM_UTF16_LE + "日本".encode("utf-16-le"),
            "日本".encode("utf-16-le"),
        ):
            for first in range(1, len(data) + 1):
                chunks = [data[:1], data[1:first], data[first:]]
                decoded = "".join(decodeTextPieces(lambda c=chunks: iter(c), "utf-16"))
                self.assertEqual(decoded, decodeText(data, "utf-16"))


#: Pieces of header text: encoded words good and bad, long ones, and what
#: ends or breaks them (white space of every kind, C{?}, C{=}).
_WORD_PIECES = st.sampled_from(
    [
        "=?utf-8?q?caf=C3=A9?=",
        "=?UTF-8?B?Y2Fmw6k=?=",
        "=?iso-8859-1?Q?a_b=E9?=",
        "=?utf-16?b?//5hAA==?=",
        "=?x-unknown?q?zz?=",
        "=?utf-8*en?q?lang?=",
        "=?utf-8?q?" + "ab=3D" * 12 + "?=",
        "=?utf-8?b?" + "YWJj" * 12 + "?=",
        "=?" + "c" * 70 + "?q?long-charset?=",
        "=?utf-8?x?bad?=",
        "=?utf-8?q?",
        "?=",
        "=?",
        "?",
        "=",
        "q",
        "B",
        " ",
        "\t",
        "\r\n ",
        "\xa0",
        "\u2003",
        "\x85",
        "plain",
        "é",
    ]
)


class EncodedWordTests(SynchronousTestCase):
    @settings(max_examples=1000, deadline=None)
    @given(st.lists(_WORD_PIECES, max_size=20).map("".join), st.integers(1, 40))
    def test_words_decoded_in_pieces_are_the_words_decoded_whole(
        self, text: str, size: int
    ) -> None:
        """Pieces end within words, between words, and within the white space between them."""
        with wholeBuffer():
            expected = decodeWords(text)
        with pieceSize(size):
            self.assertEqual("".join(decodeWordsPieces(text)), expected)
            self.assertEqual(decodeWords(text), expected)

    def test_a_word_longer_than_a_piece_is_decoded(self) -> None:
        word = "=?utf-8?b?" + "w6k=" + "?= =?utf-8?q?" + "a=C3=A9" * 50 + "?="
        with pieceSize(16):
            self.assertEqual("".join(decodeWordsPieces(word)), "é" + "aé" * 50)

    @_EXAMPLES
    @given(
        st.lists(_WORD_PIECES | st.sampled_from(["\xff", "\r\n"]), max_size=12).map("".join),
        st.lists(st.integers(0, 400), max_size=6),
        _SIZES,
    )
    def test_header_decoded_in_pieces_is_the_header_decoded_whole(
        self, text: str, points: list[int], size: int
    ) -> None:
        """Undecodable UTF-8 split anywhere, then encoded words, as SEARCH reads a header."""
        raw = text.encode("utf-8", "surrogateescape").replace(b"\xc3\xbf", b"\xff")
        chunks = cut(raw, points)
        with wholeBuffer():
            expected = _decodeHeader(raw)
        with pieceSize(size):
            self.assertEqual("".join(_decodeHeaderPieces(lambda: iter(chunks))), expected)


class FinderTests(SynchronousTestCase):
    @settings(max_examples=1000, deadline=None)
    @given(
        st.text(st.sampled_from("abAB sSßẞΣ\u03c3\u03c2İi\u0307ﬁ"), max_size=30),
        st.text(st.sampled_from("abAB sSßẞΣ\u03c3\u03c2İi\u0307ﬁ"), max_size=4),
        st.lists(st.integers(0, 40), max_size=8),
    )
    def test_needle_found_in_pieces_as_in_the_whole_text(
        self, text: str, needle: str, points: list[int]
    ) -> None:
        """Case folding that lengthens a character (C{ß}, C{ﬁ}) and matches across piece edges."""
        at = sorted({p % (len(text) + 1) for p in points} | {0, len(text)})
        chunks = [text[low:high] for low, high in itertools.pairwise(at)]
        folded = needle.casefold()
        self.assertEqual(_textContains(chunks, folded), folded in text.casefold())


_HEADER_LINES = st.sampled_from(
    [
        b"Subject: hello\r\n",
        b"subject : =?utf-8?q?caf=C3=A9?=\r\n",
        b"To: a@example.test,\r\n\tb@example.test\r\n",
        b"X-Folded:   first\r\n  \r\n second  \r\n",
        b"X-Empty:\r\n",
        b"X-Bare: lf only\n",
        b"X-Cr: cr\rinside\r\n",
        b"not a field\r\n",
        b" continuation without field\r\n",
        b": no name\r\n",
        b"X-Long: " + b"word " * 20 + b"\r\n",
        b"From:\tcarol@example.test \r\n",
        b"Subject" + b" " * 70 + b"\t: after long blanks\r\n",
        b"subject" + b" " * 70 + b"not a field\r\n",
        b"Subject:\r\n continued\r\n\r \r\n",
    ]
)


class HeaderFieldTests(SynchronousTestCase):
    @_EXAMPLES
    @given(
        st.lists(_HEADER_LINES, max_size=12).map(b"".join),
        st.sampled_from([b"\r\n", b"", b"\n", b"\r\nbody: not a field\r\n"]),
        _SIZES,
    )
    def test_fields_of_a_large_header_are_the_fields_read_whole(
        self, lines: bytes, end: bytes, size: int
    ) -> None:
        header = lines + end
        with wholeBuffer():
            fields = headerFields(header)
            spans = headerFieldSpans(header)
            names = {name for name, _ in fields} | {b"subject", b"x-folded", b"x-absent"}
            values = {name: fieldValue(header, name) for name in names}
        self.assertEqual([(name, header[start:stop]) for name, start, _, stop in spans], fields)
        for (_, lines_), (_, _, valueStart, stop) in zip(fields, spans, strict=True):
            self.assertEqual(header[valueStart:stop], lines_.split(b":", 1)[1])
            unfolded = re.sub(rb"\r?\n(?=[ \t])", b"", header[valueStart:stop]).strip()
            with pieceSize(size):
                self.assertEqual(b"".join(unfoldedPieces(header, valueStart, stop)), unfolded)
        with pieceSize(size):
            self.assertEqual(headerFields(header), fields)
            self.assertEqual(headerFieldSpans(header), spans)
            for name, value in values.items():
                self.assertEqual(fieldValue(header, name), value)

    def test_fields_past_the_line_limit_are_not_read_in_pieces_either(self) -> None:
        header = b"X-A: 1\r\n" * (MAX_HEADER_LINES + 5) + b"\r\n"
        with pieceSize(64):
            spans = headerFieldSpans(header)
        self.assertEqual(len(spans), MAX_HEADER_LINES)


class ExampleTests(SynchronousTestCase):
    def test_strategies_reach_the_cases_that_matter(self) -> None:
        """The hand-picked inputs cover a skip, a pair and an escape at a cut."""
        data = b"ab=\r\nc==41=\rskip\nd=4"
        for size in range(4, 9):
            with pieceSize(size):
                decoded = b"".join(quotedPrintablePieces(data, 0, len(data)))
            self.assertEqual(decoded, binascii.a2b_qp(data))


def _referenceSpans(data: bytes, start: int, end: int, boundary: bytes) -> list[tuple[int, int]]:
    """The parts of a multipart body as one regular expression over the whole body finds them."""
    line = b"--" + re.escape(boundary) + rb"(--)?[ \t]*(?=\r?\n|\Z)"
    first, later = re.compile(line), re.compile(rb"\n" + line)
    matches = [(m, start) for m in [first.match(data, start, end)] if m is not None]
    for m in later.finditer(data, start, end):
        at = m.start() - 1 if m.start() > start and data[m.start() - 1] == 0x0D else m.start()
        matches.append((m, at))
    spans: list[tuple[int, int]] = []
    partStart: int | None = None
    for m, delimiterStart in matches:
        if partStart is not None:
            spans.append((partStart, max(partStart, delimiterStart)))
        if m.group(1):
            return spans
        lineEnd = m.end()
        partStart = lineEnd + (
            2
            if data.startswith(b"\r\n", lineEnd, end)
            else int(data.startswith(b"\n", lineEnd, end))
        )
    if partStart is not None:
        spans.append((partStart, end))
    return spans


_BODY_PIECES = st.sampled_from(
    [b"\r\n", b"\n", b"\r", b"--b", b"--bb", b"--", b" ", b"\t", b" " * 70, b"x", b"--b--"]
)


class MultipartTests(SynchronousTestCase):
    @settings(max_examples=1000, deadline=None)
    @given(st.lists(_BODY_PIECES, max_size=25).map(b"".join), st.integers(0, 3), _SIZES)
    def test_parts_found_in_pieces_are_the_parts_one_search_finds(
        self, body: bytes, margin: int, size: int
    ) -> None:
        """Delimiters at the start, at the end, with long blank runs, across piece edges."""
        header = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
        data = header + body + b"y" * margin
        end = len(data) - margin
        with pieceSize(size):
            entity = MimeEntity(data, end=end)
            spans = [(part.start, part.end) for part in entity.children]
        # Without a part told apart, the one part BODYSTRUCTURE lists is empty.
        expected = _referenceSpans(data, len(header), end, b"b") or [(end, end)]
        self.assertEqual(spans, expected)

    def test_lines_that_only_begin_like_delimiters_cost_no_time(self) -> None:
        """Each cost a piece's copy and Python code: seconds for a few megabytes."""
        body = b"--b\r\n\r\nx" + b"\r\n--bx" * 600_000 + b"\r\n--b--\r\n"
        started = time.monotonic()
        entity = MimeEntity(b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + body)
        self.assertEqual(len(entity.children), 1)
        self.assertLess(time.monotonic() - started, 1.5)


class BoundedWorkTests(SynchronousTestCase):
    def test_many_word_starts_in_a_long_header_are_read_quickly(self) -> None:
        """Each C{=?} that begins no word cost Python code: seconds for a few megabytes."""
        text = "=?" * 4_000_000
        started = time.monotonic()
        self.assertEqual("".join(decodeWordsPieces(text)), text)
        self.assertLess(time.monotonic() - started, 2)

    def test_quoted_printable_pieces_stay_small_on_a_long_line(self) -> None:
        """
        A line of escapes, or one with a carriage return in it, was decoded
        in one call however long it was.
        """
        for data in (b"=A" * 2**19, b"x\r" + b"=A" * 2**19, b"=" * 2**20 + b"41"):
            for header in (False, True):
                decoded = list(quotedPrintablePieces(data, 0, len(data), header=header))
                self.assertLessEqual(max(map(len, decoded)), pieces.PIECE)
                self.assertEqual(b"".join(decoded), binascii.a2b_qp(data, header=header))

    def test_carriage_returns_after_pairs_of_equals_signs_are_read_quickly(self) -> None:
        """C{==} CR is no soft line break; each cost a piece of its own."""
        data = b"==\r" * 1_000_000
        started = time.monotonic()
        decoded = b"".join(quotedPrintablePieces(data, 0, len(data)))
        self.assertLess(time.monotonic() - started, 2)
        self.assertEqual(decoded, binascii.a2b_qp(data))
