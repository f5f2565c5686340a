"""
Tests for L{tmail.smtp.server} driven over a C{StringTransport}, with an
in-memory realm whose store can be told to fail and a synchronous password
checker: command replies, limits, DATA checks, storage failures, AUTH and a
property test over random command lines.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.cred.portal import Portal
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import directlyProvides, implementer

from tmail.auth.throttle import AuthThrottle
from tmail.config.schema import AuthSettings, SenderCheck, SMTPSettings
from tmail.errors import NotHostedDomain, RecipientError, StoreFull, UnknownRecipient
from tmail.interfaces import IInsertablePendingMessage, IUserFields
from tmail.smtp.factory import SMTPFactory
from tmail.smtp.policy import ISMTPPolicy

DOMAIN = "example.test"
PASSWORD = b"secret-password"


@dataclass
class FakePending:
    folder: FakeFolder
    data: list[bytes] = field(default_factory=list)
    state: str = "open"

    def write(self, data: bytes) -> None:
        if self.folder.failWrite is not None:
            raise self.folder.failWrite
        self.data.append(data)

    def publish(self) -> None:
        """Nothing to make durable in memory; failures show at commit."""

    def commit(self) -> int:
        if self.folder.failCommit is not None:
            self.state = "aborted"
            raise self.folder.failCommit
        self.state = "committed"
        self.folder.stored.append(b"".join(self.data))
        return len(self.folder.stored)

    def abort(self) -> None:
        if self.state == "open":
            self.state = "aborted"


@implementer(IInsertablePendingMessage)
class FakeInsertablePending(FakePending):
    """A pending message that can insert into what it was given, as Maildir's can."""

    inserts: int = 0

    def insert(self, offset: int, data: bytes) -> None:
        written = b"".join(self.data)
        assert offset <= len(written)
        self.data = [written[:offset], data, written[offset:]]
        self.inserts += 1


@dataclass
class FakeFolder:
    stored: list[bytes] = field(default_factory=list)
    pending: list[FakePending] = field(default_factory=list)
    failBegin: BaseException | None = None
    failWrite: BaseException | None = None
    failCommit: BaseException | None = None
    #: Whether its pending messages provide IInsertablePendingMessage.
    insertable: bool = True

    def beginMessage(self, flags: Any = (), internaldate: Any = None) -> FakePending:
        if self.failBegin is not None:
            raise self.failBegin
        pending = FakeInsertablePending(self) if self.insertable else FakePending(self)
        self.pending.append(pending)
        return pending


@dataclass
class FakeStore:
    inbox: FakeFolder = field(default_factory=FakeFolder)
    failGetFolder: BaseException | None = None
    #: When set, getFolder answers with a Deferred that fires only when
    #: the test says (as a store working in a thread or over a network).
    held: list[Deferred[FakeFolder]] | None = None

    def getFolder(self, name: str) -> FakeFolder | Deferred[FakeFolder]:
        assert name == "INBOX"
        if self.failGetFolder is not None:
            raise self.failGetFolder
        if self.held is not None:
            answer: Deferred[FakeFolder] = Deferred()
            self.held.append(answer)
            return answer
        return self.inbox


@implementer(IUserFields)
class FakeDirectory:
    """Per-user extra fields, as the passwd file's C{userdb_} fields."""

    def __init__(self) -> None:
        self.fields: dict[str, dict[str, str]] = {}

    def userFields(self, address: str) -> dict[str, str]:
        return dict(self.fields.get(address.lower(), {}))


class FakeRealm:
    """Users C{alice} and C{bob}, alias C{team} (both), C{outside} (remote)."""

    def __init__(self) -> None:
        self.stores = {f"{u}@{DOMAIN}": FakeStore() for u in ("alice", "bob")}
        self.resolveError: BaseException | None = None
        self.directory = FakeDirectory()

    def storeFor(self, user: str) -> FakeStore:
        return self.stores[user]

    def inbox(self, user: str) -> FakeFolder:
        return self.stores[f"{user}@{DOMAIN}"].inbox

    def resolveRecipient(self, address: str) -> list[str]:
        if self.resolveError is not None:
            raise self.resolveError
        local, _, domain = address.lower().rpartition("@")
        if domain != DOMAIN:
            raise NotHostedDomain(domain)
        local = local.split("+", 1)[0]
        if local == "team":
            return [f"alice@{DOMAIN}", f"bob@{DOMAIN}"]
        if local == "outside":
            raise RecipientError("alias outside@example.test points outside\r\nthe hosted domains")
        if f"{local}@{DOMAIN}" in self.stores:
            return [f"{local}@{DOMAIN}"]
        raise UnknownRecipient(address)


def makeFactory(
    realm: FakeRealm,
    clock: Clock,
    *,
    submission: bool = False,
    tls: Any = None,
    policies: Sequence[ISMTPPolicy] = (),
    senderCheck: SenderCheck = "envelope+header",
    **limits: Any,
) -> SMTPFactory:
    """
    A factory with C{limits} as its settings, its greeting pause off and
    pipelining allowed (most tests here send several commands at once;
    those about these checks turn them on), timed by C{clock}.
    """
    checker = InMemoryUsernamePasswordDatabaseDontUse(**{f"alice@{DOMAIN}": PASSWORD})
    factory = SMTPFactory(
        realm,  # type: ignore[arg-type]
        SMTPSettings(**{"greet_pause": 0.0, "unauth_pipelining": "allow", **limits}),
        hostname="mx.example.test",
        submission=submission,
        portal=Portal(realm, [checker]),  # type: ignore[arg-type]
        tlsContextFactory=tls,
        throttle=AuthThrottle(AuthSettings(failure_delay=1.0, max_failures=3), clock),
        policies=policies,
        senderCheck=senderCheck,
        clock=clock,
    )
    factory.runInThread = maybeDeferred  # type: ignore[method-assign]
    return factory


