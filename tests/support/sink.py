"""
A configurable SMTP server on loopback that records what it is sent, for
tests of outbound delivery.

Each stage (C{greeting}, C{ehlo}, C{helo}, C{starttls}, C{auth}, C{mail},
C{rcpt}, C{data}, C{end}, C{bdat}, C{rset}, C{quit}) can be given a reply, made to
drop the connection or never answer; C{rcpt} can answer per address.
Message content is read with tmail's own L{DataReader}/L{ChunkReader}, so a
test sees exactly what tmail's server would store.

Given C{credentials}, the sink offers AUTH (PLAIN and LOGIN, or the
C{mechanisms} given) once TLS is on (or at once with C{authInClear}) and
records who logged in; with C{implicitTLS} (and C{tls}), L{startSink}
listens with TLS from the first octet.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import socket
from dataclasses import dataclass, field

from tests.support.net import listen
from tests.support.pki import TestPKI
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory
from twisted.internet.ssl import CertificateOptions, PrivateCertificate
from twisted.protocols.basic import LineReceiver
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.trial.unittest import TestCase

from tmail.smtp.data import ChunkReader, DataReader

#: Reply to the connection being dropped at a stage instead of answered.
DROP = "drop"
#: Reply meaning the stage is never answered.
SILENT = "silent"
#: For C{data}: answer 354, then stop reading, so the client's writes back up.
STALL = "stall"
#: For C{data}: answer 354, stop reading, then reset the connection while
#: the client's writes are backed up.
RESET_IN_DATA = "reset in data"

DEFAULT_EXTENSIONS = ("8BITMIME", "SMTPUTF8", "DSN", "SIZE 10485760", "ENHANCEDSTATUSCODES")


def serverTLS(pki: TestPKI) -> CertificateOptions:
    """Server TLS options from a test PKI."""
    pem = pki.certificate.read_bytes() + pki.key.read_bytes()
    return PrivateCertificate.loadPEM(pem).options()  # type: ignore[no-any-return]


@dataclass
class Transaction:
    """One MAIL transaction as the sink saw it."""

    mailFrom: str
    recipients: list[str] = field(default_factory=list)
    message: bytes | None = None


@dataclass
class Session:
    """One connection as the sink saw it."""

    commands: list[str] = field(default_factory=list)
    tls: bool = False
    transactions: list[Transaction] = field(default_factory=list)
    user: str | None = None
    closed: bool = False


class SinkFactory(Factory):
    """
    The server's settings and what every connection received.

    @ivar replies: stage -> reply line (C{"550 5.1.1 No"}), L{DROP} or L{SILENT}.
    @ivar rcptReplies: recipient address -> reply, before C{replies["rcpt"]}.
    @ivar extensions: EHLO keywords offered (STARTTLS is added with C{tls}).
    @ivar credentials: C{(user, password)} AUTH accepts; no AUTH without.
    @ivar mechanisms: the SASL mechanisms offered (PLAIN and LOGIN are known).
    @ivar authInClear: offer AUTH before TLS too.
    @ivar implicitTLS: sessions are TLS from the start (see L{startSink}).
    """

    def __init__(
        self,
        replies: dict[str, str] | None = None,
        rcptReplies: dict[str, str] | None = None,
        extensions: tuple[str, ...] = DEFAULT_EXTENSIONS,
        tls: CertificateOptions | None = None,
        credentials: tuple[str, str] | None = None,
        mechanisms: tuple[str, ...] = ("PLAIN", "LOGIN"),
        authInClear: bool = False,
        implicitTLS: bool = False,
    ) -> None:
        self.replies = replies or {}
        self.rcptReplies = rcptReplies or {}
        self.extensions = extensions
        self.tls = tls
        self.credentials = credentials
        self.mechanisms = mechanisms
        self.authInClear = authInClear
        self.implicitTLS = implicitTLS
        self.sessions: list[Session] = []
        # A stalled connection reads nothing, so the reactor holds no
        # reference to it: kept here, the garbage collector cannot close
        # its socket (which the client would see as a reset).
        self.stalled: list[SinkProtocol] = []

    def buildProtocol(self, addr: object) -> SinkProtocol:
        p = SinkProtocol(self)
        p.factory = self
        return p

    @property
    def messages(self) -> list[bytes]:
        """Every message taken, in order."""
        return [t.message for s in self.sessions for t in s.transactions if t.message is not None]


class SinkProtocol(LineReceiver):
    delimiter = b"\r\n"
    MAX_LENGTH = 1 << 20

    def __init__(self, sink: SinkFactory) -> None:
        self.sink = sink
        self.session = Session(tls=sink.implicitTLS)
        self.login: list[str] | None = None
        self.transaction: Transaction | None = None
        self.reader: DataReader | ChunkReader | None = None
        self.content = b""
        self.chunkLeft = 0
        self.chunkLast = False

    def connectionMade(self) -> None:
        self.sink.sessions.append(self.session)
        self.answer("greeting", "220 sink.test ESMTP")

    def connectionLost(self, reason: object = None) -> None:
        self.session.closed = True

    def answer(self, stage: str, default: str, override: str | None = None) -> None:
        reply = override or self.sink.replies.get(stage, default)
        if reply == DROP:
            self.transport.abortConnection()  # type: ignore[union-attr]
        elif reply == SILENT:
            pass
        else:
            self.sendLine(reply.encode("utf-8"))

    def lineReceived(self, line: bytes) -> None:
        text = line.decode("utf-8", "replace")
        self.session.commands.append(text)
        if self.login is not None:
            self._loginStep(text)
            return
        verb, _, rest = text.partition(" ")
        verb = verb.upper()
        if verb == "EHLO":
            offered = list(self.sink.extensions)
            if self.sink.tls is not None and not self.session.tls:
                offered.append("STARTTLS")
            if self._authOffered():
                offered.append("AUTH " + " ".join(self.sink.mechanisms))
            lines = ["sink.test", *offered]
            default = "\r\n".join(
                f"250{'-' if n < len(lines) - 1 else ' '}{item}" for n, item in enumerate(lines)
            )
            self.answer("ehlo", default)
        elif verb == "HELO":
            self.answer("helo", "250 sink.test")
        elif verb == "STARTTLS":
            reply = self.sink.replies.get("starttls", "220 2.0.0 Go ahead")
            self.answer("starttls", reply)
            if reply.startswith("220") and self.sink.tls is not None:
                self.transport.startTLS(self.sink.tls)  # type: ignore[union-attr]
                self.session.tls = True
        elif verb == "AUTH":
            self._auth(rest)
        elif verb == "MAIL":
            reply = self.sink.replies.get("mail", "250 2.1.0 Ok")
            if reply.startswith("250"):
                self.transaction = Transaction(rest)
                self.session.transactions.append(self.transaction)
            self.answer("mail", reply)
        elif verb == "RCPT":
            address = rest.split("<", 1)[-1].split(">", 1)[0]
            reply = self.sink.rcptReplies.get(address) or self.sink.replies.get(
                "rcpt", "250 2.1.5 Ok"
            )
            if reply.startswith("25") and self.transaction is not None:
                self.transaction.recipients.append(rest)
            self.answer("rcpt", reply)
        elif verb == "DATA":
            reply = self.sink.replies.get("data", "354 Go on")
            if reply in (STALL, RESET_IN_DATA):
                self.sendLine(b"354 Go on")
                # A fixed receive buffer: loopback's grows to 32 MB, room
                # for the whole of a large message the sender would then
                # have sent (not stalled) before the server stopped reading.
                with contextlib.suppress(AttributeError, OSError):
                    handle = self.transport.getHandle()  # type: ignore[union-attr]
                    handle.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
                self.transport.pauseProducing()  # type: ignore[union-attr]
                self.sink.stalled.append(self)
                if reply == RESET_IN_DATA:
                    reactor.callLater(0.2, self.transport.abortConnection)  # type: ignore[union-attr]
                return
            self.answer("data", reply)
            if reply.startswith("354"):
                self.content = b""
                self.reader = DataReader(self._keep, 1 << 30, 1 << 20)
                self.setRawMode()
        elif verb == "BDAT":
            size, _, last = rest.partition(" ")
            if not isinstance(self.reader, ChunkReader):
                self.content = b""
                self.reader = ChunkReader(self._keep, 1 << 30, 1 << 20, binary=True)
            self.reader.expect(int(size))
            self.chunkLast = last.upper() == "LAST"
            self.setRawMode()
        elif verb == "RSET":
            self.transaction = None
            self.answer("rset", "250 2.0.0 Ok")
        elif verb == "QUIT":
            self.answer("quit", "221 2.0.0 Bye")
            self.transport.loseConnection()  # type: ignore[union-attr]
        else:
            self.sendLine(b"502 5.5.1 Unknown command")

    def _authOffered(self) -> bool:
        return self.sink.credentials is not None and (self.session.tls or self.sink.authInClear)

    def _auth(self, rest: str) -> None:
        mechanism, _, initial = rest.partition(" ")
        mechanism = mechanism.upper()
        if not self._authOffered():
            self.sendLine(b"530 5.7.0 Must issue a STARTTLS command first")
        elif mechanism not in self.sink.mechanisms:
            self.sendLine(b"504 5.5.4 Unrecognized authentication type")
        elif mechanism == "PLAIN" and initial:
            self._plain(initial)
        elif mechanism == "PLAIN":
            self.login = ["PLAIN"]
            self.sendLine(b"334 ")
        else:
            self.login = []
            self.sendLine(b"334 " + base64.b64encode(b"Username:"))

    def _loginStep(self, text: str) -> None:
        login, self.login = self.login or [], None
        if text == "*":
            self.sendLine(b"501 5.0.0 Authentication cancelled")
        elif login == ["PLAIN"]:
            self._plain(text)
        elif not login:
            self.login = [_unbase64(text) or ""]
            self.sendLine(b"334 " + base64.b64encode(b"Password:"))
        else:
            self._check(login[0], _unbase64(text))

    def _plain(self, encoded: str) -> None:
        parts = (_unbase64(encoded) or "").split("\0")
        if len(parts) != 3:
            self.sendLine(b"501 5.5.2 Cannot decode response")
            return
        self._check(parts[1], parts[2])

    def _check(self, user: str, password: str | None) -> None:
        if (user, password) == self.sink.credentials:
            self.session.user = user
            self.answer("auth", "235 2.7.0 Authentication successful")
        else:
            self.answer("auth", "535 5.7.8 Authentication credentials invalid")

    def _keep(self, data: bytes) -> None:
        self.content += data

    def rawDataReceived(self, data: bytes) -> None:
        reader = self.reader
        if isinstance(reader, DataReader):
            used = reader.feed(data)
            if used is None:
                return
            self._messageEnd("end", "250 2.0.0 Ok: queued")
            rest = data[used:]
        else:
            assert isinstance(reader, ChunkReader)
            used = reader.feed(data)
            rest = data[used:]
            if reader.remaining:
                return
            if self.chunkLast:
                reader.finish()
                self._messageEnd("end", "250 2.0.0 Ok: queued")
            else:
                self.setLineMode()
                self.answer("bdat", "250 2.0.0 Chunk taken")
        self.setLineMode(rest)

    def _messageEnd(self, stage: str, default: str) -> None:
        reply = self.sink.replies.get(stage, default)
        if reply.startswith("250") and self.transaction is not None:
            self.transaction.message = self.content
        self.reader = None
        self.answer(stage, reply)


def _unbase64(text: str) -> str | None:
    try:
        return base64.b64decode(text, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None


def startSink(testCase: TestCase, sink: SinkFactory) -> Deferred[int]:
    """
    Listen with C{sink} on a free loopback port for the test (with implicit
    TLS when the sink has C{implicitTLS}); fires with the port.
    """
    if sink.implicitTLS:
        assert sink.tls is not None
        return listen(testCase, TLSMemoryBIOFactory(sink.tls, False, sink))
    return listen(testCase, sink)
