"""Delivery status notifications, read back the way a mail client would: with C{email}."""

from __future__ import annotations

import email
import email.policy
import io
from email.message import EmailMessage, Message
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tmail.queue.dsn import RETURN_LIMIT, DeliveryReport, buildReport, xtextEncode
from tmail.queue.entry import Diagnostic, Notice, Outcome, QueueEntry, Recipient, State
from tmail.queue.store import QueueStore
from tmail.smtp.commands import parseRcptTo

MTA = "mail.example.com"
ARRIVAL = 1_764_000_000.0
HEADER = (
    b"From: Alice <alice@example.com>\r\nTo: bob@example.net\r\nSubject: Lunch\r\n"
    b"Message-ID: <lunch.1@example.com>\r\n\r\n"
)
MESSAGE = HEADER + b"Shall we meet at noon?\r\n"
REFUSED = Diagnostic("5.1.1", "No such user", 550, "mx.example.net")
TEMPORARY = Diagnostic("4.4.1", "Connection timed out", None, "mx.example.net")
ACCEPTED = Diagnostic("2.0.0", "Queued as 4Z1", 250, "mx.example.net")


def entry(*recipients: Recipient, **fields: object) -> QueueEntry:
    values: dict[str, object] = {
        "id": "0123456789ABCDEF01234567",
        "sender": "alice@example.com",
        "arrival": ARRIVAL,
        "recipients": recipients or (failed("bob@example.net"),),
        "size": len(MESSAGE),
    }
    values.update(fields)
    return QueueEntry(**values)  # type: ignore[arg-type]


def failed(address: str, diagnostic: Diagnostic = REFUSED, **fields: object) -> Recipient:
    r = Outcome.failed(diagnostic).applyTo(Recipient(address), ARRIVAL + 60)
    return Recipient(**{**{f: getattr(r, f) for f in r.__slots__}, **fields})  # type: ignore[arg-type]


def report(
    queued: QueueEntry,
    notice: Notice = Notice.FAILURE,
    message: bytes = MESSAGE,
    recipients: tuple[Recipient, ...] | None = None,
    retryUntil: float | None = None,
) -> DeliveryReport:
    return buildReport(
        queued,
        notice,
        queued.recipients if recipients is None else recipients,
        io.BytesIO(message),
        MTA,
        ARRIVAL + 120,
        retryUntil,
    )


