# -*- test-case-name: tests.smtp.test_smtp_headers -*-
"""
The trace header fields tmail prepends to every message it stores or
queues (RFC 5321 4.4): C{Return-Path}, C{Delivered-To} and C{Received}.

They belong to delivery, not to a protocol: the SMTP and LMTP servers
and the outbound queue's local transport all write them.  What a client
sent (its HELO argument) is checked by the protocol before it gets here
(L{tmail.smtp.headers.sanitiseHelo}), so a client cannot start a header
line of its own (C{EHLO x\\nBcc: ...}).
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime

__all__ = ["Trace", "addressLiteral", "protocolName", "sharedTraceHeaders", "traceHeaders"]


def addressLiteral(address: str) -> str:
    """C{[192.0.2.1]} or C{[IPv6:2001:db8::1]} (RFC 5321 4.1.3); anything else in brackets."""
    try:
        version = ipaddress.ip_address(address).version
    except ValueError:
        return f"[{address}]"
    return f"[IPv6:{address}]" if version == 6 else f"[{address}]"


def protocolName(*, esmtp: bool, tls: bool, authenticated: bool, utf8: bool = False) -> str:
    """
    The C{with} keyword of a C{Received} header (RFC 3848; C{UTF8SMTP...}
    for an SMTPUTF8 transaction, RFC 6531 4.3).
    """
    if not esmtp:
        return "SMTP"
    base = "UTF8SMTP" if utf8 else "ESMTP"
    return base + ("S" if tls else "") + ("A" if authenticated else "")


@dataclass(frozen=True, slots=True)
class Trace:
    """
    What one transaction's C{Received} headers say.

    @ivar helo: the sanitised HELO argument (L{tmail.smtp.headers.sanitiseHelo}).
    @ivar clientAddress: the client's IP address (C{"local"} on a unix socket).
    @ivar clientName: its verified host name, or its address when unknown.
    @ivar hostname: this server's name.
    @ivar protocol: see L{protocolName}.
    @ivar queueID: the id the C{250} reply names.
    @ivar date: when the message was received (timezone-aware).
    """

    helo: str
    clientAddress: str
    clientName: str
    hostname: str
    protocol: str
    queueID: str
    date: datetime

    def received(self, recipient: str | None) -> bytes:
        """
        The C{Received} header, folded, ending in CRLF; with a C{for}
        clause when the copy is for one recipient (Postfix leaves it out
        for a message stored for several).  UTF-8 appears only in an
        SMTPUTF8 transaction's addresses, where RFC 6532 allows it.  A
        client without an IP address (on a unix socket) gets no TCP-info
        (RFC 5321 4.4): C{from} names only its HELO.
        """
        return _received(self, recipient)


@functools.lru_cache(maxsize=256)
def _received(trace: Trace, recipient: str | None) -> bytes:
    """L{Trace.received}, made once per copy though asked for twice (its text and its length)."""
    target = f"for <{recipient}>; " if recipient is not None else ""
    return (
        f"Received: from {_fromClause(trace.helo, trace.clientName, trace.clientAddress)}\r\n"
        f"\tby {trace.hostname} (tmail) with {trace.protocol} id {trace.queueID}\r\n"
        f"\t{target}{format_datetime(trace.date)}\r\n"
    ).encode("utf-8", "replace")


@functools.lru_cache(maxsize=1024)
def _fromClause(helo: str, clientName: str, clientAddress: str) -> str:
    """What follows C{from}: the same for every message of a session."""
    try:
        ipaddress.ip_address(clientAddress)
    except ValueError:
        return helo
    return f"{helo} ({clientName} {addressLiteral(clientAddress)})"


def traceHeaders(
    trace: Trace, returnPath: str, user: str, recipient: str, extra: bytes = b""
) -> bytes:
    """
    C{Return-Path}, C{Delivered-To} and C{Received} for one local user.

    @param returnPath: the envelope sender (empty for a bounce).
    @param user: the local user the copy is stored for.
    @param recipient: the C{RCPT TO} address that led to C{user}.
    @param extra: header fields (CRLF-terminated, already checked) to put
        above C{Received}: what SMTP policies added.
    """
    head = f"Return-Path: <{returnPath}>\r\nDelivered-To: {user}\r\n"
    return head.encode("utf-8", "replace") + extra + trace.received(recipient)


def sharedTraceHeaders(trace: Trace, returnPath: str, extra: bytes = b"") -> bytes:
    """
    C{Return-Path} and C{Received} for a copy shared by several local
    users (one file, hard-linked into each mailbox): nothing names one of
    them.

    @param extra: header fields to put above C{Received}, as in
        L{traceHeaders}.
    """
    head = f"Return-Path: <{returnPath}>\r\n".encode("utf-8", "replace")
    return head + extra + trace.received(None)
