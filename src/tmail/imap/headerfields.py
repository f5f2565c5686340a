# -*- test-case-name: tests.imap.test_imap_mimetext -*-
"""
The header of a message or body part: where it ends and what its fields
are, read from the exact stored bytes.

FETCH serves header sections byte for byte, SEARCH, SORT and
BODYSTRUCTURE read single fields: all from the raw header, a large one a
piece at a time (L{tmail.imap.pieces}) so that no single scan holds the
GIL for long.  Apart from the MIME tree (L{tmail.imap.mimeentity}), which
finds its headers' ends and reads their Content-Type here, because a
stored message's header is often read alone, without its body.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache
from typing import BinaryIO

from tmail.imap import pieces

#: Header lines (a field with its continuation lines counts as one) read
#: by L{headerFields}: far more than mail carries, when Postfix keeps no
#: more than 100 KiB of header.
MAX_HEADER_LINES = 10_000

_HEADER_END = re.compile(rb"\r?\n\r?\n")
_FIELD_NAME = re.compile(rb"([\x21-\x39\x3b-\x7e]+)[ \t]*:")
_NAME_CHARS = bytes([*range(0x21, 0x3A), *range(0x3B, 0x7F)])
#: What C{bytes.strip} takes away.
_WHITESPACE = b" \t\n\r\x0b\x0c"
#: A header line with the continuation lines that follow it.
_LOGICAL_LINE = re.compile(rb"(?:[^\r\n]+(?:(?:\r\n|\r|\n)(?=[ \t])[^\r\n]*)*)?(?:\r\n|\r|\n)?")
_FOLD = re.compile(rb"\r?\n(?=[ \t])")
#: A field's value: the rest of its line and its continuation lines.
_FIELD_VALUE = re.compile(rb"[^\r\n]*(?:(?:\r\n|\r|\n)[ \t][^\r\n]*)*")


#: Blanks after a delimiter or a field name that a search reads in one
#: match (so that matches are of bounded length, for a search a piece at
#: a time); what has more is checked on its own.
BLANKS = 64

#: Header size read when only the header of a message is needed.
_HEADER_CHUNK = 16 * 1024


def headerEnd(data: bytes, start: int, end: int) -> int:
    """Where the body of the entity C{data[start:end]} begins."""
    if data.startswith(b"\r\n", start, end):
        return start + 2
    if data.startswith(b"\n", start, end):
        return start + 1
    match = pieces.search(_HEADER_END, data, start, end, 4)
    return end if match is None else match.end()


def readHeader(f: BinaryIO) -> bytes:
    """
    The header of the message in C{f} (with its empty line), found a chunk
    at a time from the start, without reading a large body.  Each chunk is
    twice the one before, up to L{pieces.PIECE}: few reads for a large
    header (a thread that gives up the GIL for many short reads in a row
    keeps another waiting for it all the while).
    """
    f.seek(0)
    size = _HEADER_CHUNK
    window = f.read(size)
    if window.startswith((b"\r\n", b"\n")):
        return window[: 2 if window.startswith(b"\r\n") else 1]
    first = window
    offset = 0
    while True:
        match = _HEADER_END.search(window)
        if match is not None:
            length = offset + match.end()
            break
        size = min(2 * size, max(pieces.PIECE, _HEADER_CHUNK))
        chunk = f.read(size)
        if not chunk:
            length = offset + len(window)
            break
        # Three bytes carried over: a match is at most four long.
        kept = window[-3:]
        offset += len(window) - len(kept)
        window = kept + chunk
    if length <= len(first):
        return first[:length]
    f.seek(0)
    return f.read(length)


def headerFields(header: bytes) -> list[tuple[bytes, bytes]]:
    """
    The fields of a header as C{(lower-case name, raw lines)} pairs, in
    order; continuation lines stay with their field.  Lines that are neither
    fields nor continuations are dropped, with their own continuation
    lines; lines after the first L{MAX_HEADER_LINES} are not read.
    """
    return [(name, header[start:end]) for name, start, _, end in headerFieldSpans(header)]


def headerFieldSpans(header: bytes) -> list[tuple[bytes, int, int, int]]:
    """
    L{headerFields} as where each field is in C{header}: its lower-case
    name, where its lines start, where its value starts (after the colon)
    and where its lines end (with their line end).
    """
    fields: list[tuple[bytes, int, int, int]] = []
    large = len(header) > pieces.PIECE
    position = 0
    for _ in range(MAX_HEADER_LINES):
        if large:
            end = _logicalLineEnd(header, position)
        else:
            match = _LOGICAL_LINE.match(header, position)
            assert match is not None
            end = match.end()
        if end == position or header[position] == 0x0A or header.startswith(b"\r\n", position, end):
            break
        field = _fieldName(header, position, end, large)
        if field is not None:
            fields.append((field[0], position, field[1], end))
        position = end
    return fields


def _fieldName(header: bytes, start: int, end: int, large: bool) -> tuple[bytes, int] | None:
    """
    The lower-case name of the field whose line is C{header[start:end]},
    and where its value starts, if it is one.
    """
    if not large:
        match = _FIELD_NAME.match(header, start, end)
        return None if match is None else (match.group(1).lower(), match.end())
    nameEnd = pieces.runEnd(header, start, end, _NAME_CHARS)
    colon = pieces.runEnd(header, nameEnd, end, b" \t")
    if nameEnd == start or colon >= end or header[colon] != 0x3A:
        return None
    return header[start:nameEnd].lower(), colon + 1


def _lineEndLength(data: bytes, at: int) -> int:
    """How long the line end (CRLF, CR or LF) at C{at} is; 0 when there is none."""
    if data.startswith(b"\r\n", at):
        return 2
    return 1 if data[at : at + 1] in (b"\r", b"\n") else 0


def _continuedEnd(data: bytes, start: int) -> int:
    """
    Where the L{_FIELD_VALUE} at C{start} ends: the rest of a line and the
    continuation lines after it, without its line end, matched a piece at
    a time (a match that reaches within two bytes of its piece's end goes
    on in the next piece, where the line end and the blank after it show).
    """
    at = start
    while True:
        high = min(at + max(pieces.PIECE, 4), len(data))
        match = _FIELD_VALUE.match(data, at, high)
        assert match is not None
        at = match.end()
        if high == len(data) or at < high - 2:
            return at


def _logicalLineEnd(data: bytes, start: int) -> int:
    """
    Where the L{_LOGICAL_LINE} at C{start} ends: a line with the
    continuation lines that follow it, and its line end, found a piece at
    a time.
    """
    at = start
    if at < len(data) and data[at] not in b"\r\n":
        at = _continuedEnd(data, at)
    return at + _lineEndLength(data, at)


def selectFields(header: bytes, names: list[bytes], negate: bool) -> bytes:
    """
    The raw lines of the named fields (or of all others, when C{negate}),
    followed by the empty line: what C{HEADER.FIELDS[.NOT]} returns.
    """
    wanted = {name.lower() for name in names}
    picked = [lines for name, lines in headerFields(header) if (name in wanted) != negate]
    return b"".join(line if line.endswith(b"\n") else line + b"\r\n" for line in picked) + b"\r\n"


@lru_cache(maxsize=64)
def _fieldPatterns(name: bytes) -> tuple[re.Pattern[bytes], re.Pattern[bytes]]:
    """The start of a field C{name} (lower case) at the start of a header, and after a line end."""
    start = re.escape(name) + rb"[ \t]*:"
    return re.compile(start), re.compile(rb"\n" + start)


def fieldValue(header: bytes, name: bytes) -> bytes | None:
    """The unfolded value of the first field called C{name}, or C{None}."""
    if len(header) > pieces.PIECE:
        return _largeFieldValue(header, name.lower())
    first, later = _fieldPatterns(name.lower())
    # Lower case and one kind of line end, offsets kept: the search is one
    # scan for a literal, however large the header.
    folded = header.lower().replace(b"\r", b"\n")
    match = first.match(folded) or later.search(folded)
    if match is None:
        return None
    value = _FIELD_VALUE.match(header, match.end())
    assert value is not None
    return _FOLD.sub(b"", value.group()).strip()


def _afterColon(header: bytes, at: int) -> int | None:
    """Past the colon when C{[ \\t]*:} follows C{at}, else C{None}."""
    colon = pieces.runEnd(header, at, len(header), b" \t")
    return colon + 1 if header[colon : colon + 1] == b":" else None


@lru_cache(maxsize=64)
def _laterField(name: bytes) -> re.Pattern[bytes]:
    """
    In a header in lower case with one kind of line end, a line that
    begins with field C{name}: up to its colon, or up to more blanks than
    L{BLANKS}, so that matches are of bounded length.
    """
    return re.compile(rb"\n" + re.escape(name) + rb"[ \t]{0,%d}+[: \t]" % BLANKS)


def _largeFieldValue(header: bytes, name: bytes) -> bytes | None:
    """L{fieldValue} of a large header, a piece at a time."""
    size = len(header)
    found = _afterColon(header, len(name)) if header[: len(name)].lower() == name else None
    pattern = _laterField(name)
    reach = len(name) + BLANKS + 2
    for low, high in pieces.windows(0, size) if found is None else ():
        window = header[low : min(high + reach - 1, size)].lower().replace(b"\r", b"\n")
        for match in pattern.finditer(window):
            if found is not None or low + match.start() >= high:
                break
            found = _afterColon(header, low + match.start() + 1 + len(name))
        if found is not None:
            break
    if found is None:
        return None
    return b"".join(unfoldedPieces(header, found, _continuedEnd(header, found)))


def unfoldedPieces(header: bytes, start: int, end: int) -> Iterator[bytes]:
    """
    C{header[start:end]} (a field's value) unfolded (each line break before
    a blank removed) and stripped of white space at both ends, in pieces
    of about L{pieces.PIECE}.
    """
    start = pieces.runEnd(header, start, end, _WHITESPACE)
    end = pieces.runStart(header, start, end, _WHITESPACE)
    low = start
    while low < end:
        cut = min(low + pieces.PIECE, end)
        # Never between a line end and the blank after it: a value's line
        # ends are each followed by one (a continuation line).
        while cut < end and header[cut - 1] in b"\r\n":
            cut += 1
        yield _FOLD.sub(b"", header[low:cut])
        low = cut
