"""C{imap.max_search_contexts}: live SEARCH/SORT results one session keeps (RFC 5267 4.3.1)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tmail.config.loader import loadSettings
from tmail.config.schema import IMAPSettings
from tmail.errors import ConfigError


def load(tmp_path: Path, extra: str) -> IMAPSettings:
    path = tmp_path / "tmail.toml"
    path.write_text('[imap]\nlisten = ["tcp:143"]\n' + extra)
    imap = loadSettings(path).imap
    assert imap is not None
    return imap


def test_default_and_configured(tmp_path: Path) -> None:
    assert IMAPSettings().max_search_contexts == 10
    assert load(tmp_path, "max_search_contexts = 3\n").max_search_contexts == 3


def test_at_least_one_context(tmp_path: Path) -> None:
    """RFC 5267 4.3.1: a server keeps at least one live result per client."""
    with pytest.raises(ConfigError) as info:
        load(tmp_path, "max_search_contexts = 0\n")
    assert "imap.max_search_contexts: must be positive" in str(info.value)
