"""
Giving the memory a large piece of work freed back to the system.

Indexing a large folder from its directories (a hundred thousand file
names, listings and stat results) frees far more than the index it leaves,
but the C library keeps freed memory for the process: without a trim, a
server that indexed a large folder once holds tens of megabytes more for
the rest of its life.  Where the C library has C{malloc_trim} (glibc), it
is asked to give free memory back; elsewhere nothing is done.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable

__all__ = ["releaseFreedMemory"]


def _trimmer() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError, TypeError):
        return None
    return trim


_trim = _trimmer()


def releaseFreedMemory() -> bool:
    """Give memory the process freed back to the system; whether it could be asked."""
    if _trim is None:
        return False
    _trim(0)
    return True
