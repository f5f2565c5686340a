"""Suite-wide settings: cheap password hashing so logins don't dominate test time."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tmail.directory.passwords import cheapHasher, setHasher


@pytest.fixture(autouse=True, scope="session")
def _cheapPasswordHashing() -> Iterator[None]:
    previous = setHasher(cheapHasher())
    yield
    setHasher(previous)
