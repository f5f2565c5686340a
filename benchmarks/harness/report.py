"""The results table, the JSON record and the chart of ratios."""

from __future__ import annotations

import json
import math
import platform
import time
from pathlib import Path

from harness.runner import ScenarioResult

REFERENCE = "tmail"


def _fmt(value: float) -> str:
    if math.isnan(value):
        return "-"
    if value >= 100:
        return f"{value:,.0f}"
    # Three significant digits for sub-second timings, which two decimals would round to 0.
    return f"{value:,.2f}" if value >= 1 or value == 0 else f"{value:.3g}"


def ratio(result: ScenarioResult, peer: str) -> float:
    """tmail's median over the peer's, turned so that > 1 means tmail is better."""
    scenario = result.scenario
    values = {p.peer: p.median(scenario) for p in result.peers if p.rounds}
    if REFERENCE not in values or peer not in values or not values[peer] or not values[REFERENCE]:
        return float("nan")
    r = values[REFERENCE] / values[peer]
    return r if scenario.higherIsBetter else 1 / r


def table(results: list[ScenarioResult]) -> str:
    lines = [
        f"{'scenario':<28} {'server':<9} {'median':>12} {'min-max':>23} {'unit':<9}"
        f" {'cpu ms/op':>9} {'lost':>5} {'tmail vs':>9}",
    ]
    for result in results:
        scenario = result.scenario
        for p in result.peers:
            if p.skipped:
                lines.append(f"{scenario.name:<28} {p.peer:<9} skipped: {p.skipped}")
                continue
            values = p.values(scenario)
            spread = f"{_fmt(min(values))}-{_fmt(max(values))}"
            value = ratio(result, p.peer)
            r = "" if p.peer == REFERENCE else "-" if math.isnan(value) else f"{value:.2f}x"
            lines.append(
                f"{scenario.name:<28} {p.peer:<9} {_fmt(p.median(scenario)):>12} {spread:>23}"
                f" {scenario.unit:<9} {_fmt(p.cpuMsPerOp):>9} {p.lost:>5} {r:>9}"
            )
    lines.append("'tmail vs' > 1 means tmail did better (higher rate or lower time/memory).")
    return "\n".join(lines)


def record(results: list[ScenarioResult], quick: bool) -> dict[str, object]:
    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "quick": quick,
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": __import__("os").cpu_count(),
        },
        "scenarios": [
            {
                "name": r.scenario.name,
                "unit": r.scenario.unit,
                "higher_is_better": r.scenario.higherIsBetter,
                "peers": [
                    {
                        "peer": p.peer,
                        "skipped": p.skipped,
                        "values": p.values(r.scenario),
                        "median": None if p.skipped else p.median(r.scenario),
                        "cpu_ms_per_op": None if p.skipped else p.cpuMsPerOp,
                        "lost": p.lost,
                        "extra": [m.extra for m in p.rounds],
                        "ratio": None if p.peer == REFERENCE or p.skipped else ratio(r, p.peer),
                    }
                    for p in r.peers
                ],
            }
            for r in results
        ],
    }


def chart(results: list[ScenarioResult], path: Path) -> bool:
    """A bar chart of tmail's ratio against each peer; C{False} without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    labels, values = [], []
    for r in results:
        for p in r.peers:
            if p.peer != REFERENCE and p.rounds:
                value = ratio(r, p.peer)
                if not math.isnan(value):
                    labels.append(f"{r.scenario.name}\nvs {p.peer}")
                    values.append(value)
    if not values:
        return False
    fig, ax = plt.subplots(figsize=(max(6, len(values) * 1.1), 4.5))
    colors = ["tab:green" if v >= 1 else "tab:red" for v in values]
    ax.bar(range(len(values)), values, color=colors)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(values)), labels, rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("tmail vs peer (>1: tmail better)")
    ax.set_title("tmail against its peers, same machine, same load")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write(results: list[ScenarioResult], folder: Path, quick: bool, drawChart: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = folder / f"bench-{stamp}.json"
    data = json.dumps(record(results, quick), indent=2, default=float)
    path.write_text(data)
    (folder / "latest.json").write_text(data)
    if drawChart and chart(results, folder / f"bench-{stamp}.png"):
        (folder / "latest.png").write_bytes((folder / f"bench-{stamp}.png").read_bytes())
    return path
