"""
Syntax checks and the canonical spelling of domains and addresses.

Domains are lower-case ASCII (internationalized names become their IDNA
C{xn--} form); addresses are C{local@domain}, lower-cased as a whole because
the directory compares them case-insensitively.  The local-part rules are
stricter than RFC 5321 where a looser rule would hurt: the passwd-file and
alias formats use C{:} and C{,} as separators, and a Maildir realm turns the
local part into a directory name, so C{/}, C{\\} and leading or doubled dots
are refused.
"""

from __future__ import annotations

import re

from tmail.errors import DirectoryError

__all__ = [
    "isValidHostname",
    "normalizeAddress",
    "normalizeAliasSource",
    "normalizeDomain",
]

_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)\Z")
_FORBIDDEN_LOCAL = frozenset(':,/\\"<>')
_MAX_LOCAL = 64
_MAX_ADDRESS = 254


def _toASCII(name: str) -> str | None:
    if name.isascii():
        return name.lower()
    try:
        return name.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return None


def isValidHostname(name: str) -> bool:
    """
    Whether C{name} is a syntactically valid host name (LDH labels, or an
    internationalized name that IDNA-encodes to one).  No trailing dot.
    """
    ascii = _toASCII(name)
    if ascii is None or not 0 < len(ascii) <= 253:
        return False
    return all(_LABEL.match(label) for label in ascii.split("."))


def normalizeDomain(domain: str) -> str:
    """
    The canonical (lower-case, ASCII) form of C{domain}.

    @raise DirectoryError: when C{domain} is not a valid host name.
    """
    ascii = _toASCII(domain)
    if ascii is None or not isValidHostname(ascii):
        raise DirectoryError(f"not a valid domain: {domain!r}")
    return ascii


def _validLocalPart(local: str) -> bool:
    if not 0 < len(local) <= _MAX_LOCAL:
        return False
    if local.startswith((".", "#")) or local.endswith(".") or ".." in local:
        return False
    return not any(
        c.isspace() or c in _FORBIDDEN_LOCAL or ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0
        for c in local
    )


def normalizeAddress(address: str) -> str:
    """
    The canonical form of C{address}: C{local@domain}, lower case.

    @raise DirectoryError: when C{address} does not have exactly one C{@},
        a usable local part and a valid domain.
    """
    local, at, domain = address.partition("@")
    if not at or "@" in domain or not _validLocalPart(local):
        raise DirectoryError(f"not a valid address: {address!r}")
    try:
        canonical = f"{local.lower()}@{normalizeDomain(domain)}"
    except DirectoryError:
        raise DirectoryError(f"not a valid address: {address!r}") from None
    if len(canonical) > _MAX_ADDRESS:
        raise DirectoryError(f"not a valid address (too long): {address!r}")
    return canonical


def normalizeAliasSource(source: str) -> str:
    """
    The canonical form of an alias source: an address, or C{@domain} for a
    catch-all.

    @raise DirectoryError: when C{source} is neither.
    """
    if source.startswith("@"):
        try:
            return "@" + normalizeDomain(source[1:])
        except DirectoryError:
            raise DirectoryError(f"not a valid alias source: {source!r}") from None
    return normalizeAddress(source)
