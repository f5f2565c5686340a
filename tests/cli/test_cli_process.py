"""The installed tmail console script, run as a real process."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tmail.directory.passwdfile import PasswdFileDirectory

TMAIL = str(Path(sys.executable).with_name("tmail"))


def tmail(*argv: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TMAIL, *argv], input=stdin, capture_output=True, text=True, timeout=60, check=False
    )


def test_init_then_check_then_add_a_user(tmp_path: Path) -> None:
    folder = tmp_path / "srv"
    done = tmail("init", str(folder))
    assert (done.returncode, done.stderr) == (0, "")
    (password,) = re.findall(r"^demo@example\.test password: (\S+)$", done.stdout, re.MULTILINE)

    config = str(folder / "tmail.toml")
    done = tmail("check", "--config", config)
    assert (done.returncode, done.stdout, done.stderr) == (0, f"{config}: OK\n", "")

    done = tmail(
        "--config",
        config,
        "user",
        "add",
        "bob@example.test",
        "--password-stdin",
        stdin="bobs password\n",
    )
    assert (done.returncode, done.stderr) == (0, "")
    directory = PasswdFileDirectory(folder / "data")
    assert directory.checkPassword("bob@example.test", b"bobs password") == "bob@example.test"
    assert directory.checkPassword("demo@example.test", password.encode()) == "demo@example.test"


def test_bad_config_is_one_line_on_stderr_and_status_2(tmp_path: Path) -> None:
    config = tmp_path / "tmail.toml"
    config.write_text('[imap]\nlisten = ["tcp:143", "tcp:nope"]\n')
    done = tmail("check", "--config", str(config))
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == (
        f"{config}: imap.listen[1]: not a valid endpoint: 'tcp:nope': "
        "invalid literal for int() with base 10: 'nope'\n"
    )


def test_refused_change_is_one_line_and_status_1(tmp_path: Path) -> None:
    config = tmp_path / "tmail.toml"
    config.write_text("")
    done = tmail(
        "user", "add", "a@example.test", "--password-stdin", "--config", str(config), stdin="pw\n"
    )
    assert done.returncode == 1
    assert done.stderr == "tmail: error: domain example.test is not hosted here; add it first\n"
