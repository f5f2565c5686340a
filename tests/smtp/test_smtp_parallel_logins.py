"""
AUTH on the submission port from many connections at once: the throttle
counts a check from before it starts, so parallel guesses get no more checks
than C{max_failures}.
"""

from __future__ import annotations

import base64
import smtplib
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
from support.pki import makePKI
from support.realm import ALICE, makeRealm
from tmail.auth.throttle import AuthThrottle
from tmail.config.schema import AuthSettings, SMTPSettings, TLSSettings
from tmail.queue.outbox import Outbox
from tmail.queue.store import QueueStore
from tmail.smtp.factory import SMTPFactory
from tmail.tls import serverContextFactory

LIMIT = 10


class ParallelLoginTests(TestCase):
    timeout = 120

    async def setUp(self) -> None:
        fixture = makeRealm(Path(self.mktemp()))
        self.pki = makePKI(Path(self.mktemp()))
        self.gate = GatedChecker(fixture.checker)
        self.throttle = AuthThrottle(AuthSettings(failure_delay=0, max_failures=LIMIT), reactor)
        factory = SMTPFactory(
            fixture.realm,
            SMTPSettings(max_connections_per_address=100),
            hostname="mx.example.test",
            submission=True,
            portal=Portal(fixture.realm, [self.gate]),
            tlsContextFactory=serverContextFactory(TLSSettings(self.pki.certificate, self.pki.key)),
            throttle=self.throttle,
            outbox=Outbox(QueueStore(Path(self.mktemp()))),
        )
        self.port = await listen(self, factory)
        self.logins = Logins(
            mechanisms=[self.plain, self.login],
            hangUp=self.hangUp,
            refused=(454, b"4.7.0 Too many failed authentications, try later"),
            wrong=(535, b"5.7.8 Authentication credentials invalid"),
            right=(235, b"2.7.0 Authentication successful"),
        )

    def client(self) -> smtplib.SMTP:
        client = smtplib.SMTP("127.0.0.1", self.port, timeout=60)
        client.starttls(context=self.pki.clientContext())
        client.ehlo("client.example.org")
        return client

    def authenticate(self, mechanism: str, password: str) -> tuple[int, bytes]:
        with self.client() as client:
            client.esmtp_features["auth"] = mechanism
            try:
                return client.login(ALICE, password)
            except smtplib.SMTPAuthenticationError as e:
                return e.smtp_code, e.smtp_error

    def plain(self, password: str) -> tuple[int, bytes]:
        return self.authenticate("PLAIN", password)

    def login(self, password: str) -> tuple[int, bytes]:
        return self.authenticate("LOGIN", password)

    def hangUp(self, password: str) -> None:
        response = base64.b64encode(f"\0{ALICE}\0{password}".encode()).decode()
        client = self.client()
        client.send(f"AUTH PLAIN {response}\r\n")
        client.close()

    async def test_parallel_logins_get_no_more_checks_than_max_failures(self) -> None:
        await parallelGuessesAreBounded(self.logins, self.gate, LIMIT)

    async def test_hung_up_logins_are_released_and_successes_do_not_count(self) -> None:
        await hangUpsAreReleasedAndSuccessesDoNotCount(self.logins, self.gate, self.throttle, LIMIT)
