# -*- test-case-name: tests.queue.test_queue_store -*-
"""
The durable outbound queue: one message file and one JSON metadata file per
entry, in C{data_dir/queue}.

Layout::

    queue/
      <ID>.msg      the message, exactly as it will be sent (CRLF line ends)
      <ID>.json     the metadata (L{tmail.queue.entry}): the commit point
      tmp/          messages being received, metadata being rewritten
      corrupt/      entries that could not be read, set aside for a person
      lock          flock(2)ed around every change to existing metadata
      wakeup        a request to the running queue runner to look again

An entry exists exactly when its C{.json} does.  Writing one
(L{QueueStore.begin}, then L{PendingEntry.commit}) goes: the message into
C{tmp/}, fsync, rename to C{<ID>.msg}; the metadata into C{tmp/}, fsync,
rename to C{<ID>.json}; fsync C{queue/}.  Only then does C{commit} return,
so an SMTP C{250} after it means the entry survives a crash or power loss.
Metadata changes are written the same way (tmp, fsync, rename over, fsync
the directory) under C{lock}, so a reader sees the old metadata or the
new.  An entry is removed by unlinking its metadata first, then its message.

What a crash leaves is therefore consistent: files in C{tmp/} and C{.msg}
files without metadata are debris, which L{QueueStore.recover} removes at
startup.  A writer keeps an flock(2) on its file until it is committed or
thrown away, and recovery only removes files nobody holds and older than a
grace period, so it can run while other processes enqueue.

IDs are 24 upper-case hex digits: the commit time in microseconds, the
process ID and a counter.  They sort by arrival and are safe as file names.

Operators change entries from other processes (C{tmail queue}): hold,
release and delete change the metadata under C{lock}; flush makes active
recipients due now and creates C{wakeup}.  The runner (in the server)
therefore:

  - calls L{QueueStore.recover} once at startup;
  - reads the whole queue (L{QueueStore.entries}: metadata is only
    parsed again when its file changed, but every file is opened) at
    start and every L{RESCAN_INTERVAL} seconds; in between it follows
    single entries with L{QueueStore.load}, planning each one's next
    attempt from L{QueueEntry.nextAttempt} once its attempt ended;
  - polls L{QueueStore.takeWakeup} every L{WAKEUP_POLL} seconds and looks
    again at once when it returns true;
  - loads an entry again (L{QueueStore.load}) right before each attempt and
    skips it when it is gone (L{NoSuchEntry}) or held;
  - sends the message from L{QueueStore.openMessage} to the due
    recipients (L{QueueEntry.dueRecipients}), turns each failure into an
    outcome with L{tmail.queue.schedule.RetrySchedule.judge}, and records
    them with L{QueueStore.record}, which rereads the metadata under the
    lock (an operator's hold made during the attempt is kept; an entry
    deleted during it raises L{NoSuchEntry}, and what was sent stays sent);
  - queues the notices L{QueueEntry.noticesOwed} lists, and delay notices
    for L{QueueEntry.delayNoticeCandidates} once
    L{tmail.queue.schedule.RetrySchedule.delayWarningDue}, built by
    L{tmail.queue.dsn.buildReport} and queued with
    L{tmail.queue.dsn.DeliveryReport.envelope}; then it calls
    L{QueueStore.markNoticeSent}.  A crash between the two sends a notice
    twice rather than never.
An entry whose recipients are all final and owe no notice is removed by the
update that makes it so.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import itertools
import os
import re
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO, NoReturn

from tmail.errors import StoreFull
from tmail.fsutil import fsyncDirectory, isDiskFull, writeAll
from tmail.queue.entry import (
    CorruptEntry,
    Envelope,
    NoSuchEntry,
    Notice,
    Outcome,
    QueueEntry,
    Recipient,
    UnknownVersion,
    entryFromJson,
    entryToJson,
)

__all__ = [
    "QUEUE_DIRNAME",
    "RESCAN_INTERVAL",
    "WAKEUP_POLL",
    "PendingEntry",
    "QueueStore",
    "Recovery",
    "isEntryId",
    "newEntryId",
    "queueDirectory",
]

#: The queue's folder inside C{data_dir}.
QUEUE_DIRNAME = "queue"
#: How often the runner should look at the directory even unasked (seconds).
RESCAN_INTERVAL = 60.0
#: How often the runner should look for a C{wakeup} request (seconds).
WAKEUP_POLL = 1.0
#: Files younger than this are never taken for debris (seconds).
DEBRIS_GRACE = 60.0

_FLUSH_AT = 64 * 1024
_ID = re.compile(r"[0-9A-F]{24}\Z")
_counter = itertools.count()
_tmpCounter = itertools.count()
_clockLock = threading.Lock()
_lastMicros = 0


def queueDirectory(dataDir: Path) -> Path:
    """Where the queue of a server with this C{data_dir} lives."""
    return dataDir / QUEUE_DIRNAME


def newEntryId() -> str:
    """
    A new entry ID: the time in microseconds (never going back within a
    process), the process ID and a counter, as 24 hex digits.
    """
    global _lastMicros
    with _clockLock:
        micros = max(time.time_ns() // 1000, _lastMicros)
        _lastMicros = micros
        count = next(_counter) & 0xFFFF
    return f"{micros:014X}{os.getpid() & 0xFFFFFF:06X}{count:04X}"


def isEntryId(text: str) -> bool:
    """Whether C{text} has the form of an entry ID (and so is a safe file name)."""
    return _ID.match(text) is not None


def _checkId(entryId: str) -> str:
    if not isEntryId(entryId):
        raise NoSuchEntry(entryId)
    return entryId


def _lockFile(fd: int, wait: bool) -> bool:
    """flock C{fd} exclusively; without C{wait}, C{False} when someone holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    return True


