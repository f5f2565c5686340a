"""
Time-bounded rounds of client sessions: several asyncio clients run sessions
back to back until a time budget is spent, counting what succeeded and what
was lost, while the server's CPU time is measured over the same span.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from harness.load.imapclient import ProtocolError
from harness.model import Measurement
from harness.processes import Running

#: What a broken or refusing server makes a session raise.
FAILURES = (
    OSError,
    EOFError,
    ProtocolError,
    TimeoutError,
    ValueError,
    asyncio.IncompleteReadError,
    asyncio.LimitOverrunError,
)

#: No single session may take longer than this.
SESSION_TIMEOUT = 60.0


@dataclass
class Tally:
    """Operations that succeeded, and those lost (refused, failed or never sent)."""

    ok: int = 0
    lost: int = 0
    sessions: int = 0


class Steps:
    """A session's planned operations; whatever an error cut short counts as lost."""

    def __init__(self, tally: Tally, planned: int) -> None:
        self.tally = tally
        self.left = planned

    def count(self, ok: bool) -> bool:
        self.left -= 1
        if ok:
            self.tally.ok += 1
        else:
            self.tally.lost += 1
        return ok


@contextlib.contextmanager
def counting(tally: Tally, planned: int) -> Iterator[Steps]:
    """Count a session's operations into C{tally}; a failure ends the session, not the round."""
    steps = Steps(tally, planned)
    try:
        yield steps
    except FAILURES:
        pass
    finally:
        tally.lost += max(steps.left, 0)


@dataclass(frozen=True)
class Budget:
    """Clients start sessions for C{seconds}, each at least one and at most C{maxSessions}."""

    seconds: float
    maxSessions: int


class Client(Protocol):
    """One simulated client: untimed C{open}/C{close}, timed C{session}s in between."""

    async def open(self, tally: Tally) -> None: ...

    async def session(self, number: int, tally: Tally) -> None: ...

    async def close(self) -> None: ...


async def _runSessions(client: Client, tally: Tally, budget: Budget) -> None:
    loop = asyncio.get_running_loop()
    stopAt = loop.time() + budget.seconds
    for number in range(budget.maxSessions):
        if number and loop.time() >= stopAt:
            return
        # A session cut short by the timeout has counted its losses already.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(SESSION_TIMEOUT):
                await client.session(number, tally)
        tally.sessions += 1


def timedRound(server: Running, clients: Sequence[Client], budget: Budget) -> Measurement:
    """Open every client, time their sessions, close them; one L{Measurement}."""
    tally = Tally()

    async def run() -> tuple[float, float]:
        async with asyncio.timeout(SESSION_TIMEOUT + len(clients)):
            await asyncio.gather(*(c.open(tally) for c in clients))
        cpu = server.cpuSeconds()
        start = time.perf_counter()
        try:
            async with asyncio.timeout(budget.seconds + 2 * SESSION_TIMEOUT):
                await asyncio.gather(*(_runSessions(c, tally, budget) for c in clients))
            return time.perf_counter() - start, server.cpuSeconds() - cpu
        finally:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(SESSION_TIMEOUT):
                    await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)

    seconds, cpuSeconds = asyncio.run(run())
    return Measurement(
        ops=tally.ok,
        seconds=seconds,
        cpuSeconds=cpuSeconds,
        lost=tally.lost,
        extra={"sessions": tally.sessions},
    )
