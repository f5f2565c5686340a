"""
Queries with the AD bit (RFC 6840 5.7) against a real validating resolver
(unbound on loopback) and the test name server, and what MX resolution
learns from them for DANE.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from tests.support.dns import a, startDNS
from tests.support.dnssec import startValidatingResolver
from twisted.internet import defer
from twisted.names import dns, error
from twisted.trial.unittest import TestCase

from tmail.queue.dnssec import Answer, ValidatingResolver, isLoopback, resolvConfServers
from tmail.queue.mx import MXResolver
from tmail.queue.tlsa import TLSA, TLSARecord

EE = "3 1 1 " + "ab" * 32

SIGNED = [
    "dane.test. MX 10 mx.dane.test.",
    "mx.dane.test. A 127.0.0.1",
    f"_25._tcp.mx.dane.test. TLSA {EE}",
    "bad.test. MX 10 mx.bad.test.",
    "mx.bad.test. A 127.0.0.1",
    f"_25._tcp.mx.bad.test. TLSA {EE}",
    "nomx.test. A 127.0.0.1",
]
INSECURE = {
    "plain.test": [
        "plain.test. MX 10 mx.plain.test.",
        "mx.plain.test. A 127.0.0.1",
        f"_25._tcp.mx.plain.test. TLSA {EE}",
    ]
}


class ValidatingResolverTests(TestCase):
    timeout = 30

    def setUp(self) -> None:
        self.server = startValidatingResolver(
            self, SIGNED, INSECURE, bogus=["_25._tcp.mx.bad.test"]
        )
        self.resolver = ValidatingResolver([self.server.address])
        self.mx = MXResolver(self.resolver, timeouts=(2.0,))

    @defer.inlineCallbacks
    def test_answers_from_a_signed_zone_carry_the_ad_bit(self) -> Generator[Any, Any, None]:
        answer: Answer = yield self.resolver.lookup("dane.test", dns.MX, (2.0,))
        self.assertTrue(answer.authenticated)
        [record] = answer.answers
        self.assertEqual(record.payload.name.name, b"mx.dane.test")

    @defer.inlineCallbacks
    def test_answers_below_an_unsigned_delegation_do_not(self) -> Generator[Any, Any, None]:
        answer: Answer = yield self.resolver.lookup("plain.test", dns.MX, (2.0,))
        self.assertFalse(answer.authenticated)
        self.assertEqual(len(answer.answers), 1)

    @defer.inlineCallbacks
    def test_bogus_data_is_a_server_failure(self) -> Generator[Any, Any, None]:
        with self.assertRaises(error.DNSServerError):
            yield self.resolver.lookup("_25._tcp.mx.bad.test", TLSA, (2.0,))

    @defer.inlineCallbacks
    def test_nxdomain_is_a_name_error(self) -> Generator[Any, Any, None]:
        with self.assertRaises(error.DNSNameError):
            yield self.resolver.lookup("nothing.dane.test", dns.A, (2.0,))

    @defer.inlineCallbacks
    def test_route_says_what_dnssec_vouched_for(self) -> Generator[Any, Any, None]:
        signed = yield self.mx.route("dane.test")
        self.assertTrue(signed.secure)
        self.assertTrue(signed.hosts[0].secure)
        plain = yield self.mx.route("plain.test")
        self.assertFalse(plain.secure)
        self.assertFalse(plain.hosts[0].secure)
        implicit = yield self.mx.route("nomx.test")
        self.assertTrue(implicit.implicit and implicit.secure and implicit.hosts[0].secure)

    @defer.inlineCallbacks
    def test_tlsa_records_are_parsed_with_their_security(self) -> Generator[Any, Any, None]:
        expected = (TLSARecord(3, 1, 1, bytes.fromhex("ab" * 32)),)
        self.assertEqual((yield self.mx.tlsa("mx.dane.test", 25)), (expected, True))
        self.assertEqual((yield self.mx.tlsa("mx.plain.test", 25)), (expected, False))
        self.assertEqual((yield self.mx.tlsa("mx.dane.test", 587)), ((), False))
        with self.assertRaises(error.DNSServerError):
            yield self.mx.tlsa("mx.bad.test", 25)


class PlainServerTests(TestCase):
    """Against a server that does not validate (Twisted's): no AD, and TCP when truncated."""

    @defer.inlineCallbacks
    def test_no_ad_bit_and_a_truncated_answer_is_asked_again_over_tcp(
        self,
    ) -> Generator[Any, Any, None]:
        many = [a(f"127.0.1.{i}") for i in range(1, 60)]
        server = startDNS(self, {"many.example.test": many})
        resolver = ValidatingResolver([server.address])
        answer: Answer = yield resolver.lookup("many.example.test", dns.A, (2.0,))
        self.assertFalse(answer.authenticated)
        self.assertEqual(len(answer.answers), 59)

    @defer.inlineCallbacks
    def test_a_silent_server_times_out(self) -> Generator[Any, Any, None]:
        from tests.support.dns import startSilentDNS

        server = startSilentDNS(self)
        resolver = ValidatingResolver([server.address])
        with self.assertRaises(error.DNSQueryTimeoutError):
            yield resolver.lookup("example.test", dns.A, (0.1, 0.1))
        self.assertEqual(len(server.queries), 2)


def test_resolv_conf_servers_and_loopback(tmp_path: Any) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("# local\nnameserver 127.0.0.1\nnameserver ::1\nsearch x\nnameserver bad\n")
    assert resolvConfServers(conf) == [("127.0.0.1", 53), ("::1", 53)]
    assert resolvConfServers(tmp_path / "missing") == []
    assert isLoopback("127.0.0.53") and isLoopback("::1")
    assert not isLoopback("192.0.2.53") and not isLoopback("not an address")
