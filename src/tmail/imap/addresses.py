# -*- test-case-name: tests.imap.test_imap_mimetext -*-
"""
Address lists (From, To, Cc ...) read as C{email.utils.getaddresses} reads
them, without recursion and in linear time.

The stdlib parser recurses for each nested comment and each C{:} (a group
inside a group), so C{From: ((((...} or C{a:a:a:...} raises
C{RecursionError} in ENVELOPE and SORT, and it builds a group's address
list by copying it once per address (quadratic).  Here nesting is counted,
groups are a stack of lists, and the results for ordinary fields are the
stdlib's.
"""

from __future__ import annotations

_SPECIALS = '()<>@,:;."[]'
_LWS = " \t"
_FWS = " \t\r\n"
_ATOM_ENDS = _SPECIALS + _FWS
_PHRASE_ENDS = _ATOM_ENDS.replace(".", "")

Address = tuple[str, str]


class _Reader:
    """A position in a field, and the comments seen since an address began."""

    def __init__(self, field: str) -> None:
        self.field = field
        self.pos = 0
        self.comments: list[str] = []

    def peek(self) -> str:
        return self.field[self.pos] if self.pos < len(self.field) else ""

    def skip(self) -> str:
        """Skip white space and comments (keeping the comments); the white space kept."""
        field = self.field
        kept: list[str] = []
        while self.pos < len(field):
            char = field[self.pos]
            if char in _FWS:
                if char in _LWS:
                    kept.append(char)
                self.pos += 1
            elif char == "(":
                self.comments.append(self.comment())
            else:
                break
        return "".join(kept)

    def delimited(self, ends: str) -> str:
        """The text after the opening character up to one of C{ends}, backslash escapes undone."""
        field = self.field
        out: list[str] = []
        escaped = False
        self.pos += 1
        while self.pos < len(field):
            char = field[self.pos]
            self.pos += 1
            if escaped:
                out.append(char)
                escaped = False
            elif char in ends:
                break
            elif char == "\\":
                escaped = True
            else:
                out.append(char)
        return "".join(out)

    def comment(self) -> str:
        """A comment, nested ones included without their parentheses."""
        field = self.field
        out: list[str] = []
        escaped = False
        depth = 1
        self.pos += 1
        while self.pos < len(field):
            char = field[self.pos]
            self.pos += 1
            if escaped:
                out.append(char)
                escaped = False
            elif char in ")\r":
                depth -= 1
                if depth == 0:
                    break
            elif char == "(":
                depth += 1
            elif char == "\\":
                escaped = True
            else:
                out.append(char)
        return "".join(out)

    def atom(self, ends: str = _ATOM_ENDS) -> str:
        field = self.field
        start = self.pos
        while self.pos < len(field) and field[self.pos] not in ends:
            self.pos += 1
        return field[start : self.pos]

    def phrase(self) -> list[str]:
        words: list[str] = []
        while self.pos < len(self.field):
            char = self.field[self.pos]
            if char in _FWS:
                self.pos += 1
            elif char == '"':
                words.append(self.delimited('"\r'))
            elif char == "(":
                self.comments.append(self.comment())
            elif char in _PHRASE_ENDS:
                break
            else:
                words.append(self.atom(_PHRASE_ENDS))
        return words

    def addrSpec(self) -> str:
        pieces: list[str] = []
        self.skip()
        while self.pos < len(self.field):
            keepSpace = True
            char = self.field[self.pos]
            if char == ".":
                if pieces and not pieces[-1].strip():
                    pieces.pop()
                pieces.append(".")
                self.pos += 1
                keepSpace = False
            elif char == '"':
                text = self.delimited('"\r')
                pieces.append('"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"')
            elif char in _ATOM_ENDS:
                if pieces and not pieces[-1].strip():
                    pieces.pop()
                break
            else:
                pieces.append(self.atom())
            space = self.skip()
            if keepSpace and space:
                pieces.append(space)
        if self.peek() != "@":
            return "".join(pieces)
        pieces.append("@")
        self.pos += 1
        self.skip()
        domain = self.domain()
        return "".join(pieces) + domain if domain else ""

    def domain(self) -> str:
        pieces: list[str] = []
        while self.pos < len(self.field):
            char = self.field[self.pos]
            if char in _LWS:
                self.pos += 1
            elif char == "(":
                self.comments.append(self.comment())
            elif char == "[":
                pieces.append("[" + self.delimited("]\r") + "]")
            elif char == ".":
                self.pos += 1
                pieces.append(".")
            elif char == "@":
                return ""
            elif char in _ATOM_ENDS:
                break
            else:
                pieces.append(self.atom())
        return "".join(pieces)

    def routeAddr(self) -> str:
        """C{<[route:]addr-spec>}; the route is skipped."""
        expectRoute = False
        self.pos += 1
        self.skip()
        spec = ""
        while self.pos < len(self.field):
            char = self.field[self.pos]
            if expectRoute:
                self.domain()
                expectRoute = False
            elif char == ">":
                self.pos += 1
                break
            elif char == "@":
                self.pos += 1
                expectRoute = True
            elif char == ":":
                self.pos += 1
            else:
                spec = self.addrSpec()
                self.pos += 1
                break
            self.skip()
        return spec

    def address(self) -> list[Address] | None:
        """
        One address (a list, empty when there is none); C{None} when a
        group begins, its members to follow.
        """
        self.comments = []
        self.skip()
        start = self.pos
        words = self.phrase()
        self.skip()
        found: list[Address] = []
        char = self.peek()
        if not char:
            if words:
                found = [(" ".join(self.comments), words[0])]
        elif char in ".@":
            self.pos = start
            spec = self.addrSpec()
            found = [(" ".join(self.comments), spec)]
        elif char == ":":
            self.pos += 1
            return None
        elif char == "<":
            spec = self.routeAddr()
            name = " ".join(words)
            if self.comments:
                name += " (" + " ".join(self.comments) + ")"
            found = [(name, spec)]
        elif words:
            found = [(" ".join(self.comments), words[0])]
        elif char in _SPECIALS:
            self.pos += 1
        self.endAddress()
        return found

    def endAddress(self) -> None:
        self.skip()
        if self.peek() == ",":
            self.pos += 1


def getaddresses(field: str) -> list[Address]:
    """The C{(display name, address)} pairs of an address-list field."""
    reader = _Reader(field)
    result: list[Address] = []
    groups: list[list[Address]] = []
    while True:
        if groups:
            closing = reader.pos >= len(field)
            if not closing:
                reader.skip()
                if reader.peek() == ";":
                    reader.pos += 1
                    closing = True
            if closing:
                members = groups.pop()
                reader.endAddress()
                if groups:
                    groups[-1].extend(members)
                else:
                    result.extend(members or [("", "")])
                continue
        elif reader.pos >= len(field):
            return result
        found = reader.address()
        if found is None:
            groups.append([])
        elif groups:
            groups[-1].extend(found)
        else:
            result.extend(found or [("", "")])
