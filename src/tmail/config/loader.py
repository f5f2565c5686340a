"""
Read a TOML configuration file into validated L{Settings}.

The sections and keys are exactly the fields of the dataclasses in
L{tmail.config.schema}: the loader walks their type hints, so a field added
there is accepted here with the right type check.  Everything that can be
checked before the server starts is checked here: unknown keys, types (a
boolean is not an integer), positive limits, listener syntax, and that the
TLS certificate and key can be read, parse and belong together.

Any problem raises one L{ConfigError} naming the file, the dotted key
(C{imap.listen[1]}) and a short reason.  Relative paths are resolved
against the configuration file's folder.

SMTP policies (C{[policy.<name>]} tables, named by the C{policies} key of
C{[smtp]}, C{[submission]} and C{[lmtp]}) are loaded and built once here, so that a
class that cannot be imported or a setting it refuses is reported like any
other key; the services build them again.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import socket
import tomllib
import types
import typing
from collections.abc import Callable
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, Literal, NoReturn, TypeVar, cast

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from tmail.config.endpoints import checkServerEndpoint, isTLSShorthand, parseTLSShorthand
from tmail.config.remotes import loadTrustRoot, parseNameserver, parseSmarthost, readCredentials
from tmail.config.schema import (
    BUNDLED_POLICIES,
    POLICY_CLASS,
    TLS_LEVELS,
    AuthSettings,
    IMAPSettings,
    LMTPSettings,
    PolicySettings,
    POP3Settings,
    QuotaSettings,
    RealmSettings,
    RelayConfig,
    ServerSettings,
    Settings,
    SMTPSettings,
    SubmissionSettings,
    TLSSettings,
)
from tmail.directory.addresses import isValidHostname
from tmail.errors import ConfigError, InvalidFolderName
from tmail.store.naming import DELIMITER, INBOX, normalizeName
from tmail.store.quota import parseSize
from tmail.store.uidl import compileFormat
from tmail.tls import serverContextFactory

__all__ = ["loadSettings"]

_S = TypeVar("_S")

_SECTIONS: dict[str, type[Any]] = {
    "realm": RealmSettings,
    "auth": AuthSettings,
    "quota": QuotaSettings,
    "tls": TLSSettings,
    "smtp": SMTPSettings,
    "submission": SubmissionSettings,
    "imap": IMAPSettings,
    "pop3": POP3Settings,
    "lmtp": LMTPSettings,
    "relay": RelayConfig,
    "server": ServerSettings,
}
_TOP_LEVEL = ("hostname", "data_dir", "log_format", "ipv6_prefix_length")

#: The deepest C{imap.max_nesting}: search keys are evaluated by recursion,
#: a few stack frames per level, within Python's limit of 1000.
MAX_IMAP_NESTING = 200

#: The fewest messages a server must let one UIDBATCHES ask for (RFC 10022).
MIN_UIDBATCHES_MESSAGES = 100_000

#: Numbers that may be zero; every other limit must be positive.
_NON_NEGATIVE = frozenset(
    {
        "auth.failure_delay",
        "server.workers",
        "quota.storage",
        "quota.messages",
        "relay.delay_warning",
        "relay.connection_reuse_time",
        "imap.message_cache_size",
        *(
            f"{section}.{key}"
            for section in ("smtp", "submission", "lmtp")
            for key in ("greet_pause", "min_free_space")
        ),
        *(
            f"{section}.max_connections"
            for section in ("smtp", "submission", "lmtp", "imap", "pop3")
        ),
    }
)

_BACKEND = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*\Z")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+\Z")
_POLICY_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")
_TOML_POSITION = re.compile(r"(?s)(.*) \((at line \d+, column \d+|at end of document)\)\Z")


class _FileError(ConfigError):
    """A problem with the file as a whole, which has no key to name."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(path, "", problem)
        self.args = (f"{path}: {problem}",)


