"""The [imap] special-use folder names: accepted names and one-line errors."""

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


def test_defaults_are_dovecots_names() -> None:
    assert IMAPSettings().specialFolders() == {
        "Sent": "\\Sent",
        "Drafts": "\\Drafts",
        "Trash": "\\Trash",
        "Junk": "\\Junk",
        "Archive": "\\Archive",
    }
    assert IMAPSettings().create_special_folders


def test_names_and_creation_are_configurable(tmp_path: Path) -> None:
    imap = load(
        tmp_path,
        'special_use_sent = "Gesendete Elemente"\n'
        'special_use_archive = "Archiv/Alt"\n'
        'special_use_trash = "Papierkörbe"\n'
        "create_special_folders = false\n",
    )
    assert imap.special_use_sent == "Gesendete Elemente"
    assert imap.specialFolders()["Archiv/Alt"] == "\\Archive"
    assert imap.specialFolders()["Papierkörbe"] == "\\Trash"
    assert not imap.create_special_folders


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('special_use_sent = "INBOX"', "imap.special_use_sent: must not be INBOX or inside it"),
        ('special_use_sent = "inbox/Sent"', "imap.special_use_sent: must not be INBOX"),
        ('special_use_junk = "a.b"', "imap.special_use_junk: not a valid folder name"),
        ('special_use_junk = "a//b"', "imap.special_use_junk: not a valid folder name"),
        ('special_use_junk = "/Junk"', "imap.special_use_junk: not a valid folder name"),
        ('special_use_junk = "Junk*"', "imap.special_use_junk: must not contain * or %"),
        ('special_use_junk = "tab\\there"', "imap.special_use_junk: not a valid folder name"),
        ('special_use_junk = ""', "imap.special_use_junk: must not be empty"),
        ("special_use_junk = 3", "imap.special_use_junk: expected a string, got integer 3"),
        ('special_use_junk = "Trash"', "imap.special_use_junk: names the same folder as"),
        ('create_special_folders = "yes"', "imap.create_special_folders: expected true or false"),
        ('special_use_spam = "Spam"', 'imap.special_use_spam: unknown key (did you mean "'),
    ],
)
def test_bad_names_give_one_line_naming_the_key(tmp_path: Path, line: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, line + "\n")
    message = str(info.value)
    assert "\n" not in message
    assert f"{tmp_path / 'tmail.toml'}: {problem}" in message, message
