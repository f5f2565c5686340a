# -*- test-case-name: tests.imap.test_imap_list_extended -*-
"""
The LIST command family: RFC 3501 LIST, LIST-EXTENDED (RFC 5258) with the
CHILDREN attributes (RFC 3348), LIST-STATUS (RFC 5819) and the SPECIAL-USE
selection and return options (RFC 6154).

L{parseList} reads a command's arguments (as tokens of
L{tmail.imap.parse.Tokenizer}) into a L{ListRequest}; L{listNames} answers it
from the user's folders, subscriptions and special-use attributes.  Maildir++
parents that exist only as a prefix of other folders' names list as
C{\\Noselect} (RFC 3501 syntax) or C{\\NonExistent} (RFC 5258 syntax), always
with C{\\HasChildren}, as Dovecot lists them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from twisted.mail import imap4

from tmail.imap.account import canonicalName
from tmail.imap.mutf7 import decodePattern
from tmail.imap.wildcard import INBOX, MailboxPattern

#: STATUS items: RFC 3501's, C{DELETED} and C{DELETED-STORAGE} (RFC 9208),
#: C{APPENDLIMIT} (RFC 7889), C{SIZE} (RFC 8438) and C{MAILBOXID} (RFC 8474).
STATUS_ITEMS = (
    "MESSAGES",
    "RECENT",
    "UIDNEXT",
    "UIDVALIDITY",
    "UNSEEN",
    "DELETED",
    "HIGHESTMODSEQ",
    "DELETED-STORAGE",
    "APPENDLIMIT",
    "SIZE",
    "MAILBOXID",
)

_SELECTION = frozenset({b"SUBSCRIBED", b"REMOTE", b"RECURSIVEMATCH", b"SPECIAL-USE"})
_RETURN = frozenset({b"SUBSCRIBED", b"CHILDREN", b"SPECIAL-USE", b"STATUS"})


def _bad(text: str) -> imap4.IllegalClientResponse:
    return imap4.IllegalClientResponse(text)


def parseStatusItems(items: Any) -> list[str]:
    """STATUS item names (upper case, once each) from a parenthesised list."""
    if not isinstance(items, list) or not items:
        raise _bad("Invalid STATUS items")
    names: list[str] = []
    for item in items:
        if not isinstance(item, bytes) or item.upper().decode("ascii", "replace") not in (
            STATUS_ITEMS
        ):
            raise _bad("Invalid STATUS items")
        name = item.upper().decode("ascii")
        if name not in names:
            names.append(name)
    return names


@dataclass
class ListRequest:
    """
    What a LIST command asks for.

    @ivar extended: whether it used RFC 5258 syntax (options or several
        patterns).  Special-use attributes are sent in every LIST (RFC 6154
        section 2 allows it; clients that never ask rely on it), so
        C{returnSpecialUse} changes nothing.
    @ivar status: STATUS items to send after each selectable name, or C{None}.
    """

    reference: str
    patterns: list[str]
    extended: bool = False
    selectSubscribed: bool = False
    selectSpecialUse: bool = False
    recursiveMatch: bool = False
    returnSubscribed: bool = False
    returnSpecialUse: bool = False
    status: list[str] | None = None


def parseList(tokens: list[Any], decode: Callable[[bytes], str] = decodePattern) -> ListRequest:
    """
    Read C{LIST [(selection)] reference (pattern | (patterns)) [RETURN
    (options)]} (RFC 5258 section 6).  Unknown options are C{BAD}, as is
    RECURSIVEMATCH without a selection option it could refine.  Names are
    decoded with C{decode} (modified UTF-7, or UTF-8 under IMAP4rev2).
    """

    def _name(token: Any) -> str:
        if not isinstance(token, bytes):
            raise _bad("Invalid mailbox pattern")
        return decode(token)

    tokens = list(tokens)
    selection: list[Any] | None = None
    if tokens and isinstance(tokens[0], list):
        selection = tokens.pop(0)
    if len(tokens) < 2:
        raise _bad("Missing LIST arguments")
    reference = _name(tokens.pop(0))
    patternToken = tokens.pop(0)
    several = isinstance(patternToken, list)
    if several and not patternToken:
        raise _bad("Empty pattern list")
    patterns = [_name(p) for p in (patternToken if several else [patternToken])]
    returns: list[Any] | None = None
    if tokens:
        keyword = tokens.pop(0)
        if not isinstance(keyword, bytes) or keyword.upper() != b"RETURN" or not tokens:
            raise _bad("Expected RETURN options")
        returns = tokens.pop(0)
        if not isinstance(returns, list) or tokens:
            raise _bad("Invalid RETURN options")
    request = ListRequest(
        reference, patterns, extended=selection is not None or several or returns is not None
    )
    chosen: set[bytes] = set()
    for option in selection or []:
        if not isinstance(option, bytes) or option.upper() not in _SELECTION:
            raise _bad("Unknown LIST selection option")
        chosen.add(option.upper())
    if b"RECURSIVEMATCH" in chosen and not chosen & {b"SUBSCRIBED", b"SPECIAL-USE"}:
        raise _bad("RECURSIVEMATCH needs another selection option")
    request.selectSubscribed = request.returnSubscribed = b"SUBSCRIBED" in chosen
    request.selectSpecialUse = request.returnSpecialUse = b"SPECIAL-USE" in chosen
    request.recursiveMatch = b"RECURSIVEMATCH" in chosen
    items = iter(returns or [])
    for option in items:
        word = option.upper() if isinstance(option, bytes) else None
        if word not in _RETURN:
            raise _bad("Unknown LIST return option")
        if word == b"SUBSCRIBED":
            request.returnSubscribed = True
        elif word == b"SPECIAL-USE":
            request.returnSpecialUse = True
        elif word == b"STATUS":
            if request.status is not None:
                raise _bad("STATUS given twice")
            request.status = parseStatusItems(next(items, None))
    return request


@dataclass
class Listed:
    """One LIST response: a name, its attributes and CHILDINFO criteria."""

    name: str
    attributes: list[str]
    childInfo: list[str] = field(default_factory=list)
    selectable: bool = True


def _ancestors(names: Iterable[str], delimiter: str) -> set[str]:
    """Every proper parent name of C{names}."""
    found: set[str] = set()
    for name in names:
        parts = name.split(delimiter)
        for depth in range(1, len(parts)):
            found.add(delimiter.join(parts[:depth]))
    return found


def listNames(
    request: ListRequest,
    folders: Iterable[str],
    subscribed: Iterable[str],
    specialUse: Mapping[str, frozenset[str]],
    delimiter: str,
) -> list[Listed]:
    """
    The responses to C{request} over a user's C{folders}, C{subscribed}
    names and C{specialUse} attributes (RFC 5258 section 3).  RECURSIVEMATCH
    reports (with CHILDINFO) the names whose descendants meet the selection
    criteria without matching a pattern themselves, as Dovecot does: with
    C{*} every descendant is listed on its own, so no CHILDINFO is sent.
    """
    existing = set(folders)
    subscribedSet = {canonicalName(name, delimiter) for name in subscribed}
    parents = _ancestors(existing, delimiter)
    selecting = request.selectSubscribed or request.selectSpecialUse

    def meets(name: str) -> bool:
        if request.selectSubscribed and name not in subscribedSet:
            return False
        return not request.selectSpecialUse or bool(name in existing and specialUse.get(name))

    matches = MailboxPattern([request.reference + p for p in request.patterns], delimiter).fullmatch

    childMeets: set[str] = set()
    if selecting:
        candidates = {name for name in existing | subscribedSet if meets(name)}
        if request.recursiveMatch:
            hidden = [name for name in candidates if not matches(name)]
            childMeets = _ancestors(hidden, delimiter)
        universe = candidates | childMeets
    else:
        universe = existing | parents
    result = []
    for name in sorted(universe, key=lambda n: (n != INBOX, n)):
        if not matches(name):
            continue
        exists = name in existing
        attributes = []
        if not exists:
            attributes.append("\\NonExistent" if request.extended else "\\Noselect")
        attributes.append("\\HasChildren" if name in parents else "\\HasNoChildren")
        if request.returnSubscribed and name in subscribedSet:
            attributes.append("\\Subscribed")
        if exists:
            attributes.extend(sorted(specialUse.get(name, ())))
        info = []
        if name in childMeets:
            if request.selectSubscribed:
                info.append("SUBSCRIBED")
            if request.selectSpecialUse:
                info.append("SPECIAL-USE")
        result.append(Listed(name, attributes, info, exists))
    return result
