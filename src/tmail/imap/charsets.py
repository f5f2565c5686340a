# -*- test-case-name: tests.imap.test_imap_mimetext,tests.imap.test_imap_pieces -*-
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

Text of a large message (a part's content, a header of megabytes, an
encoded word as long) is decoded a bounded piece at a time, as
L{tmail.imap.pieces} explains, with the answer a whole decode gives:
pieces of quoted-printable end between escapes, encoded words are looked
for only as far as the characters at hand decide them.
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

from tmail.imap import pieces

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
#: What ends the charset and the text of an encoded word.
_WORD_STOP = re.compile(r"[?\s]")
#: The last white space in what is searched.
_LAST_SPACE = re.compile(r"\s\S*\Z")
#: What follows C{=} in an escape for a byte.
_HEX = frozenset(b"0123456789ABCDEFabcdef")
#: Blanks that end a line.
_TRAILING_SPACE = re.compile(rb"[ \t]+(?=\r?\n)")
#: A run of C{=} read in pairs up to a C{=} carriage return: a soft line
#: break that skips up to the next line feed.
_SKIP = re.compile(rb"(?<!=)(?:==)*=\r")
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


def decodeBase64Pieces(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """
    L{decodeBase64} of the concatenation of C{chunks}, a chunk at a time:
    each piece's whole groups of four, the rest carried to the next.
    """
    carried = b""
    for piece in chunks:
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
    chunks: Callable[[], Iterable[bytes]], charset: str | None, default: str = "us-ascii"
) -> list[str]:
    """
    L{decodeText} of the concatenation of the bytes C{chunks()} gives, as
    strings decoded a piece at a time.
    """
    codec = codecFor(charset or default)
    if codec is None:
        return [piece.decode("latin-1") for piece in chunks()]
    try:
        return _decodePieces(chunks, codec)
    except (LookupError, UnicodeError):
        return [piece.decode("latin-1") for piece in chunks()]


def _decodePieces(chunks: Callable[[], Iterable[bytes]], codec: str) -> list[str]:
    """
    C{b"".join(chunks()).decode(codec, "replace")}, as strings decoded a
    piece at a time by the codec's incremental decoder.  Where that
    decoder fails but a whole decode might not (a stateful CJK codec's
    pending bytes), the text is decoded whole; what that raises is raised.
    """
    source = iter(chunks())
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
    except UnicodeError:
        return [b"".join(chunks()).decode(codec, "replace")]
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
    if len(text) > pieces.PIECE:
        return "".join(decodeWordsPieces(text))
    parts: list[str] = []
    last = 0
    afterWord = False
    for match in _ENCODED_WORD.finditer(text):
        gap = text[last : match.start()]
        if not (afterWord and (not gap or gap.isspace())):
            parts.append(gap)
        decoded = _decodeWord(match)
        afterWord = decoded is not None
        parts.append(match.group(0) if decoded is None else decoded)
        last = match.end()
    parts.append(text[last:])
    return "".join(parts)


def decodeWordsPieces(text: str) -> Iterator[str]:
    """
    L{decodeWords} of a long C{text}, in pieces, with no call scanning or
    decoding more than about L{pieces.PIECE} characters.  Each piece is
    searched with the regular expression, up to where every attempt to
    match is decided within the piece (L{_settled}); where too few C{?}
    and no white space make that nothing, an encoded word, however long,
    is read from its C{=?} up to each C{?} (it holds no white space), as
    the expression reads it.
    """
    end = len(text)
    last = position = 0
    afterWord = False
    while position < end:
        high = min(position + pieces.PIECE, end)
        settled = end if high == end else _settled(text, position, high)
        found: list[tuple[int, int, Iterable[str] | None]] = []
        if settled > position:
            for match in _ENCODED_WORD.finditer(text, position, high):
                if match.start() >= settled:
                    break
                plain = _decodeWord(match)
                found.append((match.start(), match.end(), None if plain is None else [plain]))
            position = max(settled, found[-1][1] if found else 0)
        else:
            at = _findText(text, "=?", position, min(high + 1, end))
            word = None if at < 0 else _wordAt(text, at, end)
            if word is None:
                position = high if at < 0 else at + 1
            else:
                wordEnd, charset, encoding, payload = word
                found.append((at, wordEnd, _decodeLongWord(charset, encoding, payload)))
                position = wordEnd
        for wordStart, wordEnd, decoded in found:
            gap = pieces.windows(last, wordStart)
            blank = all(text[low:upper].isspace() for low, upper in gap)
            if not (afterWord and blank):
                yield from _slices(text, last, wordStart)
            afterWord = decoded is not None
            yield from _slices(text, wordStart, wordEnd) if decoded is None else decoded
            last = wordEnd
    yield from _slices(text, last, end)


def _settled(text: str, start: int, high: int) -> int:
    """
    How far into C{text[start:high]} every attempt of L{_ENCODED_WORD} to
    match is decided by the characters before C{high}: an attempt reads no
    further than the first white space, nor than the fourth C{?}, after it.
    """
    space = _LAST_SPACE.search(text, start, high)
    question = high - 1
    for _ in range(4):
        question = text.rfind("?", start, question)
        if question < 0:
            break
    return max(start if space is None else space.start(), question)


def _slices(text: str, start: int, end: int) -> Iterator[str]:
    return (text[low:high] for low, high in pieces.windows(start, end))


