"""Tests for L{tmail.smtp.headers}: trace headers and HELO sanitising."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tmail.delivery.trace import Trace, addressLiteral, protocolName, traceHeaders
from tmail.smtp.headers import HELO_PLACEHOLDER, isHeaderField, sanitiseHelo

TRACE = Trace(
    helo="client.example.org",
    clientAddress="192.0.2.7",
    clientName="192.0.2.7",
    hostname="mx.example.test",
    protocol="ESMTPS",
    queueID="ABCDEF0123",
    date=datetime(2025, 7, 1, 12, 30, 5, tzinfo=timezone(timedelta(hours=2))),
)


class SanitiseHeloTests(SynchronousTestCase):
    def test_hostNamesAndLiteralsAreKept(self) -> None:
        """Host names and address literals are copied as given."""
        for helo in (
            "client.example.org",
            "localhost",
            "mail-1.example.org.",
            "under_score.example",
            "[192.0.2.1]",
            "[IPv6:2001:db8::1]",
            "[ipv6:::1]",
        ):
            self.assertEqual(sanitiseHelo(helo.encode()), helo)

    def test_anythingElseIsReplaced(self) -> None:
        """
        Line breaks, spaces, non-ASCII, bad literals and over-long names
        give the placeholder, so a HELO can never start a header line.
        """
        for helo in (
            b"x\nBcc: victim@example.org",
            b"x\r\nBcc: victim@example.org",
            b"x\rBcc: y",
            b"two words",
            b"caf\xc3\xa9.example",
            b"[192.0.2.999]",
            b"[IPv6:192.0.2.1]",
            b"[2001:db8::1]",
            b"-leading.example",
            b"a..b",
            b"a" * 64 + b".example",
            b"a." * 128 + b"b",
            b"",
            b"x;y",
            b"(comment)",
        ):
            self.assertEqual(sanitiseHelo(helo), HELO_PLACEHOLDER, helo)

    @given(st.binary(max_size=300))
    def test_resultIsAlwaysOneCleanToken(self, helo: bytes) -> None:
        """Whatever the client sends, the result is printable ASCII without spaces."""
        result = sanitiseHelo(helo)
        self.assertTrue(result)
        self.assertTrue(all("!" <= c <= "~" for c in result), result)
        self.assertLessEqual(len(result), 255)


class TraceHeaderTests(SynchronousTestCase):
    def test_exactHeaders(self) -> None:
        """Return-Path, Delivered-To and a folded RFC 5321 Received header."""
        self.assertEqual(
            traceHeaders(TRACE, "sender@example.org", "alice@example.test", "alice+x@example.test"),
            b"Return-Path: <sender@example.org>\r\n"
            b"Delivered-To: alice@example.test\r\n"
            b"Received: from client.example.org (192.0.2.7 [192.0.2.7])\r\n"
            b"\tby mx.example.test (tmail) with ESMTPS id ABCDEF0123\r\n"
            b"\tfor <alice+x@example.test>; Tue, 01 Jul 2025 12:30:05 +0200\r\n",
        )

    def test_unix_socket_client_gets_no_tcp_info(self) -> None:
        """A client on a unix socket has no address: C{from} names its HELO alone."""
        trace = dataclasses.replace(TRACE, clientAddress="local", clientName="local")
        self.assertEqual(
            trace.received("alice@example.test"),
            b"Received: from client.example.org\r\n"
            b"\tby mx.example.test (tmail) with ESMTPS id ABCDEF0123\r\n"
            b"\tfor <alice@example.test>; Tue, 01 Jul 2025 12:30:05 +0200\r\n",
        )

    def test_nullReturnPath(self) -> None:
        """A bounce has C{Return-Path: <>}."""
        self.assertTrue(traceHeaders(TRACE, "", "a@b", "a@b").startswith(b"Return-Path: <>\r\n"))

    def test_ipv6Literal(self) -> None:
        """IPv6 client addresses are written as C{[IPv6:...]}."""
        self.assertEqual(addressLiteral("2001:db8::1"), "[IPv6:2001:db8::1]")
        self.assertEqual(addressLiteral("192.0.2.1"), "[192.0.2.1]")

    def test_protocolNames(self) -> None:
        """RFC 3848 C{with} keywords."""
        self.assertEqual(protocolName(esmtp=False, tls=False, authenticated=False), "SMTP")
        self.assertEqual(protocolName(esmtp=True, tls=False, authenticated=False), "ESMTP")
        self.assertEqual(protocolName(esmtp=True, tls=True, authenticated=False), "ESMTPS")
        self.assertEqual(protocolName(esmtp=True, tls=False, authenticated=True), "ESMTPA")
        self.assertEqual(protocolName(esmtp=True, tls=True, authenticated=True), "ESMTPSA")

    def test_headerFieldDetection(self) -> None:
        """A field name is printable ASCII without colon or space, then a colon."""
        self.assertTrue(isHeaderField(b"Subject: hi"))
        self.assertTrue(isHeaderField(b"X-Odd:"))
        self.assertFalse(isHeaderField(b"just text: with colon"))
        self.assertFalse(isHeaderField(b""))
        self.assertFalse(isHeaderField(b": empty name"))
