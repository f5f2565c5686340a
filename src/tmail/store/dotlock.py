"""
Dovecot-compatible dot-locks.

A writer of C{<file>} creates C{<file>.lock} exclusively, writes the new
contents into the lock file itself and renames it over C{<file>}: the rename
both publishes the new contents atomically and releases the lock, exactly as
Dovecot's C{file_dotlock_replace} does, so tmail and Dovecot exclude each
other.  Readers never lock.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from types import TracebackType

from tmail.errors import StoreError
from tmail.store.fsutil import fullDiskIsStoreFull, writeAll

#: A lock not touched for this many seconds belongs to a dead writer.
STALE_AFTER = 120.0


class DotLock:
    """
    An exclusive C{<target>.lock}, used as a context manager.

    @ivar target: the file the lock protects.
    """

    def __init__(self, target: Path, timeout: float = STALE_AFTER + 30.0) -> None:
        self.target = target
        self._lockPath = target.with_name(target.name + ".lock")
        self._timeout = timeout
        self._fd: int | None = None

    def __enter__(self) -> DotLock:
        self.acquire()
        return self

    def __exit__(
        self,
        excType: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def acquire(self) -> None:
        """
        Create the lock file, waiting for a live holder and breaking a stale
        one.  Raises L{StoreError} after C{timeout} seconds.
        """
        deadline = time.monotonic() + self._timeout
        delay = 0.001
        while True:
            try:
                with fullDiskIsStoreFull():
                    self._fd = os.open(
                        self._lockPath,
                        os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                        0o600,
                    )
                return
            except FileExistsError:
                pass
            try:
                age = time.time() - os.stat(self._lockPath).st_mtime
            except FileNotFoundError:
                continue
            if age > STALE_AFTER:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._lockPath)
                continue
            if time.monotonic() > deadline:
                raise StoreError(f"{self._lockPath} is held by another process")
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def replace(self, data: bytes) -> os.stat_result:
        """
        Durably replace the target's contents with C{data} and release the
        lock.  Returns the new file's status, so a reader can tell its own
        write from a later one.  Raises L{tmail.errors.StoreFull} when the
        disk is full (the target is then unchanged).
        """
        if self._fd is None:
            raise StoreError(f"{self._lockPath} is not held")
        fd = self._fd
        with fullDiskIsStoreFull():
            writeAll(fd, data)
            os.fsync(fd)
            status = os.fstat(fd)
            os.rename(self._lockPath, self.target)
        self._fd = None
        os.close(fd)
        return status

    def release(self) -> None:
        """Give the lock up without changing the target.  Idempotent."""
        if self._fd is None:
            return
        os.close(self._fd)
        self._fd = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._lockPath)
