# -*- test-case-name: tests.imap.test_imap_metadata -*-
"""
METADATA and METADATA-SERVER (RFC 5464): GETMETADATA and SETMETADATA over
the store's entries (L{IMetadataStore}), per folder and, for the mailbox
name C{""}, for the server.

Entry names start with C{/private} or C{/shared}; both kinds are kept (a
mailbox has one user here).  The limits are C{imap.max_metadata_size} for
one value (C{NO [METADATA MAXSIZE n]}), and C{imap.max_metadata_entries}
and C{imap.max_metadata_total} (names and values) for a folder's or the
server's entries together (C{NO [METADATA TOOMANY]}); GETMETADATA's MAXSIZE
leaves out larger values and says so with C{[METADATA LONGENTRIES n]}.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from twisted.mail import imap4

from tmail.imap.parse import Tokenizer
from tmail.imap.session import no
from tmail.imap.structure import string

#: RFC 5464 section 3.2: no wildcards, no empty components, no control characters.
_ENTRY = re.compile(r"/(?:private|shared)(?:/[^/*%\x00-\x1f\x7f]+)*\Z", re.IGNORECASE)
_ATOM = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\\]]+\Z')
_DEPTHS = {b"0": 0, b"1": 1, b"INFINITY": -1}


class Atom(bytes):
    """An unquoted token (C{NIL} among them), told apart from a string."""


def metadataTokenizer() -> Tokenizer:
    """
    A tokenizer of GETMETADATA and SETMETADATA arguments: atoms (as
    L{Atom}), strings, string literals and literal8s, lists two deep at
    most, over several lines joined by literals.
    """
    return Tokenizer(maxDepth=2, literal8=True, atom=Atom)


def _bad(text: str) -> imap4.IllegalClientResponse:
    return imap4.IllegalClientResponse(text)


def entryName(token: Any) -> str:
    """An entry name: C{/private} or C{/shared}, then C{/}-separated components."""
    if not isinstance(token, bytes):
        raise _bad("Invalid entry name")
    try:
        name = token.decode("utf-8")
    except UnicodeDecodeError:
        raise _bad("Invalid entry name") from None
    if _ENTRY.match(name) is None:
        raise _bad("Entry names start with /private or /shared")
    return name


@dataclass
class GetRequest:
    """What a GETMETADATA asks for. C{depth} -1 is C{infinity}."""

    mailbox: bytes
    entries: list[str]
    maxSize: int | None = None
    depth: int = 0


def parseGet(tokens: list[Any]) -> GetRequest:
    """C{GETMETADATA [(options)] mailbox (entry | (entries))} (RFC 5464 4.2)."""
    tokens = list(tokens)
    options: list[Any] = tokens.pop(0) if tokens and isinstance(tokens[0], list) else []
    if not options and len(tokens) == 3 and isinstance(tokens[1], list):
        # Section 4.2.1's examples put the options after the mailbox name.
        options = tokens.pop(1)
    if len(tokens) != 2 or not isinstance(tokens[0], bytes):
        raise _bad("GETMETADATA takes a mailbox and entries")
    wanted = tokens[1] if isinstance(tokens[1], list) else [tokens[1]]
    if not wanted:
        raise _bad("GETMETADATA needs an entry")
    request = GetRequest(bytes(tokens[0]), [entryName(entry) for entry in wanted])
    items = iter(options)
    seen: set[bytes] = set()
    for option in items:
        word = option.upper() if isinstance(option, Atom) else None
        value = next(items, None)
        if word in seen or not isinstance(value, Atom):
            raise _bad("Invalid GETMETADATA options")
        if word == b"MAXSIZE" and value.isdigit() and len(value) <= 10:
            request.maxSize = int(value)
        elif word == b"DEPTH" and value.upper() in _DEPTHS:
            request.depth = _DEPTHS[value.upper()]
        else:
            raise _bad("Invalid GETMETADATA options")
        seen.add(word)
    return request


def parseSet(tokens: list[Any]) -> tuple[bytes, dict[str, bytes | None]]:
    """C{SETMETADATA mailbox (entry value ...)} (RFC 5464 4.3); C{NIL} removes an entry."""
    if len(tokens) != 2 or not isinstance(tokens[0], bytes) or not isinstance(tokens[1], list):
        raise _bad("SETMETADATA takes a mailbox and a list of entries and values")
    pairs = tokens[1]
    if not pairs or len(pairs) % 2:
        raise _bad("SETMETADATA takes entries with values")
    changes: dict[str, bytes | None] = {}
    for i in range(0, len(pairs), 2):
        name, value = entryName(pairs[i]), pairs[i + 1]
        if name.count("/") < 2:
            raise _bad("/private and /shared themselves hold no value")
        if isinstance(value, Atom):
            if value.upper() != b"NIL":
                raise _bad("Metadata values are strings or NIL")
            changes[name] = None
        elif isinstance(value, bytes):
            changes[name] = bytes(value)
        else:
            raise _bad("Metadata values are strings or NIL")
    return bytes(tokens[0]), changes


def _under(name: str, prefix: str, depth: int) -> bool:
    """Whether C{name} is C{prefix} or a descendant no deeper than C{depth} (-1: any)."""
    if name == prefix:
        return True
    if not name.startswith(prefix + "/"):
        return False
    return depth < 0 or name.count("/") - prefix.count("/") <= depth


@dataclass
class Found:
    """The entries a GETMETADATA returns, and the size of the largest it left out."""

    entries: list[tuple[str, bytes | None]] = field(default_factory=list)
    longest: int = 0


def select(stored: dict[str, bytes], request: GetRequest) -> Found:
    """The entries of C{stored} C{request} asks for, in the order asked; NIL for a missing one."""
    found = Found()
    folded = {name.casefold(): name for name in stored}
    sent: set[str] = set()
    for wanted in request.entries:
        key = wanted.casefold()
        matches = [folded[name] for name in sorted(folded) if _under(name, key, request.depth)]
        if not matches and request.depth == 0:
            found.entries.append((wanted, None))
        for name in matches:
            if name in sent:
                continue
            sent.add(name)
            value = stored[name]
            if request.maxSize is not None and len(value) > request.maxSize:
                found.longest = max(found.longest, len(value))
                continue
            found.entries.append((name, value))
    return found


def value(data: bytes | None) -> bytes:
    """A value as RFC 5464 4.4 sends it: NIL, a string, or a literal8 when it holds NUL."""
    if data is None:
        return b"NIL"
    if b"\x00" in data:
        return b"~{%d}\r\n%s" % (len(data), data)
    return string(data)


def _entry(name: str) -> bytes:
    """An entry name as an atom, as RFC 5464's examples send them, or else a string."""
    raw = name.encode("utf-8")
    if _ATOM.match(raw):
        return raw
    return string(raw)


def response(mailbox: bytes, entries: Iterable[tuple[str, bytes | None]]) -> bytes:
    """C{METADATA mailbox (entry value ...)}; C{mailbox} already encoded."""
    items = b" ".join(_entry(name) + b" " + value(data) for name, data in entries)
    return b"METADATA %s (%s)" % (mailbox, items)


def checkSizes(changes: dict[str, bytes | None], maxSize: int) -> None:
    """C{NO [METADATA MAXSIZE n]} for a value larger than C{maxSize}."""
    if any(data is not None and len(data) > maxSize for data in changes.values()):
        raise no(b"[METADATA MAXSIZE %d] Metadata value too long" % maxSize)


def limitCheck(maxEntries: int, maxTotal: int) -> Callable[[dict[str, bytes]], None]:
    """A check for L{IMetadataStore.updateMetadata}: C{NO [METADATA TOOMANY]} past the limits."""

    def check(entries: dict[str, bytes]) -> None:
        total = sum(
            len(name.encode("utf-8", "surrogateescape")) + len(v) for name, v in entries.items()
        )
        if len(entries) > maxEntries or total > maxTotal:
            raise no(b"[METADATA TOOMANY] Too many metadata entries")

    return check
