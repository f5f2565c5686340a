"""
DKIM signing of outbound mail (RFC 6376), with rsa-sha256 and
ed25519-sha256 (RFC 8463) keys and one active selector per hosted domain.

Keys live under C{data_dir/dkim}, a folder per domain (spelt as the
directory keeps it: lower case, C{xn--} for an internationalized name)::

    dkim/example.com/tmail202611.key    private key of selector tmail202611, PEM, mode 0600
    dkim/example.com/selector           the name of the active selector, one line

The algorithm is the key's own type (RSA: rsa-sha256, Ed25519:
ed25519-sha256), so no second record can disagree with the key.  A domain
without a C{selector} file is not signed.  Rotating a key is writing a new
selector and pointing C{selector} at it; the old key file stays, because
its DNS record must stay published for some days while mail signed with it
is still on its way.

The delivery code signs the outbound copy just before sending it, once
every header is final (a header added or changed later breaks the
signature)::

    signer = DKIMSigner.fromSettings(settings, directory)
    data = signer.signMessage(data)    # the same bytes when the domain has no key

The signing domain is that of the C{From} header; it must be hosted (when
the signer has a directory) and have an active key.  Keys are read once and
read again when their files change, so C{tmail dkim keygen} takes effect on
a running server.  Signing costs about 10 ms of CPU with an RSA-2048 key
(dkimpy's RSA is pure Python) and well under 1 ms with Ed25519; a signer
may be shared by threads.
"""

from __future__ import annotations

import base64
import os
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import getaddresses
from pathlib import Path
from typing import Literal

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from twisted.logger import Logger

from tmail.config.schema import Settings
from tmail.directory.addresses import normalizeDomain
from tmail.errors import DirectoryError, TmailError
from tmail.fsutil import writeFileAtomically
from tmail.interfaces import IUserDirectory

__all__ = [
    "ALGORITHMS",
    "DEFAULT_RSA_BITS",
    "OVERSIGNED_HEADERS",
    "SIGNED_HEADERS",
    "DKIMError",
    "DKIMKey",
    "DKIMKeyError",
    "DKIMKeyStore",
    "DKIMSigner",
    "defaultSelector",
    "fromDomain",
    "generateKey",
    "normalizeSelector",
    "txtStrings",
]

_log = Logger()

Algorithm = Literal["rsa", "ed25519"]
PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey

#: The key types C{tmail dkim keygen} makes, with the signature algorithm of each.
ALGORITHMS: dict[str, bytes] = {"rsa": b"rsa-sha256", "ed25519": b"ed25519-sha256"}

DEFAULT_RSA_BITS = 2048
#: RFC 8301 3.2: verifiers ignore signatures by shorter keys.
MIN_RSA_BITS = 1024
#: A longer key's record no longer fits a DNS answer of 512 bytes, and barely 1,232.
MAX_RSA_BITS = 4096

#: The header fields signed when the message has them (each instance of
#: each), as RFC 6376 5.4.1 recommends: those a reader sees and those that
#: decide how the body is shown.
SIGNED_HEADERS: tuple[str, ...] = (
    "from",
    "sender",
    "reply-to",
    "to",
    "cc",
    "subject",
    "date",
    "message-id",
    "in-reply-to",
    "references",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
)
#: Signed once more than they occur, so that no instance can be added
#: (RFC 6376 8.15): a second C{From} would otherwise be shown by some
#: readers while the signature still verifies.
OVERSIGNED_HEADERS: tuple[str, ...] = ("from",)

_CANONICALIZATION = (b"relaxed", b"relaxed")
_SELECTOR_FILE = "selector"
_KEY_SUFFIX = ".key"
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_SELECTOR = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\Z")
_FIELD = re.compile(rb"([\x21-\x7e]+?):")
_LINE = re.compile(rb"\r?\n")
_HEADER_END = re.compile(rb"(?:\A|\r?\n)\r?\n")


class DKIMError(TmailError):
    """A DKIM key or selector operation was refused."""


class DKIMKeyError(DKIMError):
    """
    The active key of a domain cannot be used: missing, unreadable, damaged,
    of an unknown type or too short.  The delivery code should keep the
    message queued (a temporary local problem) rather than send it unsigned.
    """


def normalizeSelector(name: str) -> str:
    """
    The canonical (lower-case) form of selector C{name}: DNS labels of
    letters, digits and hyphens, separated by dots.

    @raise DKIMError: for anything else.
    """
    selector = name.strip().lower()
    if len(selector) > 63 or not _SELECTOR.match(selector):
        raise DKIMError(f"not a valid selector: {name!r} (letters, digits, '-' and '.')")
    return selector


def defaultSelector(when: datetime | None = None) -> str:
    """A selector named for the month: C{tmail202611}."""
    when = when or datetime.now(UTC)
    return f"tmail{when:%Y%m}"


