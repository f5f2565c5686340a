"""
Reading and tidying a Maildir folder's directories: plain functions over
paths that return values and touch no index, so they run in a worker
thread (L{tmail.store.filework}).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Collection, Iterable, Set
from pathlib import Path

from tmail.errors import NoSuchFolder
from tmail.fsutil import fullDiskIsStoreFull, isDiskFull
from tmail.store.flags import filenameWith, splitFilename
from tmail.store.maildir.pending import _NO_HARD_LINKS as NO_HARD_LINKS
from tmail.store.maildir.pending import _uniqueName as uniqueName

__all__ = [
    "DELETED_SUFFIX",
    "SUBDIRECTORIES",
    "Found",
    "deliveryOrder",
    "directoryStamp",
    "linkInto",
    "listChanges",
    "listDirectory",
    "locate",
    "makeSubdirectories",
    "moveNewToCur",
    "statFiles",
    "sweepTemporaries",
]

#: A folder's subdirectories.
SUBDIRECTORIES = ("cur", "new", "tmp")
#: The suffix of a deleted folder's directory, moved into C{tmp/} to be removed.
DELETED_SUFFIX = ".deleted"

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
    folder: str | os.PathLike[str], knownCur: Callable[[], Set[str]], newBases: Collection[str]
) -> tuple[Found, set[str]]:
    """
    Compare the directories of the folder at C{folder} with what an index
    knows: the file names it has in C{cur/} (made by C{knownCur}, here in
    the file work rather than in the reactor) and the base names it has in
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
    curNames = knownCur()
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


def makeSubdirectories(folder: Path, name: str) -> None:
    """
    Create whichever of C{cur/ new/ tmp/} the folder at C{folder} lacks;
    L{NoSuchFolder} (named C{name}) when the folder itself is gone.
    """
    try:
        with fullDiskIsStoreFull():
            for sub in SUBDIRECTORIES:
                (folder / sub).mkdir(mode=0o700, exist_ok=True)
    except FileNotFoundError:
        raise NoSuchFolder(name) from None


def sweepTemporaries(tmp: Path, maxAge: float) -> None:
    """
    Remove what a crash left in C{tmp/}: files older than C{maxAge} seconds
    and the directories of deleted folders.
    """
    cutoff = time.time() - maxAge
    with os.scandir(tmp) as entries:
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    if entry.name.endswith(DELETED_SUFFIX):
                        shutil.rmtree(entry.path, ignore_errors=True)
                elif entry.stat(follow_symlinks=False).st_mtime < cutoff:
                    os.unlink(entry.path)
            except FileNotFoundError:
                pass


def moveNewToCur(folder: Path, found: Found) -> set[str]:
    """
    Move the files C{found} in C{new/} into C{cur/} (adding C{:2,}), as
    Dovecot does, updating C{found}; return the base names moved (or
    left in C{new/} by a full disk).  A file that cannot be moved (no
    permission, a full disk) stays in C{new/} and is served from there; a
    later look moves it.
    """
    moved = set()
    for base, (subdir, filename) in list(found.items()):
        if subdir != "new":
            continue
        target = filename if splitFilename(filename)[1] else filenameWith(base, "")
        try:
            os.rename(folder / "new" / filename, folder / "cur" / target)
        except FileNotFoundError:
            located = locate(folder, base)
            if located is None:
                del found[base]
            else:
                found[base] = located
            continue
        except PermissionError:
            continue
        except OSError as e:
            if not isDiskFull(e):
                raise
        else:
            found[base] = ("cur", target)
        moved.add(base)
    return moved


#: A file found to index: base name, subdirectory, file name, size, mtime (ns).
Status = tuple[str, str, str, int, int]


def statFiles(folder: Path, wanted: Iterable[tuple[str, str, str]]) -> tuple[list[Status], bool]:
    """
    The size and mtime of each (base name, subdirectory, file name)
    C{wanted}, in order, looked for once more when another process
    renamed or removed it since the listing (a removed one is left out).

    @return: those found, and C{False} when one was still moving: the
        ones after it are left for the next look.
    """
    prefixes = {sub: f"{folder}{os.sep}{sub}{os.sep}" for sub in ("cur", "new")}
    relisted: dict[str, tuple[str, str]] | None = None
    result: list[Status] = []
    for base, subdir, filename in wanted:
        try:
            status = os.stat(prefixes[subdir] + filename)
        except FileNotFoundError:
            if relisted is None:
                relisted = {
                    b: (sub, name)
                    for sub in ("new", "cur")
                    for b, name in listDirectory(folder / sub).items()
                }
            if base not in relisted:
                continue
            subdir, filename = relisted[base]
            try:
                status = os.stat(prefixes[subdir] + filename)
            except FileNotFoundError:
                return result, False
        result.append((base, subdir, filename, status.st_size, status.st_mtime_ns))
    return result, True


def linkInto(source: str, folder: Path, name: str) -> Path | None:
    """
    A hard link to the message file C{source} in the C{tmp/} of the folder
    at C{folder} (named C{name}), or C{None} when the filesystem cannot
    link it there.  C{FileNotFoundError} when C{source} is gone (renamed
    by another process, say); L{NoSuchFolder} when the folder is.
    """
    tmp = folder / "tmp"
    for _attempt in range(2):
        target = tmp / uniqueName()
        try:
            with fullDiskIsStoreFull():
                os.link(source, target)
        except FileNotFoundError:
            if not os.path.exists(source):
                raise
            makeSubdirectories(folder, name)
            continue
        except OSError as e:
            if e.errno in NO_HARD_LINKS:
                return None
            raise
        return target
    raise NoSuchFolder(name)
