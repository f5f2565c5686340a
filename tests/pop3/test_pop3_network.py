"""
End-to-end POP3 tests: the real factory on loopback TCP, a real realm and
Maildir, Python's C{poplib} and raw sockets as clients.
"""

from __future__ import annotations

import poplib
import socket
from collections.abc import Generator
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import serverFromString
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.trial.unittest import TestCase

from support import pki as testpki
from support.net import inThread, listen, readLine, refusalOfThirdConnection
from support.realm import ALICE, PASSWORD, makeRealm
from tmail.auth.throttle import AuthThrottle
from tmail.config.schema import AuthSettings, POP3Settings, TLSSettings
from tmail.interfaces import IMailFolder
from tmail.pop3.factory import POP3Factory
from tmail.tls import serverContextFactory

HEAD = b"From: bob@example.test\r\nSubject: dots\r\n\r\n"
#: A body line starting with "." at byte 0 of the body and one exactly at
#: byte 16384, the first byte of the second 16 KiB chunk.
_PREFIX = HEAD + b".first\r\n"
_LINES, _REST = divmod(16384 - len(_PREFIX), 100)
DOTTY = (
    _PREFIX
    + (b"x" * 98 + b"\r\n") * (_LINES - 1)
    + b"y" * (100 + _REST - 2)
    + b"\r\n.\r\n.tail\r\n"
)
assert DOTTY[16384:16387] == b".\r\n"

MESSAGES = [b"Subject: one\r\n\r\nfirst message\r\n", DOTTY, b"Subject: three\r\n\r\nthird\r\n"]


def deliver(folder: IMailFolder, message: bytes) -> int:
    pending = folder.beginMessage()
    pending.write(message)
    return pending.commit()


def retrieve(pop: poplib.POP3, n: int) -> bytes:
    """RETR through poplib (which undoes dot-stuffing), as stored bytes."""
    _, lines, _ = pop.retr(n)
    return b"".join(line + b"\r\n" for line in lines)


