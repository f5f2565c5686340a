"""The [relay] section: how queued mail is sent on, and what is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from tmail.config.loader import loadSettings
from tmail.config.schema import RelayConfig, Settings
from tmail.errors import ConfigError
from tmail.queue.client import TLSMode
from tmail.queue.runner import RelaySettings


def load(folder: Path, text: str) -> Settings:
    path = folder / "tmail.toml"
    path.write_text(text)
    return loadSettings(path)


def test_without_a_relay_section_postfix_like_defaults_apply(tmp_path: Path) -> None:
    settings = load(tmp_path, 'hostname = "mail.example.com"\n')
    assert settings.relay == RelayConfig()
    runner = RelaySettings.fromConfig(settings)
    assert runner.heloName == "mail.example.com"
    assert (runner.port, runner.nameservers, runner.tls.mode) == (25, (), TLSMode.OPPORTUNISTIC)
    assert (runner.schedule.firstRetry, runner.schedule.lifetime) == (300.0, 5 * 86400.0)


def test_every_relay_setting_reaches_the_runner(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        'hostname = "mail.example.com"\n'
        "[relay]\n"
        'nameservers = ["127.0.0.1:5353", "[::1]"]\n'
        "port = 2525\n"
        'tls = "required"\n'
        "tls_verify = true\n"
        "max_connections = 5\n"
        "max_per_domain = 2\n"
        "connect_timeout = 10\n"
        "first_retry = 60\n"
        "max_backoff = 600\n"
        "lifetime = 86400\n"
        "delay_warning = 0\n",
    )
    runner = RelaySettings.fromConfig(settings)
    assert runner.nameservers == ("127.0.0.1:5353", "[::1]")
    assert (runner.port, runner.tls.mode, runner.tls.verify) == (2525, TLSMode.REQUIRED, True)
    assert (runner.maxConnections, runner.maxPerDomain, runner.timeouts.connect) == (5, 2, 10.0)
    schedule = runner.schedule
    assert (schedule.firstRetry, schedule.maxBackoff, schedule.lifetime) == (60.0, 600.0, 86400.0)
    assert schedule.delayWarning == 0.0


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ('nameservers = ["dns.example.com:x"]', "relay.nameservers", "expected an address"),
        ('nameservers = "127.0.0.1"', "relay.nameservers", "expected a list"),
        ('tls = "sometimes"', "relay.tls", "must be one of"),
        ("port = 70000", "relay.port", "not a TCP port"),
        ("max_per_domain = 0", "relay.max_per_domain", "must be positive"),
        ("first_retry = 600\nmax_backoff = 60", "relay.max_backoff", "must not be less"),
        ("delay_warning = -1", "relay.delay_warning", "must not be negative"),
        ("lifetyme = 5", "relay.lifetyme", 'did you mean "lifetime"'),
    ],
)
def test_bad_relay_setting_is_named_with_its_problem(
    tmp_path: Path, text: str, key: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, f"[relay]\n{text}\n")
    message = str(info.value)
    assert key in message
    assert problem in message
