"""
DKIM signing of outbound mail, checked the way a receiving server checks
it: dkimpy's own C{dkim.verify}, with the published TXT record as the DNS
answer.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import dkim
import pytest
from dkim.util import parse_tag_value
from hypothesis import given, settings
from hypothesis import strategies as st

from tmail.directory.passwdfile import PasswdFileDirectory
from tmail.queue.dkim import (
    DKIMKey,
    DKIMKeyError,
    DKIMKeyStore,
    DKIMSigner,
    PrivateKey,
    fromDomain,
    generateKey,
)

MESSAGE = (
    b"Received: from client.example.net by mail.example.com\r\n"
    b"From: Alice <alice@example.com>\r\n"
    b"To: bob@example.org\r\n"
    b"Cc: carol@example.org\r\n"
    b"Subject: Lunch\r\n"
    b"Date: Sat, 28 Nov 2026 12:00:00 +0000\r\n"
    b"Message-ID: <1@example.com>\r\n"
    b"X-Mailer: something\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"Noon at the usual place?\r\n"
)

_KEYS: dict[str, PrivateKey] = {}


def privateKey(algorithm: str) -> PrivateKey:
    """One key per algorithm for the whole module: RSA keys take a while to make."""
    if algorithm not in _KEYS:
        _KEYS[algorithm] = generateKey(algorithm)
    return _KEYS[algorithm]


def resolver(*keys: DKIMKey) -> Callable[..., bytes | None]:
    """A DNS that publishes the TXT records of C{keys}, as dkimpy asks for them."""
    records = {f"{key.dnsName()}.".encode(): key.txtRecord().encode() for key in keys}

    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        return records.get(name)

    return lookup


def verifies(message: bytes, *published: DKIMKey) -> bool:
    return bool(dkim.verify(message, dnsfunc=resolver(*published)))


def tags(signed: bytes) -> dict[bytes, bytes]:
    """The tags of the first (our) DKIM-Signature field of C{signed}."""
    lines = re.split(rb"\r?\n", signed)
    assert lines[0].startswith(b"DKIM-Signature:")
    value = [lines[0].partition(b":")[2]]
    for line in lines[1:]:
        if line[:1] not in (b" ", b"\t"):
            break
        value.append(line)
    return dict(parse_tag_value(b"".join(value)))


@pytest.fixture
def directory(tmp_path: Path) -> PasswdFileDirectory:
    directory = PasswdFileDirectory(tmp_path / "data")
    directory.addDomain("example.com")
    directory.addDomain("bücher.example")
    return directory


@pytest.fixture
def keys(tmp_path: Path) -> DKIMKeyStore:
    return DKIMKeyStore(tmp_path / "data" / "dkim")


@pytest.fixture
def signer(keys: DKIMKeyStore, directory: PasswdFileDirectory) -> DKIMSigner:
    return DKIMSigner(keys, directory)


@pytest.mark.parametrize("algorithm", ["rsa", "ed25519"])
def test_signed_message_verifies_against_its_published_record(
    algorithm: str, keys: DKIMKeyStore, signer: DKIMSigner
) -> None:
    key = keys.add("example.com", "s1", privateKey(algorithm))
    signed = signer.signMessage(MESSAGE)
    assert signed.startswith(b"DKIM-Signature: ")
    assert signed.endswith(MESSAGE)
    assert verifies(signed, key)
    found = tags(signed)
    assert found[b"a"] == {"rsa": b"rsa-sha256", "ed25519": b"ed25519-sha256"}[algorithm]
    assert (found[b"d"], found[b"s"], found[b"c"]) == (b"example.com", b"s1", b"relaxed/relaxed")


def test_visible_headers_are_signed_and_from_is_oversigned(
    keys: DKIMKeyStore, signer: DKIMSigner
) -> None:
    keys.add("example.com", "s1", privateKey("ed25519"))
    signed = signer.signMessage(MESSAGE)
    signedHeaders = tags(signed)[b"h"].replace(b" ", b"").split(b":")
    assert signedHeaders == [
        b"from",
        b"to",
        b"cc",
        b"subject",
        b"date",
        b"message-id",
        b"mime-version",
        b"content-type",
        b"from",
    ]


def test_a_from_header_added_in_transit_breaks_the_signature(
    keys: DKIMKeyStore, signer: DKIMSigner
) -> None:
    key = keys.add("example.com", "s1", privateKey("ed25519"))
    signed = signer.signMessage(MESSAGE)
    header, _, body = signed.partition(b"\r\n\r\n")
    assert not verifies(header + b"\r\nFrom: ceo@example.com\r\n\r\n" + body, key)


def test_trace_headers_and_refolding_in_transit_keep_the_signature_valid(
    keys: DKIMKeyStore, signer: DKIMSigner
) -> None:
    key = keys.add("example.com", "s1", privateKey("ed25519"))
    signed = signer.signMessage(MESSAGE)
    relayed = b"Received: from mail.example.com by mx.example.org\r\n" + signed.replace(
        b"Subject: Lunch", b"Subject:    Lunch"
    ).replace(b"To: bob@example.org", b"To:\r\n\tbob@example.org")
    assert verifies(relayed, key)


def test_a_changed_body_fails_verification(keys: DKIMKeyStore, signer: DKIMSigner) -> None:
    key = keys.add("example.com", "s1", privateKey("rsa"))
    signed = signer.signMessage(MESSAGE)
    assert verifies(signed, key)
    assert not verifies(signed.replace(b"Noon", b"Nine"), key)


def test_a_changed_subject_fails_verification(keys: DKIMKeyStore, signer: DKIMSigner) -> None:
    key = keys.add("example.com", "s1", privateKey("ed25519"))
    signed = signer.signMessage(MESSAGE)
    assert not verifies(signed.replace(b"Subject: Lunch", b"Subject: Lunch!"), key)


def test_utf8_headers_and_an_internationalized_from_domain_verify(
    keys: DKIMKeyStore, signer: DKIMSigner
) -> None:
    key = keys.add("BÜCHER.example", "s1", privateKey("rsa"))
    assert key.domain == "xn--bcher-kva.example"
    message = (
        "From: Jörg Müller <jörg@bücher.example>\r\n"
        "To: zoë@example.org\r\n"
        "Subject: Grüße aus Köln — ☕\r\n"
        "\r\n"
        "Bis später!\r\n"
    ).encode()
    signed = signer.signMessage(message)
    assert tags(signed)[b"d"] == b"xn--bcher-kva.example"
    assert verifies(signed, key)
    assert not verifies(signed.replace("später".encode(), b"spaeter"), key)


def test_a_message_with_lf_line_ends_gets_a_header_with_lf_line_ends(
    keys: DKIMKeyStore, signer: DKIMSigner
) -> None:
    key = keys.add("example.com", "s1", privateKey("ed25519"))
    message = MESSAGE.replace(b"\r\n", b"\n")
    header = signer.signature(message)
    assert header is not None
    assert b"\r" not in header and header.endswith(b"\n")
    assert verifies(header + message, key)


def test_mail_of_a_domain_without_a_key_passes_unsigned(
    keys: DKIMKeyStore, signer: DKIMSigner
) -> None:
    assert signer.signMessage(MESSAGE) == MESSAGE
    keys.add("bücher.example", "s1", privateKey("ed25519"))
    assert signer.signMessage(MESSAGE) == MESSAGE


def test_mail_of_a_domain_no_longer_hosted_passes_unsigned(
    keys: DKIMKeyStore, signer: DKIMSigner, directory: PasswdFileDirectory
) -> None:
    keys.add("example.com", "s1", privateKey("ed25519"))
    directory.removeDomain("example.com")
    assert signer.signMessage(MESSAGE) == MESSAGE


def test_a_key_made_for_a_domain_without_active_selector_is_not_used(
    keys: DKIMKeyStore, signer: DKIMSigner
) -> None:
    keys.add("example.com", "s1", privateKey("ed25519"), activate=False)
    assert signer.signMessage(MESSAGE) == MESSAGE
    keys.activate("example.com", "s1")
    assert signer.signMessage(MESSAGE) != MESSAGE


@pytest.mark.parametrize(
    "fromHeader",
    [
        b"From: alice@example.com, mallory@example.net",
        b"From: undisclosed-recipients:;",
        b"From: alice",
        b"From: alice@[192.0.2.1]",
        b"From: alice@example.com\r\nFrom: alice@example.com",
        b"Sender: alice@example.com",
    ],
)
def test_mail_without_one_from_domain_passes_unsigned(
    fromHeader: bytes, keys: DKIMKeyStore, signer: DKIMSigner
) -> None:
    keys.add("example.com", "s1", privateKey("ed25519"))
    message = fromHeader + b"\r\nTo: bob@example.org\r\n\r\nhi\r\n"
    assert fromDomain(message) is None
    assert signer.signMessage(message) == message


@pytest.mark.parametrize(
    ("fromHeader", "domain"),
    [
        (b'From: "Doe, Alice" <Alice@Example.COM>', "example.com"),
        (b"From: alice@example.com (Alice),\r\n bob@EXAMPLE.com", "example.com"),
        (b"From: =?utf-8?q?J=C3=B6rg?= <j@b\xc3\xbccher.example>", "xn--bcher-kva.example"),
    ],
)
def test_the_signing_domain_is_that_of_the_from_header(fromHeader: bytes, domain: str) -> None:
    assert fromDomain(fromHeader + b"\r\nSubject: x\r\n\r\nhi\r\n") == domain


def test_header_lines_in_the_body_do_not_count() -> None:
    message = MESSAGE + b"\r\nFrom: mallory@example.net\r\nno colon\r\n"
    assert fromDomain(message) == "example.com"


def test_a_malformed_header_block_passes_unsigned(keys: DKIMKeyStore, signer: DKIMSigner) -> None:
    keys.add("example.com", "s1", privateKey("ed25519"))
    for message in (b" folded first\r\n" + MESSAGE, b"no colon here\r\n" + MESSAGE):
        assert signer.signMessage(message) == message


def test_the_caller_may_choose_the_signing_domain(keys: DKIMKeyStore, signer: DKIMSigner) -> None:
    key = keys.add("example.com", "s1", privateKey("ed25519"))
    message = MESSAGE.replace(b"alice@example.com", b"alice@example.net")
    signed = signer.signMessage(message, domain="example.com")
    assert tags(signed)[b"d"] == b"example.com"
    assert verifies(signed, key)


def test_a_new_active_selector_is_used_by_a_running_signer(
    keys: DKIMKeyStore, signer: DKIMSigner
) -> None:
    old = keys.add("example.com", "s1", privateKey("rsa"))
    assert tags(signer.signMessage(MESSAGE))[b"s"] == b"s1"
    new = keys.add("example.com", "s2", privateKey("ed25519"))
    signed = signer.signMessage(MESSAGE)
    assert tags(signed)[b"s"] == b"s2"
    assert verifies(signed, new)
    assert not verifies(signed, old)
    assert keys.selectors("example.com") == ["s1", "s2"]


def test_a_replaced_key_file_is_read_again(keys: DKIMKeyStore, signer: DKIMSigner) -> None:
    first = keys.add("example.com", "s1", privateKey("ed25519"))
    assert verifies(signer.signMessage(MESSAGE), first)
    second = keys.add("example.com", "s1", generateKey("ed25519"), replace=True)
    signed = signer.signMessage(MESSAGE)
    assert verifies(signed, second)
    assert not verifies(signed, first)


def test_keys_are_read_once_while_their_files_are_unchanged(
    keys: DKIMKeyStore, signer: DKIMSigner
) -> None:
    keys.add("example.com", "s1", privateKey("ed25519"))
    assert signer.keyFor("example.com") is signer.keyFor("Example.COM")


def test_a_damaged_active_key_is_an_error_not_a_silently_unsigned_message(
    keys: DKIMKeyStore, signer: DKIMSigner
) -> None:
    keys.add("example.com", "s1", privateKey("ed25519"))
    path = keys.keyPath("example.com", "s1")
    path.write_bytes(b"-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n")
    with pytest.raises(DKIMKeyError, match=r"s1\.key"):
        signer.signMessage(MESSAGE)
    path.unlink()
    with pytest.raises(DKIMKeyError, match="has no key"):
        signer.signMessage(MESSAGE)


def test_a_key_written_by_openssl_is_used(keys: DKIMKeyStore, signer: DKIMSigner) -> None:
    """An operator may put in a PKCS#1 (BEGIN RSA PRIVATE KEY) file of their own."""
    from cryptography.hazmat.primitives import serialization

    theirs = generateKey("rsa")
    folder = keys.domainPath("example.com")
    folder.mkdir(parents=True)
    (folder / "mine.key").write_bytes(
        theirs.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        ).replace(b"\n", b"\r\n")
    )
    (folder / "selector").write_text("mine\n")
    key = keys.load("example.com")
    assert key is not None
    assert verifies(signer.signMessage(MESSAGE), key)


