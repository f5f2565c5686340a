"""A small tmpfs mounted for a test: a disk that really fills up."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def smallDisk(mountPoint: Path, size: str) -> Iterator[Path]:
    """
    Mount a tmpfs of C{size} (C{"512k"}, C{"1m"}) on C{mountPoint} (made if
    missing) for the block, and unmount it after; skip the test where
    mounting is not allowed.
    """
    mountPoint.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(mountPoint)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield mountPoint
    finally:
        subprocess.run(["umount", "-l", str(mountPoint)], check=False)


def fill(disk: Path, name: str = "filler") -> Path:
    """Fill the mounted C{disk} to the last byte with one file; unlink it to free the space."""
    filler = disk / name
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        while True:
            try:
                os.write(fd, b"\0" * 4096)
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                break
    finally:
        os.close(fd)
    return filler
