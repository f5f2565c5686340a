"""
Reading a Maildir folder's directories: plain functions over paths that
return values and touch no index, so they may run in a worker thread.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Set

from tmail.store.flags import splitFilename

__all__ = ["Found", "deliveryOrder", "directoryStamp", "listChanges", "listDirectory", "locate"]

#: Base name -> (subdirectory, file name) of message files found.
Found = dict[str, tuple[str, str]]


def deliveryOrder(base: str) -> tuple[int, int, int, str]:
    """
    A sort key putting base names in the order the messages were delivered,
    for UIDs given to files found without one: C{<seconds>.M<microseconds>...}
    (Dovecot's and tmail's names; the microseconds are not zero-padded, so
    their text order is not their time order) compare by number; other
    names come after, in text order.
    """
    secs, _, rest = base.partition(".")
    if not secs.isdigit():
        return (1, 0, 0, base)
    usec = 0
    if rest.startswith("M"):
        digits = rest[1:].split("P", 1)[0]
        if digits.isdigit():
            usec = int(digits)
    return (0, int(secs), usec, base)


def listDirectory(path: str | os.PathLike[str]) -> dict[str, str]:
    """Base name -> file name of the messages in the directory C{path}."""
    found = {}
    for filename in os.listdir(path):
        if filename.startswith("."):
            continue
        base = splitFilename(filename)[0]
        if base:
            found[base] = filename
    return found


def locate(folder: str | os.PathLike[str], base: str) -> tuple[str, str] | None:
    """
    The (subdirectory, file name) of message C{base} in the folder at
    C{folder}, looked for again after another process renamed it (or
    moved it to C{cur/}); C{None} when it is in neither directory.
    """
    for sub in ("cur", "new"):
        filename = listDirectory(os.path.join(folder, sub)).get(base)
        if filename is not None:
            return sub, filename
    return None


def listChanges(
    folder: str | os.PathLike[str], curNames: Set[str], newBases: Collection[str]
) -> tuple[Found, set[str]]:
    """
    Compare the directories of the folder at C{folder} with what an index
    knows: the file names it has in C{cur/} and the base names it has in
    C{new/}.

    @return: every file in C{new/} and every file name in C{cur/} the index
        does not know, and the base names of indexed files no longer
        listed.  C{new/} is read before C{cur/} so a file moved between
        them meanwhile is seen at least once.
    """
    found: Found = {
        base: ("new", name) for base, name in listDirectory(os.path.join(folder, "new")).items()
    }
    listed = set(os.listdir(os.path.join(folder, "cur")))
    for name in listed - curNames:
        base = splitFilename(name)[0]
        if base and not name.startswith("."):
            found[base] = ("cur", name)
    gone = {splitFilename(name)[0] for name in curNames - listed}
    gone.update(base for base in newBases if base not in found)
    gone -= found.keys()
    return found, gone


def directoryStamp(newDir: str, curDir: str) -> tuple[int, int]:
    """The modification times (ns) of C{new/} and C{cur/}: what a listing is valid for."""
    return (os.stat(newDir).st_mtime_ns, os.stat(curDir).st_mtime_ns)