class Session:
    """One connection to C{factory} over a C{StringTransport}."""

    def __init__(
        self, factory: SMTPFactory, clock: Clock, *, secure: bool = False, peer: str = "192.0.2.7"
    ) -> None:
        self.transport = StringTransport(
            hostAddress=IPv4Address("TCP", "192.0.2.1", 25),
            peerAddress=IPv4Address("TCP", peer, 40000),
        )
        if secure:
            directlyProvides(self.transport, ISSLTransport)
        self.protocol = factory.buildProtocol(None)
        self.protocol.callLater = clock.callLater
        self.protocol.makeConnection(self.transport)
        self.greeting = self.take()

    def take(self) -> list[bytes]:
        """The reply lines written since the last call."""
        lines = self.transport.value().split(b"\r\n")
        self.transport.clear()
        assert lines[-1] == b"", lines
        return lines[:-1]

    def send(self, data: bytes) -> list[bytes]:
        """Feed C{data}; return the reply lines it caused."""
        self.protocol.dataReceived(data)
        return self.take()

    def command(self, line: bytes) -> bytes:
        """Send one command line; return its (last) reply line."""
        replies = self.send(line + b"\r\n")
        assert replies, line
        return replies[-1]

    @property
    def closed(self) -> bool:
        return bool(self.transport.disconnecting)


def authenticate(session: Session, user: bytes = b"alice@example.test") -> bytes:
    return session.command(b"AUTH PLAIN " + base64.b64encode(b"\0" + user + b"\0" + PASSWORD))


#: A reply line: code, separator, and (except for 3xx) an enhanced status code.
REPLY = re.compile(rb"([245][0-9][0-9])([ -])([245]\.[0-9]{1,3}\.[0-9]{1,3}) [\x20-\x7e]*\Z")
CONTINUE = re.compile(rb"3[0-9][0-9] [\x20-\x7e]*\Z")

MESSAGE = b"Subject: hello\r\n\r\nbody line\r\n..leading dot\r\n"


def transaction(session: Session, *recipients: bytes, sender: bytes = b"s@remote.example") -> None:
    assert session.command(b"MAIL FROM:<" + sender + b">").startswith(b"250 2.1.0")
    for rcpt in recipients:
        assert session.command(b"RCPT TO:<" + rcpt + b">").startswith(b"250 2.1.5")


class SessionTestCase(SynchronousTestCase):
    submission = False
    secure = False

    def setUp(self) -> None:
        self.clock = Clock()
        self.realm = FakeRealm()
        self.factory = makeFactory(self.realm, self.clock, submission=self.submission)
        self.session = self.connect()

    def connect(self, **kwargs: Any) -> Session:
        session = Session(self.factory, self.clock, secure=self.secure, **kwargs)
        self.addCleanup(session.protocol.connectionLost, None)
        return session

    def ehlo(self, session: Session | None = None) -> list[bytes]:
        return (session or self.session).send(b"EHLO client.example.org\r\n")


