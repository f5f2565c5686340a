"""
Modification sequences of a Maildir folder (RFC 7162 CONDSTORE and QRESYNC).

Maildir itself keeps no history, so each folder has C{tmail-modseq}: an
append-only log of what changed and when, shared by every process that
writes the folder::

    tmail-modseq 1 V<uidvalidity> H<highest> F<forgotten>
    <modseq> <uid> <flag letters>      a message's flags as of <modseq>
    <modseq> -<uid>                    the message was expunged at <modseq>

Writers append whole lines under an C{flock} of the file, after reading
what the others appended, so mod-sequences only grow.  A flag change or an
expunge is logged before the file is renamed or removed, so a crash between
the two leaves a higher mod-sequence for unchanged flags, never a change
without one.  A message whose letters on disk differ from its last line (a
change made by another Maildir program, or while no tmail ran) gets a new
mod-sequence when it is found; so does the expunge of a message whose line
(or, for one the log never had, whose uidlist line) outlives its file.

A new log starts at the current time in microseconds: a log that is lost
or recreated, or a folder Dovecot served before, never shows a client a
HIGHESTMODSEQ below one it was already given.

A log that cannot be written (a full disk) stops neither reading nor
deleting: a change is then made first (a rename in C{cur/} or an unlink,
which need no space on most file systems, and an unlink frees some) and
its line kept in memory, given a mod-sequence there; kept lines are
written, before any later one, as soon as the log takes them.  Should
another process have logged values as high meanwhile, they are written
under one new value above everything instead, so the log never gives one
value to two changes.  While lines are kept, the header's C{H} is raised
in place to the highest value given (an overwrite needs no new block on
most file systems), so a process that starts after one that lost its
memory never reports a lower HIGHESTMODSEQ; the changes themselves it
finds on disk, as above.

A log keeps its file open between uses, so that it reads only what others
appended since; at most L{MAX_OPEN_LOGS} are open in a process, the least
recently used closed first (one file descriptor per folder ever opened
would run a server with many users out of them).  A log closed so is read
again from the start when next used, as after another process's
compaction.

The log is rewritten (compacted) when it holds many more lines than
messages.  Only the most recent expunges are kept; C{F} is the highest
mod-sequence of those forgotten, below which QRESYNC reports every missing
UID as vanished.
"""

from __future__ import annotations

import array
import contextlib
import fcntl
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from twisted.logger import Logger

from tmail.errors import StoreFull
from tmail.fsutil import isDiskFull, writeAll

__all__ = ["FILENAME", "LogState", "ModSeqLog"]

_log = Logger()

FILENAME = "tmail-modseq"
_MAGIC = b"tmail-modseq 1"

#: Expunges remembered for QRESYNC; older ones are summed up by the floor.
KEEP_EXPUNGED = 20_000
#: Lines a log may hold beyond twice what it describes before compaction.
_SLACK = 1_000
#: Times a writer opens the log again because another process's compaction
#: replaced it while the writer waited for the lock, before giving up.
_REOPENS = 100
#: Logs with an open file at once, in one process.
MAX_OPEN_LOGS = 128


@dataclass(frozen=True, slots=True)
class LogState:
    """
    Where a log stood when a folder's index was saved with it: what a
    process that starts from that index resumes reading from (L{ModSeqLog.resume}).

    @ivar inode: the log file's device and inode numbers.
    @ivar offset: its length read (whole lines).
    @ivar lines: the lines in it, header excluded.
    @ivar highest: the highest mod-sequence read from it or written to it.
    @ivar floor: expunges at or below this mod-sequence are forgotten.
    @ivar topUid: the highest UID of a line read when it was loaded.
    @ivar expungedUids: the expunges remembered, oldest first, and their
        mod-sequences (C{expungedModSeqs}).
    """

    inode: tuple[int, int]
    offset: int
    lines: int
    highest: int
    floor: int
    topUid: int
    expungedUids: array.array[int]
    expungedModSeqs: array.array[int]


