# -*- test-case-name: tests.queue.test_queue_tls_policy -*-
"""
What the SMTP client's delivery attempts are set up with: the TLS policy
(L{TLSMode}, L{TLSPolicy}, with the TLS client options it makes for a
host), the reply timeouts (L{Timeouts}), and the rest of
L{ClientSettings}.

Apart from the client (L{tmail.queue.client}) so that the relay settings
and the DANE decisions (L{tmail.queue.dane}) build and change policies
without the protocol code.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.internet.ssl import CertificateOptions, optionsForClientTLS

from tmail.config.remotes import Credentials
from tmail.queue.danetls import DANEClientCreator
from tmail.queue.tlsa import TLSARecord
from tmail.tls import TrustRoot

if TYPE_CHECKING:
    from tmail.queue.dane import DANELevel

__all__ = ["CHUNK_SIZE", "ClientSettings", "TLSMode", "TLSPolicy", "Timeouts"]

#: How much of the message is read from its file at a time.
CHUNK_SIZE = 64 * 1024


class TLSMode(enum.StrEnum):
    """Whether to use STARTTLS."""

    #: Never (a test, or a host known to break it).
    NONE = "none"
    #: When the server offers it (RFC 3207); without it the mail goes in clear.
    OPPORTUNISTIC = "opportunistic"
    #: Always: a host without working STARTTLS is a temporary failure.
    REQUIRED = "required"


@dataclass(frozen=True, slots=True)
class TLSPolicy:
    """
    How to protect the connection.

    @ivar mode: see L{TLSMode}.
    @ivar verify: check the certificate chain and that it names the host
        (C{service_identity}); off by default for opportunistic TLS, which
        is better than clear text even unverified (RFC 7435).
    @ivar clearOnFailure: in opportunistic mode, when the TLS handshake
        fails, connect again and send in clear (never for REQUIRETLS mail).
    @ivar trustRoot: the CAs to trust when verifying (the platform's when
        C{None}).
    @ivar dane: look for the MX hosts' TLSA records first (the runner does,
        L{tmail.queue.dane.hostPolicy}); this policy applies where DANE
        does not.
    @ivar tlsa: the host's usable TLSA records: the certificate chain must
        match them (not C{verify}'s CAs and name check).
    """

    mode: TLSMode = TLSMode.OPPORTUNISTIC
    verify: bool = False
    clearOnFailure: bool = True
    trustRoot: TrustRoot | None = None
    dane: DANELevel | None = None
    tlsa: tuple[TLSARecord, ...] = ()

    def contextFor(self, hostname: str) -> IOpenSSLClientConnectionCreator | CertificateOptions:
        """The TLS client options for C{hostname}."""
        if self.tlsa:
            return DANEClientCreator(hostname, self.tlsa)
        if self.verify:
            return optionsForClientTLS(hostname, trustRoot=self.trustRoot)
        return CertificateOptions(verify=False)


@dataclass(frozen=True, slots=True)
class Timeouts:
    """
    Seconds to wait for each reply (RFC 5321 4.5.3.2's minimums by default).

    @ivar connect: for the TCP connection to be made.
    @ivar initial: the greeting, and replies to EHLO/HELO, STARTTLS, QUIT.
    @ivar dataBlock: for each block of the message to be taken by the network.
    @ivar rset: for the reply to the RSET that readies a reused session
        (Postfix's smtp_rset_timeout): a session that is slow to answer is
        given up for a new connection.
    """

    connect: float = 30.0
    initial: float = 300.0
    mail: float = 300.0
    rcpt: float = 300.0
    dataInit: float = 120.0
    dataBlock: float = 180.0
    dataEnd: float = 600.0
    rset: float = 20.0


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """
    What every delivery attempt shares.

    @ivar heloName: our host name, said in EHLO/HELO.
    @ivar chunkSize: how many octets are read from the message at a time
        (and the size of BDAT chunks).
    @ivar credentials: log in with these (AUTH) before sending; only over TLS.
    """

    heloName: str
    tls: TLSPolicy = field(default_factory=TLSPolicy)
    timeouts: Timeouts = field(default_factory=Timeouts)
    chunkSize: int = CHUNK_SIZE
    credentials: Credentials | None = None
