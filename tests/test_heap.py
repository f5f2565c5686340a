"""
A server process's startup objects are frozen out of garbage collection;
what serving makes is still collected.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from tmail.heap import freezeStartupObjects


class Cyclic:
    def __init__(self) -> None:
        self.me = self


@pytest.fixture
def frozen() -> Iterator[int]:
    try:
        yield freezeStartupObjects()
    finally:
        gc.unfreeze()


def test_the_objects_made_before_are_frozen(frozen: int) -> None:
    assert frozen > 1000
    # A frozen object freed by reference counting leaves the count.
    assert gc.get_freeze_count() > frozen * 0.9


def test_a_cycle_made_after_is_still_collected(frozen: int) -> None:
    made = Cyclic()
    gone = weakref.ref(made)
    del made
    gc.collect()
    assert gone() is None


def test_a_collection_walks_only_what_came_after(frozen: int) -> None:
    assert len(gc.get_objects()) < frozen
