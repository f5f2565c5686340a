# -*- test-case-name: tests.smtp.test_smtp_relay -*-
"""
What the SMTP server hands the outbound queue: the copy of a message for
recipients elsewhere (submission to other domains, aliases pointing
outside), and the success notices local delivery owes (DSN
C{NOTIFY=SUCCESS}, RFC 3461 5.2.2).

The queued copy starts with the server's C{Received} field only:
C{Return-Path} and C{Delivered-To} are for final delivery.  It is one more
copy among the local users' (L{tmail.delivery.local.commitAll} publishes it
with them), its destination L{OUTBOUND_QUEUE} among the users', so C{250}
means it is durable in the queue.
"""

from __future__ import annotations

import io
import time
from collections.abc import Sequence

from tmail.delivery.destination import OUTBOUND_QUEUE
from tmail.delivery.envelope import MailFrom, RcptTo
from tmail.delivery.local import MailboxMessage
from tmail.delivery.trace import Trace
from tmail.queue.dsn import buildReport, xtextEncode
from tmail.queue.entry import Envelope, Notice, QueueEntry, Recipient, State
from tmail.queue.local import DELIVERED
from tmail.queue.outbox import Outbox

__all__ = ["HeaderCapture", "beginQueued", "localSuccessReport", "queueEnvelope"]

#: How much of a message's header section a success notice returns.
HEADER_LIMIT = 64 * 1024


def queueEnvelope(mail: MailFrom, forwards: Sequence[tuple[RcptTo, Sequence[str]]]) -> Envelope:
    """
    The envelope of the queued copy: C{forwards} pairs each accepted
    C{RCPT} with the remote addresses it leads to.  An address reached
    through an alias keeps the C{RCPT} address as its C{ORCPT}, so reports
    name what the sender wrote; DSN parameters carry over.
    """
    recipients: dict[str, Recipient] = {}
    for rcpt, targets in forwards:
        for target in targets:
            orcpt = rcpt.orcpt
            if orcpt is None and target != rcpt.address:
                orcpt = "rfc822;" + xtextEncode(rcpt.address)
            recipients.setdefault(target, Recipient(target, rcpt.notify, orcpt))
    return Envelope(
        sender=mail.sender,
        recipients=tuple(recipients.values()),
        body=mail.body,
        utf8=mail.utf8,
        ret=mail.ret,
        envid=mail.envid,
        requireTLS=mail.requireTLS,
    )


def beginQueued(
    outbox: Outbox, envelope: Envelope, trace: Trace, headers: bytes, lateHeaders: bool
) -> MailboxMessage:
    """
    Start the queued copy: C{headers} (fields policies added) and
    C{Received}, above which late fields go.
    """
    return MailboxMessage(
        outbox.begin(envelope),
        headers + trace.received(None),
        OUTBOUND_QUEUE,
        headersAt=len(headers),
        hold=lateHeaders,
    )


class HeaderCapture:
    """
    Keeps the header section of a message as its content streams past (up
    to L{HEADER_LIMIT}), for the success notice that returns it.
    """

    def __init__(self) -> None:
        self._data = bytearray()
        self._done = False

    def __call__(self, data: bytes) -> None:
        if self._done:
            return
        start = max(0, len(self._data) - 3)
        self._data += data
        end = self._data.find(b"\r\n\r\n", start)
        if end >= 0:
            del self._data[end + 4 :]
            self._done = True
        elif len(self._data) >= HEADER_LIMIT:
            del self._data[HEADER_LIMIT:]
            self._done = True

    @property
    def header(self) -> bytes:
        """The header section seen so far."""
        return bytes(self._data)


def wantsSuccess(rcpt: RcptTo) -> bool:
    """Whether C{RCPT} asked for a success notice."""
    return rcpt.notify is not None and "SUCCESS" in rcpt.notify


def localSuccessReport(
    outbox: Outbox,
    mail: MailFrom,
    delivered: Sequence[RcptTo],
    header: bytes,
    size: int,
    queueID: str,
    reportingMta: str,
) -> QueueEntry:
    """
    Queue the notice that C{delivered} (recipients that asked for it) got
    the message in their local mailboxes; blocks on the disk.
    """
    now = time.time()
    recipients = tuple(
        Recipient(r.address, r.notify, r.orcpt, State.DELIVERED, 1, now, now, DELIVERED)
        for r in delivered
    )
    delivery = QueueEntry(
        id=queueID,
        sender=mail.sender,
        arrival=now,
        recipients=recipients,
        size=size,
        body=mail.body,
        utf8=mail.utf8,
        envid=mail.envid,
        requireTLS=mail.requireTLS,
    )
    report = buildReport(
        delivery,
        Notice.SUCCESS,
        recipients,
        io.BytesIO(header),
        reportingMta,
        now,
        delivered=True,
    )
    return outbox.enqueue(report.envelope(), report.data)
