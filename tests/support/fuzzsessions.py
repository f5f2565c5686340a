"""
In-process sessions of every protocol for fuzzing, each brought into a
named state before the fuzzed input arrives: the real protocol classes and
factories over a C{StringTransport}, a fake clock, and a real realm on a
fresh copy of the L{MailWorld}.

A session takes the input, runs everything it scheduled, then gets out of
whatever state the input left it in (the rest of a literal or chunk, the end
of DATA, C{DONE} after IDLE, C{*} for a SASL exchange) and is asked for a
NOOP: it must answer, or have closed with a goodbye.  Its whole output is
then checked against the protocol's reply grammar (L{support.replies}).
"""

from __future__ import annotations

import base64
import zlib
from dataclasses import dataclass, field
from typing import Any, ClassVar

from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.cred.portal import Portal
from twisted.internet.address import IPv4Address
from twisted.internet.defer import maybeDeferred
from twisted.internet.interfaces import ISSLTransport, ITLSTransport
from twisted.internet.task import Clock, Cooperator
from twisted.internet.testing import StringTransport
from zope.interface import alsoProvides, directlyProvides, implementer

from support.realm import ALICE, BOB, PASSWORD, RealmFixture
from support.replies import Transcript, checkIMAP, checkPOP3, checkSMTP
from tmail.auth.throttle import AuthThrottle
from tmail.config.schema import (
    AuthSettings,
    IMAPSettings,
    LMTPSettings,
    POP3Settings,
    SMTPSettings,
    SubmissionSettings,
)
from tmail.imap.factory import IMAPFactory
from tmail.pop3.server import POP3Server
from tmail.queue.outbox import Outbox
from tmail.queue.store import QueueStore, queueDirectory
from tmail.smtp.factory import SMTPFactory
from tmail.smtp.lmtp import LMTPFactory

HOSTNAME = "mx.example.test"
#: Bytes of a literal, chunk or message the recovery will still send to
#: finish what the input began; past that the session is left waiting.
RECOVERY_LIMIT = 1024 * 1024
#: Clock turns a session may take to settle after one write.
MAX_TURNS = 100_000

#: A context factory the fake TLS transport never uses.
FAKE_TLS: Any = object()


@implementer(ITLSTransport)
class TLSStringTransport(StringTransport):
    """A C{StringTransport} whose C{startTLS} succeeds at once: from then on it counts as TLS."""

    def startTLS(self, contextFactory: object) -> None:
        alsoProvides(self, ISSLTransport)


class Unsettled(AssertionError):
    """A session kept scheduling work without end after one input."""


@dataclass
class Outcome:
    """What became of a session after an input."""

    transcript: Transcript
    #: It answered the NOOP sent after the input.
    answered: bool = False
    #: It closed the connection, saying goodbye first.
    saidGoodbye: bool = False
    #: It still waits for more of a literal or chunk than the recovery sends.
    waiting: bool = False
    output: bytes = b""

    @property
    def problems(self) -> list[str]:
        found = list(self.transcript.problems)
        if not (self.answered or self.saidGoodbye or self.waiting):
            found.append(f"the session neither answered a NOOP nor said goodbye: {self.tail!r}")
        return found

    @property
    def tail(self) -> bytes:
        return self.output[-300:]


