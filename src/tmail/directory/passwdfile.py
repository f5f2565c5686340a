"""
A user directory kept in three small text files, Dovecot-compatible.

Under the directory's root:

  - C{domains}: one hosted domain per line;
  - C{passwd}: Dovecot's passwd-file format,
    C{user@domain:{ARGON2ID}$argon2id$...::::::} (C{user:password:uid:gid:
    gecos:home:shell} and optional extra fields), so an operator can move
    users between Dovecot and tmail.  The extra fields (space-separated
    C{name=value} after the seventh colon, e.g.
    C{userdb_quota_rule=*:storage=1G}) are per-user settings;
  - C{aliases}: C{source@domain: target1@x, target2@y}, where a source
    C{@domain} is that domain's catch-all.

Blank lines and C{#} comments are ignored, and kept when a file is rewritten,
as are the fields tmail does not use.  Every change takes a lock file, writes
a temporary file, fsyncs it, renames it over the old one and fsyncs the
folder, so a crash leaves either the old or the new file, never a torn one.
Readers (the running server) stat a file on each lookup and re-read it when
it changed, so changes made with the C{tmail} command take effect at once.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from twisted.logger import Logger
from zope.interface import implementer

from tmail.directory.addresses import normalizeAddress, normalizeAliasSource, normalizeDomain
from tmail.directory.passwords import (
    SUPPORTED_SCHEMES,
    PasswordHasher,
    dummyHash,
    hashPassword,
    schemeOf,
    verifyPassword,
)
from tmail.errors import DirectoryError
from tmail.fsutil import writeFileAtomically
from tmail.interfaces import IUserDirectory, IUserFields

__all__ = ["PasswdFileDirectory"]

_T = TypeVar("_T")

#: How long a lock file may exist before it is presumed abandoned, even when
#: its owner cannot be checked (another host, unreadable content).
STALE_LOCK_AGE = 60.0

_Signature = tuple[int, int, int, int]


def _contentLines(lines: list[str]) -> Iterator[tuple[int, str]]:
    """The index and stripped text of each line that is not blank or a comment."""
    for index, line in enumerate(lines):
        text = line.strip()
        if text and not text.startswith("#"):
            yield index, text


#: The passwd-file fields before the extra fields.
_FIXED_FIELDS = 7
_USERDB_PREFIX = "userdb_"


@dataclass(frozen=True)
class _User:
    """
    One passwd-file entry: the address as stored, its C{{SCHEME}hash} and
    the raw extra fields.
    """

    address: str
    passwordHash: str
    extra: str = ""


def _extraFields(extra: str) -> dict[str, str]:
    """
    C{name=value} extra fields, C{userdb_} prefix removed (a prefixed field
    wins over an unprefixed one of the same name); a bare C{name} has the
    value C{""}.
    """
    plain: dict[str, str] = {}
    prefixed: dict[str, str] = {}
    for token in extra.split():
        name, _, value = token.partition("=")
        if name.startswith(_USERDB_PREFIX):
            prefixed[name[len(_USERDB_PREFIX) :]] = value
        else:
            plain[name] = value
    return plain | prefixed


def _parseDomains(lines: list[str]) -> frozenset[str]:
    return frozenset(text.lower() for _, text in _contentLines(lines))


def _passwdKey(text: str) -> str | None:
    try:
        return normalizeAddress(text.split(":", 1)[0])
    except DirectoryError:
        return None


def _parsePasswd(lines: list[str]) -> dict[str, _User]:
    users: dict[str, _User] = {}
    for _, text in _contentLines(lines):
        fields = text.split(":")
        key = _passwdKey(text)
        if key is not None and key not in users:
            local, _, domain = fields[0].rpartition("@")
            users[key] = _User(
                f"{local}@{domain.lower()}",
                fields[1] if len(fields) > 1 else "",
                ":".join(fields[_FIXED_FIELDS:]),
            )
    return users


def _aliasLine(text: str) -> tuple[str, list[str]] | None:
    source, colon, rest = text.partition(":")
    if not colon:
        return None
    try:
        key = normalizeAliasSource(source.strip())
    except DirectoryError:
        return None
    return key, [t.strip().lower() for t in rest.split(",") if t.strip()]


def _parseAliases(lines: list[str]) -> dict[str, list[str]]:
    aliases: dict[str, list[str]] = {}
    for _, text in _contentLines(lines):
        parsed = _aliasLine(text)
        if parsed is not None:
            targets = aliases.setdefault(parsed[0], [])
            targets.extend(t for t in parsed[1] if t not in targets)
    return {source: targets for source, targets in aliases.items() if targets}


def _domainOf(key: str) -> str:
    return key.rpartition("@")[2]


def _readLines(path: Path) -> tuple[list[str], _Signature | None]:
    try:
        with open(path, encoding="utf-8", errors="surrogateescape", newline="") as f:
            st = os.fstat(f.fileno())
            return f.read().splitlines(), (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns)
    except FileNotFoundError:
        return [], None


class _WatchedFile(Generic[_T]):
    """A file's parsed content, re-read whenever the file is replaced or changes."""

    def __init__(self, path: Path, parse: Callable[[list[str]], _T]) -> None:
        self.path = path
        self._parse = parse
        self._signature: _Signature | None = None
        self._value = parse([])

    def get(self) -> _T:
        try:
            st = os.stat(self.path)
            signature: _Signature | None = (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns)
        except FileNotFoundError:
            signature = None
        if signature != self._signature:
            lines, self._signature = _readLines(self.path)
            self._value = self._parse(lines)
        return self._value


