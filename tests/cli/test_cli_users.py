"""The tmail command in-process: check, domain, user and alias management."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from tmail.cli.commands import IO
from tmail.cli.main import main
from tmail.directory.passwdfile import PasswdFileDirectory
from tmail.directory.passwords import cheapHasher, setHasher


@pytest.fixture(autouse=True)
def _cheapHashing() -> Iterator[None]:
    previous = setHasher(cheapHasher())
    yield
    setHasher(previous)


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A minimal configuration hosting example.com, with TMAIL_CONFIG unset."""
    monkeypatch.delenv("TMAIL_CONFIG", raising=False)
    path = tmp_path / "tmail.toml"
    path.write_text('hostname = "mail.example.com"\ndata_dir = "data"\n')
    PasswdFileDirectory(tmp_path / "data").addDomain("example.com")
    return path


def directoryOf(config: Path) -> PasswdFileDirectory:
    return PasswdFileDirectory(config.parent / "data")


def run(*argv: str, stdin: str = "", prompts: list[str] | None = None) -> int:
    answers = iter(prompts or [])

    def fakeGetpass(prompt: str) -> str:
        try:
            return next(answers)
        except StopIteration:
            raise EOFError from None

    return main(list(argv), IO(stdin=io.StringIO(stdin), getpass=fakeGetpass))


