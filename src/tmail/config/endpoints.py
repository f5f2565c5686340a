"""
Listener descriptions: Twisted endpoint strings plus tmail's C{tls:} shorthand.

C{tls:PORT[:interface=ADDR]} is an implicit-TLS listener with the
certificate and key of the C{[tls]} section; L{expandListener} turns it
into Twisted's C{ssl:} form.  Every other description is a Twisted server
endpoint string and passes through unchanged.

A C{unix:PATH[:mode=OCTAL]} socket (the usual LMTP listener) must have an
absolute path that fits in a socket address, and a mode that is file
permissions: Twisted would accept the first two and fail only when it
listens, and would pass any number to C{chmod}.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket

from twisted.internet.endpoints import UNIXServerEndpoint, serverFromString

from tmail.config.schema import TLSSettings

__all__ = [
    "TLS_PREFIX",
    "checkServerEndpoint",
    "escapeEndpointValue",
    "expandListener",
    "isTLSShorthand",
    "parseTLSShorthand",
    "splitEndpoint",
]

TLS_PREFIX = "tls:"

#: The longest unix socket path, in bytes: C{sun_path} (108 on Linux) less its NUL.
MAX_UNIX_PATH = 107

_OCTAL_MODE = re.compile(r"[0-7]{1,4}\Z")
_MODE_PROBLEM = "mode= must be octal permissions such as 660"


def escapeEndpointValue(value: str) -> str:
    """Backslash-escape C{\\}, C{:} and C{=} as Twisted's endpoint syntax requires."""
    return value.replace("\\", "\\\\").replace(":", "\\:").replace("=", "\\=")


def splitEndpoint(description: str) -> list[str]:
    """
    Split C{description} at its unescaped colons and remove the escapes,
    as Twisted's endpoint parser does.  (An escaped C{=} comes back as a
    plain C{=}; the shorthand's option values never contain one.)
    """
    parts: list[str] = []
    current: list[str] = []
    chars = iter(description)
    for c in chars:
        if c == "\\":
            current.append(next(chars, ""))
        elif c == ":":
            parts.append("".join(current))
            current = []
        else:
            current.append(c)
    parts.append("".join(current))
    return parts


def isTLSShorthand(description: str) -> bool:
    """Whether C{description} uses the C{tls:} shorthand."""
    return description[: len(TLS_PREFIX)].lower() == TLS_PREFIX


def parseTLSShorthand(description: str) -> tuple[int, str | None]:
    """
    The port and interface of a C{tls:PORT[:interface=ADDR]} description.

    @raise ValueError: with a short reason when it is malformed.
    """
    parts = splitEndpoint(description)[1:]
    if not parts or not parts[0].isdigit() or not parts[0].isascii():
        raise ValueError("expected tls:PORT[:interface=ADDRESS] with a numeric port")
    port = int(parts[0])
    if port > 65535:
        raise ValueError(f"port {port} is out of range 0..65535")
    interface: str | None = None
    for option in parts[1:]:
        name, equals, value = option.partition("=")
        if name != "interface" or not equals or interface is not None:
            raise ValueError(f"unknown or repeated option {option!r}; only interface= is allowed")
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise ValueError(f"interface {value!r} is not an IP address") from None
        interface = value
    return port, interface


def expandListener(description: str, tls: TLSSettings | None) -> str:
    """
    Turn C{tls:993:interface=127.0.0.1} into
    C{ssl:993:interface=127.0.0.1:certKey=CERT:privateKey=KEY}; return any
    other description unchanged.

    @raise ValueError: for a malformed shorthand, or one without C{tls}.
    """
    if not isTLSShorthand(description):
        return description
    port, interface = parseTLSShorthand(description)
    if tls is None:
        raise ValueError(f"{description!r} needs a [tls] section")
    parts = [f"ssl:{port}"]
    if interface is not None:
        parts.append(f"interface={escapeEndpointValue(interface)}")
    parts.append(f"certKey={escapeEndpointValue(str(tls.certificate))}")
    parts.append(f"privateKey={escapeEndpointValue(str(tls.key))}")
    return ":".join(parts)


def checkServerEndpoint(description: str) -> None:
    """
    Check a Twisted server endpoint string by parsing it (an endpoint keeps
    the reactor it is given for C{listen}, which is never called here: a
    stand-in serves, rather than Twisted's C{MemoryReactor}, whose module
    brings the whole of C{twisted.trial} into every server process).  C{systemd:} descriptions are
    checked for syntax only, since the sockets exist only under systemd.

    @raise ValueError: with a short reason when it would not parse.
    """
    kind, *options = splitEndpoint(description)
    if kind == "systemd":
        _checkSystemd(description)
        return
    if kind == "unix":
        for option in options:
            name, equals, value = option.partition("=")
            if name == "mode" and equals and not _OCTAL_MODE.match(value):
                raise ValueError(f"{description!r}: {_MODE_PROBLEM}")
    try:
        endpoint = serverFromString(_NoReactor(), description)
    except Exception as e:
        raise ValueError(f"{description!r}: {str(e) or type(e).__name__}") from None
    port = getattr(endpoint, "_port", None)
    if isinstance(port, int) and not 0 <= port <= 65535:
        raise ValueError(f"{description!r}: port {port} is out of range 0..65535")
    if isinstance(endpoint, UNIXServerEndpoint):
        _checkUnix(description, endpoint._address, endpoint._mode)


class _NoReactor:
    """The reactor of an endpoint that is parsed but never listens."""


def _checkUnix(description: str, path: str, mode: int) -> None:
    if not os.path.isabs(path):
        raise ValueError(f"{description!r}: the socket path must be absolute")
    if len(os.fsencode(path)) > MAX_UNIX_PATH:
        raise ValueError(f"{description!r}: the socket path is longer than {MAX_UNIX_PATH} bytes")
    if not 0 <= mode <= 0o777:
        raise ValueError(f"{description!r}: {_MODE_PROBLEM}")


def _checkSystemd(description: str) -> None:
    options: dict[str, str] = {}
    for part in splitEndpoint(description)[1:]:
        name, equals, value = part.partition("=")
        if not equals or name not in ("domain", "index", "name") or name in options:
            raise ValueError(f"{description!r}: unexpected {part!r}")
        options[name] = value
    if not hasattr(socket, "AF_" + options.get("domain", "")):
        raise ValueError(f"{description!r}: domain= must be an address family such as INET")
    if ("index" in options) == ("name" in options):
        raise ValueError(f"{description!r}: give exactly one of index= and name=")
    if "index" in options and not options["index"].isdigit():
        raise ValueError(f"{description!r}: index= must be a number")
