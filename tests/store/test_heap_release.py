"""
Memory a large piece of work freed goes back to the system when the C
library can be asked (glibc's C{malloc_trim}): a server that indexed a
large folder once does not hold what the indexing freed for the rest of its
life.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tmail.store.heap import releaseFreedMemory


def residentBytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_freed_memory_scattered_among_live_objects_goes_back_to_the_system() -> None:
    if not releaseFreedMemory():
        pytest.skip("this C library has no malloc_trim")
    # 1 KiB objects come from malloc; one in 64 stays alive, so the heap
    # cannot simply shrink from its top when the others are freed.
    pieces = [bytes(1024) + bytes([n % 256]) for n in range(150_000)]
    kept = pieces[::64]
    before = residentBytes()
    del pieces
    held = residentBytes()
    assert releaseFreedMemory()
    after = residentBytes()
    assert held > before - 50_000_000, "the C library gave the memory back by itself"
    assert held - after > 60_000_000
    assert len(kept) == len(range(0, 150_000, 64))
