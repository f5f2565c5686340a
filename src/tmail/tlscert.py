"""
Self-signed certificates, so that a fresh installation (C{tmail init}) can
offer STARTTLS and implicit TLS at once.  A production server should use a
certificate from a CA instead.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["writeSelfSignedCertificate"]

#: How long a generated certificate is valid.
VALIDITY = datetime.timedelta(days=825)


def writeSelfSignedCertificate(
    certPath: Path,
    keyPath: Path,
    hostnames: list[str],
    ipAddresses: list[str],
) -> None:
    """
    Write a new ECDSA P-256 key (mode 0600) and a self-signed server
    certificate for C{hostnames} and C{ipAddresses} (as subject alternative
    names; the first host name is also the common name).  Clients can trust
    the certificate file itself as their CA file.

    @raise ValueError: when no host name is given or an IP address is invalid.
    """
    if not hostnames:
        raise ValueError("a certificate needs at least one host name")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0])])
    now = datetime.datetime.now(datetime.UTC)
    alternativeNames: list[x509.GeneralName] = [x509.DNSName(h) for h in hostnames]
    alternativeNames += [x509.IPAddress(ipaddress.ip_address(a)) for a in ipAddresses]
    publicKey = key.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(publicKey)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.SubjectAlternativeName(alternativeNames), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(publicKey), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(publicKey), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    keyBytes = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(keyPath, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, keyBytes)
    finally:
        os.close(fd)
    certPath.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
