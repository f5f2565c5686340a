"""Loading and validating tmail.toml into Settings."""

from __future__ import annotations

import json
import math
import os
import socket
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tmail.config.loader import loadSettings
from tmail.config.schema import (
    AuthSettings,
    IMAPSettings,
    MiB,
    POP3Settings,
    RealmSettings,
    Settings,
    SMTPSettings,
    SubmissionSettings,
    TLSSettings,
)
from tmail.errors import ConfigError
from tmail.tlscert import writeSelfSignedCertificate

FULL = """
hostname = "mail.example.com"
data_dir = "var/data"
log_format = "json"

[realm]
backend = "maildir"
domain = "Example.COM"
root = "/srv/mail"

[auth]
failure_delay = 1
max_failure_delay = 8.5
max_failures = 5
failure_window = 60
check_threads = 4

[tls]
certificate = "cert.pem"
key = "key.pem"

[smtp]
listen = ["tcp:25"]
max_message_size = 10485760
max_recipients = 50
max_line_length = 1000
max_errors = 5
timeout = 120
max_connections_per_address = 3

[submission]
listen = ["tcp:587", "tls:465:interface=127.0.0.1"]

[imap]
listen = ["tcp:143:interface=127.0.0.1", "tls:993"]
allow_plaintext_auth = "never"
max_literal_size = 1000
max_line_length = 2000
timeout = 1800.5
max_connections_per_address = 7

[pop3]
listen = ["tcp:110"]
allow_plaintext_auth = "always"
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    writeSelfSignedCertificate(tmp_path / "cert.pem", tmp_path / "key.pem", ["localhost"], [])
    return tmp_path


def write(folder: Path, text: str, name: str = "tmail.toml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def loadError(folder: Path, text: str) -> ConfigError:
    path = write(folder, text)
    with pytest.raises(ConfigError) as info:
        loadSettings(path)
    assert "\n" not in str(info.value)
    assert str(info.value).startswith(f"{path}: ")
    return info.value


def test_empty_file_gives_defaults_and_no_services(folder: Path) -> None:
    path = write(folder, "")
    s = loadSettings(path)
    assert s == Settings(path=path, hostname=socket.getfqdn(), data_dir=folder / "data")
    assert s.realm == RealmSettings()
    assert s.auth == AuthSettings()
    assert (s.tls, s.smtp, s.submission, s.imap, s.pop3) == (None, None, None, None, None)
    assert s.log_format == "text"


def test_full_file_sets_every_field(folder: Path) -> None:
    path = write(folder, FULL)
    s = loadSettings(path)
    assert s.hostname == "mail.example.com"
    assert s.data_dir == folder / "var" / "data"
    assert s.log_format == "json"
    assert s.realm == RealmSettings("maildir", "example.com", Path("/srv/mail"))
    assert s.auth == AuthSettings(1.0, 8.5, 5, 60.0, 4)
    assert s.tls == TLSSettings(folder / "cert.pem", folder / "key.pem")
    assert s.smtp == SMTPSettings(("tcp:25",), 10 * MiB, 50, 1000, 5, 120.0, 3)
    assert s.submission == SubmissionSettings(("tcp:587", "tls:465:interface=127.0.0.1"))
    assert s.imap == IMAPSettings(
        ("tcp:143:interface=127.0.0.1", "tls:993"), "never", 1000, 2000, 1800.5, 7
    )
    assert s.pop3 == POP3Settings(("tcp:110",), "always")
    assert isinstance(s.auth.failure_delay, float)


def test_relative_paths_resolve_against_the_config_folder(
    folder: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    (folder / "etc").mkdir()
    os.rename(folder / "cert.pem", folder / "etc" / "cert.pem")
    path = write(
        folder / "etc",
        'data_dir = "../data"\n[tls]\ncertificate = "cert.pem"\nkey = "../key.pem"\n'
        '[realm]\nroot = "mail"\n',
    )
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    s = loadSettings(Path(os.path.relpath(path)))
    assert s.path == path
    assert s.data_dir == folder / "data"
    assert s.tls == TLSSettings(folder / "etc" / "cert.pem", folder / "key.pem")
    assert s.realm.root == folder / "etc" / "mail"


def test_missing_section_disables_only_that_service(folder: Path) -> None:
    s = loadSettings(write(folder, '[imap]\nlisten = ["tcp:0"]\n'))
    assert s.imap == IMAPSettings(listen=("tcp:0",))
    assert (s.smtp, s.submission, s.pop3) == (None, None, None)


def test_client_prefix_and_connection_limits(folder: Path) -> None:
    """One IPv6 client's prefix, and the listeners' limits in all (0: none)."""
    s = loadSettings(
        write(
            folder,
            'ipv6_prefix_length = 48\n[smtp]\nlisten = ["tcp:25"]\nmax_connections = 0\n'
            '[pop3]\nlisten = ["tcp:110"]\nmax_connections = 5\n',
        )
    )
    assert s.ipv6_prefix_length == 48
    assert s.smtp is not None and s.smtp.max_connections == 0
    assert s.pop3 is not None and s.pop3.max_connections == 5
    assert loadSettings(write(folder, "")).ipv6_prefix_length == 64


def test_custom_realm_backend_syntax_is_accepted(folder: Path) -> None:
    s = loadSettings(write(folder, '[realm]\nbackend = "my_pkg.realms:SQLRealm"\n'))
    assert s.realm.backend == "my_pkg.realms:SQLRealm"


def test_systemd_listener_is_checked_for_syntax_only(folder: Path) -> None:
    s = loadSettings(write(folder, '[smtp]\nlisten = ["systemd:domain=INET:index=0"]\n'))
    assert s.smtp is not None and s.smtp.listen == ("systemd:domain=INET:index=0",)


TLS = '[tls]\ncertificate = "cert.pem"\nkey = "key.pem"\n'

ERRORS = [
    ("frobnicate = 1\n", "frobnicate", "unknown key"),
    (
        '[pop3]\nlisten = ["tcp:110"]\nuidl_format = "%v"\n',
        "pop3.uidl_format",
        "not a UIDL format: the format needs %u or %f, or messages would share an id",
    ),
    (
        '[smtp]\nlisten = ["tcp:25"]\nmax_mesage_size = 1\n',
        "smtp.max_mesage_size",
        'unknown key (did you mean "max_message_size"?)',
    ),
    ('[auth]\n"a\\nb" = 1\n', 'auth."a\\nb"', "unknown key"),
    (
        '[smtp]\nlisten = ["tcp:25"]\nmax_message_size = "abc"\n',
        "smtp.max_message_size",
        'expected an integer, got string "abc"',
    ),
    (
        '[smtp]\nlisten = ["tcp:25"]\nmax_recipients = true\n',
        "smtp.max_recipients",
        "expected an integer, got boolean true",
    ),
    (
        '[smtp]\nlisten = ["tcp:25"]\nmax_recipients = 1.5\n',
        "smtp.max_recipients",
        "expected an integer, got float 1.5",
    ),
    ('[smtp]\nlisten = ["tcp:25"]\nmax_errors = 0\n', "smtp.max_errors", "must be positive"),
    ('[pop3]\nlisten = ["tcp:110"]\ntimeout = -1\n', "pop3.timeout", "must be positive"),
    ('[pop3]\nlisten = ["tcp:110"]\ntimeout = nan\n', "pop3.timeout", "must be a finite number"),
    (
        '[pop3]\nlisten = ["tcp:110"]\ntimeout = false\n',
        "pop3.timeout",
        "expected a number, got boolean false",
    ),
    ("[auth]\nfailure_delay = -0.5\n", "auth.failure_delay", "must not be negative"),
    ("ipv6_prefix_length = 129\n", "ipv6_prefix_length", "must be at most 128"),
    ("ipv6_prefix_length = 0\n", "ipv6_prefix_length", "must be positive"),
    (
        '[imap]\nlisten = ["tcp:143"]\nmax_connections = -1\n',
        "imap.max_connections",
        "must not be negative",
    ),
    ("[auth]\ncheck_threads = 0\n", "auth.check_threads", "must be positive"),
    (
        "[auth]\nfailure_delay = 20\n",
        "auth.max_failure_delay",
        "must not be less than auth.failure_delay",
    ),
    (
        "[auth]\nmax_failures = 1979-05-27T07:32:00Z\n",
        "auth.max_failures",
        "expected an integer, got date-time 1979-05-27T07:32:00+00:00",
    ),
    (
        '[imap]\nlisten = "tcp:143"\n',
        "imap.listen",
        'expected an array of endpoint strings, got string "tcp:143"',
    ),
    ("[imap]\nlisten = []\n", "imap.listen", "must list at least one endpoint"),
    ("[imap]\ntimeout = 5\n", "imap.listen", "must list at least one endpoint"),
    (
        '[imap]\nlisten = ["tcp:143", "tcp:abc"]\n',
        "imap.listen[1]",
        "not a valid endpoint: 'tcp:abc': invalid literal for int() with base 10: 'abc'",
    ),
    ('[imap]\nlisten = ["tcp:143", 143]\n', "imap.listen[1]", "expected a string, got integer 143"),
    (
        '[imap]\nlisten = ["frob:143"]\n',
        "imap.listen[0]",
        "not a valid endpoint: 'frob:143': Unknown endpoint type: 'frob'",
    ),
    (
        '[imap]\nlisten = ["tcp:70000"]\n',
        "imap.listen[0]",
        "not a valid endpoint: 'tcp:70000': port 70000 is out of range 0..65535",
    ),
    (
        '[imap]\nlisten = ["systemd:domain=INET"]\n',
        "imap.listen[0]",
        "not a valid endpoint: 'systemd:domain=INET': give exactly one of index= and name=",
    ),
    (
        '[pop3]\nlisten = ["tcp:110", "tls:995"]\n',
        "pop3.listen[1]",
        "a tls: listener needs a [tls] section",
    ),
    (
        TLS + '[pop3]\nlisten = ["tls:99999"]\n',
        "pop3.listen[0]",
        "not a valid tls: listener: port 99999 is out of range 0..65535",
    ),
    (
        TLS + '[pop3]\nlisten = ["tls:995:backlog=5"]\n',
        "pop3.listen[0]",
        "not a valid tls: listener: unknown or repeated option 'backlog=5'; only interface= is "
        "allowed",
    ),
    (
        TLS + '[pop3]\nlisten = ["tls:995:interface=x"]\n',
        "pop3.listen[0]",
        "not a valid tls: listener: interface 'x' is not an IP address",
    ),
    (
        '[imap]\nlisten = ["tcp:143"]\nallow_plaintext_auth = "sometimes"\n',
        "imap.allow_plaintext_auth",
        "must be one of loopback, never, always",
    ),
    ('log_format = "xml"\n', "log_format", "must be one of text, json"),
    ('hostname = "not a host"\n', "hostname", 'not a valid host name: string "not a host"'),
    ('data_dir = ""\n', "data_dir", "must not be empty"),
    ('smtp = "on"\n', "smtp", 'expected a table, got string "on"'),
    (
        '[realm]\nbackend = "ldap"\n',
        "realm.backend",
        'must be "virtual", "maildir" or "package.module:Class"',
    ),
    ('[realm]\nbackend = "maildir"\n', "realm.domain", 'required when realm.backend is "maildir"'),
    ('[realm]\ndomain = "a..b"\n', "realm.domain", 'not a valid domain: string "a..b"'),
    ('[tls]\ncertificate = "cert.pem"\n', "tls.key", "required key is missing"),
    (
        '[tls]\ncertificate = "nope.pem"\nkey = "key.pem"\n',
        "tls.certificate",
        "cannot read file: No such file or directory",
    ),
    (
        '[tls]\ncertificate = "."\nkey = "key.pem"\n',
        "tls.certificate",
        "cannot read file: Is a directory",
    ),
    (
        '[tls]\ncertificate = "key.pem"\nkey = "key.pem"\n',
        "tls.certificate",
        "the file holds no PEM certificate",
    ),
    (
        '[tls]\ncertificate = "cert.pem"\nkey = "cert.pem"\n',
        "tls.key",
        "the file holds no usable PEM private key",
    ),
    (
        '[tls]\ncertificate = "cert.pem"\nkey = "other-key.pem"\n',
        "tls.key",
        "does not match the key of tls.certificate",
    ),
    (
        '[tls]\ncertificate = "cert.pem"\nkey = "encrypted-key.pem"\n',
        "tls.key",
        "the key is encrypted; tmail needs an unencrypted key",
    ),
]


@pytest.mark.parametrize(("text", "key", "problem"), ERRORS)
def test_each_problem_is_one_line_naming_file_key_and_problem(
    folder: Path, text: str, key: str, problem: str
) -> None:
    otherKey = ec.generate_private_key(ec.SECP256R1())
    (folder / "other-key.pem").write_bytes(
        otherKey.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (folder / "encrypted-key.pem").write_bytes(
        otherKey.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )
    error = loadError(folder, text)
    assert (error.key, error.problem) == (key, problem)
    assert str(error) == f"{folder / 'tmail.toml'}: {key}: {problem}"


def test_toml_syntax_error_names_line_and_column(folder: Path) -> None:
    error = loadError(folder, '[smtp]\nlisten = ["tcp:25"]\nmax_errors = = 3\n')
    assert str(error) == (
        f"{folder / 'tmail.toml'}: TOML syntax error at line 3, column 14: Invalid value"
    )


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        loadSettings(tmp_path / "nope.toml")
    assert (
        str(info.value) == f"{tmp_path / 'nope.toml'}: cannot read file: No such file or directory"
    )


def test_config_file_that_is_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "tmail.toml").write_bytes(b'hostname = "caf\xe9"\n')
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        loadSettings(tmp_path / "tmail.toml")


# Random junk for known keys: the loader must answer with ConfigError, nothing else.


def _tomlValue(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list):
        return "[" + ", ".join(_tomlValue(v) for v in value) + "]"
    assert isinstance(value, dict)
    return "{" + ", ".join(f"{json.dumps(k)} = {_tomlValue(v)}" for k, v in value.items()) + "}"


_KEYS = {
    "realm": ["backend", "domain", "root"],
    "auth": ["failure_delay", "max_failure_delay", "max_failures", "failure_window"],
    "tls": ["certificate", "key"],
    "smtp": [
        "listen",
        "max_message_size",
        "max_recipients",
        "max_line_length",
        "max_errors",
        "timeout",
        "max_connections_per_address",
    ],
    "imap": ["listen", "allow_plaintext_auth", "max_literal_size", "timeout"],
    "pop3": ["listen", "allow_plaintext_auth", "max_line_length", "uidl_format"],
}
_text = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=20)
_plausible = st.sampled_from(
    [
        "tcp:0",
        "tls:993",
        "tls:993:interface=::1",
        "tcp:0:interface=127.0.0.1",
        "loopback",
        "virtual",
        "maildir",
        "a.b:C",
        "cert.pem",
        "key.pem",
        "example.com",
        "systemd:domain=INET:index=0",
        "unix:sock",
        "ssl:0",
        "tcp:",
        ":",
        "\\",
        "tls:",
        "tls:1:interface=",
        1,
        0,
        -1,
        2**63 - 1,
        0.5,
    ]
)
_scalar = st.one_of(
    _plausible,
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(),
    st.booleans(),
    _text,
)
_value = st.recursive(
    _scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(["a", "listen"]), inner, max_size=2),
    ),
    max_leaves=6,
)


@st.composite
def _documents(draw: st.DrawFn) -> str:
    lines = []
    for key in ("hostname", "data_dir", "log_format"):
        if draw(st.booleans()):
            lines.append(f"{key} = {_tomlValue(draw(_value))}")
    for section, keys in _KEYS.items():
        if draw(st.booleans()):
            lines.append(f"[{section}]")
            for key in draw(st.lists(st.sampled_from(keys), unique=True, max_size=3)):
                lines.append(f"{key} = {_tomlValue(draw(_value))}")
    return "\n".join(lines) + "\n"


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(document=_documents())
def test_junk_values_only_ever_raise_config_error(folder: Path, document: str) -> None:
    path = write(folder, document)
    try:
        loadSettings(path)
    except ConfigError as e:
        assert "\n" not in str(e)
        assert str(e).startswith(f"{path}: ")
