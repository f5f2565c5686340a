"""The [quota] table of tmail.toml: sizes with units, limits, the SMTP answer."""

from __future__ import annotations

from pathlib import Path

import pytest

from tmail.config.loader import loadSettings
from tmail.config.schema import QuotaSettings
from tmail.directory.passwdfile import PasswdFileDirectory
from tmail.errors import ConfigError
from tmail.interfaces import IMailRealm
from tmail.realm.build import realmFromSettings
from tmail.store.blocking import blocking
from tmail.store.filework import INLINE
from tmail.store.quota import QuotaLimits


def load(tmp_path: Path, text: str) -> QuotaSettings:
    path = tmp_path / "tmail.toml"
    path.write_text(text)
    return loadSettings(path).quota


def test_absent_table_means_no_limits_and_reject(tmp_path: Path) -> None:
    assert load(tmp_path, "") == QuotaSettings(0, 0, "reject")


@pytest.mark.parametrize(
    ("value", "size"),
    [
        ('"1G"', 1024**3),
        ('"500M"', 500 * 1024**2),
        ('"64k"', 65536),
        ("1048576", 1048576),
        ("0", 0),
    ],
)
def test_storage_takes_a_size_with_a_unit_or_bytes(tmp_path: Path, value: str, size: int) -> None:
    quota = load(
        tmp_path, f'[quota]\nstorage = {value}\nmessages = 1000\nover_quota = "tempfail"\n'
    )
    assert quota == QuotaSettings(size, 1000, "tempfail")


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        (
            'storage = "lots"',
            "quota.storage",
            'expected a size such as "500M" or "1G", got string "lots"',
        ),
        ("storage = -1", "quota.storage", "must not be negative"),
        ("storage = 1.5", "quota.storage", "expected an integer, got float 1.5"),
        ("messages = -5", "quota.messages", "must not be negative"),
        ('over_quota = "bounce"', "quota.over_quota", "must be one of reject, tempfail"),
        ("soft = true", "quota.soft", "unknown key"),
    ],
)
def test_bad_values_are_one_line_errors(tmp_path: Path, text: str, key: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, f"[quota]\n{text}\n")
    assert (info.value.key, info.value.problem) == (key, problem)


@pytest.mark.parametrize("backend", ["virtual", "maildir"])
def test_realm_gets_the_configured_default_and_user_rules_override_it(
    tmp_path: Path, backend: str
) -> None:
    path = tmp_path / "tmail.toml"
    path.write_text(
        f'data_dir = "data"\n[realm]\nbackend = "{backend}"\ndomain = "example.com"\n'
        '[quota]\nstorage = "1G"\nmessages = 100\n'
    )
    settings = loadSettings(path)
    directory = PasswdFileDirectory(settings.data_dir)
    directory.addDomain("example.com")
    directory.addUser("alice@example.com", b"secret")
    realm: IMailRealm = realmFromSettings(settings, directory, INLINE)
    assert realm.quotaLimits("alice@example.com") == QuotaLimits(1024**3, 100)  # type: ignore[attr-defined]
    directory.setUserFields("alice@example.com", {"quota_rule": "*:storage=10M"})
    assert realm.quotaLimits("alice@example.com") == QuotaLimits(10 * 1024**2, 100)  # type: ignore[attr-defined]
    usage = blocking(realm.storeFor("alice@example.com")).quota()
    assert (usage.storageLimit, usage.messagesLimit) == (10 * 1024**2, 100)
