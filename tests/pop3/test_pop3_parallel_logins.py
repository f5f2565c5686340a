"""
USER/PASS and AUTH PLAIN from many connections at once: the throttle counts
a check from before it starts, so parallel guesses get no more checks than
C{max_failures}.
"""

from __future__ import annotations

import base64
import poplib
import socket
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
from support.net import listen, readLine
from support.realm import ALICE, makeRealm
from tmail.auth.throttle import AuthThrottle
from tmail.config.schema import AuthSettings, POP3Settings
from tmail.pop3.factory import POP3Factory

LIMIT = 10


class ParallelLoginTests(TestCase):
    timeout = 120

    async def setUp(self) -> None:
        fixture = makeRealm(Path(self.mktemp()))
        self.gate = GatedChecker(fixture.checker)
        self.throttle = AuthThrottle(AuthSettings(failure_delay=0, max_failures=LIMIT), reactor)
        factory = POP3Factory(
            Portal(fixture.realm, [self.gate]),
            POP3Settings(max_connections_per_address=100),
            tlsContextFactory=None,
            throttle=self.throttle,
            hostname="mail.example.test",
        )
        self.port = await listen(self, factory)
        self.logins = Logins(
            mechanisms=[self.userPass, self.authPlain],
            hangUp=self.hangUp,
            refused="-ERR [SYS/TEMP] Too many failed logins, try again later",
            wrong="-ERR [AUTH] Authentication failed",
            right="+OK Logged in",
        )

    def userPass(self, password: str) -> str:
        client = poplib.POP3("127.0.0.1", self.port, timeout=60)
        try:
            client.user(ALICE)
            return client.pass_(password).decode()
        except poplib.error_proto as e:
            return e.args[0].decode()  # type: ignore[no-any-return]
        finally:
            client.close()

    def authPlain(self, password: str) -> str:
        response = base64.b64encode(f"\0{ALICE}\0{password}".encode())
        with socket.create_connection(("127.0.0.1", self.port), timeout=60) as sock:
            readLine(sock)
            sock.sendall(b"AUTH PLAIN " + response + b"\r\n")
            return readLine(sock).decode().rstrip("\r\n")

    def hangUp(self, password: str) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=60) as sock:
            readLine(sock)
            sock.sendall(f"USER {ALICE}\r\nPASS {password}\r\n".encode())

    async def test_parallel_logins_get_no_more_checks_than_max_failures(self) -> None:
        await parallelGuessesAreBounded(self.logins, self.gate, LIMIT)

    async def test_hung_up_logins_are_released_and_successes_do_not_count(self) -> None:
        await hangUpsAreReleasedAndSuccessesDoNotCount(self.logins, self.gate, self.throttle, LIMIT)