@implementer(IUserDirectory, IUserFields)
class PasswdFileDirectory:
    """
    An L{IUserDirectory} over C{domains}, C{passwd} and C{aliases} files in
    C{root}, with the management methods the C{tmail} command uses.

    Users and aliases exist only in hosted domains: removing a domain from
    the C{domains} file by hand hides its users.  New addresses are stored in
    lower case.

    @ivar root: the folder holding the files; created on the first change.
    """

    log = Logger()

    def __init__(
        self, root: Path, hasher: PasswordHasher | None = None, lockTimeout: float = 10.0
    ) -> None:
        """
        @param hasher: argon2 parameters for new hashes; the module default
            of L{tmail.directory.passwords} when C{None}.
        @param lockTimeout: seconds a change waits for another writer.
        """
        self.root = Path(root)
        self._hasher = hasher
        self._lockTimeout = lockTimeout
        self._domains = _WatchedFile(self.root / "domains", _parseDomains)
        self._passwd = _WatchedFile(self.root / "passwd", _parsePasswd)
        self._aliases = _WatchedFile(self.root / "aliases", _parseAliases)

    # IUserDirectory

    def domains(self) -> list[str]:
        """Hosted domains, lower case, sorted."""
        return sorted(self._domains.get())

    def hasDomain(self, domain: str) -> bool:
        """Whether C{domain} is hosted here."""
        try:
            return normalizeDomain(domain) in self._domains.get()
        except DirectoryError:
            return False

    def users(self, domain: str | None = None) -> list[str]:
        """
        Addresses of users of hosted domains (of C{domain} only, when given),
        sorted.  An invalid C{domain} has no users.
        """
        hosted = self._domains.get()
        if domain is None:
            wanted = hosted
        else:
            try:
                wanted = hosted & {normalizeDomain(domain)}
            except DirectoryError:
                return []
        return sorted(u.address for k, u in self._passwd.get().items() if _domainOf(k) in wanted)

    def hasUser(self, address: str) -> bool:
        """Whether C{address} is a user of a hosted domain."""
        return self._lookupUser(address) is not None

    def checkPassword(self, address: str, password: bytes) -> str | None:
        """
        The user's address as stored when C{password} is right, else C{None}.
        An unknown user costs one verification against L{dummyHash}.
        """
        user = self._lookupUser(address)
        if user is None:
            verifyPassword(dummyHash(), password)
            return None
        if verifyPassword(user.passwordHash, password):
            return user.address
        if schemeOf(user.passwordHash) not in SUPPORTED_SCHEMES:
            self.log.warn(
                "User {address} has a password hash of an unsupported scheme {scheme!r}",
                address=user.address,
                scheme=schemeOf(user.passwordHash),
            )
        return None

    def aliasTargets(self, address: str) -> list[str] | None:
        """
        The targets of the alias C{address}; failing that, of its domain's
        catch-all, provided C{address} is not a user; else C{None}.
        """
        try:
            key = normalizeAddress(address)
        except DirectoryError:
            return None
        if _domainOf(key) not in self._domains.get():
            return None
        aliases = self._aliases.get()
        if key in aliases:
            return list(aliases[key])
        if key in self._passwd.get():
            return None
        catchAll = aliases.get("@" + _domainOf(key))
        return list(catchAll) if catchAll is not None else None

    def userFields(self, address: str) -> dict[str, str]:
        """
        The user's extra fields, names without their C{userdb_} prefix;
        empty for an unknown user.
        """
        user = self._lookupUser(address)
        return {} if user is None else _extraFields(user.extra)

    def _lookupUser(self, address: str) -> _User | None:
        try:
            key = normalizeAddress(address)
        except DirectoryError:
            return None
        if _domainOf(key) not in self._domains.get():
            return None
        return self._passwd.get().get(key)

    # Management

    def aliases(self) -> dict[str, list[str]]:
        """Every alias of a hosted domain: source (or C{@domain}) to targets."""
        hosted = self._domains.get()
        items = sorted(self._aliases.get().items())
        return {s: list(t) for s, t in items if _domainOf(s) in hosted}

    def addDomain(self, domain: str) -> str:
        """
        Host C{domain}; return its canonical form.

        @raise DirectoryError: when it is invalid or already hosted.
        """
        canonical = normalizeDomain(domain)
        with self._locked():
            if canonical in self._domains.get():
                raise DirectoryError(f"domain {canonical} already exists")
            self._rewrite(self._domains, lambda lines: [*lines, canonical])
        return canonical

    def removeDomain(self, domain: str) -> None:
        """
        Stop hosting C{domain}.

        @raise DirectoryError: when it is not hosted, or still has users or
            aliases.
        """
        canonical = normalizeDomain(domain)
        with self._locked():
            if canonical not in self._domains.get():
                raise DirectoryError(f"no such domain: {canonical}")
            users = [k for k in self._passwd.get() if _domainOf(k) == canonical]
            aliases = [k for k in self._aliases.get() if _domainOf(k) == canonical]
            if users or aliases:
                raise DirectoryError(
                    f"domain {canonical} still has {len(users)} user(s) and "
                    f"{len(aliases)} alias(es); remove them first"
                )
            self._rewrite(
                self._domains, lambda lines: _without(lines, _domainLines(lines, canonical))
            )

    def addUser(self, address: str, password: bytes) -> str:
        """
        Add a user with a new argon2id hash of C{password}; return the
        canonical address.

        @raise DirectoryError: when the address is invalid, its domain not
            hosted, the user exists or the password is empty.
        """
        key = self._hostedAddress(address)
        passwordHash = self._hash(password)
        with self._locked():
            if key in self._passwd.get():
                raise DirectoryError(f"user {key} already exists")
            self._rewrite(self._passwd, lambda lines: [*lines, f"{key}:{passwordHash}::::::"])
        return key

    def setPassword(self, address: str, password: bytes) -> None:
        """
        Replace the user's password hash, keeping the line's other fields.

        @raise DirectoryError: when there is no such user or the password is
            empty.
        """
        key = normalizeAddress(address)
        passwordHash = self._hash(password)

        def change(lines: list[str]) -> list[str]:
            out = list(lines)
            for index in _passwdLines(lines, key)[:1]:
                fields = lines[index].strip().split(":")
                fields[1:2] = [passwordHash]
                out[index] = ":".join(fields)
            return out

        with self._locked():
            if self._lookupUser(key) is None:
                raise DirectoryError(f"no such user: {key}")
            self._rewrite(self._passwd, change)

    def setUserFields(self, address: str, changes: dict[str, str | None]) -> None:
        """
        Set extra fields of the user (written with the C{userdb_} prefix, so
        Dovecot's passdb hands them to its userdb) or remove them (value
        C{None}, with or without the prefix), keeping the other fields.

        @raise DirectoryError: when there is no such user, or a name or value
            would not survive the file format (spaces, colons in names).
        """
        key = normalizeAddress(address)
        for name, value in changes.items():
            if not name or any(c.isspace() or c in ":=" for c in name):
                raise DirectoryError(f"invalid field name {name!r}")
            if value is not None and any(c.isspace() for c in value):
                raise DirectoryError(f"invalid value for {name}: {value!r}")

        def change(lines: list[str]) -> list[str]:
            out = list(lines)
            for index in _passwdLines(lines, key)[:1]:
                fields = lines[index].strip().split(":")
                fixed = (fields + [""] * _FIXED_FIELDS)[:_FIXED_FIELDS]
                tokens = [
                    token
                    for token in ":".join(fields[_FIXED_FIELDS:]).split()
                    if token.partition("=")[0].removeprefix(_USERDB_PREFIX) not in changes
                ]
                tokens += [
                    f"{_USERDB_PREFIX}{name}={value}"
                    for name, value in changes.items()
                    if value is not None
                ]
                out[index] = ":".join(fixed) + ":" + " ".join(tokens)
            return out

        with self._locked():
            if self._lookupUser(key) is None:
                raise DirectoryError(f"no such user: {key}")
            self._rewrite(self._passwd, change)

    def removeUser(self, address: str) -> None:
        """
        Remove the user (aliases pointing to it stay).

        @raise DirectoryError: when there is no such user.
        """
        key = normalizeAddress(address)
        with self._locked():
            if self._lookupUser(key) is None:
                raise DirectoryError(f"no such user: {key}")
            self._rewrite(self._passwd, lambda lines: _without(lines, _passwdLines(lines, key)))

    def addAlias(self, source: str, targets: list[str]) -> list[str]:
        """
        Make C{source} (an address, or C{@domain} for a catch-all) deliver
        to C{targets} as well as to any targets it already has; return all
        its targets.  Targets may be in any domain.

        @raise DirectoryError: when an address is invalid, the source's
            domain is not hosted, no targets are given or the alias would
            point to itself.
        """
        key = normalizeAliasSource(source)
        self._requireHosted(_domainOf(key))
        if not targets:
            raise DirectoryError("an alias needs at least one target")
        new = []
        for target in targets:
            canonical = normalizeAddress(target)
            if canonical == key:
                raise DirectoryError(f"alias {key} cannot point to itself")
            if canonical not in new:
                new.append(canonical)
        with self._locked():
            old = self._aliases.get().get(key, [])
            merged = old + [t for t in new if t not in old]
            if merged != old:
                self._rewrite(self._aliases, lambda lines: _replaceAlias(lines, key, merged))
        return merged

    def removeAlias(self, source: str, target: str | None = None) -> None:
        """
        Remove one target of the alias C{source}, or the whole alias when
        C{target} is C{None} (or was its last target).

        @raise DirectoryError: when there is no such alias or target.
        """
        key = normalizeAliasSource(source)
        with self._locked():
            old = self._aliases.get().get(key)
            if old is None:
                raise DirectoryError(f"no such alias: {key}")
            if target is None:
                remaining: list[str] = []
            else:
                canonical = normalizeAddress(target)
                if canonical not in old:
                    raise DirectoryError(f"alias {key} does not point to {canonical}")
                remaining = [t for t in old if t != canonical]
            self._rewrite(self._aliases, lambda lines: _replaceAlias(lines, key, remaining))

    # Helpers

    def _hash(self, password: bytes) -> str:
        if not password:
            raise DirectoryError("the password must not be empty")
        return hashPassword(password, self._hasher)

    def _requireHosted(self, domain: str) -> None:
        if domain not in self._domains.get():
            raise DirectoryError(f"domain {domain} is not hosted here; add it first")

    def _hostedAddress(self, address: str) -> str:
        key = normalizeAddress(address)
        self._requireHosted(_domainOf(key))
        return key

    def _rewrite(self, watched: _WatchedFile[_T], change: Callable[[list[str]], list[str]]) -> None:
        """Apply C{change} to the file's current lines and replace it atomically."""
        path = watched.path
        lines, _ = _readLines(path)
        try:
            mode = os.stat(path).st_mode & 0o777
        except FileNotFoundError:
            mode = 0o600 if path.name == "passwd" else 0o644
        text = "".join(line + "\n" for line in change(lines))
        writeFileAtomically(path, text.encode("utf-8", "surrogateescape"), mode)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """
        Hold C{root/.lock} (created with C{O_EXCL}) for one change, breaking
        a lock whose owner is gone.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / ".lock"
        token = f"{os.getpid()} {socket.gethostname()} {secrets.token_hex(8)}\n"
        deadline = time.monotonic() + self._lockTimeout
        while True:
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                if _breakStaleLock(path):
                    continue
                if time.monotonic() >= deadline:
                    raise DirectoryError(
                        f"{path} is held by another process; if no tmail command is "
                        "running, remove it"
                    ) from None
                time.sleep(0.02)
                continue
            try:
                os.write(fd, token.encode())
            finally:
                os.close(fd)
            break
        try:
            yield
        finally:
            try:
                if path.read_text() == token:
                    path.unlink()
            except FileNotFoundError:
                pass


def _domainLines(lines: list[str], domain: str) -> list[int]:
    return [i for i, text in _contentLines(lines) if text.lower() == domain]


def _passwdLines(lines: list[str], key: str) -> list[int]:
    return [i for i, text in _contentLines(lines) if _passwdKey(text) == key]


def _without(lines: list[str], indexes: list[int]) -> list[str]:
    drop = set(indexes)
    return [line for i, line in enumerate(lines) if i not in drop]


def _replaceAlias(lines: list[str], key: str, targets: list[str]) -> list[str]:
    """Put C{key: targets} on the alias's first line, drop its other lines."""
    out: list[str] = []
    placed = False
    for line in lines:
        text = line.strip()
        parsed = _aliasLine(text) if text and not text.startswith("#") else None
        if parsed is None or parsed[0] != key:
            out.append(line)
        elif not placed and targets:
            out.append(f"{key}: {', '.join(targets)}")
            placed = True
    if not placed and targets:
        out.append(f"{key}: {', '.join(targets)}")
    return out


def _breakStaleLock(path: Path) -> bool:
    """Remove the lock file when its owner is gone; return whether it did."""
    try:
        content = path.read_text()
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return True
    except OSError:
        return False
    pid, host = _lockOwner(content)
    if pid is not None and host == socket.gethostname():
        stale = not _processExists(pid)
    else:
        stale = age > (STALE_LOCK_AGE if pid is not None else 5.0)
    if stale:
        path.unlink(missing_ok=True)
    return stale


def _lockOwner(content: str) -> tuple[int | None, str | None]:
    parts = content.split()
    if len(parts) >= 2 and parts[0].isdigit():
        return int(parts[0]), parts[1]
    return None, None


def _processExists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
