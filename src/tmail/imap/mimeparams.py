# -*- test-case-name: tests.imap.test_imap_mimetext -*-
"""
Header fields with parameters (C{Content-Type}, C{Content-Disposition}),
read in one pass, with RFC 2231 continuations and charsets.

The stdlib (C{Message.get_params}) cuts the field at each C{;} by copying
the rest of it, and recounts the quotes before each C{;} inside a quoted
string: quadratic, so a header of thousands of C{name*N*} continuations
(the Dovecot CVE-2026-27859 class) or of semicolons in quotes takes
seconds to minutes.  It also fails outright on a continuation number too
long for C{int()} and on C{name*} mixed with C{name*0}.

Comments (RFC 2045 5.1, RFC 822 CFWS) are not part of a type or a value:
C{text/plain (body) ; charset=utf-8 (Unicode)} is text/plain in UTF-8.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

from tmail.imap.charsets import codecFor

#: Parameters read from one field; real ones have a handful, and the rest
#: of a field with more is ignored.
MAX_PARAMETERS = 1000
#: Text up to a semicolon; a quoted string (with backslash escapes) may hold one.
_PIECE = re.compile(r'(?:[^";]|"(?:[^"\\]|\\[\s\S])*"?)*')
_CONTINUATION = re.compile(r"(.+?)\*(?:(\d{1,4})(\*)?)?\Z", re.DOTALL)

Parameters = list[tuple[str, str]]


def _pieces(value: str) -> list[str]:
    """C{value} cut at the semicolons outside quoted strings, the first L{MAX_PARAMETERS} + 1."""
    pieces: list[str] = []
    position = 0
    while len(pieces) <= MAX_PARAMETERS:
        match = _PIECE.match(value, position)
        assert match is not None
        pieces.append(match.group())
        position = match.end() + 1
        if position > len(value):
            break
    return pieces


def withoutComments(value: str) -> str:
    """C{value} without its comments (nested ones included), quoted strings kept whole."""
    if "(" not in value:
        return value
    out: list[str] = []
    depth = 0
    quoted = False
    escaped = False
    for char in value:
        if escaped:
            escaped = False
            if depth == 0:
                out.append(char)
            continue
        if char == "\\" and (quoted or depth):
            escaped = True
            if depth == 0:
                out.append(char)
        elif depth:
            if char == "(":
                depth += 1
            elif char == ")":
                depth -= 1
        elif char == '"':
            quoted = not quoted
            out.append(char)
        elif char == "(" and not quoted:
            depth = 1
            out.append(" ")
        else:
            out.append(char)
    return "".join(out)


def _unquote(value: str) -> str:
    """A quoted string's text; one never closed runs to the end of the value."""
    if value.startswith('"'):
        inner = value[1:-1] if len(value) >= 2 and value.endswith('"') else value[1:]
        return re.sub(r"\\(.)", r"\1", inner, flags=re.DOTALL)
    return value


def _joined(segments: list[tuple[int, str, bool]]) -> str:
    """One RFC 2231 value from its (number, text, encoded) segments."""
    segments.sort(key=lambda segment: segment[0])
    data = bytearray()
    charset = None
    for position, (_, text, encoded) in enumerate(segments):
        if encoded and position == 0:
            parts = text.split("'", 2)
            if len(parts) == 3:
                charset, text = parts[0], parts[2]
        data += unquote_to_bytes(text) if encoded else text.encode("utf-8", "surrogateescape")
    codec = codecFor(charset) if charset else None
    try:
        return bytes(data).decode(codec or "utf-8", "replace")
    except (LookupError, UnicodeError):
        return bytes(data).decode("latin-1")


def parseParameterized(value: str, asGiven: bool = False) -> tuple[str, Parameters]:
    """
    The value before the first C{;} (stripped) and the parameters after
    it, comments removed, quotes removed, RFC 2231 continuations and
    encodings collapsed, in the order they first appear.  Parameters
    without C{=} or without a name, and those after the first
    L{MAX_PARAMETERS}, are dropped.

    @param asGiven: keep the names' case and every repeated parameter, as
        BODYSTRUCTURE reports them; by default names are in lower case and
        each is there once, with its first value.
    """
    first, *rest = _pieces(withoutComments(value))
    plain: dict[str, str] = {}
    continued: dict[str, list[tuple[int, str, bool]]] = {}
    #: (name as given, lower-case name, the value of a repeated parameter)
    order: list[tuple[str, str, str | None]] = []
    for piece in rest:
        name, equals, text = piece.partition("=")
        given = name.strip()
        name = given.lower()
        if not equals or not name:
            continue
        text = _unquote(text.strip())
        if "*" not in name:
            if name not in plain and name not in continued:
                order.append((given, name, None))
                plain[name] = text
            elif asGiven and name not in continued:
                order.append((given, name, text))
            continue
        match = _CONTINUATION.match(name)
        if match is None:
            continue
        base, number, star = match.groups()
        if base in plain:
            continue
        if base not in continued:
            order.append((given[: len(base)], base, None))
            continued[base] = []
        encoded = number is None or star is not None
        continued[base].append((int(number or 0), text, encoded))
    pairs = []
    for given, key, repeated in order:
        if repeated is not None:
            text = repeated
        else:
            text = plain[key] if key in plain else _joined(continued[key])
        pairs.append((given if asGiven else key, text))
    return first.strip(), pairs
