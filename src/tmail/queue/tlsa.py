# -*- test-case-name: tests.queue.test_queue_tlsa -*-
"""
TLSA records (RFC 6698, updated by RFC 7671) and how DANE for SMTP (RFC
7672 3) matches them against the certificate chain a server presents.

C{twisted.names} does not know type 52: a TLSA record comes as a
C{dns.UnknownRecord} holding its raw data, which L{parseTLSA} reads
(certificate usage, selector, matching type, association data).

Only DANE-TA(2) and DANE-EE(3) are usable in SMTP (RFC 7672 3.1.3); see
L{TLSARecord.usable}.  L{verifyChain} decides a handshake:

  - DANE-EE(3): the leaf certificate (whole, or its public key) matches;
    its names and dates are not looked at (RFC 7672 3.1.1);
  - DANE-TA(2): a certificate the server presents above the leaf matches
    (or, RFC 7671 5.2, a full "2 0 0" record is the trust anchor itself),
    the leaf chains to it, is valid now, and names the MX host (RFC 7672
    3.1.2, 3.2.2: the host name is the only reference identifier; a
    wildcard in the leftmost label is accepted).  Path validation is
    C{cryptography}'s (RFC 5280), which needs a DNS name in the
    certificate's subjectAltName (no fallback to the common name).  A
    trust anchor published as a bare public key ("2 1 0") that the server
    does not send as a certificate cannot be used.

Of the digests for one usage and selector, only the strongest published
(SHA2-512 over SHA2-256) is used (RFC 7671 9, digest algorithm agility),
so a weak digest left in the DNS does not weaken the check.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

__all__ = [
    "TLSA",
    "DANEMismatch",
    "Matching",
    "Selector",
    "TLSARecord",
    "Usage",
    "parseTLSA",
    "strongest",
    "verifyChain",
]

#: The TLSA record type (RFC 6698 7.1).
TLSA = 52


class Usage(IntEnum):
    """Certificate usages (RFC 7218 names)."""

    PKIX_TA = 0
    PKIX_EE = 1
    DANE_TA = 2
    DANE_EE = 3


class Selector(IntEnum):
    """What part of a certificate is matched."""

    CERT = 0
    SPKI = 1


class Matching(IntEnum):
    """How the selected part is compared with the record's data."""

    FULL = 0
    SHA2_256 = 1
    SHA2_512 = 2


_DIGEST_SIZES: dict[int, int] = {Matching.SHA2_256: 32, Matching.SHA2_512: 64}


class DANEMismatch(Exception):
    """The server's certificate chain does not match its TLSA records."""


@dataclass(frozen=True, slots=True)
class TLSARecord:
    """
    One TLSA record.

    @ivar usage: the certificate usage (L{Usage}, or any other number).
    @ivar selector: L{Selector}, or any other number.
    @ivar matchingType: L{Matching}, or any other number.
    @ivar data: the certificate association data.
    """

    usage: int
    selector: int
    matchingType: int
    data: bytes

    def toRData(self) -> bytes:
        """The record's data as the DNS carries it."""
        return bytes((self.usage, self.selector, self.matchingType)) + self.data

    def usable(self) -> bool:
        """
        Whether SMTP can use the record (RFC 7672 3.1.3): DANE-TA or
        DANE-EE, a known selector and matching type, a digest of the
        right length (RFC 7671 4).
        """
        if self.usage not in (Usage.DANE_TA, Usage.DANE_EE):
            return False
        if self.selector not in (Selector.CERT, Selector.SPKI):
            return False
        if self.matchingType == Matching.FULL:
            return bool(self.data)
        size = _DIGEST_SIZES.get(self.matchingType)
        return size is not None and len(self.data) == size

    def matches(self, certificate: x509.Certificate) -> bool:
        """Whether C{certificate} (its part the selector names) matches."""
        if self.selector == Selector.SPKI:
            selected = certificate.public_key().public_bytes(
                Encoding.DER, PublicFormat.SubjectPublicKeyInfo
            )
        else:
            selected = certificate.public_bytes(Encoding.DER)
        if self.matchingType == Matching.SHA2_256:
            selected = hashlib.sha256(selected).digest()
        elif self.matchingType == Matching.SHA2_512:
            selected = hashlib.sha512(selected).digest()
        elif self.matchingType != Matching.FULL:
            return False
        return selected == self.data

    def __str__(self) -> str:
        shown = self.data.hex()
        if len(shown) > 16:
            shown = shown[:16] + "..."
        return f"{self.usage} {self.selector} {self.matchingType} {shown}"


def parseTLSA(rdata: bytes) -> TLSARecord:
    """A TLSA record from its raw data; C{ValueError} when it is too short."""
    if len(rdata) < 3:
        raise ValueError("a TLSA record starts with usage, selector and matching type")
    return TLSARecord(rdata[0], rdata[1], rdata[2], bytes(rdata[3:]))


def strongest(records: Iterable[TLSARecord]) -> tuple[TLSARecord, ...]:
    """
    The usable records, each once, of the digests for each usage and
    selector only the strongest kind published (RFC 7671 9); full data is
    always kept.
    """
    usable = list(dict.fromkeys(r for r in records if r.usable()))
    best: dict[tuple[int, int], int] = {}
    for r in usable:
        if r.matchingType != Matching.FULL:
            key = (r.usage, r.selector)
            best[key] = max(best.get(key, 0), r.matchingType)
    return tuple(
        r
        for r in usable
        if r.matchingType == Matching.FULL or r.matchingType == best[(r.usage, r.selector)]
    )


def _anchors(record: TLSARecord, chain: Sequence[x509.Certificate]) -> list[x509.Certificate]:
    """The certificates C{record} makes trust anchors: from the chain above the leaf, or its own."""
    found = [c for c in chain[1:] if record.matches(c)]
    if not found and record.selector == Selector.CERT and record.matchingType == Matching.FULL:
        with contextlib.suppress(ValueError):
            found.append(x509.load_der_x509_certificate(record.data))
    return found


def verifyChain(
    records: Sequence[TLSARecord],
    chain: Sequence[x509.Certificate],
    hostname: str,
    now: datetime.datetime | None = None,
) -> TLSARecord:
    """
    Check the chain a server presented (leaf first) against its usable
    TLSA C{records} for C{hostname} (an ASCII host name): the record that
    authenticated it, or L{DANEMismatch} saying why none does.
    """
    if not chain:
        raise DANEMismatch("the server presented no certificate")
    leaf = chain[0]
    for record in records:
        if record.usage == Usage.DANE_EE and record.matches(leaf):
            return record
    when = now or datetime.datetime.now(datetime.UTC)
    problem = "no TLSA record matches the server's certificate chain"
    for record in records:
        if record.usage != Usage.DANE_TA:
            continue
        for anchor in _anchors(record, chain):
            try:
                verifier = (
                    PolicyBuilder()
                    .store(Store([anchor]))
                    .time(when)
                    .build_server_verifier(x509.DNSName(hostname))
                )
                verifier.verify(leaf, [c for c in chain[1:] if c != anchor])
            except (VerificationError, ValueError) as e:
                # cryptography's text goes on with the certificate's repr.
                why = str(e).split(" (encountered", 1)[0]
                problem = f"no chain to a DANE-TA trust anchor for {hostname}: {why}"
                continue
            return record
    raise DANEMismatch(problem)
