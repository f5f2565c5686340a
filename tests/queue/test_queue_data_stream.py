"""
DATA content written by the outbound queue (L{tmail.lineends.DotStuffer},
a lone CR made CRLF) reads back, through tmail's DATA reader, as the
message.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tmail.lineends import DotStuffer
from tmail.smtp.data import DataReader, normaliseNewlines

HEADER = b"Subject: x\r\n\r\n"
_bodies = st.lists(
    st.sampled_from([b".", b"..", b"\r\n", b"\r", b"\n", b"a", b"\r\n.\r\n", b"x.y", b"\xff"]),
    max_size=40,
).map(b"".join)


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for p in [*points, len(data)]:
        pieces.append(data[last:p])
        last = p
    return pieces


def _stuff(message: bytes, cuts: list[int]) -> bytes:
    stuffer = DotStuffer("crlf")
    return b"".join(stuffer.feed(piece) for piece in _split(message, cuts)) + stuffer.finish()


def _readBack(stream: bytes, cuts: list[int]) -> tuple[bytes, int]:
    received: list[bytes] = []
    reader = DataReader(received.append, 1 << 30, 1 << 20)
    used = 0
    for piece in _split(stream, cuts):
        taken = reader.feed(piece)
        if taken is not None:
            used += taken
            break
        used += len(piece)
    assert reader.failure is None
    return b"".join(received), used


@given(_bodies, st.lists(st.integers(0, 10_000)), st.lists(st.integers(0, 10_000)))
def test_any_message_in_any_chunking_reads_back_as_sent(
    body: bytes, sendCuts: list[int], readCuts: list[int]
) -> None:
    message = HEADER + body
    stream = _stuff(message, sendCuts)
    content, used = _readBack(stream, readCuts)
    expected = normaliseNewlines(message)
    if not expected.endswith(b"\r\n"):
        expected += b"\r\n"
    assert content == expected
    # The end of data is the stream's end: nothing in the message ends it early.
    assert used == len(stream)


@given(st.lists(st.integers(0, 10_000)))
def test_a_dot_at_every_chunk_edge_is_stuffed(cuts: list[int]) -> None:
    message = HEADER + b"".join(b".line %d\r\n" % n for n in range(50))
    assert _stuff(message, cuts) == message.replace(b"\r\n.", b"\r\n..") + b".\r\n"


def test_an_empty_message_is_just_the_end_of_data() -> None:
    assert _stuff(b"", []) == b".\r\n"


def test_a_last_line_without_line_end_gets_one() -> None:
    assert _stuff(b"Subject: x\r\n\r\n.end", []) == b"Subject: x\r\n\r\n..end\r\n.\r\n"
