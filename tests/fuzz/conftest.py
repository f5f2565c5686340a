"""One template of mailboxes for every fuzzing test of the run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.mailworld import MailWorld, scratchRoot


@pytest.fixture(scope="session")
def world() -> Iterator[MailWorld]:
    made = MailWorld(scratchRoot())
    yield made
    made.close()