def generateKey(algorithm: str = "rsa", bits: int = DEFAULT_RSA_BITS) -> PrivateKey:
    """
    A new private key: RSA of C{bits} bits (1024 to 4096), or Ed25519.

    @raise DKIMError: for another algorithm or size.
    """
    if algorithm == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if algorithm != "rsa":
        raise DKIMError(f"unknown algorithm {algorithm!r} (rsa or ed25519)")
    if not MIN_RSA_BITS <= bits <= MAX_RSA_BITS:
        raise DKIMError(f"an RSA key has {MIN_RSA_BITS} to {MAX_RSA_BITS} bits, not {bits}")
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def txtStrings(text: str, size: int = 255) -> list[str]:
    """
    C{text} cut into the strings of at most 255 octets one TXT record holds;
    a DKIM verifier joins them again (RFC 6376 3.6.2.2).
    """
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


class DKIMKey:
    """
    The private key of one selector of one domain, with what the signer and
    the DNS record need of it.

    @ivar domain: the signing domain (C{d=}), ASCII.
    @ivar selector: the selector (C{s=}).
    @ivar privateKey: the C{cryptography} key.
    """

    def __init__(self, domain: str, selector: str, privateKey: PrivateKey) -> None:
        self.domain = domain
        self.selector = selector
        self.privateKey = privateKey
        noEncryption = serialization.NoEncryption()
        if isinstance(privateKey, rsa.RSAPrivateKey):
            self.algorithm: Algorithm = "rsa"
            public = privateKey.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            # dkimpy reads a PEM key with LF line ends only; give it exactly that.
            self._signingKey = privateKey.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                noEncryption,
            )
        else:
            self.algorithm = "ed25519"
            public = privateKey.public_key().public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw
            )
            # RFC 8463: the 32-byte seed, base64, as dkimpy takes it.
            self._signingKey = base64.b64encode(
                privateKey.private_bytes(
                    serialization.Encoding.Raw, serialization.PrivateFormat.Raw, noEncryption
                )
            )
        self.publicKey = base64.b64encode(public).decode("ascii")

    @property
    def signatureAlgorithm(self) -> bytes:
        """The C{a=} tag: C{rsa-sha256} or C{ed25519-sha256}."""
        return ALGORITHMS[self.algorithm]

    @property
    def bits(self) -> int:
        """The key size (256 for Ed25519)."""
        if isinstance(self.privateKey, rsa.RSAPrivateKey):
            return self.privateKey.key_size
        return 256

    def pem(self) -> bytes:
        """The private key as it is stored: PEM, PKCS#8, unencrypted."""
        return self.privateKey.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def dnsName(self) -> str:
        """Where verifiers look for the public key: C{<selector>._domainkey.<domain>}."""
        return f"{self.selector}._domainkey.{self.domain}"

    def txtRecord(self) -> str:
        """The text of the TXT record: C{v=DKIM1; k=rsa; p=...}."""
        return f"v=DKIM1; k={self.algorithm}; p={self.publicKey}"

    def zoneLine(self) -> str:
        """
        The record as a zone-file line, the name fully qualified and the
        text cut into strings of at most 255 characters.
        """
        strings = " ".join(f'"{part}"' for part in txtStrings(self.txtRecord()))
        return f"{self.dnsName()}. IN TXT {strings}"

    def sign(self, message: bytes) -> bytes:
        """
        The C{DKIM-Signature} header field for C{message} (ending in the
        message's own line end), relaxed/relaxed, over the L{SIGNED_HEADERS}
        it has plus one more of each L{OVERSIGNED_HEADERS}.

        @raise dkim.DKIMException: when dkimpy cannot parse the message.
        """
        linesep = b"\n" if _firstLineEnd(message) == b"\n" else b"\r\n"
        signer = dkim.DKIM(message, signature_algorithm=self.signatureAlgorithm, linesep=linesep)
        names = [name.lower() for name, _ in signer.headers]
        include = [name for name in names if name.decode("ascii") in SIGNED_HEADERS]
        include += [name.encode("ascii") for name in OVERSIGNED_HEADERS]
        header: bytes = signer.sign(
            self.selector.encode("ascii"),
            self.domain.encode("ascii"),
            self._signingKey,
            canonicalize=_CANONICALIZATION,
            include_headers=include,
        )
        return header


def _firstLineEnd(message: bytes) -> bytes:
    end = message.find(b"\n")
    return b"\r\n" if end > 0 and message[end - 1 : end] == b"\r" else b"\n"


_Stat = tuple[int, int, int, int]