@dataclass
class Session:
    """One protocol session on a fake transport; subclasses drive each protocol."""

    fixture: RealmFixture
    state: str
    clock: Clock = field(default_factory=Clock)
    transport: StringTransport = field(init=False)
    protocol: Any = field(init=False)
    #: Output before the fuzzed input (the setup's), and since.
    before: bytes = b""

    states: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        self.transport = TLSStringTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 143),
            peerAddress=IPv4Address("TCP", "127.0.0.1", 40000),
        )
        self.protocol = self.build()
        self.protocol.makeConnection(self.transport)
        self.settle()
        self.setUp()
        self.before = self.take()

    def build(self) -> Any:
        raise NotImplementedError

    def setUp(self) -> None:
        """Bring the session into C{self.state}."""

    def take(self) -> bytes:
        data: bytes = self.transport.value()
        self.transport.clear()
        return data

    def write(self, data: bytes) -> None:
        """Hand C{data} to the protocol as the network would, and run what it scheduled."""
        if not self.closed:
            self.protocol.dataReceived(data)
        self.settle()

    def settle(self) -> None:
        """Run every call due now and pull every pull producer, until nothing is left."""
        for _ in range(MAX_TURNS):
            producer = self.transport.producer
            if producer is not None and not self.transport.streaming and not self.closed:
                producer.resumeProducing()
                continue
            now = self.clock.seconds()
            if any(call.getTime() <= now for call in self.clock.getDelayedCalls()):
                self.clock.advance(0)
                continue
            return
        raise Unsettled(f"{type(self).__name__} in {self.state} never settled")

    @property
    def closed(self) -> bool:
        return bool(self.transport.disconnecting)

    def feed(self, chunks: list[bytes]) -> None:
        for chunk in chunks:
            self.write(chunk)

    def finish(self) -> Outcome:
        """Recover from the input's state, ask for a NOOP, and check everything said."""
        output = self.take()
        outcome = Outcome(Transcript())
        if not self.closed:
            waiting = self.recover()
            output += self.take()
            if waiting:
                outcome.waiting = True
            elif not self.closed:
                mark = len(output)
                self.write(self.noop())
                output += self.take()
                outcome.answered = self.answeredNoop(output[mark:])
        if self.closed:
            outcome.saidGoodbye = self.goodbye(output)
        outcome.output = output
        outcome.transcript = self.check(self.before + output)
        return outcome

    def close(self) -> None:
        self.protocol.connectionLost(None)
        self.settle()

    def recover(self) -> bool:
        """Leave any state the input began; C{True} if still waiting for too much."""
        return False

    def noop(self) -> bytes:
        raise NotImplementedError

    def answeredNoop(self, output: bytes) -> bool:
        raise NotImplementedError

    def goodbye(self, output: bytes) -> bool:
        raise NotImplementedError

    def check(self, output: bytes) -> Transcript:
        raise NotImplementedError

    def paths(self) -> tuple[bytes, ...]:
        return (str(self.fixture.root).encode(),)


# IMAP


def _checker() -> InMemoryUsernamePasswordDatabaseDontUse:
    """Alice and Bob with L{PASSWORD}, answered at once (the directory's checker uses a thread)."""
    return InMemoryUsernamePasswordDatabaseDontUse(
        **{ALICE: PASSWORD.encode(), BOB: PASSWORD.encode()}
    )


@dataclass
class IMAPSession(Session):
    """
    States: C{unauth}; C{tls} (after STARTTLS); C{auth} (after LOGIN);
    C{select} (INBOX selected); C{append} (after an APPEND, selected);
    C{idle}; C{rev2} (IMAP4rev2 and QRESYNC enabled, INBOX selected);
    C{compress} (after COMPRESS DEFLATE: input and output are deflated).
    """

    states: ClassVar[tuple[str, ...]] = (
        "unauth",
        "tls",
        "auth",
        "select",
        "append",
        "idle",
        "rev2",
        "compress",
    )
    _deflate: Any = None
    _inflate: Any = None

    def build(self) -> Any:
        factory = IMAPFactory(
            Portal(self.fixture.realm, [_checker()]),
            IMAPSettings(),
            tlsContextFactory=FAKE_TLS,
            throttle=AuthThrottle(AuthSettings(failure_delay=0), self.clock),
            hostname=HOSTNAME,
            clock=self.clock,
        )
        factory.runInThread = maybeDeferred  # type: ignore[method-assign]
        server = factory.buildProtocol(None)
        server.cooperator = Cooperator(
            scheduler=lambda call: self.clock.callLater(0, call), started=True
        )
        return server

    def command(self, line: bytes) -> bytes:
        self.write(line + b"\r\n")
        return self.take()

    def setUp(self) -> None:
        state = self.state
        if state == "tls":
            self.command(b"t STARTTLS")
            return
        if state == "unauth":
            return
        self.command(b"l LOGIN " + ALICE.encode() + b" " + PASSWORD.encode())
        if state == "rev2":
            self.command(b"e ENABLE IMAP4rev2 QRESYNC UTF8=ACCEPT")
        if state in ("select", "append", "idle", "rev2"):
            self.command(b"s SELECT INBOX")
        if state == "append":
            message = b"From: fuzz@example.test\r\nSubject: appended\r\n\r\nbody\r\n"
            self.command(b"p APPEND INBOX (\\Seen) {%d}" % len(message))
            self.command(message)
        elif state == "idle":
            self.command(b"i IDLE")
        elif state == "compress":
            self.command(b"c COMPRESS DEFLATE")
            assert self._deflate is not None
            self.compressedByInput = False

    def write(self, data: bytes) -> None:
        if self._deflate is not None:
            data = self._deflate.compress(data) + self._deflate.flush(zlib.Z_SYNC_FLUSH)
        super().write(data)

    #: The fuzzed input itself turned COMPRESS on.
    compressedByInput = False

    def take(self) -> bytes:
        data = super().take()
        if self._inflate is not None:
            return bytes(self._inflate.decompress(data))
        if self.protocol.transport is self.transport:
            return data
        # The input sent COMPRESS: what follows its answer is deflated, and
        # the recovery and the NOOP are to be too.
        marker = b" OK DEFLATE active\r\n"
        end = data.find(marker)
        if end < 0:
            return data
        end += len(marker)
        self.compressedByInput = True
        self._deflate = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
        self._inflate = zlib.decompressobj(-15)
        try:
            return data[:end] + self._inflate.decompress(data[end:])
        except zlib.error:
            return data[:end]

    def recover(self) -> bool:
        server = self.protocol
        for _ in range(8):
            if self.closed:
                return False
            state = server.parseState
            literal = server._pendingLiteral if state == "pending" else None
            if literal is not None and literal.remaining:
                if literal.remaining > RECOVERY_LIMIT:
                    return True
                self.write(b"x" * literal.remaining)
                continue
            if state == "idle":
                self.write(b"DONE\r\n")
            elif state == "authenticate":
                self.write(b"*\r\n")
            else:
                self.write(b"\r\n")
            if server.parseState == "command" and not server.paused and server._tag is None:
                return False
        return server.parseState == "pending"

    def noop(self) -> bytes:
        return b"zzNOOP NOOP\r\n"

    def answeredNoop(self, output: bytes) -> bool:
        return b"\r\nzzNOOP OK" in b"\r\n" + output

    def goodbye(self, output: bytes) -> bool:
        """
        C{* BYE}; or, after the input turned COMPRESS on and went on in the
        clear, a closed connection: there is no stream left to say it on.
        """
        return b"* BYE" in self.before + output or self.compressedByInput

    def check(self, output: bytes) -> Transcript:
        return checkIMAP(output, self.paths())


