# -*- test-case-name: tests.imap.test_imap_network -*-
"""The factory the service assembler listens with, for plain and implicit-TLS IMAP."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.cred.portal import Portal
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IAddress, IReactorTime
from twisted.internet.protocol import ServerFactory
from twisted.internet.ssl import CertificateOptions
from twisted.internet.threads import deferToThread

from tmail.clientaddress import IPV6_PREFIX_LENGTH
from tmail.config.schema import IMAPSettings
from tmail.connections import ConnectionCounter
from tmail.imap.messagecache import MessageCache
from tmail.imap.server import IMAPServer
from tmail.imap.urlauth import URLAuthority
from tmail.interfaces import ILoginThrottle, IMailRealm


class IMAPFactory(ServerFactory):
    """
    Builds L{IMAPServer} sessions that share one per-address connection
    count.  The same factory serves C{tcp:} listeners (STARTTLS offered when
    C{tlsContextFactory} is given) and C{ssl:} ones, whose sessions see a TLS
    transport and so neither offer STARTTLS nor refuse plaintext logins.

    @ivar clock: the reactor sessions schedule timeouts and IDLE polls on.
    @ivar messageThreads: runs the work on large messages (a
        L{tmail.imap.largemessages.MessageThreads} pool's C{run}); without
        one, L{runInThread} does.
    @ivar messageCache: the parsed facts of messages all its sessions share.
    @ivar urls: what opens IMAP URLs (CATENATE, URLAUTH) through the
        realm's stores; C{None} when the portal's realm has no stores.
    """

    protocol = IMAPServer
    noisy = False
    #: How sessions run the durable half of an APPEND; tests make it inline.
    runInThread: Callable[..., Deferred[Any]] = staticmethod(deferToThread)  # type: ignore[arg-type]

    def __init__(
        self,
        portal: Portal,
        settings: IMAPSettings,
        *,
        tlsContextFactory: CertificateOptions | None,
        throttle: ILoginThrottle,
        hostname: str,
        clock: IReactorTime | None = None,
        ipv6Prefix: int = IPV6_PREFIX_LENGTH,
        messageThreads: Callable[..., Deferred[Any]] | None = None,
    ) -> None:
        self.portal = portal
        self.settings = settings
        self.tlsContextFactory = tlsContextFactory
        self.throttle = throttle
        self.hostname = hostname
        self.clock = clock
        self.messageThreads = messageThreads
        self.messageCache = MessageCache.fromSettings(settings)
        self.connections = ConnectionCounter(
            settings.max_connections_per_address, settings.max_connections, ipv6Prefix
        )
        realm = portal.realm
        self.urls: URLAuthority | None = None
        if IMailRealm.providedBy(realm):
            self.urls = URLAuthority.forRealm(realm, settings.url_host or hostname, portal)

    def buildProtocol(self, addr: IAddress | None) -> IMAPServer:
        protocol = IMAPServer(
            self.portal,
            self.settings,
            tlsContextFactory=self.tlsContextFactory,
            throttle=self.throttle,
            connections=self.connections,
            clock=self.clock,
        )
        protocol.factory = self
        protocol.runInThread = self.runInThread
        protocol.runInWorker = self.messageThreads or self.runInThread
        protocol.messageCache = self.messageCache
        return protocol
