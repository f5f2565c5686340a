"""Server TLS contexts from the C{[tls]} settings."""

from __future__ import annotations

import re

from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from OpenSSL import crypto
from twisted.internet.ssl import CertificateOptions, TLSVersion

from tmail.config.schema import TLSSettings

_KEY_BLOCK = re.compile(
    rb"-----BEGIN ([A-Z ]*)PRIVATE KEY-----.+?-----END \1PRIVATE KEY-----", re.DOTALL
)


def serverContextFactory(tls: TLSSettings) -> CertificateOptions:
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
    return CertificateOptions(
        privateKey=crypto.PKey.from_cryptography_key(key),  # type: ignore[arg-type]
        certificate=crypto.X509.from_cryptography(chain[0]),
        extraCertChain=[crypto.X509.from_cryptography(c) for c in chain[1:]],
        raiseMinimumTo=TLSVersion.TLSv1_2,
    )
