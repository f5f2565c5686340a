"""Small durable-file helpers shared by the Maildir modules."""

from __future__ import annotations

import errno
import os
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


def writeAll(fd: int, data: bytes | bytearray | memoryview) -> None:
    """Write all of C{data} to C{fd}, looping over short writes."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def fsyncDirectory(path: Path) -> None:
    """Make the entries of directory C{path} (creations, renames) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