class CommandReplyTests(SessionTestCase):
    def test_greetingAndExtensions(self) -> None:
        """The greeting names the host; EHLO lists what the MX offers."""
        self.assertEqual(self.session.greeting, [b"220 mx.example.test ESMTP tmail"])
        self.assertEqual(
            self.ehlo(),
            [
                b"250-mx.example.test",
                b"250-PIPELINING",
                b"250-SIZE 26214400",
                b"250-8BITMIME",
                b"250-ENHANCEDSTATUSCODES",
                b"250-SMTPUTF8",
                b"250-CHUNKING",
                b"250-BINARYMIME",
                b"250-DSN",
                b"250 HELP",
            ],
        )

    def test_simpleCommands(self) -> None:
        """NOOP, RSET, VRFY, EXPN, HELP, unknown commands, QUIT."""
        s = self.session
        self.assertEqual(s.command(b"NOOP"), b"250 2.0.0 Ok")
        self.assertEqual(s.command(b"RSET"), b"250 2.0.0 Ok")
        self.assertEqual(s.command(b"RSET now"), b"501 5.5.4 Syntax: RSET")
        self.assertTrue(s.command(b"VRFY alice").startswith(b"252 2.5.2 "))
        self.assertTrue(s.command(b"EXPN team").startswith(b"252 2.5.2 "))
        self.assertTrue(s.command(b"VRFY").startswith(b"501 5.5.4 "))
        self.assertTrue(s.command(b"HELP").startswith(b"214 2.0.0 "))
        self.assertEqual(s.command(b"XYZZY"), b"500 5.5.2 Error: command not recognized")
        self.assertEqual(s.command(b"UNKNOWN"), b"500 5.5.2 Error: command not recognized")
        self.assertEqual(s.command(b"\xff\xfe"), b"500 5.5.2 Error: command not recognized")
        self.assertEqual(s.command(b""), b"500 5.5.2 Error: bad syntax")
        self.assertEqual(s.command(b"EHLO"), b"501 5.5.4 Syntax: EHLO hostname")
        self.assertEqual(s.command(b"HELO client.example.org"), b"250 mx.example.test")
        self.assertEqual(s.command(b"QUIT"), b"221 2.0.0 Bye")
        self.assertTrue(s.closed)

    def test_commandsOutOfOrder(self) -> None:
        """MAIL needs HELO/EHLO, RCPT needs MAIL, DATA needs RCPT; no nested MAIL."""
        s = self.session
        self.assertEqual(
            s.command(b"MAIL FROM:<a@remote.example>"), b"503 5.5.1 Error: send HELO/EHLO first"
        )
        self.ehlo()
        self.assertEqual(
            s.command(b"RCPT TO:<alice@example.test>"), b"503 5.5.1 Error: need MAIL command"
        )
        self.assertEqual(s.command(b"DATA"), b"503 5.5.1 Error: need MAIL command")
        self.assertEqual(s.command(b"MAIL FROM:<a@remote.example>"), b"250 2.1.0 Ok")
        self.assertEqual(
            s.command(b"MAIL FROM:<a@remote.example>"), b"503 5.5.1 Error: nested MAIL command"
        )
        self.assertEqual(s.command(b"DATA"), b"503 5.5.1 Error: need RCPT command")
        self.assertEqual(
            s.command(b"MAIL FROM:<a@remote.example> FOO=1"),
            b"503 5.5.1 Error: nested MAIL command",
        )

    def test_badSyntax(self) -> None:
        """Malformed MAIL and RCPT are C{501 5.5.4}."""
        self.ehlo()
        self.assertTrue(self.session.command(b"MAIL FROM:<a@b").startswith(b"501 5.5.4 "))
        self.assertTrue(self.session.command(b"MAIL TO:<a@b>").startswith(b"501 5.5.4 "))
        transaction(self.session)
        self.assertTrue(self.session.command(b"RCPT FROM:<a@b>").startswith(b"501 5.5.4 "))
        self.assertTrue(self.session.command(b"DATA now").startswith(b"501 5.5.4 "))

    def test_recipients(self) -> None:
        """Local users are accepted; unknown users, other domains and bad aliases are not."""
        self.ehlo()
        transaction(
            self.session, b"alice@example.test", b"bob+tag@example.test", b"team@example.test"
        )
        s = self.session
        self.assertEqual(
            s.command(b"RCPT TO:<carol@example.test>"),
            b"550 5.1.1 Recipient address rejected: User unknown",
        )
        self.assertEqual(
            s.command(b"RCPT TO:<victim@elsewhere.example>"), b"550 5.7.1 Relaying denied"
        )
        self.assertEqual(
            s.command(b"RCPT TO:<user%elsewhere.example@example.test>"),
            b"550 5.1.1 Recipient address rejected: User unknown",
        )
        self.assertEqual(
            s.command(b"RCPT TO:<@example.test:victim@elsewhere.example>"),
            b"550 5.7.1 Relaying denied",
        )
        reply = s.command(b"RCPT TO:<outside@example.test>")
        self.assertTrue(
            reply.startswith(b"550 5.1.2 alias outside@example.test points outside"), reply
        )

    def test_internalErrorsHideDetails(self) -> None:
        """An unexpected exception is logged and answered C{451 4.3.0} without its text."""
        self.ehlo()
        transaction(self.session)
        self.realm.resolveError = ZeroDivisionError("secret detail")
        reply = self.session.command(b"RCPT TO:<alice@example.test>")
        self.assertEqual(reply, b"451 4.3.0 Internal error")
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.realm.resolveError = None
        self.assertEqual(self.session.command(b"RCPT TO:<alice@example.test>"), b"250 2.1.5 Ok")

    def test_bareLineEndInCommand(self) -> None:
        """A bare CR or LF inside a command line is refused, not interpreted."""
        self.assertEqual(
            self.session.command(b"EHLO x\nBcc: victim@example.org"),
            b"500 5.5.2 Bare <CR> or <LF> in command",
        )
        self.assertEqual(
            self.session.command(b"NOOP\rRSET"), b"500 5.5.2 Bare <CR> or <LF> in command"
        )

    def test_pipelinedRepliesInOrder(self) -> None:
        """MAIL, RCPT, RCPT, DATA in one write get four replies in order (PIPELINING)."""
        self.ehlo()
        replies = self.session.send(
            b"MAIL FROM:<s@remote.example>\r\nRCPT TO:<alice@example.test>\r\n"
            b"RCPT TO:<nobody@example.test>\r\nDATA\r\n" + MESSAGE + b".\r\nNOOP\r\n"
        )
        self.assertEqual([r[:3] for r in replies], [b"250", b"250", b"550", b"354", b"250", b"250"])
        self.assertEqual(len(self.realm.inbox("alice").stored), 1)


