"""The tmail quota commands in-process: show, set and recalc."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from tmail.cli.commands import IO
from tmail.cli.main import main
from tmail.config.loader import loadSettings
from tmail.directory.passwdfile import PasswdFileDirectory
from tmail.realm.build import realmFromSettings
from tmail.store.blocking import blocking
from tmail.store.filework import INLINE
from tmail.store.quota import humanSize

USER = "alice@example.com"
MESSAGE = b"Subject: hi\r\n\r\n" + b"x" * 1000 + b"\r\n"


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """example.com with one user, a 1G default storage quota, TMAIL_CONFIG unset."""
    monkeypatch.delenv("TMAIL_CONFIG", raising=False)
    path = tmp_path / "tmail.toml"
    path.write_text('hostname = "mail.example.com"\ndata_dir = "data"\n\n[quota]\nstorage = "1G"\n')
    directory = PasswdFileDirectory(tmp_path / "data")
    directory.addDomain("example.com")
    directory.addUser(USER, b"secret-password")
    return path


def run(config: Path, *argv: str) -> int:
    return main([*argv, "--config", str(config)], IO(stdin=io.StringIO("")))


def passwdLine(config: Path) -> str:
    lines = (config.parent / "data" / "passwd").read_text().splitlines()
    [line] = [line for line in lines if not line.startswith("#")]
    return line


def deliver(config: Path, data: bytes = MESSAGE) -> None:
    settings = loadSettings(config)
    realm = realmFromSettings(settings, PasswdFileDirectory(settings.data_dir), INLINE)
    pending = blocking(realm.storeFor(USER)).getFolder("INBOX").beginMessage()
    pending.write(data)
    pending.commit()


def test_show_prints_usage_and_limits_exactly_and_for_people(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    deliver(config)
    assert run(config, "quota", "show", USER) == 0
    size = len(MESSAGE)
    assert capsys.readouterr().out == (
        f"user: {USER}\n"
        f"storage: {size} of 1073741824 ({humanSize(size)} of 1 GiB, 0%; default limit)\n"
        "messages: 1 of unlimited (1 message; default limit)\n"
    )


def test_set_writes_dovecot_quota_rules_and_keeps_other_fields(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = config.parent / "data" / "passwd"
    path.write_text(
        "# users\n"
        + passwdLine(config).replace("::::::", ":1000:1000::/home/a::nodelay")
        + " userdb_mail=maildir:~/Mail\n"
    )
    assert run(config, "quota", "set", USER, "--storage", "100M", "--messages", "1000") == 0
    assert capsys.readouterr().out == (
        f"{USER}: storage: 104857600 (100 MiB)\n{USER}: messages: 1000\n"
    )
    text = path.read_text()
    assert text.startswith("# users\n")
    assert passwdLine(config).endswith(
        ":1000:1000::/home/a::nodelay userdb_mail=maildir:~/Mail"
        " userdb_quota_rule=*:storage=100M userdb_quota_rule2=*:messages=1000"
    )
    deliver(config)
    assert run(config, "quota", "show", USER) == 0
    out = capsys.readouterr().out
    used = f"{len(MESSAGE)} of 104857600 ({humanSize(len(MESSAGE))} of 100 MiB, 0%; user limit)"
    assert f"storage: {used}\n" in out
    assert "messages: 1 of 1000 (1 message of 1000 messages, 0%; user limit)\n" in out


def test_set_zero_is_unlimited_and_default_restores_the_configured_limit(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(config, "quota", "set", USER, "--storage", "0") == 0
    assert "userdb_quota_rule=*:storage=0" in passwdLine(config)
    assert run(config, "quota", "show", USER) == 0
    assert "storage: 0 of unlimited (0 bytes; user limit)" in capsys.readouterr().out
    assert run(config, "quota", "set", USER, "--storage", "default", "--messages", "5") == 0
    assert passwdLine(config).endswith("::::::userdb_quota_rule2=*:messages=5")
    assert run(config, "quota", "show", USER) == 0
    assert "storage: 0 of 1073741824 (0 bytes of 1 GiB, 0%; default limit)" in (
        capsys.readouterr().out
    )


def test_user_password_change_keeps_the_quota(config: Path) -> None:
    assert run(config, "quota", "set", USER, "--messages", "7") == 0
    stdin = io.StringIO("new-password\n")
    assert (
        main(["user", "passwd", USER, "--password-stdin", "--config", str(config)], IO(stdin=stdin))
        == 0
    )
    assert passwdLine(config).endswith("userdb_quota_rule2=*:messages=7")


def test_recalc_repairs_a_wrong_count(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    deliver(config)
    maildirsize = config.parent / "data" / "mail" / "example.com" / "alice" / "maildirsize"
    maildirsize.write_text("1073741824S\n999999 42\n")
    assert run(config, "quota", "show", USER) == 0
    assert "messages: 42 of unlimited" in capsys.readouterr().out
    assert run(config, "quota", "recalc", USER) == 0
    assert "messages: 1 of unlimited" in capsys.readouterr().out
    assert maildirsize.read_text() == f"1073741824S\n{len(MESSAGE)} 1\n"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("quota", "show", "bob@example.com"), "tmail: error: no such user: bob@example.com"),
        (("quota", "set", USER), "tmail: error: give --storage, --messages or both"),
        (
            ("quota", "set", USER, "--storage", "lots"),
            "tmail: error: --storage: not a valid value: 'lots'",
        ),
        (
            ("quota", "set", USER, "--messages", "-3"),
            "tmail: error: --messages: not a valid value: '-3'",
        ),
        (("quota", "recalc", "bob@example.com"), "tmail: error: no such user: bob@example.com"),
    ],
)
def test_refusals_are_one_line_with_status_1(
    config: Path, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], message: str
) -> None:
    before = passwdLine(config)
    assert run(config, *argv) == 1
    err = capsys.readouterr().err
    assert err == message + "\n"
    assert passwdLine(config) == before


def test_a_store_failure_is_one_line_and_status_1(
    config: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A full disk while recounting: the operator reads why, not a traceback."""
    from tmail.errors import StoreFull
    from tmail.store.maildir import MaildirStore

    def full(self: MaildirStore) -> None:
        raise StoreFull("No space left on device")

    monkeypatch.setattr(MaildirStore, "recalculateQuota", full)
    assert run(config, "quota", "recalc", USER) == 1
    assert capsys.readouterr().err == "tmail: error: No space left on device\n"
