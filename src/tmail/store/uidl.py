"""
POP3 unique ids (UIDL) in the formats Dovecot's C{pop3_uidl_format} offers,
so a maildrop moved between Dovecot and tmail is not downloaded again.

A format is text with C{%} variables: C{%u} the message's IMAP UID, C{%v}
the folder's UIDVALIDITY, C{%f} the Maildir base name, the numbers
optionally with a zero-padded width and C{X} for hex (lower-case digits, as
Dovecot writes them: C{%08Xu}); C{%%} is a C{%}.  Dovecot's default,
C{%08Xu%08Xv}, is tmail's.  The word C{hash}
instead names tmail's own form: 32 hex digits hashed from the base name,
which even a lost uidlist (a new UIDVALIDITY) does not change.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable

from tmail.interfaces import MessageInfo

DEFAULT = "%08Xu%08Xv"
HASH = "hash"

_VARIABLE = re.compile(r"%(0?\d*)(X?)(.)|[^%]+|%$")

#: Makes a message's UIDL from the message and its folder's UIDVALIDITY.
UidlMaker = Callable[[MessageInfo, int], bytes]


def _hashed(info: MessageInfo, uidValidity: int) -> bytes:
    return hashlib.blake2b(info.key.encode("utf-8"), digest_size=16).hexdigest().encode("ascii")


def _literal(text: str) -> Callable[[MessageInfo, int], str]:
    return lambda info, uidValidity: text


def _variable(name: str, form: str) -> Callable[[MessageInfo, int], str]:
    def value(info: MessageInfo, uidValidity: int) -> str:
        if name == "u":
            return form.format(info.uid)
        if name == "v":
            return form.format(uidValidity)
        return info.key

    return value


def compileFormat(spec: str) -> UidlMaker:
    """The maker of UIDLs in format C{spec}; raises C{ValueError} for a bad format."""
    if spec == HASH:
        return _hashed
    if not spec:
        raise ValueError("the format is empty")
    parts: list[Callable[[MessageInfo, int], str]] = []
    unique = False
    position = 0
    for match in _VARIABLE.finditer(spec):
        if match.start() != position:
            break
        position = match.end()
        text = match.group(0)
        if not text.startswith("%"):
            if not all("!" <= c <= "~" for c in text):
                raise ValueError(f"{text!r}: a UIDL has only printable ASCII, no spaces")
            parts.append(_literal(text))
            continue
        width, hexa, name = match.group(1), match.group(2), match.group(3)
        if text == "%" or name not in "uvf%":
            raise ValueError(f"unknown variable {text!r} (known: %u, %v, %f, %%)")
        if name == "%":
            parts.append(_literal("%"))
            continue
        if name == "f" and (width or hexa):
            raise ValueError("%f takes no width or hex form")
        unique |= name in "uf"
        parts.append(_variable(name, "{:" + width + ("x" if hexa else "d") + "}"))
    if position != len(spec):
        raise ValueError(f"cannot read the format from {spec[position:]!r}")
    if not unique:
        raise ValueError("the format needs %u or %f, or messages would share an id")

    def make(info: MessageInfo, uidValidity: int) -> bytes:
        return "".join(part(info, uidValidity) for part in parts).encode("utf-8", "replace")

    return make
