# -*- test-case-name: tests.queue.test_queue_client -*-
"""
One ESMTP conversation with one host (L{Conversation}): connecting or
taking a parked session, the greeting, EHLO (or HELO), STARTTLS, AUTH,
the transaction (MAIL, RCPT, then DATA or BDAT) and QUIT or parking the
session again, each recipient's result set as its reply comes.
L{tmail.queue.client}'s docstring says what each step does and why.

Apart from L{tmail.queue.client.deliver}, which decides how many
conversations an attempt takes (a second one in clear after a failed
handshake) and which parked sessions they may use.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Hashable, Mapping
from typing import BinaryIO

from twisted.internet import defer
from twisted.internet.error import ConnectError
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.internet.protocol import Factory

from tmail.config.remotes import Credentials
from tmail.lineends import DotStuffer
from tmail.queue.clientsession import (
    ClientSession,
    MessageFlow,
    Reply,
    SessionLost,
    parseExtensions,
)
from tmail.queue.clientsettings import ClientSettings, TLSMode
from tmail.queue.connections import ConnectionCache, Parked
from tmail.queue.entry import Diagnostic, Envelope, Recipient, State
from tmail.queue.results import RecipientResult

__all__ = ["Conversation", "HostFailure"]


class HostFailure(Exception):
    """The host cannot be used now; every recipient not yet decided waits."""

    def __init__(self, diagnostic: Diagnostic, tlsFailed: bool = False) -> None:
        super().__init__(diagnostic.describe())
        self.diagnostic = diagnostic
        self.tlsFailed = tlsFailed


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


class Conversation:
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
        self.session: ClientSession | None = None
        self.cache = cache
        self.key = key
        self.uses = 0

    def _diagnostic(self, reply: Reply) -> Diagnostic:
        return reply.diagnostic(self.remoteName)

    def _lostDiagnostic(self, lost: SessionLost) -> Diagnostic:
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
        except HostFailure as e:
            self._failAllTemporarily(e.diagnostic)
            if self.session is not None:
                await self._quit(self.session)
            if e.tlsFailed:
                raise
            return True
        except SessionLost as e:
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
            assert isinstance(session, ClientSession)
            self.session = session
            try:
                reply = await session.command("RSET", self.settings.timeouts.rset)
            except SessionLost:
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
        factory = Factory.forProtocol(lambda: ClientSession(self.clock))
        try:
            session = await self.endpoint.connect(factory).addTimeout(timeouts.connect, self.clock)
        except (ConnectError, OSError, defer.TimeoutError) as e:
            raise HostFailure(
                Diagnostic("4.4.1", f"cannot connect: {e}", None, self.remoteName)
            ) from None
        assert isinstance(session, ClientSession)
        self.session = session
        greeting = await session.expect(timeouts.initial, "the greeting")
        if greeting.code != 220:
            raise HostFailure(self._hostReply(greeting))
        extensions = await self._hello(session)
        if not self.tls and self.useTLS and self._wantsTLS() and "STARTTLS" in extensions:
            extensions = await self._startTLS(session, extensions)
        if self._mustHaveTLS() and not self.tls:
            raise HostFailure(
                Diagnostic("4.7.10", "the server does not offer STARTTLS", None, self.remoteName),
                tlsFailed=True,
            )
        if self.settings.credentials is not None:
            await self._authenticate(session, extensions, self.settings.credentials)
        return extensions

    def _park(self, session: ClientSession, extensions: Mapping[str, str]) -> bool:
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

    def _hostReply(self, reply: Reply) -> Diagnostic:
        return self._diagnostic(reply)

    def _wantsTLS(self) -> bool:
        return self.settings.tls.mode is not TLSMode.NONE or self.requireTLS

    def _mustHaveTLS(self) -> bool:
        return self.settings.tls.mode is TLSMode.REQUIRED or self.requireTLS

    async def _hello(self, session: ClientSession) -> dict[str, str]:
        timeout = self.settings.timeouts.initial
        reply = await session.command(f"EHLO {self.settings.heloName}", timeout)
        if reply.code == 250:
            return parseExtensions(reply)
        if reply.code == 421 or reply.code < 500:
            raise HostFailure(self._diagnostic(reply))
        reply = await session.command(f"HELO {self.settings.heloName}", timeout)
        if reply.code != 250:
            raise HostFailure(self._diagnostic(reply))
        return {}

    async def _startTLS(self, session: ClientSession, extensions: dict[str, str]) -> dict[str, str]:
        timeout = self.settings.timeouts.initial
        reply = await session.command("STARTTLS", timeout)
        if reply.code != 220:
            if reply.code == 421:
                raise HostFailure(self._diagnostic(reply))
            if self._mustHaveTLS():
                raise HostFailure(self._diagnostic(reply), tlsFailed=True)
            # The session goes on in clear, as it was (RFC 3207 4).
            return extensions
        session.startTLS(self.settings.tls.contextFor(self.remoteName))
        try:
            extensions = await self._hello(session)
        except SessionLost as e:
            raise HostFailure(
                Diagnostic("4.7.5", e.reason, None, self.remoteName), tlsFailed=True
            ) from None
        self.tls = True
        return extensions

    async def _authenticate(
        self, session: ClientSession, extensions: Mapping[str, str], credentials: Credentials
    ) -> None:
        """Log in with PLAIN, or LOGIN when only that is offered; L{HostFailure} if not."""
        if not self.tls:
            raise HostFailure(
                Diagnostic(
                    "4.7.11",
                    "not sending credentials over a connection without TLS",
                    None,
                    self.remoteName,
                )
            )
        mechanisms = _authMechanisms(extensions)
        if not mechanisms:
            raise HostFailure(
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
            raise HostFailure(
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
            raise HostFailure(
                Diagnostic(
                    "4.7.0", "unexpected AUTH challenge from the server", None, self.remoteName
                )
            )
        if reply.code != 235:
            raise HostFailure(self._diagnostic(reply))

    async def _quit(self, session: ClientSession) -> None:
        with contextlib.suppress(SessionLost):
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

    async def _transaction(self, session: ClientSession, extensions: Mapping[str, str]) -> None:
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
            raise HostFailure(self._diagnostic(reply))
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
                raise HostFailure(self._diagnostic(reply))
            if reply.code in (250, 251):
                accepted.append(r)
            else:
                self.results[r.address] = RecipientResult(
                    State.FAILED if reply.code >= 500 else State.DEFERRED, self._diagnostic(reply)
                )
        if not accepted:
            await session.command("RSET", timeouts.initial)
            return
        final: Reply | None
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
            raise HostFailure(diagnostic)
        else:
            result = RecipientResult(
                State.FAILED if reply.code >= 500 else State.DEFERRED, diagnostic
            )
        for r in accepted:
            self.results[r.address] = result

    async def _sendData(self, session: ClientSession) -> Reply | None:
        timeouts = self.settings.timeouts
        reply = await session.command("DATA", timeouts.dataInit)
        if reply.code == 421:
            raise HostFailure(self._diagnostic(reply))
        if reply.code != 354:
            self._failAll(self._diagnostic(reply))
            return None
        # No bare CR or LF reaches the next server (SMTP smuggling).
        stuffer = DotStuffer("crlf")
        flow = MessageFlow(session, self.clock, timeouts.dataBlock)
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

    async def _sendChunks(self, session: ClientSession) -> Reply:
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
