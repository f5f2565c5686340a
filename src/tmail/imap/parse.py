# -*- test-case-name: tests.imap.test_imap_parse -*-
"""
Strict parsing of the pieces of IMAP commands that Twisted parses loosely.

Twisted accepts C{{-100}} as a literal size (C{int()} takes the sign), splits
quoted strings on C{"} with no escapes, and hands SEARCH criteria to
C{parseNestedParens}, which neither asks for literals nor bounds them.  The
functions here follow RFC 3501's grammar and raise
L{imap4.IllegalClientResponse} (answered with C{BAD}) for anything else.
"""

from __future__ import annotations

import calendar
import datetime
import re
from collections.abc import Callable
from typing import Any

from twisted.mail import imap4

from tmail.config.schema import IMAPSettings
from tmail.interfaces import SYSTEM_FLAGS

#: RFC 3501 9: a literal's size is a 32-bit unsigned number.
MAX_NUMBER = 2**32 - 1
#: The default depth of nested lists and search keys (C{imap.max_nesting}).
MAX_NESTING: int = IMAPSettings.max_nesting

_MARKER_AT_END = re.compile(rb"\{([^{}]*)\}\Z")
_MARKER_SIZE = re.compile(rb"(\d{1,10})(\+?)\Z")
_TOKEN = re.compile(rb'[^\x00-\x20\x7f(){"]+')
_MONTHS = {m.lower(): i for i, m in enumerate(calendar.month_abbr) if m}
_DATE = re.compile(rb"(\d{1,2})-([A-Za-z]{3})-(\d{4})\Z")
_DATE_TIME = re.compile(
    rb"([ \d]?\d)-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)\Z"
)
_SYSTEM = {flag.lower(): flag for flag in SYSTEM_FLAGS}


class BadLiteral(imap4.IllegalClientResponse):  # type: ignore[misc]
    """A literal marker whose size is not a 32-bit unsigned number."""


class LimitExceeded(imap4.IllegalClientResponse):  # type: ignore[misc]
    """
    An argument over one of the session's limits (nesting, ranges): the
    client reads C{BAD [LIMIT]} (RFC 5530) and this text.
    """


def literalMarker(line: bytes) -> tuple[int, bool] | None:
    """
    The literal announced at the end of C{line}: C{(size, synchronizing)},
    or C{None} when the line does not end with C{{...}}.

    @raise BadLiteral: for C{{-1}}, C{{abc}}, C{{99999999999999}} and the like.
    """
    match = _MARKER_AT_END.search(line)
    if match is None:
        return None
    size = _MARKER_SIZE.match(match.group(1))
    if size is None or int(size.group(1)) > MAX_NUMBER:
        raise BadLiteral("Invalid literal size")
    return int(size.group(1)), not size.group(2)


def wholeLiteral(token: bytes) -> tuple[int, bool] | None:
    """
    Like L{literalMarker}, for a token that must be nothing but a literal
    marker; C{None} when it is something else.
    """
    if _MARKER_AT_END.match(token) is None:
        return None
    return literalMarker(token)


def parseQuoted(line: bytes, start: int = 0) -> tuple[bytes, int]:
    """
    Read the quoted string starting at C{line[start]} (a C{"}), honouring
    the C{\\"} and C{\\\\} escapes; return it and the index after it.
    """
    out = bytearray()
    i = start + 1
    while i < len(line):
        char = line[i]
        if char == 0x5C:
            escaped = line[i + 1 : i + 2]
            if escaped not in (b'"', b"\\"):
                raise imap4.IllegalClientResponse("Invalid escape in quoted string")
            out += escaped
            i += 2
        elif char == 0x22:
            return bytes(out), i + 1
        elif char == 0:
            raise imap4.IllegalClientResponse("NUL in quoted string")
        else:
            out.append(char)
            i += 1
    raise imap4.IllegalClientResponse("Unterminated quoted string")


def splitAtom(line: bytes, allowed: bytes = b"") -> tuple[bytes, bytes]:
    """
    Split an unquoted astring (or list-mailbox, with C{allowed=b"%*"}) off
    the front of C{line}; return it and the rest after one space.
    """
    word, _, rest = line.partition(b" ")
    if not word:
        raise imap4.IllegalClientResponse("Missing argument")
    for char in word:
        if char < 0x21 or char == 0x7F or (char in b'(){"\\%*' and char not in allowed):
            raise imap4.IllegalClientResponse("Invalid character in argument")
    return word, rest


