"""
Suite-wide settings: cheap password hashing so logins don't dominate test
time, a scratch working directory (trial's C{mktemp} makes relative paths),
and UTC as the local time zone, in which INTERNALDATEs are shown.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from tmail.directory.passwords import cheapHasher, setHasher


@pytest.fixture(autouse=True, scope="session")
def _cheapPasswordHashing() -> Iterator[None]:
    previous = setHasher(cheapHasher())
    yield
    setHasher(previous)


@pytest.fixture(autouse=True, scope="session")
def _scratchWorkingDirectory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    previous = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("cwd"))
    yield
    os.chdir(previous)


@pytest.fixture(autouse=True, scope="session")
def _utcLocalTime() -> Iterator[None]:
    previous = os.environ.get("TZ")
    os.environ["TZ"] = "UTC0"
    time.tzset()
    yield
    if previous is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = previous
    time.tzset()