def _createLocked(path: Path) -> int:
    """Create C{path} (which must not exist) for writing, flock'ed by us."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    _lockFile(fd, wait=True)
    return fd


def _raiseFull(error: OSError) -> NoReturn:
    if isDiskFull(error):
        raise StoreFull(str(error)) from error
    raise error


class PendingEntry:
    """
    A new entry being written: the two-phase contract of
    L{tmail.interfaces.IPendingMessage}.  L{write} the message in pieces
    (CRLF line ends), then L{commit} (or L{abort}).  Nothing is in the queue
    before L{commit} returns; after it, the entry is durable.
    """

    def __init__(self, store: QueueStore, envelope: Envelope, now: float | None) -> None:
        self._store = store
        self._envelope = envelope
        self._now = now
        self._buffer = bytearray()
        self._size = 0
        self._fd: int | None = None
        self._path: Path | None = None
        self._synced = False
        self._done = False

    def write(self, data: bytes) -> None:
        """Append C{data} to the message."""
        if self._done or self._synced:
            raise ValueError("the entry is no longer being written")
        self._buffer += data
        self._size += len(data)
        if len(self._buffer) >= _FLUSH_AT:
            self._flush()

    def _flush(self) -> None:
        data = bytes(self._buffer)
        self._buffer.clear()
        try:
            if self._fd is None:
                path = self._store._tmpName("msg")
                self._fd, self._path = _createLocked(path), path
            writeAll(self._fd, data)
        except OSError as e:
            self.abort()
            _raiseFull(e)

    def publish(self) -> None:
        """
        The slow half of L{commit}: write out and fsync the message.  It
        touches nothing but this entry, so it may run in a worker thread.
        """
        if self._done:
            raise ValueError("the entry was already committed or aborted")
        if self._synced:
            return
        self._flush()
        assert self._fd is not None
        try:
            os.fsync(self._fd)
        except OSError as e:
            self.abort()
            _raiseFull(e)
        self._synced = True

    def commit(self) -> QueueEntry:
        """
        Make the entry durable (see the module docstring) and return it.
        Raises L{StoreFull} (or C{OSError}) when the disk refuses; nothing
        is left in the queue then.
        """
        self.publish()
        store = self._store
        entryId = newEntryId()
        arrival = time.time() if self._now is None else self._now
        entry = QueueEntry(
            id=entryId,
            sender=self._envelope.sender,
            arrival=arrival,
            recipients=tuple(replace(r, nextAttempt=arrival) for r in self._envelope.recipients),
            size=self._size,
            body=self._envelope.body,
            utf8=self._envelope.utf8,
            ret=self._envelope.ret,
            envid=self._envelope.envid,
            requireTLS=self._envelope.requireTLS,
        )
        message = store._messagePath(entryId)
        placed = False
        try:
            assert self._path is not None
            os.rename(self._path, message)
            placed = True
            store._writeMetadata(entry, syncDirectory=False)
            fsyncDirectory(store.path)
        except BaseException as e:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(store._metadataPath(entryId))
            if placed:
                self._path = message
            self.abort()
            if isinstance(e, OSError):
                _raiseFull(e)
            raise
        self._path = None
        self._release()
        self._done = True
        return entry

    def _release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def abort(self) -> None:
        """Throw the entry away.  Safe to call more than once."""
        self._done = True
        self._buffer.clear()
        if self._path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._path)
            self._path = None
        self._release()


@dataclass
class Recovery:
    """
    What L{QueueStore.recover} did.

    @ivar debris: files removed: from C{tmp/}, and messages without metadata.
    @ivar corrupt: IDs of entries moved to C{corrupt/}: metadata that is
        not an entry, or metadata whose message is missing.
    @ivar unknown: IDs of entries in a later metadata format, left alone.
    @ivar finished: IDs of entries removed because nothing was left to do.
    """

    debris: list[str] = field(default_factory=list)
    corrupt: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)


_Stamp = tuple[int, int, int]


class QueueStore:
    """
    The queue in one directory (L{queueDirectory}); see the module docstring.

    Methods are synchronous and do small blocking file operations, as the
    Maildir store's do.  Objects of this class keep only a cache of parsed
    metadata, checked against the files on every read, so any number of
    them, in any number of processes, may share a directory.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._cache: dict[str, tuple[_Stamp, QueueEntry]] = {}

    # Paths

    def _messagePath(self, entryId: str) -> Path:
        return self.path / f"{entryId}.msg"

    def _metadataPath(self, entryId: str) -> Path:
        return self.path / f"{entryId}.json"

    def _tmpName(self, suffix: str) -> Path:
        name = f"{time.time_ns()}.{os.getpid()}.{next(_tmpCounter)}.{suffix}"
        return self.path / "tmp" / name

    def create(self) -> None:
        """Make the queue's directories (the server does, at startup)."""
        for directory in (self.path, self.path / "tmp", self.path / "corrupt"):
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)

    # Writing new entries

    def begin(self, envelope: Envelope, now: float | None = None) -> PendingEntry:
        """
        Start a new entry for C{envelope}; C{now} is its arrival time
        (default: the clock at commit).  A repeated recipient is kept once.
        """
        seen: dict[str, Recipient] = {}
        for r in envelope.recipients:
            seen.setdefault(r.address, Recipient(r.address, r.notify, r.orcpt))
        if not seen:
            raise ValueError("an entry needs at least one recipient")
        self.create()
        return PendingEntry(self, replace(envelope, recipients=tuple(seen.values())), now)

    def enqueue(self, envelope: Envelope, data: bytes, now: float | None = None) -> QueueEntry:
        """Queue the message C{data} for C{envelope} at once (e.g. a DSN)."""
        pending = self.begin(envelope, now)
        try:
            pending.write(data)
        except BaseException:
            pending.abort()
            raise
        return pending.commit()

    def _writeMetadata(
        self, entry: QueueEntry, syncDirectory: bool = True, owner: os.stat_result | None = None
    ) -> None:
        """
        Write C{entry}'s metadata: tmp, fsync, rename over, fsync the
        directory.  L{StoreFull} when the disk is full; the old metadata
        stays then.
        """
        tmp = self._tmpName("json")
        try:
            fd = _createLocked(tmp)
        except FileNotFoundError:
            (self.path / "tmp").mkdir(mode=0o700, exist_ok=True)
            fd = _createLocked(tmp)
        try:
            if owner is not None and os.geteuid() == 0:
                os.fchown(fd, owner.st_uid, owner.st_gid)
            writeAll(fd, entryToJson(entry))
            os.fsync(fd)
            os.rename(tmp, self._metadataPath(entry.id))
        except BaseException as e:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            if isinstance(e, OSError):
                _raiseFull(e)
            raise
        finally:
            os.close(fd)
        if syncDirectory:
            fsyncDirectory(self.path)

    # Reading

    def _read(self, entryId: str) -> QueueEntry:
        """The entry's metadata, parsed again only when its file changed."""
        path = self._metadataPath(entryId)
        try:
            with path.open("rb") as f:
                st = os.fstat(f.fileno())
                stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
                cached = self._cache.get(entryId)
                if cached is not None and cached[0] == stamp:
                    return cached[1]
                data = f.read()
        except FileNotFoundError:
            self._cache.pop(entryId, None)
            raise NoSuchEntry(entryId) from None
        entry = entryFromJson(data)
        if entry.id != entryId:
            raise CorruptEntry(f"{path.name} holds the entry {entry.id}")
        self._cache[entryId] = (stamp, entry)
        return entry

    def ids(self) -> list[str]:
        """The IDs of the entries in the queue, oldest first."""
        try:
            names = os.listdir(self.path)
        except FileNotFoundError:
            return []
        found = sorted(name[:-5] for name in names if name.endswith(".json"))
        return [entryId for entryId in found if isEntryId(entryId)]

    def scan(self) -> tuple[list[QueueEntry], dict[str, str]]:
        """
        Every entry, oldest first, and the IDs of those that cannot be read
        with the reason (see L{recover}).
        """
        entries, unreadable = [], {}
        ids = self.ids()
        for entryId in ids:
            try:
                entries.append(self._read(entryId))
            except NoSuchEntry:
                continue
            except CorruptEntry as e:
                unreadable[entryId] = str(e)
        for gone in self._cache.keys() - set(ids):
            del self._cache[gone]
        return entries, unreadable

    def entries(self) -> list[QueueEntry]:
        """Every readable entry, oldest first."""
        return self.scan()[0]

    def load(self, entryId: str) -> QueueEntry:
        """The entry as its metadata says now; L{NoSuchEntry} when it is gone."""
        return self._read(_checkId(entryId))

    def openMessage(self, entryId: str) -> BinaryIO:
        """The entry's message, open for reading (for sending, or a DSN)."""
        try:
            return self._messagePath(_checkId(entryId)).open("rb")
        except FileNotFoundError:
            raise NoSuchEntry(entryId) from None

    def due(self, now: float) -> list[QueueEntry]:
        """The entries with recipients due at C{now}, not held, earliest first."""
        due = [entry for entry in self.entries() if entry.isDue(now)]
        due.sort(key=lambda entry: (entry.nextAttempt(), entry.id))
        return due

    def nextWakeup(self) -> float | None:
        """When the earliest entry that is not held is due; C{None} if none is."""
        times = [entry.nextAttempt() for entry in self.entries() if not entry.held]
        return min((t for t in times if t is not None), default=None)

    # Changing entries

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the queue's lock: changes to existing metadata go one at a time."""
        fd = os.open(self.path / "lock", os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            _lockFile(fd, wait=True)
            yield
        finally:
            os.close(fd)

    def update(self, entryId: str, change: Callable[[QueueEntry], QueueEntry]) -> QueueEntry | None:
        """
        Apply C{change} to the entry as it is now, under the lock, and write
        the result atomically; remove the entry instead when the result is
        done (L{QueueEntry.isDone}), and return C{None} then.
        """
        _checkId(entryId)
        if not self._metadataPath(entryId).exists():
            raise NoSuchEntry(entryId)
        with self._locked():
            old = self._read(entryId)
            new = change(old)
            if new.isDone():
                self._remove(entryId)
                return None
            if new != old:
                owner = os.stat(self._metadataPath(entryId))
                self._writeMetadata(new, owner=owner)
            return new

    def record(
        self, entryId: str, outcomes: Mapping[str, Outcome], now: float | None = None
    ) -> QueueEntry | None:
        """
        Record what an attempt that ended at C{now} came to, per recipient
        address.  Returns the entry, or C{None} when it was done and removed.
        """
        when = time.time() if now is None else now
        return self.update(entryId, lambda entry: entry.recorded(outcomes, when))

    def markNoticeSent(
        self, entryId: str, addresses: Iterable[str], notice: Notice
    ) -> QueueEntry | None:
        """Record that C{notice} was queued for C{addresses}; as L{update}."""
        chosen = tuple(addresses)
        return self.update(entryId, lambda entry: entry.noticeSent(chosen, notice))

    def hold(self, entryId: str) -> QueueEntry:
        """Stop attempts of the entry until L{release}."""
        entry = self.update(entryId, lambda entry: replace(entry, held=True))
        assert entry is not None
        return entry

    def release(self, entryId: str) -> QueueEntry:
        """Let a held entry be attempted again (when its recipients are due)."""
        entry = self.update(entryId, lambda entry: replace(entry, held=False))
        assert entry is not None
        self.requestWakeup()
        return entry

    def flush(self, entryId: str | None = None, now: float | None = None) -> list[str]:
        """
        Make the active recipients of one entry (or of all) due at C{now},
        and ask the runner to look.  Held entries stay held.  Returns the
        IDs of the entries that were changed.
        """
        when = time.time() if now is None else now

        def dueNow(entry: QueueEntry) -> QueueEntry:
            return entry.withRecipients(
                [replace(r, nextAttempt=when) for r in entry.active() if r.nextAttempt > when]
            )

        changed = []
        for chosen in [entryId] if entryId is not None else self.ids():
            try:
                before = self.load(chosen)
                after = self.update(chosen, dueNow)
            except NoSuchEntry:
                if entryId is not None:
                    raise
                continue
            if after != before:
                changed.append(chosen)
        self.requestWakeup()
        return changed

    def delete(self, entryId: str) -> None:
        """Remove the entry without notifying anyone; L{NoSuchEntry} if gone."""
        _checkId(entryId)
        with self._locked():
            if not self._metadataPath(entryId).exists():
                raise NoSuchEntry(entryId)
            self._remove(entryId)

    def _remove(self, entryId: str) -> None:
        """Unlink the metadata (the entry is gone), then the message."""
        for path in (self._metadataPath(entryId), self._messagePath(entryId)):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        self._cache.pop(entryId, None)
        fsyncDirectory(self.path)

    # Telling the runner

    def requestWakeup(self) -> None:
        """Ask the running queue runner to look at the queue now."""
        with contextlib.suppress(FileNotFoundError):
            fd = os.open(self.path / "wakeup", os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
            os.close(fd)

    def takeWakeup(self) -> bool:
        """Whether a wakeup was asked for since the last call (and forget it)."""
        try:
            os.unlink(self.path / "wakeup")
        except FileNotFoundError:
            return False
        return True

    # Startup

    def recover(self, grace: float = DEBRIS_GRACE, now: float | None = None) -> Recovery:
        """
        Clean up after a crash (see the module docstring): remove debris no
        process holds and older than C{grace} seconds, set unreadable
        entries aside in C{corrupt/}, and remove entries with nothing left
        to do.  Safe while other processes enqueue and update.
        """
        self.create()
        when = time.time() if now is None else now
        report = Recovery()
        with self._locked():
            tmp = self.path / "tmp"
            for name in sorted(os.listdir(tmp)):
                if self._removeAbandoned(tmp / name, grace, when):
                    report.debris.append(f"tmp/{name}")
            names = set(os.listdir(self.path))
            for name in sorted(names):
                entryId, _, kind = name.partition(".")
                if kind != "msg" or not isEntryId(entryId) or f"{entryId}.json" in names:
                    continue
                metadata = self._metadataPath(entryId)
                if self._removeAbandoned(self.path / name, grace, when, metadata.exists):
                    report.debris.append(name)
            for entryId in self.ids():
                self._recoverEntry(entryId, report)
        fsyncDirectory(self.path)
        return report

    def _recoverEntry(self, entryId: str, report: Recovery) -> None:
        try:
            entry = self._read(entryId)
        except NoSuchEntry:
            return
        except UnknownVersion:
            report.unknown.append(entryId)
            return
        except CorruptEntry:
            self._setAside(entryId)
            report.corrupt.append(entryId)
            return
        if not self._messagePath(entryId).exists():
            self._setAside(entryId)
            report.corrupt.append(entryId)
        elif entry.isDone():
            self._remove(entryId)
            report.finished.append(entryId)

    def _setAside(self, entryId: str) -> None:
        corrupt = self.path / "corrupt"
        for path in (self._metadataPath(entryId), self._messagePath(entryId)):
            with contextlib.suppress(FileNotFoundError):
                os.rename(path, corrupt / path.name)
        self._cache.pop(entryId, None)

    @staticmethod
    def _removeAbandoned(
        path: Path,
        grace: float,
        now: float,
        keep: Callable[[], bool] | None = None,
    ) -> bool:
        """
        Unlink C{path} if it is older than C{grace}, no process holds its
        lock, and C{keep()}, asked once we hold it, is not true (a message
        is debris only while its metadata is absent).
        """
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ELOOP):
                return False
            raise
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or now - st.st_ctime < grace:
                return False
            if not _lockFile(fd, wait=False):
                return False
            if keep is not None and keep():
                return False
            os.unlink(path)
            return True
        except FileNotFoundError:
            return False
        finally:
            os.close(fd)
