"""The tmail dkim commands in-process: keygen, show and activate."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import dkim
import pytest

from tmail.cli.commands import IO
from tmail.cli.main import main
from tmail.config.loader import loadSettings
from tmail.directory.passwdfile import PasswdFileDirectory
from tmail.queue.dkim import DKIMSigner

MESSAGE = (
    b"From: Alice <alice@example.com>\r\n"
    b"To: bob@example.org\r\n"
    b"Subject: hello\r\n"
    b"Date: Sat, 28 Nov 2026 12:00:00 +0000\r\n"
    b"\r\n"
    b"Hi Bob.\r\n"
)


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A minimal configuration hosting example.com, with TMAIL_CONFIG unset."""
    monkeypatch.delenv("TMAIL_CONFIG", raising=False)
    path = tmp_path / "tmail.toml"
    path.write_text('hostname = "mail.example.com"\ndata_dir = "data"\n')
    PasswdFileDirectory(tmp_path / "data").addDomain("example.com")
    return path


def run(config: Path, *argv: str) -> int:
    return main([*argv, "--config", str(config)], IO(stdin=io.StringIO("")))


def keyFolder(config: Path) -> Path:
    return config.parent / "data" / "dkim" / "example.com"


def published(line: str) -> tuple[bytes, bytes]:
    """The DNS name and TXT text of a zone-file line, as a resolver would hand them out."""
    name, _, rest = line.partition(" IN TXT ")
    assert name.endswith(".")
    strings = re.findall(r'"([^"]*)"', rest)
    assert rest == " ".join(f'"{s}"' for s in strings)
    return name.encode(), "".join(strings).encode()


def dns(*lines: str) -> Callable[..., bytes | None]:
    records = dict(published(line) for line in lines)

    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        return records.get(name)

    return lookup


def signed(config: Path) -> bytes:
    """MESSAGE as the server would sign it for sending."""
    settings = loadSettings(config)
    signer = DKIMSigner.fromSettings(settings, PasswdFileDirectory(settings.data_dir))
    return signer.signMessage(MESSAGE)


def recordLine(out: str) -> str:
    line = out.splitlines()[-1]
    assert " IN TXT " in line
    return line


