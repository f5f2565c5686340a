"""
DANE for outbound mail (RFC 7672) end to end: the runner asks a real
validating resolver (unbound, with a zone signed at setup) and delivers to
a sink on loopback whose certificate the TLSA records name, or do not.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from tests.queue.test_queue_runner import MESSAGE, SENDER, RunnerTestCase
from tests.support.dnssec import ValidatingServer, startValidatingResolver, tlsa
from tests.support.net import listen
from tests.support.pki import TestPKI, makePKI
from tests.support.sink import SinkFactory
from twisted.internet import defer, reactor
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort
from twisted.internet.ssl import Certificate, CertificateOptions, PrivateCertificate
from twisted.logger import LogLevel, capturedLogs, formatEvent

from tmail.config.loader import loadSettings
from tmail.errors import ConfigError
from tmail.queue.clientsettings import TLSPolicy
from tmail.queue.dnssec import ValidatingResolver
from tmail.queue.entry import Envelope, Recipient, State
from tmail.queue.relaysettings import RelaySettings, tlsLevel
from tmail.queue.runner import QueueRunner
from tmail.queue.store import QueueStore

RCPT = "bob@dane.test"
PLAIN = "carol@plain.test"


def serverOptions(pki: TestPKI, withCA: bool = False) -> CertificateOptions:
    """A sink's TLS: its certificate, and the CA's after it when C{withCA}."""
    private = PrivateCertificate.loadPEM(pki.certificate.read_bytes() + pki.key.read_bytes())
    extra = [Certificate.loadPEM(pki.caCertificate.read_bytes()).original] if withCA else []
    return CertificateOptions(
        privateKey=private.privateKey.original,
        certificate=private.original,
        extraCertChain=extra,
    )


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


class DANETests(RunnerTestCase):
    """The sink is mx.dane.test (127.0.0.1); the zone is made per test for its port."""

    timeout = 60
    pki: TestPKI
    dns: ValidatingServer  # type: ignore[assignment]

    @defer.inlineCallbacks
    def startDANESink(
        self,
        names: tuple[str, ...] = ("unrelated.example",),
        tls: bool = True,
        withCA: bool = False,
    ) -> Generator[Any, Any, None]:
        self.pki = makePKI(Path(self.mktemp()), hostnames=names)
        self.sink = SinkFactory(tls=serverOptions(self.pki, withCA) if tls else None)
        self.port = yield listen(self, self.sink)

    def leaf(self) -> x509.Certificate:
        return load(self.pki.certificate)

    def serveZone(
        self,
        tlsaRecords: Sequence[str] = (),
        host: str = "mx.dane.test",
        insecure: dict[str, list[str]] | None = None,
        bogus: Sequence[str] = (),
        extra: Sequence[str] = (),
    ) -> None:
        lines = [f"dane.test. MX 10 {host}.", f"{host}. A 127.0.0.1", *extra]
        lines += [f"_{self.port}._tcp.{host}. TLSA {r}" for r in tlsaRecords]
        self.dns = startValidatingResolver(self, lines, insecure or {}, bogus)

    @defer.inlineCallbacks
    def attempted(self, address: str, level: str) -> Generator[Any, Any, tuple[State, str]]:
        """Queue mail to C{address} under C{level} for its domain; its state after one attempt."""
        domain = address.partition("@")[2]
        entry = self.enqueue(address)
        self.startRunner(tlsPolicies={domain: tlsLevel(level)})
        yield self.waitFor(lambda: self.store.load(entry.id).recipient(address).attempts >= 1)
        recipient = self.store.load(entry.id).recipient(address)
        assert recipient.diagnostic is not None
        return recipient.state, recipient.diagnostic.status

    @defer.inlineCallbacks
    def delivered(self, address: str, level: str) -> Generator[Any, Any, None]:
        entry = self.enqueue(address)
        self.startRunner(tlsPolicies={address.partition("@")[2]: tlsLevel(level)})
        yield self.waitFor(lambda: entry.id not in self.store.ids())
        self.assertEqual(len(self.sink.messages), 1)

    def assertNothingSent(self) -> None:
        """No message, and no MAIL command in any session (in clear or not)."""
        self.assertEqual(self.sink.messages, [])
        for session in self.sink.sessions:
            self.assertFalse([c for c in session.commands if c.upper().startswith("MAIL")])

    # DANE-EE(3)

    @defer.inlineCallbacks
    def test_dane_ee_match_delivers_over_tls_whatever_the_certificate_names(
        self,
    ) -> Generator[Any, Any, None]:
        """RFC 7672 3.1.1: names in a DANE-EE certificate are not checked."""
        yield self.startDANESink(names=("unrelated.example",))
        self.serveZone([tlsa(self.leaf(), 3, 1, 1)])
        yield self.delivered(RCPT, "dane")
        [session] = self.sink.sessions
        self.assertTrue(session.tls)

    @defer.inlineCallbacks
    def test_dane_ee_full_certificate_sha512_match_delivers(self) -> Generator[Any, Any, None]:
        yield self.startDANESink()
        self.serveZone([tlsa(self.leaf(), 3, 0, 2)])
        yield self.delivered(RCPT, "dane-only")
        self.assertTrue(self.sink.sessions[0].tls)

    @defer.inlineCallbacks
    def test_dane_ee_mismatch_defers_and_sends_nothing(self) -> Generator[Any, Any, None]:
        yield self.startDANESink()
        other = load(makePKI(Path(self.mktemp())).certificate)
        self.serveZone([tlsa(other, 3, 1, 1)])
        state, status = yield self.attempted(RCPT, "dane")
        self.assertEqual((state, status), (State.DEFERRED, "4.7.5"))
        self.assertNothingSent()

    @defer.inlineCallbacks
    def test_dane_ee_mismatch_at_the_preferred_mx_goes_to_the_next(
        self,
    ) -> Generator[Any, Any, None]:
        yield self.startDANESink()
        second: IListeningPort = yield serverFromString(
            reactor, f"tcp:{self.port}:interface=127.0.0.2"
        ).listen(self.sink)
        self.addCleanup(second.stopListening)
        wrong = tlsa(load(makePKI(Path(self.mktemp())).certificate))
        right = tlsa(self.leaf())
        self.dns = startValidatingResolver(
            self,
            [
                "dane.test. MX 10 mx1.dane.test.",
                "dane.test. MX 20 mx2.dane.test.",
                "mx1.dane.test. A 127.0.0.2",
                "mx2.dane.test. A 127.0.0.1",
                f"_{self.port}._tcp.mx1.dane.test. TLSA {wrong}",
                f"_{self.port}._tcp.mx2.dane.test. TLSA {right}",
            ],
        )
        yield self.delivered(RCPT, "dane")
        first, last = self.sink.sessions
        self.assertNotIn("MAIL", " ".join(first.commands).upper())
        self.assertTrue(last.tls)

    # DANE-TA(2)

    @defer.inlineCallbacks
    def test_dane_ta_with_the_chain_delivers(self) -> Generator[Any, Any, None]:
        yield self.startDANESink(names=("mx.dane.test",), withCA=True)
        self.serveZone([tlsa(load(self.pki.caCertificate), 2, 0, 1)])
        yield self.delivered(RCPT, "dane")
        self.assertTrue(self.sink.sessions[0].tls)

    @defer.inlineCallbacks
    def test_dane_ta_defers_when_the_certificate_names_another_host(
        self,
    ) -> Generator[Any, Any, None]:
        """RFC 7672 3.2.2: with DANE-TA the MX host name must be in the certificate."""
        yield self.startDANESink(names=("mx.other.test",), withCA=True)
        self.serveZone([tlsa(load(self.pki.caCertificate), 2, 1, 1)])
        state, status = yield self.attempted(RCPT, "dane")
        self.assertEqual((state, status), (State.DEFERRED, "4.7.5"))
        self.assertNothingSent()

    @defer.inlineCallbacks
    def test_dane_ta_defers_when_the_server_does_not_present_the_anchor(
        self,
    ) -> Generator[Any, Any, None]:
        yield self.startDANESink(names=("mx.dane.test",), withCA=False)
        self.serveZone([tlsa(load(self.pki.caCertificate), 2, 0, 1)])
        state, status = yield self.attempted(RCPT, "dane")
        self.assertEqual((state, status), (State.DEFERRED, "4.7.5"))
        self.assertNothingSent()

    # Downgrades refused

    @defer.inlineCallbacks
    def test_tlsa_published_and_starttls_not_offered_defers(self) -> Generator[Any, Any, None]:
        """A man in the middle stripping STARTTLS gets nothing (RFC 7672 2.2)."""
        yield self.startDANESink(tls=False)
        self.serveZone([tlsa(self.leaf())])
        state, status = yield self.attempted(RCPT, "dane")
        self.assertEqual((state, status), (State.DEFERRED, "4.7.10"))
        self.assertNothingSent()

    @defer.inlineCallbacks
    def test_tlsa_lookup_servfail_defers_without_connecting(self) -> Generator[Any, Any, None]:
        """RFC 7672 2.2.1: bogus TLSA records (SERVFAIL) make the host unusable, not plaintext."""
        yield self.startDANESink(tls=False)
        self.serveZone([tlsa(self.leaf())], bogus=[f"_{self.port}._tcp.mx.dane.test"])
        state, status = yield self.attempted(RCPT, "dane")
        self.assertEqual((state, status), (State.DEFERRED, "4.7.5"))
        self.assertEqual(self.sink.sessions, [])
        self.assertIn("validation failure", self.dns.log())

    @defer.inlineCallbacks
    def test_unusable_tlsa_records_still_require_tls(self) -> Generator[Any, Any, None]:
        """RFC 7672 2.2: only PKIX-EE(1) published: TLS is mandatory, unauthenticated."""
        yield self.startDANESink(tls=False)
        self.serveZone([tlsa(self.leaf(), 1, 1, 1)])
        state, status = yield self.attempted(RCPT, "dane")
        self.assertEqual((state, status), (State.DEFERRED, "4.7.10"))
        self.assertNothingSent()

    @defer.inlineCallbacks
    def test_unusable_tlsa_records_allow_unauthenticated_tls(self) -> Generator[Any, Any, None]:
        yield self.startDANESink()
        self.serveZone([tlsa(self.leaf(), 1, 1, 1)])
        yield self.delivered(RCPT, "dane")
        self.assertTrue(self.sink.sessions[0].tls)

    @defer.inlineCallbacks
    def test_requiretls_mail_goes_over_dane_authenticated_tls(self) -> Generator[Any, Any, None]:
        """RFC 8689 4.2.1: TLSA records authenticate the server as well as a CA would."""
        yield self.startDANESink(names=("unrelated.example",))
        self.sink.extensions = (*self.sink.extensions, "REQUIRETLS")
        self.serveZone([tlsa(self.leaf())])
        envelope = Envelope(SENDER, (Recipient(RCPT),), requireTLS=True)
        entry = self.store.enqueue(envelope, MESSAGE, time.time())
        self.startRunner(tlsPolicies={"dane.test": tlsLevel("dane")})
        yield self.waitFor(lambda: entry.id not in self.store.ids())
        [session] = self.sink.sessions
        self.assertTrue(session.tls)
        self.assertIn("REQUIRETLS", session.transactions[0].mailFrom)

    # Where DANE does not apply

    @defer.inlineCallbacks
    def test_signed_zone_without_tlsa_dane_delivers_as_may(self) -> Generator[Any, Any, None]:
        yield self.startDANESink(tls=False)
        self.serveZone([])
        yield self.delivered(RCPT, "dane")
        self.assertFalse(self.sink.sessions[0].tls)

    @defer.inlineCallbacks
    def test_signed_zone_without_tlsa_dane_only_defers(self) -> Generator[Any, Any, None]:
        yield self.startDANESink()
        self.serveZone([])
        state, status = yield self.attempted(RCPT, "dane-only")
        self.assertEqual((state, status), (State.DEFERRED, "4.7.5"))
        self.assertEqual(self.sink.sessions, [])

    def plainZone(self) -> None:
        """plain.test: an unsigned delegation, with TLSA records that match nothing."""
        wrong = tlsa(load(makePKI(Path(self.mktemp())).certificate))
        self.serveZone(
            insecure={
                "plain.test": [
                    "plain.test. MX 10 mx.plain.test.",
                    "mx.plain.test. A 127.0.0.1",
                    f"_{self.port}._tcp.mx.plain.test. TLSA {wrong}",
                ]
            }
        )

    @defer.inlineCallbacks
    def test_insecure_zone_dane_delivers_opportunistically(self) -> Generator[Any, Any, None]:
        """Without the AD bit the TLSA records are ignored: unauthenticated TLS, as may."""
        yield self.startDANESink()
        self.plainZone()
        yield self.delivered(PLAIN, "dane")
        self.assertTrue(self.sink.sessions[0].tls)

    @defer.inlineCallbacks
    def test_insecure_zone_dane_only_defers(self) -> Generator[Any, Any, None]:
        yield self.startDANESink()
        self.plainZone()
        state, status = yield self.attempted(PLAIN, "dane-only")
        self.assertEqual((state, status), (State.DEFERRED, "4.7.5"))
        self.assertEqual(self.sink.sessions, [])


def test_config_dane_levels_reach_the_runner(tmp_path: Path) -> None:
    config = tmp_path / "tmail.toml"
    config.write_text(
        'hostname = "mx.example.test"\n'
        '[relay]\ntls = "dane"\nresolver = "127.0.0.1:53"\n'
        '[relay.tls_policy]\n"bank.example" = "dane-only"\n"old.example" = "may"\n'
    )
    settings = RelaySettings.fromConfig(loadSettings(config))
    assert settings.tls == tlsLevel("dane")
    assert settings.clientSettings("bank.example").tls == tlsLevel("dane-only")
    assert settings.clientSettings("old.example").tls == TLSPolicy()
    assert settings.usesDANE
    assert isinstance(settings.resolver().resolver, ValidatingResolver)


def test_config_without_dane_keeps_twisteds_resolver(tmp_path: Path) -> None:
    config = tmp_path / "tmail.toml"
    config.write_text('hostname = "mx.example.test"\n[relay]\nresolver = "127.0.0.1:53"\n')
    settings = RelaySettings.fromConfig(loadSettings(config))
    assert not settings.usesDANE
    resolver = settings.resolver()
    assert not isinstance(resolver.resolver, ValidatingResolver)
    resolver.close()


def test_config_refuses_tls_verify_with_dane(tmp_path: Path) -> None:
    config = tmp_path / "tmail.toml"
    config.write_text('hostname = "mx.example.test"\n[relay]\ntls = "dane"\ntls_verify = true\n')
    with pytest.raises(ConfigError, match=r"relay\.tls_verify"):
        loadSettings(config)


def test_a_resolver_elsewhere_is_warned_of_with_dane(tmp_path: Path) -> None:
    """DANE trusts the AD bit, which only a resolver on this host can vouch for."""
    settings = RelaySettings(
        heloName="relay.example.org",
        nameservers=("127.0.0.1:5353", "192.0.2.53"),
        tls=tlsLevel("dane"),
    )
    runner = QueueRunner(QueueStore(tmp_path / "queue"), settings)
    with capturedLogs() as events:
        runner.startService()
    runner.stopService()
    warnings = [e for e in events if e["log_level"] == LogLevel.warn]
    assert [e["server"] for e in warnings] == ["192.0.2.53"]
    assert "local validating resolver" in formatEvent(warnings[0])