def _stat(path: Path) -> _Stat | None:
    """What changes when a file is replaced or rewritten; C{None} when it is missing."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns)


class DKIMKeyStore:
    """
    The key files under one folder (C{data_dir/dkim}): C{<domain>/<selector>.key}
    and C{<domain>/selector}.  Domains are given in any spelling the
    directory accepts and stored under their canonical one.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def domainPath(self, domain: str) -> Path:
        return self.root / normalizeDomain(domain)

    def keyPath(self, domain: str, selector: str) -> Path:
        return self.domainPath(domain) / f"{normalizeSelector(selector)}{_KEY_SUFFIX}"

    def selectorPath(self, domain: str) -> Path:
        return self.domainPath(domain) / _SELECTOR_FILE

    def selectors(self, domain: str) -> list[str]:
        """The selectors that have a key, sorted."""
        try:
            names = os.listdir(self.domainPath(domain))
        except FileNotFoundError:
            return []
        found = []
        for name in names:
            stem = name.removesuffix(_KEY_SUFFIX)
            if name.endswith(_KEY_SUFFIX) and _SELECTOR.match(stem):
                found.append(stem)
        return sorted(found)

    def activeSelector(self, domain: str) -> str | None:
        """
        The selector the domain signs with; C{None} when it has none.

        @raise DKIMKeyError: when the C{selector} file names no valid selector.
        """
        path = self.selectorPath(domain)
        try:
            text = path.read_text(encoding="ascii", errors="replace").strip()
        except FileNotFoundError:
            return None
        if not text:
            return None
        try:
            return normalizeSelector(text)
        except DKIMError as e:
            raise DKIMKeyError(f"{path}: {e}") from None

    def hasKey(self, domain: str, selector: str) -> bool:
        return self.keyPath(domain, selector).exists()

    def load(self, domain: str, selector: str | None = None) -> DKIMKey | None:
        """
        The key of C{selector} (default: the active one); C{None} when the
        domain has no active selector or the selector has no key file.

        @raise DKIMKeyError: when the file cannot be read or used.
        """
        domain = normalizeDomain(domain)
        selector = normalizeSelector(selector) if selector else self.activeSelector(domain)
        if selector is None:
            return None
        path = self.keyPath(domain, selector)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise DKIMKeyError(f"{path}: cannot read the key: {e.strerror}") from None
        return DKIMKey(domain, selector, _parseKey(path, data))

    def add(
        self,
        domain: str,
        selector: str,
        privateKey: PrivateKey,
        *,
        replace: bool = False,
        activate: bool = True,
    ) -> DKIMKey:
        """
        Write the key of a new selector (mode 0600), then, with
        C{activate}, make it the domain's active selector.

        @raise DKIMError: when the selector has a key already and not
            C{replace}.
        """
        key = DKIMKey(normalizeDomain(domain), normalizeSelector(selector), privateKey)
        folder = self.domainPath(key.domain)
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        folder.mkdir(mode=0o700, exist_ok=True)
        path = self.keyPath(key.domain, key.selector)
        try:
            writeFileAtomically(path, key.pem(), 0o600, replace=replace)
        except FileExistsError:
            raise DKIMError(
                f"selector {key.selector} of {key.domain} has a key already ({path})"
            ) from None
        if activate:
            self.activate(key.domain, key.selector)
        return key

    def activate(self, domain: str, selector: str) -> None:
        """
        Make C{selector} the one the domain signs with.

        @raise DKIMError: when it has no key.
        """
        selector = normalizeSelector(selector)
        if not self.hasKey(domain, selector):
            raise DKIMError(f"selector {selector} of {normalizeDomain(domain)} has no key")
        writeFileAtomically(self.selectorPath(domain), f"{selector}\n".encode("ascii"), 0o644)


def _parseKey(path: Path, data: bytes) -> PrivateKey:
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise DKIMKeyError(f"{path}: not an unencrypted PEM private key ({e})") from None
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_BITS:
            raise DKIMKeyError(f"{path}: an RSA key of {key.key_size} bits is too short")
        return key
    raise DKIMKeyError(f"{path}: neither an RSA nor an Ed25519 key")


def fromDomain(message: bytes) -> str | None:
    """
    The canonical domain of the C{From} header of C{message}: C{None} when
    the header block is malformed, when there is not exactly one C{From},
    or when its addresses are not all at one valid domain.
    """
    fields = _headerFields(message)
    return None if fields is None else _fromDomainOf(fields)


def _headerFields(message: bytes) -> list[tuple[bytes, bytes]] | None:
    """The unfolded header fields, or C{None} when the header block is malformed."""
    fields: list[tuple[bytes, bytes]] = []
    end = _HEADER_END.search(message)
    for line in _LINE.split(message[: end.start()] if end else message):
        if not line:
            break
        if line[:1] in (b" ", b"\t"):
            if not fields:
                return None
            name, value = fields[-1]
            fields[-1] = (name, value + line)
            continue
        match = _FIELD.match(line)
        if match is None:
            return None
        fields.append((match.group(1), line[match.end() :]))
    return fields


