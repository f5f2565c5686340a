"""Every scenario, at full or quick size."""

from __future__ import annotations

import importlib

from harness.model import Scenario

#: modules under harness.load, each with C{scenarios(size) -> list[Scenario]}
LOAD_MODULES = ("smtp", "imap", "clientmix", "pop3", "idle")

#: how big a run is: "full" (the targets' sizes), "quick" (minutes), "smoke" (seconds)
SIZES = ("full", "quick", "smoke")


def allScenarios(size: str) -> list[Scenario]:
    found: list[Scenario] = []
    for name in LOAD_MODULES:
        module = importlib.import_module(f"harness.load.{name}")
        found.extend(module.scenarios(size))
    return found
