"""The tls: listener shorthand and its expansion into Twisted endpoint strings."""

from __future__ import annotations

from pathlib import Path

import pytest
from twisted.internet.endpoints import SSL4ServerEndpoint, serverFromString
from twisted.internet.testing import MemoryReactor

from tmail.config.endpoints import (
    checkServerEndpoint,
    escapeEndpointValue,
    expandListener,
    parseTLSShorthand,
    splitEndpoint,
)
from tmail.config.schema import TLSSettings
from tmail.tlscert import writeSelfSignedCertificate


def test_other_descriptions_pass_unchanged() -> None:
    for description in ("tcp:25", "ssl:993:certKey=x", "unix:/run/tmail.sock", "tlsx"):
        assert expandListener(description, None) == description


def test_tls_shorthand_expands_to_ssl_with_the_tls_section() -> None:
    tls = TLSSettings(Path("/etc/tmail/cert.pem"), Path("/etc/tmail/key.pem"))
    assert expandListener("tls:993:interface=127.0.0.1", tls) == (
        "ssl:993:interface=127.0.0.1:certKey=/etc/tmail/cert.pem:privateKey=/etc/tmail/key.pem"
    )
    assert expandListener("tls:0", tls) == (
        "ssl:0:certKey=/etc/tmail/cert.pem:privateKey=/etc/tmail/key.pem"
    )


def test_tls_shorthand_without_tls_section_is_refused() -> None:
    with pytest.raises(ValueError, match=r"needs a \[tls\] section"):
        expandListener("tls:993", None)


def test_paths_with_special_characters_survive_twisted_parsing(tmp_path: Path) -> None:
    folder = tmp_path / "odd:dir=x\\y"
    folder.mkdir()
    tls = TLSSettings(folder / "cert.pem", folder / "key.pem")
    writeSelfSignedCertificate(tls.certificate, tls.key, ["localhost"], ["127.0.0.1"])
    expanded = expandListener("tls:993:interface=\\:\\:1", tls)
    endpoint = serverFromString(MemoryReactor(), expanded)
    assert isinstance(endpoint, SSL4ServerEndpoint)
    assert endpoint._port == 993
    assert endpoint._interface == "::1"


def test_escape_and_split_round_trip() -> None:
    value = "a:b=c\\d"
    assert splitEndpoint("x:" + escapeEndpointValue(value) + ":y") == ["x", value, "y"]


@pytest.mark.parametrize(
    ("description", "expected"),
    [
        ("tls:993", (993, None)),
        ("tls:0:interface=127.0.0.1", (0, "127.0.0.1")),
        ("TLS:995:interface=\\:\\:1", (995, "::1")),
    ],
)
def test_parse_valid_shorthand(description: str, expected: tuple[int, str | None]) -> None:
    assert parseTLSShorthand(description) == expected


@pytest.mark.parametrize(
    "description",
    [
        "tls:",
        "tls:x",
        "tls:-1",
        "tls:65536",
        "tls:993:port=1",
        "tls:993:interface",
        "tls:993:interface=1.2.3.4:interface=1.2.3.4",
        "tls:993:interface=host.example",
        "tls:\u0663",
    ],
)
def test_parse_invalid_shorthand(description: str) -> None:
    with pytest.raises(ValueError):
        parseTLSShorthand(description)


@pytest.mark.parametrize(
    "description",
    [
        "tcp:25",
        "tcp:0:interface=127.0.0.1",
        "tcp6:25:interface=\\:\\:1",
        "unix:/tmp/x.sock",
        "systemd:domain=INET:index=0",
        "systemd:domain=INET6:name=imap",
    ],
)
def test_valid_server_endpoints(description: str) -> None:
    checkServerEndpoint(description)


@pytest.mark.parametrize(
    "description",
    [
        "",
        "tcp",
        "tcp:abc",
        "tcp:65536",
        "tcp:-1",
        "tcp:25:colour=red",
        "nope:25",
        "ssl:993:certKey=/nonexistent/cert.pem",
        "systemd:domain=INET",
        "systemd:domain=NOPE:index=0",
        "systemd:domain=INET:index=x",
    ],
)
def test_invalid_server_endpoints(description: str) -> None:
    with pytest.raises(ValueError, match=r"^'"):
        checkServerEndpoint(description)
