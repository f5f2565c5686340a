"""AUTHENTICATE LOGIN (the Username:/Password: SASL mechanism Outlook and older clients use)."""

from __future__ import annotations

import base64
import imaplib
from collections.abc import Generator
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase, TestCase

from imap.test_imap_protocol import Session
from support.imaploop import listenIMAP
from support.net import inThread
from support.realm import ALICE, PASSWORD, makeRealm


def b64(data: str) -> bytes:
    return base64.b64encode(data.encode())


USERNAME, PASSWORD_PROMPT = b"+ " + b64("Username:") + b"\r\n", b"+ " + b64("Password:") + b"\r\n"


class AuthenticateLoginTests(SynchronousTestCase):
    def test_login_mechanism_is_offered_with_plain(self) -> None:
        session = Session(self)
        self.assertIn(b"AUTH=PLAIN AUTH=LOGIN", session.greeting)

    def test_username_then_password_logs_in(self) -> None:
        session = Session(self)
        self.assertEqual(session.send(b"a AUTHENTICATE LOGIN\r\n"), USERNAME)
        self.assertEqual(session.send(b64(ALICE) + b"\r\n"), PASSWORD_PROMPT)
        reply = session.send(b64(PASSWORD) + b"\r\n")
        self.assertTrue(reply.startswith(b"a OK [CAPABILITY"), reply)
        self.assertEqual(session.server.state, "auth")

    def test_initial_response_is_the_username(self) -> None:
        session = Session(self)
        self.assertEqual(
            session.send(b"a AUTHENTICATE LOGIN " + b64(ALICE) + b"\r\n"), PASSWORD_PROMPT
        )
        self.assertTrue(session.send(b64(PASSWORD) + b"\r\n").startswith(b"a OK"))

    def test_wrong_password_cancel_and_bad_base64(self) -> None:
        session = Session(self)
        session.send(b"a AUTHENTICATE LOGIN\r\n")
        session.send(b64(ALICE) + b"\r\n")
        self.assertEqual(
            session.send(b64("nope") + b"\r\n"),
            b"a NO [AUTHENTICATIONFAILED] Authentication failed\r\n",
        )
        session.send(b"b AUTHENTICATE LOGIN\r\n")
        self.assertEqual(session.send(b"*\r\n"), b"b BAD AUTHENTICATE cancelled\r\n")
        session.send(b"c AUTHENTICATE LOGIN\r\n")
        self.assertEqual(session.send(b"!!\r\n"), b"c BAD Invalid base64\r\n")
        session.send(b"d AUTHENTICATE LOGIN\r\n")
        session.send(b64(ALICE) + b"\r\n")
        self.assertEqual(session.send(b"!!\r\n"), b"d BAD Invalid base64\r\n")
        self.assertEqual(session.server.state, "unauth")

    def test_refused_without_tls_from_a_remote_address(self) -> None:
        session = Session(self, peer="192.0.2.7")
        self.assertTrue(
            session.send(b"a AUTHENTICATE LOGIN\r\n").startswith(b"a NO [PRIVACYREQUIRED]")
        )


class AuthenticateLoginClientTests(TestCase):
    @inlineCallbacks
    def test_imaplib_logs_in_with_the_login_mechanism(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        port = yield listenIMAP(self, makeRealm(Path(self.mktemp())))

        def client() -> tuple[str, str]:
            answers = iter([ALICE.encode(), PASSWORD.encode()])
            imap = imaplib.IMAP4("127.0.0.1", port, timeout=10)
            try:
                typ, _ = imap.authenticate("LOGIN", lambda challenge: next(answers))
                return typ, imap.state
            finally:
                imap.logout()

        self.assertEqual((yield inThread(client)), ("OK", "AUTH"))
