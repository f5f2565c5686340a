"""The [relay] section: how queued mail is sent on, and what is refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from tests.support.pki import makePKI
from twisted.logger import capturedLogs

from tmail.config.loader import loadSettings
from tmail.config.remotes import Credentials
from tmail.config.schema import RelayConfig, Settings
from tmail.errors import ConfigError
from tmail.queue.clientsettings import TLSMode
from tmail.queue.relaysettings import RelaySettings


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
    assert runner.smarthost is None


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
        "delay_warning = 0\n"
        "connection_reuse_time = 0\n"
        "connection_reuse_limit = 7\n",
    )
    runner = RelaySettings.fromConfig(settings)
    assert runner.nameservers == ("127.0.0.1:5353", "[::1]")
    assert (runner.port, runner.tls.mode, runner.tls.verify) == (2525, TLSMode.REQUIRED, True)
    assert (runner.maxConnections, runner.maxPerDomain, runner.timeouts.connect) == (5, 2, 10.0)
    schedule = runner.schedule
    assert (schedule.firstRetry, schedule.maxBackoff, schedule.lifetime) == (60.0, 600.0, 86400.0)
    assert schedule.delayWarning == 0.0
    assert (runner.reuseTime, runner.reuseLimit) == (0.0, 7)


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
        ('resolver = "dns.example"', "relay.resolver", "expected an address"),
        ("connection_reuse_limit = 0", "relay.connection_reuse_limit", "must be positive"),
        ("connection_reuse_time = -1", "relay.connection_reuse_time", "must not be negative"),
        ('tls_policy = "verify"', "relay.tls_policy", "expected a table of domain = level"),
        ('[relay.tls_policy]\n"bank.example" = "secure"', "relay.tls_policy", "must be one of"),
        ('[relay.tls_policy]\n"bad domain" = "verify"', "relay.tls_policy", "not a valid domain"),
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


SMARTHOST = 'hostname = "mail.example.com"\n[relay]\n'


def writeSecret(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    os.chmod(path, mode)
    return path


def test_smarthost_settings_reach_the_runner(tmp_path: Path) -> None:
    writeSecret(tmp_path / "smarthost.secret", "relay@example.com:pass:with:colons\n")
    makePKI(tmp_path / "pki")
    settings = load(
        tmp_path,
        SMARTHOST + 'smarthost = "tls:[2001:db8::25]:465"\n'
        'smarthost_credentials = "smarthost.secret"\n'
        'smarthost_ca = "pki/ca.pem"\n',
    )
    assert settings.relay.smarthost_credentials == tmp_path / "smarthost.secret"
    smarthost = RelaySettings.fromConfig(settings).smarthost
    assert smarthost is not None
    assert (smarthost.host, smarthost.port, smarthost.implicitTLS) == ("2001:db8::25", 465, True)
    assert smarthost.credentials == Credentials("relay@example.com", "pass:with:colons")
    assert "pass:with:colons" not in repr(smarthost)
    assert smarthost.verify
    assert smarthost.trustRoot is not None


def test_smarthost_over_starttls_requires_tls_and_verifies_by_default(tmp_path: Path) -> None:
    settings = load(tmp_path, SMARTHOST + 'smarthost = "tcp:Smtp.Example.NET:587"\n')
    runner = RelaySettings.fromConfig(settings)
    assert runner.smarthost is not None
    assert (runner.smarthost.host, runner.smarthost.port) == ("smtp.example.net", 587)
    assert not runner.smarthost.implicitTLS
    assert runner.smarthost.credentials is None
    tls = runner.clientSettings().tls
    assert (tls.mode, tls.verify, tls.clearOnFailure) == (TLSMode.REQUIRED, True, False)


def test_empty_smarthost_means_mx_delivery(tmp_path: Path) -> None:
    settings = load(tmp_path, SMARTHOST + 'smarthost = ""\n')
    assert RelaySettings.fromConfig(settings).smarthost is None


def test_credentials_file_others_may_read_is_used_with_a_warning(tmp_path: Path) -> None:
    writeSecret(tmp_path / "secret", "relay:s3cr3t\n", mode=0o644)
    settings = load(
        tmp_path,
        SMARTHOST + 'smarthost = "tcp:smtp.example.net:587"\nsmarthost_credentials = "secret"\n',
    )
    with capturedLogs() as events:
        runner = RelaySettings.fromConfig(settings)
    assert runner.smarthost is not None
    assert runner.smarthost.credentials == Credentials("relay", "s3cr3t")
    warnings = [e for e in events if "smarthost_credentials" in e["log_format"]]
    assert len(warnings) == 1
    assert "s3cr3t" not in repr(warnings[0])


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ('smarthost = "smtp.example.net:587"', "relay.smarthost", "expected tcp:HOST:PORT"),
        ('smarthost = "tcp:smtp.example.net"', "relay.smarthost", "expected HOST:PORT"),
        ('smarthost = "tcp:smtp.example.net:0"', "relay.smarthost", "not a TCP port"),
        ('smarthost = "tcp:2001:db8::25:587"', "relay.smarthost", "in brackets"),
        ('smarthost = "tcp:[2001:db8::zz]:587"', "relay.smarthost", "not an IPv6 address"),
        ('smarthost = "tcp:bad_host!:587"', "relay.smarthost", "not a host name"),
        ("smarthost = 587", "relay.smarthost", "expected a string"),
        (
            'smarthost_credentials = "secret"',
            "relay.smarthost_credentials",
            "only used with relay.smarthost",
        ),
        (
            'smarthost = "tcp:smtp.example.net:587"\nsmarthost_credentials = "missing"',
            "relay.smarthost_credentials",
            "cannot read",
        ),
        (
            'smarthost = "tcp:smtp.example.net:587"\nsmarthost_ca = "missing.pem"',
            "relay.smarthost_ca",
            "cannot read",
        ),
        (
            'smarthost = "tcp:smtp.example.net:587"\nsmarthost_ca = "secret"',
            "relay.smarthost_ca",
            "holds no PEM certificate",
        ),
        ("smarthost_tls_verify = 1", "relay.smarthost_tls_verify", "expected true or false"),
    ],
)
def test_bad_smarthost_setting_is_one_line_naming_file_and_key(
    tmp_path: Path, text: str, key: str, problem: str
) -> None:
    writeSecret(tmp_path / "secret", "relay:pw\n")
    with pytest.raises(ConfigError) as info:
        load(tmp_path, f"[relay]\n{text}\n")
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'tmail.toml'}: {key}: ")
    assert problem in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "content",
    ["only-a-s3cr3t\n", "relay:\n", ":s3cr3t\n", "relay:s3cr3t\nother:s3cr3t\n", "", "\n"],
)
def test_malformed_credentials_file_is_refused_without_quoting_it(
    tmp_path: Path, content: str
) -> None:
    writeSecret(tmp_path / "secret", content)
    with pytest.raises(ConfigError) as info:
        load(
            tmp_path,
            '[relay]\nsmarthost = "tcp:smtp.example.net:587"\nsmarthost_credentials = "secret"\n',
        )
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'tmail.toml'}: relay.smarthost_credentials: ")
    assert "username:password" in message
    assert "\n" not in message
    assert "s3cr3t" not in message
