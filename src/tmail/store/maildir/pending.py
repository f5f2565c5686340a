"""
A message being delivered into a Maildir folder: written to C{tmp/}, fsync'ed,
then placed in C{new/} or C{cur/} under a name no other file has.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from twisted.internet.defer import Deferred, fail
from zope.interface import implementer

from tmail.errors import NoSuchFolder, StoreFull
from tmail.fsutil import (
    copyRange,
    isDiskFull,
    writeAll,
)
from tmail.interfaces import (
    IInsertablePendingMessage,
)

if TYPE_CHECKING:
    from tmail.store.maildir.folder import MaildirFolder

_FLUSH_AT = 64 * 1024
_NO_HARD_LINKS = frozenset(
    code
    for code in (
        errno.EPERM,
        errno.EXDEV,
        errno.EMLINK,
        errno.ENOSYS,
        getattr(errno, "ENOTSUP", None),
        getattr(errno, "EOPNOTSUPP", None),
    )
    if code is not None
)

_counter = itertools.count(1)


def _uniqueName() -> str:
    """
    A new Maildir base name, C{<secs>.M<usec>P<pid>Q<n>.<host>}; unique per
    host because of the pid, the per-process counter and the time.
    """
    micros = time.time_ns() // 1000
    secs, usec = divmod(micros, 1_000_000)
    host = socket.gethostname().replace("/", "\\057").replace(":", "\\072")
    return f"{secs}.M{usec}P{os.getpid()}Q{next(_counter)}.{host}"


def _placeFile(source: Path, target: Path) -> None:
    """
    Move C{source} to C{target} without ever replacing an existing file:
    link() fails on a duplicate name where rename() would overwrite.  Falls
    back to rename() on filesystems without hard links.
    """
    try:
        os.link(source, target)
    except OSError as e:
        if e.errno not in _NO_HARD_LINKS:
            raise
        os.rename(source, target)
        return
    os.unlink(source)


@dataclass(frozen=True, slots=True)
class _Placed:
    """A delivered file in C{new/} or C{cur/} that has no UID yet."""

    base: str
    subdir: str
    filename: str
    size: int
    mtimeNs: int


@implementer(IInsertablePendingMessage)
class _PendingMessage:
    """
    A message being written to C{tmp/}; see L{IPendingMessage}.

    The file in C{tmp/} is created at the first flush, so a small message
    is created, written and fsync'ed all in L{publish}: off the reactor
    thread when the caller runs it in a worker, where creating a file may
    wait behind other deliveries' fsyncs; L{commit} runs it as the
    folder's file work when the caller did not.  A large message is
    written to the file as it arrives, by L{write} in the caller's thread.

    An L{insert} into bytes still buffered costs nothing; one into bytes
    already in the file is made in L{publish}, by copying the file into a
    new one with the insertion in place (in the kernel where it can).
    """

    def __init__(
        self,
        folder: MaildirFolder,
        flags: frozenset[str],
        internaldate: float | None,
        existing: Path | None = None,
        crlfSize: int | None = None,
        syncExisting: bool = False,
    ) -> None:
        self._folder = folder
        self._syncExisting = syncExisting
        self._tmpPath = existing
        self._crlfSize = crlfSize
        self._flags = flags
        self._internaldate = internaldate
        self._fd: int | None = None
        self._writable = existing is None
        self._buffer = bytearray()
        self._done = False
        self._placed: _Placed | None = None
        self._quotaChecked = False
        #: Bytes written and inserted so far.
        self._size = 0
        #: Insertions into bytes already in the file, made in L{publish}.
        self._inserts: list[tuple[int, bytes]] = []
        #: The GUID to record for a copy (the original's), if any.
        self.guid: str | None = None

    def write(self, data: bytes) -> None:
        if self._done or not self._writable:
            raise ValueError("the message is no longer being written")
        self._buffer += data
        self._size += len(data)
        if len(self._buffer) >= _FLUSH_AT:
            self._flush()

    def insert(self, offset: int, data: bytes) -> None:
        if self._done or not self._writable:
            raise ValueError("the message is no longer being written")
        if not 0 <= offset <= self._size:
            raise ValueError(f"offset {offset} is outside the message ({self._size} bytes)")
        buffered = self._size - len(self._buffer)
        if offset >= buffered:
            self._buffer[offset - buffered : offset - buffered] = data
        else:
            self._inserts.append((offset, data))
        self._size += len(data)

    def _applyInserts(self, fd: int) -> int:
        """
        Rewrite the file with the pending insertions, one copy each, and
        return the descriptor of the new file (the old one is removed).
        """
        for offset, data in self._inserts:
            old = self._file()
            newFd = self._create()
            try:
                source = os.open(old, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    copyRange(source, newFd, 0, offset)
                    writeAll(newFd, data)
                    copyRange(source, newFd, offset)
                finally:
                    os.close(source)
            except BaseException:
                # Keep the old file in hand so that abort removes both.
                os.close(newFd)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._file())
                self._tmpPath, self._fd = old, fd
                raise
            os.close(fd)
            os.unlink(old)
            fd = newFd
        self._inserts.clear()
        return fd

    def _create(self) -> int:
        """
        Create the file in C{tmp/} under a new unique name (and C{tmp/},
        once, when the folder lacks it).
        """
        madeTmp = False
        while True:
            path = self._folder._path / "tmp" / _uniqueName()
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            except FileExistsError:
                continue
            except FileNotFoundError:
                if madeTmp or self._folder._gone:
                    raise NoSuchFolder(self._folder.name) from None
                try:
                    (self._folder._path / "tmp").mkdir(mode=0o700)
                except FileExistsError:
                    pass
                except FileNotFoundError:
                    raise NoSuchFolder(self._folder.name) from None
                madeTmp = True
                continue
            self._tmpPath, self._fd = path, fd
            return fd

    def _flush(self) -> None:
        if not self._writable:
            return
        data = bytes(self._buffer)
        self._buffer.clear()
        try:
            fd = self._fd if self._fd is not None else self._create()
            writeAll(fd, data)
        except OSError as e:
            self._fail(e)

    def _fail(self, error: Exception) -> NoReturn:
        self.abort()
        if isinstance(error, OSError) and isDiskFull(error):
            raise StoreFull(str(error)) from error
        raise error

    def publish(self) -> None:
        if self._done:
            raise ValueError("the message was already committed or aborted")
        if self._placed is not None:
            return
        try:
            if self._writable:
                self._flush()
                self._writable = False
                if self._inserts:
                    assert self._fd is not None
                    self._fd = self._applyInserts(self._fd)
                fd, self._fd = self._fd, None
                assert fd is not None
                try:
                    if self._internaldate is not None:
                        stamp = int(self._internaldate * 1_000_000_000)
                        os.utime(fd, ns=(stamp, stamp))
                    os.fsync(fd)
                finally:
                    os.close(fd)
            elif self._syncExisting:
                # A link to a file another copy is still writing: make sure
                # its bytes are on disk whatever becomes of that copy.
                fd = os.open(self._file(), os.O_RDONLY | os.O_CLOEXEC)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            self._checkQuota()
            if not self._folder._needsKeywordLetters(self._flags):
                self._placed = self._folder._place(self._file(), self._flags, self._crlfSize)
        except OSError as e:
            self._fail(e)
        except BaseException:
            self.abort()
            raise

    def commit(self) -> Deferred[int]:  # type: ignore[override]
        if self._done:
            return fail(ValueError("the message was already committed or aborted"))
        folder = self._folder
        return folder._serial.run(self._commit)

    async def _commit(self) -> int:
        """
        L{publish} as file work (done already when the caller published),
        then the message's UID, under the folder's turn.
        """
        folder = self._folder
        try:
            await folder._open()
            numbered = None
            if self._placed is None:
                numbered = await folder._run(self._publishAndNumber, folder._logsWithNumbering())
            if self._placed is None:
                self._placed = await folder._placeWithKeywords(
                    self._file(), self._flags, self._crlfSize
                )
            uid = await folder._register(self._placed, self.guid, numbered)
            self._placed = None
        except OSError as e:
            await folder._run(self.abort)
            if isDiskFull(e):
                raise StoreFull(str(e)) from e
            raise
        except BaseException:
            await folder._run(self.abort)
            raise
        self._done = True
        return uid

    def _publishAndNumber(self, logging: bool) -> tuple[int, bool, int] | None:
        """
        File work of a commit the caller did not publish: L{publish}, then,
        when that placed the file, its UID (and, with C{logging}, its
        mod-sequence) in the same trip; C{None} when the flags' keywords
        need letters first.
        """
        self.publish()
        placed = self._placed
        if placed is None:
            return None
        folder = self._folder
        return folder._numberAndLog(
            placed.base,
            folder._guidFields(placed.base, self.guid),
            folder._lettersOf(placed.filename) if logging else None,
        )

    def _file(self) -> Path:
        assert self._tmpPath is not None
        return self._tmpPath

    def _checkQuota(self) -> None:
        """Refuse with L{OverQuota} a message that would not fit the user's quota."""
        quota = self._folder._quota
        if quota is None or self._quotaChecked:
            return
        quota.check(os.stat(self._file()).st_size)
        self._quotaChecked = True

    def abort(self) -> None:
        self._done = True
        self._writable = False
        self._buffer.clear()
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)
        if self._tmpPath is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._tmpPath)
        if self._placed is not None:
            placed, self._placed = self._placed, None
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._folder._path / placed.subdir / placed.filename)
                self._folder._recordQuota(-placed.size, -1)
