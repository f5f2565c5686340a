"""
The saved index of a folder (C{tmail-index}): what the next process starts
from instead of stat'ing every message.

It is only a cache.  One that is missing, damaged (its checksum does not
match), of another UIDVALIDITY, byte order or version is ignored and the
folder is indexed from its directories.  It records the modification times
and sizes of C{cur/} and C{new/} it was current for: while they are the
same, no file was added, renamed or removed since, and the directories are
not listed at all; once they differ, the folder is listed once and only
what changed is looked at.  It is written to C{tmp/}, fsync'ed and renamed
into place, so a process killed while writing it leaves the previous one.

It also records each message's mod-sequence and where the folder's
mod-sequence log (L{tmail.store.modseq}) stood when it was saved (the
log file's identity, length, and the expunges it remembered): the next
process reads only what the log gained since, instead of all of it.  A log
replaced meanwhile (another process's compaction) or shorter than recorded
is read whole, as without a saved index.  Likewise the uidlist: its
identity, length and the lines that are not the index's messages, so that
an unchanged uidlist (or one with lines appended) is not read again.

Layout: one ASCII header line, then the columns as machine arrays (UIDs,
sizes, internal dates, mod-sequences), one byte per message for C{cur/} or
C{new/}, the UIDs and mod-sequences of the expunges the log remembered,
the base names and file name suffixes, NUL-separated, and the uidlist's
state as JSON.
"""

from __future__ import annotations

import array
import contextlib
import itertools
import json
import os
import sys
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from tmail.store.fsutil import fsyncDirectory
from tmail.store.modseq import LogState
from tmail.store.uidlist import UidListState

__all__ = [
    "UNKNOWN_STATE",
    "DirectoryState",
    "LogState",
    "SavedIndex",
    "directoryState",
    "encodeSavedIndex",
    "parseSavedIndex",
    "readSavedIndex",
    "writeSavedIndex",
]

#: The saved index of a folder: what the next process starts from.
_SAVED_INDEX = "tmail-index"
_SAVED_INDEX_MAGIC = "tmail-index 3"
#: Folders smaller than this are quick to index from scratch: no saved index.
_SAVED_INDEX_MIN = 1000

#: The modification times (ns) and sizes of C{new/} and C{cur/}.
DirectoryState = tuple[int, int, int, int]
#: Names encoded into one piece of a saved index being written.
_NAMES_PER_PIECE = 4096
#: A state no directory has: an index saved with it is always checked by a listing.
UNKNOWN_STATE: DirectoryState = (0, 0, 0, 0)


def directoryState(folder: str | os.PathLike[str]) -> DirectoryState:
    """The state of the folder's C{new/} and C{cur/} a saved index is current for."""
    new = os.stat(os.path.join(folder, "new"))
    cur = os.stat(os.path.join(folder, "cur"))
    return (new.st_mtime_ns, new.st_size, cur.st_mtime_ns, cur.st_size)


@dataclass(frozen=True, slots=True)
class SavedIndex:
    """
    The columns of a saved index, in UID order.

    @ivar state: the directories' state it was current for (L{UNKNOWN_STATE}
        when it was saved while they could still change unseen).
    @ivar inCur: one byte per message, 1 for C{cur/}, 0 for C{new/}.
    @ivar suffixes: what follows each base name in its file name (C{:2,S}).
    @ivar modseqs: each message's mod-sequence (0: not logged yet).
    @ivar log: where the mod-sequence log stood, C{None} when unknown.
    @ivar uidlist: where the uidlist stood, C{None} when unknown.
    """

    uidValidity: int
    state: DirectoryState
    uids: array.array[int]
    inCur: bytes
    bases: list[str]
    suffixes: list[str]
    sizes: array.array[int]
    dates: array.array[float]
    modseqs: array.array[int]
    log: LogState | None
    uidlist: UidListState | None


def encodeSavedIndex(
    uidValidity: int,
    state: DirectoryState,
    uids: Sequence[int],
    inCur: Sequence[bool] | bytes | bytearray,
    bases: Sequence[str],
    suffixes: Sequence[str],
    sizes: Sequence[int],
    dates: Sequence[float],
    modseqs: Sequence[int],
    log: LogState | None,
    uidlist: UidListState | None = None,
) -> list[bytes]:
    """
    The bytes of a saved index of these columns, in pieces of moderate
    size (no copy of the whole index is made at once).
    """
    expunged = log.expungedUids if log is not None else array.array("q")
    body = [
        array.array("q", uids).tobytes(),
        array.array("q", sizes).tobytes(),
        array.array("d", dates).tobytes(),
        array.array("q", modseqs).tobytes(),
        bytes(inCur),
        array.array("q", expunged).tobytes(),
        array.array("q", log.expungedModSeqs if log is not None else ()).tobytes(),
    ]
    names = itertools.chain(bases, suffixes)
    count = len(bases) + len(suffixes)
    textSize = 0
    for start in range(0, count, _NAMES_PER_PIECE):
        text = "\0".join(itertools.islice(names, _NAMES_PER_PIECE))
        if start + _NAMES_PER_PIECE < count:
            text += "\0"
        body.append(text.encode("utf-8", "surrogateescape"))
        textSize += len(body[-1])
    uidlistSize = 0
    if uidlist is not None:
        body.append(_encodeUidList(uidlist))
        uidlistSize = len(body[-1])
    checksum = 0
    for encoded in body:
        checksum = zlib.crc32(encoded, checksum)
    stamps = " ".join(str(value) for value in state)
    logFields = ""
    if log is not None:
        logFields = (
            f"D{log.inode[0]} I{log.inode[1]} O{log.offset} L{log.lines} H{log.highest} "
            f"F{log.floor} P{log.topUid} E{len(expunged)} "
        )
    header = (
        f"{_SAVED_INDEX_MAGIC} {sys.byteorder} V{uidValidity} C{len(uids)} T{textSize} "
        f"{logFields}U{uidlistSize} K{checksum} S{stamps}\n"
    ).encode("ascii")
    return [header, *body]


