"""The [lmtp] section: unix socket and loopback listeners, and what is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from tmail.config.loader import loadSettings
from tmail.config.schema import LMTPSettings, SMTPSettings
from tmail.errors import ConfigError


def load(folder: Path, text: str) -> LMTPSettings | None:
    path = folder / "tmail.toml"
    path.write_text(text)
    return loadSettings(path).lmtp


def test_unix_socket_and_loopback_listeners_with_smtp_limits(tmp_path: Path) -> None:
    lmtp = load(
        tmp_path,
        "[lmtp]\n"
        'listen = ["unix:/run/tmail/lmtp:mode=660", "tcp:24:interface=127.0.0.1"]\n'
        "max_message_size = 52428800\n"
        "max_recipients = 50\n",
    )
    assert lmtp == LMTPSettings(
        listen=("unix:/run/tmail/lmtp:mode=660", "tcp:24:interface=127.0.0.1"),
        max_message_size=52428800,
        max_recipients=50,
    )


def test_lmtp_defaults_are_smtps_but_allow_more_connections(tmp_path: Path) -> None:
    """The MTA opens up to its concurrency limit, all from one address."""
    lmtp = load(tmp_path, '[lmtp]\nlisten = ["unix:/run/tmail/lmtp"]\n')
    assert lmtp is not None
    smtp = SMTPSettings()
    assert (lmtp.max_message_size, lmtp.max_recipients, lmtp.timeout) == (
        smtp.max_message_size,
        smtp.max_recipients,
        smtp.timeout,
    )
    assert lmtp.max_connections_per_address == 100


def test_no_lmtp_section_means_no_lmtp_service(tmp_path: Path) -> None:
    assert load(tmp_path, '[smtp]\nlisten = ["tcp:25"]\n') is None


@pytest.mark.parametrize(
    ("listen", "key", "problem"),
    [
        (
            '"unix:lmtp.sock"',
            "lmtp.listen[0]",
            "not a valid endpoint: 'unix:lmtp.sock': the socket path must be absolute",
        ),
        (
            '"unix:/run/tmail/lmtp:mode=rw"',
            "lmtp.listen[0]",
            "not a valid endpoint: 'unix:/run/tmail/lmtp:mode=rw': "
            "mode= must be octal permissions such as 660",
        ),
        (
            '"unix:/run/tmail/lmtp:mode=4777"',
            "lmtp.listen[0]",
            "not a valid endpoint: 'unix:/run/tmail/lmtp:mode=4777': "
            "mode= must be octal permissions such as 660",
        ),
        (
            '"tcp:24", "unix:/run/tmail/lmtp:owner=postfix"',
            "lmtp.listen[1]",
            "not a valid endpoint: 'unix:/run/tmail/lmtp:owner=postfix': "
            "_parseUNIX() got an unexpected keyword argument 'owner'",
        ),
        (
            '"tcp:24:interface=127.0.0.1:colour=red"',
            "lmtp.listen[0]",
            "not a valid endpoint: 'tcp:24:interface=127.0.0.1:colour=red': "
            "_parseTCP() got an unexpected keyword argument 'colour'",
        ),
        ("", "lmtp.listen", "must list at least one endpoint"),
    ],
)
def test_bad_listener_is_one_line_naming_it(
    tmp_path: Path, listen: str, key: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, f"[lmtp]\nlisten = [{listen}]\n")
    assert (info.value.key, info.value.problem) == (key, problem)
    assert str(info.value) == f"{tmp_path / 'tmail.toml'}: {key}: {problem}"


def test_socket_path_too_long_for_a_socket_address(tmp_path: Path) -> None:
    path = "/run/" + "x" * 103
    with pytest.raises(ConfigError) as info:
        load(tmp_path, f'[lmtp]\nlisten = ["unix:{path}"]\n')
    assert info.value.problem.endswith("the socket path is longer than 107 bytes")


def test_misspelt_lmtp_key_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, '[lmtp]\nlisten = ["unix:/run/tmail/lmtp"]\nmax_recipient = 5\n')
    assert str(info.value).endswith(
        'lmtp.max_recipient: unknown key (did you mean "max_recipients"?)'
    )
