"""
Dovecot's C{dovecot-keywords}: which keyword each info letter a-z names.

Lines are C{<index> <name>}, index 0 being C{a}.  Letters are allocated
once and never reassigned; a folder therefore holds at most 26 keywords on
disk.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from tmail.store.dotlock import DotLock
from tmail.store.flags import KEYWORD_LETTERS

FILENAME = "dovecot-keywords"


def checkKeyword(name: str) -> None:
    """Raise C{ValueError} for a keyword the file format cannot hold."""
    if not name or name.startswith("\\") or any(c.isspace() or ord(c) < 0x20 for c in name):
        raise ValueError(f"invalid keyword {name!r}")


class KeywordFile:
    """One folder's keyword letters, re-read only when the file changed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._nameOfLetter: dict[str, str] = {}
        self._letterOfName: dict[str, str] = {}
        self._stamp: tuple[int, int, int] | None = None

    def refresh(self) -> bool:
        """Re-read the file if it changed since the last look; return whether it did."""
        try:
            status = os.stat(self.path)
        except FileNotFoundError:
            changed = bool(self._nameOfLetter)
            self._load("")
            self._stamp = None
            return changed
        stamp = (status.st_ino, status.st_mtime_ns, status.st_size)
        if stamp == self._stamp:
            return False
        try:
            text = self.path.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return self.refresh()
        self._load(text)
        self._stamp = stamp
        return True

    def _load(self, text: str) -> None:
        self._nameOfLetter = {}
        self._letterOfName = {}
        for line in text.splitlines():
            index, _, name = line.partition(" ")
            if index.isdigit() and int(index) < len(KEYWORD_LETTERS) and name:
                letter = KEYWORD_LETTERS[int(index)]
                self._nameOfLetter[letter] = name
                self._letterOfName.setdefault(name, letter)

    def nameOf(self, letter: str) -> str | None:
        """The keyword info letter C{letter} stands for, if any."""
        return self._nameOfLetter.get(letter)

    def letterOf(self, name: str) -> str | None:
        """The info letter of keyword C{name}, if it has one."""
        return self._letterOfName.get(name)

    def allocate(self, names: Iterable[str]) -> None:
        """
        Give letters to those of C{names} that have none, as long as letters
        are free, and write the file.  Raises C{ValueError} for a name the
        file cannot hold.
        """
        wanted = [n for n in dict.fromkeys(names) if n not in self._letterOfName]
        for name in wanted:
            checkKeyword(name)
        if not wanted:
            return
        with DotLock(self.path) as lock:
            self.refresh()
            missing = [n for n in wanted if n not in self._letterOfName]
            free = [c for c in KEYWORD_LETTERS if c not in self._nameOfLetter]
            if not missing or not free:
                return
            self._stamp = None
            for name, letter in zip(missing, free, strict=False):
                self._nameOfLetter[letter] = name
                self._letterOfName[name] = letter
            lines = [
                f"{KEYWORD_LETTERS.index(letter)} {name}\n"
                for letter, name in sorted(self._nameOfLetter.items())
            ]
            status = lock.replace("".join(lines).encode("utf-8"))
            self._stamp = (status.st_ino, status.st_mtime_ns, status.st_size)
