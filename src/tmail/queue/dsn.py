# -*- test-case-name: tests.queue.test_queue_dsn -*-
"""
Delivery status notifications (RFC 3464): the message that tells a sender
that mail failed, is delayed, or was relayed or delivered as
C{NOTIFY=SUCCESS} asked.

A report is a C{multipart/report; report-type=delivery-status} (RFC 6522):
a text for people, a C{message/delivery-status} part (per message:
Reporting-MTA, Original-Envelope-Id, Arrival-Date; per recipient:
Original-Recipient, Final-Recipient, Action, Status, Remote-MTA,
Diagnostic-Code, Last-Attempt-Date, Will-Retry-Until), and the original:
the whole message (C{message/rfc822}) or its header (C{text/rfc822-headers})
as DSN's C{RET} asked.  Without C{RET}, a failure returns the message when
it is no larger than L{RETURN_LIMIT} and other notices return the header.
A C{BINARYMIME} message, which no C{message/rfc822} part may carry, and
C{REQUIRETLS} mail (RFC 8689 4.3: its report is itself C{REQUIRETLS}) are
always returned as their header.

When an address in the report is not ASCII (SMTPUTF8), the report is an
RFC 6533 one: C{message/global-delivery-status} with C{utf-8} address
types, and C{message/global} or C{message/global-headers} for the original;
L{DeliveryReport.utf8} says it must be sent with SMTPUTF8.

The report goes to the envelope sender from the null sender C{<>}, so it
never causes a report itself; there is none for a message whose sender was
null (L{buildReport} refuses), which is what keeps two servers from
bouncing a message back and forth.
"""

from __future__ import annotations

import io
import re
import secrets
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from email.utils import formatdate
from typing import BinaryIO

from tmail.queue.entry import Envelope, Notice, QueueEntry, Recipient

__all__ = ["RETURN_LIMIT", "DeliveryReport", "buildReport"]

#: Without C{RET}, a failed message larger than this returns only its header.
RETURN_LIMIT = 50_000
#: At most this much of a message is read looking for the end of its header.
HEADER_LIMIT = 1024 * 1024
#: Diagnostic texts are cut to this many characters.
TEXT_LIMIT = 500

_XTEXT_HEX = re.compile(r"\+([0-9A-F]{2})")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_MESSAGE_ID = re.compile(rb"<[\x21-\x3b\x3d\x3f-\x7e]{1,250}>\Z")
_EIGHT_BIT = re.compile(rb"[\x80-\xff]")
_STATUS = re.compile(r"[245]\.[0-9]{1,3}\.[0-9]{1,3}\Z")
CRLF = "\r\n"


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """
    A notice, ready to be queued with L{envelope}.

    @ivar data: the whole message, CRLF line ends.
    @ivar recipient: the original envelope sender, to whom it goes.
    @ivar utf8: it holds UTF-8 addresses: it must be sent with SMTPUTF8.
    @ivar body: C{"8BITMIME"} when it holds 8-bit octets, else C{"7BIT"}.
    @ivar requireTLS: it reports on C{REQUIRETLS} mail, so it is sent the
        same way (RFC 8689 4.3).
    """

    data: bytes
    recipient: str
    utf8: bool
    body: str
    requireTLS: bool = False

    def envelope(self) -> Envelope:
        """The envelope to queue it with: from C{<>} to the original sender."""
        return Envelope(
            sender="",
            recipients=(Recipient(self.recipient),),
            body=self.body,
            utf8=self.utf8,
            requireTLS=self.requireTLS,
        )


def xtextEncode(text: str) -> str:
    """C{text} as RFC 3461 xtext (an C{ORCPT} or C{ENVID} value)."""
    return "".join(
        c if "!" <= c <= "~" and c not in "+=" else "".join(f"+{b:02X}" for b in c.encode())
        for c in text
    )


def _xtextDecode(text: str) -> str:
    return _XTEXT_HEX.sub(lambda m: chr(int(m.group(1), 16)), text)


def _printable(text: str, utf8: bool) -> bool:
    return not _CONTROL.search(text) and (utf8 or text.isascii())


