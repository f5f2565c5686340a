# -*- test-case-name: tests.imap.test_imap_message -*-
"""
Messages as IMAP sees them: MIME entities over the exact stored bytes.

FETCH must return byte-exact sections (C{BODY[1.MIME]}, C{BODY[HEADER]} ...),
which re-serialising a parsed C{email} message cannot promise.  L{MimeEntity}
therefore only I{finds} the boundaries of headers and parts in the raw bytes,
and reads header parameters itself (L{tmail.imap.mimeparams}).

Whatever a message holds, the work is bounded: the stdlib parser recurses
once per nested part (a thousand nested multiparts raise C{RecursionError},
as Dovecot's CVE-2020-12100) and copies each part's bytes at each level.
Here parts are offsets into the one message, the tree is built with an
explicit stack, and parts nested deeper than L{MAX_MIME_DEPTH} or past the
first L{MAX_MIME_PARTS} are opaque leaves, as Dovecot's
C{max_nested_mime_parts} and C{max_total_mime_parts} make them.
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from io import SEEK_END, BytesIO
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from twisted.internet.defer import Deferred, gatherResults, maybeDeferred
from twisted.mail import imap4
from twisted.python.failure import Failure
from zope.interface import implementer

from tmail.imap import pieces
from tmail.imap.mimeparams import Parameters, parseParameterized
from tmail.imap.waiting import answered
from tmail.interfaces import IMailFolder, MessageInfo

if TYPE_CHECKING:
    from tmail.imap.messagecache import IMessageFacts

#: MIME nesting deeper than this is served as an opaque leaf part, by
#: default (C{[imap] max_mime_depth}).
MAX_MIME_DEPTH = 32
#: Body parts of one message at most, by default (C{[imap] max_mime_parts},
#: Dovecot's C{max_total_mime_parts}): the parts of a multipart past them
#: are not numbered, and a multipart or message/rfc822 part with no room
#: left is an opaque leaf.
MAX_MIME_PARTS = 10_000
#: Header lines (a field with its continuation lines counts as one) read
#: by L{headerFields}: far more than mail carries, when Postfix keeps no
#: more than 100 KiB of header.
MAX_HEADER_LINES = 10_000

_HEADER_END = re.compile(rb"\r?\n\r?\n")
_BARE_LF = re.compile(rb"(?<!\r)\n")
_FIELD_NAME = re.compile(rb"([\x21-\x39\x3b-\x7e]+)[ \t]*:")
#: A media type or subtype (RFC 2045 5.1 C{token}).
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`{|}~0-9A-Za-z]+")
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
_BLANKS = 64

#: Header size read when only the header of a message is needed.
_HEADER_CHUNK = 16 * 1024


def crlfLines(data: bytes) -> bytes:
    """
    C{data} with every bare LF turned into CRLF, the line end IMAP sends;
    a large C{data} a piece at a time.
    """
    if len(data) <= pieces.PIECE:
        return _BARE_LF.sub(b"\r\n", data)
    converted = []
    for low, high in pieces.windows(0, len(data)):
        piece = _BARE_LF.sub(b"\r\n", data[low:high])
        if data[low] == 0x0A and low and data[low - 1] == 0x0D:
            # The CR ending the previous piece makes this LF no bare one.
            piece = piece[1:]
        converted.append(piece)
    return b"".join(converted)


def _headerEnd(data: bytes, start: int, end: int) -> int:
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


def splitHeader(raw: bytes) -> tuple[bytes, bytes]:
    """
    Split an entity into its header (with the empty line that ends it) and
    its body.  An entity without an empty line is all header.
    """
    at = _headerEnd(raw, 0, len(raw))
    return raw[:at], raw[at:]


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
    L{_BLANKS}, so that matches are of bounded length.
    """
    return re.compile(rb"\n" + re.escape(name) + rb"[ \t]{0,%d}+[: \t]" % _BLANKS)