class DeliveryTests(SessionTestCase):
    def test_storedBytes(self) -> None:
        """Trace headers, then the dot-unstuffed body with CRLF line ends."""
        self.ehlo()
        transaction(self.session, b"alice+news@example.test")
        self.assertTrue(self.session.command(b"DATA").startswith(b"354 "))
        reply = self.session.send(MESSAGE + b".\r\n")
        self.assertEqual(len(reply), 1)
        self.assertTrue(reply[0].startswith(b"250 2.0.0 Ok: queued as "))
        queueID = reply[0].rsplit(b" ", 1)[1]
        [stored] = self.realm.inbox("alice").stored
        head, body = stored.split(b"Subject: hello\r\n", 1)
        self.assertEqual(body, b"\r\nbody line\r\n.leading dot\r\n")
        self.assertRegex(
            head,
            rb"\AReturn-Path: <s@remote\.example>\r\n"
            rb"Delivered-To: alice@example\.test\r\n"
            rb"Received: from client\.example\.org \(192\.0\.2\.7 \[192\.0\.2\.7\]\)\r\n"
            rb"\tby mx\.example\.test \(tmail\) with ESMTP id " + queueID + rb"\r\n"
            rb"\tfor <alice\+news@example\.test>; [A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} "
            rb"\d\d:\d\d:\d\d [+-]\d{4}\r\n\Z",
        )

    def test_aliasFansOutOncePerUser(self) -> None:
        """An alias reaches each user once, even when a user is also named directly."""
        self.ehlo()
        transaction(
            self.session, b"alice@example.test", b"team@example.test", b"alice@example.test"
        )
        self.session.command(b"DATA")
        self.assertTrue(self.session.send(MESSAGE + b".\r\n")[0].startswith(b"250 "))
        [toAlice] = self.realm.inbox("alice").stored
        [toBob] = self.realm.inbox("bob").stored
        self.assertIn(b"for <alice@example.test>;", toAlice)
        self.assertIn(b"Delivered-To: bob@example.test\r\n", toBob)
        self.assertIn(b"for <team@example.test>;", toBob)

    def test_headerlessBodyGetsSeparator(self) -> None:
        """A body without headers is kept apart from the trace headers by an empty line."""
        self.ehlo()
        transaction(self.session, b"alice@example.test")
        self.session.command(b"DATA")
        self.session.send(b"just text\r\n.\r\n")
        [stored] = self.realm.inbox("alice").stored
        self.assertTrue(stored.endswith(b"\r\n\r\njust text\r\n"))

    def test_nullSenderAndHelo(self) -> None:
        """A bounce (C{MAIL FROM:<>}) after HELO is received C{with SMTP}."""
        self.session.command(b"HELO client.example.org")
        transaction(self.session, b"bob@example.test", sender=b"")
        self.session.command(b"DATA")
        self.session.send(MESSAGE + b".\r\n")
        [stored] = self.realm.inbox("bob").stored
        self.assertTrue(stored.startswith(b"Return-Path: <>\r\n"))
        self.assertIn(b" with SMTP id ", stored)

    def test_invalidHeloIsNotCopied(self) -> None:
        """A HELO argument that is not a host name is replaced in the Received header."""
        self.session.command(b"EHLO a;b Bcc: victim@example.org")
        transaction(self.session, b"bob@example.test")
        self.session.command(b"DATA")
        self.session.send(MESSAGE + b".\r\n")
        [stored] = self.realm.inbox("bob").stored
        self.assertIn(b"Received: from invalid (192.0.2.7 [192.0.2.7])\r\n", stored)
        self.assertNotIn(b"victim", stored)


class StorageFailureTests(SessionTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.ehlo()
        transaction(self.session, b"alice@example.test", b"bob@example.test")

    def pendings(self) -> list[FakePending]:
        return self.realm.inbox("alice").pending + self.realm.inbox("bob").pending

    def test_fullAtBegin(self) -> None:
        """C{StoreFull} when a message cannot even start is C{452 4.3.1} at DATA."""
        self.realm.inbox("bob").failBegin = StoreFull("disk full")
        self.assertEqual(self.session.command(b"DATA"), b"452 4.3.1 Insufficient system storage")
        self.assertEqual([p.state for p in self.pendings()], ["aborted"])
        self.assertEqual(self.session.command(b"NOOP"), b"250 2.0.0 Ok")

    def test_fullAtWrite(self) -> None:
        """C{StoreFull} while writing is reported after the data; nothing is stored."""
        self.realm.inbox("alice").failWrite = StoreFull("disk full")
        self.session.command(b"DATA")
        self.assertEqual(
            self.session.send(MESSAGE + b".\r\n"), [b"452 4.3.1 Insufficient system storage"]
        )
        self.assertEqual([p.state for p in self.pendings()], ["aborted", "aborted"])
        self.assertEqual(self.realm.inbox("bob").stored, [])

    def test_fullAtCommit(self) -> None:
        """C{StoreFull} from the first commit aborts every copy."""
        self.realm.inbox("alice").failCommit = StoreFull("disk full")
        self.session.command(b"DATA")
        self.assertEqual(
            self.session.send(MESSAGE + b".\r\n"), [b"452 4.3.1 Insufficient system storage"]
        )
        self.assertEqual([p.state for p in self.pendings()], ["aborted", "aborted"])

    def test_otherErrorAtCommit(self) -> None:
        """
        Any other error is C{451 4.3.0}, logged; copies not yet committed are
        aborted (an earlier user's copy stays: the retry duplicates it).
        """
        self.realm.inbox("bob").failCommit = OSError("EIO")
        self.session.command(b"DATA")
        self.assertEqual(
            self.session.send(MESSAGE + b".\r\n"),
            [b"451 4.3.0 Internal error"],
        )
        self.assertEqual([p.state for p in self.pendings()], ["committed", "aborted"])
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)

    def test_connectionLostInData(self) -> None:
        """A client that goes away during DATA leaves nothing behind."""
        self.session.command(b"DATA")
        self.session.send(b"Subject: x\r\n\r\npartial")
        self.session.protocol.connectionLost(None)
        self.assertEqual([p.state for p in self.pendings()], ["aborted", "aborted"])


