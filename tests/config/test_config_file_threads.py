"""
C{[realm] file_threads}: how many threads each process does the stores'
file work in.  The assembled service owns that pool (started and stopped
with it) and its realm's stores use it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tmail.config.loader import loadSettings
from tmail.config.schema import RealmSettings
from tmail.directory.passwdfile import PasswdFileDirectory
from tmail.errors import ConfigError
from tmail.realm.base import MailRealm
from tmail.service import makeService


def test_file_threads_defaults_to_four() -> None:
    assert RealmSettings().file_threads == 4


@pytest.mark.parametrize("value", ["0", "-2"])
def test_file_threads_must_be_positive_one_line_naming_file_and_key(
    tmp_path: Path, value: str
) -> None:
    with pytest.raises(ConfigError) as info:
        loadSettings(_write(tmp_path, f"[realm]\nfile_threads = {value}\n"))
    message = str(info.value)
    assert "\n" not in message
    assert message == f"{tmp_path / 'tmail.toml'}: realm.file_threads: must be positive"


def test_file_threads_size_the_pool_the_service_runs_and_its_stores_use(tmp_path: Path) -> None:
    settings = loadSettings(
        _write(tmp_path, 'hostname = "mx.example.test"\n[realm]\nfile_threads = 7\n')
    )
    PasswdFileDirectory(settings.data_dir).addDomain("example.test")
    service = makeService(settings)
    work = service.fileWork
    assert work is not None
    assert work.pool.max == 7
    assert service.getServiceNamed("store file threads") is work
    assert isinstance(service.realm, MailRealm)
    assert service.realm.fileWork is work
    store = service.realm.storeFor("alice@example.test")
    assert store._fileWork is work  # type: ignore[attr-defined]
    service.startService()
    try:
        assert work.pool.started
    finally:
        service.stopService()
    assert not work.pool.started


def _write(folder: Path, text: str) -> Path:
    config = folder / "tmail.toml"
    config.write_text(text)
    return config
