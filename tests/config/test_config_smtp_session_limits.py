"""
The session limits of C{[smtp]}, C{[submission]} and C{[lmtp]}: deadlines,
the junk command limit, the greeting pause and its checks, the free space
kept: their per-section defaults and what is refused.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tmail.config.loader import loadSettings
from tmail.config.schema import MiB, Settings
from tmail.errors import ConfigError

SECTIONS = (
    '[smtp]\nlisten = ["tcp:25"]\n{smtp}\n'
    '[submission]\nlisten = ["tcp:587"]\n'
    '[lmtp]\nlisten = ["tcp:24"]\n'
)


def load(folder: Path, smtp: str = "") -> Settings:
    path = folder / "tmail.toml"
    path.write_text(SECTIONS.format(smtp=smtp))
    return loadSettings(path)


def test_the_mx_screens_clients_and_submission_and_lmtp_do_not(tmp_path: Path) -> None:
    s = load(tmp_path)
    assert s.smtp is not None and s.submission is not None and s.lmtp is not None
    assert (s.smtp.greet_pause, s.smtp.early_talkers, s.smtp.unauth_pipelining) == (
        1.0,
        "reject",
        "reject",
    )
    for other in (s.submission, s.lmtp):
        assert (other.greet_pause, other.early_talkers, other.unauth_pipelining) == (
            0.0,
            "allow",
            "allow",
        )
    for section in (s.smtp, s.submission, s.lmtp):
        assert (
            section.command_deadline,
            section.min_data_rate,
            section.junk_command_limit,
            section.min_free_space,
        ) == (60.0, 500, 100, 0)


def test_every_limit_can_be_set(tmp_path: Path) -> None:
    s = load(
        tmp_path,
        "command_deadline = 10\nmin_data_rate = 2000\njunk_command_limit = 5\n"
        'greet_pause = 0\nearly_talkers = "allow"\nunauth_pipelining = "allow"\n'
        'min_free_space = "2G"\n',
    )
    assert s.smtp is not None
    assert (
        s.smtp.command_deadline,
        s.smtp.min_data_rate,
        s.smtp.junk_command_limit,
        s.smtp.greet_pause,
        s.smtp.early_talkers,
        s.smtp.unauth_pipelining,
        s.smtp.min_free_space,
    ) == (10.0, 2000, 5, 0.0, "allow", "allow", 2048 * MiB)


@pytest.mark.parametrize(
    ("line", "key", "problem"),
    [
        ("command_deadline = 0", "smtp.command_deadline", "must be positive"),
        ("min_data_rate = 0", "smtp.min_data_rate", "must be positive"),
        ("min_data_rate = 1.5", "smtp.min_data_rate", "expected an integer, got float 1.5"),
        ("junk_command_limit = 0", "smtp.junk_command_limit", "must be positive"),
        ("greet_pause = -1", "smtp.greet_pause", "must not be negative"),
        ('early_talkers = "drop"', "smtp.early_talkers", "must be one of reject, allow"),
        ("unauth_pipelining = true", "smtp.unauth_pipelining", "expected a string"),
        ("min_free_space = -1", "smtp.min_free_space", "must not be negative"),
        ('min_free_space = "lots"', "smtp.min_free_space", 'expected a size such as "500M"'),
    ],
)
def test_bad_values_are_refused(tmp_path: Path, line: str, key: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, line)
    assert info.value.key == key
    assert info.value.problem.startswith(problem)
