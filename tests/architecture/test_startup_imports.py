"""
Everything a server process runs is imported when it starts, not at first
use: a module imported while serving is read, compiled (with no bytecode
cache, as under C{PYTHONDONTWRITEBYTECODE} or on a fresh install: tens of
milliseconds for the Maildir store) and run in the reactor thread, and
every session of that process waits for it.  So a function may import
only the reactor (installed before anything runs); the modules that only
assemble a server at start (the service, the worker and supervisor
processes, the command line) and the testing helpers may import as they
please.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import tmail

SOURCE = Path(tmail.__file__).parent

#: Modules run only while a server is assembled, or by tests and the command line.
STARTUP = ("tap", "service", "config.loader", "workers.worker", "workers.supervisor", "cli.")
#: What any function may import: the reactor, installed before any service starts.
ALWAYS_LOADED = {"twisted.internet.reactor"}


def moduleName(path: Path) -> str:
    return ".".join(path.relative_to(SOURCE).with_suffix("").parts)


def isTypeCheckingBlock(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def importsInFunctions(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, imported module) of each import inside a function, outside C{TYPE_CHECKING}."""

    def walk(node: ast.AST, inFunction: bool) -> Iterator[tuple[int, str]]:
        if isTypeCheckingBlock(node):
            return
        if inFunction and isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif inFunction and isinstance(node, ast.ImportFrom) and node.module != "__future__":
            for alias in node.names:
                if node.module == "twisted.internet" and alias.name == "reactor":
                    yield node.lineno, "twisted.internet.reactor"
                else:
                    yield node.lineno, node.module or ""
        inside = inFunction or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        for child in ast.iter_child_nodes(node):
            yield from walk(child, inside)

    return walk(tree, False)


def test_serving_code_imports_nothing_at_first_use() -> None:
    found = []
    for path in sorted(SOURCE.rglob("*.py")):
        name = moduleName(path)
        if name.startswith(STARTUP) or name.startswith("testing."):
            continue
        for line, imported in importsInFunctions(ast.parse(path.read_text(), str(path))):
            if imported not in ALWAYS_LOADED:
                found.append(f"{path.relative_to(SOURCE)}:{line} imports {imported}")
    assert not found, "imported while serving:\n" + "\n".join(found)


def test_the_check_finds_an_import_in_a_method() -> None:
    source = "class A:\n    def f(self):\n        from tmail.store import maildir\n"
    assert list(importsInFunctions(ast.parse(source))) == [(3, "tmail.store")]
