"""
Fill Maildirs directly, the same way for every server.

Files are named as Dovecot names them (C{<base>,S=<size>:2,<flags>}), so
each server reads one identical folder.  When a peer runs its mail processes
as another user (Dovecot), new files take the owner of the Maildir's C{cur/}.
"""

from __future__ import annotations

import os
import random
import shutil
import time
from pathlib import Path

SUBDIRS = ("cur", "new", "tmp")

_WORDS = (
    b"mail server queue folder index message delivery header body flag search "
    b"session account storage network client protocol literal mailbox"
).split()
_rng = random.Random(0)
#: Body text that messages take slices of: generating text per message would
#: make seeding a 100,000-message folder take minutes.
_LINES = [b" ".join(_rng.choices(_WORDS, k=10)) + b"\n" for _ in range(512)]
_TEXT = b"".join(_LINES)
_STARTS = [0]
for _line in _LINES[:-1]:
    _STARTS.append(_STARTS[-1] + len(_line))


def message(number: int, size: int, recipient: str = "user@bench.test") -> bytes:
    """A plain-text message of about C{size} bytes, the same for the same arguments."""
    sender = f"sender{number % 97}@example.org"
    head = (
        f"Return-Path: <{sender}>\n"
        f"From: Sender {number % 97} <{sender}>\n"
        f"To: <{recipient}>\n"
        f"Subject: Benchmark message {number}\n"
        f"Date: Mon, 06 Jan 2025 {number // 3600 % 24:02d}:{number // 60 % 60:02d}:"
        f"{number % 60:02d} +0000\n"
        f"Message-ID: <{number}.bench@example.org>\n"
        "MIME-Version: 1.0\n"
        "Content-Type: text/plain; charset=us-ascii\n\n"
    ).encode()
    need = max(size - len(head), 1)
    text = _TEXT * (need // len(_TEXT) + 2)
    start = _STARTS[number % len(_STARTS)]
    end = text.index(b"\n", start + need - 1) + 1
    return head + text[start:end]


def sizeFor(number: int, smallest: int = 1_000, largest: int = 12_000) -> int:
    """A message size between C{smallest} and C{largest}, skewed small like real mail."""
    rng = random.Random(-number)
    return int(smallest + (largest - smallest) * rng.random() ** 3)


def ensureMaildir(maildir: Path) -> None:
    for sub in SUBDIRS:
        (maildir / sub).mkdir(parents=True, exist_ok=True)


def _owner(maildir: Path) -> tuple[int, int] | None:
    """Who new files should belong to, if not the harness's own user."""
    st = (maildir / "cur").stat()
    if st.st_uid == os.getuid() and st.st_gid == os.getgid():
        return None
    return st.st_uid, st.st_gid


def fillMaildir(
    maildir: Path, count: int, unseenEvery: int = 2, sizes: tuple[int, int] = (1_000, 12_000)
) -> None:
    """
    Write C{count} messages of C{sizes} (smallest, largest) into
    C{maildir/cur}; every C{unseenEvery}-th one is unseen, the others are
    C{\\Seen} (every 50th also C{\\Flagged}).
    """
    ensureMaildir(maildir)
    owner = _owner(maildir)
    cur = maildir / "cur"
    stamp = 1_700_000_000
    for number in range(count):
        data = message(number, sizeFor(number, *sizes))
        flags = "" if number % unseenEvery == 0 else "S"
        if number % 50 == 1:
            flags = "F" + flags
        path = cur / f"{stamp + number}.M{number}P1Q1.bench,S={len(data)}:2,{flags}"
        with path.open("xb") as f:
            f.write(data)
        if owner:
            os.chown(path, *owner)


def linkMaildir(source: Path, target: Path) -> None:
    """Give C{target} the messages of C{source} as hard links (copies across filesystems)."""
    ensureMaildir(target)
    owner = _owner(target)
    for sub in ("cur", "new"):
        for entry in os.scandir(source / sub):
            destination = target / sub / entry.name
            try:
                os.link(entry.path, destination)
            except OSError:
                shutil.copyfile(entry.path, destination)
            if owner:
                os.chown(destination, *owner)


def backdate(maildir: Path, seconds: float = 3600) -> None:
    """
    Date C{cur/} and C{new/} back, as in a folder that has not changed for a
    while: servers rescan a directory whose mtime is too recent to trust.
    """
    stamp = time.time() - seconds
    for sub in ("cur", "new"):
        os.utime(maildir / sub, (stamp, stamp))


def deliverFile(maildir: Path, data: bytes) -> None:
    """Deliver as a local MDA does: write into C{tmp/}, then rename into C{new/}."""
    owner = _owner(maildir)
    name = f"{time.time_ns()}.M{os.getpid()}.bench"
    temporary = maildir / "tmp" / name
    temporary.write_bytes(data)
    if owner:
        os.chown(temporary, *owner)
    os.rename(temporary, maildir / "new" / name)
