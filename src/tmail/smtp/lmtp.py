# -*- test-case-name: tests.smtp.test_lmtp -*-
"""
LMTP (RFC 2033): how the mail transfer agent in front of tmail hands it
the mail of hosted users, as Postfix's C{lmtp:} transport does to Dovecot
(C{virtual_transport = lmtp:unix:/run/tmail/lmtp}).

The session is the SMTP server's (L{SMTPServer}: the same line handling and
DATA checks, two-phase delivery that answers only after the copies are
fsync'd, quotas), with what RFC 2033 changes:

  - C{LHLO} instead of C{HELO}/C{EHLO}, which are not LMTP commands
    (RFC 2033 4.1) and get C{500 5.5.1}.  The SMTP server's extensions
    carry over: C{PIPELINING} and C{ENHANCEDSTATUSCODES}, which LMTP
    requires, C{SIZE}, C{8BITMIME}, C{SMTPUTF8}, C{CHUNKING} with
    C{BINARYMIME}, C{DSN}.
  - After the end of DATA (or the last BDAT chunk), one reply per accepted
    recipient, in RCPT order (RFC 2033 4.2), each naming its recipient.  So a full mailbox refuses
    only its own recipient and the MTA retries or bounces just that one;
    SMTP, with one reply for the whole message, must tell the client to
    try again for everyone.  A recipient that resolves to several users (an
    alias) gets the first refusal among its users' outcomes, else success.
    When DATA fails as a whole (too big, bare CR or LF, an over-long line,
    a full disk) every recipient gets that same reply.
  - Recipients must be hosted here: LMTP is the last hop and never relays.
    An unknown user is C{550 5.1.1}; a domain that is not hosted is
    C{550 5.1.2} (a bad destination address), not SMTP's "relaying denied".
  - No AUTH: the client is the MTA, trusted by where it connects from (the
    unix socket's permissions, or a loopback address).  STARTTLS is offered
    when C{[tls]} is configured.
  - Only protocol errors (C{5.5.x}) count towards C{max_errors}: a refused
    recipient or an undeliverable message is the MTA doing its job, and a
    delivery to many full mailboxes must not be cut off between replies.
  - The C{Received} header says C{with LMTP} (RFC 3848; C{LMTPS} after
    STARTTLS, C{UTF8LMTP} for SMTPUTF8).
  - The MX's greeting pause and its early-talker and pipelining checks are
    off by default: the MTA pipelines, as LMTP lets it.  The deadlines and
    the junk command limit apply as on the MX.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence

from twisted.internet.interfaces import IReactorTime
from twisted.internet.ssl import CertificateOptions

from tmail.auth.throttle import AuthThrottle
from tmail.clientaddress import IPV6_PREFIX_LENGTH
from tmail.config.schema import AuthSettings, LMTPSettings, OverQuotaPolicy
from tmail.delivery.destination import Destination
from tmail.delivery.local import LocalDelivery
from tmail.delivery.trace import Trace
from tmail.errors import NotHostedDomain, RecipientError
from tmail.interfaces import Destinations, IMailRealm
from tmail.queue.outbox import Outbox
from tmail.smtp.commands import Reply
from tmail.smtp.factory import SMTPFactory
from tmail.smtp.policy import ISMTPPolicy
from tmail.smtp.replies import INTERNAL_ERROR
from tmail.smtp.server import SMTPServer
from tmail.smtp.transaction import AcceptedRecipient

__all__ = ["HostedOnlyDelivery", "LMTPFactory", "LMTPServer", "lmtpProtocolName"]

_SMTP_NAME = re.compile(r"\A(UTF8)?E?SMTP")


def lmtpProtocolName(smtpName: str) -> str:
    """
    The RFC 3848 (and RFC 6531) C{with} keyword of an LMTP session, from
    the one the SMTP server chose for the same state: C{ESMTP} is C{LMTP},
    C{ESMTPS} is C{LMTPS}, C{UTF8SMTPS} is C{UTF8LMTPS}.
    """
    return _SMTP_NAME.sub(r"\1LMTP", smtpName, count=1)


class HostedOnlyDelivery(LocalDelivery):
    """
    Local delivery that treats a domain not hosted here as a bad address.
    The SMTP server answers a plain L{RecipientError} with C{550 5.1.2}.
    """

    def destinations(self, address: str) -> Destinations:
        try:
            return super().destinations(address)
        except NotHostedDomain:
            raise RecipientError("Recipient domain is not hosted here") from None


class LMTPServer(SMTPServer):
    """One LMTP session; see the module docstring for what differs from SMTP."""

    def greeting(self) -> bytes:
        return self.host + b" LMTP tmail"

    def lookupMethod(self, command: bytes) -> Callable[[bytes], None] | None:
        if command.upper() == b"LHLO":
            return self.do_LHLO
        return super().lookupMethod(command)

    def do_LHLO(self, rest: bytes) -> None:
        if not rest.strip():
            self.reply(Reply(501, "5.5.4", "Syntax: LHLO hostname"))
            return
        super().do_EHLO(rest)

    def do_HELO(self, rest: bytes) -> None:
        self.reply(Reply(500, "5.5.1", "Error: this is an LMTP server; send LHLO"))

    do_EHLO = do_HELO

    def do_MAIL(self, rest: bytes) -> None:
        if self._heloName is None:
            self.reply(Reply(503, "5.5.1", "Error: send LHLO first"))
            return
        super().do_MAIL(rest)

    def reply(self, reply: Reply) -> None:
        """
        Send C{reply}; only protocol errors (C{5.5.x}) count towards
        C{max_errors}, not refused recipients or messages.
        """
        if reply.code >= 500 and not reply.status.startswith("5.5."):
            self.sendCode(reply.code, reply.line())
            return
        super().reply(reply)

    def answerData(
        self,
        recipients: Sequence[AcceptedRecipient],
        outcome: Reply | Mapping[Destination, Reply],
    ) -> None:
        """
        One reply per recipient, in RCPT order, naming it: C{outcome} itself
        when it is one reply for the whole message, else the first refusal
        among the recipient's destinations, else the first one's success.
        """
        for recipient in recipients:
            reply = _outcomeFor(recipient.destinations, outcome)
            answer = Reply(reply.code, reply.status, f"<{recipient.address}> {reply.text}")
            self.sendCode(answer.code, answer.line())

    def _trace(self) -> Trace:
        trace = super()._trace()
        return dataclasses.replace(trace, protocol=lmtpProtocolName(trace.protocol))


def _outcomeFor(
    destinations: Sequence[Destination], outcome: Reply | Mapping[Destination, Reply]
) -> Reply:
    """What one recipient, led to C{destinations}, is told at the end of DATA."""
    if isinstance(outcome, Reply):
        return outcome
    replies = [outcome[d] for d in destinations if d in outcome]
    for reply in replies:
        if reply.code >= 400:
            return reply
    # Every accepted recipient has at least one user with an outcome; a
    # recipient without one was not delivered, so it must not hear 250.
    return replies[0] if replies else INTERNAL_ERROR


class LMTPFactory(SMTPFactory):
    """
    Builds L{LMTPServer} sessions for the C{[lmtp]} listeners: the SMTP
    factory without AUTH, delivering only to hosted recipients, with the
    SMTP policies C{[lmtp]} names (a refusal at the end of DATA is every
    recipient's reply).

    @param throttle: never consulted, as there is no AUTH; taken so that a
        service can hand every factory the same one.
    """

    protocol = LMTPServer

    def __init__(
        self,
        realm: IMailRealm,
        settings: LMTPSettings,
        *,
        hostname: str,
        tlsContextFactory: CertificateOptions | None = None,
        overQuota: OverQuotaPolicy = "reject",
        throttle: AuthThrottle | None = None,
        policies: Sequence[ISMTPPolicy] = (),
        outbox: Outbox | None = None,
        clock: IReactorTime | None = None,
        ipv6Prefix: int = IPV6_PREFIX_LENGTH,
    ) -> None:
        if throttle is None:
            from twisted.internet import reactor

            throttle = AuthThrottle(AuthSettings(), reactor)
        super().__init__(
            realm,
            settings,
            hostname=hostname,
            submission=False,
            portal=None,
            tlsContextFactory=tlsContextFactory,
            throttle=throttle,
            overQuota=overQuota,
            policies=policies,
            outbox=outbox,
            clock=clock,
            ipv6Prefix=ipv6Prefix,
        )
        self.delivery = HostedOnlyDelivery(realm)
