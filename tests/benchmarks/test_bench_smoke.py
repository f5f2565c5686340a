"""The benchmark harness runs end to end at tiny sizes against tmail alone."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

RUN = Path(__file__).resolve().parents[2] / "benchmarks" / "run.py"

pytestmark = pytest.mark.e2e


def test_harness_smoke_run_prints_a_table_and_loses_nothing(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(RUN),
            "--size",
            "smoke",
            "--peers",
            "tmail",
            "--no-chart",
            "--results",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "tmail" in result.stdout and "median" in result.stdout
    record = json.loads((tmp_path / "latest.json").read_text())
    names = {s["name"] for s in record["scenarios"]}
    assert any(n.startswith("smtp") for n in names)
    for scenario in record["scenarios"]:
        (tmail,) = [p for p in scenario["peers"] if p["peer"] == "tmail"]
        assert tmail["skipped"] is None, scenario["name"]
        assert tmail["lost"] == 0, scenario["name"]
        assert tmail["median"] > 0, scenario["name"]
