# -*- test-case-name: tests.store.test_fieldcache -*-
"""
The file of a folder's field cache (L{tmail.store.fieldcache}): opaque
fields of messages, by message key and field name, kept across restarts,
as Dovecot keeps parsed facts in C{dovecot.index.cache}.

The file is a header and then records, appended and never changed in place:

    header:  b"TMFC", version (2 bytes), 2 zero bytes, UIDVALIDITY (4 bytes),
             CRC-32 of those 12 bytes (4 bytes); all big-endian
    record:  payload length (4 bytes), CRC-32 of the payload (4 bytes), payload
    payload: key length (2), key, field count (2),
             then per field: name length (2), name, value length (4), value

A later record of a key holds all its fields (the earlier one is dead).  The
record with the empty key holds when each field was last asked for (as
decimal seconds since the epoch): the per-field decisions.

A cache is only a cache.  A damaged or foreign header (another version or
UIDVALIDITY) makes a new, empty file; the first record that is cut short or
fails its checksum (a process killed mid-write, a disk that lost the tail)
ends the file: it is cut off there and the records before it kept.  Nothing
is fsync'ed on append: what a crash loses is only facts to parse again.
Compaction writes a new file (temporary name, fsync, rename), so a crash
leaves the old one or the new one.

Processes that share the folder share the file: every change takes an
exclusive C{flock} on it, looks whether another process replaced the file
(compaction) or appended to it since, and appends its records in one write.

These are plain functions over paths and file descriptors, for a worker
thread; L{tmail.store.fieldcache} applies what they return to its index in
the reactor thread.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
import zlib
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tmail.fsutil import fsyncDirectory

MAGIC = b"TMFC"
VERSION = 1
_HEADER = struct.Struct(">4sHHI")
_HEADER_SIZE = _HEADER.size + 4
_RECORD = struct.Struct(">II")
_SHORT = struct.Struct(">H")
_LONG = struct.Struct(">I")
#: A record longer than this is damage, not a record (a length field hit
#: by garbage would otherwise make the reader take the rest of the file).
MAX_RECORD = 64 * 1024 * 1024
#: Bytes read at a time when the file is scanned.
_CHUNK = 1024 * 1024

Fields = dict[str, bytes]
#: Where a record is in the file: its offset and its whole length.
Span = tuple[int, int]


class Replaced(Exception):
    """The file at the path is no longer the one open: reload it."""


def header(uidValidity: int) -> bytes:
    """The header of a cache file of a folder with C{uidValidity}."""
    head = _HEADER.pack(MAGIC, VERSION, 0, uidValidity & 0xFFFFFFFF)
    return head + _LONG.pack(zlib.crc32(head))


def encode(key: bytes, fields: Mapping[str, bytes]) -> bytes:
    """One record of C{fields} of the message C{key}."""
    parts = [_SHORT.pack(len(key)), key, _SHORT.pack(len(fields))]
    for name, value in fields.items():
        raw = name.encode("utf-8")
        parts += [_SHORT.pack(len(raw)), raw, _LONG.pack(len(value)), value]
    payload = b"".join(parts)
    return _RECORD.pack(len(payload), zlib.crc32(payload)) + payload


def _decodePayload(payload: bytes) -> tuple[bytes, Fields]:
    """The key and fields of a record's payload; raises C{ValueError} when malformed."""
    try:
        (keyLength,) = _SHORT.unpack_from(payload, 0)
        key = payload[2 : 2 + keyLength]
        at = 2 + keyLength
        (count,) = _SHORT.unpack_from(payload, at)
        at += 2
        fields: Fields = {}
        for _ in range(count):
            (nameLength,) = _SHORT.unpack_from(payload, at)
            name = payload[at + 2 : at + 2 + nameLength].decode("utf-8")
            at += 2 + nameLength
            (valueLength,) = _LONG.unpack_from(payload, at)
            fields[name] = payload[at + 4 : at + 4 + valueLength]
            at += 4 + valueLength
    except (struct.error, UnicodeDecodeError) as e:
        raise ValueError("malformed record") from e
    if at != len(payload) or len(key) != keyLength:
        raise ValueError("malformed record")
    return key, fields