def errorLine(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
    return err.strip()


def test_check_reports_ok(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("check", "--config", str(config)) == 0
    assert capsys.readouterr().out == f"{config}: OK\n"


def test_check_reports_a_bad_config_in_one_line_with_status_2(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config.write_text("[smtp]\nlisten = ['tcp:25']\nmax_errors = 'many'\n")
    assert run("check", "--config", str(config)) == 2
    assert errorLine(capsys) == (
        f'{config}: smtp.max_errors: expected an integer, got string "many"'
    )


def test_check_builds_the_policies_to_check_their_settings(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config.write_text(
        "[smtp]\nlisten = ['tcp:25']\npolicies = ['ratelimit']\n"
        "[policy.ratelimit]\nmessages = 5\nwindow = -1\n"
    )
    assert run("check", "--config", str(config)) == 2
    assert errorLine(capsys) == (
        f"{config}: policy.ratelimit.window: must be a positive number of seconds"
    )


def test_directory_commands_also_refuse_a_bad_config(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config.write_text("bogus = 1\n")
    assert run("user", "list", "--config", str(config)) == 2
    assert errorLine(capsys) == f"{config}: bogus: unknown key"


def test_missing_config_is_status_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.toml"
    assert run("domain", "list", "--config", str(missing)) == 2
    assert errorLine(capsys) == f"{missing}: cannot read file: No such file or directory"


def test_config_option_before_or_after_the_subcommand(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("--config", str(config), "domain", "list") == 0
    assert run("domain", "list", "--config", str(config)) == 0
    assert capsys.readouterr().out == "example.com\nexample.com\n"


def test_config_from_environment_then_current_folder(
    config: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TMAIL_CONFIG", str(config))
    assert run("domain", "list") == 0
    monkeypatch.delenv("TMAIL_CONFIG")
    monkeypatch.chdir(config.parent)
    assert run("domain", "list") == 0
    assert capsys.readouterr().out == "example.com\nexample.com\n"


def test_domain_add_list_remove(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    c = ("--config", str(config))
    assert run("domain", "add", "Example.ORG", *c) == 0
    assert run("domain", "list", *c) == 0
    assert run("domain", "remove", "example.org", *c) == 0
    assert capsys.readouterr().out == (
        "added domain example.org\nexample.com\nexample.org\nremoved domain example.org\n"
    )
    assert directoryOf(config).domains() == ["example.com"]


def test_removing_a_domain_in_use_is_status_1(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directoryOf(config).addUser("a@example.com", b"pw")
    assert run("domain", "remove", "example.com", "--config", str(config)) == 1
    assert errorLine(capsys) == (
        "tmail: error: domain example.com still has 1 user(s) and 0 alias(es); remove them first"
    )


def test_user_add_with_password_from_stdin(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run(
        "user",
        "add",
        "Alice@example.com",
        "--password-stdin",
        "--config",
        str(config),
        stdin="correct horse\nignored\n",
    )
    assert code == 0
    assert capsys.readouterr().out == "added user alice@example.com\n"
    directory = directoryOf(config)
    assert directory.checkPassword("alice@example.com", b"correct horse") == "alice@example.com"
    assert directory.checkPassword("alice@example.com", b"ignored") is None


def test_user_add_with_prompted_password(config: Path) -> None:
    assert run("user", "add", "a@example.com", "--config", str(config), prompts=["pw", "pw"]) == 0
    assert directoryOf(config).checkPassword("a@example.com", b"pw") == "a@example.com"


def test_prompted_passwords_must_match(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("user", "add", "a@example.com", "--config", str(config), prompts=["a", "b"]) == 1
    assert errorLine(capsys) == "tmail: error: the passwords do not match"
    assert directoryOf(config).users() == []


def test_empty_stdin_gives_no_password(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("user", "add", "a@example.com", "--password-stdin", "--config", str(config)) == 1
    assert errorLine(capsys) == "tmail: error: no password on standard input"


def test_empty_password_is_refused(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = run(
        "user", "add", "a@example.com", "--password-stdin", "--config", str(config), stdin="\n"
    )
    assert code == 1
    assert errorLine(capsys) == "tmail: error: the password must not be empty"


@pytest.mark.parametrize(
    "argv",
    [
        ["user", "add", "a@example.com", "hunter2"],
        ["user", "add", "a@example.com", "--password", "hunter2"],
        ["user", "add", "a@example.com", "--password=hunter2"],
        ["user", "add", "a@example.com", "--password-stdin=hunter2"],
        ["user", "passwd", "a@example.com", "hunter2"],
    ],
)
def test_password_is_never_taken_from_the_command_line(
    config: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    assert run(*argv, "--config", str(config), prompts=["pw", "pw"]) == 2
    line = errorLine(capsys)
    assert "hunter2" not in line
    assert directoryOf(config).users() == []


def test_user_passwd(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directoryOf(config).addUser("a@example.com", b"old")
    code = run(
        "user",
        "passwd",
        "A@example.com",
        "--password-stdin",
        "--config",
        str(config),
        stdin="new\n",
    )
    assert code == 0
    assert capsys.readouterr().out == "changed the password of a@example.com\n"
    assert directoryOf(config).checkPassword("a@example.com", b"new") == "a@example.com"
    assert directoryOf(config).checkPassword("a@example.com", b"old") is None


def test_user_passwd_of_unknown_user_does_not_prompt(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("user", "passwd", "a@example.com", "--config", str(config)) == 1
    assert errorLine(capsys) == "tmail: error: no such user: a@example.com"


def test_user_list_and_remove(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = directoryOf(config)
    directory.addDomain("example.org")
    for address in ("b@example.com", "a@example.com", "c@example.org"):
        directory.addUser(address, b"pw")
    c = ("--config", str(config))
    assert run("user", "list", *c) == 0
    assert capsys.readouterr().out == "a@example.com\nb@example.com\nc@example.org\n"
    assert run("user", "list", "example.org", *c) == 0
    assert capsys.readouterr().out == "c@example.org\n"
    assert run("user", "remove", "B@example.com", *c) == 0
    assert capsys.readouterr().out == "removed user b@example.com\n"
    assert directory.users() == ["a@example.com", "c@example.org"]


def test_user_in_unknown_domain_is_status_1(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("user", "add", "a@example.net", "--config", str(config)) == 1
    assert errorLine(capsys) == "tmail: error: domain example.net is not hosted here; add it first"


def test_invalid_address_is_status_1(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("user", "remove", "no-at-sign", "--config", str(config)) == 1
    assert errorLine(capsys) == "tmail: error: not a valid address: 'no-at-sign'"


def test_alias_add_list_remove(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directoryOf(config).addDomain("example.org")
    c = ("--config", str(config))
    assert run("alias", "add", "sales@example.com", "a@example.com", "b@elsewhere.test", *c) == 0
    assert run("alias", "add", "sales@example.com", "c@example.com", *c) == 0
    assert run("alias", "add", "@example.org", "a@example.com", *c) == 0
    assert capsys.readouterr().out == (
        "sales@example.com: a@example.com, b@elsewhere.test\n"
        "sales@example.com: a@example.com, b@elsewhere.test, c@example.com\n"
        "@example.org: a@example.com\n"
    )
    assert run("alias", "list", *c) == 0
    assert run("alias", "list", "example.org", *c) == 0
    assert capsys.readouterr().out == (
        "@example.org: a@example.com\n"
        "sales@example.com: a@example.com, b@elsewhere.test, c@example.com\n"
        "@example.org: a@example.com\n"
    )
    assert run("alias", "remove", "sales@example.com", "b@elsewhere.test", *c) == 0
    assert run("alias", "remove", "@example.org", *c) == 0
    assert capsys.readouterr().out == (
        "removed b@elsewhere.test from alias sales@example.com\nremoved alias @example.org\n"
    )
    assert directoryOf(config).aliases() == {
        "sales@example.com": ["a@example.com", "c@example.com"]
    }
    assert directoryOf(config).aliasTargets("x@example.org") is None


def test_alias_remove_unknown_is_status_1(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("alias", "remove", "x@example.com", "--config", str(config)) == 1
    assert errorLine(capsys) == "tmail: error: no such alias: x@example.com"


def test_maildir_realm_keeps_to_its_one_domain(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config.write_text('data_dir = "data"\n[realm]\nbackend = "maildir"\ndomain = "example.com"\n')
    c = ("--config", str(config))
    assert run("domain", "add", "example.org", *c) == 1
    assert errorLine(capsys) == (
        "tmail: error: the maildir realm serves only example.com (realm.domain); "
        "use the virtual realm to host example.org"
    )
    directoryOf(config).addDomain("example.org")
    assert run("user", "add", "a@example.org", "--password-stdin", *c, stdin="pw\n") == 1
    assert "serves only example.com" in errorLine(capsys)
    assert run("alias", "add", "@example.org", "a@example.com", *c) == 1
    assert "serves only example.com" in errorLine(capsys)
    assert run("user", "add", "a@example.com", "--password-stdin", *c, stdin="pw\n") == 0
    assert directoryOf(config).users() == ["a@example.com"]


def test_usage_errors_are_one_line_with_status_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run() == 2
    assert errorLine(capsys) == (
        "tmail: error: the following arguments are required: COMMAND (see --help)"
    )
    assert run("user", "frobnicate") == 2
    assert errorLine(capsys).startswith("tmail user: error: argument ACTION: invalid choice")
