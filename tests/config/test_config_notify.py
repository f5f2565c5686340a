"""The [imap] NOTIFY settings: defaults, parsing and one-line errors."""

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
    assert settings.notify_poll_interval == 5.0
    assert settings.notify_queue_limit == 1000


def test_notify_settings_are_configurable(tmp_path: Path) -> None:
    imap = load(tmp_path, "notify_poll_interval = 0.5\nnotify_queue_limit = 50\n")
    assert (imap.notify_poll_interval, imap.notify_queue_limit) == (0.5, 50)


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("notify_poll_interval = 0", "imap.notify_poll_interval: must be positive"),
        ("notify_queue_limit = 0", "imap.notify_queue_limit: must be positive"),
        ('notify_queue_limit = "many"', "imap.notify_queue_limit: expected an integer"),
    ],
)
def test_bad_notify_settings_give_one_line_naming_the_key(
    tmp_path: Path, line: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, line + "\n")
    message = str(info.value)
    assert "\n" not in message
    assert problem in message
