# -*- test-case-name: tests.queue.test_queue_dane -*-
"""
Which TLS an MX host gets under DANE (RFC 7672 2.2), as Postfix's
C{smtp_tls_security_level = dane} and C{dane-only} decide it with
C{smtp_dns_support_level = dnssec}.

For a destination whose L{TLSPolicy.dane} is set, L{hostPolicy} decides
per MX host, from what a validating resolver vouched for (the AD bit, see
L{tmail.queue.dnssec}):

  - the MX records (or, for a domain without MX, their absence) or the
    host's address records are not validated, or the host has no TLSA
    records, or they are not validated: DANE does not apply; C{dane}
    falls back to opportunistic TLS (C{may}), C{dane-only} does not use
    the host (temporary failure, 4.7.5).  The TLSA records of hosts named
    by an insecure MX RRset are not used (RFC 7672 2.2.1 allows it; this
    keeps to Postfix's original rule);
  - the TLSA lookup fails (SERVFAIL, which is also what a validating
    resolver answers for bogus data, or no answer): the host is not used
    now, whatever the level (RFC 7672 2.2.1): never a downgrade;
  - validated TLSA records, some usable: TLS is required and the server's
    chain must match them (L{tmail.queue.tlsa.verifyChain}); a mismatch,
    a failed handshake or no STARTTLS makes the host fail temporarily, so
    the next MX host is tried and the mail is deferred, never sent in clear;
  - validated TLSA records, none usable: TLS is required but not
    authenticated (C{encrypt}, RFC 7672 2.2); C{dane-only} does not use
    the host.

The TLSA base domain is the MX host name; tmail does not follow CNAMEs
from MX hosts (RFC 5321 5.1 forbids them), and for a domain without MX
the domain's own name is used even when its address records come through
CNAMEs (RFC 7672 2.2.2 would try the expanded name first).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from tmail.queue.clientsettings import TLSMode, TLSPolicy
from tmail.queue.entry import Diagnostic
from tmail.queue.mx import MailHost, MXResolver, Route, describeFailure
from tmail.queue.tlsa import strongest

__all__ = ["DANELevel", "HostTLS", "hostPolicy"]


class DANELevel(enum.StrEnum):
    """How much DANE a destination must have."""

    #: Opportunistic DANE: TLSA records when published, else C{may}.
    DANE = "dane"
    #: Mandatory DANE: no usable, validated TLSA records, no delivery.
    DANE_ONLY = "dane-only"


@dataclass(frozen=True, slots=True)
class HostTLS:
    """
    What TLS one MX host gets.

    @ivar policy: the policy to deliver with; C{None} when the host is not
        to be used now.
    @ivar level: the Postfix level that applies (C{"dane"}, C{"encrypt"},
        C{"may"}), or C{"deferred"} when the host is not used.
    @ivar reason: why, for the log.
    @ivar diagnostic: when the host is not used, the recipients' temporary
        failure.
    """

    policy: TLSPolicy | None
    level: str
    reason: str
    diagnostic: Diagnostic | None = None


def _deferred(host: MailHost, reason: str, text: str | None = None) -> HostTLS:
    diagnostic = Diagnostic("4.7.5", text or reason, None, host.name)
    return HostTLS(None, "deferred", reason, diagnostic)


async def hostPolicy(
    policy: TLSPolicy, route: Route, host: MailHost, resolver: MXResolver
) -> HostTLS:
    """
    The TLS for C{host} of C{route} under C{policy} (whose C{dane} is set),
    looking up its TLSA records with C{resolver}.
    """
    mandatory = policy.dane is DANELevel.DANE_ONLY

    def withoutDANE(reason: str) -> HostTLS:
        if mandatory:
            return _deferred(host, reason, f"dane-only: {reason}")
        return HostTLS(replace(policy, dane=None), "may", reason)

    if not route.secure:
        return withoutDANE(f"the MX lookup of {route.domain} is not DNSSEC-validated")
    if not host.secure:
        return withoutDANE(f"the address records of {host.name} are not DNSSEC-validated")
    name = f"_{route.port}._tcp.{host.name}"
    try:
        records, secure = await resolver.tlsa(host.name, route.port)
    except Exception as e:
        return _deferred(host, f"TLSA lookup for {name} failed: {describeFailure(e)}")
    if not records:
        return withoutDANE(f"{name} has no TLSA records")
    if not secure:
        return withoutDANE(f"the TLSA records of {name} are not DNSSEC-validated")
    usable = strongest(records)
    if usable:
        required = TLSPolicy(TLSMode.REQUIRED, clearOnFailure=False, tlsa=usable)
        count = f"{len(usable)} usable TLSA record{'s' if len(usable) > 1 else ''}"
        return HostTLS(required, "dane", f"{count} at {name}")
    if mandatory:
        reason = f"no usable TLSA record at {name}"
        return _deferred(host, reason, f"dane-only: {reason}")
    unauthenticated = TLSPolicy(TLSMode.REQUIRED, clearOnFailure=False)
    return HostTLS(unauthenticated, "encrypt", f"no usable TLSA record at {name}")
