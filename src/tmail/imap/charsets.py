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
import encodings
import encodings.aliases
import pkgutil
import re
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
_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/]")


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
    clean = _NOT_BASE64.sub(b"", data.partition(b"=")[0])
    if len(clean) % 4 == 1:
        clean = clean[:-1]
    return base64.b64decode(clean + b"=" * (-len(clean) % 4))


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