@dataclass
class _Cached:
    selectorStat: _Stat
    selector: str | None
    keyStat: _Stat | None = None
    key: DKIMKey | None = None


class DKIMSigner:
    """
    Signs outbound mail with the active key of its C{From} domain.

    @ivar keys: the L{DKIMKeyStore}.
    @ivar directory: when given, only its hosted domains are signed.
    """

    def __init__(self, keys: DKIMKeyStore | Path, directory: IUserDirectory | None = None) -> None:
        self.keys = keys if isinstance(keys, DKIMKeyStore) else DKIMKeyStore(keys)
        self.directory = directory
        self._cache: dict[str, _Cached] = {}
        self._lock = threading.Lock()

    @classmethod
    def fromSettings(
        cls, settings: Settings, directory: IUserDirectory | None = None
    ) -> DKIMSigner:
        """The signer of the keys under C{data_dir/dkim}."""
        return cls(DKIMKeyStore(settings.data_dir / "dkim"), directory)

    def keyFor(self, domain: str) -> DKIMKey | None:
        """
        The active key of C{domain}, read again when its files changed;
        C{None} when the domain is not hosted or has no active selector.

        @raise DKIMKeyError: when the active selector's key is missing or
            cannot be used.
        """
        try:
            domain = normalizeDomain(domain)
        except DirectoryError:
            return None
        if self.directory is not None and not self.directory.hasDomain(domain):
            return None
        try:
            return self._activeKey(domain)
        except OSError as e:
            raise DKIMKeyError(f"the DKIM key of {domain} cannot be read: {e}") from None

    def _activeKey(self, domain: str) -> DKIMKey | None:
        selectorStat = _stat(self.keys.selectorPath(domain))
        if selectorStat is None:
            return None
        with self._lock:
            cached = self._cache.get(domain)
        if cached is None or cached.selectorStat != selectorStat:
            cached = _Cached(selectorStat, self.keys.activeSelector(domain))
        if cached.selector is None:
            self._remember(domain, cached)
            return None
        path = self.keys.keyPath(domain, cached.selector)
        keyStat = _stat(path)
        if keyStat is None:
            raise DKIMKeyError(f"{path}: the active selector of {domain} has no key")
        if cached.key is None or cached.keyStat != keyStat:
            key = self.keys.load(domain, cached.selector)
            if key is None:
                raise DKIMKeyError(f"{path}: the active selector of {domain} has no key")
            cached = _Cached(selectorStat, cached.selector, keyStat, key)
        self._remember(domain, cached)
        return cached.key

    def _remember(self, domain: str, cached: _Cached) -> None:
        with self._lock:
            self._cache[domain] = cached

    def signature(self, message: bytes, domain: str | None = None) -> bytes | None:
        """
        The C{DKIM-Signature} header field to put before C{message}, or
        C{None} when it is not to be signed: its C{From} names no single
        domain (and no C{domain} is given), the domain is not hosted or
        has no key, or its header block cannot be parsed.

        @param domain: the signing domain, when the caller has chosen it;
            by default the domain of the one C{From} header.
        @raise DKIMKeyError: when the domain's active key cannot be used.
        """
        fields = _headerFields(message)
        if fields is None:
            _log.warn("DKIM: not signed: the message has a malformed header block")
            return None
        if domain is None:
            domain = _fromDomainOf(fields)
            if domain is None:
                return None
        key = self.keyFor(domain)
        if key is None:
            return None
        try:
            return key.sign(message)
        except dkim.MessageFormatError as e:
            _log.warn("DKIM: not signed for {domain}: {error}", domain=key.domain, error=str(e))
            return None
        except dkim.DKIMException as e:
            raise DKIMKeyError(
                f"{key.domain}: cannot sign with selector {key.selector}: {e}"
            ) from e

    def signMessage(self, message: bytes, domain: str | None = None) -> bytes:
        """
        C{message} with its C{DKIM-Signature} header field in front, or
        unchanged when L{signature} says it is not to be signed.
        """
        header = self.signature(message, domain)
        return message if header is None else header + message


def _fromDomainOf(fields: list[tuple[bytes, bytes]]) -> str | None:
    values = [value for name, value in fields if name.lower() == b"from"]
    if len(values) != 1:
        return None
    text = values[0].decode("utf-8", errors="surrogateescape")
    domains = set()
    for _, address in getaddresses([text]):
        local, at, domain = address.rpartition("@")
        if not (local and at):
            return None
        try:
            domains.add(normalizeDomain(domain))
        except (DirectoryError, UnicodeError):
            return None
    return domains.pop() if len(domains) == 1 else None
