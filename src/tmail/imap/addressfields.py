# -*- test-case-name: tests.imap.test_imap_addressfields -*-
"""
Address fields (From, To, Cc ...) as ENVELOPE and SEARCH read them: RFC 5322
address lists, groups and the obsolete syntax of its section 4.4 included.

L{tmail.imap.addresses} reads a field as C{email.utils.getaddresses} does:
groups flattened away, comments pasted onto display names, a route read as
an address of its own.  An ENVELOPE needs more (RFC 3501 7.4.2, RFC 9051
7.5.2): a group is a start-of-group entry (the group's name as the mailbox,
host NIL) and an end-of-group entry (all NIL) around its members; a route
(C{<@a,@b:user@host>}) is the at-domain-list of its address; comments are
not part of a name.  Only an address that is nothing but an addr-spec takes
its name from a comment after it (C{user@host (Name)}, the old convention).

The field is cut into tokens in one pass and elements are read from the
token list without recursion: linear in the field, whatever its nesting.
What is left out of an address is filled as Dovecot fills it
(C{MISSING_MAILBOX}, C{MISSING_DOMAIN}), so that no address is mistaken for
a group marker by its NIL host.
"""

from __future__ import annotations

from dataclasses import dataclass

from tmail.imap.charsets import decodeWords

#: What ENVELOPE puts where an address has no local part, or no domain.
MISSING_MAILBOX = "MISSING_MAILBOX"
MISSING_DOMAIN = "MISSING_DOMAIN"
#: Field text SEARCH reads address by address (the field as it is is
#: searched whole), and the addresses it writes out of it.
MAX_SEARCH_TEXT = 64 * 1024
MAX_SEARCH_ADDRESSES = 1000

_SPECIALS = "<>@,:;.)]\\"
_SPACE = " \t\r\n"
_ATOM_ENDS = _SPACE + _SPECIALS + '"(['
_WORDS = ("atom", "quoted")
_PHRASE = (".", "space", "comment")

#: A token: its kind (C{atom}, C{quoted}, C{literal}, C{comment}, C{space},
#: or the special character itself) and its text, quotes and escapes undone.
Token = tuple[str, str]


@dataclass(frozen=True)
class Address:
    """
    One entry of an address list as ENVELOPE lists it.

    @ivar kind: C{"address"}, C{"start"} (of a group, named by C{name}) or
        C{"end"} (of a group).
    @ivar name: the display name (RFC 2047 words left encoded), or the
        group's name.
    @ivar route: the at-domain-list (C{@a,@b}) of an obsolete route.
    @ivar mailbox: the local part, quotes and escapes undone; C{None} when
        the address has none.
    @ivar host: the domain; C{None} when the address has none.
    """

    kind: str
    name: str | None = None
    route: str | None = None
    mailbox: str | None = None
    host: str | None = None


def _delimited(text: str, start: int, close: str, nests: bool) -> tuple[str, int]:
    """The text after C{text[start]} up to its C{close}, escapes undone, and where it ends."""
    out: list[str] = []
    depth = 1
    position = start + 1
    size = len(text)
    while position < size:
        char = text[position]
        position += 1
        if char == "\\" and position < size:
            out.append(text[position])
            position += 1
        elif char == close:
            depth -= 1
            if depth == 0:
                break
            out.append(char)
        elif nests and char == "(":
            depth += 1
            out.append(char)
        else:
            out.append(char)
    return "".join(out), position


def tokens(text: str) -> list[Token]:
    """The tokens of an address field, in one pass."""
    found: list[Token] = []
    position = 0
    size = len(text)
    while position < size:
        char = text[position]
        if char in _SPACE:
            end = position + 1
            while end < size and text[end] in _SPACE:
                end += 1
            found.append(("space", " "))
        elif char == '"':
            value, end = _delimited(text, position, '"', False)
            found.append(("quoted", value))
        elif char == "(":
            value, end = _delimited(text, position, ")", True)
            found.append(("comment", value))
        elif char == "[":
            value, end = _delimited(text, position, "]", False)
            found.append(("literal", "[" + value + "]"))
        elif char in _SPECIALS:
            end = position + 1
            found.append((char, char))
        else:
            end = position + 1
            while end < size and text[end] not in _ATOM_ENDS:
                end += 1
            found.append(("atom", text[position:end]))
        position = end
    return found


def _phrase(run: list[Token]) -> str:
    """Words and dots joined, with one space where white space or comments were."""
    pieces: list[str] = []
    gap = False
    for kind, value in run:
        if kind in ("space", "comment"):
            gap = bool(pieces)
        elif kind in _WORDS or kind == ".":
            if gap:
                pieces.append(" ")
            pieces.append(value)
            gap = False
    return "".join(pieces)


def _dotted(run: list[Token], words: tuple[str, ...]) -> tuple[str, int]:
    """
    The words of C{run} joined by their dots (CFWS around a dot allowed,
    RFC 5322 4.4), from its start up to the first break: two words with
    no dot between them, or a special.  Returns the text and how many
    tokens it took.
    """
    pieces: list[str] = []
    wantWord = True
    taken = 0
    for index, (kind, value) in enumerate(run):
        if kind in ("space", "comment"):
            continue
        if kind in words and wantWord:
            pieces.append(value)
            wantWord = False
        elif kind == ".":
            pieces.append(".")
            wantWord = True
        else:
            return "".join(pieces), taken
        taken = index + 1
    return "".join(pieces), taken