def parseSavedIndex(raw: bytes, uidValidity: int | None) -> SavedIndex | None:
    """
    The columns of a saved index, or C{None} when it belongs to another
    UIDVALIDITY (any, with C{None}), byte order or version.  Raises C{ValueError} (or
    C{IndexError}, C{KeyError}, C{UnicodeError}...) when it is damaged.
    """
    headerEnd = raw.index(b"\n", 0, 1000)
    header, _, stamps = raw[:headerEnd].decode("ascii").partition(" S")
    fields = header.split(" ")
    magic = f"{fields[0]} {fields[1]}"
    if magic != _SAVED_INDEX_MAGIC or fields[2] != sys.byteorder:
        return None
    values = {field[:1]: int(field[1:]) for field in fields[3:]}
    if uidValidity is not None and values["V"] != uidValidity:
        return None
    count, textSize = values["C"], values["T"]
    if count < 0 or textSize < 0:
        raise ValueError("negative size")
    state = tuple(int(value) for value in stamps.split(" "))
    if len(state) != len(UNKNOWN_STATE):
        raise ValueError("wrong directory state")
    if zlib.crc32(memoryview(raw)[headerEnd + 1 :]) != values["K"]:
        raise ValueError("wrong checksum")
    uids, offset = _column(array.array("q"), raw, headerEnd + 1, count)
    sizes, offset = _column(array.array("q"), raw, offset, count)
    dates, offset = _column(array.array("d"), raw, offset, count)
    modseqs, offset = _column(array.array("q"), raw, offset, count)
    inCur = raw[offset : offset + count]
    offset += count
    expunged = values.get("E", 0)
    if expunged < 0:
        raise ValueError("negative size")
    expungedUids, offset = _column(array.array("q"), raw, offset, expunged)
    expungedModSeqs, offset = _column(array.array("q"), raw, offset, expunged)
    log = None
    if "I" in values:
        log = LogState(
            (values["D"], values["I"]),
            values["O"],
            values["L"],
            values["H"],
            values["F"],
            values["P"],
            expungedUids,
            expungedModSeqs,
        )
    uidlistSize = values.get("U", 0)
    if len(inCur) != count or uidlistSize < 0 or len(raw) != offset + textSize + uidlistSize:
        raise ValueError("wrong length")
    uidlist = None
    if uidlistSize:
        uidlist = _decodeUidList(raw[offset + textSize :])
    text = raw[offset : offset + textSize]
    names = text.decode("utf-8", "surrogateescape").split("\0") if count else []
    if len(names) != 2 * count:
        raise ValueError("wrong number of names")
    # Strictly ascending and positive, checked in C loops.
    if count and (uids[0] <= 0 or len(set(uids)) != count or sorted(uids) != uids.tolist()):
        raise ValueError("UIDs out of order")
    if "" in names[:count]:
        raise ValueError("empty base name")
    return SavedIndex(
        values["V"],
        (state[0], state[1], state[2], state[3]),
        uids,
        inCur,
        names[:count],
        names[count:],
        sizes,
        dates,
        modseqs,
        log,
        uidlist,
    )


def _encodeUidList(state: UidListState) -> bytes:
    return json.dumps(
        {
            "stamp": state.stamp,
            "parsedTo": state.parsedTo,
            "lastLine": state.lastLine.decode("latin-1"),
            "V": state.uidValidity,
            "N": state.nextUid,
            "G": state.guid,
            "others": state.others,
            "fields": state.fields,
        }
    ).encode("ascii")


def _decodeUidList(raw: bytes) -> UidListState:
    """The uidlist state of a saved index; C{ValueError} (and others) when damaged."""
    value = json.loads(raw)
    stamp = tuple(int(n) for n in value["stamp"])
    if len(stamp) != 3:
        raise ValueError("wrong uidlist stamp")
    return UidListState(
        (stamp[0], stamp[1], stamp[2]),
        int(value["parsedTo"]),
        value["lastLine"].encode("latin-1"),
        int(value["V"]),
        int(value["N"]),
        str(value["G"]),
        [(str(base), int(uid)) for base, uid in value["others"]],
        {str(base): str(field) for base, field in value["fields"].items()},
    )


def readSavedIndex(folder: Path, uidValidity: int | None) -> SavedIndex | None:
    """The folder's saved index, or C{None} when it has no usable one."""
    try:
        raw = (folder / _SAVED_INDEX).read_bytes()
    except OSError:
        return None
    try:
        return parseSavedIndex(raw, uidValidity)
    except (ValueError, IndexError, KeyError, TypeError, AttributeError, UnicodeError):
        return None


def writeSavedIndex(folder: Path, temporary: Path, pieces: Sequence[bytes]) -> None:
    """
    Replace the folder's saved index with the concatenated C{pieces}:
    written to C{temporary} (in C{tmp/}), fsync'ed, renamed into place.
    Raises C{OSError}, with the temporary file removed.
    """
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            for piece in pieces:
                view = memoryview(piece)
                while view:
                    view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, folder / _SAVED_INDEX)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    with contextlib.suppress(OSError):
        fsyncDirectory(folder)


_Number = TypeVar("_Number", int, float)


def _column(
    column: array.array[_Number], raw: bytes, offset: int, count: int
) -> tuple[array.array[_Number], int]:
    """Fill C{column} with C{count} items of C{raw} from C{offset}; return it and where it ended."""
    end = offset + count * column.itemsize
    column.frombytes(raw[offset:end])
    if len(column) != count:
        raise ValueError("short column")
    return column, end
