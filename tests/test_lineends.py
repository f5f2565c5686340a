"""Bare LF line ends become CRLF, however the bytes are split into chunks."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from tmail.lineends import CRLFWriter


def convert(chunks: list[bytes]) -> bytes:
    out: list[bytes] = []
    writer = CRLFWriter(out.append)
    for chunk in chunks:
        writer.write(chunk)
    return b"".join(out)


def test_bare_lf_becomes_crlf_and_crlf_and_lone_cr_stay() -> None:
    assert convert([b"a\nb\r\nc\rd\n"]) == b"a\r\nb\r\nc\rd\r\n"


def test_a_crlf_split_between_chunks_stays_one_crlf() -> None:
    assert convert([b"a\r", b"\nb\n"]) == b"a\r\nb\r\n"


@given(st.lists(st.binary(max_size=12).map(lambda b: b.replace(b"x", b"\r").replace(b"y", b"\n"))))
def test_any_chunking_gives_the_conversion_of_the_whole(chunks: list[bytes]) -> None:
    whole = b"".join(chunks)
    assert convert(chunks) == re.sub(rb"(?<!\r)\n", b"\r\n", whole)
