"""
The C{tmail-special-use} file of a Maildir: the RFC 6154 special-use
attributes a user gave folders with C{CREATE name (USE (...))}.

Dovecot keeps such attributes in its index (and those of configured folders
in its configuration); tmail keeps the per-user ones in this small file in
the Maildir's root, replaced whole (under a dot-lock, written to a temporary
file and renamed).  Its presence also records that the configured special
folders were made for the user, so they are made once, at the first login.

Format: a C{tmail-special-use 1} header line, then one line per folder: its
name (UTF-8; names hold no control characters), a tab and its attributes
separated by spaces.
"""

from __future__ import annotations

from collections.abc import Mapping

from tmail.errors import InvalidFolderName
from tmail.store.naming import normalizeName

FILENAME = "tmail-special-use"
_HEADER = "tmail-special-use 1\n"


def parse(text: str) -> dict[str, frozenset[str]]:
    """The attributes by canonical folder name; lines that make no sense are skipped."""
    found: dict[str, frozenset[str]] = {}
    for line in text.split("\n")[1:]:
        name, tab, attributes = line.partition("\t")
        if not tab:
            continue
        try:
            canonical = normalizeName(name)
        except InvalidFolderName:
            continue
        values = frozenset(a for a in attributes.split(" ") if a.startswith("\\"))
        if values:
            found[canonical] = values
    return found


def serialize(attributes: Mapping[str, frozenset[str]]) -> bytes:
    """The file listing C{attributes} (folders without any are left out)."""
    lines = (
        f"{name}\t{' '.join(sorted(values))}\n"
        for name, values in sorted(attributes.items())
        if values
    )
    return (_HEADER + "".join(lines)).encode("utf-8", "surrogateescape")


def renamed(
    attributes: Mapping[str, frozenset[str]], old: str, new: str, delimiter: str
) -> dict[str, frozenset[str]]:
    """C{attributes} after folder C{old} and its sub-folders became C{new}."""
    prefix = old + delimiter
    moved = {
        new + name[len(old) :]: values
        for name, values in attributes.items()
        if name == old or name.startswith(prefix)
    }
    kept = {
        name: values
        for name, values in attributes.items()
        if name != old and not name.startswith(prefix)
    }
    return kept | moved
