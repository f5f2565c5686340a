"""tmail init: a demo configuration, certificate and user that work at once."""

from __future__ import annotations

import contextlib
import io
import re
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from tmail.cli.commands import IO
from tmail.cli.main import main
from tmail.config.loader import loadSettings
from tmail.config.schema import (
    AuthSettings,
    IMAPSettings,
    LMTPSettings,
    POP3Settings,
    RealmSettings,
    SMTPSettings,
    SubmissionSettings,
    TLSSettings,
)
from tmail.directory.passwdfile import PasswdFileDirectory
from tmail.directory.passwords import cheapHasher, setHasher
from tmail.tlscert import writeSelfSignedCertificate


@pytest.fixture(autouse=True)
def _cheapHashing() -> Iterator[None]:
    previous = setHasher(cheapHasher())
    yield
    setHasher(previous)


def init(*argv: str) -> int:
    return main(["init", *argv], IO(stdin=io.StringIO()))


def passwordFrom(out: str, user: str = "demo@example.test") -> str:
    (match,) = re.findall(rf"^{re.escape(user)} password: (\S+)$", out, re.MULTILINE)
    return match


def test_init_writes_a_config_that_check_accepts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "new" / "srv"
    assert init(str(folder)) == 0
    out = capsys.readouterr().out
    password = passwordFrom(out)
    assert out.count(password) == 1
    assert main(["check", "--config", str(folder / "tmail.toml")]) == 0
    assert capsys.readouterr().out == f"{folder / 'tmail.toml'}: OK\n"

    s = loadSettings(folder / "tmail.toml")
    assert s.hostname == "mail.example.test"
    assert s.data_dir == folder / "data"
    assert s.realm == RealmSettings("virtual")
    assert s.tls == TLSSettings(folder / "cert.pem", folder / "key.pem")
    assert s.smtp == SMTPSettings(listen=("tcp:2525:interface=127.0.0.1",))
    assert s.submission == SubmissionSettings(
        listen=("tcp:5870:interface=127.0.0.1", "tls:4650:interface=127.0.0.1")
    )
    assert s.imap == IMAPSettings(
        listen=("tcp:1143:interface=127.0.0.1", "tls:9930:interface=127.0.0.1")
    )
    assert s.pop3 == POP3Settings(
        listen=("tcp:1110:interface=127.0.0.1", "tls:9950:interface=127.0.0.1")
    )
    assert s.lmtp is None, "the demo opens no LMTP port unless uncommented"

    directory = PasswdFileDirectory(folder / "data")
    assert directory.domains() == ["example.test"]
    assert directory.checkPassword("demo@example.test", password.encode()) == "demo@example.test"
    assert (folder / "key.pem").stat().st_mode & 0o777 == 0o600


def test_commented_defaults_in_the_config_are_the_real_defaults(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert init(str(tmp_path)) == 0
    config = tmp_path / "tmail.toml"
    text = config.read_text()
    uncommented = re.sub(r"(?m)^# (\[\w+\]$|\w+ = )", r"\1", text)
    assert uncommented != text
    config.write_text(uncommented)
    s = loadSettings(config)
    assert s.auth == AuthSettings()
    assert s.log_format == "text"
    assert s.smtp == SMTPSettings(listen=("tcp:2525:interface=127.0.0.1",))
    assert s.imap is not None and s.imap.max_literal_size == IMAPSettings().max_literal_size
    assert s.lmtp == LMTPSettings(listen=("tcp:2424:interface=127.0.0.1",))


def test_init_with_other_names(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert init(str(tmp_path), "--hostname", "mx.corp.test", "--domain", "Corp.TEST") == 0
    password = passwordFrom(capsys.readouterr().out, "demo@corp.test")
    assert loadSettings(tmp_path / "tmail.toml").hostname == "mx.corp.test"
    directory = PasswdFileDirectory(tmp_path / "data")
    assert directory.checkPassword("demo@corp.test", password.encode()) == "demo@corp.test"
    cert = x509.load_pem_x509_certificate((tmp_path / "cert.pem").read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["mx.corp.test", "localhost"]
    assert [str(a) for a in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]


def test_init_refuses_to_overwrite_a_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "tmail.toml").write_text("# mine\n")
    assert init(str(tmp_path)) == 1
    captured = capsys.readouterr()
    assert captured.err == (
        f"tmail: error: {tmp_path / 'tmail.toml'} already exists; not overwriting it\n"
    )
    assert captured.out == ""
    assert (tmp_path / "tmail.toml").read_text() == "# mine\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tmail.toml"]


def test_init_refuses_an_invalid_domain(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert init(str(tmp_path), "--domain", "not a domain") == 1
    assert capsys.readouterr().err == "tmail: error: not a valid domain: 'not a domain'\n"
    assert list(tmp_path.iterdir()) == []


def test_self_signed_certificate_is_trusted_as_its_own_ca(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    writeSelfSignedCertificate(cert, key, ["mail.example.test", "localhost"], ["127.0.0.1"])
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    client = ssl.create_default_context(cafile=str(cert))
    client.verify_flags |= ssl.VERIFY_X509_STRICT
    for name in ("mail.example.test", "localhost", "127.0.0.1"):
        toServer, toClient = ssl.MemoryBIO(), ssl.MemoryBIO()
        fromServer, fromClient = ssl.MemoryBIO(), ssl.MemoryBIO()
        s = server.wrap_bio(toServer, fromServer, server_side=True)
        c = client.wrap_bio(toClient, fromClient, server_hostname=name)
        for _ in range(5):
            for end in (c, s):
                with contextlib.suppress(ssl.SSLWantReadError):
                    end.do_handshake()
            toServer.write(fromClient.read())
            toClient.write(fromServer.read())
        assert c.getpeercert() is not None
