"""
A Maildir folder's flags, as the info letters of its message files' names.

L{FlagChanges} is the part of L{tmail.store.maildir.folder.MaildirFolder}
that turns letters into flags and back: system flags have fixed letters,
keywords get theirs from C{dovecot-keywords} (in memory once the 26 are
taken).  A flag change renames the message's file, its new letters
logged first (after, on a full disk) so that a crash never leaves a
change without a mod-sequence.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

from twisted.internet.defer import Deferred

from tmail.errors import StoreError, StoreFull
from tmail.fsutil import fullDiskIsStoreFull
from tmail.interfaces import MessageInfo
from tmail.store import keywords as _keywords
from tmail.store import modseq as _modseq
from tmail.store.filework import Serial
from tmail.store.flags import (
    KEYWORD_LETTERS,
    filenameWith,
    infoLetters,
    preservedLetters,
    splitFilename,
    systemFlags,
    systemLetter,
)
from tmail.store.maildir.index import Entry, FolderIndex

T = TypeVar("T")

#: Distinct flag combinations a folder keeps one shared set for.
_FLAG_SETS = 4096


class FlagChanges:
    """Flags and keyword letters of a L{tmail.store.maildir.folder.MaildirFolder}."""

    if TYPE_CHECKING:
        name: str
        _serial: Serial
        _dirStamp: tuple[int, int] | None
        _unsettled: bool
        _index: FolderIndex
        _memoryKeywords: dict[str, frozenset[str]]
        _flagSets: dict[str, frozenset[str]]
        _log: _modseq.ModSeqLog
        _touched: set[int]
        _curDir: str
        _keywords: _keywords.KeywordFile

        def _run(self, function: Callable[..., T], *args: Any) -> Deferred[T]: ...
        def _notify(self) -> None: ...
        def _changed(self, uid: int) -> None: ...
        def _setLocation(self, entry: Entry, subdir: str, filename: str) -> None: ...
        def _pathOf(self, entry: Entry) -> str: ...
        async def _entry(self, uid: int) -> Entry: ...
        async def _relocate(self, uid: int, entry: Entry) -> None: ...
        def _stamp(self) -> tuple[int, int]: ...
        async def _maybeCompactLog(self) -> None: ...

    def _flagsOf(self, base: str, filename: str) -> frozenset[str]:
        """
        The flags a file name stands for.  One frozenset per distinct info
        part is shared by every message that has it: a large folder has
        a handful of flag combinations, not one set per message.
        """
        info = filename[len(base) + 1 :]
        flags = self._flagSets.get(info)
        if flags is None:
            letters = infoLetters(info)
            found = systemFlags(letters)
            for letter in letters:
                if letter in KEYWORD_LETTERS:
                    name = self._keywords.nameOf(letter)
                    if name is not None:
                        found.add(name)
            flags = frozenset(found)
            if len(self._flagSets) < _FLAG_SETS:
                self._flagSets[info] = flags
        extra = self._memoryKeywords.get(base)
        return flags | extra if extra else flags

    async def _lettersFor(self, base: str, flags: frozenset[str], current: str = "") -> str:
        """
        The info letters for C{flags}, allocating keyword letters as needed
        and keeping the letters of C{current} tmail does not manage.
        """
        letters, inMemory = await self._keywordLetters(flags, current)
        self._keepInMemory(base, inMemory)
        return letters

    async def _keywordLetters(
        self, flags: frozenset[str], current: str = ""
    ) -> tuple[str, frozenset[str]]:
        """
        The info letters for C{flags} (see L{_lettersFor}) once their
        keywords have letters, and the keywords that got none.
        """
        keywords = sorted(flag for flag in flags if not flag.startswith("\\"))
        if keywords:
            renamed = await self._run(self._allocateKeywords, keywords)
            if renamed and self._reinterpretFlags():
                self._notify()
        return self._lettersNow(flags, current)

    def _allocateKeywords(self, keywords: list[str]) -> bool:
        """
        File work: give C{keywords} letters in C{dovecot-keywords}; whether
        letters were renamed by another process meanwhile.
        """
        renamed = self._keywords.refresh()
        renamed |= any(self._keywords.letterOf(k) is None for k in keywords)
        self._keywords.allocate(keywords)
        return renamed

    def _lettersNow(self, flags: frozenset[str], current: str = "") -> tuple[str, frozenset[str]]:
        """The letters of L{_keywordLetters} for keywords already allocated."""
        letters = [letter for flag in flags if (letter := systemLetter(flag)) is not None]
        inMemory = set()
        for keyword in sorted(flag for flag in flags if not flag.startswith("\\")):
            letter = self._keywords.letterOf(keyword)
            if letter is None:
                inMemory.add(keyword)
            else:
                letters.append(letter)
        letters.append(preservedLetters(current))
        letters.extend(
            c for c in current if c in KEYWORD_LETTERS and self._keywords.nameOf(c) is None
        )
        return "".join(letters), frozenset(inMemory)

    def _keepInMemory(self, base: str, keywords: frozenset[str]) -> None:
        """Remember the keywords of C{base} that have no letter."""
        if keywords:
            self._memoryKeywords[base] = keywords
        else:
            self._memoryKeywords.pop(base, None)

    def _reinterpretFlags(self) -> bool:
        """Recompute keyword names after C{dovecot-keywords} changed."""
        self._flagSets.clear()
        changed = self._index.reflag(self._flagsOf)
        self._touched.update(changed)
        return bool(changed)

    @staticmethod
    def _lettersOf(filename: str) -> str:
        return infoLetters(splitFilename(filename)[1])

    async def _updateFlags(
        self, uid: int, change: Callable[[frozenset[str]], frozenset[str]]
    ) -> MessageInfo:
        """
        Rename the message's file to the flags C{change} makes of its
        current ones, taken again from the file found when another process
        renamed it first.
        """
        entry = await self._entry(uid)
        base = entry.key
        modseq = 0
        before = self._dirStamp
        current: bool | None = None
        for _attempt in range(3):
            wanted = change(entry.info.flags)
            letters = infoLetters(splitFilename(entry.filename)[1])
            target = filenameWith(base, await self._lettersFor(base, wanted, letters))
            if entry.subdir == "cur" and target == entry.filename:
                break
            targetLetters = self._lettersOf(target)
            renamed, current, logged, after = await self._run(
                self._renameForFlags,
                uid,
                self._pathOf(entry),
                f"{self._curDir}{os.sep}{target}",
                targetLetters if targetLetters != letters else None,
                before if current is None else None,
                bool(current),
            )
            modseq = logged or modseq
            if not renamed:
                await self._relocate(uid, entry)
                continue
            self._setLocation(entry, "cur", target)
            if after is not None and self._dirStamp == before:
                # Only our own rename moved the directory's mtime: the next
                # look need not list it (it does, a little later, in case
                # another process changed it within the same mtime tick).
                self._dirStamp = after
                self._unsettled = True
            break
        else:
            raise StoreError(f"message {uid} of {self.name!r} keeps being renamed")
        flagsNow = self._flagsOf(base, entry.filename)
        if flagsNow != entry.info.flags and not modseq:
            # Keywords past the 26 letters live in memory: no rename, still a change.
            modseq = await self._run(self._log.append, [(uid, self._lettersOf(entry.filename))])
        # Another process's change of the same message found meanwhile
        # (in _relocate) may have a higher mod-sequence than ours.
        info = replace(entry.info, flags=flagsNow, modseq=max(modseq, entry.info.modseq))
        if info != entry.info:
            entry.info = info
            self._index.snapshot = None
            self._changed(uid)
            self._notify()
            await self._maybeCompactLog()
        return info

    def _renameForFlags(
        self,
        uid: int,
        source: str,
        target: str,
        letters: str | None,
        before: tuple[int, int] | None,
        stampAfter: bool,
    ) -> tuple[bool, bool, int, tuple[int, int] | None]:
        """
        File work of a flag change, in one go: log the new C{letters} (when
        the letters change), then rename C{source} to C{target}.  Logged
        first: a crash before the rename leaves a higher mod-sequence for
        the same flags, never a silent change.  On a full disk the rename
        comes first (it needs no space on most file systems), logged after
        (in memory until the log takes it).

        With C{before}, the directories' stamp the index was listed at, it
        tells first whether they are still as listed; with that (or
        C{stampAfter}), their stamp after the rename, so that the index
        can mirror its own change without listing them again.

        @return: whether the file was there to rename, whether the
            directories were as listed, the mod-sequence logged (0 for
            none) and the stamp after the rename (or C{None}).
        """
        current = stampAfter
        if before is not None:
            try:
                current = self._stamp() == before
            except FileNotFoundError:
                current = False
        modseq = 0
        unlogged = False
        if letters is not None:
            try:
                modseq = self._log.append([(uid, letters)], strict=True)
            except StoreFull:
                unlogged = True
        try:
            _renameFile(source, target)
        except FileNotFoundError:
            return False, current, modseq, None
        if unlogged:
            assert letters is not None
            modseq = self._log.append([(uid, letters)])
        after = None
        if current:
            with contextlib.suppress(FileNotFoundError):
                after = self._stamp()
        return True, current, modseq, after


def _renameFile(source: str, target: str) -> None:
    with fullDiskIsStoreFull():
        os.rename(source, target)
