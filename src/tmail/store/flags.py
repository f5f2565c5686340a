"""
Maildir file names and the C{:2,} info suffix.

A message file is C{<base>:2,<letters>}: the base never changes, the letters
(in ASCII order) carry flags.  Upper-case letters are system flags (D F P R S
T), lower-case letters a-z are keywords numbered in C{dovecot-keywords}.
"""

from __future__ import annotations

from collections.abc import Iterable

from tmail.interfaces import SYSTEM_FLAGS

INFO_SEPARATOR = ":"
FLAGS_PREFIX = "2,"

_LETTER_OF_FLAG = {
    "\\Draft": "D",
    "\\Flagged": "F",
    "\\Answered": "R",
    "\\Seen": "S",
    "\\Deleted": "T",
}
_FLAG_OF_LETTER = {letter: flag for flag, letter in _LETTER_OF_FLAG.items()}
_CANONICAL_SYSTEM = {flag.lower(): flag for flag in SYSTEM_FLAGS}

KEYWORD_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def splitFilename(filename: str) -> tuple[str, str]:
    """Split a message file name into its base and its info (after C{:})."""
    base, _, info = filename.partition(INFO_SEPARATOR)
    return base, info


def infoLetters(info: str) -> str:
    """The flag letters of an info part; empty for a missing or non-C{2,} info."""
    return info[len(FLAGS_PREFIX) :] if info.startswith(FLAGS_PREFIX) else ""


def filenameWith(base: str, letters: Iterable[str]) -> str:
    """C{<base>:2,<letters>} with the letters deduplicated in ASCII order."""
    return base + INFO_SEPARATOR + FLAGS_PREFIX + "".join(sorted(set(letters)))


def canonicalFlag(flag: str) -> str | None:
    """
    The stored spelling of C{flag}: system flags case-insensitively
    (C{\\seen} -> C{\\Seen}), keywords unchanged, C{None} for flags no store
    keeps (C{\\Recent}, unknown C{\\} flags).
    """
    if flag.startswith("\\"):
        return _CANONICAL_SYSTEM.get(flag.lower())
    return flag


def systemLetter(flag: str) -> str | None:
    """The info letter of a canonical system flag, or C{None} for a keyword."""
    return _LETTER_OF_FLAG.get(flag)


def systemFlags(letters: str) -> set[str]:
    """The IMAP system flags named by info C{letters}."""
    return {_FLAG_OF_LETTER[c] for c in letters if c in _FLAG_OF_LETTER}


def preservedLetters(letters: str) -> str:
    """
    The letters tmail does not manage but must keep when it renames a file:
    C{P} (passed) and any other letter that is neither an IMAP system flag
    nor a keyword.
    """
    return "".join(c for c in letters if c not in _FLAG_OF_LETTER and c not in KEYWORD_LETTERS)


def sizeFromBase(base: str) -> int | None:
    """
    The message size a base name records, as IMAP counts it (CRLF line
    ends): C{,W=<size>} when present, else C{,S=<size>}, else C{None}.
    Dovecot stores messages with LF line ends and names them
    C{,S=<file size>,W=<size with CRLF>}; tmail stores CRLF and writes
    only C{,S=}.
    """
    sizes: dict[str, int] = {}
    for field in base.split(",")[1:]:
        key, equals, value = field.partition("=")
        if equals and key in ("S", "W") and value.isdigit():
            sizes.setdefault(key, int(value))
    return sizes.get("W", sizes.get("S"))