def _largeFieldValue(header: bytes, name: bytes) -> bytes | None:
    """L{fieldValue} of a large header, a piece at a time."""
    size = len(header)
    found = _afterColon(header, len(name)) if header[: len(name)].lower() == name else None
    pattern = _laterField(name)
    reach = len(name) + _BLANKS + 2
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


def _delimiterEnd(data: bytes, at: int, end: int) -> tuple[bool, int] | None:
    """
    Whether the C{--boundary} ending at C{at} makes a delimiter line: the
    closing C{--} if any and trailing blanks, then a line end or C{end}
    (RFC 2046 5.1.1).  Whether it closes the multipart, and where the
    delimiter ends (before its line end).
    """
    closing = data.startswith(b"--", at, end)
    after = pieces.runEnd(data, at + 2 if closing else at, end, b" \t")
    if after >= end or data.startswith((b"\n", b"\r\n"), after, end):
        return closing, after
    return None


@lru_cache(maxsize=64)
def _delimiterPattern(boundary: bytes) -> re.Pattern[bytes]:
    """
    After a line feed, a delimiter line for C{boundary} and its line end,
    or the start of one with more than L{_BLANKS} blanks: matches of
    bounded length, so that the search goes a piece at a time, and none
    for the text that merely begins like a delimiter, so that text costs
    no Python code.
    """
    return re.compile(
        rb"\n--" + re.escape(boundary) + rb"(?:--)?+[ \t]{0,%d}+(?:\r?\n|[ \t])" % _BLANKS
    )


def _delimiterLines(
    data: bytes, start: int, end: int, boundary: bytes
) -> Iterator[tuple[int, bool, int]]:
    """
    The delimiter lines for C{boundary} in C{data[start:end]}, found a
    piece at a time: where each starts (its line break before it
    included, RFC 2046 5.1.1), whether it closes the multipart, and where
    it ends.  A delimiter at C{start} needs no line break before it, one
    at C{end} no line end after it.
    """
    dashes = b"--" + boundary
    marker = b"\n" + dashes
    position = start
    if data.startswith(dashes, start, end):
        found = _delimiterEnd(data, start + len(dashes), end)
        if found is not None:
            yield start, *found
            position = found[1]
    pattern = _delimiterPattern(boundary)
    longest = len(marker) + 2 + _BLANKS + 2
    while (match := pieces.search(pattern, data, position, end, longest)) is not None:
        at = match.start()
        found = _delimiterEnd(data, at + len(marker), end)
        if found is None:
            position = at + 1
            continue
        yield at - 1 if at > start and data[at - 1] == 0x0D else at, *found
        position = found[1]
    blanks = pieces.runStart(data, position, end, b" \t")
    for at in (blanks - len(marker) - 2, blanks - len(marker)):
        if at >= max(start, position) and data.startswith(marker, at, end):
            found = _delimiterEnd(data, at + len(marker), end)
            if found is not None:
                yield at - 1 if at > start and data[at - 1] == 0x0D else at, *found
            return


def _partSpans(
    data: bytes, start: int, end: int, boundary: bytes, most: int
) -> list[tuple[int, int]]:
    """
    Where the parts of the multipart body C{data[start:end]} are: the
    exact bytes between delimiter lines (RFC 2046 5.1.1: the line break
    before a delimiter belongs to it), at most C{most} of them.
    """
    spans: list[tuple[int, int]] = []
    partStart: int | None = None
    for delimiterStart, closing, lineEnd in _delimiterLines(data, start, end, boundary):
        if len(spans) >= most:
            return spans
        if partStart is not None:
            spans.append((partStart, max(partStart, delimiterStart)))
        if closing:
            return spans
        if data.startswith(b"\r\n", lineEnd, end):
            partStart = lineEnd + 2
        elif data.startswith(b"\n", lineEnd, end):
            partStart = lineEnd + 1
        else:
            partStart = lineEnd
    if partStart is not None and len(spans) < most:
        spans.append((partStart, end))
    return spans


