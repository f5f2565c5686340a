# -*- test-case-name: tests.imap.test_imap_wildcard -*-
"""
LIST and LSUB patterns (RFC 3501 6.3.8): C{*} matches anything, C{%}
anything but the hierarchy delimiter.

A pattern turned into a regular expression (C{.*} and C{[^/]*}) backtracks:
C{*%*%*%...Z} or C{*a*a*a*a*b} against a long name takes time exponential in
the number of wildcards, and the reactor stalls for everyone meanwhile.  Here
runs of wildcards are collapsed first (C{*%*%} is C{*}, C{%%} is C{%}), then
every pattern of a command becomes one nondeterministic automaton, run over
a name with all its states at once as the bits of a Python integer: the
cost is one pass over the name, each step a few operations on an integer of
as many bits as the patterns have characters, however hostile they are.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["INBOX", "MailboxPattern"]

INBOX = "INBOX"

_STAR, _PERCENT = "*", "%"


def _tokens(pattern: str, delimiter: str) -> list[str]:
    """
    The pattern as literal characters and single wildcards, C{INBOX} at its
    start in canonical case; a run of wildcards is C{*} if it holds one,
    else C{%}.
    """
    if pattern[:5].upper() == INBOX and pattern[5:6] in ("", delimiter, _STAR, _PERCENT):
        pattern = INBOX + pattern[5:]
    tokens: list[str] = []
    for char in pattern:
        if char in (_STAR, _PERCENT) and tokens and tokens[-1] in (_STAR, _PERCENT):
            if char == _STAR:
                tokens[-1] = _STAR
            continue
        tokens.append(char)
    return tokens


class MailboxPattern:
    """
    One or more LIST patterns, matched together: a name matches when any
    pattern matches all of it.

    Each pattern of C{n} tokens takes C{n + 1} bits: bit C{i} set means
    "the first C{i} tokens have matched the name read so far"; the last bit
    of a pattern means it has matched.
    """

    def __init__(self, patterns: Iterable[str], delimiter: str = "/") -> None:
        self.delimiter = delimiter
        self._literal: dict[str, int] = {}
        self._star = 0
        self._percent = 0
        self._start = 0
        self._accept = 0
        position = 0
        for pattern in patterns:
            tokens = _tokens(pattern, delimiter)
            self._start |= 1 << position
            for token in tokens:
                bit = 1 << position
                if token == _STAR:
                    self._star |= bit
                elif token == _PERCENT:
                    self._percent |= bit
                else:
                    self._literal[token] = self._literal.get(token, 0) | bit
                position += 1
            self._accept |= 1 << position
            position += 1
        self._wild = self._star | self._percent
        self._start = self._closure(self._start)

    def _closure(self, states: int) -> int:
        """
        Let each wildcard match nothing: from a state before C{*} or C{%},
        also the state after it.  Wildcards never follow one another once
        collapsed, so one step reaches all of them.
        """
        return states | ((states & self._wild) << 1)

    def fullmatch(self, name: str) -> bool:
        """Whether a pattern matches the whole of C{name}."""
        states = self._start
        literal = self._literal
        star, percent = self._star, self._percent
        delimiter = self.delimiter
        for char in name:
            if not states:
                return False
            following = (states & literal.get(char, 0)) << 1
            kept = states & star
            if char not in delimiter:
                kept |= states & percent
            states = self._closure(following | kept)
        return bool(states & self._accept)
