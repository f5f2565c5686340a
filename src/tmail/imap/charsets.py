# -*- test-case-name: tests.imap.test_imap_mimetext -*-
"""
Text from the bytes of a message: charsets (RFC 2046 4.1.2) and RFC 2047
encoded words, in linear time whatever a message holds.

The stdlib's C{email.header.decode_header} deletes list items and joins
strings once per encoded word (quadratic: 20,000 words take half a second,
a megabyte of them minutes), and C{bytes.decode} takes any codec a message
names, including C{punycode}, whose decoder is quadratic.  Only the codecs
Python ships as text encodings are used here, less those meant for host
names and Python literals; a name that is none of them is an unknown
charset.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import encodings
import encodings.aliases
import itertools
import pkgutil
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from functools import lru_cache

_MODULES = frozenset(module.name for module in pkgutil.iter_modules(encodings.__path__))
#: Codecs that are no charset: for host names and Python literals (the
#: punycode decoder is quadratic), and bytes-to-bytes transforms.
_NOT_CHARSETS = frozenset(
    {
        "aliases",
        "base64_codec",
        "bz2_codec",
        "hex_codec",
        "idna",
        "mbcs",
        "oem",
        "punycode",
        "quopri_codec",
        "raw_unicode_escape",
        "rot_13",
        "undefined",
        "unicode_escape",
        "uu_codec",
        "zlib_codec",
    }
)
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([QqBb])\?([^?\s]*)\?=")
_BASE64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
#: Every byte outside the base64 alphabet, for C{bytes.translate} to delete.
_NOT_BASE64 = bytes(sorted(set(range(256)) - set(_BASE64_ALPHABET)))
#: Codecs whose incremental decoder reads a byte order mark the way a whole
#: decode does only when there is one; without, a whole decode takes the
#: machine's byte order.
_BOM_CODECS = {
    "utf_16": ((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE), "utf_16_" + sys.byteorder[0] + "e"),
    "utf_32": ((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE), "utf_32_" + sys.byteorder[0] + "e"),
}


@lru_cache(maxsize=256)
def codecFor(charset: str) -> str | None:
    """The Python codec for a MIME charset name, or C{None} when tmail will not use one."""
    if len(charset) > 64:
        return None
    name = encodings.normalize_encoding(charset.strip().lower())
    name = encodings.aliases.aliases.get(name, name)
    if name not in _MODULES or name in _NOT_CHARSETS:
        return None
    return name


def decodeBase64(data: bytes) -> bytes:
    """
    Base64 content as RFC 2045 6.8 asks a decoder to read it: characters
    outside the alphabet are ignored, and a short last group is tolerated.
    """
    clean = data.partition(b"=")[0].translate(None, _NOT_BASE64)
    if len(clean) % 4 == 1:
        clean = clean[:-1]
    return base64.b64decode(clean + b"=" * (-len(clean) % 4))


def decodeBase64Pieces(pieces: Iterable[bytes]) -> Iterator[bytes]:
    """
    L{decodeBase64} of the concatenation of C{pieces}, a piece at a time:
    each piece's whole groups of four, the rest carried to the next.
    """
    carried = b""
    for piece in pieces:
        end = piece.find(b"=")
        clean = carried + piece[: None if end < 0 else end].translate(None, _NOT_BASE64)
        whole = len(clean) - len(clean) % 4
        carried = clean[whole:]
        if whole:
            yield base64.b64decode(clean[:whole])
        if end >= 0:
            break
    if len(carried) > 1:
        yield base64.b64decode(carried + b"=" * (-len(carried) % 4))


def decodeText(data: bytes, charset: str | None, default: str = "us-ascii") -> str:
    """
    C{data} in C{charset} (C{default} when none is named); bytes an
    unknown charset names are taken as Latin-1, as before MIME.
    """
    codec = codecFor(charset or default)
    if codec is None:
        return data.decode("latin-1")
    try:
        return data.decode(codec, "replace")
    except (LookupError, UnicodeError):
        return data.decode("latin-1")


def decodeTextPieces(
    pieces: Callable[[], Iterable[bytes]], charset: str | None, default: str = "us-ascii"
) -> list[str]:
    """
    L{decodeText} of the concatenation of the bytes C{pieces()} gives, as
    strings decoded a piece at a time by the codec's incremental decoder.
    Where that decoder fails but a whole decode would not (a stateful CJK
    codec's pending bytes), the text is decoded whole.
    """
    codec = codecFor(charset or default)
    if codec is None:
        return [piece.decode("latin-1") for piece in pieces()]
    source = iter(pieces())
    head: list[bytes] = []
    if codec in _BOM_CODECS:
        marks, native = _BOM_CODECS[codec]
        while sum(map(len, head)) < 4 and (piece := next(source, None)) is not None:
            head.append(piece)
        if not b"".join(head)[:4].startswith(marks):
            codec = native
    texts: list[str] = []
    try:
        decoder = codecs.getincrementaldecoder(codec)("replace")
        for piece in itertools.chain(head, source):
            texts.append(decoder.decode(piece))
        texts.append(decoder.decode(b"", True))
    except (LookupError, UnicodeError):
        return [decodeText(b"".join(pieces()), charset, default)]
    return texts


def _decodeWord(match: re.Match[str]) -> str | None:
    charset, encoding, text = match.groups()
    codec = codecFor(charset.partition("*")[0])
    if codec is None:
        return None
    raw = text.encode("utf-8", "surrogateescape")
    try:
        data = decodeBase64(raw) if encoding in "Bb" else binascii.a2b_qp(raw, header=True)
        return data.decode(codec, "replace")
    except (LookupError, UnicodeError, binascii.Error):
        return None


def decodeWords(text: str) -> str:
    """
    C{text} with its RFC 2047 encoded words decoded; white space between
    two encoded words goes (RFC 2047 6.2), words in an unknown charset or
    that do not decode stay as they are.
    """
    pieces: list[str] = []
    last = 0
    afterWord = False
    for match in _ENCODED_WORD.finditer(text):
        gap = text[last : match.start()]
        if not (afterWord and (not gap or gap.isspace())):
            pieces.append(gap)
        decoded = _decodeWord(match)
        afterWord = decoded is not None
        pieces.append(match.group(0) if decoded is None else decoded)
        last = match.end()
    pieces.append(text[last:])
    return "".join(pieces)
