"""
Dovecot-compatible dot-locks.

A writer of C{<file>} creates C{<file>.lock} exclusively, writes the new
contents into the lock file itself and renames it over C{<file>}: the rename
both publishes the new contents atomically and releases the lock, exactly as
Dovecot's C{file_dotlock_replace} does, so tmail and Dovecot exclude each
other.  Readers never lock.

A lock not touched for L{STALE_AFTER} seconds is stale, Dovecot's rule.  A
tmail holder also marks its lock file with its host, boot, PID namespace and
PID (an extended attribute, where the filesystem has them), so a lock left by
a killed tmail process of this machine is broken at once instead of stalling
every writer of the folder for two minutes after a restart.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import time
from pathlib import Path
from types import TracebackType

from tmail.errors import StoreError
from tmail.fsutil import fullDiskIsStoreFull, writeAll

#: A lock not touched for this many seconds belongs to a dead writer.
STALE_AFTER = 120.0

#: The extended attribute naming a tmail holder:
#: C{<host> <boot id> <pid namespace> <pid>}.
HOLDER_ATTRIBUTE = "user.tmail.holder"

_group: list[str | None] = []
_counter = itertools.count(1)


def _thisProcessGroup() -> str | None:
    """
    The part of a holder mark that says "this machine, this boot, this PID
    namespace", or C{None} where that cannot be told (then nothing is
    marked and only the age makes a lock stale).
    """
    if not _group:
        try:
            with open("/proc/sys/kernel/random/boot_id") as f:
                boot = f.read().strip()
            namespace = os.readlink("/proc/self/ns/pid")
        except OSError:
            _group.append(None)
        else:
            _group.append(f"{socket.gethostname().replace(' ', '_')} {boot} {namespace}")
    return _group[0]


def _holderIsDead(fd: int) -> bool:
    """
    Whether the lock open on C{fd} was marked by a tmail process of this
    machine, boot and PID namespace that no longer runs.  An unmarked lock
    (Dovecot's) is never dead here.
    """
    if not hasattr(os, "getxattr"):
        return False
    try:
        group, _, pid = os.getxattr(fd, HOLDER_ATTRIBUTE).decode().rpartition(" ")
        holderPid = int(pid)
    except (OSError, ValueError):
        return False
    if group != _thisProcessGroup() or holderPid <= 0 or holderPid == os.getpid():
        return False
    try:
        os.kill(holderPid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def _createMarked(lockPath: Path) -> int | None:
    """
    Create C{lockPath} already carrying this process's mark: the marked file
    is made under a scratch name (in C{tmp/} next to it, where a Maildir's
    stale files are swept) and hard-linked into place, so a holder killed at
    any moment leaves a marked lock.  Returns the open lock, C{None} when
    the lock is held, and raises C{NotImplementedError} when the filesystem
    cannot mark or link (the caller then creates the lock plainly).
    """
    group = _thisProcessGroup()
    if group is None or not hasattr(os, "setxattr"):
        raise NotImplementedError
    scratchDirectory = lockPath.parent / "tmp"
    if not scratchDirectory.is_dir():
        scratchDirectory = lockPath.parent
    scratch = scratchDirectory / f".{lockPath.name}.{os.getpid()}.{next(_counter)}"
    try:
        fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except OSError:
        raise NotImplementedError from None
    try:
        os.setxattr(fd, HOLDER_ATTRIBUTE, f"{group} {os.getpid()}".encode())
        os.link(scratch, lockPath)
    except FileExistsError:
        os.close(fd)
        return None
    except OSError:
        os.close(fd)
        raise NotImplementedError from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(scratch)
    return fd


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
            if self._create():
                return
            try:
                stale = self._isStale()
            except FileNotFoundError:
                continue
            if stale:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._lockPath)
                continue
            if time.monotonic() > deadline:
                raise StoreError(f"{self._lockPath} is held by another process")
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def _create(self) -> bool:
        """Try once to create the lock file; return whether this call now holds it."""
        try:
            self._fd = _createMarked(self._lockPath)
            return self._fd is not None
        except NotImplementedError:
            pass
        try:
            with fullDiskIsStoreFull():
                self._fd = os.open(
                    self._lockPath, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600
                )
        except FileExistsError:
            return False
        return True

    def _isStale(self) -> bool:
        """
        Whether the existing lock file is old enough to be stale or was left
        by a dead tmail process.  Checks that the file looked at is still the
        one at the lock's path (same inode, same change time: an inode number
        can be reused at once), so a lock taken meanwhile is not broken.
        """
        try:
            fd = os.open(self._lockPath, os.O_RDONLY | os.O_CLOEXEC)
        except PermissionError:
            return time.time() - os.stat(self._lockPath).st_mtime > STALE_AFTER
        try:
            status = os.fstat(fd)
            stale = time.time() - status.st_mtime > STALE_AFTER or _holderIsDead(fd)
        finally:
            os.close(fd)
        if not stale:
            return False
        now = os.stat(self._lockPath)
        return (now.st_ino, now.st_ctime_ns) == (status.st_ino, status.st_ctime_ns)

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
        if hasattr(os, "removexattr"):
            with contextlib.suppress(OSError):
                os.removexattr(fd, HOLDER_ATTRIBUTE)
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
