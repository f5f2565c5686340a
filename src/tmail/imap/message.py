# -*- test-case-name: tests.imap.test_imap_message -*-
"""
Messages as IMAP sees them: MIME entities over the exact stored bytes.

FETCH must return byte-exact sections (C{BODY[1.MIME]}, C{BODY[HEADER]} ...),
which re-serialising a parsed C{email} message cannot promise.  L{MimeEntity}
therefore only I{finds} the boundaries of headers and parts in the raw bytes,
and asks the stdlib C{email} package (C{compat32}) for header parameters, and
only when a caller needs them.
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Sequence
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32
from functools import cached_property
from io import SEEK_END, BytesIO
from typing import BinaryIO

from twisted.mail import imap4
from zope.interface import implementer

from tmail.interfaces import IMailFolder, MessageInfo

#: MIME nesting deeper than this is served as an opaque leaf part, so a
#: hostile message cannot make BODYSTRUCTURE recurse without bound.
MAX_MIME_DEPTH = 32

_HEADER_END = re.compile(rb"\r?\n\r?\n")
_BARE_LF = re.compile(rb"(?<!\r)\n")
_FIELD_NAME = re.compile(rb"([\x21-\x39\x3b-\x7e]+)[ \t]*:")

#: Header size read when only the header of a message is needed.
_HEADER_CHUNK = 16 * 1024


def crlfLines(data: bytes) -> bytes:
    """C{data} with every bare LF turned into CRLF, the line end IMAP sends."""
    return _BARE_LF.sub(b"\r\n", data)


def splitHeader(raw: bytes) -> tuple[bytes, bytes]:
    """
    Split an entity into its header (with the empty line that ends it) and
    its body.  An entity without an empty line is all header.
    """
    if raw.startswith(b"\r\n"):
        return raw[:2], raw[2:]
    if raw.startswith(b"\n"):
        return raw[:1], raw[1:]
    match = _HEADER_END.search(raw)
    if match is None:
        return raw, b""
    return raw[: match.end()], raw[match.end() :]


def headerFields(header: bytes) -> list[tuple[bytes, bytes]]:
    """
    The fields of a header as C{(lower-case name, raw lines)} pairs, in
    order; continuation lines stay with their field.  Lines that are neither
    fields nor continuations are dropped.
    """
    fields: list[tuple[bytes, bytes]] = []
    for line in header.splitlines(keepends=True):
        if line in (b"\r\n", b"\n"):
            break
        if line[:1] in (b" ", b"\t"):
            if fields:
                name, lines = fields[-1]
                fields[-1] = (name, lines + line)
            continue
        match = _FIELD_NAME.match(line)
        if match is not None:
            fields.append((match.group(1).lower(), line))
    return fields


def selectFields(header: bytes, names: list[bytes], negate: bool) -> bytes:
    """
    The raw lines of the named fields (or of all others, when C{negate}),
    followed by the empty line: what C{HEADER.FIELDS[.NOT]} returns.
    """
    wanted = {name.lower() for name in names}
    picked = [lines for name, lines in headerFields(header) if (name in wanted) != negate]
    return b"".join(line if line.endswith(b"\n") else line + b"\r\n" for line in picked) + b"\r\n"


def fieldValue(header: bytes, name: bytes) -> bytes | None:
    """The unfolded value of the first field called C{name}, or C{None}."""
    for fieldName, lines in headerFields(header):
        if fieldName == name:
            value = lines.split(b":", 1)[1]
            return re.sub(rb"\r?\n(?=[ \t])", b"", value).strip()
    return None


def _splitMultipart(body: bytes, boundary: bytes) -> list[bytes]:
    """
    Cut a multipart body into the exact bytes of its parts (RFC 2046 5.1.1:
    the line break before a delimiter belongs to the delimiter).
    """
    delimiter = re.compile(rb"(?:\A|\r?\n)--" + re.escape(boundary) + rb"(--)?[ \t]*(?=\r?\n|\Z)")
    parts: list[bytes] = []
    start: int | None = None
    for match in delimiter.finditer(body):
        if start is not None:
            parts.append(body[start : max(start, match.start())])
        if match.group(1):
            return parts
        end = match.end()
        if body.startswith(b"\r\n", end):
            end += 2
        elif body.startswith(b"\n", end):
            end += 1
        start = end
    if start is not None:
        parts.append(body[start:])
    return parts


class MimeEntity:
    """
    A message or body part over its exact bytes.

    @ivar raw: the entity's bytes, header and body.
    @ivar depth: how deeply nested the entity is; past L{MAX_MIME_DEPTH} it
        has no sub-parts.
    """

    def __init__(self, raw: bytes, depth: int = 0, defaultType: str = "text/plain") -> None:
        self.raw = raw
        self.depth = depth
        self._defaultType = defaultType

    @cached_property
    def _split(self) -> tuple[bytes, bytes]:
        return splitHeader(self.raw)

    @property
    def header(self) -> bytes:
        """The header, ending with its empty line."""
        return self._split[0]

    @property
    def body(self) -> bytes:
        """Everything after the header."""
        return self._split[1]

    @cached_property
    def parsed(self) -> Message:
        """The header parsed by the stdlib (parameters, RFC 2231 values)."""
        message = BytesHeaderParser(policy=compat32).parsebytes(self.header)
        message.set_default_type(self._defaultType)
        return message

    @cached_property
    def contentType(self) -> tuple[str, str]:
        """The lower-case media type and subtype."""
        mainType, _, subType = self.parsed.get_content_type().partition("/")
        return mainType, subType

    @property
    def isMultipart(self) -> bool:
        """Whether the entity has parts of its own."""
        return (
            self.contentType[0] == "multipart"
            and self.depth < MAX_MIME_DEPTH
            and bool(self.parsed.get_boundary())
        )

    @property
    def isMessage(self) -> bool:
        """Whether the entity encapsulates a message (C{message/rfc822})."""
        return self.contentType == ("message", "rfc822") and self.depth < MAX_MIME_DEPTH

    @cached_property
    def children(self) -> list[MimeEntity]:
        """The parts of a multipart entity (none for other entities)."""
        if not self.isMultipart:
            return []
        boundary = self.parsed.get_boundary() or ""
        default = "message/rfc822" if self.contentType[1] == "digest" else "text/plain"
        return [
            MimeEntity(part, self.depth + 1, default)
            for part in _splitMultipart(self.body, boundary.encode("utf-8", "surrogateescape"))
        ]

    @cached_property
    def encapsulated(self) -> MimeEntity | None:
        """The message inside a C{message/rfc822} entity."""
        if not self.isMessage:
            return None
        return MimeEntity(self.body, self.depth + 1)

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
        if not path:
            if kind == "":
                return self.raw
            if kind == "MIME":
                return None
            message = self
        else:
            node = self.find(path)
            if node is None:
                return None
            if kind == "":
                return node.body
            if kind == "MIME":
                return node.header
            if node.encapsulated is None:
                return b""
            message = node.encapsulated
        if kind == "TEXT":
            return message.body
        if kind == "HEADER":
            return message.header
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
    """

    def __init__(self, folder: IMailFolder, info: MessageInfo) -> None:
        self.folder = folder
        self.info = info
        self._header: bytes | None = None
        self._entity: MimeEntity | None = None

    @property
    def entity(self) -> MimeEntity:
        """The whole message, read on first use."""
        if self._entity is None:
            with self.open() as f:
                self._entity = MimeEntity(f.read())
        return self._entity

    def header(self) -> bytes:
        """The header alone, without reading a large body."""
        if self._entity is not None:
            return self._entity.header
        if self._header is None:
            data = b""
            with self.open() as f:
                while True:
                    chunk = f.read(_HEADER_CHUNK)
                    data += chunk
                    if not chunk or data.startswith((b"\r\n", b"\n")) or _HEADER_END.search(data):
                        break
            self._header = splitHeader(data)[0]
        return self._header

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
        match RFC822.SIZE; any other file is returned as stored.
        """
        f = self.folder.openMessage(self.info.uid)
        if f.seek(0, SEEK_END) == self.info.size:
            f.seek(0)
            return f
        with f:
            f.seek(0)
            return BytesIO(crlfLines(f.read()))
