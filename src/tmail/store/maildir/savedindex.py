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
C{new/}, each message's file name suffix as a number into the table of
the folder's distinct suffixes, the UIDs and mod-sequences of the
expunges the log remembered, where each base name starts in the block of
names, then the base names (each followed by a NUL), the suffix table
(NUL-separated), and the uidlist's state as JSON.  The base names are not
made into strings when the index is read (L{PackedNames}): a restart
that finds the directories unchanged never makes them all.
"""

from __future__ import annotations

import array
import contextlib
import json
import os
import sys
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tmail.fsutil import fsyncDirectory
from tmail.store.modseq import LogState
from tmail.store.packednames import PackedNames, packNames
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
_SAVED_INDEX_MAGIC = "tmail-index 4"
#: Folders smaller than this are quick to index from scratch: no saved index.
_SAVED_INDEX_MIN = 1000

#: The modification times (ns) and sizes of C{new/} and C{cur/}.
DirectoryState = tuple[int, int, int, int]
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
    @ivar suffixIds: what follows each base name in its file name (C{:2,S}),
        as a position in C{suffixTable}.
    @ivar modseqs: each message's mod-sequence (0: not logged yet).
    @ivar log: where the mod-sequence log stood, C{None} when unknown.
    @ivar uidlist: where the uidlist stood, C{None} when unknown.
    """

    uidValidity: int
    state: DirectoryState
    uids: array.array[int]
    inCur: bytes
    bases: PackedNames
    suffixIds: array.array[int]
    suffixTable: list[str]
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
    suffixIds: Sequence[int],
    suffixTable: Sequence[str],
    sizes: Sequence[int],
    dates: Sequence[float],
    modseqs: Sequence[int],
    log: LogState | None,
    uidlist: UidListState | None = None,
) -> list[bytes | bytearray]:
    """
    The bytes of a saved index of these columns, in pieces (no copy of the
    whole index is made at once).  C{bases} already packed are written as
    they are.
    """
    expunged = log.expungedUids if log is not None else array.array("q")
    names = bases if isinstance(bases, PackedNames) else packNames(bases)
    table = "\0".join(suffixTable).encode("utf-8", "surrogateescape")
    if len(suffixTable) and table.count(b"\0") != len(suffixTable) - 1:
        raise ValueError("a suffix holds a NUL")
    body = [
        array.array("q", uids).tobytes(),
        array.array("q", sizes).tobytes(),
        array.array("d", dates).tobytes(),
        array.array("q", modseqs).tobytes(),
        bytes(inCur),
        array.array("I", suffixIds).tobytes(),
        array.array("q", expunged).tobytes(),
        array.array("q", log.expungedModSeqs if log is not None else ()).tobytes(),
        array.array("q", names.starts).tobytes(),
        names.block,
        table,
    ]
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
        f"{_SAVED_INDEX_MAGIC} {sys.byteorder} V{uidValidity} C{len(uids)} "
        f"T{len(names.block)} X{len(table)} N{len(suffixTable)} "
        f"{logFields}U{uidlistSize} K{checksum} S{stamps}\n"
    ).encode("ascii")
    return [header, *body]


def parseSavedIndex(raw: bytes, uidValidity: int | None) -> SavedIndex | None:
    """
    The columns of a saved index, or C{None} when it belongs to another
    UIDVALIDITY (any, with C{None}), byte order or version.  Raises C{ValueError} (or
    C{IndexError}, C{KeyError}, C{UnicodeError}...) when it is damaged.
    """

    def fill(buffer: memoryview, offset: int) -> None:
        piece = raw[offset : offset + len(buffer)]
        if len(piece) != len(buffer):
            raise ValueError("short saved index")
        buffer[:] = piece

    return _parse(fill, len(raw), uidValidity)


#: Fills a buffer from the saved index at an offset; C{ValueError} when short.
_Fill = Callable[[memoryview, int], None]