def _findText(text: str, sub: str, start: int, end: int) -> int:
    """C{text.find(sub, start, end)}, a piece at a time."""
    reach = len(sub) - 1
    for low, high in pieces.windows(start, end):
        at = text.find(sub, low, min(high + reach, end))
        if at >= 0:
            return at
    return -1


def _wordStop(text: str, start: int, end: int) -> int:
    """Where the first C{?} or white space at or after C{start} is, else C{end}."""
    for low, high in pieces.windows(start, end):
        match = _WORD_STOP.search(text, low, high)
        if match is not None:
            return match.start()
    return end


def _wordAt(text: str, at: int, end: int) -> tuple[int, str, str, str] | None:
    """The L{_ENCODED_WORD} at C{at} (where C{=?} is): its end, charset, encoding and text."""
    question = _wordStop(text, at + 2, end)
    if question == at + 2 or text[question : question + 1] != "?":
        return None
    encoding = text[question + 1 : question + 2]
    if encoding not in ("Q", "q", "B", "b") or text[question + 2 : question + 3] != "?":
        return None
    close = _wordStop(text, question + 3, end)
    if text[close : close + 2] != "?=":
        return None
    return close + 2, text[at + 2 : question], encoding, text[question + 3 : close]


def _decodeLongWord(charset: str, encoding: str, text: str) -> list[str] | None:
    """L{_decodeWord} of a word whose text may be long, in pieces."""
    codec = codecFor(charset.partition("*")[0])
    if codec is None:
        return None
    raw = b"".join(part.encode("utf-8", "surrogateescape") for part in _slices(text, 0, len(text)))

    def data() -> Iterator[bytes]:
        if encoding in "Bb":
            return decodeBase64Pieces(raw[low:high] for low, high in pieces.windows(0, len(raw)))
        return quotedPrintablePieces(raw, 0, len(raw), header=True)

    try:
        return _decodePieces(data, codec)
    except (LookupError, UnicodeError, binascii.Error):
        return None


def quotedPrintablePieces(
    data: bytes, start: int, end: int, header: bool = False
) -> Iterator[bytes]:
    """
    C{binascii.a2b_qp(data[start:end], header=header)}, a piece of about
    L{pieces.PIECE} at a time, each cut where the whole decode is between
    two escapes.  An escape is C{=XY} (two hexadecimal digits), C{==}, C{=}
    then a line feed, C{=} then a carriage return, which skips up to and
    with the next line feed, or a lone C{=}, which the decoder drops at the
    end of its input.
    """
    if not header:
        data = trailingSpaceRemoved(data, start, end)
        start, end = 0, len(data)
    low = start
    while low < end:
        if data.startswith(b"=\r", low, end):
            lineFeed = pieces.find(data, b"\n", low, end)
            if lineFeed < 0:
                return
            low = lineFeed + 1
            continue
        cut = _quotedPrintableCut(data, low, min(low + max(pieces.PIECE, 4), end), end)
        yield binascii.a2b_qp(data[low:cut], header=header)
        low = cut


def trailingSpaceRemoved(data: bytes, start: int, end: int) -> bytes:
    """
    C{data[start:end]} without the spaces and tabs that end its lines and
    itself: a quoted-printable decoder deletes them, as transport may have
    added them (RFC 2045 6.7 rule 3), so C{"foo=  "} is a soft line break.
    A piece at a time, and in linear time however long a run of blanks is.
    """
    out: list[bytes] = []
    blanks: list[bytes] = []
    for low, high in pieces.windows(start, end):
        window = data[low:high]
        keep = len(window.rstrip(b" \t\r"))
        if keep == 0:
            blanks.append(window)
            continue
        out.append(_TRAILING_SPACE.sub(b"", b"".join([*blanks, window[:keep]])))
        blanks = [window[keep:]]
    out.append(_TRAILING_SPACE.sub(b"", b"".join(blanks)).rstrip(b" \t"))
    return b"".join(out)


def _quotedPrintableCut(data: bytes, low: int, high: int, end: int) -> int:
    """
    Where a piece of quoted-printable text that begins at C{low}, between
    escapes and not within a skip, may end, at most C{high} (four or more
    past C{low}) and after C{low}: after a line feed in the second half;
    else before the first C{=} carriage return of the line whose C{=}
    begins an escape; else where no escape spans the cut; else, where
    C{=} crowd the end, after a whole number of C{==} from where their run
    begins (a run of C{=} begins an escape, and is read two at a time).
    """
    if high >= end:
        return end
    lineFeed = data.rfind(b"\n", low + (high - low) // 2, high)
    if lineFeed >= 0:
        return lineFeed + 1
    lineStart = max(low, data.rfind(b"\n", low, high) + 1)
    skip = _SKIP.search(data[lineStart:high]) if data.find(b"=\r", lineStart, high) >= 0 else None
    if skip is not None:
        return lineStart + skip.end() - 2
    for at in (high, high - 1, high - 2):
        if data[at - 1] != 0x3D and not (
            data[at - 2] == 0x3D and data[at - 1] in _HEX and data[at] in _HEX
        ):
            return at
    last = data.rfind(b"=", low, high)
    run = pieces.runStart(data, low, last + 1, b"=")
    return run + 2 * ((last + 1 - run) // 2)
