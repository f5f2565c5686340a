"""
Defects the fuzzing harness finds whose fixes have not landed yet.

While a defect is listed here, the strategies keep away from the inputs
that show it (so the fuzzing tests stay green and keep looking for other
defects), and its regression test in C{tests/fuzz/test_fuzz_known.py}
expects it to fail (C{xfail(strict=True)}).  When the fix lands, that test
passes unexpectedly and so fails: remove the entry, and the strategies go
back to generating the whole class of input.
"""

from __future__ import annotations

import pytest

PENDING: dict[str, str] = {}


def isPending(name: str) -> bool:
    assert name in PENDING or name in _LANDED, name
    return name in PENDING


def xfailWhilePending(name: str) -> pytest.MarkDecorator:
    """Expect the regression test of C{name} to fail while its fix is pending."""
    return pytest.mark.xfail(isPending(name), reason=PENDING.get(name, ""), strict=True)


#: Names of defects whose fixes landed (kept so old names still resolve).
_LANDED: frozenset[str] = frozenset(
    {
        "list-wildcards",
        "sequence-sets",
        "search-nesting",
        "mime-depth",
        "status-repr",
        "literal-total",
    }
)