@dataclass(frozen=True)
class MimeLimits:
    """How deep, and into how many parts, a message is taken apart."""

    depth: int = MAX_MIME_DEPTH
    parts: int = MAX_MIME_PARTS


class MimeEntity:
    """
    A message or body part: a span of the message's bytes.

    @ivar data: the bytes of the whole message.
    @ivar start: where the entity begins in C{data}.
    @ivar end: where it ends.
    @ivar depth: how deeply nested the entity is; past the depth of its
        message's L{MimeLimits} it has no sub-parts.
    """

    def __init__(
        self,
        raw: bytes,
        depth: int = 0,
        defaultType: str = "text/plain",
        *,
        start: int = 0,
        end: int | None = None,
        limits: MimeLimits = MimeLimits(),
    ) -> None:
        self.data = raw
        self.start = start
        self.end = len(raw) if end is None else end
        self.depth = depth
        self._defaultType = defaultType
        self._limits = limits
        self._children: list[MimeEntity] | None = None
        self._encapsulated: MimeEntity | None = None
        self._multipart = False

    @cached_property
    def _bodyStart(self) -> int:
        return _headerEnd(self.data, self.start, self.end)

    @property
    def bodyStart(self) -> int:
        """Where the body begins in L{data}."""
        return self._bodyStart

    @property
    def raw(self) -> bytes:
        """The entity's bytes, header and body."""
        if self.start == 0 and self.end == len(self.data):
            return self.data
        return self.data[self.start : self.end]

    @property
    def header(self) -> bytes:
        """The header, ending with its empty line."""
        return self.data[self.start : self._bodyStart]

    @property
    def body(self) -> bytes:
        """Everything after the header."""
        return self.data[self._bodyStart : self.end]

    @property
    def bodySize(self) -> int:
        """The length of L{body}, without copying it."""
        return self.end - self._bodyStart

    def bodyLines(self) -> int:
        """
        The number of lines of the body: of its line ends, as Dovecot and
        Cyrus count them (a last line without one, as a part's last line
        before a delimiter is, RFC 2046 5.1.1, is not counted).
        """
        return pieces.count(self.data, b"\n", self._bodyStart, self.end)

    @cached_property
    def _contentType(self) -> tuple[str, str, Parameters]:
        """
        The media type, subtype and parameters as the header gives them;
        the default of RFC 2045 5.2 (text/plain) when there is no
        Content-Type, or one that is not C{type/subtype} (RFC 2045 5.2
        recommends the default for those too).
        """
        value = fieldValue(self.header, b"content-type")
        if value is None:
            mainType, _, subType = self._defaultType.partition("/")
            return mainType, subType, []
        kind, parameters = parseParameterized(
            value.decode("utf-8", "surrogateescape"), asGiven=True
        )
        mainType, _, subType = kind.partition("/")
        mainType, subType = mainType.strip(), subType.strip()
        if not (_TOKEN.fullmatch(mainType) and _TOKEN.fullmatch(subType)):
            return "text", "plain", []
        return mainType, subType, parameters

    @property
    def contentType(self) -> tuple[str, str]:
        """The lower-case media type and subtype."""
        return self._contentType[0].lower(), self._contentType[1].lower()

    @property
    def mediaType(self) -> tuple[str, str]:
        """The media type and subtype as the header gives them."""
        return self._contentType[0], self._contentType[1]

    @property
    def typeParameters(self) -> Parameters:
        """The Content-Type parameters as the header gives them, repeated ones included."""
        return self._contentType[2]

    @cached_property
    def parameters(self) -> Parameters:
        """
        The Content-Type parameters: names in lower case, the first value
        of each, RFC 2231 values decoded.
        """
        seen: dict[str, str] = {}
        for key, value in self._contentType[2]:
            seen.setdefault(key.lower(), value)
        return list(seen.items())

    def parameter(self, name: str) -> str | None:
        """One Content-Type parameter, by lower-case name."""
        for key, value in self.parameters:
            if key == name:
                return value
        return None

    @cached_property
    def disposition(self) -> tuple[str, Parameters] | None:
        """The Content-Disposition and its parameters as the header gives them, or C{None}."""
        value = fieldValue(self.header, b"content-disposition")
        if value is None:
            return None
        return parseParameterized(value.decode("utf-8", "surrogateescape"), asGiven=True)

    def _expand(self) -> None:
        """
        Find the parts of the whole message, in document order, with an
        explicit stack; each entity is a multipart with L{_children}, a
        message/rfc822 with L{_encapsulated}, or a leaf.  Every part is
        found here, by the message's own entity, so a part needs no link
        back to it: no entity is part of a reference cycle, and a message's
        bytes are freed as soon as its last use ends, not at the next full
        garbage collection.
        """
        root = self
        if root._children is not None:
            return
        limits = root._limits
        budget = limits.parts
        stack = [root]
        while stack:
            entity = stack.pop()
            entity._children = []
            if budget <= 0 or entity.depth >= limits.depth:
                continue
            mainType, subType = entity.contentType
            if mainType == "multipart":
                boundary = entity.parameter("boundary")
                default = "message/rfc822" if subType == "digest" else "text/plain"
                spans = (
                    _partSpans(
                        entity.data,
                        entity._bodyStart,
                        entity.end,
                        boundary.encode("utf-8", "surrogateescape"),
                        budget,
                    )
                    if boundary
                    else []
                )
                if not spans:
                    # No part can be told apart (RFC 2046 5.1.1), and
                    # BODYSTRUCTURE lists at least one (RFC 3501 9): an
                    # empty one, at the end of the body.
                    spans = [(entity.end, entity.end)]
                    default = "text/plain"
                budget -= len(spans)
                entity._children = [
                    MimeEntity(entity.data, entity.depth + 1, default, start=s, end=e)
                    for s, e in spans
                ]
                entity._multipart = True
                stack.extend(reversed(entity._children))
            elif (mainType, subType) == ("message", "rfc822"):
                budget -= 1
                inner = MimeEntity(
                    entity.data,
                    entity.depth + 1,
                    start=entity._bodyStart,
                    end=entity.end,
                )
                entity._encapsulated = inner
                stack.append(inner)

    @property
    def isMultipart(self) -> bool:
        """Whether the entity has parts of its own."""
        self._expand()
        return self._multipart

    @property
    def isMessage(self) -> bool:
        """Whether the entity encapsulates a message (C{message/rfc822})."""
        return self.encapsulated is not None

    @property
    def children(self) -> list[MimeEntity]:
        """The parts of a multipart entity (none for other entities)."""
        self._expand()
        return self._children or []

    @property
    def encapsulated(self) -> MimeEntity | None:
        """The message inside a C{message/rfc822} entity."""
        self._expand()
        return self._encapsulated

    def walk(self) -> Iterator[MimeEntity]:
        """This entity and every part below it, in document order."""
        stack = [self]
        while stack:
            entity = stack.pop()
            yield entity
            if entity.encapsulated is not None:
                stack.append(entity.encapsulated)
            stack.extend(reversed(entity.children))

    def numberedParts(self) -> list[MimeEntity]:
        """
        The parts numbered 1, 2, ... below this entity taken as a message
        (RFC 3501 6.4.5): its parts when multipart, else its body alone.
        """
        if self.isMultipart:
            return self.children
        return [self]

    def subParts(self) -> list[MimeEntity]:
        """The parts numbered below this entity taken as a body part."""
        if self.isMultipart:
            return self.children
        if self.encapsulated is not None:
            return self.encapsulated.numberedParts()
        return []

    def find(self, path: tuple[int, ...]) -> MimeEntity | None:
        """The body part at a zero-based section path, or C{None}."""
        parts = self.numberedParts()
        node: MimeEntity | None = None
        for index in path:
            if index < 0 or index >= len(parts):
                return None
            node = parts[index]
            parts = node.subParts()
        return node

    def section(
        self,
        path: tuple[int, ...],
        kind: str,
        fields: Sequence[bytes] = (),
    ) -> bytes | None:
        """
        The bytes of a FETCH body section, or C{None} when there is no such
        part.

        @param kind: C{""} (the whole part), C{"HEADER"}, C{"HEADER.FIELDS"},
            C{"HEADER.FIELDS.NOT"}, C{"TEXT"} or C{"MIME"}.
        """
        found = self.sectionSpan(path, kind, fields)
        if isinstance(found, tuple):
            start, end = found
            if start == 0 and end == len(self.data):
                return self.data
            return self.data[start:end]
        return found

    def sectionSpan(
        self,
        path: tuple[int, ...],
        kind: str,
        fields: Sequence[bytes] = (),
    ) -> tuple[int, int] | bytes | None:
        """
        L{section}, as where it is in L{data} (C{(start, end)}) when it is
        one run of the message's bytes, so that a large one is not copied.
        """
        if not path:
            if kind == "":
                return self.start, self.end
            if kind == "MIME":
                return None
            message = self
        else:
            node = self.find(path)
            if node is None:
                return None
            if kind == "":
                return node._bodyStart, node.end
            if kind == "MIME":
                return node.start, node._bodyStart
            if node.encapsulated is None:
                return b""
            message = node.encapsulated
        if kind == "TEXT":
            return message._bodyStart, message.end
        if kind == "HEADER":
            return message.start, message._bodyStart
        return selectFields(message.header, list(fields), kind == "HEADER.FIELDS.NOT")


