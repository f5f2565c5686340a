# -*- test-case-name: tests.smtp.test_smtp_commands -*-
"""
Replies, and the parsing of C{MAIL FROM} and C{RCPT TO}.

L{tmail.smtp.address} reads the path (source routes dropped, UTF-8 only
under SMTPUTF8, a domain required).
ESMTP parameters are parsed and unknown ones refused: SIZE, BODY (7BIT,
8BITMIME, BINARYMIME), SMTPUTF8, AUTH, and DSN's RET, ENVID (on MAIL) and
NOTIFY, ORCPT (on RCPT, RFC 3461).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tmail.delivery.envelope import MailFrom, RcptTo
from tmail.smtp.address import BadPath, parsePath

_PRINTABLE = re.compile(rb"[\x20-\x7e]*\Z")
#: C{FROM:<path> params} and C{TO:<path> params}; the path itself is read by
#: L{parsePath} (Twisted's patterns know no UTF-8 and no C{<>} for RCPT).
_MAIL = re.compile(rb"\s*FROM:\s*(?P<path><[^>]*>|[^<>\s]+)(?:\s+(?P<opts>.*?))?\s*\Z", re.I)
_RCPT = re.compile(rb"\s*TO:\s*(?P<path><[^>]*>|[^<>\s]+)(?:\s+(?P<opts>.*?))?\s*\Z", re.I)
_KEYWORD = re.compile(rb"[A-Za-z0-9][A-Za-z0-9-]*\Z")
_VALUE = re.compile(rb"[\x21-\x3c\x3e-\x7e]+\Z")
_DIGITS = re.compile(rb"[0-9]{1,20}\Z")
_BODY_TYPES = frozenset({b"7BIT", b"8BITMIME", b"BINARYMIME"})
#: RFC 3461 4: xtext, octets other than + and = spelt +XX.
_XTEXT = re.compile(rb"(?:[\x21-\x2a\x2c-\x3c\x3e-\x7e]|\+[0-9A-F]{2})*\Z")
_NOTIFY = frozenset({b"SUCCESS", b"FAILURE", b"DELAY"})
_MAX_ENVID = 100


@dataclass(frozen=True, slots=True)
class Reply:
    """
    One SMTP reply: a code, an RFC 3463 enhanced status code and text.

    @ivar status: the enhanced status code, C{""} only for replies that must
        not carry one (3xx).
    """

    code: int
    status: str
    text: str

    def line(self) -> bytes:
        """The reply's text after the code, as Twisted's C{sendCode} takes it."""
        text = f"{self.status} {self.text}" if self.status else self.text
        return text.encode("ascii", "replace")


class CommandError(Exception):
    """A command is refused; L{reply} says how."""

    def __init__(self, code: int, status: str, text: str) -> None:
        super().__init__(code, status, text)
        self.reply = Reply(code, status, text)


def _parameters(options: bytes | None) -> dict[bytes, bytes | None]:
    found: dict[bytes, bytes | None] = {}
    for item in (options or b"").split():
        keyword, equals, value = item.partition(b"=")
        if not _KEYWORD.match(keyword) or (equals and not _VALUE.match(value)):
            raise CommandError(501, "5.5.4", "Syntax error in parameters")
        found[keyword.upper()] = value if equals else None
    return found


def _address(path: bytes, status: str, utf8: bool, allowEmpty: bool) -> str:
    if not path.startswith(b"<"):
        path = b"<" + path + b">"
    try:
        return parsePath(path, utf8=utf8, allowEmpty=allowEmpty)
    except BadPath as e:
        if not utf8 and any(byte > 0x7E for byte in path):
            raise CommandError(
                553, "5.6.7", "Non-ASCII addresses need the SMTPUTF8 parameter"
            ) from None
        raise CommandError(501, status, f"Bad address syntax: {e}") from None


def _match(pattern: re.Pattern[bytes], rest: bytes, usage: str) -> re.Match[bytes]:
    found = pattern.match(rest)
    if found is None:
        raise CommandError(501, "5.5.4", f"Syntax: {usage}")
    options = found.group("opts") or b""
    if not _PRINTABLE.match(options):
        raise CommandError(501, "5.5.4", "Only printable ASCII is allowed in parameters")
    return found


def _xtext(value: bytes | None, name: str) -> str:
    if value is None or not _XTEXT.match(value):
        raise CommandError(501, "5.5.4", f"Bad {name} parameter")
    return value.decode("ascii")


def parseMailFrom(rest: bytes) -> MailFrom:
    """Parse the argument of C{MAIL}; raise L{CommandError} when it is wrong."""
    found = _match(_MAIL, rest, "MAIL FROM:<address> [SIZE=n] [BODY=8BITMIME]")
    parameters = _parameters(found.group("opts"))
    size = None
    body = "7BIT"
    utf8 = False
    ret = envid = None
    requireTLS = False
    for keyword, value in parameters.items():
        if keyword == b"SIZE":
            if value is None or not _DIGITS.match(value):
                raise CommandError(501, "5.5.4", "Bad SIZE parameter")
            size = int(value)
        elif keyword == b"BODY":
            if value is None or value.upper() not in _BODY_TYPES:
                raise CommandError(501, "5.5.4", "Bad BODY parameter")
            body = value.upper().decode("ascii")
        elif keyword == b"SMTPUTF8":
            if value is not None:
                raise CommandError(501, "5.5.4", "SMTPUTF8 takes no value")
            utf8 = True
        elif keyword == b"REQUIRETLS":
            if value is not None:
                raise CommandError(501, "5.5.4", "REQUIRETLS takes no value")
            requireTLS = True
        elif keyword == b"RET":
            if value is None or value.upper() not in (b"FULL", b"HDRS"):
                raise CommandError(501, "5.5.4", "Bad RET parameter")
            ret = value.upper().decode("ascii")
        elif keyword == b"ENVID":
            envid = _xtext(value, "ENVID")
            if len(envid) > _MAX_ENVID:
                raise CommandError(501, "5.5.4", "ENVID too long")
        elif keyword != b"AUTH":
            raise CommandError(555, "5.5.4", "Unsupported MAIL parameter")
    sender = _address(found.group("path"), "5.1.7", utf8, allowEmpty=True)
    return MailFrom(sender, size, body, utf8, ret, envid, requireTLS)


def parseRcptTo(rest: bytes, utf8: bool = False) -> RcptTo:
    """
    Parse the argument of C{RCPT} (UTF-8 allowed when the transaction is
    SMTPUTF8); raise L{CommandError} when it is wrong.
    """
    found = _match(_RCPT, rest, "RCPT TO:<address>")
    notify: tuple[str, ...] | None = None
    orcpt = None
    for keyword, value in _parameters(found.group("opts")).items():
        if keyword == b"NOTIFY":
            words = tuple((value or b"").upper().split(b","))
            if words != (b"NEVER",) and not (words and set(words) <= _NOTIFY):
                raise CommandError(501, "5.5.4", "Bad NOTIFY parameter")
            notify = tuple(word.decode("ascii") for word in words)
        elif keyword == b"ORCPT":
            kind, semicolon, encoded = (value or b"").partition(b";")
            if not semicolon or not kind or not _KEYWORD.match(kind):
                raise CommandError(501, "5.5.4", "Bad ORCPT parameter")
            orcpt = kind.decode("ascii") + ";" + _xtext(encoded, "ORCPT")
        else:
            raise CommandError(555, "5.5.4", "Unsupported RCPT parameter")
    address = _address(found.group("path"), "5.1.3", utf8, allowEmpty=False)
    return RcptTo(address, notify, orcpt)
