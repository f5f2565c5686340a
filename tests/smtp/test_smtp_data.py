"""
L{tmail.smtp.data}: DATA's dot-stuffed stream and BDAT's chunks read a
buffer at a time.  Properties: whatever the packet boundaries, the content
comes back exactly and the end is found exactly once, at the real
C{<CRLF>.<CRLF>}; any bare CR or LF refuses (or, normalised, repairs) the
message and never ends it early.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tmail.smtp.data import (
    BARE_NEWLINE,
    LINE_TOO_LONG,
    TOO_BIG,
    ChunkReader,
    DataReader,
    hasBareNewline,
)

LIMIT = 200

lineText = st.binary(max_size=60).filter(lambda b: b"\r" not in b and b"\n" not in b)
bodies = st.lists(lineText, max_size=20)


def stuffed(lines: list[bytes]) -> bytes:
    """The wire form of DATA: dot-stuffed lines, then the end."""
    return b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n" for line in lines)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    pieces, start = [], 0
    for point in points:
        pieces.append(data[start:point])
        start = point
    pieces.append(data[start:])
    return pieces


def readData(
    wire: bytes, cuts: list[int], **options: object
) -> tuple[bytes, DataReader, bytes | None]:
    """Feed C{wire} in pieces: the content, the reader, and what followed the end."""
    got: list[bytes] = []
    reader = DataReader(got.append, 10_000, LIMIT, **options)  # type: ignore[arg-type]
    pieces = split(wire, cuts)
    for i, piece in enumerate(pieces):
        used = reader.feed(piece)
        if used is not None:
            return b"".join(got), reader, piece[used:] + b"".join(pieces[i + 1 :])
    return b"".join(got), reader, None


@given(bodies, st.lists(st.integers(min_value=0), max_size=8))
def test_content_comes_back_exactly_whatever_the_packet_boundaries(
    lines: list[bytes], cuts: list[int]
) -> None:
    body = [b"Subject: x", b"", *lines]
    content, reader, after = readData(stuffed(body) + b".\r\nQUIT\r\n", cuts)
    assert reader.failure is None
    assert content == b"".join(line + b"\r\n" for line in body)
    assert after == b"QUIT\r\n"


def test_an_empty_message_ends_at_once() -> None:
    content, reader, after = readData(b".\r\nNOOP\r\n", [])
    assert (content, reader.failure, after) == (b"", None, b"NOOP\r\n")


def test_a_body_without_a_header_gets_an_empty_line_before_it() -> None:
    content, _, _ = readData(b"just text\r\n.\r\n", [])
    assert content == b"\r\njust text\r\n"


SMUGGLED_ENDINGS = [
    b"\n.\n",
    b"\n.\r\n",
    b"\r.\r",
    b"\r.\n",
    b"\r\n.\n",
    b"\r\n.\r",
    b"\n.\r",
    b"\r\n\x00.\r\n",
]


@given(st.sampled_from(SMUGGLED_ENDINGS), st.lists(st.integers(min_value=0), max_size=6))
def test_smuggled_endings_refuse_the_message_and_never_end_it(
    ending: bytes, cuts: list[int]
) -> None:
    wire = (
        b"Subject: one\r\n\r\nboo"
        + ending
        + b"MAIL FROM:<x@evil.example>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n"
        + b"smuggled\r\n.\r\nNOOP\r\n"
    )
    _, reader, after = readData(wire, cuts)
    assert after == b"NOOP\r\n"
    if ending == b"\r\n\x00.\r\n":
        assert reader.failure is None
    else:
        assert reader.failure == BARE_NEWLINE


@given(st.sampled_from(SMUGGLED_ENDINGS[:7]), st.lists(st.integers(min_value=0), max_size=6))
def test_normalised_bare_line_ends_become_crlf_and_still_do_not_end_the_message(
    ending: bytes, cuts: list[int]
) -> None:
    wire = b"Subject: one\r\n\r\nboo" + ending + b"MAIL FROM:<x@evil.example>\r\n.\r\nNOOP\r\n"
    content, reader, after = readData(wire, cuts, bareNewlines="normalise")
    assert reader.failure is None
    assert after == b"NOOP\r\n"
    assert not hasBareNewline(content)
    assert b"MAIL FROM:<x@evil.example>\r\n" in content


def test_a_line_over_the_limit_refuses_the_message_and_reading_goes_on() -> None:
    long = b"x" * (LIMIT + 1)
    _, reader, after = readData(b"Subject: a\r\n\r\n" + long + b"\r\nmore\r\n.\r\nRSET\r\n", [])
    assert reader.failure == LINE_TOO_LONG
    assert after == b"RSET\r\n"


def test_a_line_over_the_limit_split_over_packets_is_caught() -> None:
    wire = b"Subject: a\r\n\r\n" + b"y" * (LIMIT * 3) + b"\r\n.\r\n"
    _, reader, after = readData(wire, list(range(7, len(wire), 13)))
    assert reader.failure == LINE_TOO_LONG
    assert after == b""


def test_a_line_of_exactly_the_limit_is_fine() -> None:
    _, reader, _ = readData(b"Subject: a\r\n\r\n" + b"z" * LIMIT + b"\r\n.\r\n", [30, 31])
    assert reader.failure is None


def test_too_big_stops_writing_and_tells_once() -> None:
    failures: list[int] = []
    got: list[bytes] = []
    reader = DataReader(got.append, 100, LIMIT, onFailure=lambda: failures.append(1))
    reader.feed(b"Subject: a\r\n\r\n" + b"x" * 50 + b"\r\n")
    reader.feed((b"x" * 50 + b"\r\n") * 3)
    assert reader.feed(b".\r\n") == 3
    assert reader.failure == TOO_BIG
    assert failures == [1]
    assert sum(map(len, got)) <= 100


def test_dot_stuffing_is_undone_only_at_line_starts() -> None:
    content, _, _ = readData(b"Subject: a\r\n\r\n..one\r\nt.wo\r\n...\r\n.\r\n", [15, 16, 17])
    assert content == b"Subject: a\r\n\r\n.one\r\nt.wo\r\n..\r\n"


@given(bodies, st.lists(st.integers(min_value=1, max_value=50), max_size=6))
def test_chunks_give_back_their_octets_exactly(lines: list[bytes], sizes: list[int]) -> None:
    data = b"Subject: x\r\n\r\n" + b"".join(line + b"\r\n" for line in lines)
    got: list[bytes] = []
    reader = ChunkReader(got.append, 10_000, LIMIT)
    pieces = split(data, [sum(sizes[: i + 1]) for i in range(len(sizes))])
    for piece in pieces:
        reader.expect(len(piece))
        assert reader.feed(piece + b"NEXT COMMAND") == len(piece)
        assert reader.remaining == 0
    reader.finish()
    assert reader.failure is None
    assert b"".join(got) == data


def test_a_crlf_split_between_chunks_is_not_a_bare_cr() -> None:
    got: list[bytes] = []
    reader = ChunkReader(got.append, 1000, LIMIT)
    for piece in (b"Subject: a\r", b"\n\r\nbody\r", b"\n"):
        reader.expect(len(piece))
        reader.feed(piece)
    reader.finish()
    assert reader.failure is None
    assert b"".join(got) == b"Subject: a\r\n\r\nbody\r\n"


def test_a_bare_lf_in_a_text_chunk_refuses_the_message() -> None:
    reader = ChunkReader(lambda data: None, 1000, LIMIT)
    reader.expect(20)
    reader.feed(b"Subject: a\r\n\r\nb\nc\r\n")
    reader.finish()
    assert reader.failure == BARE_NEWLINE


def test_binarymime_chunks_are_stored_as_sent() -> None:
    got: list[bytes] = []
    reader = ChunkReader(got.append, 1000, LIMIT, binary=True)
    data = b"Content-Type: application/octet-stream\r\n\r\n\x00\n\r\xff" + b"w" * (LIMIT * 2)
    reader.expect(len(data))
    reader.feed(data)
    reader.finish()
    assert reader.failure is None
    assert b"".join(got) == data


def test_a_last_line_without_crlf_is_kept() -> None:
    got: list[bytes] = []
    reader = ChunkReader(got.append, 1000, LIMIT)
    reader.expect(16)
    reader.feed(b"Subject: a\r\n\r\nzz")
    reader.finish()
    assert b"".join(got) == b"Subject: a\r\n\r\nzz"
