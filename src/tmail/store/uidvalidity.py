"""
Dovecot's C{dovecot-uidvalidity}: the last UIDVALIDITY handed out under one
mail root, so a folder that is deleted and created again, or whose uidlist
is lost, never gets a UIDVALIDITY it had before (RFC 3501 2.3.1.1) — even
within the second a time-based value would repeat.

The file holds the value as eight hex digits; an empty marker file
C{dovecot-uidvalidity.<value>} sits beside it, which Dovecot renames to
claim the next value without a lock.  tmail takes the value under the
file's dot-lock, then moves the marker along, so either server continues
above what the other gave out.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from tmail.errors import StoreFull
from tmail.fsutil import fullDiskIsStoreFull
from tmail.store.dotlock import DotLock

FILENAME = "dovecot-uidvalidity"
_LIMIT = 0xFFFFFFFF


def _recorded(root: Path) -> int:
    """The highest value recorded in the file or by a marker; 0 when none."""
    best = 0
    with contextlib.suppress(FileNotFoundError, ValueError):
        best = int((root / FILENAME).read_text("ascii").strip(), 16)
    prefix = FILENAME + "."
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir(root):
            if name.startswith(prefix) and not name.endswith(".lock"):
                with contextlib.suppress(ValueError):
                    best = max(best, int(name[len(prefix) :], 16))
    return best if best <= _LIMIT else 0


def nextUidValidity(root: Path, notBefore: int = 0) -> int:
    """
    Claim a new UIDVALIDITY for a folder under C{root}: the current time,
    or more when that was handed out already (or is not above C{notBefore}).
    """
    with DotLock(root / FILENAME) as lock:
        previous = _recorded(root)
        value = max(int(time.time()), previous + 1, notBefore + 1)
        if value > _LIMIT:
            value = max(int(time.time()), notBefore + 1) & _LIMIT or 1
        marker = root / f"{FILENAME}.{value:08x}"
        oldMarker = root / f"{FILENAME}.{previous:08x}"
        with fullDiskIsStoreFull():
            try:
                os.rename(oldMarker, marker)
            except FileNotFoundError:
                marker.touch(mode=0o600)
        with contextlib.suppress(StoreFull):
            # On a full disk the marker alone records the value.
            lock.replace(b"%08x" % value)
    return value