# SMTP, submission and LMTP

PLAIN_AUTH = base64.b64encode(b"\0" + ALICE.encode() + b"\0" + PASSWORD.encode())
MESSAGE = b"From: alice@example.test\r\nTo: bob@example.test\r\nSubject: hi\r\n\r\nbody\r\n"


@dataclass
class SMTPSession(Session):
    """
    The MX.  States: C{greeted}; C{ehlo}; C{tls} (after STARTTLS and EHLO
    again); C{mail} (MAIL and RCPT accepted); C{data} (after C{354});
    C{bdat} (after a first BDAT chunk).
    """

    states: ClassVar[tuple[str, ...]] = ("greeted", "ehlo", "tls", "mail", "data", "bdat")
    submission: ClassVar[bool] = False
    greet: ClassVar[bytes] = b"EHLO client.example"
    sender: ClassVar[bytes] = b"MAIL FROM:<sender@remote.example> SIZE=100"
    recipient: ClassVar[bytes] = b"RCPT TO:<alice@example.test>"

    def settings(self) -> SMTPSettings:
        # No greeting pause: the states are reached by writing at once, which
        # the pause would refuse as early talking (tested on its own).
        return SMTPSettings(greet_pause=0)

    def build(self) -> Any:
        data = self.fixture.root / "data"
        factory = SMTPFactory(
            self.fixture.realm,
            self.settings(),
            hostname=HOSTNAME,
            submission=self.submission,
            portal=Portal(self.fixture.realm, [_checker()]),
            tlsContextFactory=FAKE_TLS,
            throttle=AuthThrottle(AuthSettings(failure_delay=0), self.clock),
            outbox=Outbox(QueueStore(queueDirectory(data))),
        )
        return self.configured(factory)

    def configured(self, factory: SMTPFactory) -> Any:
        factory.runInThread = maybeDeferred  # type: ignore[method-assign]
        protocol = factory.buildProtocol(None)
        protocol.callLater = self.clock.callLater
        return protocol

    def command(self, line: bytes) -> bytes:
        self.write(line + b"\r\n")
        return self.take()

    def setUp(self) -> None:
        state = self.state
        if state == "greeted":
            return
        if state == "tls":
            self.command(b"EHLO client.example")
            self.command(b"STARTTLS")
        self.command(self.greet)
        if state in ("ehlo", "tls"):
            return
        self.transaction()
        if state == "data":
            self.command(b"DATA")
        elif state == "bdat":
            self.write(b"BDAT %d\r\n" % len(MESSAGE) + MESSAGE)

    def transaction(self) -> None:
        self.command(self.sender)
        self.command(self.recipient)

    def recover(self) -> bool:
        server = self.protocol
        for _ in range(8):
            if self.closed:
                return False
            mode = server.mode
            if mode == "DATA":
                self.write(b"\r\n.\r\n")
            elif mode == "BDAT":
                remaining = server._reader.remaining
                if remaining > RECOVERY_LIMIT:
                    return True
                self.write(b"x" * remaining)
            elif mode == "AUTH":
                self.write(b"*\r\n")
            elif server._buffer or server._skipping:
                self.write(b"\r\n")
            else:
                return False
        return False

    def noop(self) -> bytes:
        return b"NOOP\r\n"

    def answeredNoop(self, output: bytes) -> bool:
        return output.endswith(b"250 2.0.0 Ok\r\n")

    def goodbye(self, output: bytes) -> bool:
        """C{221}, C{421}, or the MX's refusal of early talkers and pipelining (C{521}, C{554})."""
        said = b"\r\n" + self.before + output
        return any(b"\r\n%s " % code in said for code in (b"221", b"421", b"521", b"554 5.5.0"))

    def check(self, output: bytes) -> Transcript:
        return checkSMTP(output, HOSTNAME.encode(), self.paths())


