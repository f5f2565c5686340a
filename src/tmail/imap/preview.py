# -*- test-case-name: tests.imap.test_imap_preview -*-
"""
PREVIEW (RFC 8970): up to 256 characters of a message's text, for a client
to show in a message list.

The work is bounded whatever the message: only its first
C{imap.preview_scan_bytes} octets are read and taken apart, the text part
found there (the first C{text/plain} that is no attachment, else the first
C{text/html}, whose markup is dropped) is decoded from as much of it as
those octets hold, and whitespace runs become one space.  PREVIEW (LAZY)
gets the same answer: making it is as cheap as looking it up would be.
"""

from __future__ import annotations

import binascii
import html.parser
import re

from tmail.imap.binary import UnknownCTE, decodeContent
from tmail.imap.charsets import decodeText
from tmail.imap.headerfields import fieldValue
from tmail.imap.message import IMAPMessage
from tmail.imap.mimeentity import MimeEntity, MimeLimits
from tmail.imap.structure import string

#: RFC 8970 section 3: at most 256 characters.
PREVIEW_CHARACTERS = 256
#: Characters of text gathered before the preview is cut (room for whitespace).
_GATHER = 4 * PREVIEW_CHARACTERS

_LIMITS = MimeLimits()
_WHITESPACE = re.compile(r"\s+")
_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/]")
#: Elements whose content is no text a reader sees.
_HIDDEN = frozenset({"script", "style", "head", "title", "template"})


class _HTMLText(html.parser.HTMLParser):
    """The visible text of an HTML fragment, up to L{_GATHER} characters."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.size = 0
        self.hidden = 0

    def handle_starttag(self, tag: str, attrs: object) -> None:
        if tag in _HIDDEN:
            self.hidden += 1
        elif tag in ("br", "p", "div", "li", "tr", "td", "h1", "h2", "h3"):
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN and self.hidden:
            self.hidden -= 1

    def handle_data(self, data: str) -> None:
        if not self.hidden and self.size < _GATHER:
            self.parts.append(data)
            self.size += len(data)


def htmlText(markup: str) -> str:
    """The text an HTML fragment shows, roughly: tags, scripts and styles dropped."""
    parser = _HTMLText()
    parser.feed(markup)
    parser.close()
    return "".join(parser.parts)


def _textPart(message: MimeEntity) -> MimeEntity | None:
    """The first inline text/plain part outside attached messages, else the first text/html."""
    html_: MimeEntity | None = None
    stack = [message]
    while stack:
        entity = stack.pop()
        if entity.isMultipart:
            stack.extend(reversed(entity.children))
            continue
        kind = entity.contentType
        disposition = entity.disposition
        if kind[0] != "text" or (disposition is not None and disposition[0] == "attachment"):
            continue
        if kind[1] == "plain":
            return entity
        if kind[1] == "html" and html_ is None:
            html_ = entity
    return html_


def _decodedPrefix(body: bytes, encoding: str, cut: bool) -> bytes:
    """The content of a body, C{cut} off or not: a partial last base64 group is dropped."""
    if cut and encoding.strip().lower() == "base64":
        clean = _NOT_BASE64.sub(b"", body.partition(b"=")[0])
        return binascii.a2b_base64(clean[: len(clean) - len(clean) % 4] or b"")
    try:
        return decodeContent(body, encoding)
    except UnknownCTE:
        return body


def previewText(raw: bytes, cut: bool = False, limits: MimeLimits = _LIMITS) -> str:
    """
    The preview of a message from its octets C{raw}, with C{cut} when they
    are only the first of them (a character cut in two is dropped).
    """
    part = _textPart(MimeEntity(raw, limits=limits))
    if part is None:
        return ""
    encoding = fieldValue(part.header, b"content-transfer-encoding") or b""
    content = _decodedPrefix(part.body, encoding.decode("ascii", "replace"), cut)
    text = decodeText(content, part.parameter("charset"))
    if cut:
        text = text.rstrip("\ufffd")
    text = htmlText(text) if part.contentType[1] == "html" else text[: 4 * _GATHER]
    return _WHITESPACE.sub(" ", text).strip()[:PREVIEW_CHARACTERS].rstrip()


def previewItem(message: IMAPMessage, scanBytes: int, limits: MimeLimits) -> bytes:
    """
    C{PREVIEW "text"} (a literal when the text is not printable ASCII) for
    a FETCH response.  Raises C{KeyError} when the message is gone.
    """
    with message.open() as f:
        raw = f.read(scanBytes)
    text = previewText(raw, len(raw) == scanBytes, limits)
    return b"PREVIEW " + string(text.encode("utf-8"))
