"""Password hashing and verification in Dovecot's {SCHEME} notation."""

from __future__ import annotations

from collections.abc import Iterator

import bcrypt
import pytest
from argon2 import PasswordHasher, Type

from tmail.directory import passwords
from tmail.directory.passwords import (
    cheapHasher,
    dummyHash,
    hashPassword,
    schemeOf,
    setHasher,
    verifyPassword,
)


@pytest.fixture(autouse=True)
def _cheapHashing() -> Iterator[None]:
    previous = setHasher(cheapHasher())
    yield
    setHasher(previous)


def test_hash_is_argon2id_in_dovecot_notation() -> None:
    stored = hashPassword(b"secret")
    assert stored.startswith("{ARGON2ID}$argon2id$v=19$")


def test_argon2id_round_trip() -> None:
    stored = hashPassword(b"secret")
    assert verifyPassword(stored, b"secret")
    assert not verifyPassword(stored, b"Secret")
    assert not verifyPassword(stored, b"")


def test_each_hash_has_its_own_salt() -> None:
    assert hashPassword(b"secret") != hashPassword(b"secret")


def test_default_hasher_is_argon2_cffi_default() -> None:
    setHasher(PasswordHasher())
    assert passwords.getHasher().memory_cost == PasswordHasher().memory_cost


def test_explicit_hasher_parameters_are_used() -> None:
    hasher = PasswordHasher(time_cost=1, memory_cost=16, parallelism=1)
    stored = hashPassword(b"pw", hasher=hasher)
    assert "$m=16,t=1,p=1$" in stored
    assert verifyPassword(stored, b"pw")


def test_argon2i_hash_verifies() -> None:
    hasher = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1, type=Type.I)
    stored = hashPassword(b"pw", hasher=hasher)
    assert stored.startswith("{ARGON2I}$argon2i$")
    assert verifyPassword(stored, b"pw")
    assert not verifyPassword(stored, b"px")


def test_scheme_must_match_the_hash_kind() -> None:
    encoded = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1, type=Type.I).hash(b"pw")
    assert not verifyPassword("{ARGON2ID}" + encoded, b"pw")


@pytest.mark.parametrize("prefix", [b"$2b$", b"$2a$", b"$2y$"])
def test_blf_crypt_hash_from_bcrypt_verifies(prefix: bytes) -> None:
    made = bcrypt.hashpw(b"hunter2", bcrypt.gensalt(rounds=4))
    stored = "{BLF-CRYPT}" + (prefix + made[4:]).decode()
    assert verifyPassword(stored, b"hunter2")
    assert not verifyPassword(stored, b"hunter3")


def test_blf_crypt_uses_first_72_bytes_like_crypt() -> None:
    long = b"x" * 80
    stored = "{BLF-CRYPT}" + bcrypt.hashpw(long[:72], bcrypt.gensalt(rounds=4)).decode()
    assert verifyPassword(stored, long)


def test_bare_crypt_style_hashes_verify() -> None:
    assert verifyPassword(bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).decode(), b"pw")
    assert verifyPassword(cheapHasher().hash(b"pw"), b"pw")


@pytest.mark.parametrize(
    "stored",
    [
        "{PLAIN}secret",
        "{SHA512-CRYPT}$6$abc$def",
        "secret",
        "",
        "{ARGON2ID}",
        "{ARGON2ID}$argon2id$garbage",
        "{BLF-CRYPT}$2y$garbage",
        "{BLF-CRYPT}$2y$04$\u00e9",
    ],
)
def test_unknown_or_malformed_hash_never_verifies(stored: str) -> None:
    assert not verifyPassword(stored, b"secret")


def test_scheme_of_stored_hashes() -> None:
    assert schemeOf("{blf-crypt}$2y$...") == "BLF-CRYPT"
    assert schemeOf("$argon2id$v=19$...") == "ARGON2ID"
    assert schemeOf("{PLAIN}x") == "PLAIN"
    assert schemeOf("x") is None


def test_dummy_hash_follows_the_default_hasher() -> None:
    first = dummyHash()
    assert dummyHash() is first
    assert "$m=8,t=1,p=1$" in first
    setHasher(PasswordHasher(time_cost=1, memory_cost=16, parallelism=1))
    assert "$m=16,t=1,p=1$" in dummyHash()
