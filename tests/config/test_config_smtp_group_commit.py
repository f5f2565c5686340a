"""C{commit_threads} and C{commit_stall} of C{[smtp]}: defaults, set values, and what is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from tmail.config.loader import loadSettings
from tmail.config.schema import Settings
from tmail.errors import ConfigError


def load(folder: Path, smtp: str = "") -> Settings:
    path = folder / "tmail.toml"
    path.write_text(f'[smtp]\nlisten = ["tcp:25"]\n{smtp}\n[lmtp]\nlisten = ["tcp:24"]\n')
    return loadSettings(path)


def test_one_commit_thread_by_default(tmp_path: Path) -> None:
    s = load(tmp_path)
    assert s.smtp is not None and s.lmtp is not None
    for section in (s.smtp, s.lmtp):
        assert (section.commit_threads, section.commit_stall) == (1, 0.005)


def test_commit_threads_and_stall_can_be_set(tmp_path: Path) -> None:
    s = load(tmp_path, "commit_threads = 4\ncommit_stall = 0.5\n")
    assert s.smtp is not None
    assert (s.smtp.commit_threads, s.smtp.commit_stall) == (4, 0.5)


@pytest.mark.parametrize("line", ["commit_threads = 0", "commit_stall = 0", "commit_threads = 1.5"])
def test_no_commit_thread_or_stall_is_refused(tmp_path: Path, line: str) -> None:
    with pytest.raises(ConfigError):
        load(tmp_path, line)