def _clean(text: str, utf8: bool, limit: int = TEXT_LIMIT) -> str:
    """One line of C{text} that is safe in a header field."""
    text = _CONTROL.sub(" ", text)
    if not utf8:
        text = text.encode("ascii", "replace").decode("ascii")
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _fold(name: str, value: str) -> str:
    """C{name: value} with CRLF, folded before words that would pass 76 columns."""
    out = f"{name}:"
    width = len(out)
    for word in value.split(" "):
        if width + 1 + len(word) > 76 and width > len(name) + 1:
            out += CRLF + " " + word
            width = 1 + len(word)
        else:
            out += " " + word
            width += 1 + len(word)
    return out + CRLF


def _date(when: float) -> str:
    return formatdate(when, localtime=True)


def _duration(seconds: float) -> str:
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.0f} days"
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.0f} hours"
    minutes = max(1, round(seconds / 60))
    return f"{minutes} minute" if minutes == 1 else f"{minutes} minutes"


def _addressField(address: str) -> str:
    """C{rfc822; a@b}, or C{utf-8; ...} (RFC 6533) for a UTF-8 address."""
    address = _CONTROL.sub("", address)
    return f"rfc822; {address}" if address.isascii() else f"utf-8; {address}"


def _originalRecipient(orcpt: str, utf8: bool) -> str:
    """
    The Original-Recipient value of an ORCPT (C{type;xtext}): decoded, or as
    received when decoding would put control characters into the field.
    """
    kind, _, encoded = orcpt.partition(";")
    decoded = _xtextDecode(encoded)
    value = decoded if _printable(decoded, utf8) else encoded
    return f"{kind}; {value}"


def _readHeader(original: BinaryIO) -> bytes:
    """The header of the message in C{original}, with the blank line after it."""
    data = b""
    while len(data) < HEADER_LIMIT:
        chunk = original.read(64 * 1024)
        if not chunk:
            return data
        data += chunk
        if data.startswith((b"\r\n", b"\n")):
            return b""
        ends = [at + len(end) for end in (b"\r\n\r\n", b"\n\n") if (at := data.find(end)) >= 0]
        if ends:
            return data[: min(ends)]
    cut = data.rfind(b"\n", 0, HEADER_LIMIT)
    return data[: cut + 1] if cut >= 0 else data[:HEADER_LIMIT]


def _messageId(header: bytes) -> bytes | None:
    """The original's Message-ID, if it has a plain one."""
    for line in header.split(b"\n"):
        name, colon, value = line.partition(b":")
        if colon and name.strip().lower() == b"message-id":
            value = value.strip()
            return value if _MESSAGE_ID.match(value) else None
    return None


def _returned(
    entry: QueueEntry, notice: Notice, original: BinaryIO, returnLimit: int
) -> tuple[bool, bytes]:
    """
    Whether the whole message is returned, and what is returned: only the
    header for C{REQUIRETLS} mail, whatever C{RET} asks (RFC 8689 4.3).
    """
    whole = entry.ret == "FULL" or (
        entry.ret is None and notice is Notice.FAILURE and entry.size <= returnLimit
    )
    if entry.body == "BINARYMIME" or entry.requireTLS:
        whole = False
    if whole:
        return True, original.read()
    return False, _readHeader(original)


