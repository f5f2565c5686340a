# -*- test-case-name: tests.pop3.test_pop3_network -*-
"""The factory the service assembler listens with, for plain and implicit-TLS POP3."""

from __future__ import annotations

from twisted.cred.portal import Portal
from twisted.internet.interfaces import IAddress
from twisted.internet.protocol import ServerFactory
from twisted.internet.ssl import CertificateOptions

from tmail.clientaddress import IPV6_PREFIX_LENGTH
from tmail.config.schema import POP3Settings
from tmail.connections import ConnectionCounter
from tmail.interfaces import ILoginThrottle
from tmail.pop3.server import POP3Server


class POP3Factory(ServerFactory):
    """
    Builds L{POP3Server} sessions that share one per-address connection
    count.  The same factory serves C{tcp:} listeners (STLS offered when
    C{tlsContextFactory} is given) and C{ssl:} ones, whose sessions see a
    TLS transport and so neither offer STLS nor refuse plaintext logins.
    """

    protocol = POP3Server
    noisy = False

    def __init__(
        self,
        portal: Portal,
        settings: POP3Settings,
        *,
        tlsContextFactory: CertificateOptions | None,
        throttle: ILoginThrottle,
        hostname: str,
        ipv6Prefix: int = IPV6_PREFIX_LENGTH,
    ) -> None:
        self.portal = portal
        self.settings = settings
        self.tlsContextFactory = tlsContextFactory
        self.throttle = throttle
        self.hostname = hostname
        self.connections = ConnectionCounter(
            settings.max_connections_per_address, settings.max_connections, ipv6Prefix
        )

    def buildProtocol(self, addr: IAddress | None) -> POP3Server:
        protocol = POP3Server(
            self.portal,
            self.settings,
            tlsContextFactory=self.tlsContextFactory,
            throttle=self.throttle,
            hostname=self.hostname,
            connections=self.connections,
        )
        protocol.factory = self
        return protocol
