"""Per-user extra fields in the passwd file, as Dovecot's passwd-file writes them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tmail.directory.passwdfile import PasswdFileDirectory
from tmail.errors import DirectoryError
from tmail.interfaces import IUserFields


@pytest.fixture
def directory(tmp_path: Path) -> PasswdFileDirectory:
    d = PasswdFileDirectory(tmp_path)
    d.addDomain("example.com")
    (tmp_path / "passwd").write_text(
        "# comment kept\n"
        "alice@example.com:{PLAIN}pw:1000:1000::/home/alice::"
        "userdb_quota_rule=*:storage=1G quota_rule2=*:messages=10 nodelay"
        " userdb_quota_rule2=*:messages=20\n"
        "bob@example.com:{PLAIN}pw\n"
    )
    return d


def test_extra_fields_keep_their_colons_and_lose_the_userdb_prefix(
    directory: PasswdFileDirectory,
) -> None:
    assert IUserFields.providedBy(directory)
    assert directory.userFields("Alice@Example.com") == {
        "quota_rule": "*:storage=1G",
        "quota_rule2": "*:messages=20",
        "nodelay": "",
    }
    assert directory.userFields("bob@example.com") == {}
    assert directory.userFields("carol@example.com") == {}


def test_set_fields_replaces_both_spellings_and_keeps_everything_else(
    directory: PasswdFileDirectory, tmp_path: Path
) -> None:
    directory.setUserFields(
        "alice@example.com", {"quota_rule2": None, "quota_rule": "*:storage=5M"}
    )
    directory.setUserFields("bob@example.com", {"quota_rule2": "*:messages=3"})
    assert (tmp_path / "passwd").read_text() == (
        "# comment kept\n"
        "alice@example.com:{PLAIN}pw:1000:1000::/home/alice::nodelay"
        " userdb_quota_rule=*:storage=5M\n"
        "bob@example.com:{PLAIN}pw::::::userdb_quota_rule2=*:messages=3\n"
    )
    assert directory.hasUser("bob@example.com")
    assert directory.userFields("bob@example.com") == {"quota_rule2": "*:messages=3"}


@pytest.mark.parametrize(
    "changes",
    [{"quota rule": "x"}, {"a:b": "x"}, {"": "x"}, {"quota_rule": "*:storage=1 G"}],
)
def test_fields_the_format_cannot_hold_are_refused(
    directory: PasswdFileDirectory, changes: dict[str, str | None]
) -> None:
    with pytest.raises(DirectoryError):
        directory.setUserFields("alice@example.com", changes)


def test_unknown_user_is_refused(directory: PasswdFileDirectory) -> None:
    with pytest.raises(DirectoryError):
        directory.setUserFields("carol@example.com", {"quota_rule": "*:storage=1M"})
