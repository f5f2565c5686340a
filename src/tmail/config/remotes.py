"""
Remote hosts named in the configuration: the smarthost the outbound queue
relays through (C{[relay] smarthost}), with the files of its login and CAs,
and the DNS name servers it asks (C{[relay] nameservers}).  Read here,
below the queue, so that the loader checks them with the same code that
later uses them.
"""

from __future__ import annotations

import ipaddress
import stat
from dataclasses import dataclass, field
from pathlib import Path

import idna
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from twisted.internet.ssl import Certificate, trustRootFromCertificates

from tmail.directory.addresses import isValidHostname
from tmail.tls import TrustRoot

__all__ = [
    "Credentials",
    "exposedToOthers",
    "loadTrustRoot",
    "parseNameserver",
    "parseSmarthost",
    "readCredentials",
]

#: Smarthost schemes, and whether each is implicit TLS.
_SCHEMES = {"tcp": False, "tls": True}


def parseSmarthost(text: str) -> tuple[str, int, bool]:
    """
    C{"tcp:HOST:PORT"} or C{"tls:HOST:PORT"} as C{(host, port, implicitTLS)};
    C{ValueError} saying what is wrong otherwise.
    """
    scheme, _, rest = text.partition(":")
    if scheme not in _SCHEMES:
        raise ValueError("expected tcp:HOST:PORT (STARTTLS) or tls:HOST:PORT (implicit TLS)")
    if rest.startswith("["):
        inner, bracket, after = rest[1:].partition("]")
        if not bracket or not after.startswith(":"):
            raise ValueError("an IPv6 address is written in brackets: tcp:[2001:db8::1]:587")
        try:
            host = str(ipaddress.IPv6Address(inner))
        except ValueError:
            raise ValueError(f"not an IPv6 address: {inner!r}") from None
        port = after[1:]
    else:
        host, colon, port = rest.rpartition(":")
        if not colon or not host:
            raise ValueError("expected HOST:PORT after the scheme")
        if ":" in host:
            raise ValueError("an IPv6 address is written in brackets: tcp:[2001:db8::1]:587")
        if not _isAddress(host):
            if not isValidHostname(host):
                raise ValueError(f"not a host name or address: {host!r}")
            host = idna.encode(host, uts46=True).decode("ascii")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"not a TCP port: {port!r}")
    return host.lower(), int(port), _SCHEMES[scheme]


def parseNameserver(text: str) -> tuple[str, int]:
    """
    C{"192.0.2.53"}, C{"127.0.0.1:5353"}, C{"[::1]:5353"} or C{"::1"} as an
    C{(address, port)} pair; C{ValueError} when it is none of those (a
    name server is given by its IP address, as in C{resolv.conf}).
    """
    text = text.strip()
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"not a name server address: {text!r}")
        port = rest[1:] if rest else "53"
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    else:
        host, port = text, "53"
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"not a name server address: {text!r}")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"not a name server address (an IP address): {text!r}") from None
    return host, int(port)


def _isAddress(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class Credentials:
    """A user name and password to log in to a server with (never shown in a repr)."""

    username: str
    password: str = field(repr=False)


def readCredentials(path: Path) -> Credentials:
    """
    The login in the file at C{path}: one line C{username:password}.
    C{OSError} when it cannot be read, C{ValueError} (never quoting the
    file) when it is not that line.
    """
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("the file is not UTF-8 text") from None
    if text.endswith("\n"):
        text = text[:-1].removesuffix("\r")
    if not text.strip():
        raise ValueError("the file is empty; expected one line username:password")
    if "\n" in text or "\r" in text:
        raise ValueError("expected one line username:password, found more lines")
    username, colon, password = text.partition(":")
    if not colon or not username or not password:
        raise ValueError("expected one line username:password")
    if "\x00" in text:
        raise ValueError("the file holds a NUL character")
    return Credentials(username, password)


def exposedToOthers(path: Path) -> bool:
    """Whether the group or others may read the file at C{path}."""
    return bool(path.stat().st_mode & (stat.S_IRGRP | stat.S_IROTH))


def loadTrustRoot(path: Path) -> TrustRoot:
    """
    The CAs in the PEM bundle at C{path}; C{OSError} when it cannot be
    read, C{ValueError} when it holds no certificate.
    """
    found = x509.load_pem_x509_certificates(path.read_bytes())
    root: TrustRoot = trustRootFromCertificates(
        [Certificate.loadPEM(c.public_bytes(serialization.Encoding.PEM)) for c in found]
    )
    return root
