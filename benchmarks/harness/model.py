"""What peers and scenarios are, and what a measurement holds."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from harness.processes import Running

#: Every user a benchmark server gets; all share this cheap password.
PASSWORD = "bench-password"


def users(count: int, domain: str = "bench.test") -> list[str]:
    return [f"user{i}@{domain}" for i in range(count)]


class Peer(Protocol):
    """A mail server the harness can run on loopback with fresh data."""

    name: str
    protocols: frozenset[str]

    def missing(self) -> str | None:
        """Why this peer cannot run here (e.g. "not installed"), or C{None}."""

    def start(self, workdir: Path, userList: list[str], protocols: frozenset[str]) -> Running:
        """
        Start with fresh data under C{workdir}: the given users (password
        L{PASSWORD}, cheap hashing), listening on free loopback ports for
        C{protocols}.  For IMAP/POP3 scenarios the harness fills Maildirs
        through L{Running.maildirs} before starting, see L{Scenario.seed}.
        """


@dataclass
class Measurement:
    """
    One round of one scenario against one server.

    @ivar ops: operations completed (messages, commands, sessions).
    @ivar seconds: wall-clock time for them.
    @ivar cpuSeconds: the server's CPU time over the round.
    @ivar lost: operations that did not complete or whose result is missing
        (a message accepted but not on disk counts here).
    @ivar extra: other numbers worth a column (e.g. C{rss_mb}).
    """

    ops: int
    seconds: float
    cpuSeconds: float
    lost: int = 0
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.ops / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpuMsPerOp(self) -> float:
        return 1000 * self.cpuSeconds / self.ops if self.ops else 0.0


class Scenario(Protocol):
    """
    A load: C{name} and C{unit} label the table; C{higherIsBetter} says how
    to read the ratio; C{protocols} are what the server must listen for.
    """

    name: str
    unit: str
    higherIsBetter: bool
    protocols: frozenset[str]
    userCount: int

    def seed(self, server: Running) -> None:
        """Put the mail this scenario needs into a started server's Maildirs."""

    def measure(self, server: Running) -> Measurement:
        """Run one round against C{server} and measure it."""

    def value(self, m: Measurement) -> float:
        """The number the table compares (usually C{m.rate})."""
