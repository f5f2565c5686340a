"""
What a server may send: the reply grammar of SMTP/LMTP, IMAP and POP3, and
what no reply text may carry (a Python repr, a traceback, an exception class
name, a filesystem path).  Each checker returns the problems it found, as
readable strings, so a fuzzing failure says what was wrong with which line.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field

# Status texts only: data responses (FETCH, LIST, message lines) echo what
# clients stored and may say anything.
_REPR = re.compile(rb"""(?:^|[\s(\[:=,])b['"]|bytearray\(|object at 0x|<(?:tmail|twisted)\.""")
_TRACEBACK = re.compile(rb'Traceback|File "|line \d+, in ')
_PATH = re.compile(
    rb"(?:^|[\s\[(\"'=])/(?:tmp|dev/shm|home|root|usr|var|work|proc)/|site-packages|\w\.py\b"
)
_CAMEL = re.compile(r"[A-Z][a-z0-9]+(?:[A-Z][a-z0-9]*)+\Z")
_MODULES = ("builtins", "tmail", "twisted", "email", "zlib", "binascii", "zope", "OpenSSL", "ssl")


def _exceptionNames() -> set[str]:
    names: set[str] = set()
    seen: set[type] = set()
    pending: list[type] = [BaseException]
    while pending:
        cls = pending.pop()
        if cls in seen:
            continue
        seen.add(cls)
        pending.extend(cls.__subclasses__())
        if cls.__module__.split(".")[0] in _MODULES and _CAMEL.match(cls.__name__):
            names.add(cls.__name__)
    return names


_names: tuple[int, re.Pattern[bytes]] | None = None


def _exceptionPattern() -> re.Pattern[bytes]:
    """Every exception class name loaded so far, as whole words."""
    global _names
    loaded = len(sys.modules)
    if _names is None or _names[0] != loaded:
        words = sorted(_exceptionNames(), key=len, reverse=True)
        pattern = re.compile(rb"\b(?:" + b"|".join(re.escape(w.encode()) for w in words) + rb")\b")
        _names = (loaded, pattern)
    return _names[1]


def leaks(text: bytes, extraPaths: Iterable[bytes] = ()) -> list[str]:
    """What in a reply text gives away the server's internals."""
    found = []
    if _REPR.search(text):
        found.append("a Python repr")
    if _TRACEBACK.search(text):
        found.append("a traceback")
    if _PATH.search(text) or any(p and p in text for p in extraPaths):
        found.append("a filesystem path")
    name = _exceptionPattern().search(text)
    if name is not None:
        found.append(f"an exception class name ({name.group().decode()})")
    return found


@dataclass
class Transcript:
    """The problems found in one server's output, and what it closed with."""

    problems: list[str] = field(default_factory=list)
    #: The last status line, if any: how the session ended.
    last: bytes = b""

    def add(self, line: bytes, problem: str) -> None:
        self.problems.append(f"{problem}: {line[:200]!r}")


# SMTP and LMTP

_SMTP_LINE = re.compile(rb"([2-5][0-9][0-9])([ -])(.*)\Z", re.DOTALL)
_ENHANCED = re.compile(rb"([245])\.[0-9]{1,3}\.[0-9]{1,3}(?: |\Z)")


def checkSMTP(output: bytes, hostname: bytes, extraPaths: Iterable[bytes] = ()) -> Transcript:
    """
    Every line a reply line (RFC 5321 4.2), with the same code throughout a
    multi-line reply, and (as ENHANCEDSTATUSCODES promises, RFC 2034) an
    enhanced status code of the same class, except in the greeting, the
    HELO/EHLO/LHLO replies and 3xx replies.  A C{521} cutting a C{220-}
    greeting short is the MX's refusal of a client that talked first.
    """
    t = Transcript()
    paths = tuple(extraPaths)
    lines = output.split(b"\r\n")
    if lines[-1]:
        t.add(lines[-1], "output ends inside a line")
    group: list[tuple[bytes, bytes]] = []
    first = True
    goodbye: bytes | None = None
    for line in lines[:-1]:
        if goodbye is not None:
            t.add(line, f"reply after the goodbye {goodbye[:40]!r}")
            goodbye = None
        match = _SMTP_LINE.match(line)
        if match is None:
            t.add(line, "not an SMTP reply line")
            group = []
            continue
        code, separator, text = match.groups()
        if first and group and code == b"521":
            # Postfix's postscreen drop: an early talker cuts the greeting short.
            group = []
        if group and group[0][0] != code:
            t.add(line, "code changes inside a multi-line reply")
        group.append((code, text))
        if separator == b"-":
            continue
        exempt = (
            first or code[:1] == b"3" or (code == b"250" and group[0][1].split(b" ")[0] == hostname)
        )
        first = False
        for code_, text_ in group:
            if b"\r" in text_ or b"\n" in text_:
                t.add(line, "bare CR or LF in a reply")
            for leak in leaks(text_, paths):
                t.add(text_, f"reply text carries {leak}")
            if exempt:
                continue
            enhanced = _ENHANCED.match(text_)
            if enhanced is None:
                t.add(code_ + b" " + text_, "reply without an enhanced status code")
            elif enhanced.group(1) != code_[:1]:
                t.add(code_ + b" " + text_, "enhanced status code of another class")
        t.last = line
        group = []
        if code in (b"221", b"421", b"521"):
            goodbye = line
    if group:
        t.add(group[-1][1], "multi-line reply never ended")
    return t


# IMAP

_IMAP_LITERAL = re.compile(rb"~?\{([0-9]+)\}\Z")
_IMAP_TAGGED = re.compile(rb'([^\x00-\x20\x7f-\xff(){%*"\\+]+) (OK|NO|BAD)(?: (.*))?\Z', re.DOTALL)
_IMAP_UNTAGGED_STATUS = re.compile(rb"\* (OK|NO|BAD|BYE|PREAUTH)(?: (.*))?\Z", re.DOTALL)
_IMAP_CODE = re.compile(rb"\[[^\]]*\] ?")


def imapResponses(output: bytes) -> tuple[list[bytes], bytes]:
    """
    The response lines of IMAP output, each with its literals' octets left
    out (C{{n}} stays), and whatever trails the last CRLF.
    """
    found = []
    rest = output
    while True:
        end = rest.find(b"\r\n")
        if end < 0:
            return found, rest
        line, rest = rest[:end], rest[end + 2 :]
        while (literal := _IMAP_LITERAL.search(line)) is not None:
            size = int(literal.group(1))
            if len(rest) < size:
                found.append(line)
                return found, rest
            tail = rest[size:]
            end = tail.find(b"\r\n")
            if end < 0:
                found.append(line)
                return found, tail
            line, rest = line + tail[:end], tail[end + 2 :]
        found.append(line)


def checkIMAP(output: bytes, extraPaths: Iterable[bytes] = ()) -> Transcript:
    """
    Every response untagged (C{*}), a continuation (C{+}) or a tagged
    status (RFC 3501 7, 9: C{response}); status texts give nothing away.
    """
    t = Transcript()
    paths = tuple(extraPaths)
    lines, trailing = imapResponses(output)
    if trailing:
        t.add(trailing, "output ends inside a response")
    for line in lines:
        if line == b"+" or line.startswith(b"+ "):
            continue
        text: bytes | None = None
        if line.startswith(b"* "):
            status = _IMAP_UNTAGGED_STATUS.match(line)
            if status is not None:
                text = status.group(2) or b""
                t.last = line
            elif len(line) < 3:
                t.add(line, "empty untagged response")
        else:
            tagged = _IMAP_TAGGED.match(line)
            if tagged is None:
                t.add(line, "neither untagged, continuation nor tagged status")
                continue
            text = tagged.group(3) or b""
            t.last = line
        if text is not None:
            if b"\r" in line or b"\n" in line:
                t.add(line, "bare CR or LF in a response")
            for leak in leaks(_IMAP_CODE.sub(b"", text, count=1), paths):
                t.add(line, f"status text carries {leak}")
    return t


# POP3

_POP3_STATUS = re.compile(rb"(\+OK|-ERR)(?: (.*))?\Z", re.DOTALL)


def checkPOP3(output: bytes, extraPaths: Iterable[bytes] = ()) -> Transcript:
    """
    Every line a status (C{+OK}/C{-ERR}), a SASL continuation (C{+ }), or
    part of a multi-line response that follows a C{+OK} and ends with a
    lone C{.} (RFC 1939 3), its other lines dot-stuffed.
    """
    t = Transcript()
    paths = tuple(extraPaths)
    lines = output.split(b"\r\n")
    if lines[-1]:
        t.add(lines[-1], "output ends inside a line")
    inBlock = False
    afterOK = False
    for line in lines[:-1]:
        status = _POP3_STATUS.match(line)
        if status is not None and not inBlock:
            afterOK = status.group(1) == b"+OK"
            t.last = line
            if b"\r" in line or b"\n" in line:
                t.add(line, "bare CR or LF in a status line")
            for leak in leaks(status.group(2) or b"", paths):
                t.add(line, f"status text carries {leak}")
            continue
        if line in (b"+", b"+ ") and not inBlock:
            afterOK = False
            continue
        if line == b".":
            if not (inBlock or afterOK):
                t.add(line, "end of a multi-line response that never began")
            inBlock = afterOK = False
            continue
        if not (inBlock or afterOK):
            t.add(line, "neither a status nor part of a multi-line response")
            continue
        if line.startswith(b".") and not line.startswith(b".."):
            t.add(line, "line of a multi-line response not dot-stuffed")
        inBlock = True
    if inBlock:
        t.add(b"", "multi-line response never ended")
    return t
