"""
METADATA entries (RFC 5464) of one folder, or of the whole store, in a
small file of their own: C{tmail-metadata} in the folder's directory (so a
folder's entries go where a RENAME takes the directory, and a DELETE takes
them away with it), C{tmail-metadata-server} in the Maildir's root for the
server's.

The file is replaced whole under a dot lock, written and fsynced first::

    tmail-metadata 1
    <entry name><tab><length of the value>
    <value: that many octets, any octets>
    ...

Entry names are kept as they were first set; they compare without regard
to case (RFC 5464 section 3.2).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tmail.store.dotlock import DotLock

FILENAME = "tmail-metadata"
SERVER_FILENAME = "tmail-metadata-server"
_MAGIC = b"tmail-metadata 1\n"


def parse(raw: bytes) -> dict[str, bytes]:
    """The entries of a metadata file; C{ValueError} when it is malformed."""
    if not raw.startswith(_MAGIC):
        raise ValueError("not a tmail-metadata file")
    entries: dict[str, bytes] = {}
    position = len(_MAGIC)
    while position < len(raw):
        lineEnd = raw.index(b"\n", position)
        name, tab, length = raw[position:lineEnd].rpartition(b"\t")
        if not tab or not length.isdigit():
            raise ValueError("bad tmail-metadata entry line")
        start = lineEnd + 1
        end = start + int(length)
        if raw[end : end + 1] != b"\n":
            raise ValueError("truncated tmail-metadata value")
        entries[name.decode("utf-8", "surrogateescape")] = raw[start:end]
        position = end + 1
    return entries


def serialize(entries: dict[str, bytes]) -> bytes:
    """A metadata file holding C{entries}."""
    out = [_MAGIC]
    for name, value in entries.items():
        out.append(b"%s\t%d\n%s\n" % (name.encode("utf-8", "surrogateescape"), len(value), value))
    return b"".join(out)


def read(path: Path) -> dict[str, bytes]:
    """The entries in C{path}: none when it is missing or unreadable."""
    try:
        return parse(path.read_bytes())
    except (FileNotFoundError, NotADirectoryError, ValueError):
        return {}


def update(
    path: Path,
    changes: dict[str, bytes | None],
    check: Callable[[dict[str, bytes]], None] | None = None,
) -> None:
    """
    Set the entries of C{changes} (C{None} removes one) in C{path}, as one
    atomic replacement.  C{check} sees the entries as they would be and may
    raise to refuse the change, which then leaves the file as it was.
    """
    with DotLock(path) as lock:
        current = read(path)
        updated = dict(current)
        for name, value in changes.items():
            key = name.casefold()
            known = next((old for old in updated if old.casefold() == key), None)
            if known is not None:
                del updated[known]
            if value is not None:
                updated[known if known is not None else name] = value
        if updated == current:
            return
        if check is not None:
            check(updated)
        lock.replace(serialize(updated))