class SlowStoreTests(SessionTestCase):
    """A store that answers later: RCPT waits for the INBOX, DATA for the commit."""

    def test_rcpt_waits_for_the_inbox_and_pipelined_commands_wait_behind_it(self) -> None:
        held: list[Deferred[FakeFolder]] = []
        self.realm.stores[f"bob@{DOMAIN}"].held = held
        self.ehlo()
        self.assertEqual(
            self.session.send(
                b"MAIL FROM:<s@remote.example>\r\nRCPT TO:<bob@example.test>\r\n"
                b"RCPT TO:<alice@example.test>\r\nNOOP\r\n"
            ),
            [b"250 2.1.0 Ok"],
        )
        [answer] = held
        answer.callback(self.realm.inbox("bob"))
        self.assertEqual(self.session.take(), [b"250 2.1.5 Ok", b"250 2.1.5 Ok", b"250 2.0.0 Ok"])
        self.session.command(b"DATA")
        self.assertEqual(self.session.send(MESSAGE + b".\r\n")[-1][:20], b"250 2.0.0 Ok: queued")
        self.assertEqual(len(self.realm.inbox("bob").stored), 1)
        self.assertEqual(len(self.realm.inbox("alice").stored), 1)

    def test_a_full_disk_when_the_inbox_is_found_refuses_the_recipient(self) -> None:
        self.realm.stores[f"bob@{DOMAIN}"].failGetFolder = StoreFull("disk full")
        self.ehlo()
        transaction(self.session)
        self.assertEqual(
            self.session.command(b"RCPT TO:<bob@example.test>"),
            b"452 4.3.1 Insufficient system storage",
        )
        self.assertEqual(self.session.command(b"RCPT TO:<alice@example.test>"), b"250 2.1.5 Ok")

    def test_another_error_when_the_inbox_is_found_is_an_internal_error(self) -> None:
        self.realm.stores[f"bob@{DOMAIN}"].failGetFolder = OSError("EIO")
        self.ehlo()
        transaction(self.session)
        self.assertEqual(
            self.session.command(b"RCPT TO:<bob@example.test>"), b"451 4.3.0 Internal error"
        )
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)
        self.assertEqual(self.session.command(b"NOOP"), b"250 2.0.0 Ok")

    def test_data_is_answered_once_the_commit_fires(self) -> None:
        folder = self.realm.inbox("alice")
        commits: list[Deferred[int]] = []
        self.ehlo()
        transaction(self.session, b"alice@example.test")
        self.session.command(b"DATA")
        [pending] = folder.pending
        committed = pending.commit

        def later() -> Deferred[int]:
            answer: Deferred[int] = Deferred()
            commits.append(answer)
            return answer

        pending.commit = later  # type: ignore[method-assign]
        self.assertEqual(self.session.send(MESSAGE + b".\r\nNOOP\r\n"), [])
        [answer] = commits
        answer.callback(committed())
        replies = self.session.take()
        self.assertEqual(len(replies), 2)
        self.assertTrue(replies[0].startswith(b"250 2.0.0 Ok: queued as "), replies)
        self.assertEqual(replies[1], b"250 2.0.0 Ok")


