"""
tmail's packages form layers: the foundation (errors, interfaces), then
configuration, stores, user directories and authentication, then realms,
delivery, the outbound queue, the protocol front ends, and last the
assembly (service, workers, command line).  A module imports only from
its own layer or those below, and no two packages import each other, so a
store or a realm can be read, tested and replaced without the front ends.

The imports that still break the rule are listed below with what they are
for; the list must stay exact, so one that goes away is struck from it.
"""

from __future__ import annotations

import ast
import functools
from collections import defaultdict
from pathlib import Path

import tmail

SOURCE = Path(tmail.__file__).parent

LAYERS: list[set[str]] = [
    {
        "tmail",
        "errors",
        "fsutil",
        "heap",
        "interfaces",
        "lineends",
        "steps",
        "changes",
        "clientaddress",
        "connections",
        "logobserver",
        "tlscert",
    },
    {"config", "tls", "store", "directory", "auth"},
    {"realm"},
    {"delivery"},
    {"queue"},
    {"smtp", "imap", "pop3"},
    {"service", "workers", "cli", "tap", "testing"},
]

#: Imports from a lower layer to a higher one still there: (importer, imported).
KNOWN_UPWARD: dict[tuple[str, str], str] = {}

#: Packages that still import each other, with what ties them.
KNOWN_CYCLES: dict[frozenset[str], str] = {
    frozenset({"service", "workers"}): "a worker process builds its services from service.py",
}


def layerOf(package: str) -> int:
    for number, layer in enumerate(LAYERS):
        if package in layer:
            return number
    raise AssertionError(f"tmail.{package} is in no layer: add it to LAYERS")


def packageOf(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "tmail"


@functools.cache
def imports() -> frozenset[tuple[str, str]]:
    """(importing module, imported module) for every import of tmail within tmail."""
    found = set()
    for path in SOURCE.rglob("*.py"):
        module = ".".join(("tmail", *path.relative_to(SOURCE).with_suffix("").parts))
        module = module.removesuffix(".__init__")
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            found.update((module, name) for name in names if name.split(".")[0] == "tmail")
    return frozenset(found)


def test_every_package_is_in_a_layer() -> None:
    for path in SOURCE.iterdir():
        if (path.suffix == ".py" and path.stem != "__init__") or (path / "__init__.py").exists():
            layerOf(path.stem)


def test_no_module_imports_from_a_higher_layer() -> None:
    upward = {
        (importer, imported)
        for importer, imported in imports()
        if layerOf(packageOf(imported)) > layerOf(packageOf(importer))
    }
    assert upward - KNOWN_UPWARD.keys() == set(), "imports from a higher layer"
    assert KNOWN_UPWARD.keys() - upward == set(), "no longer there: strike from KNOWN_UPWARD"


def test_no_two_packages_import_each_other() -> None:
    edges: defaultdict[str, set[str]] = defaultdict(set)
    for importer, imported in imports():
        a, b = packageOf(importer), packageOf(imported)
        if a != b and "tmail" not in (a, b):
            edges[a].add(b)
    cycles = {frozenset({a, b}) for a in edges for b in edges[a] if a in edges.get(b, ())}
    upwardCycles = {
        frozenset({packageOf(i), packageOf(m)})
        for i, m in KNOWN_UPWARD
        if packageOf(i) in edges.get(packageOf(m), ())
    }
    assert cycles - KNOWN_CYCLES.keys() - upwardCycles == set(), "packages importing each other"
    assert KNOWN_CYCLES.keys() - cycles == set(), "no longer there: strike from KNOWN_CYCLES"


def test_delivery_and_the_queue_know_no_front_end() -> None:
    """What the SMTP server and the queue share lives below both (no queue -> smtp import)."""
    for importer, imported in imports():
        if packageOf(importer) in {"delivery", "queue"}:
            assert packageOf(imported) not in {"smtp", "imap", "pop3"}, (importer, imported)


def test_no_module_uses_a_private_twisted_name() -> None:
    """
    tmail depends on Twisted's public API only, so a Twisted upgrade
    cannot break it in a private corner: no import of a private module or
    name, no private attribute of a Twisted module.
    """
    used = []
    for path in SOURCE.rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        twistedNames = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("twisted"):
                module = node.module or ""
                for alias in node.names:
                    twistedNames.add(alias.asname or alias.name)
                    if any(part.startswith("_") for part in module.split(".")) or (
                        alias.name.startswith("_")
                    ):
                        used.append(f"{path.name}: from {module} import {alias.name}")
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("twisted"):
                        twistedNames.add((alias.asname or alias.name).split(".")[0])
                        if any(part.startswith("_") for part in alias.name.split(".")):
                            used.append(f"{path.name}: import {alias.name}")
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in twistedNames
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                used.append(f"{path.name}:{node.lineno}: {node.value.id}.{node.attr}")
    assert used == []
