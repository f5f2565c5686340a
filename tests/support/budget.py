"""
A per-input budget of wall time and memory for fuzzing: whatever one input
makes the server do must finish within it.  Memory is the peak of what
Python allocated while the input ran (C{tracemalloc}), above what was
allocated before it.

The defaults are generous for a loaded two-core machine: a server that is
linear in its input with explicit limits stays far below them, while a
quadratic parser or an unbounded buffer does not.  C{FUZZ_TIME_BUDGET}
(seconds) and C{FUZZ_MEMORY_BUDGET} (MiB) override them.
"""

from __future__ import annotations

import os
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

MiB = 1024 * 1024


def _env(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


@dataclass(frozen=True)
class Budget:
    """What one input may cost: C{seconds} of wall time, C{memory} bytes of peak allocation."""

    seconds: float = field(default_factory=lambda: _env("FUZZ_TIME_BUDGET", 2.0))
    memory: int = field(default_factory=lambda: int(_env("FUZZ_MEMORY_BUDGET", 48) * MiB))


@dataclass
class Spent:
    """What one input cost."""

    seconds: float = 0.0
    memory: int = 0


class OverBudget(AssertionError):
    """One input took more time or memory than its budget."""


@contextmanager
def measured(budget: Budget, what: str) -> Iterator[Spent]:
    """
    Measure the block; raise L{OverBudget} naming C{what} when it went over
    C{budget}.  Memory is traced only while the block runs (tracing slows
    everything down, input generation too).
    """
    started_tracing = not tracemalloc.is_tracing()
    if started_tracing:
        tracemalloc.start(1)
    baseline = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    spent = Spent()
    began = time.perf_counter()
    try:
        yield spent
    finally:
        spent.seconds = time.perf_counter() - began
        spent.memory = max(0, tracemalloc.get_traced_memory()[1] - baseline)
        if started_tracing:
            tracemalloc.stop()
    if spent.seconds > budget.seconds:
        raise OverBudget(f"{what}: {spent.seconds:.2f} s, over the budget of {budget.seconds} s")
    if spent.memory > budget.memory:
        raise OverBudget(
            f"{what}: peak {spent.memory / MiB:.1f} MiB allocated,"
            f" over the budget of {budget.memory / MiB:.0f} MiB"
        )
