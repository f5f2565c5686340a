"""
Per-user quotas in the Maildir++ C{maildirsize} file, as Courier and
Dovecot's C{maildir} quota backend keep them.

The file sits in the Maildir's root.  Its first line holds the limits
(C{<bytes>S,<count>C}, either part optional, 0 or absent for no limit); every
further line is C{<bytes> <count>}, a change appended by a writer with one
C{O_APPEND} write, and the usage is the sum of those lines.  A delivery reads
the small file and appends one line: it never scans the folders.

The file is written again from a count of the messages themselves (every
folder's C{cur/} and C{new/}, sizes from the C{,S=} field of the file name,
C{stat} otherwise, Trash included as Dovecot counts it) when it is missing or
unreadable, longer than 5120 bytes, its limits differ from the configured
ones, or it shows the user over a limit and has more than one change line or
is older than 15 minutes (Dovecot's rules, so that a stale count does not
lock a user out).  The new file is written into C{maildirsize.lock} and
renamed over the old one, Dovecot's dot-lock, so the two never recount at
once; a writer that finds the lock taken uses its count without writing it.

Per-user limits come from Dovecot's userdb fields (C{quota_rule=*:storage=1G},
C{quota_rule2=*:messages=1000}); see L{limitsFromFields}.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from twisted.logger import Logger

from tmail.errors import OverQuota, StoreError, StoreFull
from tmail.interfaces import QuotaUsage
from tmail.store.dotlock import DotLock

__all__ = [
    "FILENAME",
    "MaildirQuota",
    "MaildirSize",
    "QuotaLimits",
    "folderUsage",
    "formatLimits",
    "formatSize",
    "humanSize",
    "limitsFromFields",
    "messageSize",
    "overrideFields",
    "parseLimits",
    "parseMaildirSize",
    "parseSize",
    "scanUsage",
    "userOverrides",
]

_log = Logger()

FILENAME = "maildirsize"

#: A longer file is recounted (the Courier and Dovecot limit).
MAX_FILE_SIZE = 5120

#: A count showing the user over quota is trusted for this long at most.
STALE_AFTER = 15 * 60

_UNITS = {"": 1, "B": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_SIZE = re.compile(r"\s*(\d+)\s*(?:([KMGT])(?:I?B)?|(B))?\s*", re.IGNORECASE)
_S_FIELD = re.compile(r",S=(\d+)(?=[:,]|\Z)")
_RULE_FIELD = re.compile(r"quota_rule(\d*)\Z")
_DELTA = re.compile(r"(-?\d+) +(-?\d+)\Z")


@dataclass(frozen=True, slots=True)
class QuotaLimits:
    """
    A user's limits; 0 means no limit, as in C{maildirsize} and Dovecot.

    @ivar storage: bytes of all messages together.
    @ivar messages: number of messages.
    """

    storage: int = 0
    messages: int = 0

    @property
    def unlimited(self) -> bool:
        return self.storage == 0 and self.messages == 0


def parseSize(text: str, unit: int = 1) -> int:
    """
    Bytes from C{"1G"}, C{"100M"}, C{"512k"}, C{"2048B"} or a plain number
    of C{unit} bytes.  Units are binary (1K = 1024) and case-insensitive,
    as in Dovecot; C{KB} and C{KiB} mean C{K}.  Raises C{ValueError}.
    """
    match = _SIZE.fullmatch(text)
    if match is None:
        raise ValueError(f"not a size: {text!r}")
    number, letter, byte = match.groups()
    if letter:
        return int(number) * _UNITS[letter.upper()]
    return int(number) * (1 if byte else unit)


def formatSize(size: int) -> str:
    """The exact size with the largest unit that divides it: C{1G}, C{1536K}, C{1000B}."""
    if size == 0:
        return "0"
    for letter in "TGMK":
        if size % _UNITS[letter] == 0:
            return f"{size // _UNITS[letter]}{letter}"
    return f"{size}B"


def humanSize(size: int) -> str:
    """A size for people: C{1.5 GiB}, C{12 KiB}, C{900 bytes}."""
    if size < 1024:
        return f"{size} bytes"
    for letter in "TGMK":
        if size >= _UNITS[letter]:
            value = size / _UNITS[letter]
            text = f"{value:.1f}".removesuffix(".0")
            return f"{text} {letter}iB"
    raise AssertionError(size)


def parseLimits(line: str) -> QuotaLimits:
    """
    The limits of a C{maildirsize} first line (C{1073741824S,1000C}).
    Parts that do not parse are ignored, as Dovecot does.
    """
    storage = messages = 0
    for part in line.strip().split(","):
        number, kind = part[:-1], part[-1:]
        if not number.isdigit():
            continue
        if kind == "S":
            storage = int(number)
        elif kind == "C":
            messages = int(number)
    return QuotaLimits(storage, messages)


def formatLimits(limits: QuotaLimits) -> str:
    """The first line Dovecot writes for C{limits}: C{<n>S} unless only a count is set."""
    parts = []
    if limits.storage or not limits.messages:
        parts.append(f"{limits.storage}S")
    if limits.messages:
        parts.append(f"{limits.messages}C")
    return ",".join(parts)


@dataclass(frozen=True, slots=True)
class MaildirSize:
    """A parsed C{maildirsize}: its limits line, the sums and how many change lines."""

    limits: QuotaLimits
    storage: int
    messages: int
    lines: int


def parseMaildirSize(data: bytes) -> MaildirSize | None:
    """
    Parse a whole C{maildirsize}; C{None} when it must be recounted: an
    unfinished last line, a change line that is not two integers, no change
    line at all, or negative sums.
    """
    if not data.endswith(b"\n"):
        return None
    try:
        lines = data.decode("ascii").split("\n")[:-1]
    except UnicodeDecodeError:
        return None
    if len(lines) < 2:
        return None
    storage = messages = 0
    for line in lines[1:]:
        match = _DELTA.match(line.strip())
        if match is None:
            return None
        storage += int(match.group(1))
        messages += int(match.group(2))
    if storage < 0 or messages < 0:
        return None
    return MaildirSize(parseLimits(lines[0]), storage, messages, len(lines) - 1)


def messageSize(directory: str, filename: str) -> int | None:
    """
    A message file's size: its C{,S=} field, else C{stat}; C{None} when the
    file is gone.
    """
    match = _S_FIELD.search(filename)
    if match is not None:
        return int(match.group(1))
    try:
        return os.stat(os.path.join(directory, filename)).st_size
    except FileNotFoundError:
        return None


def folderUsage(folder: Path) -> tuple[int, int]:
    """Bytes and count of the messages in one folder's C{cur/} and C{new/}."""
    storage = messages = 0
    for sub in ("cur", "new"):
        directory = os.path.join(folder, sub)
        try:
            names = os.listdir(directory)
        except (FileNotFoundError, NotADirectoryError):
            continue
        for name in names:
            if name.startswith("."):
                continue
            size = messageSize(directory, name)
            if size is not None:
                storage += size
                messages += 1
    return storage, messages


