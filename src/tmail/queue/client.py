# -*- test-case-name: tests.queue.test_queue_client -*-
"""
Handing one queued message to one remote SMTP server.

L{deliver} connects to one host (an endpoint: the runner picks the MX host
and address), speaks ESMTP and returns a L{DeliveryResult}: for every
recipient a L{RecipientResult} (delivered, deferred or failed, with the
server's reply as a L{Diagnostic}), and whether the host could not be used
at all (L{DeliveryResult.hostFailed}: refused, reset, timed out, C{421},
a greeting or EHLO refused, TLS that the policy needs and did not get), in
which case the runner should try the next MX host before deferring.
L{DeliveryResult.outcomes} turns the results into the queue's
L{Outcome}s with the retry schedule.

The conversation (RFC 5321): greeting; EHLO, or HELO when EHLO gets 5xx;
STARTTLS when offered and the L{TLSPolicy} asks for it, then EHLO again;
AUTH when the settings hold L{Credentials} (RFC 4954); MAIL FROM with
SIZE, BODY, SMTPUTF8 and the DSN parameters (RET, ENVID) only when the
server offers the extension; RCPT TO per recipient (NOTIFY,
ORCPT with DSN); DATA only when a recipient was accepted, the final reply
applying to every accepted recipient; QUIT, or, given a
L{ConnectionCache}, the session is parked there for the next message to
the same server with the same settings, which resets it with RSET and
goes on with the extensions, TLS and login the session already has (a
session that does not answer RSET with C{250} is given up for a new
connection).  A message that needs an
extension the server lacks is not sent: 8-bit or binary content without
8BITMIME/BINARYMIME (and CHUNKING for binary) fails with 5.6.3, an
SMTPUTF8 message without SMTPUTF8 with 5.6.7 (the RFC 6152/6531
downgrades are not attempted).  Binary content goes by BDAT (RFC 3030);
everything else by DATA, written by L{tmail.queue.dotstuff.DotStuffer}.

Every wait for a reply has its own timeout (L{Timeouts}, RFC 5321
4.5.3.2); a timeout aborts the connection.  Cancelling the Deferred
L{deliver} returns aborts the connection too, and records nothing: the
queue is durable, so an attempt cut short is simply made again later.

TLS (L{TLSPolicy}): opportunistic by default, unverified unless asked
(RFC 7435); a failed handshake is retried once in clear on a new
connection when the policy allows.  A policy holding TLSA records
(L{TLSPolicy.tlsa}, which the runner finds for DANE, see
L{tmail.queue.dane}) requires TLS and authenticates the server by them
instead of by CAs (L{DANEClientCreator}); a mismatch is a TLS failure
of the host (4.7.5), never retried in clear.  Mail marked REQUIRETLS (RFC 8689)
goes only over verified TLS to a server offering REQUIRETLS, never in
clear; without it the host fails (4.7.10, 4.7.5) or, when the server
lacks REQUIRETLS, the recipients fail with 5.7.30.  An endpoint that is
TLS from the first octet (implicit TLS, RFC 8314, as
C{wrapClientTLS} makes it) is told with C{implicitTLS}: the attempt counts
as TLS and STARTTLS is not used.

Authentication (a smarthost's, L{ClientSettings.credentials}): after TLS
and EHLO, the server must offer AUTH with PLAIN (RFC 4616, sent with the
initial response) or LOGIN; credentials never go over a connection
without TLS (4.7.11, nothing sent).  Whatever keeps the login from
succeeding (no AUTH, no usable mechanism, C{535} wrong credentials,
C{454}) is a host failure, temporary for the recipients: it is the
operator's to fix, as Postfix defers on SASL failures.

A runner sends an entry with::

    envelope = envelopeFor(entry, entry.dueRecipients(now))
    with store.openMessage(entry.id) as message:
        result = await deliver(endpoint, mxName, envelope, message, settings)
    # on result.hostFailed: deliver again to result.retryElsewhere() at
    # the next MX host (message.seek(0)), then, for the last results:
    store.record(entry.id, result.outcomes(schedule, entry, now), now)
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import enum
import re
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, BinaryIO

from OpenSSL import SSL
from twisted.internet import defer
from twisted.internet.error import ConnectError, ConnectionDone
from twisted.internet.interfaces import (
    IDelayedCall,
    IOpenSSLClientConnectionCreator,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Factory
from twisted.internet.ssl import CertificateOptions, optionsForClientTLS
from twisted.protocols.basic import LineOnlyReceiver
from twisted.python.failure import Failure

from tmail.config.remotes import Credentials
from tmail.queue.connections import ConnectionCache, Parked
from tmail.queue.danetls import DANEClientCreator
from tmail.queue.dotstuff import DotStuffer
from tmail.queue.entry import Diagnostic, Envelope, Outcome, QueueEntry, Recipient, State
from tmail.queue.schedule import RetrySchedule
from tmail.queue.tlsa import DANEMismatch, TLSARecord
from tmail.tls import TrustRoot

if TYPE_CHECKING:
    from tmail.queue.dane import DANELevel

__all__ = [
    "ClientSettings",
    "Credentials",
    "DeliveryResult",
    "RecipientResult",
    "TLSMode",
    "TLSPolicy",
    "Timeouts",
    "deliver",
    "envelopeFor",
]

#: How much of the message is read from its file at a time.
CHUNK_SIZE = 64 * 1024

_STATUS = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})(?:\s+|\Z)")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


class TLSMode(enum.StrEnum):
    """Whether to use STARTTLS."""

    #: Never (a test, or a host known to break it).
    NONE = "none"
    #: When the server offers it (RFC 3207); without it the mail goes in clear.
    OPPORTUNISTIC = "opportunistic"
    #: Always: a host without working STARTTLS is a temporary failure.
    REQUIRED = "required"


@dataclass(frozen=True, slots=True)
class TLSPolicy:
    """
    How to protect the connection.

    @ivar mode: see L{TLSMode}.
    @ivar verify: check the certificate chain and that it names the host
        (C{service_identity}); off by default for opportunistic TLS, which
        is better than clear text even unverified (RFC 7435).
    @ivar clearOnFailure: in opportunistic mode, when the TLS handshake
        fails, connect again and send in clear (never for REQUIRETLS mail).
    @ivar trustRoot: the CAs to trust when verifying (the platform's when
        C{None}).
    @ivar dane: look for the MX hosts' TLSA records first (the runner does,
        L{tmail.queue.dane.hostPolicy}); this policy applies where DANE
        does not.
    @ivar tlsa: the host's usable TLSA records: the certificate chain must
        match them (not C{verify}'s CAs and name check).
    """

    mode: TLSMode = TLSMode.OPPORTUNISTIC
    verify: bool = False
    clearOnFailure: bool = True
    trustRoot: TrustRoot | None = None
    dane: DANELevel | None = None
    tlsa: tuple[TLSARecord, ...] = ()

    def contextFor(self, hostname: str) -> IOpenSSLClientConnectionCreator | CertificateOptions:
        """The TLS client options for C{hostname}."""
        if self.tlsa:
            return DANEClientCreator(hostname, self.tlsa)
        if self.verify:
            return optionsForClientTLS(hostname, trustRoot=self.trustRoot)
        return CertificateOptions(verify=False)


@dataclass(frozen=True, slots=True)
class Timeouts:
    """
    Seconds to wait for each reply (RFC 5321 4.5.3.2's minimums by default).

    @ivar connect: for the TCP connection to be made.
    @ivar initial: the greeting, and replies to EHLO/HELO, STARTTLS, QUIT.
    @ivar dataBlock: for each block of the message to be taken by the network.
    @ivar rset: for the reply to the RSET that readies a reused session
        (Postfix's smtp_rset_timeout): a session that is slow to answer is
        given up for a new connection.
    """

    connect: float = 30.0
    initial: float = 300.0
    mail: float = 300.0
    rcpt: float = 300.0
    dataInit: float = 120.0
    dataBlock: float = 180.0
    dataEnd: float = 600.0
    rset: float = 20.0


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """
    What every delivery attempt shares.

    @ivar heloName: our host name, said in EHLO/HELO.
    @ivar chunkSize: how many octets are read from the message at a time
        (and the size of BDAT chunks).
    @ivar credentials: log in with these (AUTH) before sending; only over TLS.
    """

    heloName: str
    tls: TLSPolicy = field(default_factory=TLSPolicy)
    timeouts: Timeouts = field(default_factory=Timeouts)
    chunkSize: int = CHUNK_SIZE
    credentials: Credentials | None = None


@dataclass(frozen=True, slots=True)
class RecipientResult:
    """
    What one attempt came to for one recipient.

    @ivar state: L{State.DELIVERED}, L{State.DEFERRED} or L{State.FAILED}.
    @ivar diagnostic: the reply (or what went wrong).
    @ivar dsnPassedOn: delivered to a server that took the DSN request.
    """

    state: State
    diagnostic: Diagnostic
    dsnPassedOn: bool = False


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """
    What an attempt at one host came to.

    @ivar recipients: a result per recipient address, every one attempted.
    @ivar hostFailed: the host could not be used (no connection, lost or
        timed out, C{421}, greeting or EHLO refused, TLS required and not
        had): the recipients it had not answered yet are deferred
        (L{retryElsewhere}) and the next MX host is worth a try; the ones it
        answered keep their answer.
    @ivar tls: whether the message went over TLS.
    """

    recipients: Mapping[str, RecipientResult]
    hostFailed: bool = False
    tls: bool = False

    def retryElsewhere(self) -> tuple[str, ...]:
        """The recipients to try at the next MX host (none unless L{hostFailed})."""
        if not self.hostFailed:
            return ()
        return tuple(a for a, r in self.recipients.items() if r.state is State.DEFERRED)

    def outcomes(
        self, schedule: RetrySchedule, entry: QueueEntry, now: float
    ) -> dict[str, Outcome]:
        """
        The queue outcomes for L{tmail.queue.store.QueueStore.record}: a
        temporary failure is deferred or, once the entry expired, failed.
        """
        outcomes = {}
        for address, result in self.recipients.items():
            if result.state is State.DELIVERED:
                outcomes[address] = Outcome.delivered(result.diagnostic, result.dsnPassedOn)
            elif result.state is State.FAILED:
                outcomes[address] = Outcome.failed(result.diagnostic)
            else:
                attempts = entry.recipient(address).attempts + 1
                outcomes[address] = schedule.judge(entry.arrival, attempts, result.diagnostic, now)
        return outcomes


def envelopeFor(entry: QueueEntry, recipients: Sequence[Recipient]) -> Envelope:
    """The envelope to send C{entry} to C{recipients} (its due ones) with."""
    return Envelope(entry.sender, tuple(recipients), entry.body, entry.utf8, entry.ret, entry.envid)


@dataclass(frozen=True, slots=True)
class _Reply:
    code: int
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        return _CONTROL.sub(" ", " ".join(self.lines)).strip()

    def diagnostic(self, remoteMta: str) -> Diagnostic:
        """The reply as a diagnostic; a status from the reply code when it has none."""
        text = self.text
        match = _STATUS.match(text)
        if match is not None and match.group(1) == str(self.code)[0]:
            status = f"{match.group(1)}.{match.group(2)}.{match.group(3)}"
            text = text[match.end() :]
        else:
            status = f"{str(self.code)[0]}.0.0"
        return Diagnostic(status, text, self.code, remoteMta)


class _Lost(Exception):
    """The connection ended (or was aborted after a timeout)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _HostFailure(Exception):
    """The host cannot be used now; every recipient not yet decided waits."""

    def __init__(self, diagnostic: Diagnostic, tlsFailed: bool = False) -> None:
        super().__init__(diagnostic.describe())
        self.diagnostic = diagnostic
        self.tlsFailed = tlsFailed


class _Session(LineOnlyReceiver):
    """The wire: commands out, complete (multi-line) replies in, with timeouts."""

    delimiter = b"\r\n"
    MAX_LENGTH = 65536

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._lines: list[str] = []
        self._replies: list[_Reply] = []
        self._waiter: defer.Deferred[_Reply] | None = None
        self._timer: IDelayedCall | None = None
        self._lost: str | None = None
        self._gone = False
        self._goneWaiters: list[defer.Deferred[None]] = []
        self._idleWatcher: Callable[[], object] | None = None
        self.tlsFailed = False

    def lineReceived(self, line: bytes) -> None:
        text = line.decode("utf-8", "replace")
        code = text[:3]
        if len(code) < 3 or not code.isdigit() or code[0] not in "2345":
            self._lose("unintelligible reply: " + _CONTROL.sub(" ", text[:100]))
            return
        self._lines.append(text[4:])
        if text[3:4] == "-":
            if len(self._lines) > 1000:
                self._lose("reply too long")
            return
        reply = _Reply(int(code), tuple(self._lines))
        self._lines = []
        waiter, self._waiter = self._waiter, None
        if waiter is None:
            self._replies.append(reply)
            self._idle()
        else:
            self._cancelTimer()
            waiter.callback(reply)

    def lineLengthExceeded(self, line: bytes) -> None:
        self._lose("reply line too long")

    def _lose(self, reason: str) -> None:
        self._fail(reason)
        if self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def connectionLost(self, reason: Failure | None = None) -> None:
        if reason is None or reason.check(ConnectionDone):  # type: ignore[no-untyped-call]
            self._fail("connection closed by the server")
        elif reason.check(SSL.Error, DANEMismatch):  # type: ignore[no-untyped-call]
            self.tlsFailed = True
            self._fail(f"TLS failed: {reason.getErrorMessage()}")
        else:
            self._fail(f"connection lost: {reason.getErrorMessage()}")
        self._gone = True
        waiters, self._goneWaiters = self._goneWaiters, []
        for waiter in waiters:
            waiter.callback(None)
        self._idle()

    def _idle(self) -> None:
        """Something happened while nobody was waiting: tell the cache, if parked."""
        watcher, self._idleWatcher = self._idleWatcher, None
        if watcher is not None:
            watcher()

    def watchIdle(self, callback: Callable[[], object] | None) -> None:
        self._idleWatcher = callback

    def usable(self) -> bool:
        return self._lost is None and not self._replies and self.transport is not None

    def quit(self, timeout: float) -> defer.Deferred[None]:
        return defer.Deferred.fromCoroutine(self._quitAndWait(timeout))

    async def _quitAndWait(self, timeout: float) -> None:
        with contextlib.suppress(_Lost):
            await self.command("QUIT", timeout)
        self.close()
        if not self._gone and self.transport is not None:
            gone: defer.Deferred[None] = defer.Deferred()
            self._goneWaiters.append(gone)
            await gone

    def _fail(self, reason: str) -> None:
        if self._lost is None:
            self._lost = reason
        self._cancelTimer()
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            waiter.errback(_Lost(self._lost))

    def _cancelTimer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def expect(self, timeout: float, what: str) -> defer.Deferred[_Reply]:
        """The next reply, or L{_Lost} after C{timeout} seconds of waiting."""
        if self._replies:
            return defer.succeed(self._replies.pop(0))
        if self._lost is not None:
            return defer.fail(_Lost(self._lost))
        self._waiter = defer.Deferred(self._stopWaiting)
        self._timer = self._clock.callLater(timeout, self._lose, f"timeout waiting for {what}")
        return self._waiter

    def _stopWaiting(self, waiter: defer.Deferred[_Reply]) -> None:
        """The wait was cancelled: no timeout, and no reply is owed to it."""
        self._waiter = None
        self._cancelTimer()

    def abort(self) -> None:
        """Drop the connection now, whatever is still to be written."""
        self._fail("the attempt was cancelled")
        if self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def command(self, line: str, timeout: float, what: str | None = None) -> defer.Deferred[_Reply]:
        """Send C{line} and wait for its reply."""
        if self._lost is None:
            self.transport.write(line.encode("utf-8") + b"\r\n")  # type: ignore[union-attr]
        return self.expect(timeout, what or line.split(" ", 1)[0])

    def write(self, data: bytes) -> None:
        if self._lost is None and data:
            self.transport.write(data)  # type: ignore[union-attr]

    def startTLS(self, context: object) -> None:
        self.transport.startTLS(context)  # type: ignore[union-attr]

    def close(self) -> None:
        if self.transport is not None:
            self.transport.loseConnection()


def _parseExtensions(reply: _Reply) -> dict[str, str]:
    """EHLO's keywords (upper case) and their parameters."""
    extensions = {}
    for line in reply.lines[1:]:
        keyword, _, params = line.strip().partition(" ")
        if keyword:
            extensions[keyword.upper()] = params.strip()
    return extensions


def _authMechanisms(extensions: Mapping[str, str]) -> set[str]:
    """The SASL mechanisms offered, from C{AUTH} (and the old C{AUTH=} form)."""
    mechanisms: set[str] = set()
    for keyword, params in extensions.items():
        if keyword == "AUTH":
            mechanisms.update(params.upper().split())
        elif keyword.startswith("AUTH="):
            mechanisms.update(f"{keyword[5:]} {params}".upper().split())
    return mechanisms


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def _messageSize(message: BinaryIO) -> int:
    position = message.tell()
    message.seek(0, 2)
    size = message.tell() - position
    message.seek(position)
    return size


class _Attempt:
    """One conversation with one host, and its results as they come."""

    def __init__(
        self,
        endpoint: IStreamClientEndpoint,
        remoteName: str,
        envelope: Envelope,
        message: BinaryIO,
        settings: ClientSettings,
        requireTLS: bool,
        clock: IReactorTime,
        useTLS: bool,
        implicitTLS: bool = False,
        cache: ConnectionCache | None = None,
        key: Hashable | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.remoteName = remoteName
        self.envelope = envelope
        self.message = message
        self.settings = settings
        self.requireTLS = requireTLS
        self.clock = clock
        self.useTLS = useTLS
        self.results: dict[str, RecipientResult] = {}
        self.tls = implicitTLS
        self.session: _Session | None = None
        self.cache = cache
        self.key = key
        self.uses = 0

    def _diagnostic(self, reply: _Reply) -> Diagnostic:
        return reply.diagnostic(self.remoteName)

    def _lostDiagnostic(self, lost: _Lost) -> Diagnostic:
        tlsFailed = self.session is not None and self.session.tlsFailed
        return Diagnostic("4.7.5" if tlsFailed else "4.4.2", lost.reason, None, self.remoteName)

    def _failAll(self, diagnostic: Diagnostic) -> None:
        """Every recipient not yet decided gets C{diagnostic}'s failure."""
        state = State.FAILED if diagnostic.permanent else State.DEFERRED
        for r in self.envelope.recipients:
            if r.address not in self.results:
                self.results[r.address] = RecipientResult(state, diagnostic)

    async def run(self) -> bool:
        """
        Talk to the host; C{True} when the host could not be used.
        Cancelled, it drops the connection at once.
        """
        try:
            return await self._run()
        except defer.CancelledError:
            if self.session is not None:
                self.session.abort()
            raise

    async def _run(self) -> bool:
        parked = False
        try:
            extensions = await self._reuse()
            if extensions is None:
                extensions = await self._open()
            assert self.session is not None
            session = self.session
            await self._transaction(session, extensions)
            parked = self._park(session, extensions)
            if not parked:
                await self._quit(session)
            return False
        except _HostFailure as e:
            self._failAllTemporarily(e.diagnostic)
            if self.session is not None:
                await self._quit(self.session)
            if e.tlsFailed:
                raise
            return True
        except _Lost as e:
            self._failAllTemporarily(self._lostDiagnostic(e))
            return True
        finally:
            if not parked and self.session is not None and self.session.transport is not None:
                # QUIT was answered or not needed; whatever went wrong, let go.
                self.session.transport.loseConnection()

    async def _reuse(self) -> dict[str, str] | None:
        """
        Take a parked session for this host and reset it with RSET: it
        becomes C{self.session}, and its extensions are returned.  C{None}
        when there is none that answers RSET with C{250}.
        """
        if self.cache is None or self.key is None:
            return None
        while (parked := self.cache.take(self.key)) is not None:
            session = parked.session
            assert isinstance(session, _Session)
            self.session = session
            try:
                reply = await session.command("RSET", self.settings.timeouts.rset)
            except _Lost:
                continue
            if reply.code == 250:
                self.tls = parked.tls
                self.uses = parked.uses
                return dict(parked.extensions)
            self.cache.discard(session)
        self.session = None
        return None

    async def _open(self) -> dict[str, str]:
        """Connect, greet, EHLO, STARTTLS and AUTH as the settings ask; the extensions."""
        timeouts = self.settings.timeouts
        factory = Factory.forProtocol(lambda: _Session(self.clock))
        try:
            session = await self.endpoint.connect(factory).addTimeout(timeouts.connect, self.clock)
        except (ConnectError, OSError, defer.TimeoutError) as e:
            raise _HostFailure(
                Diagnostic("4.4.1", f"cannot connect: {e}", None, self.remoteName)
            ) from None
        assert isinstance(session, _Session)
        self.session = session
        greeting = await session.expect(timeouts.initial, "the greeting")
        if greeting.code != 220:
            raise _HostFailure(self._hostReply(greeting))
        extensions = await self._hello(session)
        if not self.tls and self.useTLS and self._wantsTLS() and "STARTTLS" in extensions:
            extensions = await self._startTLS(session, extensions)
        if self._mustHaveTLS() and not self.tls:
            raise _HostFailure(
                Diagnostic("4.7.10", "the server does not offer STARTTLS", None, self.remoteName),
                tlsFailed=True,
            )
        if self.settings.credentials is not None:
            await self._authenticate(session, extensions, self.settings.credentials)
        return extensions

    def _park(self, session: _Session, extensions: Mapping[str, str]) -> bool:
        """Leave the session in the cache for the next message; C{False} when it is not kept."""
        if self.cache is None or self.key is None:
            return False
        return self.cache.park(self.key, Parked(session, extensions, self.tls, self.uses + 1))

    def _failAllTemporarily(self, diagnostic: Diagnostic) -> None:
        if diagnostic.permanent:
            # A host refusing us as a whole is no verdict on the recipients.
            # The reply stays in the text: its code would make the failure permanent.
            diagnostic = Diagnostic(
                "4" + diagnostic.status[1:],
                f"{diagnostic.code} {diagnostic.status} {diagnostic.text}",
                None,
                diagnostic.remoteMta,
            )
        self._failAll(diagnostic)

    def _hostReply(self, reply: _Reply) -> Diagnostic:
        return self._diagnostic(reply)

    def _wantsTLS(self) -> bool:
        return self.settings.tls.mode is not TLSMode.NONE or self.requireTLS

    def _mustHaveTLS(self) -> bool:
        return self.settings.tls.mode is TLSMode.REQUIRED or self.requireTLS

    async def _hello(self, session: _Session) -> dict[str, str]:
        timeout = self.settings.timeouts.initial
        reply = await session.command(f"EHLO {self.settings.heloName}", timeout)
        if reply.code == 250:
            return _parseExtensions(reply)
        if reply.code == 421 or reply.code < 500:
            raise _HostFailure(self._diagnostic(reply))
        reply = await session.command(f"HELO {self.settings.heloName}", timeout)
        if reply.code != 250:
            raise _HostFailure(self._diagnostic(reply))
        return {}

    async def _startTLS(self, session: _Session, extensions: dict[str, str]) -> dict[str, str]:
        timeout = self.settings.timeouts.initial
        reply = await session.command("STARTTLS", timeout)
        if reply.code != 220:
            if reply.code == 421:
                raise _HostFailure(self._diagnostic(reply))
            if self._mustHaveTLS():
                raise _HostFailure(self._diagnostic(reply), tlsFailed=True)
            # The session goes on in clear, as it was (RFC 3207 4).
            return extensions
        session.startTLS(self.settings.tls.contextFor(self.remoteName))
        try:
            extensions = await self._hello(session)
        except _Lost as e:
            raise _HostFailure(
                Diagnostic("4.7.5", e.reason, None, self.remoteName), tlsFailed=True
            ) from None
        self.tls = True
        return extensions

    async def _authenticate(
        self, session: _Session, extensions: Mapping[str, str], credentials: Credentials
    ) -> None:
        """Log in with PLAIN, or LOGIN when only that is offered; L{_HostFailure} if not."""
        if not self.tls:
            raise _HostFailure(
                Diagnostic(
                    "4.7.11",
                    "not sending credentials over a connection without TLS",
                    None,
                    self.remoteName,
                )
            )
        mechanisms = _authMechanisms(extensions)
        if not mechanisms:
            raise _HostFailure(
                Diagnostic("4.7.0", "the server does not offer AUTH", None, self.remoteName)
            )
        timeout = self.settings.timeouts.initial
        if "PLAIN" in mechanisms:
            token = f"\0{credentials.username}\0{credentials.password}"
            reply = await session.command(f"AUTH PLAIN {_b64(token)}", timeout, "AUTH")
        elif "LOGIN" in mechanisms:
            reply = await session.command("AUTH LOGIN", timeout, "AUTH")
            for answer in (credentials.username, credentials.password):
                if reply.code != 334:
                    break
                reply = await session.command(_b64(answer), timeout, "AUTH")
        else:
            offered = " ".join(sorted(mechanisms))
            raise _HostFailure(
                Diagnostic(
                    "4.7.0",
                    f"the server offers no AUTH mechanism we use (PLAIN, LOGIN): {offered}",
                    None,
                    self.remoteName,
                )
            )
        if reply.code == 334:
            # A challenge where none was due: give up the exchange (RFC 4954 4).
            await session.command("*", timeout, "AUTH")
            raise _HostFailure(
                Diagnostic(
                    "4.7.0", "unexpected AUTH challenge from the server", None, self.remoteName
                )
            )
        if reply.code != 235:
            raise _HostFailure(self._diagnostic(reply))

    async def _quit(self, session: _Session) -> None:
        with contextlib.suppress(_Lost):
            await session.command("QUIT", self.settings.timeouts.initial)
        session.close()

    def _refuseUnsupported(self, extensions: Mapping[str, str], size: int) -> Diagnostic | None:
        """Why the server cannot take this message, if it cannot."""
        body = self.envelope.body.upper()
        if self.envelope.utf8 and "SMTPUTF8" not in extensions:
            return Diagnostic(
                "5.6.7", "the server does not support SMTPUTF8", None, self.remoteName
            )
        if body == "8BITMIME" and "8BITMIME" not in extensions:
            return Diagnostic(
                "5.6.3",
                "the server does not support 8-bit messages (8BITMIME)",
                None,
                self.remoteName,
            )
        if body == "BINARYMIME" and not ("BINARYMIME" in extensions and "CHUNKING" in extensions):
            return Diagnostic(
                "5.6.3",
                "the server does not support binary messages (BINARYMIME)",
                None,
                self.remoteName,
            )
        if "SIZE" in extensions:
            limit = extensions["SIZE"]
            if limit.isdigit() and int(limit) > 0 and size > int(limit):
                return Diagnostic(
                    "5.3.4",
                    f"the message is larger than the server takes ({limit})",
                    None,
                    self.remoteName,
                )
        if self.requireTLS and "REQUIRETLS" not in extensions:
            return Diagnostic(
                "5.7.30", "REQUIRETLS is not supported by the server", None, self.remoteName
            )
        return None

    async def _transaction(self, session: _Session, extensions: Mapping[str, str]) -> None:
        timeouts = self.settings.timeouts
        envelope = self.envelope
        size = _messageSize(self.message)
        refusal = self._refuseUnsupported(extensions, size)
        if refusal is not None:
            self._failAll(refusal)
            return
        dsn = "DSN" in extensions
        params = []
        if "SIZE" in extensions:
            params.append(f"SIZE={size}")
        if envelope.body.upper() != "7BIT" and (
            "8BITMIME" in extensions or "BINARYMIME" in extensions
        ):
            params.append(f"BODY={envelope.body.upper()}")
        if envelope.utf8:
            params.append("SMTPUTF8")
        if self.requireTLS:
            params.append("REQUIRETLS")
        if dsn and envelope.ret:
            params.append(f"RET={envelope.ret}")
        if dsn and envelope.envid:
            params.append(f"ENVID={envelope.envid}")
        reply = await session.command(
            " ".join([f"MAIL FROM:<{envelope.sender}>", *params]), timeouts.mail, "MAIL"
        )
        if reply.code == 421:
            raise _HostFailure(self._diagnostic(reply))
        if reply.code != 250:
            self._failAll(self._diagnostic(reply))
            return
        accepted: list[Recipient] = []
        for r in envelope.recipients:
            rparams = []
            if dsn and r.notify:
                rparams.append("NOTIFY=" + ",".join(r.notify))
            if dsn and r.orcpt:
                rparams.append(f"ORCPT={r.orcpt}")
            reply = await session.command(
                " ".join([f"RCPT TO:<{r.address}>", *rparams]), timeouts.rcpt, "RCPT"
            )
            if reply.code == 421:
                raise _HostFailure(self._diagnostic(reply))
            if reply.code in (250, 251):
                accepted.append(r)
            else:
                self.results[r.address] = RecipientResult(
                    State.FAILED if reply.code >= 500 else State.DEFERRED, self._diagnostic(reply)
                )
        if not accepted:
            await session.command("RSET", timeouts.initial)
            return
        final: _Reply | None
        if envelope.body.upper() == "BINARYMIME":
            final = await self._sendChunks(session)
        else:
            final = await self._sendData(session)
        if final is None:
            return
        reply = final
        diagnostic = self._diagnostic(reply)
        if reply.code == 250:
            result = RecipientResult(State.DELIVERED, diagnostic, dsnPassedOn=dsn)
        elif reply.code == 421:
            raise _HostFailure(diagnostic)
        else:
            result = RecipientResult(
                State.FAILED if reply.code >= 500 else State.DEFERRED, diagnostic
            )
        for r in accepted:
            self.results[r.address] = result

    async def _sendData(self, session: _Session) -> _Reply | None:
        timeouts = self.settings.timeouts
        reply = await session.command("DATA", timeouts.dataInit)
        if reply.code == 421:
            raise _HostFailure(self._diagnostic(reply))
        if reply.code != 354:
            self._failAll(self._diagnostic(reply))
            return None
        stuffer = DotStuffer()
        flow = _Flow(session, self.clock, timeouts.dataBlock)
        try:
            while True:
                chunk = self.message.read(self.settings.chunkSize)
                if not chunk:
                    break
                session.write(stuffer.feed(chunk))
                await flow.ready()
        finally:
            flow.close()
        session.write(stuffer.finish())
        return await session.expect(timeouts.dataEnd, "the end of data")

    async def _sendChunks(self, session: _Session) -> _Reply:
        timeouts = self.settings.timeouts
        chunk = self.message.read(self.settings.chunkSize)
        while True:
            following = self.message.read(self.settings.chunkSize) if chunk else b""
            last = not following
            session.write(f"BDAT {len(chunk)}{' LAST' if last else ''}\r\n".encode() + chunk)
            reply = await session.expect(
                timeouts.dataEnd if last else timeouts.dataBlock, "the reply to BDAT"
            )
            if last or reply.code != 250:
                return reply
            chunk = following


class _Flow:
    """
    A streaming producer on the session's transport, to write the message
    no faster than the network takes it, with the data block timeout.
    """

    def __init__(self, session: _Session, clock: IReactorTime, timeout: float) -> None:
        self._session = session
        self._clock = clock
        self._timeout = timeout
        self._paused = False
        self._resumed: defer.Deferred[None] | None = None
        self._registered = False
        transport = session.transport
        if transport is not None:
            transport.registerProducer(self, True)  # type: ignore[attr-defined]
            self._registered = True

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        self._wake()

    def stopProducing(self) -> None:
        self._wake()

    def _forget(self, resumed: defer.Deferred[None]) -> None:
        self._resumed = None

    def _wake(self) -> None:
        resumed, self._resumed = self._resumed, None
        if resumed is not None:
            resumed.callback(None)

    async def ready(self) -> None:
        """Return once the transport wants more; L{_Lost} when the connection ended."""
        session = self._session
        if self._paused and session._lost is None:
            self._resumed = defer.Deferred(self._forget)
            timer = self._clock.callLater(
                self._timeout, session._lose, "timeout sending the message"
            )
            try:
                await self._resumed
            finally:
                if timer.active():
                    timer.cancel()
        if session._lost is not None:
            raise _Lost(session._lost)

    def close(self) -> None:
        if self._registered and self._session.transport is not None:
            self._registered = False
            self._session.transport.unregisterProducer()  # type: ignore[attr-defined]


def deliver(
    endpoint: IStreamClientEndpoint,
    remoteName: str,
    envelope: Envelope,
    message: BinaryIO,
    settings: ClientSettings,
    requireTLS: bool = False,
    clock: IReactorTime | None = None,
    implicitTLS: bool = False,
    cache: ConnectionCache | None = None,
    destination: tuple[str, int] | None = None,
) -> defer.Deferred[DeliveryResult]:
    """
    Send C{message} (a file positioned at its start, CRLF line ends) to
    C{envelope}'s recipients through the server at C{endpoint}.

    @param remoteName: the host's name: checked against its certificate
        when verifying, and reported as the Remote-MTA.
    @param requireTLS: the message is marked REQUIRETLS (RFC 8689): it
        goes only over verified TLS to a server that offers REQUIRETLS.
    @param implicitTLS: C{endpoint} speaks TLS from the start (a
        C{wrapClientTLS} endpoint): no STARTTLS, and the attempt is over TLS.
    @param cache: where sessions are kept between messages: a session
        parked there for the same C{destination} and settings is used
        first, and the session is parked there after the transaction.
    @param destination: the C{(address, port)} C{endpoint} connects to;
        without it C{cache} is not used.
    @return: a Deferred firing with the L{DeliveryResult}; it does not
        fail, unless cancelled (then the connection is dropped at once).
    """
    if clock is None:
        from twisted.internet import reactor

        clock = reactor
    assert clock is not None
    timer: IReactorTime = clock
    if requireTLS:
        # TLSA records authenticate the server as well as CAs do (RFC 8689 4.2.1).
        policy = TLSPolicy(
            TLSMode.REQUIRED, True, False, settings.tls.trustRoot, tlsa=settings.tls.tlsa
        )
        settings = dataclasses.replace(settings, tls=policy)

    def keyFor(useTLS: bool) -> Hashable | None:
        if cache is None or destination is None:
            return None
        return _sessionKey(destination, remoteName, settings, implicitTLS, useTLS)

    async def attempt() -> DeliveryResult:
        start = message.tell()
        tryTLS = settings.tls.mode is not TLSMode.NONE
        first = _Attempt(
            endpoint,
            remoteName,
            envelope,
            message,
            settings,
            requireTLS,
            timer,
            tryTLS,
            implicitTLS,
            cache,
            keyFor(tryTLS),
        )
        try:
            hostFailed = await first.run()
            return DeliveryResult(first.results, hostFailed, first.tls)
        except _HostFailure as e:
            tlsFailure = e.diagnostic
        policy = settings.tls
        if (
            policy.mode is TLSMode.OPPORTUNISTIC
            and policy.clearOnFailure
            and not requireTLS
            and not implicitTLS
            and tlsFailure.status == "4.7.5"
        ):
            message.seek(start)
            clear = _Attempt(
                endpoint,
                remoteName,
                envelope,
                message,
                settings,
                False,
                timer,
                False,
                cache=cache,
                key=keyFor(False),
            )
            hostFailed = await clear.run()
            return DeliveryResult(clear.results, hostFailed, False)
        return DeliveryResult(first.results, True, False)

    return defer.Deferred.fromCoroutine(attempt())


class _Same:
    """Compares equal only to itself, whatever it holds: a key part for unhashable objects."""

    __slots__ = ("held",)

    def __init__(self, held: object) -> None:
        self.held = held

    def __hash__(self) -> int:
        return id(self.held)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Same) and other.held is self.held


def _sessionKey(
    destination: tuple[str, int],
    remoteName: str,
    settings: ClientSettings,
    implicitTLS: bool,
    useTLS: bool,
) -> Hashable:
    """
    What a parked session must have been set up with to be used again:
    the same server, name (the certificate was checked against it), EHLO
    name, TLS policy (TLSA records included) and credentials.
    """
    policy = settings.tls
    return (
        destination,
        remoteName.lower(),
        implicitTLS,
        useTLS,
        settings.heloName,
        policy.mode,
        policy.verify,
        policy.clearOnFailure,
        _Same(policy.trustRoot),
        policy.tlsa,
        settings.credentials,
    )