@dataclass
class SubmissionSession(SMTPSession):
    """
    Submission, over TLS from the start.  States: C{greeted}; C{ehlo};
    C{auth} (AUTH PLAIN accepted); C{mail} (as Alice, to Bob and to a
    remote address); C{data}; C{bdat}.
    """

    states: ClassVar[tuple[str, ...]] = ("greeted", "ehlo", "auth", "mail", "data", "bdat")
    submission: ClassVar[bool] = True
    sender: ClassVar[bytes] = b"MAIL FROM:<alice@example.test>"
    recipient: ClassVar[bytes] = b"RCPT TO:<bob@example.test>"

    def settings(self) -> SMTPSettings:
        return SubmissionSettings()

    def build(self) -> Any:
        directlyProvides(self.transport, ISSLTransport)
        return super().build()

    def setUp(self) -> None:
        if self.state == "auth":
            self.command(self.greet)
            self.command(b"AUTH PLAIN " + PLAIN_AUTH)
            return
        super().setUp()

    def transaction(self) -> None:
        self.command(b"AUTH PLAIN " + PLAIN_AUTH)
        super().transaction()
        self.command(b"RCPT TO:<someone@remote.example>")


@dataclass
class LMTPSession(SMTPSession):
    """LMTP.  States: C{greeted}; C{lhlo}; C{mail}; C{data}; C{bdat}."""

    states: ClassVar[tuple[str, ...]] = ("greeted", "lhlo", "mail", "data", "bdat")
    greet: ClassVar[bytes] = b"LHLO mta.example.test"

    def build(self) -> Any:
        factory = LMTPFactory(
            self.fixture.realm,
            LMTPSettings(),
            hostname=HOSTNAME,
            tlsContextFactory=FAKE_TLS,
            throttle=AuthThrottle(AuthSettings(failure_delay=0), self.clock),
        )
        return self.configured(factory)

    def setUp(self) -> None:
        if self.state == "lhlo":
            self.command(self.greet)
            return
        super().setUp()


# POP3


@dataclass
class POP3Session(Session):
    """States: C{authorization}; C{user} (after USER); C{tls} (after STLS); C{transaction}."""

    states: ClassVar[tuple[str, ...]] = ("authorization", "user", "tls", "transaction")

    def build(self) -> Any:
        return POP3Server(
            Portal(self.fixture.realm, [_checker()]),
            POP3Settings(),
            tlsContextFactory=FAKE_TLS,
            throttle=AuthThrottle(AuthSettings(failure_delay=0), self.clock),
            hostname=HOSTNAME,
            clock=self.clock,
        )

    def setUp(self) -> None:
        state = self.state
        if state == "tls":
            self.write(b"STLS\r\n")
        elif state == "user":
            self.write(b"USER " + ALICE.encode() + b"\r\n")
        elif state == "transaction":
            self.write(b"USER " + ALICE.encode() + b"\r\nPASS " + PASSWORD.encode() + b"\r\n")

    def recover(self) -> bool:
        server = self.protocol
        if server._awaitingSASL:
            self.write(b"*\r\n")
        if server._input:
            self.write(b"\r\n")
        return False

    def noop(self) -> bytes:
        return b"NOOP\r\n"

    def answeredNoop(self, output: bytes) -> bool:
        expected = b"+OK\r\n" if self.protocol.mbox is not None else b"-ERR Not logged in\r\n"
        return output.endswith(expected)

    def goodbye(self, output: bytes) -> bool:
        last = (self.before + output).rstrip(b"\r\n").rsplit(b"\r\n", 1)[-1]
        return last.startswith((b"+OK", b"-ERR"))

    def check(self, output: bytes) -> Transcript:
        return checkPOP3(output, self.paths())


SESSIONS: dict[str, type[Session]] = {
    "smtp": SMTPSession,
    "submission": SubmissionSession,
    "lmtp": LMTPSession,
    "imap": IMAPSession,
    "pop3": POP3Session,
}