def scanUsage(root: Path) -> tuple[int, int]:
    """Bytes and count of every message in a Maildir++: INBOX and each C{.Folder}."""
    storage, messages = folderUsage(root)
    try:
        entries = list(os.scandir(root))
    except FileNotFoundError:
        return 0, 0
    for entry in entries:
        dotted = entry.name.startswith(".") and entry.name not in (".", "..")
        if dotted and entry.is_dir(follow_symlinks=True):
            more, count = folderUsage(Path(entry.path))
            storage += more
            messages += count
    return storage, messages


_warned: set[str] = set()


def _ruleLimits(rule: str) -> tuple[int | None, int | None] | None:
    """
    The storage and message limits a C{*:storage=1G:messages=10} rule sets
    (C{None} for one it leaves alone), or C{None} for a rule tmail does not
    apply: another mailbox mask, C{ignore}, C{backend=}, relative (C{+},
    C{-}) or percentage values.  C{storage} without a unit is in KiB and
    C{bytes} in bytes, as in Dovecot.
    """
    mask, colon, limits = rule.partition(":")
    if not colon or mask not in ("*", "?"):
        return None
    storage = messages = None
    try:
        for part in limits.split(":"):
            key, _, value = part.partition("=")
            if key == "storage":
                storage = parseSize(value, 1024)
            elif key == "bytes":
                storage = parseSize(value)
            elif key == "messages" and value.strip().isdigit():
                messages = int(value)
            else:
                return None
    except ValueError:
        return None
    return storage, messages


