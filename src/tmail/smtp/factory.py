# -*- test-case-name: tests.smtp.test_smtp_server -*-
"""The factory for the MX and submission listeners."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.portal import Portal
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IAddress, IReactorTime
from twisted.internet.protocol import ServerFactory
from twisted.internet.ssl import CertificateOptions
from twisted.internet.threads import deferToThread
from twisted.logger import Logger
from twisted.python.failure import Failure

from tmail.clientaddress import IPV6_PREFIX_LENGTH
from tmail.config.schema import OverQuotaPolicy, SenderCheck, SMTPSettings, SubmissionSettings
from tmail.connections import ConnectionCounter
from tmail.delivery.groupcommit import GroupPublisher
from tmail.delivery.local import LocalDelivery, publishAll
from tmail.interfaces import IFreeSpace, ILoginThrottle, IMailRealm
from tmail.queue.outbox import Outbox
from tmail.smtp.burl import burlAuthority
from tmail.smtp.policy import ISMTPPolicy
from tmail.smtp.server import SMTPServer
from tmail.smtp.submission import SenderRules

_log = Logger()


class SMTPFactory(ServerFactory):
    """
    Builds L{SMTPServer} sessions for one C{[smtp]} or C{[submission]}
    section.  Implicit-TLS listeners wrap the same factory; the sessions see
    the TLS transport and offer AUTH at once.

    @ivar checker: the portal's C{IUsernamePassword} checker, which AUTH
        uses directly (the realm has no SMTP avatar); C{None} disables AUTH.
    @ivar connections: open sessions per client address.
    @ivar overQuota: C{"reject"} answers a full mailbox with C{552 5.2.2},
        C{"tempfail"} with C{452 4.2.2}.
    @ivar runInThread: how the slow, durable half of a delivery leaves the
        reactor thread (C{deferToThread}; tests that drive a session over a
        C{StringTransport} run it in place).
    @ivar policies: the L{ISMTPPolicy} checks every session runs, in order.
    @ivar senders: on submission, which sender addresses users may use
        (L{SenderRules}); C{None} on the MX.
    @ivar outbox: where mail for other servers goes (submission to other
        domains, aliases pointing outside); without it such recipients are
        refused.
    @ivar clock: what the sessions' timeouts, deadlines and greeting pause
        run on.
    @ivar publisher: makes the copies of deliveries durable in worker
        threads, those that end together in one job (L{GroupPublisher}).
    @ivar burl: on submission with C{burl_imap_host}, what resolves BURL's
        IMAP URLs (RFC 4468) through the realm's stores; else C{None}.
    """

    runInThread: Callable[..., Deferred[Any]] = staticmethod(deferToThread)  # type: ignore[arg-type]

    protocol = SMTPServer
    noisy = False

    def __init__(
        self,
        realm: IMailRealm,
        settings: SMTPSettings,
        *,
        hostname: str,
        submission: bool,
        portal: Portal | None,
        tlsContextFactory: CertificateOptions | None,
        throttle: ILoginThrottle,
        overQuota: OverQuotaPolicy = "reject",
        policies: Sequence[ISMTPPolicy] = (),
        senderCheck: SenderCheck = "envelope+header",
        outbox: Outbox | None = None,
        clock: IReactorTime | None = None,
        ipv6Prefix: int = IPV6_PREFIX_LENGTH,
    ) -> None:
        if clock is None:
            from twisted.internet import reactor

            clock = reactor
        self.clock = clock
        self.realm = realm
        self.policies = tuple(policies)
        self.senders = SenderRules(realm, senderCheck) if submission else None
        self.overQuota = overQuota
        self.settings = settings
        self.hostname = hostname
        self.submission = submission
        self.tlsContextFactory = tlsContextFactory
        self.throttle = throttle
        self.checker: ICredentialsChecker | None = (
            portal.checkers.get(IUsernamePassword) if portal is not None else None
        )
        self.delivery = LocalDelivery(realm)
        self.publisher = GroupPublisher(
            publishAll,
            lambda *args: self.runInThread(*args),
            clock,
            jobs=settings.commit_threads,
            patience=settings.commit_stall,
        )
        host = settings.burl_imap_host if isinstance(settings, SubmissionSettings) else ""
        self.burl = burlAuthority(realm, host, portal) if submission else None
        self.outbox = outbox
        #: The sessions waiting for the free-space measurement running.
        self._measurementWaiters: list[Deferred[int | None]] = []
        self.connections = ConnectionCounter(
            settings.max_connections_per_address, settings.max_connections, ipv6Prefix
        )

    def freeSpace(self) -> Deferred[int | None]:
        """
        The bytes left where this listener's mail goes, measured in a
        thread: the realm's file system and, on submission, the outbound
        queue's (the least of them); C{None} when neither can tell (or the
        measuring failed: the delivery itself is the final check).  The
        sessions that ask while a measurement runs share it: one thread
        round trip serves every C{MAIL} of a busy moment.
        """
        places = [
            place
            for place in (self.realm, self.outbox if self.submission else None)
            if place is not None and IFreeSpace.providedBy(place)
        ]
        if not places:
            return succeed(None)
        answer: Deferred[int | None] = Deferred()
        self._measurementWaiters.append(answer)
        if len(self._measurementWaiters) > 1:
            return answer

        def unknown(reason: Failure) -> None:
            _log.failure("Cannot measure the free space for mail", reason)

        def measured(free: int | None) -> None:
            waiters, self._measurementWaiters = self._measurementWaiters, []
            for waiter in waiters:
                waiter.callback(free)

        running: Deferred[int | None] = self.runInThread(
            lambda: min(place.freeSpace() for place in places)
        )
        running.addErrback(unknown).addCallback(measured)
        return answer

    def buildProtocol(self, addr: IAddress | None) -> SMTPServer:
        server: SMTPServer = self.protocol(self)
        return server
