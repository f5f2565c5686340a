"""Run a scenario against every peer in interleaved rounds (A, B, A, B...)."""

from __future__ import annotations

import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

from harness.model import Measurement, Peer, Scenario, users
from harness.processes import Running


@dataclass
class PeerResult:
    """Every round of one scenario for one peer, or why it was skipped."""

    peer: str
    rounds: list[Measurement] = field(default_factory=list)
    skipped: str | None = None

    def values(self, scenario: Scenario) -> list[float]:
        return [scenario.value(m) for m in self.rounds]

    def median(self, scenario: Scenario) -> float:
        return statistics.median(self.values(scenario)) if self.rounds else float("nan")

    @property
    def lost(self) -> int:
        return sum(m.lost for m in self.rounds)

    @property
    def cpuMsPerOp(self) -> float:
        ops = sum(m.ops for m in self.rounds)
        return 1000 * sum(m.cpuSeconds for m in self.rounds) / ops if ops else float("nan")


@dataclass
class ScenarioResult:
    scenario: Scenario
    peers: list[PeerResult]


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def runScenario(
    scenario: Scenario, peers: list[Peer], rounds: int, workdir: Path
) -> ScenarioResult:
    results: list[PeerResult] = []
    running: list[tuple[PeerResult, Running]] = []
    try:
        for peer in peers:
            result = PeerResult(peer.name)
            results.append(result)
            reason = peer.missing()
            if reason is None and not scenario.protocols <= peer.protocols:
                reason = "does not serve " + "/".join(sorted(scenario.protocols - peer.protocols))
            if reason is not None:
                result.skipped = reason
                say(f"  {scenario.name}: {peer.name} skipped: {reason}")
                continue
            say(f"  {scenario.name}: starting {peer.name}")
            server = peer.start(
                workdir / scenario.name / peer.name, users(scenario.userCount), scenario.protocols
            )
            running.append((result, server))
            scenario.seed(server)
        for number in range(rounds):
            for result, server in running:
                m = scenario.measure(server)
                result.rounds.append(m)
                say(
                    f"  {scenario.name} round {number + 1}/{rounds} {result.peer}: "
                    f"{scenario.value(m):,.1f} {scenario.unit}, lost {m.lost}"
                )
    finally:
        for _, server in running:
            server.stop()
    return ScenarioResult(scenario, results)
