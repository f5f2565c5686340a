# -*- test-case-name: tests.queue.test_queue_tls_policy -*-
"""
How the queue runner sends mail on (L{RelaySettings}): the C{[relay]}
settings made into what the runner uses (TLS policies per Postfix security
level, the smarthost with its credentials and CAs read, the retry
schedule, the connection limits and reuse), and the MX resolver they call
for.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from twisted.logger import Logger

from tmail.config.remotes import parseNameserver, parseSmarthost
from tmail.config.schema import Settings
from tmail.queue.clientsettings import ClientSettings, Timeouts, TLSMode, TLSPolicy
from tmail.queue.connections import REUSE_LIMIT, REUSE_TIME
from tmail.queue.dane import DANELevel
from tmail.queue.mx import DEFAULT_TIMEOUTS, MXResolver, NoRoute, domainToAscii
from tmail.queue.schedule import RetrySchedule
from tmail.queue.smarthost import Smarthost, exposedToOthers, loadTrustRoot, readCredentials
from tmail.queue.store import RESCAN_INTERVAL, WAKEUP_POLL
from tmail.tls import TrustRoot

__all__ = ["STOP_GRACE", "RelaySettings", "tlsLevel"]

#: Seconds the attempts under way get to finish when the runner stops.
STOP_GRACE = 5.0

_log = Logger()


@dataclass(frozen=True, slots=True)
class RelaySettings:
    """
    How the runner sends mail on.

    @ivar heloName: this server's host name: said in EHLO, and the
        Reporting-MTA of its DSNs.
    @ivar nameservers: the name servers to ask (C{"127.0.0.1:5353"}); the
        system's (C{/etc/resolv.conf}) when empty.
    @ivar port: the port of the receiving servers (25; tests use another).
    @ivar dnsTimeouts: seconds each try of a DNS query waits.
    @ivar timeouts: the SMTP client's timeouts.
    @ivar tls: the STARTTLS policy.
    @ivar tlsPolicies: per destination domain (ASCII, lower case), the
        STARTTLS policy to use instead of C{tls} (see L{tlsLevel}).  With
        DANE in either, L{resolver} asks with the AD bit (L{usesDANE}).
    @ivar maxConnections: how many domains are attempted at once in total.
    @ivar maxPerDomain: how many of them go to the same domain.
    @ivar schedule: when to retry, give up, and warn of delays.
    @ivar rescanInterval: look at the queue at least this often (seconds).
    @ivar wakeupPoll: look for an operator's request this often (seconds).
    @ivar smarthost: where all mail goes instead of the MX hosts, when
        given; C{port} and C{tls} then do not apply.
    @ivar stopGrace: seconds the attempts under way get to finish when the
        runner stops, before they are cancelled.
    @ivar reuseTime: seconds an SMTP connection is kept open, idle, for
        the next message to the same server (Postfix's
        smtp_connection_cache_time_limit); 0 closes each after its message.
    @ivar reuseLimit: messages one connection carries at most (Postfix's
        smtp_connection_reuse_count_limit).
    """

    heloName: str
    nameservers: tuple[str, ...] = ()
    port: int = 25
    dnsTimeouts: tuple[float, ...] = DEFAULT_TIMEOUTS
    timeouts: Timeouts = field(default_factory=Timeouts)
    tls: TLSPolicy = field(default_factory=TLSPolicy)
    tlsPolicies: Mapping[str, TLSPolicy] = field(default_factory=dict)
    maxConnections: int = 20
    maxPerDomain: int = 4
    schedule: RetrySchedule = field(default_factory=RetrySchedule)
    rescanInterval: float = RESCAN_INTERVAL
    wakeupPoll: float = WAKEUP_POLL
    smarthost: Smarthost | None = None
    stopGrace: float = STOP_GRACE
    reuseTime: float = REUSE_TIME
    reuseLimit: int = REUSE_LIMIT

    def __post_init__(self) -> None:
        if self.maxConnections < 1 or self.maxPerDomain < 1:
            raise ValueError("maxConnections and maxPerDomain must be at least 1")
        if self.rescanInterval <= 0 or self.wakeupPoll <= 0:
            raise ValueError("rescanInterval and wakeupPoll must be positive")
        if self.stopGrace < 0:
            raise ValueError("stopGrace must not be negative")
        if self.reuseTime < 0 or self.reuseLimit < 1:
            raise ValueError("reuseTime must not be negative, reuseLimit must be at least 1")
        for server in self.nameservers:
            parseNameserver(server)

    @classmethod
    def fromConfig(cls, settings: Settings) -> RelaySettings:
        """
        The runner's settings from a configuration's C{hostname} and
        C{[relay]}, reading the smarthost's credentials and CA files (which
        the loader checked); C{OSError} or C{ValueError} if they changed
        since.  A credentials file others may read is logged as a warning.
        """
        relay = settings.relay
        smarthost = None
        if relay.smarthost:
            host, port, implicitTLS = parseSmarthost(relay.smarthost)
            credentials = None
            if relay.smarthost_credentials is not None:
                credentials = readCredentials(relay.smarthost_credentials)
                if exposedToOthers(relay.smarthost_credentials):
                    _log.warn(
                        "relay.smarthost_credentials: {path} may be read by others than"
                        " its owner (chmod 600 it)",
                        path=str(relay.smarthost_credentials),
                    )
            trustRoot = None
            if relay.smarthost_ca is not None:
                trustRoot = loadTrustRoot(relay.smarthost_ca)
            smarthost = Smarthost(
                host, port, implicitTLS, credentials, relay.smarthost_tls_verify, trustRoot
            )
        if relay.tls in ("dane", "dane-only"):
            tls = tlsLevel(relay.tls)
        else:
            tls = TLSPolicy(TLSMode(relay.tls), verify=relay.tls_verify)
        return cls(
            heloName=settings.hostname,
            nameservers=((relay.resolver,) if relay.resolver else ()) + relay.nameservers,
            port=relay.port,
            timeouts=Timeouts(connect=relay.connect_timeout),
            tls=tls,
            tlsPolicies={domain: tlsLevel(level) for domain, level in relay.tls_policy},
            maxConnections=relay.max_connections,
            maxPerDomain=relay.max_per_domain,
            schedule=RetrySchedule(
                firstRetry=relay.first_retry,
                maxBackoff=relay.max_backoff,
                lifetime=relay.lifetime,
                delayWarning=relay.delay_warning,
            ),
            smarthost=smarthost,
            reuseTime=relay.connection_reuse_time,
            reuseLimit=relay.connection_reuse_limit,
        )

    def clientSettings(self, domain: str | None = None) -> ClientSettings:
        """
        What every delivery attempt shares (to the smarthost, when there is
        one), with the TLS policy for C{domain}'s MX hosts.
        """
        smarthost = self.smarthost
        if smarthost is None:
            tls = self.tls
            if domain is not None and self.tlsPolicies:
                with contextlib.suppress(NoRoute):
                    tls = self.tlsPolicies.get(domainToAscii(domain), tls)
            return ClientSettings(self.heloName, tls, self.timeouts)
        policy = TLSPolicy(
            TLSMode.REQUIRED,
            verify=smarthost.verify,
            clearOnFailure=False,
            trustRoot=smarthost.trustRoot,
        )
        return ClientSettings(
            self.heloName, policy, self.timeouts, credentials=smarthost.credentials
        )

    @property
    def usesDANE(self) -> bool:
        """Whether any destination looks for TLSA records (C{dane}, C{dane-only})."""
        if self.smarthost is not None:
            return False
        return any(p.dane is not None for p in (self.tls, *self.tlsPolicies.values()))

    def resolver(self) -> MXResolver:
        """
        An MX resolver asking the configured name servers; with DANE, one
        that reads their AD bit (they must be a local validating resolver).
        """
        return MXResolver.fromSettings(
            [parseNameserver(s) for s in self.nameservers],
            port=self.port,
            timeouts=self.dnsTimeouts,
            localNames=[self.heloName],
            dnssec=self.usesDANE,
        )


def tlsLevel(level: str, trustRoot: TrustRoot | None = None) -> TLSPolicy:
    """
    The STARTTLS policy a Postfix TLS security level names: C{"none"},
    C{"may"} (opportunistic), C{"encrypt"} (required), C{"verify"}
    (required, and the certificate must chain to C{trustRoot}, the
    platform's CAs by default, and name the MX host), C{"dane"} (TLSA
    records authenticate the MX hosts that have them, C{"may"} for the
    others) or C{"dane-only"} (no delivery without them); see
    L{tmail.queue.dane}.
    """
    if level == "none":
        return TLSPolicy(TLSMode.NONE)
    if level == "may":
        return TLSPolicy(TLSMode.OPPORTUNISTIC)
    if level == "encrypt":
        return TLSPolicy(TLSMode.REQUIRED, clearOnFailure=False)
    if level == "verify":
        return TLSPolicy(TLSMode.REQUIRED, True, False, trustRoot)
    if level == "dane":
        return TLSPolicy(TLSMode.OPPORTUNISTIC, dane=DANELevel.DANE)
    if level == "dane-only":
        return TLSPolicy(TLSMode.REQUIRED, clearOnFailure=False, dane=DANELevel.DANE_ONLY)
    raise ValueError(f"not a TLS level: {level!r}")