@implementer(imap4.IMessagePart)
class IMAPPart:
    """Twisted's L{imap4.IMessagePart} over a L{MimeEntity}."""

    def __init__(self, entity: MimeEntity) -> None:
        self.entity = entity

    def getHeaders(self, negate: bool, *names: str) -> dict[str, str]:
        wanted = {name.lower() for name in names}
        headers: dict[str, str] = {}
        for name, lines in headerFields(self.entity.header):
            key = name.decode("ascii", "replace")
            if (key in wanted) != negate and key not in headers:
                value = lines.split(b":", 1)[1]
                headers[key] = (
                    re.sub(rb"\r?\n(?=[ \t])", b"", value).strip().decode("utf-8", "replace")
                )
        return headers

    def getBodyFile(self) -> BinaryIO:
        return BytesIO(self.entity.body)

    def getSize(self) -> int:
        return len(self.entity.body)

    def isMultipart(self) -> bool:
        return self.entity.isMultipart

    def getSubPart(self, part: int) -> IMAPPart:
        children = self.entity.children
        if part < 0 or part >= len(children):
            raise IndexError(part)
        return IMAPPart(children[part])


@implementer(imap4.IMessage, imap4.IMessageFile)
class IMAPMessage:
    """
    One stored message: flags and dates from its L{MessageInfo}, bytes read
    from the folder only when a header or body is asked for.

    The folder is only ever asked for the file on the reactor thread (it
    may look for a file another program renamed, and update its index):
    work that reads a large message in a worker thread opens it first
    (L{openAhead}), then reads it there (L{load}).

    With C{facts}, the header and what L{fact} makes come from there when
    they are kept, and are kept there once made.

    A store may give the file in a later reactor turn: work that reads
    messages asks for the files of a slice of them first (L{opening},
    L{openTogether}), each then serving every read of its message (header,
    structure, body) until L{drop}.  Reading a message whose file was not
    asked for first works only with a store that answers at once.
    """

    def __init__(
        self,
        folder: IMailFolder,
        info: MessageInfo,
        limits: MimeLimits = MimeLimits(),
        facts: IMessageFacts | None = None,
    ) -> None:
        self.folder = folder
        self.info = info
        self.limits = limits
        self.facts = facts
        self._facts: dict[str, bytes] = {}
        self._header: bytes | None = None
        self._entity: MimeEntity | None = None
        self._ahead: BinaryIO | None = None
        self._held: BinaryIO | None = None
        self._heldError: BaseException | None = None

    @property
    def entity(self) -> MimeEntity:
        """The whole message, read on first use."""
        if self._entity is None:
            with self.open() as f:
                self._entity = MimeEntity(f.read(), limits=self.limits)
            self.keepFact("header", self._entity.header)
        return self._entity

    def header(self) -> bytes:
        """The header alone, without reading a large body."""
        if self._entity is not None:
            return self._entity.header
        if self._header is None:
            self._header = self.cachedFact("header")
        if self._header is None:
            with self.open() as f:
                self._header = readHeader(f)
            self.keepFact("header", self._header)
        return self._header

    def hasHeader(self) -> bool:
        """Whether the header is read already."""
        return self._entity is not None or self._header is not None

    def cachedFact(self, name: str) -> bytes | None:
        """
        The fact C{name} kept of this message, if any; once found, this
        object holds it, whatever the cache drops meanwhile.
        """
        value = self._facts.get(name)
        if value is None and self.facts is not None:
            value = self.facts.get(self.folder, self.info, name)
            if value is not None:
                self._facts[name] = value
        return value

    def keepFact(self, name: str, value: bytes) -> None:
        """Keep the fact C{name} of this message for the next to ask."""
        if self.facts is not None:
            self.facts.put(self.folder, self.info, name, value)

    def fact(self, name: str, make: Callable[[], bytes]) -> bytes:
        """The fact C{name}: kept, or made by C{make} and kept."""
        value = self.cachedFact(name)
        if value is None:
            value = make()
            self.keepFact(name, value)
        return value

    def openAhead(self) -> BinaryIO:
        """
        Open the message's file now, on the reactor thread, for L{load} in
        a worker thread (or for L{open}).  Raises C{KeyError} when the
        message is gone.
        """
        if self._ahead is None:
            self._ahead = self._file()
        return self._ahead

    def opening(self) -> Deferred[None] | None:
        """
        Ask the folder for the message's file and keep it (L{hold}), or
        its error, for every L{open} until L{drop}: the store may answer
        in a later turn, the work that reads the message does not wait.
        C{None} when the folder answered at once (the common case costs
        no Deferred); else a Deferred that fires once it has.
        """
        try:
            result: object = self.folder.openMessage(self.info.uid)
        except Exception as e:
            self.drop()
            self._heldError = e
            return None
        if isinstance(result, Deferred):
            return result.addCallbacks(self.hold, self._holdError)
        self.hold(cast(BinaryIO, result))
        return None

    def needsOpening(self) -> bool:
        """Whether reading the message's bytes would ask the folder for its file."""
        return self._entity is None and self._held is None and self._heldError is None

    def hold(self, f: BinaryIO) -> None:
        """Keep C{f}, the message's open file, for every L{open} until L{drop}."""
        self.drop()
        self._held, self._heldError = f, None

    def _holdError(self, failure: Failure) -> None:
        self.drop()
        self._heldError = failure.value

    def drop(self) -> None:
        """
        Close the file L{hold} kept; the next read asks the folder again
        (a message found gone stays gone).
        """
        held, self._held = self._held, None
        if held is not None:
            held.close()

    def _file(self) -> BinaryIO:
        """The message's file: the one held, or the folder's answer if it answers at once."""
        if self._heldError is not None:
            raise self._heldError
        if self._held is not None:
            return _borrowed(self._held)
        return openAtOnce(self.folder, self.info.uid)

    def load(self, whole: bool) -> None:
        """
        Read the header, or with C{whole} the whole message, from the file
        L{openAhead} opened, and close it: safe in a worker thread.
        """
        f, self._ahead = self._ahead, None
        assert f is not None, "load() needs openAhead() first"
        with self._readable(f) as source:
            if whole:
                self._entity = MimeEntity(source.read(), limits=self.limits)
                self.keepFact("header", self._entity.header)
            else:
                self._header = readHeader(source)
                self.keepFact("header", self._header)

    def release(self) -> None:
        """Close a file L{openAhead} opened that nothing read."""
        f, self._ahead = self._ahead, None
        if f is not None:
            f.close()

    def keepHeaderOnly(self) -> None:
        """Forget the body read for a search; the header stays (SORT, THREAD)."""
        if self._entity is not None:
            self._header = self._entity.header
            self._entity = None

    def getHeaders(self, negate: bool, *names: str) -> dict[str, str]:
        return IMAPPart(MimeEntity(self.header())).getHeaders(negate, *names)

    def getBodyFile(self) -> BinaryIO:
        return BytesIO(self.entity.body)

    def getSize(self) -> int:
        return self.info.size

    def isMultipart(self) -> bool:
        return self.entity.isMultipart

    def getSubPart(self, part: int) -> IMAPPart:
        return IMAPPart(self.entity).getSubPart(part)

    def getUID(self) -> int:
        return self.info.uid

    def getFlags(self) -> list[str]:
        return sorted(self.info.flags)

    def getInternalDate(self) -> str:
        return email.utils.formatdate(self.info.internaldate, usegmt=True)

    def open(self) -> BinaryIO:
        """
        The message's bytes with CRLF line ends.  A file whose length is not
        the recorded size (Dovecot's LF-only files, named with their CRLF
        size in C{,W=}) is read whole and converted, so the bytes served
        match RFC822.SIZE; any other file is returned as stored.  Once the
        whole message is read, its bytes are served from memory.
        """
        if self._entity is not None:
            return BytesIO(self._entity.data)
        f, self._ahead = self._ahead, None
        return self._readable(f if f is not None else self._file())

    def openLast(self) -> BinaryIO:
        """
        L{open}, for the last read of the message in the work at hand (a
        FETCH response's streamed literal): a held file is handed over as
        it is, the caller closing it.
        """
        held = self._held
        if self._entity is not None or held is None or self._ahead is not None:
            return self.open()
        self._held = None
        held.seek(0)
        return self._readable(held)

    def _readable(self, f: BinaryIO) -> BinaryIO:
        if f.seek(0, SEEK_END) == self.info.size:
            f.seek(0)
            return f
        with f:
            f.seek(0)
            return BytesIO(crlfLines(f.read()))