class POP3NetworkTests(TestCase):
    timeout = 20

    def setUp(self) -> None:
        self.fixture = makeRealm(Path(self.mktemp()))
        self.folder = self.fixture.store(ALICE).getFolder("INBOX")
        for message in MESSAGES:
            deliver(self.folder, message)
        self._pki: testpki.TestPKI | None = None

    @property
    def pki(self) -> testpki.TestPKI:
        if self._pki is None:
            self._pki = testpki.makePKI(Path(self.mktemp()))
        return self._pki

    def factory(self, tls: bool = False, **settings: Any) -> POP3Factory:
        context = (
            serverContextFactory(TLSSettings(self.pki.certificate, self.pki.key)) if tls else None
        )
        return POP3Factory(
            self.fixture.portal,
            POP3Settings(**settings),
            tlsContextFactory=context,
            throttle=AuthThrottle(AuthSettings(failure_delay=0), reactor),
            hostname="mail.example.test",
        )

    def listen(self, tls: bool = False, **settings: Any) -> Deferred[int]:
        return listen(self, self.factory(tls, **settings))

    @inlineCallbacks
    def test_sessionWithPoplib(self) -> Generator[Deferred[Any], Any, None]:
        """A whole session; RETR gives back the exact stored bytes."""
        port = yield self.listen()

        def client() -> None:
            pop = poplib.POP3("127.0.0.1", port, timeout=10)
            self.assertIn(b"mail.example.test", pop.getwelcome())
            pop.user(ALICE)
            pop.pass_(PASSWORD)
            self.assertEqual(pop.stat(), (3, sum(map(len, MESSAGES))))
            _, listing, _ = pop.list()
            self.assertEqual(listing, [b"%d %d" % (i + 1, len(m)) for i, m in enumerate(MESSAGES)])
            self.assertEqual(len(pop.uidl()[1]), 3)
            for n, message in enumerate(MESSAGES, 1):
                self.assertEqual(retrieve(pop, n), message)
            _, top, _ = pop.top(2, 1)
            self.assertEqual(top, [b"From: bob@example.test", b"Subject: dots", b"", b".first"])
            pop.dele(1)
            self.assertRaises(poplib.error_proto, pop.retr, 1)
            pop.rset()
            pop.dele(3)
            pop.noop()
            self.assertEqual(pop.stat()[0], 2)
            self.assertEqual(len(self.folder.messages()), 3)
            pop.quit()

        yield inThread(client)
        self.assertEqual([m.size for m in self.folder.messages()], [len(m) for m in MESSAGES[:2]])

    @inlineCallbacks
    def test_dotStuffingOnTheWire(self) -> Generator[Deferred[Any], Any, None]:
        """
        Lines starting with C{.} at byte 0 of the body and at byte 16384
        (a chunk edge) are stuffed, so the response ends only at the real end.
        """
        port = yield self.listen()

        def client() -> bytes:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                readLine(sock)
                sock.sendall(f"USER {ALICE}\r\nPASS {PASSWORD}\r\nRETR 2\r\n".encode())
                data = b""
                while not data.endswith(b"\r\n..tail\r\n.\r\n") and (chunk := sock.recv(65536)):
                    data += chunk
                sock.sendall(b"QUIT\r\n")
                return data

        wire = yield inThread(client)
        body = wire.split(b" octets\r\n", 1)[1]
        self.assertEqual(body, DOTTY.replace(b"\r\n.", b"\r\n..") + b".\r\n")
        self.assertTrue(body.startswith(HEAD + b"..first\r\n"))

    @inlineCallbacks
    def test_noQuitDeletesNothing(self) -> Generator[Deferred[Any], Any, None]:
        """A session that closes after DELE without QUIT deletes nothing."""
        port = yield self.listen()

        def client() -> None:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                readLine(sock)
                sock.sendall(f"USER {ALICE}\r\nPASS {PASSWORD}\r\nDELE 1\r\nDELE 2\r\n".encode())
                replies = [readLine(sock) for _ in range(4)]
                self.assertEqual(replies[-1], b"+OK Message 2 deleted\r\n")
            pop = poplib.POP3("127.0.0.1", port, timeout=10)
            pop.user(ALICE)
            pop.pass_(PASSWORD)
            self.assertEqual(pop.stat()[0], 3)
            pop.quit()

        yield inThread(client)
        self.assertEqual(len(self.folder.messages()), 3)

    @inlineCallbacks
    def test_badCommandsOverTheWire(self) -> Generator[Deferred[Any], Any, None]:
        """C{USER a b}, C{DELE 0}, garbage and an over-long line: C{-ERR}, session alive."""
        port = yield self.listen(max_line_length=512)

        def client() -> list[bytes]:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                readLine(sock)
                sock.sendall(b"USER a b\r\n\x00\xff\x80garbage\r\n" + b"L" * 5000 + b"\r\n")
                replies = [readLine(sock) for _ in range(3)]
                sock.sendall(f"USER {ALICE}\r\nPASS {PASSWORD}\r\nDELE 0\r\nQUIT\r\n".encode())
                replies += [readLine(sock) for _ in range(4)]
                return replies

        replies = yield inThread(client)
        self.assertEqual(
            replies,
            [
                b"-ERR Too many arguments\r\n",
                b"-ERR Unknown command\r\n",
                b"-ERR Line too long\r\n",
                b"+OK Send your password\r\n",
                b"+OK Logged in\r\n",
                b"-ERR No such message, only 3 in maildrop\r\n",
                b"+OK Bye\r\n",
            ],
        )
        self.assertEqual(len(self.folder.messages()), 3)

    @inlineCallbacks
    def test_plaintextRefusedThenAllowedAfterSTLS(self) -> Generator[Deferred[Any], Any, None]:
        port = yield self.listen(tls=True, allow_plaintext_auth="never")
        context = self.pki.clientContext()

        def client() -> None:
            pop = poplib.POP3("localhost", port, timeout=10)
            caps = pop.capa()
            self.assertIn("STLS", caps)
            self.assertNotIn("USER", caps)
            with self.assertRaises(poplib.error_proto) as refused:
                pop.user(ALICE)
            self.assertIn(b"[AUTH] Plaintext authentication disallowed", refused.exception.args[0])
            pop.stls(context=context)
            caps = pop.capa()
            self.assertNotIn("STLS", caps)
            self.assertIn("USER", caps)
            pop.user(ALICE)
            pop.pass_(PASSWORD)
            self.assertEqual(retrieve(pop, 2), DOTTY)
            pop.quit()

        yield inThread(client)

    @inlineCallbacks
    def test_stls_discards_pipelined_plaintext(self) -> Generator[Deferred[Any], Any, None]:
        """
        C{USER} sent in the same write as C{STLS} never runs: after TLS,
        C{PASS} is answered as if no C{USER} had come (CVE-2011-0411 class).
        """
        port = yield self.listen(tls=True)
        context = self.pki.clientContext()

        def client() -> list[bytes]:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                readLine(raw)
                raw.sendall(f"STLS\r\nUSER {ALICE}\r\n".encode())
                replies = [readLine(raw)]
                with context.wrap_socket(raw, server_hostname="localhost") as sock:
                    sock.sendall(f"PASS {PASSWORD}\r\n".encode())
                    replies.append(readLine(sock))
                    sock.sendall(f"USER {ALICE}\r\nPASS {PASSWORD}\r\nQUIT\r\n".encode())
                    replies += [readLine(sock) for _ in range(3)]
                return replies

        replies = yield inThread(client)
        self.assertEqual(
            replies,
            [
                b"+OK Begin TLS negotiation\r\n",
                b"-ERR Send USER first\r\n",
                b"+OK Send your password\r\n",
                b"+OK Logged in\r\n",
                b"+OK Bye\r\n",
            ],
        )

    def implicitTLSClient(self, port: int) -> None:
        """
        Over an implicit-TLS listener the session knows it is secure: no
        STLS, and USER/PASS work even with C{allow_plaintext_auth = "never"}.
        """
        pop = poplib.POP3_SSL("localhost", port, context=self.pki.clientContext(), timeout=10)
        caps = pop.capa()
        self.assertNotIn("STLS", caps)
        self.assertIn("USER", caps)
        pop.user(ALICE)
        pop.pass_(PASSWORD)
        self.assertEqual(pop.stat()[0], 3)
        self.assertRaises(poplib.error_proto, pop._shortcmd, "STLS")
        pop.quit()

    @inlineCallbacks
    def test_implicitTLSEndpoint(self) -> Generator[Deferred[Any], Any, None]:
        """The factory behind an C{ssl:} endpoint."""
        description = (
            f"ssl:0:interface=127.0.0.1:privateKey={self.pki.key}:certKey={self.pki.certificate}"
        )
        endpoint = serverFromString(reactor, description)
        listening = yield endpoint.listen(self.factory(tls=True, allow_plaintext_auth="never"))
        self.addCleanup(listening.stopListening)
        yield inThread(self.implicitTLSClient, listening.getHost().port)

    @inlineCallbacks
    def test_implicitTLSWrappedFactory(self) -> Generator[Deferred[Any], Any, None]:
        """The factory wrapped in C{TLSMemoryBIOFactory}, as C{tls:} listeners do."""
        factory = self.factory(tls=True, allow_plaintext_auth="never")
        port = yield listen(self, TLSMemoryBIOFactory(factory.tlsContextFactory, False, factory))
        yield inThread(self.implicitTLSClient, port)

    @inlineCallbacks
    def test_connectionLimit(self) -> Generator[Deferred[Any], Any, None]:
        port = yield self.listen(max_connections_per_address=2)

        refused = yield inThread(refusalOfThirdConnection, port)
        self.assertEqual(refused, b"-ERR [SYS/TEMP] Too many connections from your address\r\n")

    @inlineCallbacks
    def test_wrongPassword(self) -> Generator[Deferred[Any], Any, None]:
        port = yield self.listen()

        def client() -> None:
            pop = poplib.POP3("127.0.0.1", port, timeout=10)
            pop.user(ALICE)
            with self.assertRaises(poplib.error_proto) as failed:
                pop.pass_("wrong")
            self.assertEqual(failed.exception.args[0], b"-ERR [AUTH] Authentication failed")
            pop.user(ALICE.upper())
            pop.pass_(PASSWORD)
            pop.quit()

        yield inThread(client)