def parse(built: DeliveryReport) -> EmailMessage:
    parsed = email.message_from_bytes(built.data, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    assert not parsed.defects
    return parsed


def parts(parsed: EmailMessage) -> list[Message]:
    assert parsed.get_content_type() == "multipart/report"
    payload = parsed.get_payload()
    assert isinstance(payload, list)
    return payload


def statusBlocks(part: Message) -> list[Message]:
    """The per-message block and the per-recipient blocks of a delivery-status part."""
    assert part.get_content_type() == "message/delivery-status"
    blocks = part.get_payload()
    assert isinstance(blocks, list)
    return blocks


def test_failure_report_is_a_multipart_report_from_the_mailer_daemon_to_the_sender() -> None:
    built = report(entry())
    assert built.recipient == "alice@example.com"
    assert (built.utf8, built.body) == (False, "7BIT")
    parsed = parse(built)
    assert parsed.get_param("report-type") == "delivery-status"
    assert parsed["To"].addresses[0].addr_spec == "alice@example.com"
    assert parsed["From"].addresses[0].addr_spec == f"MAILER-DAEMON@{MTA}"
    assert parsed["Auto-Submitted"] == "auto-replied"
    assert parsed["In-Reply-To"] == "<lunch.1@example.com>"
    assert parsedate_to_datetime(parsed["Date"]).timestamp() == ARRIVAL + 120
    human, status, returned = parts(parsed)
    assert human.get_content_type() == "text/plain"
    text = human.get_payload(decode=True)
    assert b"<bob@example.net>: mx.example.net said: 550 5.1.1 No such user" in text
    assert status.get_content_type() == "message/delivery-status"
    assert returned.get_content_type() == "message/rfc822"


def test_delivery_status_fields_say_what_happened_to_each_recipient() -> None:
    queued = entry(
        failed("bob@example.net", orcpt="rfc822;Bob+2BLunch@example.net"),
        failed("carol@example.org", TEMPORARY),
        envid="lunch+2B1",
    )
    perMessage, bob, carol = statusBlocks(parts(parse(report(queued)))[1])
    assert perMessage["Reporting-MTA"] == f"dns; {MTA}"
    assert perMessage["Original-Envelope-Id"] == "lunch+1"
    assert parsedate_to_datetime(perMessage["Arrival-Date"]).timestamp() == ARRIVAL
    assert bob["Original-Recipient"] == "rfc822; Bob+Lunch@example.net"
    assert bob["Final-Recipient"] == "rfc822; bob@example.net"
    assert (bob["Action"], bob["Status"]) == ("failed", "5.1.1")
    assert bob["Remote-MTA"] == "dns; mx.example.net"
    assert bob["Diagnostic-Code"] == "smtp; 550 5.1.1 No such user"
    assert parsedate_to_datetime(bob["Last-Attempt-Date"]).timestamp() == ARRIVAL + 60
    assert (carol["Action"], carol["Status"]) == ("failed", "4.4.1")
    assert carol["Diagnostic-Code"] is None
    assert carol["Original-Recipient"] is None


def test_a_recipient_given_up_on_without_a_reason_is_reported_as_expired() -> None:
    queued = entry(failed("bob@example.net", Diagnostic("4.0.0", "try later")))
    [_, bob] = statusBlocks(parts(parse(report(queued)))[1])
    assert bob["Status"] == "4.4.7"
    text = parts(parse(report(queued)))[0].get_payload(decode=True)
    assert b"try later (still failing after 2 minutes: given up)" in text


def test_failure_returns_the_whole_message_byte_for_byte() -> None:
    built = report(entry())
    returned = parts(parse(built))[2]
    inner = returned.get_payload(0)
    assert inner["Subject"] == "Lunch"
    assert MESSAGE + b"\r\n--" in built.data


@pytest.mark.parametrize(
    ("ret", "size", "notice", "whole"),
    [
        (None, 1000, Notice.FAILURE, True),
        (None, RETURN_LIMIT + 1, Notice.FAILURE, False),
        ("HDRS", 1000, Notice.FAILURE, False),
        ("FULL", RETURN_LIMIT * 4, Notice.FAILURE, True),
        (None, 1000, Notice.DELAY, False),
        ("FULL", 1000, Notice.DELAY, True),
        (None, 1000, Notice.SUCCESS, False),
    ],
)
def test_the_message_or_only_its_header_is_returned_as_ret_asks(
    ret: str | None, size: int, notice: Notice, whole: bool
) -> None:
    message = HEADER + b"x" * (size - len(HEADER) - 2) + b"\r\n"
    state = {Notice.FAILURE: State.FAILED, Notice.DELAY: State.DEFERRED}.get(
        notice, State.DELIVERED
    )
    queued = entry(failed("bob@example.net", state=state), ret=ret, size=len(message))
    built = report(queued, notice, message)
    returned = parts(parse(built))[2]
    if whole:
        assert returned.get_content_type() == "message/rfc822"
        assert message in built.data
    else:
        assert returned.get_content_type() == "text/rfc822-headers"
        assert HEADER in built.data
        assert b"xxxx" not in built.data


def test_a_binarymime_message_returns_only_its_header() -> None:
    message = HEADER + b"\x00\x01 binary \r bytes\n"
    built = report(entry(ret="FULL", body="BINARYMIME"), message=message)
    assert parts(parse(built))[2].get_content_type() == "text/rfc822-headers"
    assert b"binary" not in built.data


def test_an_8bit_message_is_returned_as_8bit() -> None:
    message = HEADER.replace(b"Lunch", b"Mittagessen") + "Grüße\r\n".encode()
    built = report(entry(body="8BITMIME"), message=message)
    assert built.body == "8BITMIME"
    returned = parts(parse(built))[2]
    assert returned["Content-Transfer-Encoding"] == "8bit"
    assert message in built.data


def test_delay_report_says_when_retries_end() -> None:
    deferred = Outcome.deferred(TEMPORARY, ARRIVAL + 9000).applyTo(
        Recipient("bob@example.net"), ARRIVAL + 5 * 3600
    )
    queued = entry(deferred)
    until = ARRIVAL + 5 * 86400
    built = buildReport(
        queued, Notice.DELAY, queued.recipients, io.BytesIO(MESSAGE), MTA, ARRIVAL + 4 * 3600, until
    )
    parsed = parse(built)
    assert "Delayed" in parsed["Subject"]
    human, status, returned = parts(parsed)
    text = human.get_payload(decode=True)
    assert b"after 4 hours of trying" in text
    [_, bob] = statusBlocks(status)
    assert (bob["Action"], bob["Status"]) == ("delayed", "4.4.1")
    assert parsedate_to_datetime(bob["Will-Retry-Until"]).timestamp() == until
    assert returned.get_content_type() == "text/rfc822-headers"


def test_success_report_for_notify_success_says_relayed() -> None:
    delivered = Outcome.delivered(ACCEPTED).applyTo(
        Recipient("bob@example.net", ("SUCCESS",)), ARRIVAL + 5
    )
    queued = entry(delivered)
    assert queued.noticesOwed() == {Notice.SUCCESS: (delivered,)}
    [_, bob] = statusBlocks(parts(parse(report(queued, Notice.SUCCESS)))[1])
    assert (bob["Action"], bob["Status"]) == ("relayed", "2.0.0")
    assert bob["Diagnostic-Code"] == "smtp; 250 2.0.0 Queued as 4Z1"


def test_no_report_goes_to_the_null_sender() -> None:
    with pytest.raises(ValueError, match="null sender"):
        report(entry(sender=""))


def test_a_report_is_queued_from_the_null_sender_and_never_bounces_itself(
    tmp_path: Path,
) -> None:
    store = QueueStore(tmp_path / "queue")
    built = report(entry())
    bounce = store.enqueue(built.envelope(), built.data)
    assert bounce.sender == ""
    assert [r.address for r in bounce.recipients] == ["alice@example.com"]
    assert store.record(bounce.id, {"alice@example.com": Outcome.failed(REFUSED)}) is None
    assert store.entries() == []


@pytest.mark.parametrize(
    "field",
    ["envid", "orcpt", "diagnostic", "remote"],
)
def test_crlf_smuggled_into_a_report_field_cannot_add_a_field(field: str) -> None:
    evil = "x+0D+0AX-Injected:+20yes"
    recipient = failed(
        "bob@example.net",
        Diagnostic(
            "5.1.1",
            "No\r\nX-Injected: yes" if field == "diagnostic" else "No",
            550,
            "mx\r\nX-Injected: yes" if field == "remote" else "mx.example.net",
        ),
        orcpt=f"rfc822;{evil}" if field == "orcpt" else None,
    )
    queued = entry(recipient, envid=evil if field == "envid" else None)
    built = report(queued)
    assert b"\r\nX-Injected" not in built.data
    for block in statusBlocks(parts(parse(built))[1]):
        assert block["X-Injected"] is None
    assert b"X-Injected" in built.data


def test_utf8_addresses_make_a_global_report_that_needs_smtputf8() -> None:
    queued = entry(
        failed("jörg@bücher.example", orcpt="utf-8;jörg@bücher.example"),
        sender="zoë@example.com",
        utf8=True,
    )
    built = report(queued)
    assert (built.utf8, built.body) == (True, "8BITMIME")
    parsed = parse(built)
    assert parsed.get_param("report-type") == "global-delivery-status"
    human, status, returned = parts(parsed)
    assert status.get_content_type() == "message/global-delivery-status"
    raw = built.data.decode("utf-8")
    assert "\r\nTo: <zoë@example.com>\r\n" in raw
    assert "Final-Recipient: utf-8; jörg@bücher.example\r\n" in raw
    assert "Original-Recipient: utf-8; jörg@bücher.example\r\n" in raw
    assert returned.get_content_type() == "message/global"
    assert "<jörg@bücher.example>" in human.get_payload(decode=True).decode("utf-8")


def test_several_recipients_share_one_report_and_long_diagnostics_are_folded() -> None:
    long = Diagnostic("5.7.1", "Rejected by policy " + "because " * 40, 554, "mx.example.net")
    queued = entry(failed("bob@example.net"), failed("carol@example.org", long))
    built = report(queued)
    blocks = statusBlocks(parts(parse(built))[1])
    assert [b["Final-Recipient"] for b in blocks[1:]] == [
        "rfc822; bob@example.net",
        "rfc822; carol@example.org",
    ]
    assert blocks[2]["Diagnostic-Code"].startswith("smtp; 554 5.7.1 Rejected by policy because")
    assert max(len(line) for line in built.data.split(b"\r\n")) <= 100


@given(st.text())
def test_xtext_is_printable_ascii_the_smtp_parser_reads_back(text: str) -> None:
    """An ORCPT made from any address is valid xtext whose decoding is that address."""
    encoded = xtextEncode(text)
    assert all("!" <= c <= "~" and c != "=" for c in encoded)
    assert parseRcptTo(f"TO:<a@b.test> ORCPT=rfc822;{encoded}".encode()).orcpt == (
        f"rfc822;{encoded}"
    )
    assert _xtextDecodeBytes(encoded) == text.encode("utf-8")


def _xtextDecodeBytes(encoded: str) -> bytes:
    out = bytearray()
    i = 0
    while i < len(encoded):
        if encoded[i] == "+":
            out.append(int(encoded[i + 1 : i + 3], 16))
            i += 3
        else:
            out += encoded[i].encode("ascii")
            i += 1
    return bytes(out)
