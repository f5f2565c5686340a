# -*- test-case-name: tests.imap.test_imap_message -*-
"""
MIME entities over a message's exact bytes: its header and the tree of its
parts, found as offsets into the one message.  Apart from the stored
messages (L{tmail.imap.message}): an APPENDed literal8 and the message an
IMAP URL names (BURL, URLFETCH, in a worker thread) are taken apart too,
with no folder behind them.

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

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache

from tmail.imap import pieces
from tmail.imap.headerfields import BLANKS, fieldValue, headerEnd, selectFields
from tmail.imap.mimeparams import Parameters, parseParameterized

#: MIME nesting deeper than this is served as an opaque leaf part, by
#: default (C{[imap] max_mime_depth}).
MAX_MIME_DEPTH = 32
#: Body parts of one message at most, by default (C{[imap] max_mime_parts},
#: Dovecot's C{max_total_mime_parts}): the parts of a multipart past them
#: are not numbered, and a multipart or message/rfc822 part with no room
#: left is an opaque leaf.
MAX_MIME_PARTS = 10_000

#: A media type or subtype (RFC 2045 5.1 C{token}).
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`{|}~0-9A-Za-z]+")


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
    or the start of one with more than L{BLANKS} blanks: matches of
    bounded length, so that the search goes a piece at a time, and none
    for the text that merely begins like a delimiter, so that text costs
    no Python code.
    """
    return re.compile(
        rb"\n--" + re.escape(boundary) + rb"(?:--)?+[ \t]{0,%d}+(?:\r?\n|[ \t])" % BLANKS
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
    longest = len(marker) + 2 + BLANKS + 2
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
        return headerEnd(self.data, self.start, self.end)

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
