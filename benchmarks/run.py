"""
Run tmail and its peers side by side under the same loads and print one table.

    python benchmarks/run.py [--size full|quick|smoke] [--peers tmail,dovecot] [--only smtp]

Results go to benchmarks/results/ (JSON, and a PNG chart of the ratios).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harness import report  # noqa: E402
from harness.peers import allPeers  # noqa: E402
from harness.peers.tmail import PROFILE_ENV  # noqa: E402
from harness.runner import runScenario, say  # noqa: E402
from harness.scenarios import SIZES, allScenarios  # noqa: E402


def raiseFileLimit() -> None:
    """Idle-connection scenarios need many descriptors (ours and the servers')."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--size", choices=SIZES, default="full")
    parser.add_argument("--rounds", type=int, default=None, help="rounds per scenario")
    parser.add_argument("--peers", default="", help="comma-separated peer names (default: all)")
    parser.add_argument("--only", default="", help="scenario name prefixes, comma-separated")
    parser.add_argument("--results", type=Path, default=HERE / "results")
    parser.add_argument("--no-chart", action="store_true")
    parser.add_argument(
        "--profile-tmail",
        type=Path,
        default=None,
        metavar="DIR",
        help="run tmail under cProfile, stats to DIR (slows tmail down)",
    )
    args = parser.parse_args(argv)
    if args.profile_tmail is not None:
        os.environ[PROFILE_ENV] = str(args.profile_tmail.resolve())
    raiseFileLimit()
    rounds = args.rounds or {"full": 5, "quick": 3, "smoke": 1}[args.size]
    peers = allPeers()
    if args.peers:
        wanted = set(args.peers.split(","))
        peers = [p for p in peers if p.name in wanted]
    else:
        peers = [p for p in peers if not getattr(p, "optional", False)]
    scenarios = allScenarios(args.size)
    if args.only:
        prefixes = tuple(args.only.split(","))
        scenarios = [s for s in scenarios if s.name.startswith(prefixes)]
    results = []
    with tempfile.TemporaryDirectory(prefix="tmail-bench-") as scratch:
        for scenario in scenarios:
            say(f"scenario {scenario.name}")
            results.append(runScenario(scenario, peers, rounds, Path(scratch)))
    print(report.table(results))
    path = report.write(results, args.results, args.size != "full", drawChart=not args.no_chart)
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
