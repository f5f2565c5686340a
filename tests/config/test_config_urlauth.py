"""
The IMAP URL keys: C{[imap]} C{urlauth}, C{url_host}, C{max_catenate_parts}
and C{[submission]} C{burl_imap_host}.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tmail.config.loader import loadSettings
from tmail.config.schema import IMAPSettings, SubmissionSettings
from tmail.errors import ConfigError


def load(tmp_path: Path, text: str) -> tuple[IMAPSettings, SubmissionSettings]:
    path = tmp_path / "tmail.toml"
    path.write_text(
        '[imap]\nlisten = ["tcp:143"]\n' + text + '\n[submission]\nlisten = ["tcp:587"]\n'
    )
    settings = loadSettings(path)
    assert settings.imap is not None and settings.submission is not None
    return settings.imap, settings.submission


def test_defaults() -> None:
    imap = IMAPSettings()
    assert (imap.urlauth, imap.url_host, imap.max_catenate_parts) == (True, "", 100)
    assert SubmissionSettings().burl_imap_host == ""


def test_keys_are_read(tmp_path: Path) -> None:
    path = tmp_path / "tmail.toml"
    path.write_text(
        '[imap]\nlisten = ["tcp:143"]\nurlauth = false\nurl_host = "Mail.Example.COM:993"\n'
        'max_catenate_parts = 7\n[submission]\nlisten = ["tcp:587"]\n'
        'burl_imap_host = "[2001:db8::1]"\n'
    )
    settings = loadSettings(path)
    assert settings.imap is not None and settings.submission is not None
    assert (settings.imap.urlauth, settings.imap.url_host) == (False, "mail.example.com:993")
    assert settings.imap.max_catenate_parts == 7
    assert settings.submission.burl_imap_host == "[2001:db8::1]"


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('url_host = "imap://mail.example.com"', "imap.url_host: expected a host such as"),
        ('url_host = "mail example"', "imap.url_host: expected a host such as"),
        ('url_host = "mail.example.com:0"', "imap.url_host: expected a host such as"),
        ("max_catenate_parts = 0", "imap.max_catenate_parts: must be positive"),
    ],
)
def test_bad_values_give_one_line_naming_the_key(tmp_path: Path, line: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, line)
    message = str(info.value)
    assert "\n" not in message
    assert problem in message
