# -*- test-case-name: tests.imap.test_imap_urlauth -*-
"""
The bytes an IMAP URL names (RFC 5092): the whole message, a body section
as FETCH BODY[...] serves it, and a C{;PARTIAL=} range of that; with
URLAUTH=BINARY (RFC 5524) also the section's decoded content and its body
structure.

L{extract} reads and takes apart a message: it runs in a worker thread,
given a file the store opened (L{tmail.imap.urlauth.URLAuthority.locate}),
so a large message keeps no other session waiting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO

from tmail.imap.binary import UnknownCTE, binaryContentPieces
from tmail.imap.headerfields import fieldValue
from tmail.imap.imapurl import IMAPURL
from tmail.imap.mimeentity import MimeEntity, MimeLimits
from tmail.imap.structure import bodyStructure, convertedStructure
from tmail.imap.urlauth import URLGone

__all__ = ["Extracted", "extract"]


@dataclass(frozen=True)
class Extracted:
    """
    What a URL names: C{data} as BODY[...] serves it, and when asked for,
    C{binary} (the content decoded, RFC 3516; C{None} for a header or text
    section, or an encoding that cannot be undone) and C{structure} (the
    section's BODYSTRUCTURE, C{None} for a header or text section).
    """

    data: bytes
    binary: bytes | None = None
    structure: bytes | None = None


def _partial(url: IMAPURL, data: bytes) -> bytes:
    if url.partial is None:
        return data
    start, length = url.partial
    return data[start:] if length is None else data[start : start + length]


def extract(
    source: BinaryIO,
    url: IMAPURL,
    limits: MimeLimits,
    *,
    binary: bool = False,
    structure: bool = False,
) -> Extracted:
    """
    Read the message from C{source} (and close it) and return what C{url}
    names.  Raises L{URLGone} for a section the message does not have.
    """
    with source:
        raw = source.read()
    message = MimeEntity(raw, limits=limits)
    section = url.section
    path = tuple(p - 1 for p in section.path) if section is not None else ()
    kind = section.kind if section is not None else ""
    data = message.section(path, kind, section.fields if section is not None else ())
    if data is None:
        raise URLGone("No such body part")
    whole = None
    if binary and not kind:
        try:
            found = binaryContentPieces(message, path)
        except UnknownCTE:
            found = None
        if found is not None:
            whole = b"".join(found)
    shape = None
    if structure and not kind:
        node = message.find(path) if path else message
        if node is not None and whole is not None and _encoded(node):
            shape = convertedStructure(node, whole)
        elif node is not None:
            shape = bodyStructure(node)
    decoded = None if whole is None else _partial(url, whole)
    return Extracted(_partial(url, data), decoded, shape)


def _encoded(node: MimeEntity) -> bool:
    """Whether a single part's content is transfer-encoded (base64, quoted-printable)."""
    if node.isMultipart or node.encapsulated is not None:
        return False
    encoding = fieldValue(node.header, b"content-transfer-encoding") or b""
    return encoding.strip().lower() not in (b"", b"7bit", b"8bit", b"binary")
