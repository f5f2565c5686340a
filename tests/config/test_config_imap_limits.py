"""The [imap] limits on one command: defaults, parsing and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from tmail.config.loader import loadSettings
from tmail.config.schema import IMAPSettings
from tmail.errors import ConfigError

BASE = '[imap]\nlisten = ["tcp:143"]\n'


def load(tmp_path: Path, extra: str) -> IMAPSettings:
    path = tmp_path / "tmail.toml"
    path.write_text(BASE + extra)
    imap = loadSettings(path).imap
    assert imap is not None
    return imap


def test_defaults() -> None:
    settings = IMAPSettings()
    assert settings.max_command_size == 1024 * 1024
    assert settings.max_sequence_ranges == 20000
    assert settings.max_nesting == 64


def test_limits_are_configurable(tmp_path: Path) -> None:
    imap = load(
        tmp_path, "max_command_size = 2097152\nmax_sequence_ranges = 500\nmax_nesting = 200\n"
    )
    assert (imap.max_command_size, imap.max_sequence_ranges, imap.max_nesting) == (
        2097152,
        500,
        200,
    )


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("max_command_size = 0", "imap.max_command_size: must be positive"),
        ("max_sequence_ranges = -1", "imap.max_sequence_ranges: must be positive"),
        ("max_nesting = 0", "imap.max_nesting: must be positive"),
        ("max_nesting = 201", "imap.max_nesting: must be at most 200"),
        ('max_nesting = "deep"', "imap.max_nesting: expected an integer"),
    ],
)
def test_bad_limits_give_one_line_naming_the_key(tmp_path: Path, line: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, line + "\n")
    message = str(info.value)
    assert "\n" not in message
    assert problem in message


def test_message_threads_default_is_configurable_and_positive(tmp_path: Path) -> None:
    assert IMAPSettings().message_threads == 2
    assert load(tmp_path, "message_threads = 4\n").message_threads == 4
    with pytest.raises(ConfigError) as info:
        load(tmp_path, "message_threads = 0\n")
    assert "imap.message_threads: must be positive" in str(info.value)


def test_uidbatches_max_messages_defaults_to_the_rfc_minimum_and_may_be_raised(
    tmp_path: Path,
) -> None:
    assert IMAPSettings().uidbatches_max_messages == 100_000
    assert load(tmp_path, "uidbatches_max_messages = 250000\n").uidbatches_max_messages == 250_000
    with pytest.raises(ConfigError) as info:
        load(tmp_path, "uidbatches_max_messages = 99999\n")
    assert "imap.uidbatches_max_messages: must be at least 100000" in str(info.value)
