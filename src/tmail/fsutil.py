"""
Durable-file helpers shared by the stores, the queue and the user
directory: writes that loop over short writes, directory fsyncs, files
replaced so that a crash leaves the old or the new one, and the full-disk
errors turned into L{StoreFull}.
"""

from __future__ import annotations

import errno
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tmail.errors import StoreFull

_FULL_ERRNOS = frozenset(
    code for code in (errno.ENOSPC, getattr(errno, "EDQUOT", None)) if code is not None
)


def isDiskFull(error: OSError) -> bool:
    """Whether C{error} means the disk or the user's quota is full."""
    return error.errno in _FULL_ERRNOS


@contextmanager
def fullDiskIsStoreFull() -> Iterator[None]:
    """Turn ENOSPC/EDQUOT raised inside the block into L{StoreFull}."""
    try:
        yield
    except OSError as e:
        if isDiskFull(e):
            raise StoreFull(str(e)) from e
        raise


def freeSpace(path: Path) -> int:
    """
    The bytes an unprivileged process may still write on the file system
    that holds C{path} (or its nearest existing parent): none when its
    inodes are used up.
    """
    for candidate in (path, *path.parents):
        try:
            stat = os.statvfs(candidate)
        except FileNotFoundError:
            continue
        if stat.f_files and not stat.f_favail:
            return 0
        return stat.f_bavail * stat.f_frsize
    return 0


def writeAll(fd: int, data: bytes | bytearray | memoryview) -> None:
    """Write all of C{data} to C{fd}, looping over short writes."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def copyRange(source: int, target: int, offset: int, count: int | None = None) -> None:
    """
    Append C{count} bytes of C{source} from C{offset} (to its end when
    C{None}) to C{target} at its current position, in the kernel where it
    can (C{copy_file_range}), else through a small buffer.
    """
    end = os.fstat(source).st_size if count is None else offset + count
    while offset < end:
        want = min(end - offset, 1 << 30)
        try:
            copied = os.copy_file_range(source, target, want, offset)
        except OSError as e:
            if e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                raise
            copied = 0
        if copied == 0:
            chunk = os.pread(source, min(want, 1 << 20), offset)
            if not chunk:
                raise OSError(errno.EIO, "the file is shorter than expected")
            writeAll(target, chunk)
            copied = len(chunk)
        offset += copied


def fsyncDirectory(path: Path) -> None:
    """Make the entries of directory C{path} (creations, renames) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def writeFileAtomically(path: Path, data: bytes, mode: int, *, replace: bool = True) -> None:
    """
    Write C{path} so that a crash leaves the old file or the new one, never
    part of one: a temporary file beside it, written, fsync'ed, renamed
    over it (with C{replace} false, linked in: C{FileExistsError} when
    C{path} exists), and the directory fsync'ed.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        try:
            os.fchmod(fd, mode)
            writeAll(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsyncDirectory(path.parent)
