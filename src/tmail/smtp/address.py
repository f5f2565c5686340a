# -*- test-case-name: tests.smtp.test_smtp_address -*-
"""
The paths of C{MAIL FROM} and C{RCPT TO} (RFC 5321 4.1.2), with the UTF-8
of SMTPUTF8 (RFC 6531 3.3) when the transaction asked for it.

Twisted's C{Address} reads ASCII only, so the grammar is followed here:
an optional source route (ignored, RFC 5321 4.1.1.3), a dot-string or
quoted-string local part of at most 64 octets, and a domain (LDH labels,
or U-labels under SMTPUTF8) or an address literal.  The result is the
address as the client spelt it, quotes of a local part that needs none
removed.
"""

from __future__ import annotations

import re

__all__ = ["BadPath", "parsePath"]

_ATEXT = rb"A-Za-z0-9!#$%&'*+/=?^_`{|}~\-"
_UTF8 = rb"\x80-\xff"
_LDH_LABEL = rb"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_ADDRESS_LITERAL = re.compile(
    rb"\[(?:IPv6:[0-9A-Fa-f:.]+|[0-9.]+|[A-Za-z0-9-]*[A-Za-z0-9]:[\x21-\x5a\x5e-\x7e]+)\]\Z"
)
_QUOTED = re.compile(rb'"((?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\[\x20-\x7e]|[\x80-\xff])*)"')
_ROUTE = re.compile(rb"@[^,:]+(?:,@[^,:]+)*:")
_MAX_LOCAL = 64
_MAX_DOMAIN = 255


class BadPath(ValueError):
    """The path is not an RFC 5321 path (or holds UTF-8 without SMTPUTF8)."""


def _patterns(utf8: bool) -> tuple[re.Pattern[bytes], re.Pattern[bytes]]:
    extra = _UTF8 if utf8 else b""
    atom = rb"[" + _ATEXT + extra + rb"]+"
    dotString = re.compile(atom + rb"(?:\." + atom + rb")*\Z")
    label = _LDH_LABEL + (
        rb"|[A-Za-z0-9\x80-\xff](?:[A-Za-z0-9\x80-\xff-]*[A-Za-z0-9\x80-\xff])?" if utf8 else b""
    )
    domain = re.compile(rb"(?:" + label + rb")(?:\.(?:" + label + rb"))*\Z")
    return dotString, domain


_ASCII = _patterns(False)
_UNICODE = _patterns(True)


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadPath("not UTF-8") from None


def parsePath(path: bytes, utf8: bool = False, allowEmpty: bool = True) -> str:
    """
    The address in C{<path>}: C{local@domain}, or C{""} for C{<>} when
    C{allowEmpty}.  A path without a domain is refused, except
    C{<postmaster>} (RFC 5321 4.1.1.3), returned as C{"postmaster"}.

    @raise BadPath: when C{path} does not follow the grammar.
    """
    if not (path.startswith(b"<") and path.endswith(b">")):
        raise BadPath("a path is enclosed in <>")
    inner = path[1:-1]
    if not inner:
        if allowEmpty:
            return ""
        raise BadPath("empty path")
    if not utf8 and any(byte > 0x7E for byte in inner):
        raise BadPath("UTF-8 needs SMTPUTF8")
    if any((byte < 0x21 and byte != 0x20) or byte == 0x7F for byte in inner):
        raise BadPath("control characters")
    route = _ROUTE.match(inner)
    if route is not None:
        inner = inner[route.end() :]
    dotString, domainPattern = _UNICODE if utf8 else _ASCII
    quoted = _QUOTED.match(inner)
    if quoted is not None:
        rest = inner[quoted.end() :]
        local = re.sub(rb"\\(.)", rb"\1", quoted.group(1))
        localText = local if dotString.match(local) else quoted.group(0)
    else:
        at = inner.rfind(b"@")
        if at < 0:
            if inner.lower() == b"postmaster":
                return "postmaster"
            raise BadPath("an address has a domain")
        local, rest = inner[:at], inner[at:]
        if not dotString.match(local):
            raise BadPath("bad local part")
        localText = local
    if not rest.startswith(b"@") or len(rest) < 2:
        raise BadPath("an address has a domain")
    domain = rest[1:]
    if not (domainPattern.match(domain) or _ADDRESS_LITERAL.match(domain)):
        raise BadPath("bad domain")
    if len(local) > _MAX_LOCAL or len(domain) > _MAX_DOMAIN:
        raise BadPath("address too long")
    return _decode(localText) + "@" + _decode(domain)
