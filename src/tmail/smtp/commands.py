# -*- test-case-name: tests.smtp.test_smtp_commands -*-
"""
Replies, and the parsing of C{MAIL FROM} and C{RCPT TO}.

Twisted's regular expressions find the path; its L{Address} strips source
routes (C{<@a,@b:user@x>} is C{user@x}).  What Twisted leaves out is done
here: ESMTP parameters (SIZE, BODY) are parsed and unknown ones refused,
paths must be printable ASCII (there is no SMTPUTF8) and must have a domain.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from twisted.mail import smtp

_PRINTABLE = re.compile(rb"[\x20-\x7e]*\Z")
_KEYWORD = re.compile(rb"[A-Za-z0-9][A-Za-z0-9-]*\Z")
_VALUE = re.compile(rb"[\x21-\x3c\x3e-\x7e]+\Z")
_DIGITS = re.compile(rb"[0-9]{1,20}\Z")
_BODY_TYPES = frozenset({b"7BIT", b"8BITMIME"})


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


@dataclass(frozen=True, slots=True)
class MailFrom:
    """
    A parsed C{MAIL FROM}.

    @ivar sender: C{local@domain}, or C{""} for the null reverse path.
    @ivar size: the declared C{SIZE=}, if any.
    """

    sender: str
    size: int | None


def _parameters(options: bytes | None) -> dict[bytes, bytes | None]:
    found: dict[bytes, bytes | None] = {}
    for item in (options or b"").split():
        keyword, equals, value = item.partition(b"=")
        if not _KEYWORD.match(keyword) or (equals and not _VALUE.match(value)):
            raise CommandError(501, "5.5.4", "Syntax error in parameters")
        found[keyword.upper()] = value if equals else None
    return found


def _address(path: bytes, status: str) -> str:
    try:
        address = smtp.Address(path, b"")
    except smtp.AddressError:
        raise CommandError(501, status, "Bad address syntax") from None
    if address.local and not address.domain:
        raise CommandError(501, status, "Address must include a domain")
    return bytes(address).decode("ascii")


def _match(pattern: re.Pattern[bytes], rest: bytes, usage: str) -> re.Match[bytes]:
    if not _PRINTABLE.match(rest):
        raise CommandError(501, "5.5.4", "Only printable ASCII is allowed in addresses")
    found = pattern.match(rest)
    if found is None:
        raise CommandError(501, "5.5.4", f"Syntax: {usage}")
    return found


def parseMailFrom(rest: bytes) -> MailFrom:
    """Parse the argument of C{MAIL}; raise L{CommandError} when it is wrong."""
    found = _match(smtp.SMTP.mail_re, rest, "MAIL FROM:<address> [SIZE=n] [BODY=8BITMIME]")
    parameters = _parameters(found.group("opts"))
    size = None
    for keyword, value in parameters.items():
        if keyword == b"SIZE":
            if value is None or not _DIGITS.match(value):
                raise CommandError(501, "5.5.4", "Bad SIZE parameter")
            size = int(value)
        elif keyword == b"BODY":
            if value is None or value.upper() not in _BODY_TYPES:
                raise CommandError(501, "5.5.4", "Bad BODY parameter")
        elif keyword != b"AUTH":
            raise CommandError(555, "5.5.4", "Unsupported MAIL parameter")
    return MailFrom(_address(found.group("path"), "5.1.7"), size)


def parseRcptTo(rest: bytes) -> str:
    """Parse the argument of C{RCPT}; raise L{CommandError} when it is wrong."""
    found = _match(smtp.SMTP.rcpt_re, rest, "RCPT TO:<address>")
    if _parameters(found.group("opts")):
        raise CommandError(555, "5.5.4", "Unsupported RCPT parameter")
    address = _address(found.group("path"), "5.1.3")
    if not address:
        raise CommandError(501, "5.1.3", "Bad recipient address syntax")
    return address