def test_written_keys_are_readable_by_their_owner_only(keys: DKIMKeyStore) -> None:
    keys.add("example.com", "s1", privateKey("ed25519"))
    assert keys.keyPath("example.com", "s1").stat().st_mode & 0o777 == 0o600
    assert keys.domainPath("example.com").stat().st_mode & 0o777 == 0o700
    assert sorted(os.listdir(keys.domainPath("example.com"))) == ["s1.key", "selector"]


_headerText = st.text(
    st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"), blacklist_characters="\x85"),
    max_size=40,
)
_bodyLine = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\x85\u2028\u2029"),
    max_size=60,
)


@settings(max_examples=40, deadline=None)
@given(
    subject=_headerText,
    name=_headerText,
    extra=st.lists(
        st.tuples(st.sampled_from(["To", "Cc", "Reply-To", "X-Tag", "Keywords"]), _headerText),
        max_size=4,
    ),
    body=st.lists(_bodyLine, max_size=8),
    foldSubject=st.booleans(),
)
def test_any_message_of_a_keyed_domain_verifies_and_any_body_change_fails(
    tmp_path_factory: pytest.TempPathFactory,
    subject: str,
    name: str,
    extra: list[tuple[str, str]],
    body: list[str],
    foldSubject: bool,
) -> None:
    keys = DKIMKeyStore(tmp_path_factory.mktemp("dkim"))
    key = keys.add("example.com", "s1", privateKey("ed25519"))
    fold = "\r\n " if foldSubject else " "
    lines = [
        f'From: "{name.replace(chr(34), "").replace(chr(92), "")}" <alice@example.com>',
        f"Subject:{fold}{subject}",
        *(f"{field}: {value}" for field, value in extra),
        "",
        *body,
    ]
    message = "\r\n".join(lines).encode() + b"\r\n"
    signed = DKIMSigner(keys).signMessage(message)
    assert verifies(signed, key)
    assert not verifies(signed + b"one more line\r\n", key)