def _ruleFields(fields: Mapping[str, str]) -> list[tuple[int, str, str]]:
    """The C{quota_rule}, C{quota_rule2}, ... fields in Dovecot's order."""
    found = []
    for name, value in fields.items():
        match = _RULE_FIELD.match(name)
        if match is not None:
            found.append((int(match.group(1) or 1), name, value))
    return sorted(found)


def userOverrides(fields: Mapping[str, str]) -> tuple[int | None, int | None]:
    """
    The storage and message limits a user's C{*} quota rules set, C{None}
    where they set none.  Later rules override earlier ones, limit by limit.
    Rules tmail cannot apply are logged once and skipped.
    """
    storage = messages = None
    for _, name, value in _ruleFields(fields):
        limits = _ruleLimits(value)
        if limits is None:
            if value not in _warned:
                _warned.add(value)
                _log.warn(
                    "Quota rule {name}={value} is not applied: tmail applies only "
                    "*:storage=, *:bytes= and *:messages= with absolute values",
                    name=name,
                    value=value,
                )
            continue
        if limits[0] is not None:
            storage = limits[0]
        if limits[1] is not None:
            messages = limits[1]
    return storage, messages


def limitsFromFields(fields: Mapping[str, str], default: QuotaLimits) -> QuotaLimits:
    """C{default} with what the user's quota rules override."""
    storage, messages = userOverrides(fields)
    return QuotaLimits(
        default.storage if storage is None else storage,
        default.messages if messages is None else messages,
    )


def overrideFields(
    fields: Mapping[str, str], storage: int | None, messages: int | None
) -> dict[str, str | None]:
    """
    The field changes (C{None} removes a field) that make a user's own
    limits C{storage} and C{messages} (C{None}: the configured default),
    written as C{quota_rule=*:storage=...} and C{quota_rule2=*:messages=...}
    (the next free numbers when rules for other mailboxes, which are kept,
    hold those names).  Dovecot replaces its configured C{quota_rule} with
    the user's, so the storage override keeps that name and a message
    override alone leaves it to the configured default.
    """
    changes: dict[str, str | None] = {}
    taken = set(fields)
    for _, name, value in _ruleFields(fields):
        if value.partition(":")[0] in ("*", "?"):
            changes[name] = None
            taken.discard(name)
    wanted = []
    if storage is not None:
        wanted.append((1, f"*:storage={formatSize(storage)}"))
    if messages is not None:
        wanted.append((2, f"*:messages={messages}"))
    for number, rule in wanted:
        while (name := "quota_rule" if number == 1 else f"quota_rule{number}") in taken:
            number += 1
        changes[name] = rule
        taken.add(name)
    return changes