def _lastRun(run: list[Token]) -> list[Token]:
    """The tokens of C{run} after the last place two words meet without a dot."""
    start = 0
    previous: str | None = None
    for index, (kind, _) in enumerate(run):
        if kind in ("space", "comment"):
            continue
        if kind in _WORDS and previous in _WORDS:
            start = index
        elif kind not in _WORDS and kind != ".":
            start = index + 1
        previous = kind
    return run[start:]


def _addrSpec(run: list[Token]) -> tuple[str | None, str | None]:
    """The local part and domain of an addr-spec (either C{None} when missing)."""
    at = next((i for i, (kind, _) in enumerate(run) if kind == "@"), None)
    if at is None:
        local, _ = _dotted(run, _WORDS)
        return local or None, None
    local, _ = _dotted(_lastRun(run[:at]), _WORDS)
    domain, _ = _dotted(run[at + 1 :], ("atom", "literal"))
    return local or None, domain or None


def _route(run: list[Token]) -> tuple[str | None, list[Token]]:
    """An obsolete route (C{@a,@b:}) at the start of C{run}, and the tokens after it."""
    significant = [i for i, (kind, _) in enumerate(run) if kind not in ("space", "comment")]
    if not significant or run[significant[0]][0] != "@":
        return None, run
    colon = next((i for i, (kind, _) in enumerate(run) if kind == ":"), None)
    if colon is None:
        return None, run
    domains: list[str] = []
    position = significant[0]
    while position < colon:
        if run[position][0] == "@":
            domain, taken = _dotted(run[position + 1 : colon], ("atom", "literal"))
            domains.append("@" + domain)
            position += 1 + max(taken, 0)
        else:
            position += 1
    return ",".join(domains), run[colon + 1 :]


def _element(run: list[Token]) -> Address | None:
    """The address in one element of the list, or C{None} for an empty one."""
    significant = [i for i, (kind, _) in enumerate(run) if kind not in ("space", "comment")]
    if not significant:
        return None
    angle = next((i for i, (kind, _) in enumerate(run) if kind == "<"), None)
    if angle is not None:
        close = next((i for i in range(angle + 1, len(run)) if run[i][0] == ">"), len(run))
        route, spec = _route(run[angle + 1 : close])
        local, domain = _addrSpec(spec)
        return Address("address", _phrase(run[:angle]) or None, route, local, domain)
    if not any(kind == "@" for kind, _ in run):
        local, taken = _dotted(run, ("atom",))
        if local and taken > significant[-1]:
            return Address("address", None, None, local, None)
        return Address("address", _phrase(run) or None)
    local, domain = _addrSpec(run)
    comments = [value for kind, value in run[significant[0] :] if kind == "comment"]
    name = comments[-1].strip() if comments else ""
    return Address("address", name or None, None, local, domain)


def addressList(field: str, most: int = 1000) -> list[Address]:
    """
    The entries of an address-list field as ENVELOPE lists them: addresses,
    and the start and end of each group around its members (a group
    inside a group, which RFC 5322 does not allow, is read as part of the
    outer one).  Empty elements are left out (RFC 5322 4.4); at most
    C{most} entries, and a group cut short is still ended.
    """
    found: list[Address] = []
    run: list[Token] = []
    #: Whether the run so far could be a group's name.
    phrase = True
    inGroup = False
    nested = 0
    inAngle = False

    def finish() -> None:
        address = _element(run)
        run.clear()
        if address is not None and len(found) < most:
            found.append(address)

    for token in tokens(field):
        kind = token[0]
        if inAngle:
            inAngle = kind != ">"
            run.append(token)
        elif kind == "<":
            inAngle = True
            phrase = False
            run.append(token)
        elif kind == ",":
            finish()
            phrase = True
        elif kind == ":" and phrase:
            if inGroup:
                nested += 1
            elif len(found) < most:
                found.append(Address("start", _phrase(run)))
                inGroup = True
            run.clear()
        elif kind == ";":
            finish()
            phrase = True
            if nested:
                nested -= 1
            elif inGroup:
                found.append(Address("end"))
                inGroup = False
        else:
            phrase = phrase and (kind in _WORDS or kind in _PHRASE)
            run.append(token)
        if len(found) >= most and not inGroup:
            return found
    finish()
    if inGroup:
        found.append(Address("end"))
    return found


def searchText(field: str) -> str:
    """
    An address field as SEARCH FROM/TO/CC/BCC match it besides the field
    as it is: each address written out as C{Name <local@domain>} (or
    C{local@domain}), the name's encoded words decoded, quotes, escapes,
    comments, folding and the blanks of the obsolete syntax gone; a group
    as C{name: ...;}.  Parts an address lacks are left out.  Only the
    first L{MAX_SEARCH_TEXT} characters of a field are read this way.
    """
    pieces: list[str] = []
    for entry in addressList(field[:MAX_SEARCH_TEXT], MAX_SEARCH_ADDRESSES):
        if entry.kind == "start":
            pieces.append(decodeWords(entry.name or "") + ": ")
            continue
        if entry.kind == "end":
            pieces.append("; ")
            continue
        spec = (entry.mailbox or "") + ("@" + entry.host if entry.host else "")
        if entry.route:
            spec = entry.route + ":" + spec
        if entry.name:
            pieces.append(f"{decodeWords(entry.name)} <{spec}>, ")
        else:
            pieces.append(f"<{spec}>, " if entry.route else spec + ", ")
    return "".join(pieces)
