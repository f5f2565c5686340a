"""
How long the fuzzing runs.  C{FUZZ_PROFILE=quick} (the default, inside
C{make test}): few, small, derandomized inputs, the same on every run, so the
suite stays fast and stable.  C{FUZZ_PROFILE=long} (C{make fuzz}): random
inputs, many and long, with failures kept in C{.hypothesis/} at the top of
the checkout and replayed first next time.  C{FUZZ_EXAMPLES} sets the number
of inputs per test and C{FUZZ_SCALE} how long inputs grow, in either profile.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis.database import DirectoryBasedExampleDatabase

PROFILE = os.environ.get("FUZZ_PROFILE", "quick")
LONG = PROFILE == "long"
#: How much longer inputs may grow than in the quick run.
SCALE = int(os.environ.get("FUZZ_SCALE", "10" if LONG else "1"))
_EXAMPLES = os.environ.get("FUZZ_EXAMPLES")
#: Inputs per test before L{fuzzSettings}' share: the long run's default
#: takes some minutes per test on a two-core machine.
EXAMPLES = int(_EXAMPLES) if _EXAMPLES else (20_000 if LONG else 60)
DATABASE = Path(__file__).resolve().parents[2] / ".hypothesis" / "fuzz"


def fuzzSettings(share: float = 1.0) -> Callable[[Any], Any]:
    """Hypothesis settings for one fuzzing test: C{share} of L{EXAMPLES} inputs."""
    return settings(
        max_examples=max(1, int(EXAMPLES * share)),
        deadline=None,
        derandomize=not LONG,
        database=DirectoryBasedExampleDatabase(str(DATABASE)) if LONG else None,
        suppress_health_check=list(HealthCheck),
        print_blob=LONG,
    )
