"""
Server TLS contexts from the C{[tls]} settings, and the type of a client's
trust root.  Below the configuration: what it needs of the settings is
the two files (L{CertificateFiles}), which C{TLSSettings} has.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Protocol, TypeAlias

from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from twisted.internet.ssl import CertificateOptions, TLSVersion

#: The CAs a client verifies servers against: what Twisted's
#: C{trustRootFromCertificates} and C{platformTrust} return and
#: C{optionsForClientTLS} takes (their interface is not public).
TrustRoot: TypeAlias = Any

_KEY_BLOCK = re.compile(
    rb"-----BEGIN ([A-Z ]*)PRIVATE KEY-----.+?-----END \1PRIVATE KEY-----", re.DOTALL
)


class CertificateFiles(Protocol):
    """Where a server's certificate (with its chain) and its key are, in PEM."""

    @property
    def certificate(self) -> Path: ...

    @property
    def key(self) -> Path: ...


def serverContextFactory(tls: CertificateFiles) -> CertificateOptions:
    """
    A context factory for STARTTLS/STLS and implicit-TLS listeners: the
    certificate, any intermediate certificates that follow it in the same
    file, and the key; TLS 1.2 or newer.
    """
    chain = x509.load_pem_x509_certificates(tls.certificate.read_bytes())
    match = _KEY_BLOCK.search(tls.key.read_bytes())
    if match is None:
        raise ValueError(f"{tls.key}: no PEM private key")
    key = load_pem_private_key(match.group(0), password=None)
    # pyOpenSSL takes cryptography objects directly (its X509 wrappers are
    # deprecated), though Twisted's annotations still name the wrappers.
    return CertificateOptions(
        privateKey=key,  # type: ignore[arg-type]
        certificate=chain[0],  # type: ignore[arg-type]
        extraCertChain=chain[1:],  # type: ignore[arg-type]
        raiseMinimumTo=TLSVersion.TLSv1_2,
    )