def readRecord(fd: int, span: Span) -> tuple[bytes, Fields] | None:
    """The key and fields of the record at C{span}, or C{None} when it is damaged."""
    offset, length = span
    raw = os.pread(fd, length, offset)
    if len(raw) != length or length < _RECORD.size:
        return None
    size, crc = _RECORD.unpack_from(raw)
    payload = raw[_RECORD.size :]
    if size != len(payload) or zlib.crc32(payload) != crc:
        return None
    try:
        return _decodePayload(payload)
    except ValueError:
        return None


def decodeUses(fields: Mapping[str, bytes]) -> dict[str, float]:
    """The decision record's fields as field name -> when last asked for."""
    uses = {}
    for name, value in fields.items():
        with contextlib.suppress(ValueError):
            uses[name] = float(value)
    return uses


def encodeUses(uses: Mapping[str, float]) -> Fields:
    """L{decodeUses} undone."""
    return {name: b"%d" % int(when) for name, when in uses.items()}


@dataclass
class Scan:
    """
    What a pass over the records of a file found.

    @ivar index: key -> span of its latest record.
    @ivar uses: the latest decision record's uses (empty when none was found).
    @ivar end: where the valid records end (the file is cut there).
    @ivar dead: bytes of records a later one replaced.
    """

    index: dict[bytes, Span] = field(default_factory=dict)
    uses: dict[str, float] = field(default_factory=dict)
    end: int = _HEADER_SIZE
    dead: int = 0


def _records(fd: int, start: int, end: int) -> Iterator[tuple[int, int, bytes]]:
    """
    The valid records of C{fd} between C{start} and C{end}: offset, whole
    length and payload of each, up to the first damaged one.
    """
    buffer = b""
    bufferStart = start
    at = start
    while at < end:
        need = _RECORD.size
        while at + need > bufferStart + len(buffer):
            more = os.pread(fd, max(_CHUNK, need), bufferStart + len(buffer))
            if not more:
                return
            buffer = buffer[at - bufferStart :] + more
            bufferStart = at
        size, crc = _RECORD.unpack_from(buffer, at - bufferStart)
        if size > MAX_RECORD or at + _RECORD.size + size > end:
            return
        need = _RECORD.size + size
        while at + need > bufferStart + len(buffer):
            more = os.pread(fd, max(_CHUNK, need), bufferStart + len(buffer))
            if not more:
                return
            buffer = buffer[at - bufferStart :] + more
            bufferStart = at
        low = at - bufferStart + _RECORD.size
        payload = buffer[low : low + size]
        if zlib.crc32(payload) != crc:
            return
        yield at, need, payload
        at += need


def scan(fd: int, start: int, end: int, into: Scan) -> Scan:
    """
    Add the records of C{fd} from C{start} (up to C{end}) to C{into}, and
    set its C{end} to where they stop being valid.
    """
    into.end = start
    for offset, length, payload in _records(fd, start, end):
        try:
            key, fields = _decodePayload(payload)
        except ValueError:
            break
        if key:
            old = into.index.get(key)
            if old is not None:
                into.dead += old[1]
            into.index[key] = (offset, length)
        else:
            into.dead += length
            into.uses = decodeUses(fields)
        into.end = offset + length
    return into


@contextlib.contextmanager
def locked(fd: int) -> Iterator[None]:
    """Hold the exclusive lock every change of the file takes."""
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _sameFile(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)


def load(path: Path, uidValidity: int) -> tuple[int, Scan]:
    """
    Open (or create) the cache file at C{path} for a folder with
    C{uidValidity}: its descriptor and its records.  A damaged or foreign
    header makes a new, empty file; a damaged tail is cut off.
    """
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            with locked(fd):
                if not _sameFile(fd, path):
                    os.close(fd)
                    continue
                size = os.fstat(fd).st_size
                if os.pread(fd, _HEADER_SIZE, 0) != header(uidValidity):
                    os.ftruncate(fd, 0)
                    os.pwrite(fd, header(uidValidity), 0)
                    return fd, Scan()
                found = scan(fd, _HEADER_SIZE, size, Scan())
                if found.end < size:
                    os.ftruncate(fd, found.end)
                return fd, found
        except BaseException:
            with contextlib.suppress(OSError):
                os.close(fd)
            raise


