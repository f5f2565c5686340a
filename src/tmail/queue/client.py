# -*- test-case-name: tests.queue.test_queue_client -*-
"""
Handing one queued message to one remote SMTP server.

L{deliver} connects to one host (an endpoint: the runner picks the MX host
and address), speaks ESMTP and returns a L{DeliveryResult}: for every
recipient a L{RecipientResult} (delivered, deferred or failed, with the
server's reply as a L{Diagnostic}), and whether the host could not be used
at all (L{DeliveryResult.hostFailed}: refused, reset, timed out, C{421},
a greeting or EHLO refused, TLS that the policy needs and did not get), in
which case the runner should try the next MX host before deferring.
L{DeliveryResult.outcomes} turns the results into the queue's
L{Outcome}s with the retry schedule.

The conversation (RFC 5321): greeting; EHLO, or HELO when EHLO gets 5xx;
STARTTLS when offered and the L{TLSPolicy} asks for it, then EHLO again;
AUTH when the settings hold L{Credentials} (RFC 4954); MAIL FROM with
SIZE, BODY, SMTPUTF8 and the DSN parameters (RET, ENVID) only when the
server offers the extension; RCPT TO per recipient (NOTIFY,
ORCPT with DSN); DATA only when a recipient was accepted, the final reply
applying to every accepted recipient; QUIT, or, given a
L{ConnectionCache}, the session is parked there for the next message to
the same server with the same settings, which resets it with RSET and
goes on with the extensions, TLS and login the session already has (a
session that does not answer RSET with C{250} is given up for a new
connection).  A message that needs an
extension the server lacks is not sent: 8-bit or binary content without
8BITMIME/BINARYMIME (and CHUNKING for binary) fails with 5.6.3, an
SMTPUTF8 message without SMTPUTF8 with 5.6.7 (the RFC 6152/6531
downgrades are not attempted).  Binary content goes by BDAT (RFC 3030);
everything else by DATA, written by L{tmail.lineends.DotStuffer}.

Every wait for a reply has its own timeout (L{Timeouts}, RFC 5321
4.5.3.2); a timeout aborts the connection.  Cancelling the Deferred
L{deliver} returns aborts the connection too, and records nothing: the
queue is durable, so an attempt cut short is simply made again later.

TLS (L{TLSPolicy}): opportunistic by default, unverified unless asked
(RFC 7435); a failed handshake is retried once in clear on a new
connection when the policy allows.  A policy holding TLSA records
(L{TLSPolicy.tlsa}, which the runner finds for DANE, see
L{tmail.queue.dane}) requires TLS and authenticates the server by them
instead of by CAs (L{DANEClientCreator}); a mismatch is a TLS failure
of the host (4.7.5), never retried in clear.  Mail marked REQUIRETLS (RFC 8689)
goes only over verified TLS to a server offering REQUIRETLS, never in
clear; without it the host fails (4.7.10, 4.7.5) or, when the server
lacks REQUIRETLS, the recipients fail with 5.7.30.  An endpoint that is
TLS from the first octet (implicit TLS, RFC 8314, as
C{wrapClientTLS} makes it) is told with C{implicitTLS}: the attempt counts
as TLS and STARTTLS is not used.

Authentication (a smarthost's, L{ClientSettings.credentials}): after TLS
and EHLO, the server must offer AUTH with PLAIN (RFC 4616, sent with the
initial response) or LOGIN; credentials never go over a connection
without TLS (4.7.11, nothing sent).  Whatever keeps the login from
succeeding (no AUTH, no usable mechanism, C{535} wrong credentials,
C{454}) is a host failure, temporary for the recipients: it is the
operator's to fix, as Postfix defers on SASL failures.

A runner sends an entry with::

    envelope = envelopeFor(entry, entry.dueRecipients(now))
    with store.openMessage(entry.id) as message:
        result = await deliver(endpoint, mxName, envelope, message, settings)
    # on result.hostFailed: deliver again to result.retryElsewhere() at
    # the next MX host (message.seek(0)), then, for the last results:
    store.record(entry.id, result.outcomes(schedule, entry, now), now)

The conversation itself is L{tmail.queue.conversation}'s, on the wire
session of L{tmail.queue.clientsession}; the settings (L{ClientSettings},
L{TLSPolicy}, L{Timeouts}) are L{tmail.queue.clientsettings}'s and the
results L{tmail.queue.results}'s.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Sequence
from typing import BinaryIO

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint

from tmail.queue.clientsettings import ClientSettings, TLSMode, TLSPolicy
from tmail.queue.connections import ConnectionCache
from tmail.queue.conversation import Conversation, HostFailure
from tmail.queue.entry import Envelope, QueueEntry, Recipient
from tmail.queue.results import DeliveryResult

__all__ = ["deliver", "envelopeFor"]


def envelopeFor(entry: QueueEntry, recipients: Sequence[Recipient]) -> Envelope:
    """The envelope to send C{entry} to C{recipients} (its due ones) with."""
    return Envelope(entry.sender, tuple(recipients), entry.body, entry.utf8, entry.ret, entry.envid)


def deliver(
    endpoint: IStreamClientEndpoint,
    remoteName: str,
    envelope: Envelope,
    message: BinaryIO,
    settings: ClientSettings,
    requireTLS: bool = False,
    clock: IReactorTime | None = None,
    implicitTLS: bool = False,
    cache: ConnectionCache | None = None,
    destination: tuple[str, int] | None = None,
) -> defer.Deferred[DeliveryResult]:
    """
    Send C{message} (a file positioned at its start, CRLF line ends) to
    C{envelope}'s recipients through the server at C{endpoint}.

    @param remoteName: the host's name: checked against its certificate
        when verifying, and reported as the Remote-MTA.
    @param requireTLS: the message is marked REQUIRETLS (RFC 8689): it
        goes only over verified TLS to a server that offers REQUIRETLS.
    @param implicitTLS: C{endpoint} speaks TLS from the start (a
        C{wrapClientTLS} endpoint): no STARTTLS, and the attempt is over TLS.
    @param cache: where sessions are kept between messages: a session
        parked there for the same C{destination} and settings is used
        first, and the session is parked there after the transaction.
    @param destination: the C{(address, port)} C{endpoint} connects to;
        without it C{cache} is not used.
    @return: a Deferred firing with the L{DeliveryResult}; it does not
        fail, unless cancelled (then the connection is dropped at once).
    """
    if clock is None:
        from twisted.internet import reactor

        clock = reactor
    assert clock is not None
    timer: IReactorTime = clock
    if requireTLS:
        # TLSA records authenticate the server as well as CAs do (RFC 8689 4.2.1).
        policy = TLSPolicy(
            TLSMode.REQUIRED, True, False, settings.tls.trustRoot, tlsa=settings.tls.tlsa
        )
        settings = dataclasses.replace(settings, tls=policy)

    def keyFor(useTLS: bool) -> Hashable | None:
        if cache is None or destination is None:
            return None
        return _sessionKey(destination, remoteName, settings, implicitTLS, useTLS)

    async def attempt() -> DeliveryResult:
        start = message.tell()
        tryTLS = settings.tls.mode is not TLSMode.NONE
        first = Conversation(
            endpoint,
            remoteName,
            envelope,
            message,
            settings,
            requireTLS,
            timer,
            tryTLS,
            implicitTLS,
            cache,
            keyFor(tryTLS),
        )
        try:
            hostFailed = await first.run()
            return DeliveryResult(first.results, hostFailed, first.tls)
        except HostFailure as e:
            tlsFailure = e.diagnostic
        policy = settings.tls
        if (
            policy.mode is TLSMode.OPPORTUNISTIC
            and policy.clearOnFailure
            and not requireTLS
            and not implicitTLS
            and tlsFailure.status == "4.7.5"
        ):
            message.seek(start)
            clear = Conversation(
                endpoint,
                remoteName,
                envelope,
                message,
                settings,
                False,
                timer,
                False,
                cache=cache,
                key=keyFor(False),
            )
            hostFailed = await clear.run()
            return DeliveryResult(clear.results, hostFailed, False)
        return DeliveryResult(first.results, True, False)

    return defer.Deferred.fromCoroutine(attempt())


class _Same:
    """Compares equal only to itself, whatever it holds: a key part for unhashable objects."""

    __slots__ = ("held",)

    def __init__(self, held: object) -> None:
        self.held = held

    def __hash__(self) -> int:
        return id(self.held)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Same) and other.held is self.held


def _sessionKey(
    destination: tuple[str, int],
    remoteName: str,
    settings: ClientSettings,
    implicitTLS: bool,
    useTLS: bool,
) -> Hashable:
    """
    What a parked session must have been set up with to be used again:
    the same server, name (the certificate was checked against it), EHLO
    name, TLS policy (TLSA records included) and credentials.
    """
    policy = settings.tls
    return (
        destination,
        remoteName.lower(),
        implicitTLS,
        useTLS,
        settings.heloName,
        policy.mode,
        policy.verify,
        policy.clearOnFailure,
        _Same(policy.trustRoot),
        policy.tlsa,
        settings.credentials,
    )