class Tokenizer:
    """
    Tokens of a parenthesised argument list (SEARCH criteria) that may span
    several lines joined by literals: feed a line, add the literal it
    announces, feed the next line, and so on.  Lists nest at most
    C{maxDepth} deep (C{imap.max_nesting}): deeper is L{LimitExceeded}.
    """

    def __init__(
        self,
        maxDepth: int = MAX_NESTING,
        literal8: bool = False,
        atom: Callable[[bytes], bytes] = bytes,
    ) -> None:
        self._stack: list[list[Any]] = [[]]
        self._maxDepth = maxDepth
        #: Whether C{~{n}} (RFC 3516's literal8) announces a literal too.
        self._literal8 = literal8
        #: What an unquoted token becomes (a type that tells it from a string).
        self._atom = atom

    def feed(self, line: bytes) -> tuple[int, bool] | None:
        """Tokenize one line; return the literal it announces at its end, if any."""
        i = 0
        while i < len(line):
            char = line[i : i + 1]
            if char == b" ":
                i += 1
            elif char == b"(":
                if len(self._stack) > self._maxDepth:
                    raise LimitExceeded("Parentheses nested too deeply")
                self._stack.append([])
                i += 1
            elif char == b")":
                if len(self._stack) == 1:
                    raise imap4.IllegalClientResponse("Unbalanced parentheses")
                done = self._stack.pop()
                self._stack[-1].append(done)
                i += 1
            elif char == b'"':
                value, i = parseQuoted(line, i)
                self._stack[-1].append(value)
            elif char == b"{" or (self._literal8 and line.startswith(b"~{", i)):
                start = i + (char == b"~")
                marker = literalMarker(line[start:])
                if marker is None or _MARKER_AT_END.match(line, start) is None:
                    raise imap4.IllegalClientResponse("Literal must end the line")
                return marker
            else:
                match = _TOKEN.match(line, i)
                if match is None:
                    raise imap4.IllegalClientResponse("Invalid character")
                self._stack[-1].append(self._atom(match.group()))
                i = match.end()
        return None

    def addLiteral(self, data: bytes) -> None:
        """Add the bytes of the literal the last line announced."""
        self._stack[-1].append(data)

    def result(self) -> list[Any]:
        """The tokens, nested lists for parentheses."""
        if len(self._stack) != 1:
            raise imap4.IllegalClientResponse("Unbalanced parentheses")
        return self._stack[0]


def parseDate(token: bytes) -> datetime.date:
    """A SEARCH date: C{1-Feb-1994}."""
    match = _DATE.match(token)
    if match is None or match.group(2).lower().decode() not in _MONTHS:
        raise ValueError("bad date")
    day, month, year = match.groups()
    return datetime.date(int(year), _MONTHS[month.lower().decode()], int(day))


def parseDateTime(token: bytes) -> float:
    """An APPEND date-time (C{17-Jul-1996 02:44:25 -0700}) as a POSIX time."""
    match = _DATE_TIME.match(token)
    if match is None or match.group(2).lower().decode() not in _MONTHS:
        raise imap4.IllegalClientResponse("Invalid date-time")
    day, month, year, hour, minute, second, sign, zh, zm = match.groups()
    try:
        moment = datetime.datetime(
            int(year),
            _MONTHS[month.lower().decode()],
            int(day),
            int(hour),
            int(minute),
            int(second),
            tzinfo=datetime.timezone(
                (1 if sign == b"+" else -1) * datetime.timedelta(hours=int(zh), minutes=int(zm))
            ),
        )
    except ValueError:
        raise imap4.IllegalClientResponse("Invalid date-time") from None
    return moment.timestamp()


def parseFlags(flags: list[bytes]) -> list[str]:
    """
    Flags from STORE or APPEND: system flags in their canonical spelling,
    keywords as given; C{\\Recent} and unknown system flags are refused.
    """
    parsed = []
    for flag in flags:
        if not isinstance(flag, bytes) or not flag:
            raise imap4.IllegalClientResponse("Invalid flag")
        text = flag.decode("ascii", "replace")
        if text.startswith("\\"):
            canonical = _SYSTEM.get(text.lower())
            if canonical is None:
                raise imap4.IllegalClientResponse("Invalid system flag")
            parsed.append(canonical)
        else:
            if any(c < 0x21 or c > 0x7E or c in b'(){%*"\\]' for c in flag):
                raise imap4.IllegalClientResponse("Invalid keyword")
            parsed.append(text)
    return parsed
