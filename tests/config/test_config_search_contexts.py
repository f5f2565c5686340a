"""
C{imap.max_search_contexts} and C{imap.max_update_reads}: the live SEARCH and
SORT results one session keeps (RFC 5267 4.3.1), and what one of them may
read again per report of changes.
"""

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
    assert IMAPSettings().max_update_reads == 1000
    imap = load(tmp_path, "max_search_contexts = 3\nmax_update_reads = 50\n")
    assert (imap.max_search_contexts, imap.max_update_reads) == (3, 50)


def test_at_least_one_context(tmp_path: Path) -> None:
    """RFC 5267 4.3.1: a server keeps at least one live result per client."""
    with pytest.raises(ConfigError) as info:
        load(tmp_path, "max_search_contexts = 0\n")
    assert "imap.max_search_contexts: must be positive" in str(info.value)