class MaildirQuota:
    """
    The quota of one Maildir: limits from a callable (asked at every check,
    so changed settings apply at once), usage from C{maildirsize}.

    Methods may run in worker threads (a delivery's C{publish}); recounts
    within one process are serialized.
    """

    def __init__(self, root: Path, limits: Callable[[], QuotaLimits]) -> None:
        self.root = Path(root)
        self.path = self.root / FILENAME
        self._limits = limits
        self._recounting = threading.Lock()

    def __repr__(self) -> str:
        return f"<MaildirQuota {str(self.path)!r}>"

    def limits(self) -> QuotaLimits:
        return self._limits()

    def usage(self) -> QuotaUsage:
        """Usage and limits, recounting when the file cannot be trusted."""
        return self._usage(self._limits())

    def recalculate(self) -> QuotaUsage:
        """Recount from the messages and rewrite the file."""
        limits = self._limits()
        return self._report(limits, *self._recount(limits))

    def check(self, size: int, count: int = 1) -> None:
        """
        Raise L{OverQuota} when C{count} more messages of C{size} bytes in
        all would take the user over a limit.  Costs nothing without limits.
        """
        limits = self._limits()
        if limits.unlimited:
            return
        usage = self._usage(limits)
        resource = usage.refusal(size, count)
        if resource is not None:
            raise OverQuota(
                f"quota exceeded ({resource}): {usage.storage} bytes and "
                f"{usage.messages} messages used of "
                f"{limits.storage or 'unlimited'} bytes and "
                f"{limits.messages or 'unlimited'} messages",
                resource,
            )

    def record(self, size: int, count: int) -> None:
        """
        Append a change line when the file exists (a missing file is
        recounted when next read).  A write that fails removes the file
        rather than leave a wrong sum.  Never raises: the message it counts
        is already in place, and a delivery must not fail after that.
        """
        if size == 0 and count == 0:
            return
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        except FileNotFoundError:
            return
        except OSError as e:
            _log.warn("Cannot update {path}: {error}", path=self.path, error=e)
            return
        line = f"{size} {count}\n".encode("ascii")
        try:
            written = os.write(fd, line)
            if written != len(line):
                raise OSError(f"short write to {self.path}")
        except OSError as e:
            _log.warn("Cannot update {path}: {error}; recounting", path=self.path, error=e)
            with contextlib.suppress(OSError):
                os.unlink(self.path)
        finally:
            os.close(fd)

    def _usage(self, limits: QuotaLimits) -> QuotaUsage:
        current = self._read()
        if current is None or self._mustRecount(current[0], current[1], limits):
            return self._report(limits, *self._recount(limits))
        return self._report(limits, current[0].storage, current[0].messages)

    def _report(self, limits: QuotaLimits, storage: int, messages: int) -> QuotaUsage:
        return QuotaUsage(storage, messages, limits.storage or None, limits.messages or None)

    def _read(self) -> tuple[MaildirSize, float] | None:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as e:
            _log.warn("Cannot read {path}: {error}; recounting", path=self.path, error=e)
            return None
        try:
            status = os.fstat(fd)
            if status.st_size > MAX_FILE_SIZE:
                return None
            data = os.read(fd, MAX_FILE_SIZE + 1)
        except OSError as e:
            _log.warn("Cannot read {path}: {error}; recounting", path=self.path, error=e)
            return None
        finally:
            os.close(fd)
        if len(data) > MAX_FILE_SIZE:
            return None
        parsed = parseMaildirSize(data)
        return None if parsed is None else (parsed, status.st_mtime)

    def _mustRecount(self, current: MaildirSize, mtime: float, limits: QuotaLimits) -> bool:
        if current.limits != limits:
            return True
        over = (limits.storage and current.storage > limits.storage) or (
            limits.messages and current.messages > limits.messages
        )
        return bool(over) and (current.lines > 1 or mtime < time.time() - STALE_AFTER)

    def _signature(self) -> tuple[int, int, int] | None:
        try:
            status = os.stat(self.path)
        except FileNotFoundError:
            return None
        return status.st_ino, status.st_size, status.st_mtime_ns

    def _recount(self, limits: QuotaLimits) -> tuple[int, int]:
        """
        Count the messages and write the file.  A change line appended
        meanwhile means the count may have missed it: count again (up to
        three times).
        """
        with self._recounting:
            for _attempt in range(3):
                before = self._signature()
                storage, messages = scanUsage(self.root)
                if self._signature() == before:
                    break
            if not self.root.is_dir():
                return storage, messages
            lock = DotLock(self.path, timeout=0)
            try:
                lock.acquire()
            except (StoreError, OSError):
                return storage, messages
            try:
                lock.replace(f"{formatLimits(limits)}\n{storage} {messages}\n".encode("ascii"))
            except (StoreFull, OSError) as e:
                lock.release()
                _log.warn("Cannot write {path}: {error}", path=self.path, error=e)
            return storage, messages