def openTogether(messages: Iterable[IMAPMessage]) -> Deferred[None] | None:
    """
    Open the files of C{messages} that are not open yet, all at once (see
    L{IMAPMessage.opening}); a Deferred that fires when the last is open,
    or C{None} when the folder answered at once.
    """
    waiting: list[Deferred[None]] = []
    for message in messages:
        if message.needsOpening():
            opening = message.opening()
            if opening is not None and not answered(opening)[0]:
                waiting.append(opening)
    if not waiting:
        return None
    return gatherResults(waiting).addCallback(lambda _: None)


class NotOpened(Exception):
    """A message's file was read before the store, answering later, gave it."""


def openAtOnce(folder: IMailFolder, uid: int) -> BinaryIO:
    """
    The file of a message, when the folder answers at once (a file it
    gives later is closed); raises the folder's error, or L{NotOpened}.
    """
    box: list[Any] = []
    opened: Deferred[Any] = maybeDeferred(folder.openMessage, uid)
    opened.addBoth(box.append)
    if not box:
        opened.addCallback(lambda _: _closeLate(box[0]))
        raise NotOpened("The message was not opened ahead")
    result = box[0]
    if isinstance(result, Failure):
        result.raiseException()
    return cast(BinaryIO, result)


def _closeLate(result: object) -> None:
    if not isinstance(result, Failure):
        cast(BinaryIO, result).close()


class _Borrowed:
    """A held file lent to one reader: closing it leaves the file open."""

    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        # Bound to the file's own methods: no Python call in between.
        self.read = f.read
        self.seek = f.seek
        self.tell = f.tell
        f.seek(0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)

    def close(self) -> None:
        pass

    def __enter__(self) -> _Borrowed:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def _borrowed(f: BinaryIO) -> BinaryIO:
    return cast(BinaryIO, _Borrowed(f))
