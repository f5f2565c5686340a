# -*- test-case-name: tests.queue.test_queue_smarthost -*-
"""
A smarthost: the one server all outbound mail goes to instead of the
recipients' MX hosts (Postfix's C{relayhost}), usually a provider's
submission service that wants a login.

C{[relay] smarthost} names it as C{"tcp:HOST:PORT"} (STARTTLS, which is
then required) or C{"tls:HOST:PORT"} (implicit TLS, RFC 8314); HOST is a
host name, an IPv4 address, or an IPv6 address in brackets
(C{"tcp:[2001:db8::25]:587"}).  Its login comes from a file holding one
line C{username:password} (the password may contain colons), so the
password is never in the configuration.  The server's certificate is
verified by default, against the platform's CAs or a given PEM bundle.

L{tmail.config.loader} checks all of this when it loads the file;
L{tmail.queue.relaysettings.RelaySettings.fromConfig} reads the files again when
the runner is built.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from twisted.internet.ssl import Certificate, trustRootFromCertificates

from tmail.queue.client import Credentials
from tmail.tls import TrustRoot

__all__ = [
    "Smarthost",
    "exposedToOthers",
    "loadTrustRoot",
    "readCredentials",
]


@dataclass(frozen=True, slots=True)
class Smarthost:
    """
    Where all outbound mail goes, and how.

    @ivar host: a host name (resolved to its A/AAAA addresses) or an IP
        address (used as it is); what its certificate must name.
    @ivar implicitTLS: TLS from the first octet (C{tls:}); else STARTTLS,
        required.
    @ivar credentials: the login (AUTH), if one is needed.
    @ivar verify: check the certificate chain and that it names C{host}.
    @ivar trustRoot: the CAs to trust instead of the platform's.
    """

    host: str
    port: int
    implicitTLS: bool = False
    credentials: Credentials | None = None
    verify: bool = True
    trustRoot: TrustRoot | None = None


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