def errorLine(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
    return err.strip()


@pytest.mark.parametrize("algorithm", ["rsa", "ed25519"])
def test_keygen_writes_an_owner_only_key_and_prints_a_record_that_verifies(
    algorithm: str, config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        run(config, "dkim", "keygen", "example.com", "--selector", "s1", "--algorithm", algorithm)
        == 0
    )
    out = capsys.readouterr().out
    key = keyFolder(config) / "s1.key"
    assert key.stat().st_mode & 0o777 == 0o600
    assert key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----\n")
    assert (keyFolder(config) / "selector").read_text() == "s1\n"
    assert out.splitlines()[0] == (
        f"wrote {key} (rsa, 2048 bits)" if algorithm == "rsa" else f"wrote {key} (ed25519)"
    )
    line = recordLine(out)
    name, text = published(line)
    assert name == b"s1._domainkey.example.com."
    assert text.startswith(f"v=DKIM1; k={algorithm}; p=".encode())
    assert dkim.verify(signed(config), dnsfunc=dns(line))


def test_the_record_is_cut_into_strings_of_at_most_255_characters(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(config, "dkim", "keygen", "example.com", "--bits", "4096") == 0
    line = recordLine(capsys.readouterr().out)
    strings = re.findall(r'"([^"]*)"', line)
    assert len(strings) == 3
    assert [len(s) for s in strings[:-1]] == [255, 255]
    assert 0 < len(strings[-1]) <= 255
    assert dkim.verify(signed(config), dnsfunc=dns(line))


def test_the_default_selector_is_named_for_the_month(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = datetime.now(UTC)
    assert run(config, "dkim", "keygen", "example.com", "--algorithm", "ed25519") == 0
    after = datetime.now(UTC)
    selector = (keyFolder(config) / "selector").read_text().strip()
    assert selector in {f"tmail{before:%Y%m}", f"tmail{after:%Y%m}"}
    assert recordLine(capsys.readouterr().out).startswith(f"{selector}._domainkey.example.com. ")


def test_show_prints_the_record_keygen_printed(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(config, "dkim", "keygen", "example.com", "--selector", "s1") == 0
    line = recordLine(capsys.readouterr().out)
    assert run(config, "dkim", "show", "EXAMPLE.com") == 0
    assert capsys.readouterr().out == line + "\n"


def test_keygen_refuses_to_replace_a_selector_unless_forced(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ("dkim", "keygen", "example.com", "--selector", "s1", "--algorithm", "ed25519")
    assert run(config, *argv) == 0
    first = recordLine(capsys.readouterr().out)
    key = keyFolder(config) / "s1.key"
    original = key.read_bytes()
    assert run(config, *argv) == 1
    assert "s1 of example.com has a key already" in errorLine(capsys)
    assert key.read_bytes() == original
    assert run(config, *argv, "--force") == 0
    second = recordLine(capsys.readouterr().out)
    assert key.read_bytes() != original
    assert key.stat().st_mode & 0o777 == 0o600
    assert dkim.verify(signed(config), dnsfunc=dns(second))
    assert not dkim.verify(signed(config), dnsfunc=dns(first))


def test_a_new_selector_becomes_the_active_one(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(config, "dkim", "keygen", "example.com", "--selector", "old") == 0
    old = recordLine(capsys.readouterr().out)
    assert (
        run(config, "dkim", "keygen", "example.com", "--selector", "new", "--algorithm", "ed25519")
        == 0
    )
    new = recordLine(capsys.readouterr().out)
    message = signed(config)
    assert b"s=new;" in message
    assert dkim.verify(message, dnsfunc=dns(old, new))
    assert not dkim.verify(message, dnsfunc=dns(old))
    assert sorted(p.name for p in keyFolder(config).iterdir()) == ["new.key", "old.key", "selector"]
    assert run(config, "dkim", "show", "example.com", "--selector", "old") == 0
    assert capsys.readouterr().out == old + "\n"


def test_a_key_made_without_activating_it_waits_for_activate(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(config, "dkim", "keygen", "example.com", "--selector", "s1") == 0
    assert run(config, "dkim", "keygen", "example.com", "--selector", "s2", "--no-activate") == 0
    out = capsys.readouterr().out
    assert "example.com signs with selector s1 until `tmail dkim activate example.com s2`" in out
    assert b"s=s1;" in signed(config)
    assert run(config, "dkim", "activate", "example.com", "s2") == 0
    assert capsys.readouterr().out == "example.com is signed with selector s2 from now on\n"
    assert b"s=s2;" in signed(config)


def test_keygen_refuses_a_domain_not_hosted_here(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(config, "dkim", "keygen", "example.org") == 1
    assert errorLine(capsys) == "tmail: error: domain example.org is not hosted here; add it first"
    assert not (config.parent / "data" / "dkim").exists()


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (("keygen", "example.com", "--bits", "512"), "an RSA key has 1024 to 4096 bits, not 512"),
        (
            ("keygen", "example.com", "--algorithm", "ed25519", "--bits", "2048"),
            "--bits is for rsa keys only",
        ),
        (("keygen", "example.com", "--selector", "../x"), "not a valid selector: '../x'"),
        (
            ("show", "example.com"),
            "example.com has no DKIM key; make one with `tmail dkim keygen example.com`",
        ),
        (("show", "example.com", "--selector", "nope"), "selector nope of example.com has no key"),
        (("activate", "example.com", "nope"), "selector nope of example.com has no key"),
    ],
)
def test_refusals_are_one_line_and_change_nothing(
    argv: tuple[str, ...], error: str, config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(config, "dkim", *argv) == 1
    assert errorLine(capsys).startswith(f"tmail: error: {error}")
    assert not keyFolder(config).exists() or not any(keyFolder(config).iterdir())
