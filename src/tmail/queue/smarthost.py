# -*- test-case-name: tests.queue.test_queue_smarthost -*-
"""
A smarthost: the one server all outbound mail goes to instead of the
recipients' MX hosts (Postfix's C{relayhost}), usually a provider's
submission service that wants a login.

C{[relay] smarthost} names it as C{"tcp:HOST:PORT"} (STARTTLS, which is
then required) or C{"tls:HOST:PORT"} (implicit TLS, RFC 8314); HOST is a
host name, an IPv4 address, or an IPv6 address in brackets
(C{"tcp:[2001:db8::25]:587"}).  Its login comes from a file holding one
line C{username:password} (the password may contain colons), so the
password is never in the configuration.  The server's certificate is
verified by default, against the platform's CAs or a given PEM bundle.

L{tmail.config.loader} checks all of this when it loads the file;
L{tmail.queue.relaysettings.RelaySettings.fromConfig} reads the files again when
the runner is built.
"""

from __future__ import annotations

from dataclasses import dataclass

from tmail.config.remotes import Credentials, exposedToOthers, loadTrustRoot, readCredentials
from tmail.tls import TrustRoot

__all__ = [
    "Smarthost",
    "exposedToOthers",
    "loadTrustRoot",
    "readCredentials",
]


@dataclass(frozen=True, slots=True)
class Smarthost:
    """
    Where all outbound mail goes, and how.

    @ivar host: a host name (resolved to its A/AAAA addresses) or an IP
        address (used as it is); what its certificate must name.
    @ivar implicitTLS: TLS from the first octet (C{tls:}); else STARTTLS,
        required.
    @ivar credentials: the login (AUTH), if one is needed.
    @ivar verify: check the certificate chain and that it names C{host}.
    @ivar trustRoot: the CAs to trust instead of the platform's.
    """

    host: str
    port: int
    implicitTLS: bool = False
    credentials: Credentials | None = None
    verify: bool = True
    trustRoot: TrustRoot | None = None
