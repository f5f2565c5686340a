"""
Fast tests of L{tmail.pop3.server.POP3Server} over C{StringTransport}, with an
in-memory folder: command parsing, states, limits, login policy, fuzzing.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Iterable, Sequence
from typing import Any, BinaryIO

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.cred.portal import IRealm, Portal
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import ISSLTransport, ITLSTransport
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import alsoProvides, implementer

from tmail.auth.throttle import AuthThrottle
from tmail.config.schema import AuthSettings, POP3Settings
from tmail.interfaces import IMailUser, MessageInfo
from tmail.pop3.mailbox import POP3Mailbox
from tmail.pop3.server import POP3Server
from tmail.realm.base import MailUser

USER = b"alice@example.test"
PASSWORD = b"secret password"


class MemoryFolder:
    """The part of L{tmail.interfaces.IMailFolder} the POP3 mailbox uses."""

    name = "INBOX"

    def __init__(self, messages: Sequence[bytes]) -> None:
        self.data = {uid: body for uid, body in enumerate(messages, 1)}
        self.flags: dict[int, frozenset[str]] = {uid: frozenset() for uid in self.data}
        self.expunged: list[int] = []

    def messages(self) -> list[MessageInfo]:
        return [
            MessageInfo(uid, self.flags[uid], len(body), 0.0, f"k{uid}:x")
            for uid, body in sorted(self.data.items())
        ]

    def openMessage(self, uid: int) -> BinaryIO:
        return io.BytesIO(self.data[uid])

    def uidValidity(self) -> int:
        return 1_700_000_000

    def setFlags(self, uid: int, flags: Iterable[str]) -> MessageInfo:
        self.flags[uid] = frozenset(flags)
        return next(m for m in self.messages() if m.uid == uid)

    def expunge(self, uids: Iterable[int]) -> list[int]:
        gone = [uid for uid in uids if self.data.pop(uid, None) is not None]
        self.expunged += gone
        return gone


class FolderStore:
    """A store of one folder: the INBOX."""

    def __init__(self, folder: MemoryFolder) -> None:
        self.folder = folder

    def getFolder(self, name: str) -> MemoryFolder:
        return self.folder


@implementer(IRealm)
class FolderRealm:
    def __init__(self, folder: MemoryFolder) -> None:
        self.folder = folder

    def requestAvatar(self, avatarId: Any, mind: Any, *interfaces: Any) -> Any:
        assert IMailUser in interfaces
        return IMailUser, MailUser(avatarId.decode(), FolderStore(self.folder)), lambda: None


@implementer(ITLSTransport)
class TLSCapableTransport(StringTransport):
    """A C{StringTransport} that records C{startTLS} and then counts as secure."""

    tlsStarted = False

    def startTLS(self, contextFactory: object) -> None:
        self.tlsStarted = True
        alsoProvides(self, ISSLTransport)


MESSAGES = [
    b"Subject: one\r\n\r\nfirst\r\n",
    b"Subject: two\r\n\r\n.leading dot\r\nsecond\r\n",
    b"Subject: three\r\n\r\nthird\r\n",
]


class Session:
    """A server over a string transport, and a way to talk to it."""

    def __init__(
        self,
        messages: Sequence[bytes] = MESSAGES,
        settings: POP3Settings | None = None,
        peer: str = "127.0.0.1",
        tls: bool = False,
        auth: AuthSettings | None = None,
        mailbox: Callable[[Any], Any] = POP3Mailbox,
    ) -> None:
        self.folder = MemoryFolder(messages)
        checker = InMemoryUsernamePasswordDatabaseDontUse()
        checker.addUser(USER, PASSWORD)
        portal = Portal(FolderRealm(self.folder), [checker])
        self.clock = Clock()
        self.throttle = AuthThrottle(auth or AuthSettings(failure_delay=0), self.clock)
        self.server = POP3Server(
            portal,
            settings or POP3Settings(),
            tlsContextFactory=object() if tls else None,  # type: ignore[arg-type]
            throttle=self.throttle,
            hostname="mail.example.test",
            clock=self.clock,
        )
        if mailbox is not POP3Mailbox:
            folder = self.folder

            async def opened(user: IMailUser) -> Any:
                return mailbox(folder)

            self.server.openMailbox = opened  # type: ignore[method-assign]
        transportType = TLSCapableTransport if tls else StringTransport
        self.transport = transportType(peerAddress=IPv4Address("TCP", peer, 40000))
        self.server.makeConnection(self.transport)
        self.greeting = self.read()

    def read(self) -> bytes:
        value: bytes = self.transport.value()
        self.transport.clear()
        return value

    def pump(self) -> None:
        for _ in range(10000):
            if self.transport.producer is not None:
                self.transport.producer.resumeProducing()
            elif self.clock.getDelayedCalls() and self.server._busy:
                self.clock.advance(0)
            else:
                return

    def send(self, data: bytes) -> bytes:
        self.server.dataReceived(data)
        self.pump()
        return self.read()

    def login(self) -> None:
        reply = self.send(b"USER " + USER + b"\r\nPASS " + PASSWORD + b"\r\n")
        assert reply.endswith(b"+OK Logged in\r\n"), reply


class CommandParsingTests(SynchronousTestCase):
    def test_greeting(self) -> None:
        """The greeting carries no APOP timestamp: APOP is off."""
        session = Session()
        self.assertEqual(session.greeting, b"+OK mail.example.test POP3 ready\r\n")

    def test_userWithTwoArguments(self) -> None:
        """C{USER a b} gets C{-ERR}; Twisted crashed with no reply."""
        session = Session()
        self.assertEqual(session.send(b"USER a b\r\n"), b"-ERR Too many arguments\r\n")
        session.login()

    def test_unknownAndEmptyCommands(self) -> None:
        session = Session()
        for line in [b"", b" ", b"LAST", b"RPOP x", b"XYZZY", b"\xff\xfe", b"do_QUIT"]:
            self.assertEqual(session.send(line + b"\r\n"), b"-ERR Unknown command\r\n", line)

    def test_transactionCommandsNeedLogin(self) -> None:
        session = Session()
        for line in [b"STAT", b"LIST", b"RETR 1", b"DELE 1", b"NOOP", b"RSET", b"UIDL"]:
            self.assertEqual(session.send(line + b"\r\n"), b"-ERR Not logged in\r\n")

    def test_badMessageNumbers(self) -> None:
        """
        C{DELE 0} (which made Twisted delete the last message), negative,
        huge and non-numeric message numbers are all refused.
        """
        session = Session()
        session.login()
        for line in [
            b"DELE 0",
            b"DELE -1",
            b"RETR 0",
            b"LIST 99999",
            b"UIDL 4",
            b"RETR x",
            b"DELE +1",
            b"DELE 1_0",
            b"TOP 1 -1",
            b"TOP 1 x",
            b"TOP 0 1",
            b"LIST 99999999999999999999",
        ]:
            self.assertTrue(session.send(line + b"\r\n").startswith(b"-ERR "), line)
        self.assertEqual(session.send(b"STAT\r\n"), b"+OK 3 %d\r\n" % sum(map(len, MESSAGES)))
        session.send(b"QUIT\r\n")
        self.assertEqual(session.folder.expunged, [])

    def test_argumentCounts(self) -> None:
        session = Session()
        session.login()
        self.assertEqual(session.send(b"RETR\r\n"), b"-ERR Missing argument\r\n")
        self.assertEqual(session.send(b"STAT 1\r\n"), b"-ERR Too many arguments\r\n")
        self.assertEqual(session.send(b"TOP 1\r\n"), b"-ERR Missing argument\r\n")
        self.assertEqual(session.send(b"noop\r\n"), b"+OK\r\n")

    def test_bareLineFeed(self) -> None:
        """Lines ending in a bare LF are accepted, as Dovecot does."""
        session = Session()
        self.assertTrue(session.send(b"CAPA\n").startswith(b"+OK"))


class CapabilityTests(SynchronousTestCase):
    def capabilities(self, session: Session) -> list[bytes]:
        reply = session.send(b"CAPA\r\n").split(b"\r\n")
        self.assertTrue(reply[0].startswith(b"+OK"))
        self.assertEqual(reply[-2:], [b".", b""])
        return reply[1:-2]

    def test_beforeLogin(self) -> None:
        """Exactly the capabilities tmail implements; no PIPELINE, no joke ones."""
        self.assertEqual(
            self.capabilities(Session(tls=True)),
            [
                b"TOP",
                b"UIDL",
                b"RESP-CODES",
                b"AUTH-RESP-CODE",
                b"PIPELINING",
                b"USER",
                b"SASL PLAIN",
                b"STLS",
                b"IMPLEMENTATION tmail",
            ],
        )

    def test_noPlaintextLogin(self) -> None:
        """Where passwords may not be sent, neither USER nor SASL is offered."""
        session = Session(tls=True, peer="192.0.2.7")
        caps = self.capabilities(session)
        self.assertNotIn(b"USER", caps)
        self.assertNotIn(b"SASL PLAIN", caps)
        self.assertIn(b"STLS", caps)

    def test_withoutTLSContext(self) -> None:
        self.assertNotIn(b"STLS", self.capabilities(Session()))

    def test_afterLogin(self) -> None:
        session = Session(tls=True)
        session.login()
        self.assertEqual(
            self.capabilities(session),
            [
                b"TOP",
                b"UIDL",
                b"RESP-CODES",
                b"AUTH-RESP-CODE",
                b"PIPELINING",
                b"IMPLEMENTATION tmail",
            ],
        )


class PlaintextPolicyTests(SynchronousTestCase):
    disallowed = b"-ERR [AUTH] Plaintext authentication disallowed on non-secure connections\r\n"

    def test_refusedOnRemotePlainConnection(self) -> None:
        session = Session(peer="192.0.2.7")
        self.assertEqual(session.send(b"USER " + USER + b"\r\n"), self.disallowed)
        self.assertEqual(session.send(b"PASS " + PASSWORD + b"\r\n"), self.disallowed)
        self.assertEqual(session.send(b"AUTH PLAIN\r\n"), self.disallowed)
        self.assertEqual(session.send(b"AUTH\r\n"), b"+OK\r\n.\r\n")

    def test_neverMeansNotEvenLoopback(self) -> None:
        session = Session(settings=POP3Settings(allow_plaintext_auth="never"))
        self.assertEqual(session.send(b"USER " + USER + b"\r\n"), self.disallowed)

    def test_allowedAfterSTLS(self) -> None:
        session = Session(tls=True, peer="192.0.2.7")
        self.assertEqual(session.send(b"STLS\r\n"), b"+OK Begin TLS negotiation\r\n")
        self.assertTrue(session.transport.tlsStarted)
        session.login()
        self.assertEqual(session.send(b"STAT\r\n")[:6], b"+OK 3 ")

    def test_apopRefused(self) -> None:
        session = Session()
        self.assertEqual(
            session.send(b"APOP alice 0123456789abcdef\r\n"), b"-ERR APOP not supported\r\n"
        )


class STLSTests(SynchronousTestCase):
    def test_discardsPipelinedPlaintext(self) -> None:
        """Commands sent in the clear behind STLS never run."""
        session = Session(tls=True)
        reply = session.send(b"STLS\r\nUSER " + USER + b"\r\nPASS " + PASSWORD + b"\r\n")
        self.assertEqual(reply, b"+OK Begin TLS negotiation\r\n")
        self.assertEqual(session.send(b"PASS " + PASSWORD + b"\r\n"), b"-ERR Send USER first\r\n")

    def test_refusedWhenSecureOrLoggedIn(self) -> None:
        session = Session(tls=True)
        session.send(b"STLS\r\n")
        self.assertEqual(session.send(b"STLS\r\n"), b"-ERR Already using TLS\r\n")
        session = Session(tls=True)
        session.login()
        self.assertEqual(session.send(b"STLS\r\n"), b"-ERR Already logged in\r\n")
        self.assertEqual(Session().send(b"STLS\r\n"), b"-ERR STLS not available\r\n")


class SASLTests(SynchronousTestCase):
    def plain(self, authzid: bytes, user: bytes, password: bytes) -> bytes:
        return base64.b64encode(authzid + b"\0" + user + b"\0" + password)

    def test_initialResponse(self) -> None:
        session = Session()
        reply = session.send(b"AUTH PLAIN " + self.plain(b"", USER, PASSWORD) + b"\r\n")
        self.assertEqual(reply, b"+OK Logged in\r\n")

    def test_continuation(self) -> None:
        session = Session()
        self.assertEqual(session.send(b"AUTH plain\r\n"), b"+ \r\n")
        reply = session.send(self.plain(USER, USER, PASSWORD) + b"\r\n")
        self.assertEqual(reply, b"+OK Logged in\r\n")

    def test_failures(self) -> None:
        session = Session()
        self.assertEqual(session.send(b"AUTH\r\n"), b"+OK\r\nPLAIN\r\n.\r\n")
        self.assertEqual(session.send(b"AUTH CRAM-MD5\r\n").split(b" ")[0], b"-ERR")
        session.send(b"AUTH PLAIN\r\n")
        self.assertEqual(session.send(b"*\r\n"), b"-ERR Authentication aborted\r\n")
        session.send(b"AUTH PLAIN\r\n")
        self.assertEqual(session.send(b"%%%\r\n"), b"-ERR Invalid base64 data\r\n")
        failed = b"-ERR [AUTH] Authentication failed\r\n"
        self.assertEqual(
            session.send(b"AUTH PLAIN " + self.plain(b"bob", USER, PASSWORD) + b"\r\n"), failed
        )
        self.assertEqual(
            session.send(b"AUTH PLAIN " + self.plain(b"", USER, b"wrong") + b"\r\n"), failed
        )
        self.assertEqual(session.send(b"AUTH PLAIN =\r\n"), failed)

    def test_overlongResponseEndsTheExchange(self) -> None:
        session = Session(settings=POP3Settings(max_line_length=100))
        session.send(b"AUTH PLAIN\r\n")
        self.assertEqual(session.send(b"A" * 200 + b"\r\n"), b"-ERR Line too long\r\n")
        self.assertTrue(session.send(b"CAPA\r\n").startswith(b"+OK"))


class MaildropTests(SynchronousTestCase):
    def test_deletedMessagesLeaveTheListings(self) -> None:
        """RFC 1939: STAT, LIST and UIDL leave out messages marked deleted."""
        session = Session()
        session.login()
        self.assertEqual(session.send(b"DELE 2\r\n"), b"+OK Message 2 deleted\r\n")
        self.assertEqual(session.send(b"DELE 2\r\n"), b"-ERR Message 2 already deleted\r\n")
        self.assertEqual(session.send(b"RETR 2\r\n"), b"-ERR Message 2 already deleted\r\n")
        sizes = [len(m) for m in MESSAGES]
        self.assertEqual(session.send(b"STAT\r\n"), b"+OK 2 %d\r\n" % (sizes[0] + sizes[2]))
        self.assertEqual(
            session.send(b"LIST\r\n"),
            b"+OK 2 messages\r\n1 %d\r\n3 %d\r\n.\r\n" % (sizes[0], sizes[2]),
        )
        self.assertEqual(len(session.send(b"UIDL\r\n").split(b"\r\n")), 5)
        self.assertEqual(session.send(b"RSET\r\n"), b"+OK 3 messages\r\n")
        self.assertEqual(session.send(b"STAT\r\n")[:6], b"+OK 3 ")

    def test_deletionsOnlyAtQuit(self) -> None:
        session = Session()
        session.login()
        session.send(b"DELE 1\r\nDELE 3\r\n")
        self.assertEqual(session.folder.expunged, [])
        self.assertEqual(session.send(b"QUIT\r\n"), b"+OK Bye\r\n")
        self.assertEqual(session.folder.expunged, [1, 3])
        self.assertTrue(session.transport.disconnecting)

    def test_retrieveIsDotStuffedAndMarksSeenAtQuit(self) -> None:
        """RETR sets C{\\Seen} at QUIT, as Dovecot does; TOP does not."""
        session = Session()
        session.login()
        self.assertEqual(
            session.send(b"RETR 2\r\n"),
            b"+OK %d octets\r\n" % len(MESSAGES[1])
            + b"Subject: two\r\n\r\n..leading dot\r\nsecond\r\n.\r\n",
        )
        self.assertEqual(
            session.send(b"TOP 2 0\r\n"), b"+OK Top of message follows\r\nSubject: two\r\n\r\n.\r\n"
        )
        session.send(b"TOP 1 5\r\n")
        self.assertEqual(session.folder.flags[2], frozenset())
        session.send(b"QUIT\r\n")
        self.assertEqual(session.folder.flags, {1: frozenset(), 2: {"\\Seen"}, 3: frozenset()})

    def test_pipelinedCommandsWaitForLogin(self) -> None:
        """With PIPELINING, commands sent behind PASS run after the login."""
        session = Session()
        reply = session.send(
            b"USER " + USER + b"\r\nPASS " + PASSWORD + b"\r\nSTAT\r\nRETR 1\r\nNOOP\r\n"
        )
        self.assertEqual(
            reply.split(b"\r\n")[:4],
            [
                b"+OK Send your password",
                b"+OK Logged in",
                b"+OK 3 %d" % sum(map(len, MESSAGES)),
                b"+OK %d octets" % len(MESSAGES[0]),
            ],
        )
        self.assertTrue(reply.endswith(b"first\r\n.\r\n+OK\r\n"))

    def test_vanishedMessage(self) -> None:
        """A message another session expunged gets C{-ERR}, not silence."""
        session = Session()
        session.login()
        del session.folder.data[1]
        self.assertEqual(session.send(b"RETR 1\r\n"), b"-ERR Message 1 no longer exists\r\n")
        self.assertEqual(session.send(b"NOOP\r\n"), b"+OK\r\n")


class LimitTests(SynchronousTestCase):
    def test_lineTooLong(self) -> None:
        """An over-long line gets one C{-ERR} and is dropped; the session goes on."""
        session = Session(settings=POP3Settings(max_line_length=100))
        self.assertEqual(session.send(b"USER " + b"a" * 200 + b"\r\n"), b"-ERR Line too long\r\n")
        self.assertEqual(session.send(b"X" * 10000), b"-ERR Line too long\r\n")
        self.assertEqual(session.send(b"Y" * 100000), b"")
        self.assertLessEqual(len(session.server._input), 102)
        self.assertEqual(session.send(b"STAT\r\nNOOP\r\n"), b"-ERR Not logged in\r\n")
        session.login()

    def test_idleTimeout(self) -> None:
        """RFC 1939 autologout: C{-ERR}, close, and no deletions."""
        session = Session()
        session.login()
        session.send(b"DELE 1\r\n")
        session.clock.advance(599)
        self.assertFalse(session.transport.disconnecting)
        session.clock.advance(1)
        self.assertEqual(session.read(), b"-ERR Disconnected for inactivity\r\n")
        self.assertTrue(session.transport.disconnecting)
        session.server.connectionLost(None)
        self.assertEqual(session.folder.expunged, [])

    def test_failedLoginsAreDelayedThenRefused(self) -> None:
        auth = AuthSettings(failure_delay=2.0, max_failures=2)
        session = Session(auth=auth)
        session.server.dataReceived(b"USER " + USER + b"\r\nPASS wrong\r\nNOOP\r\n")
        self.assertEqual(session.read(), b"+OK Send your password\r\n")
        session.clock.advance(2)
        self.assertEqual(
            session.read(), b"-ERR [AUTH] Authentication failed\r\n-ERR Not logged in\r\n"
        )
        session.server.dataReceived(b"USER " + USER + b"\r\nPASS wrong\r\n")
        session.clock.advance(4)
        session.read()
        reply = session.send(b"USER " + USER + b"\r\nPASS " + PASSWORD + b"\r\n")
        self.assertEqual(
            reply.split(b"\r\n")[1], b"-ERR [SYS/TEMP] Too many failed logins, try again later"
        )

    def test_stalledTransferTimesOut(self) -> None:
        """A client that stops reading a response is dropped, with no C{-ERR} inside it."""
        session = Session(messages=[b"x" * 100000])
        session.login()
        session.server.dataReceived(b"RETR 1\r\n")
        session.read()
        session.clock.advance(600)
        self.assertTrue(session.transport.disconnecting)
        self.assertEqual(session.read(), b"")

    def test_inputWaitsAndReadsPauseWhileBusy(self) -> None:
        """
        Input behind a running command waits, and past 64 KiB reads pause,
        so a pipelining client cannot make the server buffer without bound.
        """
        session = Session(messages=[b"x" * 100000])
        session.login()
        session.server.dataReceived(b"RETR 1\r\n" + b"NOOP\r\n" * 5000)
        self.assertEqual(session.transport.producerState, "producing")
        session.server.dataReceived(b"NOOP\r\n" * 10000)
        self.assertEqual(session.transport.producerState, "paused")
        session.pump()
        self.assertEqual(session.transport.producerState, "producing")
        self.assertTrue(session.read().endswith(b"x\r\n.\r\n" + b"+OK\r\n" * 15000))


class InternalErrorTests(SynchronousTestCase):
    def test_noExceptionTextOnTheWire(self) -> None:
        class Broken(POP3Mailbox):
            def getUidl(self, i: int) -> bytes:
                raise RuntimeError("secret internals")

            def getMessage(self, i: int) -> BinaryIO:
                raise RuntimeError("secret internals")

        session = Session(mailbox=Broken)
        session.login()
        self.assertEqual(session.send(b"UIDL 1\r\n"), b"-ERR Internal error\r\n")
        self.assertEqual(session.send(b"RETR 1\r\n"), b"-ERR Internal error\r\n")
        self.assertEqual(session.send(b"NOOP\r\n"), b"+OK\r\n")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 2)

    def test_loginInternalError(self) -> None:
        """A realm that fails gets C{-ERR [SYS/TEMP]}; the client may try again later."""
        session = Session()
        session.server.portal.realm.requestAvatar = lambda *a: 1 / 0
        reply = session.send(b"USER " + USER + b"\r\nPASS " + PASSWORD + b"\r\nCAPA\r\n")
        self.assertEqual(reply.split(b"\r\n")[1], b"-ERR [SYS/TEMP] Internal error")
        self.assertTrue(reply.endswith(b"\r\n.\r\n"))
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_unreadableMessage(self) -> None:
        """
        A message file that cannot be read closes the session rather than
        corrupt it (a real transport pulls the first chunk at once).
        """

        class Unreadable(io.BytesIO):
            def read(self, size: int | None = -1) -> bytes:
                raise OSError("EIO")

        class Broken(POP3Mailbox):
            def getMessage(self, i: int) -> BinaryIO:
                return Unreadable()

        session = Session(mailbox=Broken)
        session.login()
        register = session.transport.registerProducer

        def registerAndPull(producer: Any, streaming: bool) -> None:
            register(producer, streaming)
            producer.resumeProducing()

        session.transport.registerProducer = registerAndPull  # type: ignore[method-assign]
        self.assertEqual(session.send(b"RETR 1\r\nNOOP\r\n").split(b"\r\n")[1:], [b""])
        self.assertTrue(session.transport.disconnecting)
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)


COMMANDS = [b"USER", b"PASS", b"APOP", b"AUTH", b"STLS", b"CAPA", b"STAT", b"LIST", b"UIDL"]
COMMANDS += [b"RETR", b"TOP", b"DELE", b"NOOP", b"RSET", b"LAST", b"list", b"PLAIN", b"*"]
ARGUMENTS = [b"1", b"0", b"-1", b"2", b"99999", b"x", b"", b" ", b"PLAIN", b"=", USER, PASSWORD]
MULTILINE = (b"CAPA", b"LIST", b"UIDL", b"RETR", b"TOP", b"AUTH")
LISTED = {b".", b"TOP", b"UIDL", b"RESP-CODES", b"AUTH-RESP-CODE", b"PIPELINING", b"STLS"}
LISTED |= {b"IMPLEMENTATION tmail"}

line = st.one_of(
    st.builds(
        lambda c, a: b" ".join([c, *a]),
        st.sampled_from(COMMANDS),
        st.lists(st.sampled_from(ARGUMENTS), max_size=3),
    ),
    st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")),
)


class FuzzTests(SynchronousTestCase):
    @settings(max_examples=150, deadline=None)
    @given(st.lists(line, max_size=25))
    def test_randomCommandLines(self, lines: list[bytes]) -> None:
        """
        Any command line gets C{+OK}, C{-ERR} (or a SASL C{+ } prompt) first,
        multi-line answers end with C{.}, and only QUIT ends the session.
        """
        session = Session(tls=True)
        session.login()
        for data in lines:
            reply = session.send(data + b"\r\n")
            if session.transport.disconnecting:
                self.assertEqual(data.strip(b" ").upper(), b"QUIT")
                break
            self.assertTrue(reply.endswith(b"\r\n"), (data, reply))
            first = reply.split(b"\r\n", 1)[0]
            self.assertTrue(
                first == b"+OK" or first.startswith((b"+OK ", b"-ERR ", b"+ ")), (data, reply)
            )
            if first.startswith(b"+OK") and data.split(b" ")[0].upper() in MULTILINE:
                argc = len(data.split())
                if argc == 1 or data.upper().startswith((b"RETR", b"TOP")) or data == b"AUTH":
                    self.assertTrue(reply.endswith(b"\r\n.\r\n"), (data, reply))
        self.assertEqual(self.flushLoggedErrors(), [])

    @settings(max_examples=100, deadline=None)
    @given(st.lists(line, max_size=25))
    def test_randomCommandLinesBeforeLogin(self, lines: list[bytes]) -> None:
        session = Session(tls=True, peer="192.0.2.7")
        session.server.dataReceived(b"".join(data + b"\r\n" for data in lines))
        session.pump()
        for reply in session.read().split(b"\r\n")[:-1]:
            self.assertTrue(reply.startswith((b"+OK", b"-ERR ", b"+ ")) or reply in LISTED, reply)
        self.assertEqual(self.flushLoggedErrors(), [])