@dataclass
class Appended:
    """
    What L{append} did: the records of other processes it found first
    (C{found}, scanned from the old end), and the spans of its own.
    """

    found: Scan
    spans: dict[bytes, Span]


def append(
    fd: int,
    path: Path,
    end: int,
    records: Mapping[bytes, Mapping[str, bytes]],
    spans: Mapping[bytes, Span],
    uses: Mapping[str, float] | None,
) -> Appended:
    """
    Append C{records} (key -> new fields) to the file C{fd} whose valid
    records end at C{end}, each merged with the fields of the key's last
    record (at C{spans}, or found among what other processes appended
    since), and C{uses} as a new decision record when given.  Raises
    L{Replaced} when the file at C{path} is another one now.
    """
    with locked(fd):
        if not _sameFile(fd, path):
            raise Replaced()
        size = os.fstat(fd).st_size
        found = scan(fd, end, size, Scan(end=end))
        if found.end < size:
            os.ftruncate(fd, found.end)
        chunks = []
        at = found.end
        ours: dict[bytes, Span] = {}
        for key, fields in records.items():
            span = found.index.get(key) or spans.get(key)
            old = readRecord(fd, span) if span is not None else None
            merged = dict(old[1]) if old is not None else {}
            merged.update(fields)
            record = encode(key, merged)
            chunks.append(record)
            ours[key] = (at, len(record))
            at += len(record)
        if uses is not None:
            latest = dict(found.uses)
            for name, when in uses.items():
                latest[name] = max(when, latest.get(name, 0.0))
            record = encode(b"", encodeUses(latest))
            chunks.append(record)
            found.uses = latest
            found.dead += len(record)
            at += len(record)
        data = b"".join(chunks)
        written = 0
        while written < len(data):
            written += os.pwrite(fd, data[written:], found.end + written)
        found.end = at
        return Appended(found, ours)


def compact(
    fd: int,
    path: Path,
    uidValidity: int,
    spans: Mapping[bytes, Span],
    live: Collection[bytes],
    uses: Mapping[str, float],
    keep: Collection[str],
) -> tuple[int, Scan]:
    """
    Write a new file with the latest record of each key in C{live} (others
    are dropped), only its fields named in C{keep}, and C{uses} of those
    fields; put it in place of the one at C{path} (temporary name, fsync,
    rename), and return its descriptor and records.  Raises L{Replaced}
    when the file at C{path} is not C{fd} any more.
    """
    with locked(fd):
        if not _sameFile(fd, path):
            raise Replaced()
        size = os.fstat(fd).st_size
        found = scan(fd, _HEADER_SIZE, size, Scan())
        latest = {**spans, **found.index}
        temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        new = os.open(temporary, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            result = Scan()
            chunks = [header(uidValidity)]
            at = _HEADER_SIZE
            for key, span in latest.items():
                if key not in live:
                    continue
                old = readRecord(fd, span)
                if old is None:
                    continue
                fields = {name: value for name, value in old[1].items() if name in keep}
                if not fields:
                    continue
                record = encode(key, fields)
                chunks.append(record)
                result.index[key] = (at, len(record))
                at += len(record)
            result.uses = {
                name: when for name, when in {**found.uses, **uses}.items() if name in keep
            }
            record = encode(b"", encodeUses(result.uses))
            chunks.append(record)
            at += len(record)
            result.end = at
            result.dead = len(record)
            data = b"".join(chunks)
            written = 0
            while written < len(data):
                written += os.pwrite(new, data[written:], written)
            os.fsync(new)
            os.rename(temporary, path)
        except BaseException:
            os.close(new)
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
    fsyncDirectory(path.parent)
    return new, result
