"""
How long one step of a long piece of work may run.

Every session shares one reactor thread, so a command over thousands of
messages or folders (STORE, COPY, EXPUNGE, LIST-STATUS, RENAME of INBOX)
runs as a generator of steps that a L{twisted.internet.task.Cooperator}
interleaves with everyone else's work.  A step ends when a L{StepBudget}
says so: after a few milliseconds or a fixed number of items, whichever
comes first.  The cooperator of L{sharedCooperator} hands the reactor
back after L{TURN} of steps, not Twisted's 10 ms: an answer that waits for
the store (a NOOP looking for new mail, a FETCH opening a file) crosses
the reactor a few times, and each crossing waits for one turn.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from twisted.internet import task

#: How long a cooperator runs steps before the reactor serves the others.
TURN = 0.003


class _TurnEnds:
    """A cooperator's turn: over after L{TURN} seconds."""

    def __init__(self) -> None:
        self._end = time.perf_counter() + TURN

    def __call__(self) -> bool:
        return time.perf_counter() >= self._end


def sharedCooperator() -> task.Cooperator:
    """A cooperator whose turns last L{TURN}, for the long commands of every session."""
    return task.Cooperator(terminationPredicateFactory=_TurnEnds)


class StepBudget:
    """Counts the items of a step and says when the step has done enough."""

    #: The time one step works before the others get their turn.
    SECONDS = 0.002
    #: The items one step handles at most.
    ITEMS = 1024

    def __init__(
        self,
        seconds: float | None = None,
        items: int | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._seconds = self.SECONDS if seconds is None else seconds
        self._items = self.ITEMS if items is None else items
        self._clock = clock
        self._count = 0
        self._deadline = clock() + self._seconds

    def spent(self) -> bool:
        """
        Count one item done; true when the step should end here (the
        budget then starts afresh for the next step).
        """
        self._count += 1
        if self._count < self._items and self._clock() < self._deadline:
            return False
        self._count = 0
        self._deadline = self._clock() + self._seconds
        return True
