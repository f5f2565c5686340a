"""
ENABLE (RFC 5161): allowed only once logged in and before a mailbox is
selected; answered with C{* ENABLED} naming only what this command turned
on.  CONDSTORE and QRESYNC (RFC 7162) can be enabled; other names are
ignored, as the RFC asks for names a server does not know.
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import Any

from test_imap_protocol import Session
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase, TestCase

from support.imaploop import imapclient, listenIMAP
from support.net import inThread
from support.realm import makeRealm


class EnableTranscriptTests(SynchronousTestCase):
    def test_rfc5161_example_enables_condstore_and_ignores_the_unknown_name(self) -> None:
        session = Session(self)
        session.loginDirectly()
        reply = session.send(b"t2 ENABLE CONDSTORE X-GOOD-IDEA\r\n")
        self.assertEqual(reply, b"* ENABLED CONDSTORE\r\nt2 OK ENABLE completed\r\n")

    def test_enabling_qresync_turns_condstore_on_too(self) -> None:
        session = Session(self)
        session.loginDirectly()
        reply = session.send(b"a ENABLE QRESYNC\r\n")
        self.assertEqual(reply, b"* ENABLED QRESYNC\r\na OK ENABLE completed\r\n")
        self.assertEqual(session.server.enabled, frozenset({b"QRESYNC", b"CONDSTORE"}))

    def test_enable_is_refused_before_login_and_once_a_mailbox_is_selected(self) -> None:
        session = Session(self)
        self.assertEqual(
            session.send(b"a ENABLE CONDSTORE\r\n"), b"a BAD Command not allowed now\r\n"
        )
        session.select()
        self.assertEqual(
            session.send(b"b ENABLE CONDSTORE\r\n"), b"b BAD Command not allowed now\r\n"
        )

    def test_enable_without_names_or_with_a_non_atom_is_bad(self) -> None:
        session = Session(self)
        session.loginDirectly()
        for arguments in [b"", b" ", b'"CONDSTORE"', b"(CONDSTORE)", b"A  B"]:
            reply = session.send(b"a ENABLE" + (b" " + arguments if arguments else b"") + b"\r\n")
            self.assertTrue(reply.startswith(b"a BAD "), (arguments, reply))
        self.assertEqual(session.send(b"b NOOP\r\n"), b"b OK NOOP completed\r\n")

    def test_an_enableable_extension_is_reported_once_whatever_its_case(self) -> None:
        """The hook later extensions use: ENABLED lists what this command turned on, once."""
        session = Session(self)
        session.loginDirectly()
        session.server.ENABLEABLE = frozenset({b"X-GOOD-IDEA"})
        reply = session.send(b"a ENABLE x-good-idea CONDSTORE X-GOOD-IDEA\r\n")
        self.assertEqual(reply, b"* ENABLED X-GOOD-IDEA\r\na OK ENABLE completed\r\n")
        self.assertEqual(session.server.enabled, frozenset({b"X-GOOD-IDEA"}))
        reply = session.send(b"b ENABLE X-GOOD-IDEA\r\n")
        self.assertEqual(reply, b"* ENABLED\r\nb OK ENABLE completed\r\n")

    def test_capability_lists_enable(self) -> None:
        self.assertIn(b" ENABLE ", Session(self).greeting)


class EnableClientTests(TestCase):
    timeout = 20

    @inlineCallbacks
    def test_imapclient_enable_reports_only_condstore_enabled(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        port = yield listenIMAP(self, makeRealm(Path(self.mktemp())))

        def client() -> Any:
            imap = imapclient(port)
            try:
                return imap.enable("CONDSTORE", "X-UNKNOWN")
            finally:
                imap.logout()

        self.assertEqual((yield inThread(client)), [b"CONDSTORE"])
