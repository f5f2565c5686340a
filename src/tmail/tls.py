"""Server TLS contexts from the C{[tls]} settings."""

from __future__ import annotations

from twisted.internet.ssl import CertificateOptions, PrivateCertificate, TLSVersion

from tmail.config.schema import TLSSettings


def serverContextFactory(tls: TLSSettings) -> CertificateOptions:
    """
    A context factory for STARTTLS/STLS and implicit-TLS listeners: the
    certificate chain and key from the settings, TLS 1.2 or newer.
    """
    certificate = PrivateCertificate.loadPEM(  # type: ignore[no-untyped-call]
        tls.certificate.read_bytes() + b"\n" + tls.key.read_bytes()
    )
    return CertificateOptions(
        privateKey=certificate.privateKey.original,
        certificate=certificate.original,
        raiseMinimumTo=TLSVersion.TLSv1_2,
    )