class _OpenLogs:
    """The logs whose files are open, least recently used first."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._logs: OrderedDict[ModSeqLog, None] = OrderedDict()
        self._busy: dict[ModSeqLog, int] = {}

    def enter(self, log: ModSeqLog) -> None:
        """C{log} is about to use its file: keep it open meanwhile."""
        with self._lock:
            self._busy[log] = self._busy.get(log, 0) + 1
            self._logs[log] = None
            self._logs.move_to_end(log)

    def leave(self, log: ModSeqLog) -> None:
        """C{log} is done with its file for now; close the least used ones beyond the limit."""
        with self._lock:
            count = self._busy.pop(log) - 1
            if count:
                self._busy[log] = count
            idle = [each for each in self._logs if each not in self._busy]
            closing = idle[: max(0, len(self._logs) - MAX_OPEN_LOGS)]
            for each in closing:
                del self._logs[each]
        for each in closing:
            each.close()

    def forget(self, log: ModSeqLog) -> None:
        with self._lock:
            self._logs.pop(log, None)


_openLogs = _OpenLogs()


def _startingModSeq() -> int:
    return time.time_ns() // 1000


def _line(uid: int, modseq: int, letters: str | None) -> bytes:
    if letters is None:
        return b"%d -%d\n" % (modseq, uid)
    return b"%d %d %s\n" % (modseq, uid, letters.encode("ascii"))


class ModSeqLog:
    """
    The log of one folder, as one process sees it.

    @ivar highest: the highest mod-sequence in the log (HIGHESTMODSEQ).
    @ivar floor: expunges at or below this mod-sequence are forgotten.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._pathText = str(path)
        self._fd: int | None = None
        #: How many L{_locked} blocks of this log are running.
        self._busy = 0
        self._inode: tuple[int, int] | None = None
        self._offset = 0
        self._lines = 0
        self._uidValidity = 0
        self.highest = 0
        self.floor = 0
        #: Message states read from the log that no message has claimed yet.
        self._logged: dict[int, tuple[int, str]] = {}
        #: Expunged UID -> its mod-sequence, oldest first: those this
        #: process logged or found in the log when it loaded it.
        self._expunged: dict[int, int] = {}
        #: Expunges other processes logged since: kept through compactions,
        #: but not reported, since this process has not seen them happen.
        self._foreignExpunged: dict[int, int] = {}
        #: The last line of each message another process logged since the
        #: log was loaded: a compaction keeps it when it is newer than what
        #: this process knows of the message.  Lines this process writes
        #: are not kept: its folder passes their states to the compaction.
        self._latest: dict[int, tuple[int, str]] = {}
        self._loading = False
        self._resumeAt = 0
        #: The highest value read from the file or written to it (not the
        #: header raised in place to cover what memory holds).
        self._diskHighest = 0
        #: Changes the file could not take yet: UID -> (mod-sequence given
        #: in memory, letters or C{None} for an expunge), oldest first.
        self._unwritten: dict[int, tuple[int, str | None]] = {}
        #: The highest UID of a line read while loading.
        self._topUid = 0
        self._resumedUids: list[int] = []

    def __repr__(self) -> str:
        return f"<ModSeqLog {str(self._path)!r} highest={self.highest}>"

    def moved(self, path: Path) -> None:
        """The folder was renamed: the same log, under a new path."""
        self._path = path
        self._pathText = str(path)

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
        if self._busy == 0:
            _openLogs.forget(self)

    # Reading

    def load(self, uidValidity: int) -> None:
        """
        Read the whole log, starting a new one when there is none, it is
        unreadable, or it belongs to another UIDVALIDITY.
        """
        self.close()
        self._uidValidity = uidValidity
        self._logged, self._expunged, self._foreignExpunged = {}, {}, {}
        self._latest, self._unwritten = {}, {}
        self.highest = self.floor = self._diskHighest = self._topUid = 0
        self._resumeAt = _startingModSeq()
        self._loading = True
        try:
            with self._locked():
                pass
        except OSError as e:
            _log.warn("Could not read {path}: {error}", path=self._path, error=e)
            self.close()
            self.highest = self.floor = _startingModSeq()
        finally:
            self._loading = False

    def state(self) -> LogState | None:
        """
        Where the log stands, for a saved index: C{None} when it is not
        open or memory holds changes the file does not have.
        """
        if self._fd is None or self._inode is None or self._unwritten or self._busy:
            return None
        expunged = list(self._expunged.items())
        for uid, modseq in self._foreignExpunged.items():
            if uid not in self._expunged:
                expunged.append((uid, modseq))
        return LogState(
            self._inode,
            self._offset,
            self._lines,
            self._diskHighest,
            self.floor,
            self._topUid,
            array.array("q", [uid for uid, _ in expunged]),
            array.array("q", [modseq for _, modseq in expunged]),
        )

    def resume(self, uidValidity: int, state: LogState) -> bool:
        """
        Take up the log where L{state} left it, reading only the lines
        appended since (their message states are to be claimed, as after
        L{load}); C{False}, with nothing done, when the file is not the
        one it was or is shorter (L{load} it then).
        """
        self.close()
        try:
            fd = os.open(self._pathText, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            status = os.fstat(fd)
            header = os.pread(fd, 256, 0).partition(b"\n")[0]
        except OSError:
            os.close(fd)
            raise
        self._uidValidity = uidValidity
        self._logged, self._foreignExpunged = {}, {}
        self._latest, self._unwritten = {}, {}
        self.highest = self.floor = self._diskHighest = self._topUid = 0
        if (
            (status.st_dev, status.st_ino) != state.inode
            or status.st_size < state.offset
            or not self._readHeader(header)
        ):
            os.close(fd)
            return False
        self._fd, self._inode = fd, state.inode
        self._offset, self._lines = state.offset, state.lines
        self.highest = max(self.highest, state.highest)
        self._diskHighest = max(self._diskHighest, state.highest)
        self.floor = max(self.floor, state.floor)
        self._topUid = state.topUid
        self._expunged = dict(zip(state.expungedUids, state.expungedModSeqs, strict=True))
        # As after a load: lines lost past what was saved (a power cut)
        # must not have their mod-sequences handed out again.
        self._resumeAt = _startingModSeq()
        known = set(self._expunged)
        self._loading = True
        try:
            with self._locked():
                pass
        finally:
            self._loading = False
        if self._inode != state.inode:
            # Replaced (compacted, or started over when damaged) meanwhile:
            # what was saved no longer describes it.
            return False
        self._resumedUids = [*self._logged, *(uid for uid in self._expunged if uid not in known)]
        return True

    def resumedUids(self) -> list[int]:
        """
        The UIDs the lines read by L{resume} speak of: a message state to
        claim, or an expunge (of a message that may still be there).
        """
        return self._resumedUids

    def _replaced(self) -> bool:
        status = os.stat(self._pathText)
        return (status.st_dev, status.st_ino) != self._inode

    @contextlib.contextmanager
    def _locked(self) -> Iterator[int]:
        """
        Hold the log's lock, with everything others wrote read in; a log
        replaced by another process's compaction is read again from the
        start.
        """
        _openLogs.enter(self)
        self._busy += 1
        try:
            yield from self._lockedAttempts()
        finally:
            self._busy -= 1
            _openLogs.leave(self)

    def _lockedAttempts(self) -> Iterator[int]:
        for _attempt in range(_REOPENS):
            if self._fd is None:
                self._open()
            assert self._fd is not None
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                if self._replaced():
                    self.close()
                    continue
            except FileNotFoundError:
                self.close()
                continue
            except BaseException:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
                raise
            try:
                self._readTail()
                yield self._fd
            finally:
                if self._fd is not None:
                    fcntl.flock(self._fd, fcntl.LOCK_UN)
            return
        raise OSError(f"{self._path} keeps being replaced")

    def _open(self) -> None:
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        status = os.fstat(fd)
        self._fd, self._inode = fd, (status.st_dev, status.st_ino)
        self._offset = self._lines = 0

    def _readTail(self) -> None:
        """Read complete lines past C{_offset}; start the log over if it is not ours."""
        assert self._fd is not None
        size = os.fstat(self._fd).st_size
        if size < self._offset:
            # Cut short or overwritten in place: what was read is gone.
            self._restart()
            return
        if size == self._offset:
            if size == 0:
                self._restart()
            return
        data = os.pread(self._fd, size - self._offset, self._offset)
        end = data.rfind(b"\n") + 1
        if end < len(data):
            # A writer died mid-line: cut its fragment off before appending.
            os.ftruncate(self._fd, self._offset + end)
        lines = data[:end].split(b"\n")[:-1]
        if self._offset == 0:
            if not lines or not self._readHeader(lines[0]):
                self._restart()
                return
            lines = lines[1:]
        try:
            self._apply(lines)
        except (ValueError, IndexError):
            self._restart()
            return
        self._offset += end
        self._lines += len(lines)

    def _readHeader(self, line: bytes) -> bool:
        fields = line.split(b" ")
        if b" ".join(fields[:2]) != _MAGIC:
            return False
        values: dict[bytes, int] = {}
        for item in fields[2:]:
            with contextlib.suppress(ValueError):
                values[item[:1]] = int(item[1:])
        if values.get(b"V") != self._uidValidity:
            return False
        self.highest = max(self.highest, values.get(b"H", 0))
        self._diskHighest = max(self._diskHighest, values.get(b"H", 0))
        self.floor = max(self.floor, values.get(b"F", 0))
        return True

    def _apply(self, lines: Iterable[bytes]) -> None:
        """
        Take in log lines.  Message states read while loading are claimed
        by the messages found; later ones are other processes' changes,
        which this process logs again under a new mod-sequence when it
        finds them on disk (a change it has not seen must not hide below a
        HIGHESTMODSEQ it already gave), and which a compaction keeps.
        """
        logged = self._logged if self._loading else self._latest
        expunged = self._expunged if self._loading else self._foreignExpunged
        highest = self._diskHighest
        top = 0
        for line in lines:
            modseq, uid, *rest = line.split(b" ")
            value = int(modseq)
            if uid.startswith(b"-"):
                number = int(uid[1:])
                logged.pop(number, None)
                expunged.pop(number, None)
                expunged[number] = value
            else:
                number = int(uid)
                logged[number] = (value, rest[0].decode("ascii") if rest else "")
            highest = max(highest, value)
            top = max(top, number)
        if self._loading:
            self._topUid = max(self._topUid, top)
        self._diskHighest = highest
        self.highest = max(self.highest, highest)

    def _restart(self) -> None:
        """Replace a missing, foreign or damaged log with a new, empty one."""
        self._logged, self._expunged = {}, {}
        self.highest = max(self.highest, _startingModSeq())
        self.floor = self.highest
        self._rewrite([])

    # Claiming what was read

    def claim(self, uid: int, letters: str) -> int:
        """
        The logged mod-sequence of a message found with these flag letters,
        or 0 when the log has no line for that state (it needs a new one).
        """
        logged = self._logged.pop(uid, None)
        if logged is not None and logged[1] == letters:
            return logged[0]
        return 0

    def claimMatching(self, uid: int, letters: str) -> int:
        """
        L{claim} when the log has these letters for C{uid}; else 0, and the
        line stays to be claimed with the letters the message turns out to
        have (a saved index may be older than the file).
        """
        logged = self._logged.get(uid)
        if logged is not None and logged[1] == letters:
            del self._logged[uid]
            return logged[0]
        return 0

    def hasExpunged(self, uid: int) -> bool:
        """Whether the log already records the expunge of C{uid}."""
        return uid in self._expunged

    def mayHaveLogged(self, uid: int) -> bool:
        """
        Whether the log has, or may once have had, a line for C{uid}: it
        has one, or one for a higher UID (an expunge a compaction forgot
        leaves none).  Kept lines are written before any later one, so a
        UID above every line is one a process gave out while it could not
        log, and stopped before it could.
        """
        return uid <= self._topUid or uid in self._logged or uid in self._expunged

    def forgetUnclaimed(self) -> list[int]:
        """
        Drop the states no message claimed and return their UIDs: messages
        expunged by a program that does not keep this log.
        """
        gone, self._logged = list(self._logged), {}
        return gone

    # Writing

    @property
    def unwritten(self) -> bool:
        """Whether changes are kept in memory that the file does not have yet."""
        return bool(self._unwritten)

    def append(self, changes: Sequence[tuple[int, str | None]], strict: bool = False) -> int:
        """
        Log new states (flag letters, or C{None} for an expunge) of messages
        under one new mod-sequence, after the lines kept in memory, and
        return it.  With no C{changes}, only the kept lines are written.

        When the log cannot be written: with C{strict} the error is raised
        (for a change not made yet, which the caller then makes first or
        refuses); otherwise, for a change already on disk, its line is kept
        in memory under a new mod-sequence, to be written by a later call.
        """
        try:
            with self._locked() as fd:
                # The first value after loading is at least the time: a log
                # that lost its last lines (a power cut) does not hand out
                # mod-sequences again that clients were already given.
                modseq = max(self.highest + 1, self._resumeAt)
                kept = list(self._unwritten.items())
                if kept and kept[0][1][0] <= self._diskHighest:
                    kept = [(uid, (modseq, letters)) for uid, (_, letters) in kept]
                written = kept + [(uid, (modseq, letters)) for uid, letters in changes]
                if not written:
                    return self.highest
                data = b"".join(_line(uid, value, letters) for uid, (value, letters) in written)
                try:
                    writeAll(fd, data)
                except OSError:
                    with contextlib.suppress(OSError):
                        os.ftruncate(fd, self._offset)
                    raise
                self._offset += len(data)
                self._lines += len(written)
                top = max(value for _, (value, _) in written)
                self.highest = max(self.highest, top)
                self._diskHighest = max(self._diskHighest, top)
                self._resumeAt = 0
                for uid, (_, letters) in written:
                    if letters is None:
                        self._latest.pop(uid, None)
                if kept:
                    self._unwritten = {}
                    _log.info(
                        "The mod-sequences of {path} kept in memory are written", path=self._path
                    )
        except OSError as e:
            if strict:
                if isDiskFull(e):
                    raise StoreFull(str(e)) from e
                raise
            if not changes:
                return self.highest
            if not self._unwritten:
                _log.warn(
                    "Could not log mod-sequences in {path}: {error}; kept in memory",
                    path=self._path,
                    error=e,
                )
            self.highest = max(self.highest + 1, self._resumeAt)
            self._resumeAt = 0
            modseq = self.highest
            for uid, letters in changes:
                self._unwritten.pop(uid, None)
                self._unwritten[uid] = (modseq, letters)
            self._raiseHeader()
        for uid, letters in changes:
            if letters is None:
                self._expunged.pop(uid, None)
                self._expunged[uid] = modseq
        return modseq

    def _raiseHeader(self) -> None:
        """
        Raise the header's C{H} to L{highest} by overwriting its digits in
        place, which needs no new block on most file systems (where it
        fails, or the digits do not fit, nothing is done): a process that
        starts before the kept lines are written starts above them.
        """
        try:
            with self._locked() as fd:
                header = os.pread(fd, 256, 0).partition(b"\n")[0]
                start = header.find(b" H") + 2
                end = header.find(b" ", start)
                digits = header[start:end] if start > 1 and end > start else b""
                new = b"%d" % self.highest
                if (
                    not header.startswith(_MAGIC + b" ")
                    or not digits.isdigit()
                    or len(digits) != len(new)
                    or int(digits) >= self.highest
                ):
                    return
                writer = os.open(self._pathText, os.O_WRONLY | os.O_CLOEXEC)
                try:
                    os.pwrite(writer, new, start)
                finally:
                    os.close(writer)
        except OSError as e:
            _log.debug("Could not raise the header of {path}: {error}", path=self._path, error=e)

    def needsCompaction(self, live: int) -> bool:
        """Whether the log holds many more lines than C{live} messages and the expunges kept."""
        return self._lines > 2 * (live + len(self._expunged)) + _SLACK

    def compact(self, states: Iterable[tuple[int, int, str]]) -> None:
        """
        Rewrite the log as C{states} (UID, mod-sequence, letters of every
        message as this process sees it) plus the expunges kept.  Where the
        log holds a newer line for a message (another process changed it
        since this one looked), that line is kept instead, as a reader of
        the whole log would take it; a message whose letters on disk differ
        from the line kept gets a new mod-sequence from the next process
        that loads the log.
        """
        with self._locked():
            expunged = self._expunged
            for uid, modseq in self._foreignExpunged.items():
                if expunged.get(uid, 0) < modseq:
                    expunged.pop(uid, None)
                    expunged[uid] = modseq
            self._foreignExpunged.clear()
            kept: list[tuple[int, int, str]] = []
            stillNewer: dict[int, tuple[int, str]] = {}
            for uid, modseq, letters in states:
                newer = self._latest.get(uid)
                if newer is not None and newer[0] > modseq:
                    modseq, letters = stillNewer[uid] = newer
                kept.append((uid, modseq, letters))
            self._rewrite(kept)
            # Still newer than what this process knows: kept for the next
            # compaction too, until the folder takes the change in.
            self._latest = stillNewer

    def _rewrite(self, states: list[tuple[int, int, str]]) -> None:
        """Replace the log file with a compacted one; the caller holds the lock."""
        expunged = self._expunged
        if len(expunged) > KEEP_EXPUNGED:
            dropped = list(expunged.items())[: len(expunged) - KEEP_EXPUNGED // 2]
            for uid, modseq in dropped:
                del expunged[uid]
                self.floor = max(self.floor, modseq)
        header = b"%s V%d H%d F%d\n" % (_MAGIC, self._uidValidity, self.highest, self.floor)
        body = [
            b"%d %d %s\n" % (modseq, uid, letters.encode("ascii"))
            for uid, modseq, letters in states
        ]
        body += [b"%d -%d\n" % (modseq, uid) for uid, modseq in expunged.items()]
        data = header + b"".join(body)
        temporary = self._path.with_name(f".{FILENAME}.{os.getpid()}.{time.monotonic_ns()}")
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC
        fd = os.open(temporary, flags, 0o600)
        try:
            writeAll(fd, data)
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.replace(temporary, self._path)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise
        old, self._fd = self._fd, fd
        status = os.fstat(fd)
        self._inode = (status.st_dev, status.st_ino)
        self._offset, self._lines = len(data), len(body)
        self._latest = {}
        # Everything memory held is in the new file: the states as the
        # caller sees them (or none, to be found anew) and the expunges.
        self._unwritten = {}
        self._diskHighest = max(self._diskHighest, self.highest)
        if old is not None:
            fcntl.flock(old, fcntl.LOCK_UN)
            os.close(old)

    # Queries

    def expungedSince(self, modseq: int) -> tuple[list[int], bool]:
        """
        The UIDs expunged after C{modseq}, ascending, and whether that is
        all of them (C{False} when C{modseq} is below the forgotten floor).
        """
        # Copied in one step: a folder's file work may log expunges in a
        # worker thread while a session asks this in the reactor thread.
        expunged = list(self._expunged.items())
        uids = sorted(uid for uid, value in expunged if value > modseq)
        return uids, modseq >= self.floor