def _humanPart(
    entry: QueueEntry,
    notice: Notice,
    recipients: Sequence[Recipient],
    reportingMta: str,
    now: float,
    retryUntil: float | None,
    whole: bool,
    utf8: bool,
    delivered: bool,
) -> str:
    lines = [f"This is the mail system at {reportingMta}.", ""]
    waited = _duration(now - entry.arrival)
    if notice is Notice.FAILURE:
        lines += [
            "Your message could not be delivered to one or more of its recipients.",
            "This is final: it will not be tried again for them.  The reasons",
            "are below; the delivery report is attached.",
        ]
    elif notice is Notice.DELAY:
        until = f" until {_date(retryUntil)}" if retryUntil is not None else ""
        lines += [
            "Your message has not yet been delivered to one or more of its",
            f"recipients, after {waited} of trying.  It will be tried again{until};",
            "you need not send it again.  The reasons so far are below.",
        ]
    elif delivered:
        lines += [
            "Your message was delivered to the mailboxes of the recipients below,",
            "as you asked to be told.",
        ]
    else:
        lines += [
            "Your message was passed on to the mail servers of the recipients below,",
            "as you asked to be told.  Those servers do not report delivery, so this",
            "is the last report about these recipients from here.",
        ]
    lines.append("")
    for r in recipients:
        d = r.diagnostic
        if d is None:
            reason = {
                Notice.FAILURE: "delivery failed",
                Notice.DELAY: "not tried yet",
                Notice.SUCCESS: "delivered" if delivered else "passed on",
            }[notice]
        else:
            reason = _clean(d.describe(), utf8)
            if notice is Notice.FAILURE and not d.permanent:
                reason += f" (still failing after {waited}: given up)"
        lines += textwrap.wrap(
            f"<{_clean(r.address, utf8)}>: {reason}",
            width=76,
            subsequent_indent="    ",
            break_long_words=False,
            break_on_hyphens=False,
        )
    lines.append("")
    returned = "Your message is attached." if whole else "The header of your message is attached."
    lines += [returned, ""]
    return CRLF.join(lines)


def _statusPart(
    entry: QueueEntry,
    notice: Notice,
    recipients: Sequence[Recipient],
    reportingMta: str,
    retryUntil: float | None,
    utf8: bool,
    delivered: bool,
) -> str:
    out = _fold("Reporting-MTA", f"dns; {reportingMta}")
    if entry.envid is not None:
        envid = _xtextDecode(entry.envid)
        out += _fold("Original-Envelope-Id", envid if _printable(envid, utf8) else entry.envid)
    out += _fold("Arrival-Date", _date(entry.arrival))
    action, defaultStatus = {
        Notice.FAILURE: ("failed", "5.0.0"),
        Notice.DELAY: ("delayed", "4.0.0"),
        Notice.SUCCESS: ("delivered" if delivered else "relayed", "2.0.0"),
    }[notice]
    for r in recipients:
        out += CRLF
        if r.orcpt is not None:
            out += _fold("Original-Recipient", _originalRecipient(r.orcpt, utf8))
        out += _fold("Final-Recipient", _addressField(r.address))
        out += _fold("Action", action)
        d = r.diagnostic
        status = d.status if d is not None and _STATUS.match(d.status) else defaultStatus
        if notice is Notice.FAILURE and status == "4.0.0":
            status = "4.4.7"  # RFC 3463: delivery time expired
        out += _fold("Status", status)
        if d is not None and d.remoteMta:
            out += _fold("Remote-MTA", f"dns; {_clean(d.remoteMta, utf8, 255)}")
        if d is not None and d.code is not None:
            reply = f"{d.code} {d.status} " if _STATUS.match(d.status) else f"{d.code} "
            out += _fold("Diagnostic-Code", f"smtp; {reply}{_clean(d.text, utf8)}")
        if r.lastAttempt is not None:
            out += _fold("Last-Attempt-Date", _date(r.lastAttempt))
        if notice is Notice.DELAY and retryUntil is not None:
            out += _fold("Will-Retry-Until", _date(retryUntil))
    return out


def _boundary(reportingMta: str, contents: Sequence[bytes]) -> str:
    while True:
        boundary = f"{secrets.token_hex(12)}/{reportingMta}"
        marker = b"--" + boundary.encode("utf-8")
        if not any(marker in content for content in contents):
            return boundary


