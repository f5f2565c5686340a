"""
Per-domain TLS policies ([relay.tls_policy], Postfix's security levels):
the runner asks each destination for the TLS its policy names, whatever
the default is.
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import Any

from tests.queue.test_queue_runner import RunnerTestCase
from tests.support.pki import TestPKI, makePKI
from tests.support.sink import SinkFactory, serverTLS, startSink
from twisted.internet import defer
from twisted.internet.ssl import Certificate

from tmail.config.loader import loadSettings
from tmail.queue.clientsettings import TLSMode, TLSPolicy
from tmail.queue.entry import State
from tmail.queue.relaysettings import RelaySettings, tlsLevel

BOB = "bob@ok.test"


class TLSPolicyTests(RunnerTestCase):
    pki: TestPKI

    @defer.inlineCallbacks
    def startTLSSink(self, names: tuple[str, ...] = ("mx.ok.test",), tls: bool = True) -> Any:
        self.pki = makePKI(Path(self.mktemp()), hostnames=names)
        self.sink = SinkFactory(tls=serverTLS(self.pki) if tls else None)
        self.port = yield startSink(self, self.sink)

    def verify(self) -> TLSPolicy:
        return tlsLevel("verify", Certificate.loadPEM(self.pki.caCertificate.read_bytes()))

    @defer.inlineCallbacks
    def outcome(self, policy: TLSPolicy) -> Generator[Any, Any, tuple[State, str]]:
        entry = self.enqueue(BOB)
        self.startRunner(tlsPolicies={"ok.test": policy})
        yield self.waitFor(lambda: self.store.load(entry.id).recipient(BOB).attempts >= 1)
        recipient = self.store.load(entry.id).recipient(BOB)
        assert recipient.diagnostic is not None
        return recipient.state, recipient.diagnostic.status

    @defer.inlineCallbacks
    def test_verify_delivers_over_tls_to_a_host_its_certificate_names(
        self,
    ) -> Generator[Any, Any, None]:
        yield self.startTLSSink()
        entry = self.enqueue(BOB)
        self.startRunner(tlsPolicies={"ok.test": self.verify()})
        yield self.waitFor(lambda: entry.id not in self.store.ids())
        [session] = self.sink.sessions
        self.assertTrue(session.tls)
        self.assertEqual(len(self.sink.messages), 1)

    @defer.inlineCallbacks
    def test_verify_defers_when_the_certificate_names_another_host(
        self,
    ) -> Generator[Any, Any, None]:
        yield self.startTLSSink(names=("mx.other.test",))
        state, status = yield self.outcome(self.verify())
        self.assertEqual(state, State.DEFERRED)
        self.assertTrue(status.startswith("4.7."), status)
        self.assertEqual(self.sink.messages, [])

    @defer.inlineCallbacks
    def test_encrypt_defers_rather_than_send_in_clear(self) -> Generator[Any, Any, None]:
        yield self.startTLSSink(tls=False)
        state, status = yield self.outcome(tlsLevel("encrypt"))
        self.assertEqual((state, status), (State.DEFERRED, "4.7.10"))
        self.assertEqual(self.sink.messages, [])

    @defer.inlineCallbacks
    def test_none_never_starts_tls_though_offered(self) -> Generator[Any, Any, None]:
        yield self.startTLSSink()
        entry = self.enqueue(BOB)
        self.startRunner(tlsPolicies={"ok.test": tlsLevel("none")})
        yield self.waitFor(lambda: entry.id not in self.store.ids())
        [session] = self.sink.sessions
        self.assertFalse(session.tls)
        self.assertNotIn("STARTTLS", session.commands)

    @defer.inlineCallbacks
    def test_other_domains_keep_the_default(self) -> Generator[Any, Any, None]:
        """The policy of another domain (written in Unicode) does not apply to ok.test."""
        yield self.startTLSSink(tls=False)
        entry = self.enqueue(BOB)
        self.startRunner(tlsPolicies={"xn--bcher-kva.test": tlsLevel("encrypt")})
        yield self.waitFor(lambda: entry.id not in self.store.ids())
        self.assertEqual(len(self.sink.messages), 1)


def test_levels_map_to_postfix_meanings() -> None:
    assert tlsLevel("none") == TLSPolicy(TLSMode.NONE)
    assert tlsLevel("may") == TLSPolicy(TLSMode.OPPORTUNISTIC, verify=False)
    assert tlsLevel("encrypt") == TLSPolicy(TLSMode.REQUIRED, False, False)
    assert tlsLevel("verify") == TLSPolicy(TLSMode.REQUIRED, True, False)


def test_config_tls_policy_and_resolver_reach_the_runner(tmp_path: Path) -> None:
    config = tmp_path / "tmail.toml"
    config.write_text(
        'hostname = "mx.example.test"\n'
        '[relay]\nresolver = "127.0.0.1:5353"\nnameservers = ["192.0.2.53"]\n'
        '[relay.tls_policy]\n"Bank.Example" = "verify"\n"bücher.test" = "none"\n'
    )
    settings = RelaySettings.fromConfig(loadSettings(config))
    assert settings.nameservers == ("127.0.0.1:5353", "192.0.2.53")
    assert settings.tlsPolicies == {
        "bank.example": tlsLevel("verify"),
        "xn--bcher-kva.test": tlsLevel("none"),
    }
    assert settings.clientSettings("BANK.example").tls == tlsLevel("verify")
    assert settings.clientSettings("bücher.test").tls == tlsLevel("none")
    assert settings.clientSettings("other.example").tls == TLSPolicy()
