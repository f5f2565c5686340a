"""
TLSA records: parsing their raw data (hypothesis), which ones SMTP can use
(RFC 7672 3.1.3), digest agility (RFC 7671 9), and matching a certificate
chain as DANE-EE (RFC 7672 3.1.1) and DANE-TA (3.1.2, 3.2.2) require.
"""

from __future__ import annotations

import datetime
import hashlib
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.support.pki import makePKI

from tmail.queue.tlsa import (
    DANEMismatch,
    TLSARecord,
    parseTLSA,
    strongest,
    verifyChain,
)

records = st.builds(
    TLSARecord,
    st.integers(0, 255),
    st.integers(0, 255),
    st.integers(0, 255),
    st.binary(max_size=600),
)


@given(records)
def test_a_record_parses_back_from_its_data(record: TLSARecord) -> None:
    assert parseTLSA(record.toRData()) == record


@given(st.binary(max_size=2000))
def test_any_data_parses_or_is_refused_with_valueerror(data: bytes) -> None:
    try:
        record = parseTLSA(data)
    except ValueError:
        assert len(data) < 3
    else:
        assert record.toRData() == data
        str(record)
        record.usable()


@settings(deadline=None, max_examples=5)
@given(st.integers(1_000_000, 4_000_000))
def test_parsing_is_linear_in_the_record_size(size: int) -> None:
    start = time.monotonic()
    parseTLSA(b"\x03\x01\x01" + b"\xab" * size).usable()
    assert time.monotonic() - start < 2


def test_too_short_data_is_refused() -> None:
    for data in (b"", b"\x03", b"\x03\x01"):
        with pytest.raises(ValueError):
            parseTLSA(data)


def test_only_dane_ta_and_dane_ee_with_known_parameters_are_usable() -> None:
    sha256, sha512 = b"\x00" * 32, b"\x00" * 64
    assert TLSARecord(3, 1, 1, sha256).usable()
    assert TLSARecord(2, 0, 2, sha512).usable()
    assert TLSARecord(3, 0, 0, b"\x30\x82").usable()
    assert not TLSARecord(0, 1, 1, sha256).usable()  # PKIX-TA
    assert not TLSARecord(1, 1, 1, sha256).usable()  # PKIX-EE
    assert not TLSARecord(3, 2, 1, sha256).usable()  # unknown selector
    assert not TLSARecord(3, 1, 3, sha256).usable()  # unknown matching type
    assert not TLSARecord(3, 1, 1, sha512).usable()  # digest of the wrong length
    assert not TLSARecord(3, 1, 0, b"").usable()


def test_only_the_strongest_digest_of_a_usage_and_selector_is_kept() -> None:
    a256, b512 = TLSARecord(3, 1, 1, b"a" * 32), TLSARecord(3, 1, 2, b"b" * 64)
    ta256, full = TLSARecord(2, 0, 1, b"c" * 32), TLSARecord(3, 1, 0, b"spki")
    pkix = TLSARecord(1, 1, 2, b"d" * 64)
    assert strongest([a256, b512, ta256, full, pkix]) == (b512, ta256, full)
    assert strongest([a256, a256]) == (a256,)


class Chain:
    """A test CA and a leaf it issued."""

    def __init__(self, folder: Path, names: tuple[str, ...] = ("mx.dane.test",)) -> None:
        pki = makePKI(folder, hostnames=names)
        self.ca = x509.load_pem_x509_certificate(pki.caCertificate.read_bytes())
        self.leaf = x509.load_pem_x509_certificate(pki.certificate.read_bytes())


def digest(certificate: x509.Certificate, selector: int = 1) -> bytes:
    if selector == 1:
        data = certificate.public_key().public_bytes(
            Encoding.DER, PublicFormat.SubjectPublicKeyInfo
        )
    else:
        data = certificate.public_bytes(Encoding.DER)
    return hashlib.sha256(data).digest()


def test_dane_ee_matches_the_leaf_key_whatever_its_names_and_dates(tmp_path: Path) -> None:
    chain = Chain(tmp_path, names=("elsewhere.example",))
    record = TLSARecord(3, 1, 1, digest(chain.leaf))
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=3650)
    assert verifyChain([record], [chain.leaf], "mx.dane.test", now=later) is record


def test_dane_ee_matches_the_full_certificate(tmp_path: Path) -> None:
    chain = Chain(tmp_path)
    full = TLSARecord(3, 0, 0, chain.leaf.public_bytes(Encoding.DER))
    assert verifyChain([full], [chain.leaf, chain.ca], "mx.dane.test") is full


def test_dane_ee_does_not_match_an_issuer(tmp_path: Path) -> None:
    chain = Chain(tmp_path)
    with pytest.raises(DANEMismatch):
        verifyChain([TLSARecord(3, 1, 1, digest(chain.ca))], [chain.leaf, chain.ca], "mx.dane.test")


def test_dane_ta_needs_the_anchor_in_the_chain_and_the_host_name(tmp_path: Path) -> None:
    chain = Chain(tmp_path)
    record = TLSARecord(2, 0, 1, digest(chain.ca, selector=0))
    assert verifyChain([record], [chain.leaf, chain.ca], "mx.dane.test") is record
    with pytest.raises(DANEMismatch, match="DANE-TA"):
        verifyChain([record], [chain.leaf, chain.ca], "mx.other.test")
    with pytest.raises(DANEMismatch):
        verifyChain([record], [chain.leaf], "mx.dane.test")


def test_dane_ta_checks_the_dates(tmp_path: Path) -> None:
    chain = Chain(tmp_path)
    record = TLSARecord(2, 1, 1, digest(chain.ca))
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=3650)
    with pytest.raises(DANEMismatch):
        verifyChain([record], [chain.leaf, chain.ca], "mx.dane.test", now=later)


def test_dane_ta_full_record_is_an_anchor_the_server_need_not_send(tmp_path: Path) -> None:
    """RFC 7671 5.2: a "2 0 0" record holds the trust anchor itself."""
    chain = Chain(tmp_path)
    record = TLSARecord(2, 0, 0, chain.ca.public_bytes(Encoding.DER))
    assert verifyChain([record], [chain.leaf], "mx.dane.test") is record


def test_a_trust_anchor_from_another_ca_does_not_verify(tmp_path: Path) -> None:
    chain, other = Chain(tmp_path / "a"), Chain(tmp_path / "b")
    record = TLSARecord(2, 0, 0, other.ca.public_bytes(Encoding.DER))
    with pytest.raises(DANEMismatch):
        verifyChain([record], [chain.leaf, other.ca], "mx.dane.test")


def test_no_certificate_is_a_mismatch() -> None:
    with pytest.raises(DANEMismatch):
        verifyChain([TLSARecord(3, 1, 1, b"a" * 32)], [], "mx.dane.test")