def loadSettings(path: Path) -> Settings:
    """
    Read and validate the configuration file at C{path}.

    @raise ConfigError: for the first problem found.
    """
    shown = str(path)
    absolute = Path(os.path.abspath(path))
    try:
        text = absolute.read_bytes().decode("utf-8")
    except OSError as e:
        raise _FileError(shown, f"cannot read file: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise _FileError(shown, f"not UTF-8 text (byte {e.start})") from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise _FileError(shown, _tomlProblem(str(e))) from None
    return _Loader(shown, absolute).load(document)


def _tomlProblem(message: str) -> str:
    match = _TOML_POSITION.match(message)
    if match is None:
        return f"TOML syntax error: {message}"
    return f"TOML syntax error {match.group(2)}: {match.group(1)}"


def _showKey(key: str) -> str:
    """A TOML key as it could be written: bare when possible, else quoted."""
    if _BARE_KEY.match(key):
        return key
    return '"' + key.encode("unicode_escape").decode("ascii").replace('"', '\\"') + '"'


def _describe(value: object) -> str:
    """A value as an operator wrote it: C{string "abc"}, C{boolean true}, C{table}."""
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, float):
        return f"float {value}"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return "string " + '"' + shown.encode("unicode_escape").decode("ascii") + '"'
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "table"
    if isinstance(value, datetime):
        return f"date-time {value.isoformat()}"
    if isinstance(value, date):
        return f"date {value.isoformat()}"
    if isinstance(value, time):
        return f"time {value.isoformat()}"
    return type(value).__name__