def buildReport(
    entry: QueueEntry,
    notice: Notice,
    recipients: Sequence[Recipient],
    original: BinaryIO,
    reportingMta: str,
    now: float,
    retryUntil: float | None = None,
    returnLimit: int = RETURN_LIMIT,
    delivered: bool = False,
) -> DeliveryReport:
    """
    The C{notice} about C{recipients} of C{entry}, whose message is read
    from C{original} (from its start).  C{reportingMta} is this server's
    host name; C{retryUntil} (for delay notices) when retries end.
    C{delivered}: a success notice is about delivery into local mailboxes
    (C{Action: delivered}), not about passing the message on (C{relayed}).

    Raises C{ValueError} for an entry from the null sender, which must
    never be sent a notice.
    """
    if not entry.sender:
        raise ValueError("no delivery report goes to the null sender")
    if not recipients:
        raise ValueError("a delivery report needs at least one recipient")
    addresses = [entry.sender, *(r.address for r in recipients)]
    addresses += [_xtextDecode(r.orcpt) for r in recipients if r.orcpt is not None]
    utf8 = not all(address.isascii() for address in addresses)

    whole, returned = _returned(entry, notice, original, returnLimit)
    human = _humanPart(
        entry, notice, recipients, reportingMta, now, retryUntil, whole, utf8, delivered
    )
    status = _statusPart(entry, notice, recipients, reportingMta, retryUntil, utf8, delivered)
    humanBytes = human.encode("utf-8")
    statusBytes = status.encode("utf-8")
    boundary = _boundary(reportingMta, (humanBytes, statusBytes, returned))
    eightBit = bool(_EIGHT_BIT.search(returned)) or utf8

    subject = {
        Notice.FAILURE: "Undelivered mail returned to sender",
        Notice.DELAY: "Delayed mail (still being retried)",
        Notice.SUCCESS: "Delivery report: mail " + ("delivered" if delivered else "relayed"),
    }[notice]
    header = _fold("From", f"Mail Delivery System <MAILER-DAEMON@{reportingMta}>")
    header += _fold("To", f"<{_CONTROL.sub('', entry.sender)}>")
    header += _fold("Subject", subject)
    header += _fold("Date", _date(now))
    header += _fold(
        "Message-ID", f"<{entry.id}.{notice.value}.{secrets.token_hex(6)}@{reportingMta}>"
    )
    originalId = _messageId(returned if not whole else _readHeader(io.BytesIO(returned)))
    if originalId is not None:
        header += _fold("In-Reply-To", originalId.decode("ascii"))
        header += _fold("References", originalId.decode("ascii"))
    header += _fold("Auto-Submitted", "auto-replied")
    header += _fold("MIME-Version", "1.0")
    reportType = "global-delivery-status" if utf8 else "delivery-status"
    header += _fold(
        "Content-Type", f'multipart/report; report-type={reportType}; boundary="{boundary}"'
    )
    header += _fold("Content-Transfer-Encoding", "8bit" if eightBit else "7bit")

    def part(description: str, contentType: str, body: bytes, encoding: str) -> bytes:
        head = _fold("Content-Description", description) + _fold("Content-Type", contentType)
        head += _fold("Content-Transfer-Encoding", encoding)
        if body and not body.endswith(b"\n"):
            body += CRLF.encode()
        return f"--{boundary}{CRLF}{head}{CRLF}".encode() + body + CRLF.encode()

    humanType = (
        "text/plain; charset=utf-8" if not human.isascii() else "text/plain; charset=us-ascii"
    )
    returnedEight = bool(_EIGHT_BIT.search(returned))
    if whole:
        returnedType = "message/global" if entry.utf8 else "message/rfc822"
        description = "Undelivered message" if notice is Notice.FAILURE else "Original message"
    else:
        returnedType = "message/global-headers" if entry.utf8 else "text/rfc822-headers"
        description = "Header of the original message"
    data = (
        header.encode("utf-8")
        + CRLF.encode()
        + b"This is a MIME-encapsulated delivery status notification."
        + CRLF.encode()
        + CRLF.encode()
        + part("Notification", humanType, humanBytes, "8bit" if not human.isascii() else "7bit")
        + part(
            "Delivery report",
            "message/global-delivery-status" if utf8 else "message/delivery-status",
            statusBytes,
            "8bit" if utf8 else "7bit",
        )
        + part(description, returnedType, returned, "8bit" if returnedEight else "7bit")
        + f"--{boundary}--{CRLF}".encode()
    )
    return DeliveryReport(
        data=data,
        recipient=entry.sender,
        utf8=utf8,
        body="8BITMIME" if _EIGHT_BIT.search(data) else "7BIT",
        requireTLS=entry.requireTLS,
    )