class LimitTests(SessionTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.realm = FakeRealm()
        self.factory = makeFactory(
            self.realm,
            self.clock,
            max_message_size=1000,
            max_recipients=2,
            max_line_length=100,
            max_errors=5,
            timeout=30.0,
            max_connections_per_address=2,
        )
        self.session = self.connect()

    def test_declaredSizeTooBig(self) -> None:
        """C{SIZE=} over the limit is refused at MAIL."""
        self.ehlo()
        self.assertEqual(
            self.session.command(b"MAIL FROM:<a@remote.example> SIZE=1001"),
            b"552 5.3.4 Message size exceeds fixed maximum message size",
        )
        self.assertEqual(
            self.session.command(b"MAIL FROM:<a@remote.example> SIZE=1000"), b"250 2.1.0 Ok"
        )

    def test_dataTooBig(self) -> None:
        """A message over the limit is refused at its end and never fully held."""
        self.ehlo()
        transaction(self.session, b"alice@example.test")
        self.session.command(b"DATA")
        replies = self.session.send((b"x" * 98 + b"\r\n") * 11)
        self.assertEqual(replies, [])
        [pending] = self.realm.inbox("alice").pending
        self.assertEqual(pending.state, "aborted")
        self.assertEqual(self.session.send((b"x" * 98 + b"\r\n") * 200), [])
        self.assertEqual(
            self.session.send(b".\r\n"),
            [b"552 5.3.4 Message size exceeds fixed maximum message size"],
        )
        self.assertEqual(self.realm.inbox("alice").stored, [])
        self.assertEqual(self.session.command(b"NOOP"), b"250 2.0.0 Ok")

    def test_tooManyRecipients(self) -> None:
        """Recipients past C{max_recipients} get C{452 4.5.3}."""
        self.ehlo()
        transaction(self.session, b"alice@example.test", b"bob@example.test")
        self.assertEqual(
            self.session.command(b"RCPT TO:<team@example.test>"), b"452 4.5.3 Too many recipients"
        )

    def test_longCommandLine(self) -> None:
        """An over-long command line is answered once and its rest is never run."""
        replies = self.session.send(b"NOOP " + b"x" * 200 + b"\r\nNOOP\r\n")
        self.assertEqual(replies, [b"500 5.5.2 Line too long", b"250 2.0.0 Ok"])

    def test_nothing_is_answered_after_quit(self) -> None:
        """An over-long line pipelined after QUIT gets no reply after the 221."""
        replies = self.session.send(b"QUIT\r\n" + b"x" * 200)
        self.assertEqual(replies, [b"221 2.0.0 Bye"])
        self.assertTrue(self.session.closed)

    def test_nothing_is_answered_after_too_many_errors(self) -> None:
        """The 421 for too many errors is the last reply, whatever follows it."""
        replies = self.session.send(b"BOGUS\r\n" * 5 + b"x" * 200)
        self.assertEqual(replies[-1][:4], b"421 ")
        self.assertEqual([r for r in replies if r.startswith(b"421")], [replies[-1]])
        self.assertNotIn(b"500 5.5.2 Line too long", replies)

    def test_unterminatedLineDoesNotGrowBuffer(self) -> None:
        """20 KB without CRLF are answered once and not kept; the tail is skipped."""
        replies = self.session.send(b"RSET" + b"x" * 20000)
        self.assertEqual(replies, [b"500 5.5.2 Line too long"])
        self.assertLessEqual(len(self.session.protocol._buffer), 1)
        self.assertEqual(self.session.send(b"y" * 20000 + b"\r"), [])
        self.assertEqual(self.session.send(b"\nNOOP\r\n"), [b"250 2.0.0 Ok"])

    def test_long_data_line_does_not_turn_body_into_commands(self) -> None:
        """
        An over-long line inside DATA rejects the message; the lines after it
        stay message data (Twisted returned to command mode and ran them).
        """
        self.ehlo()
        transaction(self.session, b"alice@example.test")
        self.session.command(b"DATA")
        replies = self.session.send(
            b"Subject: x\r\n\r\n" + b"y" * 150 + b"\r\nRSET\r\nMAIL FROM:<evil@remote.example>\r\n"
            b"RCPT TO:<bob@example.test>\r\nDATA\r\nsmuggled\r\n.\r\n"
        )
        self.assertEqual(replies, [b"552 5.3.4 Message line too long"])
        self.assertEqual(self.realm.inbox("alice").stored, [])
        self.assertEqual(self.realm.inbox("bob").stored, [])
        transaction(self.session, b"bob@example.test")
        self.session.command(b"DATA")
        self.assertTrue(self.session.send(MESSAGE + b".\r\n")[0].startswith(b"250 2.0.0"))

    def test_longDataLineSplitAcrossWrites(self) -> None:
        """A long DATA line arriving in pieces is skipped up to its CRLF, still as data."""
        self.ehlo()
        transaction(self.session, b"alice@example.test")
        self.session.command(b"DATA")
        self.assertEqual(self.session.send(b"z" * 150), [])
        self.assertEqual(self.session.send(b"QUIT\r\nQUIT\r\n"), [])
        self.assertFalse(self.session.closed)
        self.assertEqual(self.session.send(b".\r\n"), [b"552 5.3.4 Message line too long"])

    def test_tooManyErrors(self) -> None:
        """The C{max_errors}th error is followed by C{421 4.7.0} and a hang-up."""
        replies = self.session.send(b"BAD\r\n" * 4)
        self.assertEqual(len(replies), 4)
        self.assertFalse(self.session.closed)
        replies = self.session.send(b"BAD\r\nNOOP\r\n")
        self.assertEqual(
            replies,
            [
                b"500 5.5.2 Error: command not recognized",
                b"421 4.7.0 mx.example.test Error: too many errors",
            ],
        )
        self.assertTrue(self.session.closed)

    def test_timeout(self) -> None:
        """A silent client gets C{421 4.4.2} and is disconnected."""
        self.clock.advance(29)
        self.session.send(b"NOOP\r\n")
        self.clock.advance(29)
        self.assertFalse(self.session.closed)
        self.clock.advance(2)
        self.assertEqual(
            self.session.take(), [b"421 4.4.2 mx.example.test Error: timeout exceeded"]
        )
        self.assertTrue(self.session.closed)

    def test_connectionsPerAddress(self) -> None:
        """A third concurrent session from one address is refused; others are not."""
        second = self.connect()
        third = self.connect()
        self.assertEqual(third.greeting, [b"421 4.7.0 Too many connections from your address"])
        self.assertTrue(third.closed)
        third.protocol.connectionLost(None)
        other = self.connect(peer="192.0.2.8")
        self.assertTrue(other.greeting[0].startswith(b"220 "))
        second.protocol.connectionLost(None)
        self.assertTrue(self.connect().greeting[0].startswith(b"220 "))


class SmugglingTests(SessionTestCase):
    """
    Every ending of hannob/smtpsmug: a bare CR or LF around the dot never
    ends the message; the message is refused and no second one appears.
    """

    ENDINGS = (
        b"\n.\n",
        b"\r.\r",
        b"\r.\n",
        b"\n.\r",
        b"\n.\r\n",
        b"\r\n.\n",
        b"\r.\r\n",
        b"\r\n.\r",
    )

    def smuggle(self, ending: bytes) -> list[bytes]:
        self.ehlo()
        transaction(self.session, b"alice@example.test")
        self.session.command(b"DATA")
        return self.session.send(
            b"Subject: first\r\n\r\nhello" + ending + b"MAIL FROM:<evil@remote.example>\r\n"
            b"RCPT TO:<bob@example.test>\r\nDATA\r\nSubject: smuggled\r\n\r\nboo\r\n.\r\nNOOP\r\n"
        )

    def test_smtp_smuggling_bare_lf_dot(self) -> None:
        """C{\\n.\\n} and every other variant: one refusal, nothing stored."""
        for ending in self.ENDINGS:
            self.setUp()
            replies = self.smuggle(ending)
            self.assertEqual(
                replies, [b"550 5.5.2 Bare <CR> or <LF> received", b"250 2.0.0 Ok"], ending
            )
            self.assertEqual(self.realm.inbox("alice").stored, [], ending)
            self.assertEqual(self.realm.inbox("bob").stored, [], ending)


class PlaintextSubmissionTests(SessionTestCase):
    submission = True

    def test_noAuthWithoutTLS(self) -> None:
        """Without TLS, AUTH is neither offered nor accepted, and MAIL needs AUTH."""
        self.assertNotIn(b"AUTH", b"".join(self.ehlo()))
        self.assertEqual(
            authenticate(self.session),
            b"538 5.7.11 Encryption required for requested authentication mechanism",
        )
        self.assertEqual(
            self.session.command(b"MAIL FROM:<alice@example.test>"),
            b"530 5.7.0 Authentication required",
        )
        self.assertEqual(self.session.command(b"STARTTLS"), b"454 4.7.0 TLS not available")

    def test_noAuthOnMX(self) -> None:
        """The MX never offers AUTH, even over TLS."""
        factory = makeFactory(self.realm, self.clock, submission=False)
        session = Session(factory, self.clock, secure=True)
        self.assertNotIn(b"AUTH", b"".join(self.ehlo(session)))
        self.assertEqual(authenticate(session), b"503 5.5.1 Error: authentication not enabled")


class SubmissionTests(SessionTestCase):
    submission = True
    secure = True

    def test_extensionsOverTLS(self) -> None:
        """Over TLS: AUTH at once, no STARTTLS (RFC 8314 implicit TLS)."""
        lines = self.ehlo()
        self.assertEqual(lines[-1], b"250 AUTH PLAIN LOGIN")
        self.assertNotIn(b"STARTTLS", b"".join(lines))
        self.assertEqual(self.session.command(b"STARTTLS"), b"503 5.5.1 Error: TLS already active")

    def test_authenticatedSubmission(self) -> None:
        """
        An authenticated user may send to local users; without an outbound
        queue, remote recipients are refused.
        """
        self.ehlo()
        self.assertEqual(authenticate(self.session), b"235 2.7.0 Authentication successful")
        self.assertEqual(
            self.session.command(b"AUTH PLAIN"), b"503 5.5.1 Error: already authenticated"
        )
        transaction(self.session, b"bob@example.test", sender=b"alice@example.test")
        self.assertEqual(
            self.session.command(b"RCPT TO:<friend@elsewhere.example>"),
            b"550 5.7.1 Relaying denied",
        )
        self.session.command(b"DATA")
        self.assertTrue(self.session.send(MESSAGE + b".\r\n")[0].startswith(b"250 2.0.0 "))
        [stored] = self.realm.inbox("bob").stored
        self.assertIn(b" with ESMTPSA id ", stored)

    def test_authLogin(self) -> None:
        """LOGIN prompts for user name and password."""
        self.ehlo()
        self.assertEqual(self.session.command(b"AUTH LOGIN"), b"334 VXNlcm5hbWU6")
        self.assertEqual(
            self.session.command(base64.b64encode(b"alice@example.test")), b"334 UGFzc3dvcmQ6"
        )
        self.assertEqual(
            self.session.command(base64.b64encode(PASSWORD)), b"235 2.7.0 Authentication successful"
        )

    def test_authPlainWithChallenge(self) -> None:
        """PLAIN without an initial response gets an empty challenge."""
        self.ehlo()
        self.assertEqual(self.session.command(b"AUTH PLAIN"), b"334 ")
        self.assertEqual(
            self.session.command(base64.b64encode(b"\0alice@example.test\0" + PASSWORD)),
            b"235 2.7.0 Authentication successful",
        )

    def test_authSyntax(self) -> None:
        """Bare AUTH, unknown mechanisms, aborts and bad base64."""
        self.ehlo()
        s = self.session
        self.assertEqual(s.command(b"AUTH"), b"501 5.5.4 Syntax: AUTH mechanism [initial-response]")
        self.assertEqual(s.command(b"AUTH CRAM-MD5"), b"504 5.5.4 Unrecognized authentication type")
        s.command(b"AUTH LOGIN")
        self.assertEqual(s.command(b"*"), b"501 5.7.0 Authentication aborted")
        s.command(b"AUTH PLAIN")
        self.assertEqual(s.command(b"!!!"), b"501 5.5.2 Malformed authentication response")
        self.assertEqual(
            s.command(b"AUTH PLAIN " + base64.b64encode(b"x\0y\0z")),
            b"501 5.5.2 Malformed authentication response",
        )
        self.assertEqual(s.command(b"NOOP"), b"250 2.0.0 Ok")

    def test_failureIsDelayedAndOrdered(self) -> None:
        """
        A wrong password is answered only when the throttle allows, and a
        command pipelined behind it is answered after that.
        """
        self.ehlo()
        bad = base64.b64encode(b"\0alice@example.test\0wrong")
        self.assertEqual(self.session.send(b"AUTH PLAIN " + bad + b"\r\nNOOP\r\n"), [])
        self.clock.advance(1)
        self.assertEqual(
            self.session.take(), [b"535 5.7.8 Authentication credentials invalid", b"250 2.0.0 Ok"]
        )

    def test_blockedAfterTooManyFailures(self) -> None:
        """After C{max_failures}, AUTH is refused without checking the password."""
        self.ehlo()
        bad = base64.b64encode(b"\0alice@example.test\0wrong")
        for _ in range(3):
            self.session.send(b"AUTH PLAIN " + bad + b"\r\n")
            self.clock.advance(10)
            self.assertEqual(self.session.take(), [b"535 5.7.8 Authentication credentials invalid"])
        self.assertEqual(
            authenticate(self.session), b"454 4.7.0 Too many failed authentications, try later"
        )
        other = self.connect(peer="192.0.2.99")
        self.ehlo(other)
        self.assertEqual(authenticate(other), b"235 2.7.0 Authentication successful")


_VERBS = [
    b"HELO",
    b"EHLO",
    b"MAIL",
    b"RCPT",
    b"DATA",
    b"RSET",
    b"NOOP",
    b"VRFY",
    b"EXPN",
    b"HELP",
    b"STARTTLS",
    b"AUTH",
    b"BDAT",
    b"mail",
    b".",
]
_ARGUMENTS = [
    b"FROM:<s@remote.example>",
    b"TO:<alice@example.test>",
    b"TO:<team@example.test>",
    b"TO:<x@elsewhere.example>",
    b"FROM:<>",
    b"FROM:<a@b> SIZE=99999999999",
    b"PLAIN",
    b"LOGIN",
    b"PLAIN " + base64.b64encode(b"\0alice@example.test\0" + PASSWORD),
    b"PLAIN " + base64.b64encode(b"\0alice@example.test\0nope"),
    b"client.example",
    b"*",
]
_LINE = st.one_of(
    st.binary(max_size=40),
    st.builds(lambda v, a: v + b" " + a, st.sampled_from(_VERBS), st.sampled_from(_ARGUMENTS)),
    st.builds(lambda v, a: v + b" " + a, st.sampled_from(_VERBS), st.binary(max_size=30)),
    st.sampled_from(_VERBS),
).filter(lambda line: b"\r\n" not in line and not line.strip().upper().startswith(b"QUIT"))


class RandomCommandTests(SynchronousTestCase):
    @settings(max_examples=150, deadline=None)
    @given(st.lists(_LINE, max_size=25), st.booleans(), st.booleans())
    def test_repliesAreAlwaysWellFormed(
        self, lines: list[bytes], submission: bool, secure: bool
    ) -> None:
        """
        Whatever lines a client sends, every reply has a code and (outside
        the greeting, HELO/EHLO and 3xx) an enhanced status code; nothing is
        logged as unexpected; and the session still answers afterwards.
        """
        clock = Clock()
        factory = makeFactory(FakeRealm(), clock, submission=submission, max_errors=10**6)
        session = Session(factory, clock, secure=secure)
        ehloLines = set(self.ehloLines(factory, clock, secure))
        session.protocol.dataReceived(b"".join(line + b"\r\n" for line in lines))
        session.protocol.dataReceived(b"\r\n.\r\n*\r\nRSET\r\nNOOP\r\n")
        for _ in range(5):
            clock.advance(20)
        output = session.transport.value()
        self.assertTrue(output.endswith(b"\r\n250 2.0.0 Ok\r\n"), output[-200:])
        self.assertFalse(session.closed)
        self.assertEqual(self.flushLoggedErrors(), [])
        self.assertNotIn(b"Traceback", output)
        for reply in output.split(b"\r\n")[:-1]:
            if reply in ehloLines or CONTINUE.match(reply):
                continue
            match = REPLY.match(reply)
            self.assertIsNotNone(match, reply)
            assert match is not None
            self.assertEqual(match.group(1)[:1], match.group(3)[:1], reply)
        session.protocol.connectionLost(None)

    def ehloLines(self, factory: SMTPFactory, clock: Clock, secure: bool) -> list[bytes]:
        session = Session(factory, clock, secure=secure)
        lines = session.send(b"HELO x\r\nEHLO x\r\n")
        session.protocol.connectionLost(None)
        return lines
