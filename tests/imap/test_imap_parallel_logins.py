"""
LOGIN and AUTHENTICATE from many connections at once: the throttle counts a
check from before it starts, so parallel guesses get no more checks than
C{max_failures}, whatever the protocol's mechanism.
"""

from __future__ import annotations

import imaplib
from pathlib import Path

from twisted.cred.portal import Portal
from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from support.logins import (
    GatedChecker,
    Logins,
    hangUpsAreReleasedAndSuccessesDoNotCount,
    parallelGuessesAreBounded,
)
from support.net import listen
from support.realm import ALICE, makeRealm
from tmail.auth.throttle import AuthThrottle
from tmail.config.schema import AuthSettings, IMAPSettings
from tmail.imap.factory import IMAPFactory

LIMIT = 10


def answerOf(error: imaplib.IMAP4.error) -> str:
    text = error.args[0]
    return "NO " + (text.decode() if isinstance(text, bytes) else str(text))


class ParallelLoginTests(TestCase):
    timeout = 120

    async def setUp(self) -> None:
        fixture = makeRealm(Path(self.mktemp()))
        self.gate = GatedChecker(fixture.checker)
        self.throttle = AuthThrottle(AuthSettings(failure_delay=0, max_failures=LIMIT), reactor)
        factory = IMAPFactory(
            Portal(fixture.realm, [self.gate]),
            IMAPSettings(max_connections_per_address=100),
            tlsContextFactory=None,
            throttle=self.throttle,
            hostname="mail.example.test",
        )
        self.port = await listen(self, factory)
        self.logins = Logins(
            mechanisms=[self.login, self.authenticate],
            hangUp=self.hangUp,
            refused="NO [UNAVAILABLE] Too many failed logins; try again later",
            wrong="NO [AUTHENTICATIONFAILED] Authentication failed",
            right="OK",
        )

    def client(self) -> imaplib.IMAP4:
        return imaplib.IMAP4("127.0.0.1", self.port, timeout=60)

    def login(self, password: str) -> str:
        with self.client() as client:
            try:
                return client.login(ALICE, password)[0]
            except imaplib.IMAP4.error as e:
                return answerOf(e)

    def authenticate(self, password: str) -> str:
        response = f"\0{ALICE}\0{password}".encode()
        with self.client() as client:
            try:
                return client.authenticate("PLAIN", lambda _: response)[0]
            except imaplib.IMAP4.error as e:
                return answerOf(e)

    def hangUp(self, password: str) -> None:
        client = self.client()
        client.send(f'a1 LOGIN "{ALICE}" "{password}"\r\n'.encode())
        client.shutdown()

    async def test_parallel_logins_get_no_more_checks_than_max_failures(self) -> None:
        await parallelGuessesAreBounded(self.logins, self.gate, LIMIT)

    async def test_hung_up_logins_are_released_and_successes_do_not_count(self) -> None:
        await hangUpsAreReleasedAndSuccessesDoNotCount(self.logins, self.gate, self.throttle, LIMIT)