def _parse(fill: _Fill, size: int, uidValidity: int | None) -> SavedIndex | None:
    """
    L{parseSavedIndex} of an index of C{size} bytes read by C{fill}: each
    column is read straight into its array, and the base names into the
    block they stay in, with no copy of the whole file.
    """
    head = bytearray(min(size, 1000))
    fill(memoryview(head), 0)
    headerEnd = head.index(b"\n")
    header, _, stamps = head[:headerEnd].decode("ascii").partition(" S")
    fields = header.split(" ")
    magic = f"{fields[0]} {fields[1]}"
    if magic != _SAVED_INDEX_MAGIC or fields[2] != sys.byteorder:
        return None
    values = {field[:1]: int(field[1:]) for field in fields[3:]}
    if uidValidity is not None and values["V"] != uidValidity:
        return None
    count, textSize, tableSize, suffixCount = values["C"], values["T"], values["X"], values["N"]
    expunged, uidlistSize = values.get("E", 0), values.get("U", 0)
    if min(count, textSize, tableSize, suffixCount, expunged, uidlistSize) < 0:
        raise ValueError("negative size")
    state = tuple(int(value) for value in stamps.split(" "))
    if len(state) != len(UNKNOWN_STATE):
        raise ValueError("wrong directory state")
    offset = headerEnd + 1
    expected = offset + 8 * (4 * count + 2 * expunged + count + 1) + 5 * count
    if size != expected + textSize + tableSize + uidlistSize:
        raise ValueError("wrong length")
    checksum = 0

    def read(buffer: memoryview) -> None:
        nonlocal offset, checksum
        fill(buffer, offset)
        checksum = zlib.crc32(buffer, checksum)
        offset += len(buffer)

    def column(typecode: str, length: int) -> array.array[Any]:
        made = array.array(typecode, [0]) * length
        read(memoryview(made).cast("B"))
        return made

    uids, sizes = column("q", count), column("q", count)
    dates, modseqs = column("d", count), column("q", count)
    inCur = bytearray(count)
    read(memoryview(inCur))
    suffixIds = column("I", count)
    expungedUids, expungedModSeqs = column("q", expunged), column("q", expunged)
    starts = column("q", count + 1)
    block, table, uidlistText = bytearray(textSize), bytearray(tableSize), bytearray(uidlistSize)
    for buffer in (block, table, uidlistText):
        read(memoryview(buffer))
    if checksum != values["K"]:
        raise ValueError("wrong checksum")
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
    suffixTable = table.decode("utf-8", "surrogateescape").split("\0") if suffixCount else []
    uidlist = _decodeUidList(bytes(uidlistText)) if uidlistSize else None
    # What the checksum cannot vouch for (a writer's mistake), checked in
    # C loops that do not make a string per message.
    if len(suffixTable) != suffixCount or (count and max(suffixIds) >= suffixCount):
        raise ValueError("wrong suffix table")
    if starts[0] != 0 or starts[-1] != textSize or (count and block[-1:] != b"\0"):
        raise ValueError("wrong names")
    if count and (uids[0] <= 0 or uids[-1] >= 2**32 or uids[0] > uids[-1]):
        raise ValueError("UIDs out of range")
    return SavedIndex(
        values["V"],
        (state[0], state[1], state[2], state[3]),
        uids,
        bytes(inCur),
        PackedNames(block, starts),
        suffixIds,
        suffixTable,
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
        fd = os.open(folder / _SAVED_INDEX, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None

    def fill(buffer: memoryview, offset: int) -> None:
        while buffer:
            read = os.preadv(fd, [buffer], offset)
            if not read:
                raise ValueError("short saved index")
            buffer, offset = buffer[read:], offset + read

    try:
        return _parse(fill, os.fstat(fd).st_size, uidValidity)
    except (
        OSError,
        ValueError,
        IndexError,
        KeyError,
        TypeError,
        AttributeError,
        UnicodeError,
    ):
        return None
    finally:
        os.close(fd)


def writeSavedIndex(folder: Path, temporary: Path, pieces: Sequence[bytes | bytearray]) -> None:
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
