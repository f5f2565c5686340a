"""
Line ends and dot-stuffing of a message streamed in chunks: bare LF
becomes CRLF, a lone CR is kept or made CRLF as asked, and no result
depends on where the chunks are cut.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tmail.lineends import BareCR, CRLFWriter, DotStuffer, LineEnds

_pieces = st.lists(
    st.binary(max_size=12).map(lambda b: b.replace(b"x", b"\r").replace(b"y", b"\n"))
)


def convert(chunks: list[bytes]) -> bytes:
    out: list[bytes] = []
    writer = CRLFWriter(out.append)
    for chunk in chunks:
        writer.write(chunk)
    return b"".join(out)


def ends(chunks: list[bytes], bareCR: BareCR) -> bytes:
    converter = LineEnds(bareCR)
    return b"".join(converter.feed(chunk) for chunk in chunks) + converter.finish()


def stuff(message: bytes, chunkSize: int, bareCR: BareCR = "keep") -> bytes:
    """What goes on the wire for C{message} read in chunks of C{chunkSize}."""
    stuffer = DotStuffer(bareCR)
    out = [stuffer.feed(message[i : i + chunkSize]) for i in range(0, len(message), chunkSize)]
    return b"".join(out) + stuffer.finish()


def unstuff(wire: bytes) -> bytes:
    """A client's reading of a multi-line response body (RFC 1939 section 3)."""
    assert wire.endswith(b"\r\n.\r\n") or wire == b".\r\n"
    lines = wire.split(b"\r\n")[:-2]
    out = []
    for line in lines:
        assert line != b".", "early end of the response"
        out.append(line[1:] if line.startswith(b".") else line)
    return b"".join(line + b"\r\n" for line in out)


def test_bare_lf_becomes_crlf_and_crlf_and_lone_cr_stay() -> None:
    assert convert([b"a\nb\r\nc\rd\n"]) == b"a\r\nb\r\nc\rd\r\n"


def test_a_crlf_split_between_chunks_stays_one_crlf() -> None:
    assert convert([b"a\r", b"\nb\n"]) == b"a\r\nb\r\n"


def test_a_lone_cr_becomes_crlf_when_asked_also_at_the_very_end() -> None:
    assert ends([b"a\rb\r", b"\nc\r"], "crlf") == b"a\r\nb\r\nc\r\n"


@given(_pieces)
def test_any_chunking_gives_the_conversion_of_the_whole(chunks: list[bytes]) -> None:
    whole = b"".join(chunks)
    assert convert(chunks) == re.sub(rb"(?<!\r)\n", b"\r\n", whole)
    assert ends(chunks, "crlf") == re.sub(rb"\r\n|\r|\n", b"\r\n", whole)


def test_a_dot_at_the_start_of_the_message_is_stuffed() -> None:
    assert stuff(b".\r\nbody\r\n", 16384) == b"..\r\nbody\r\n.\r\n"


def test_a_dot_at_a_chunk_edge_is_stuffed() -> None:
    """Twisted's per-chunk C{transformChunk} misses it."""
    head = b"Subject: x\r\n\r\n"
    filler = b"a" * (16384 - len(head) - 2) + b"\r\n"
    message = head + filler + b".\r\nafter\r\n"
    assert message.index(b".\r\nafter") == 16384
    wire = stuff(message, 16384)
    assert b"\r\n..\r\nafter\r\n.\r\n" in wire
    assert unstuff(wire) == message


def test_a_crlf_split_across_chunks_is_one_line_end() -> None:
    assert stuff(b"a\r\n.b\r\n", 2) == b"a\r\n..b\r\n.\r\n"


def test_bare_line_feeds_become_crlf_so_the_end_is_unambiguous() -> None:
    assert stuff(b"a\n.\nb", 3) == b"a\r\n..\r\nb\r\n.\r\n"


@pytest.mark.parametrize("bareCR", ["keep", "crlf"])
def test_a_message_without_a_last_line_end_gets_one(bareCR: BareCR) -> None:
    assert stuff(b"abc", 10, bareCR) == b"abc\r\n.\r\n"
    assert stuff(b"", 10, bareCR) == b".\r\n"


def test_a_lone_cr_is_kept_or_ended_as_asked() -> None:
    assert stuff(b"a\rb\r\n", 2, "keep") == b"a\rb\r\n.\r\n"
    assert stuff(b"a\rb\r\n", 2, "crlf") == b"a\r\nb\r\n.\r\n"
    assert stuff(b"a\r", 1, "keep") == b"a\r\r\n.\r\n"
    assert stuff(b"a\r", 1, "crlf") == b"a\r\n.\r\n"


def test_nothing_is_fed_after_the_end() -> None:
    stuffer = DotStuffer("keep")
    stuffer.finish()
    with pytest.raises(ValueError):
        stuffer.feed(b"more")


@given(
    st.lists(st.sampled_from([b"a", b".", b"\r\n", b"..", b"x y", b"\r\n.\r\n"]), max_size=40),
    st.integers(min_value=1, max_value=7),
    st.sampled_from(["keep", "crlf"]),
)
def test_any_crlf_message_survives_any_chunking(
    parts: list[bytes], chunkSize: int, bareCR: BareCR
) -> None:
    """A client reads back what was stored."""
    message = b"".join(parts)
    if message and not message.endswith(b"\r\n"):
        message += b"\r\n"
    assert unstuff(stuff(message, chunkSize, bareCR)) == message