class _Loader:
    """Validation of one parsed document; L{fail} raises with the file's name."""

    def __init__(self, shown: str, path: Path) -> None:
        self.shown = shown
        self.path = path
        self.folder = path.parent
        self.tls: TLSSettings | None = None

    def fail(self, key: str, problem: str) -> NoReturn:
        raise ConfigError(self.shown, key, " ".join(problem.splitlines()))

    def load(self, document: dict[str, Any]) -> Settings:
        self.checkKeys("", document, [*_TOP_LEVEL, *_SECTIONS, "policy"])
        hostname = socket.getfqdn()
        if "hostname" in document:
            hostname = self.string("hostname", document["hostname"])
            if not isValidHostname(hostname):
                self.fail("hostname", f"not a valid host name: {_describe(hostname)}")
        dataDir = self.path_("data_dir", document.get("data_dir", "data"))
        logFormat = self.choice("log_format", document.get("log_format", "text"), ("text", "json"))
        ipv6Prefix = self.integer("ipv6_prefix_length", document.get("ipv6_prefix_length", 64))
        if ipv6Prefix > 128:
            self.fail("ipv6_prefix_length", "must be at most 128")

        realm = self.section("realm", document, RealmSettings) or RealmSettings()
        if realm.backend == "maildir" and realm.domain is None:
            self.fail("realm.domain", 'required when realm.backend is "maildir"')
        auth = self.section("auth", document, AuthSettings) or AuthSettings()
        if auth.max_failure_delay < auth.failure_delay:
            self.fail("auth.max_failure_delay", "must not be less than auth.failure_delay")
        quota = self.section("quota", document, QuotaSettings) or QuotaSettings()
        self.tls = self.section("tls", document, TLSSettings)
        if self.tls is not None:
            self.checkTLS(self.tls)
        smtp = self.section("smtp", document, SMTPSettings)
        submission = self.section("submission", document, SubmissionSettings)
        lmtp = self.section("lmtp", document, LMTPSettings)

        return Settings(
            path=self.path,
            hostname=hostname,
            data_dir=dataDir,
            realm=realm,
            auth=auth,
            quota=quota,
            tls=self.tls,
            smtp=smtp,
            submission=submission,
            imap=self.imap(document),
            pop3=self.section("pop3", document, POP3Settings),
            lmtp=lmtp,
            log_format=cast(Literal["text", "json"], logFormat),
            policy=self.policies(document, {"smtp": smtp, "submission": submission, "lmtp": lmtp}),
            relay=self.relay(document),
            ipv6_prefix_length=ipv6Prefix,
            server=self.section("server", document, ServerSettings) or ServerSettings(),
        )

    def relay(self, document: dict[str, Any]) -> RelayConfig:
        relay = self.section("relay", document, RelayConfig) or RelayConfig()
        if not relay.port < 65536:
            self.fail("relay.port", f"not a TCP port: {relay.port}")
        if relay.max_backoff < relay.first_retry:
            self.fail("relay.max_backoff", "must not be less than relay.first_retry")
        if relay.tls_verify and relay.tls in ("dane", "dane-only"):
            self.fail("relay.tls_verify", f'does not apply to tls = "{relay.tls}"')
        self.checkSmarthostFiles(relay)
        return relay

    def smarthost(self, key: str, value: object) -> str:
        """C{"tcp:HOST:PORT"}, C{"tls:HOST:PORT"}, or C{""} for MX delivery."""
        if value == "":
            return ""
        return self.checked(key, value, parseSmarthost, "not a smarthost")

    def checkSmarthostFiles(self, relay: RelayConfig) -> None:
        """The smarthost's credentials and CA files are needed, readable, and well-formed."""
        if relay.smarthost_credentials is None and relay.smarthost_ca is None:
            return
        for key, path in (
            ("relay.smarthost_credentials", relay.smarthost_credentials),
            ("relay.smarthost_ca", relay.smarthost_ca),
        ):
            if path is not None and not relay.smarthost:
                self.fail(key, "only used with relay.smarthost, which is not set")
        if relay.smarthost_credentials is not None:
            key = "relay.smarthost_credentials"
            try:
                readCredentials(relay.smarthost_credentials)
            except OSError as e:
                self.fail(key, f"cannot read {relay.smarthost_credentials}: {e.strerror or e}")
            except ValueError as e:
                self.fail(key, f"{relay.smarthost_credentials}: {e}")
        if relay.smarthost_ca is not None:
            key = "relay.smarthost_ca"
            try:
                loadTrustRoot(relay.smarthost_ca)
            except OSError as e:
                self.fail(key, f"cannot read {relay.smarthost_ca}: {e.strerror or e}")
            except ValueError:
                self.fail(key, f"{relay.smarthost_ca} holds no PEM certificate")

    def policies(
        self, document: dict[str, Any], users: dict[str, SMTPSettings | None]
    ) -> dict[str, PolicySettings]:
        """
        The C{[policy.<name>]} tables and the bundled policies the
        C{policies} lists name without a table.  Every name listed must
        have a table (or be bundled), and every table must be listed
        somewhere.  The policies themselves are built where the server is
        assembled (L{tmail.service.checkPolicies} for C{tmail check}),
        once: building one loads its class, which may be an SMTP policy of
        the protocol layer or the operator's own.
        """
        tables = document.get("policy", {})
        if not isinstance(tables, dict):
            self.fail("policy", f"expected [policy.<name>] tables, got {_describe(tables)}")
        found: dict[str, PolicySettings] = {}
        for name, table in tables.items():
            key = f"policy.{_showKey(name)}"
            if not _POLICY_NAME.match(name):
                self.fail(key, "a policy name is up to 64 letters, digits, - and _")
            if not isinstance(table, dict):
                self.fail(key, f"expected a table, got {_describe(table)}")
            options = dict(table)
            if "class" in options:
                cls = self.string(f"{key}.class", options.pop("class"))
                if not POLICY_CLASS.match(cls):
                    self.fail(f"{key}.class", 'must be "package.module:Class"')
            elif name in BUNDLED_POLICIES:
                cls = BUNDLED_POLICIES[name]
            else:
                self.fail(f"{key}.class", 'required: "package.module:Class"')
            found[name] = PolicySettings(name, cls, options)
        listed: set[str] = set()
        for section, settings in users.items():
            for index, name in enumerate(settings.policies if settings else ()):
                listed.add(name)
                if name not in found:
                    if name not in BUNDLED_POLICIES:
                        self.fail(
                            f"{section}.policies[{index}]",
                            f"no [policy.{_showKey(name)}] table defines this policy",
                        )
                    found[name] = PolicySettings(name, BUNDLED_POLICIES[name])
        for name in found:
            if name not in listed:
                self.fail(
                    f"policy.{_showKey(name)}",
                    "not used: no policies list of [smtp], [submission] or [lmtp] names it",
                )
        return found

    def policyNames(self, key: str, value: object) -> tuple[str, ...]:
        if not isinstance(value, list):
            self.fail(key, f"expected an array of policy names, got {_describe(value)}")
        names: list[str] = []
        for index, item in enumerate(value):
            name = self.string(f"{key}[{index}]", item)
            if not _POLICY_NAME.match(name):
                self.fail(f"{key}[{index}]", "a policy name is up to 64 letters, digits, - and _")
            if name in names:
                self.fail(f"{key}[{index}]", f"{name} is listed twice")
            names.append(name)
        return tuple(names)

    def imap(self, document: dict[str, Any]) -> IMAPSettings | None:
        imap = self.section("imap", document, IMAPSettings)
        if imap is not None:
            seen: dict[str, str] = {}
            for field in dataclasses.fields(imap):
                if field.name.startswith("special_use_"):
                    name = getattr(imap, field.name)
                    if name in seen:
                        self.fail(
                            f"imap.{field.name}", f"names the same folder as imap.{seen[name]}"
                        )
                    seen[name] = field.name
            if imap.max_nesting > MAX_IMAP_NESTING:
                self.fail("imap.max_nesting", f"must be at most {MAX_IMAP_NESTING}")
            if imap.uidbatches_max_messages < MIN_UIDBATCHES_MESSAGES:
                self.fail(
                    "imap.uidbatches_max_messages", f"must be at least {MIN_UIDBATCHES_MESSAGES}"
                )
        return imap

    def checkKeys(self, prefix: str, table: dict[str, Any], known: list[str]) -> None:
        for key in table:
            if key not in known:
                guess = difflib.get_close_matches(key, known, n=1)
                hint = f' (did you mean "{guess[0]}"?)' if guess else ""
                self.fail(prefix + _showKey(key), "unknown key" + hint)

    def section(self, name: str, document: dict[str, Any], cls: type[_S]) -> _S | None:
        """The dataclass C{cls} from the table C{name}, or C{None} when it is absent."""
        if name not in document:
            return None
        table = document[name]
        if not isinstance(table, dict):
            self.fail(name, f"expected a table, got {_describe(table)}")
        fields = dataclasses.fields(cast(Any, cls))
        self.checkKeys(name + ".", table, [f.name for f in fields])
        hints = typing.get_type_hints(cls)
        values: dict[str, object] = {}
        for field in fields:
            key = f"{name}.{field.name}"
            if field.name in table:
                values[field.name] = self.convert(key, table[field.name], hints[field.name])
            elif field.name == "listen":
                self.fail(key, "must list at least one endpoint")
            elif field.default is dataclasses.MISSING and field.default_factory is (
                dataclasses.MISSING
            ):
                self.fail(key, "required key is missing")
        return cls(**values)

    def convert(self, key: str, value: object, hint: object) -> object:
        """Check C{value} against the field's type C{hint} and convert it."""
        origin = typing.get_origin(hint)
        if origin in (types.UnionType, typing.Union):
            (hint,) = [a for a in typing.get_args(hint) if a is not type(None)]
            origin = typing.get_origin(hint)
        if key == "realm.backend":
            return self.backend(key, value)
        if key == "realm.domain":
            return self.domain(key, value)
        if key == "quota.storage" or key.endswith(".min_free_space"):
            return self.size(key, value)
        if key == "pop3.uidl_format":
            return self.uidlFormat(key, value)
        if key.startswith("imap.special_use_"):
            return self.folderName(key, value)
        if key.endswith(".policies"):
            return self.policyNames(key, value)
        if origin is Literal:
            return self.choice(key, value, [str(a) for a in typing.get_args(hint)])
        if key == "relay.nameservers":
            return self.nameservers(key, value)
        if key == "relay.resolver":
            return self.resolver(key, value)
        if key == "relay.tls_policy":
            return self.tlsPolicy(key, value)
        if key == "relay.smarthost":
            return self.smarthost(key, value)
        if key in ("imap.url_host", "submission.burl_imap_host"):
            return self.urlHost(key, value)
        if origin is tuple:
            return self.listen(key, value)
        if hint is bool:
            return self.boolean(key, value)
        if hint is int:
            return self.integer(key, value)
        if hint is float:
            return self.number(key, value)
        if hint is Path:
            return self.path_(key, value)
        if hint is str:
            return self.string(key, value)
        raise TypeError(f"no conversion for {key} of type {hint!r}")

    # Scalars

    def string(self, key: str, value: object) -> str:
        if not isinstance(value, str):
            self.fail(key, f"expected a string, got {_describe(value)}")
        if not value.strip():
            self.fail(key, "must not be empty")
        if "\x00" in value:
            self.fail(key, "must not contain a NUL character")
        return value

    def boolean(self, key: str, value: object) -> bool:
        if not isinstance(value, bool):
            self.fail(key, f"expected true or false, got {_describe(value)}")
        return value

    def integer(self, key: str, value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(key, f"expected an integer, got {_describe(value)}")
        self.checkSign(key, value)
        return value

    def number(self, key: str, value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(key, f"expected a number, got {_describe(value)}")
        if not math.isfinite(value):
            self.fail(key, "must be a finite number")
        self.checkSign(key, value)
        return float(value)

    def checkSign(self, key: str, value: float) -> None:
        if key in _NON_NEGATIVE:
            if value < 0:
                self.fail(key, "must not be negative")
        elif value <= 0:
            self.fail(key, "must be positive")

    def size(self, key: str, value: object) -> int:
        """Bytes: an integer, or a string with a K, M, G or T suffix (C{"1G"})."""
        if isinstance(value, str):
            try:
                return parseSize(value)
            except ValueError:
                self.fail(key, f'expected a size such as "500M" or "1G", got {_describe(value)}')
        return self.integer(key, value)

    def uidlFormat(self, key: str, value: object) -> str:
        return self.checked(key, value, compileFormat, "not a UIDL format")

    def checked(self, key: str, value: object, parse: Callable[[str], object], what: str) -> str:
        """A string C{parse} takes; its C{ValueError} is the problem, after C{what}."""
        text = self.string(key, value)
        try:
            parse(text)
        except ValueError as e:
            self.fail(key, f"{what}: {e}")
        return text

    def folderName(self, key: str, value: object) -> str:
        """A folder name as IMAP clients see it (C{Sent}, C{Archive/2025}), not INBOX."""
        text = self.string(key, value)
        try:
            canonical = normalizeName(text)
        except InvalidFolderName as e:
            self.fail(key, f"not a valid folder name: {e}")
        if canonical.split(DELIMITER)[0] == INBOX:
            self.fail(key, "must not be INBOX or inside it")
        if "*" in canonical or "%" in canonical:
            self.fail(key, "must not contain * or %")
        return canonical

    def choice(self, key: str, value: object, allowed: typing.Sequence[str]) -> str:
        if not isinstance(value, str):
            self.fail(key, f"expected a string, got {_describe(value)}")
        if value not in allowed:
            self.fail(key, f"must be one of {', '.join(allowed)}")
        return value

    def path_(self, key: str, value: object) -> Path:
        text = self.string(key, value)
        return Path(os.path.normpath(self.folder / Path(text).expanduser()))

    def backend(self, key: str, value: object) -> str:
        text = self.string(key, value)
        if text not in ("virtual", "maildir") and not _BACKEND.match(text):
            self.fail(key, 'must be "virtual", "maildir" or "package.module:Class"')
        return text

    def domain(self, key: str, value: object) -> str:
        text = self.string(key, value)
        if not isValidHostname(text):
            self.fail(key, f"not a valid domain: {_describe(text)}")
        return text.lower() if text.isascii() else text.encode("idna").decode("ascii")

    # Listeners and TLS

    def nameservers(self, key: str, value: object) -> tuple[str, ...]:
        if not isinstance(value, list):
            self.fail(key, f"expected a list of addresses, got {_describe(value)}")
        return tuple(self.nameserver(key, item) for item in value)

    def urlHost(self, key: str, value: object) -> str:
        """The C{host} or C{host:port} of IMAP URLs (RFC 5092), or C{""}."""
        if value == "":
            return ""
        text = self.string(key, value).lower()
        bare = ":" not in text or text.endswith("]")
        host, colon, port = (text, "", "") if bare else text.rpartition(":")
        valid = re.fullmatch(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?|\[[0-9a-f:.]+\]", host)
        if not valid or (colon and not (port.isdigit() and 0 < int(port) < 65536)):
            self.fail(key, f'expected a host such as "mail.example.com", got {_describe(value)}')
        return text

    def resolver(self, key: str, value: object) -> str:
        return self.nameserver(key, value) if value != "" else ""

    def nameserver(self, key: str, value: object) -> str:
        text = self.string(key, value)
        try:
            parseNameserver(text)
        except ValueError:
            self.fail(key, f'expected an address such as "127.0.0.1:53", got {_describe(value)}')
        return text

    def tlsPolicy(self, key: str, value: object) -> tuple[tuple[str, str], ...]:
        """The C{[relay.tls_policy]} table: canonical domain -> level."""
        if not isinstance(value, dict):
            self.fail(key, f"expected a table of domain = level, got {_describe(value)}")
        policy: dict[str, str] = {}
        for name, level in value.items():
            where = f"{key}.{_showKey(name)}"
            policy[self.domain(where, name)] = self.choice(where, level, list(TLS_LEVELS))
        return tuple(sorted(policy.items()))

    def listen(self, key: str, value: object) -> tuple[str, ...]:
        if not isinstance(value, list):
            self.fail(key, f"expected an array of endpoint strings, got {_describe(value)}")
        if not value:
            self.fail(key, "must list at least one endpoint")
        return tuple(self.listener(f"{key}[{i}]", item) for i, item in enumerate(value))

    def listener(self, key: str, value: object) -> str:
        description = self.string(key, value)
        if isTLSShorthand(description):
            self.checked(key, description, parseTLSShorthand, "not a valid tls: listener")
            if self.tls is None:
                self.fail(key, "a tls: listener needs a [tls] section")
            return description
        return self.checked(key, description, checkServerEndpoint, "not a valid endpoint")

    def readFile(self, key: str, path: Path) -> bytes:
        try:
            return path.read_bytes()
        except OSError as e:
            self.fail(key, f"cannot read file: {e.strerror or e}")

    def checkTLS(self, tls: TLSSettings) -> None:
        """The certificate and key can be read, parse as PEM and belong together."""
        certData = self.readFile("tls.certificate", tls.certificate)
        keyData = self.readFile("tls.key", tls.key)
        try:
            certificate = x509.load_pem_x509_certificates(certData)[0]
        except ValueError:
            self.fail("tls.certificate", "the file holds no PEM certificate")
        try:
            key = serialization.load_pem_private_key(keyData, password=None)
        except TypeError:
            self.fail("tls.key", "the key is encrypted; tmail needs an unencrypted key")
        except (ValueError, UnsupportedAlgorithm):
            self.fail("tls.key", "the file holds no usable PEM private key")
        spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        if key.public_key().public_bytes(*spki) != certificate.public_key().public_bytes(*spki):
            self.fail("tls.key", "does not match the key of tls.certificate")
        try:
            serverContextFactory(tls).getContext()
        except Exception as e:
            self.fail("tls.certificate", f"cannot be used for TLS: {e}")
