"""
Password hashes in Dovecot's C{{SCHEME}hash} notation.

New hashes are C{{ARGON2ID}$argon2id$...} made with argon2-cffi.  Verification
also accepts C{{ARGON2I}} and C{{BLF-CRYPT}} (bcrypt, any of C{$2a$ $2b$ $2y$}),
and the same hashes without a scheme prefix (Dovecot's C{CRYPT} default), so
a Dovecot passwd-file can be used as it is.  Both libraries compare in
constant time; callers that look up users verify unknown ones against
L{dummyHash} so that an unknown user costs as much as a wrong password.

The argon2 parameters come from a module-wide L{PasswordHasher}: argon2-cffi's
default (RFC 9106, low-memory profile).  Tests swap in L{cheapHasher} with
L{setHasher} so that hashing takes microseconds instead of ~0.1 s.
"""

from __future__ import annotations

import bcrypt
from argon2 import PasswordHasher
from argon2.exceptions import Argon2Error, InvalidHashError

__all__ = [
    "PasswordHasher",
    "cheapHasher",
    "dummyHash",
    "getHasher",
    "hashPassword",
    "schemeOf",
    "setHasher",
    "verifyPassword",
]

#: The schemes L{verifyPassword} understands.
SUPPORTED_SCHEMES = frozenset({"ARGON2ID", "ARGON2I", "BLF-CRYPT"})

#: bcrypt only looks at the first 72 bytes; newer bcrypt releases refuse
#: longer input instead of truncating, so we truncate as crypt(3) does.
_BCRYPT_MAX = 72

_hasher: PasswordHasher = PasswordHasher()
_dummy: tuple[PasswordHasher, str] | None = None


def getHasher() -> PasswordHasher:
    """The hasher L{hashPassword} uses by default."""
    return _hasher


def setHasher(hasher: PasswordHasher) -> PasswordHasher:
    """
    Make C{hasher} the default for new hashes (and for L{dummyHash}).

    @return: the previous default, so a test can put it back.
    """
    global _hasher
    previous, _hasher = _hasher, hasher
    return previous


def cheapHasher() -> PasswordHasher:
    """
    An argon2id hasher with the smallest parameters argon2 allows.  For
    tests only: its hashes are worthless against an offline attack.
    """
    return PasswordHasher(time_cost=1, memory_cost=8, parallelism=1, hash_len=16, salt_len=8)


def hashPassword(password: bytes, hasher: PasswordHasher | None = None) -> str:
    """
    Hash C{password} for storage: C{{ARGON2ID}$argon2id$v=19$m=...}.

    @param hasher: argon2 parameters; L{getHasher}'s when C{None}.
    """
    encoded = (hasher or _hasher).hash(password)
    scheme = "ARGON2ID" if encoded.startswith("$argon2id$") else "ARGON2I"
    return f"{{{scheme}}}{encoded}"


def schemeOf(stored: str) -> str | None:
    """
    The scheme of a stored hash, upper case (C{"ARGON2ID"}, C{"BLF-CRYPT"},
    ...), inferred for bare crypt-style hashes; C{None} when unrecognizable.
    """
    if stored.startswith("{"):
        end = stored.find("}")
        return stored[1:end].upper() if end > 1 else None
    if stored.startswith("$argon2id$"):
        return "ARGON2ID"
    if stored.startswith("$argon2i$"):
        return "ARGON2I"
    if stored[:4] in ("$2a$", "$2b$", "$2y$"):
        return "BLF-CRYPT"
    return None


def _hashPart(stored: str) -> str:
    return stored[stored.index("}") + 1 :] if stored.startswith("{") else stored


def verifyPassword(stored: str, password: bytes) -> bool:
    """
    Whether C{password} matches the C{stored} hash.

    Unknown schemes, malformed hashes and a scheme whose hash is of another
    kind (C{{ARGON2ID}$argon2i$...}) all give C{False}; logging that is the
    caller's business (see L{schemeOf}).
    """
    scheme = schemeOf(stored)
    encoded = _hashPart(stored)
    if scheme == "ARGON2ID":
        return encoded.startswith("$argon2id$") and _verifyArgon2(encoded, password)
    if scheme == "ARGON2I":
        return encoded.startswith("$argon2i$") and _verifyArgon2(encoded, password)
    if scheme == "BLF-CRYPT":
        return _verifyBcrypt(encoded, password)
    return False


def _verifyArgon2(encoded: str, password: bytes) -> bool:
    try:
        return bool(_hasher.verify(encoded, password))
    except (Argon2Error, InvalidHashError):
        return False


def _verifyBcrypt(encoded: str, password: bytes) -> bool:
    try:
        return bool(bcrypt.checkpw(password[:_BCRYPT_MAX], encoded.encode("ascii")))
    except (ValueError, UnicodeEncodeError):
        return False


def dummyHash() -> str:
    """
    A fixed hash with the default hasher's parameters, to verify against
    when the user is unknown.
    """
    global _dummy
    if _dummy is None or _dummy[0] is not _hasher:
        _dummy = (_hasher, hashPassword(b"tmail-dummy-password", _hasher))
    return _dummy[1]
