"""
L{tmail.smtp.headerblock}: reading a message's header section as it
streams, and writing missing fields at its end, whatever the reads' sizes.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from hypothesis import given
from hypothesis import strategies as st

from tmail.smtp.headerblock import HeaderScanner, fieldValues

MESSAGE = (
    b"From: Alice <alice@example.test>\r\n"
    b"Subject: a subject\r\n"
    b"  folded onto a second line\r\n"
    b"To: bob@example.test\r\n"
    b"\r\n"
    b"Body: this line is not a header\r\n"
    b"\r\n"
    b"more body\r\n"
)
WATCHED = ("Message-ID", "Date")


def addMessageID(present: frozenset[str]) -> Sequence[tuple[str, str]]:
    return [] if "message-id" in present else [("Message-ID", "<1@mx.example.test>")]


def scan(pieces: Sequence[bytes], scanner: HeaderScanner | None = None) -> bytes:
    scanner = scanner or HeaderScanner(addMessageID, watch=WATCHED)
    return b"".join(scanner.feed(piece) for piece in pieces) + scanner.finish()


def test_missing_field_is_written_at_the_end_of_the_header_section() -> None:
    """C{Message-ID} goes just before the empty line; the body is untouched."""
    head, body = MESSAGE.split(b"\r\n\r\n", 1)
    expected = head + b"\r\nMessage-ID: <1@mx.example.test>\r\n\r\n" + body
    assert scan([MESSAGE]) == expected


def test_a_field_present_is_not_added_again() -> None:
    message = b"message-id: <x@example.test>\r\n\r\nbody\r\n"
    assert scan([message]) == message


def test_fields_are_kept_with_their_folding() -> None:
    scanner = HeaderScanner(addMessageID, watch=WATCHED)
    scan([MESSAGE], scanner)
    assert scanner.fields == [
        ("From", b" Alice <alice@example.test>"),
        ("Subject", b" a subject\r\n  folded onto a second line"),
        ("To", b" bob@example.test"),
        ("Message-ID", b" <1@mx.example.test>"),
    ]
    assert scanner.complete
    assert fieldValues(scanner.fields, "subject") == ["a subject  folded onto a second line"]


@given(st.lists(st.integers(min_value=0, max_value=len(MESSAGE)), max_size=12))
def test_a_header_split_across_reads_anywhere_reads_the_same(cuts: list[int]) -> None:
    """However the content is cut into reads, what is stored and kept is the same."""
    points = sorted({0, len(MESSAGE), *cuts})
    pieces = [MESSAGE[a:b] for a, b in itertools.pairwise(points)]
    scanner = HeaderScanner(addMessageID, watch=WATCHED)
    assert scan(pieces, scanner) == scan([MESSAGE])
    assert [name for name, _ in scanner.fields] == ["From", "Subject", "To", "Message-ID"]


def test_a_header_section_larger_than_one_read() -> None:
    """Two hundred fields arriving 100 octets at a time: the field goes after all of them."""
    head = b"".join(b"X-Field-%d: value %d\r\n" % (n, n) for n in range(200))
    message = head + b"\r\nbody\r\n"
    pieces = [message[i : i + 100] for i in range(0, len(message), 100)]
    scanner = HeaderScanner(addMessageID, watch=WATCHED)
    assert scan(pieces, scanner) == head + b"Message-ID: <1@mx.example.test>\r\n\r\nbody\r\n"
    assert len(scanner.fields) == 201


def test_the_body_is_passed_on_as_it_is() -> None:
    scanner = HeaderScanner(addMessageID, watch=WATCHED)
    scanner.feed(b"Subject: x\r\n\r\n")
    body = b"From: not a header any more\r\n"
    assert scanner.feed(body) is body
    assert [name for name, _ in scanner.fields] == ["Subject", "Message-ID"]


def test_a_message_without_header_gets_its_fields_before_the_separator() -> None:
    """The DATA reader starts a header-less body with an empty line; the fields go above it."""
    assert scan([b"\r\n", b"just text\r\n"]) == (
        b"Message-ID: <1@mx.example.test>\r\n\r\njust text\r\n"
    )


def test_a_line_that_is_no_field_ends_the_header_section() -> None:
    message = b"Subject: x\r\nthis is no field\r\nmore\r\n"
    assert scan([message]) == (
        b"Subject: x\r\nMessage-ID: <1@mx.example.test>\r\nthis is no field\r\nmore\r\n"
    )


def test_a_message_that_is_all_header() -> None:
    """No empty line at all: the fields go at the end (a last line without CRLF gets one)."""
    assert scan([b"Subject: x\r\n"]) == b"Subject: x\r\nMessage-ID: <1@mx.example.test>\r\n"
    assert scan([b"Subject: x"]) == b"Subject: x\r\nMessage-ID: <1@mx.example.test>\r\n"
    assert scan([b"Subject: x\r\n", b"no field"]) == (
        b"Subject: x\r\nMessage-ID: <1@mx.example.test>\r\nno field"
    )
    assert scan([]) == b"Message-ID: <1@mx.example.test>\r\n"


def test_nothing_is_added_or_held_without_a_missing_function() -> None:
    scanner = HeaderScanner()
    assert scan([MESSAGE[:10], MESSAGE[10:]], scanner) == MESSAGE
    assert len(scanner.fields) == 3


def test_a_header_section_over_the_limit_is_cut_off() -> None:
    """
    Past the limit the rest is passed on as content (the field is added
    there), the fields kept are marked incomplete, and nothing grows.
    """
    head = b"".join(b"X-Field-%d: %s\r\n" % (n, b"v" * 50) for n in range(100))
    scanner = HeaderScanner(addMessageID, watch=WATCHED, limit=1000)
    out = scan([head + b"From: late@example.test\r\n\r\nbody\r\n"], scanner)
    assert not scanner.complete
    assert len(scanner.fields) < 20
    assert out.count(b"Message-ID:") == 1
    assert out.replace(b"Message-ID: <1@mx.example.test>\r\n", b"") == (
        head + b"From: late@example.test\r\n\r\nbody\r\n"
    )


def test_a_long_line_without_end_is_not_held() -> None:
    """A BINARYMIME part without line ends does not make the scanner hold the message."""
    scanner = HeaderScanner(addMessageID, watch=WATCHED, limit=1000)
    assert scanner.feed(b"Subject: x\r\n") == b"Subject: x\r\n"
    blob = b"\x00" * 5000
    assert scanner.feed(blob) == b"Message-ID: <1@mx.example.test>\r\n" + blob
    assert scanner.ended and not scanner.complete
