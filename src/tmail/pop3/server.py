# -*- test-case-name: tests.pop3.test_pop3_protocol -*-
"""
The POP3 server protocol: Twisted's C{pop3.POP3} with its defects fixed and
STLS (RFC 2595), SASL PLAIN (RFC 5034) and RFC 2449/3206 response codes added.

What differs from Twisted, and why:
  - Input is split into lines here, not by C{LineOnlyReceiver}: lines are
    capped at C{max_line_length} (an over-long line is answered once and
    dropped, never buffered without bound), commands pipelined after
    C{STLS} are thrown away (the CVE-2011-0411 class of injection), and
    while a command is in progress the rest of the input waits, with reads
    paused when too much of it piles up.
  - Commands are checked for their state and number of arguments before
    they run (C{USER a b} crashed Twisted without a reply), message numbers
    must be 1..N and not deleted (Twisted's C{DELE 0} deleted the last
    message), and no exception text ever reaches the client.
  - The maildrop listing (sizes and which messages are marked deleted) is
    kept here, so C{STAT}, C{LIST} and C{UIDL} leave deleted messages out as
    RFC 1939 requires.
  - C{RETR} and C{TOP} dot-stuff across chunk edges (L{tmail.lineends.DotStuffer}).
  - Passwords travel in the clear only where C{allow_plaintext_auth} permits;
    APOP is refused outright (it needs plaintext-equivalent stored
    passwords); failed logins are throttled per client address.
"""

from __future__ import annotations

import binascii
import re
from typing import Any, BinaryIO

from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import LoginFailed
from twisted.cred.portal import Portal
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorTime, ITLSTransport
from twisted.internet.ssl import CertificateOptions
from twisted.logger import Logger
from twisted.mail import pop3
from twisted.protocols.basic import FileSender
from twisted.python.failure import Failure

from tmail.auth.policy import isSecure, peerHost, plaintextAuthAllowed
from tmail.auth.throttle import settle
from tmail.config.schema import POP3Settings
from tmail.connections import ConnectionCounter, Refusal, sendPromptly
from tmail.errors import StoreFull
from tmail.interfaces import ILoginAttempt, ILoginThrottle, IMailUser
from tmail.lineends import DotStuffer
from tmail.pop3.mailbox import IRetrievalListener, openMailbox
from tmail.pop3.transfer import TopReader

#: Commands and how many arguments each takes; C{None}: the rest of the line.
_ARITY: dict[bytes, tuple[int, int] | None] = {
    b"CAPA": (0, 0),
    b"QUIT": (0, 0),
    b"USER": (1, 1),
    b"PASS": None,
    b"AUTH": (0, 2),
    b"APOP": None,
    b"STLS": (0, 0),
    b"STAT": (0, 0),
    b"LIST": (0, 1),
    b"UIDL": (0, 1),
    b"RETR": (1, 1),
    b"TOP": (2, 2),
    b"DELE": (1, 1),
    b"NOOP": (0, 0),
    b"RSET": (0, 0),
}
_AUTHORIZATION_ONLY = frozenset({b"USER", b"PASS", b"AUTH", b"APOP", b"STLS"})
_TRANSACTION_ONLY = frozenset(
    {b"STAT", b"LIST", b"UIDL", b"RETR", b"TOP", b"DELE", b"NOOP", b"RSET"}
)

_NUMBER = re.compile(rb"[0-9]{1,10}")

#: Bytes of unread input allowed to wait while a command runs before reads pause.
_BACKLOG = 64 * 1024

PLAINTEXT_DISALLOWED = b"[AUTH] Plaintext authentication disallowed on non-secure connections"


class POP3Server(pop3.POP3):  # type: ignore[misc]
    """
    One POP3 session.

    @ivar portal: logs users in; asked for C{pop3.IMailbox} avatars.
    @ivar settings: the C{[pop3]} limits and plaintext policy.
    @ivar tlsContextFactory: offered through STLS when not C{None}.
    @ivar throttle: failed-login delays and blocks per client address.
    @ivar hostname: named in the greeting.
    @ivar connections: per-address session limit, shared by the factory's
        sessions; C{None} for no limit.
    @param clock: schedules the idle timer (the reactor unless given).
    """

    _log = Logger()

    def __init__(
        self,
        portal: Portal,
        settings: POP3Settings,
        *,
        tlsContextFactory: CertificateOptions | None,
        throttle: ILoginThrottle,
        hostname: str,
        connections: ConnectionCounter | None = None,
        clock: IReactorTime | None = None,
    ) -> None:
        self.portal = portal
        self.settings = settings
        self.tlsContextFactory = tlsContextFactory
        self.throttle = throttle
        self.hostname = hostname
        self.connections = connections
        if clock is not None:
            self.callLater = clock.callLater
        self.timeOut = settings.timeout
        self.mbox: Any = None
        self._userIs: bytes | None = None
        self._input = bytearray()
        self._skippingLongLine = False
        self._processing = False
        self._busy = False
        self._readsPaused = False
        self._closed = False
        self._acquired = False
        self._host = "unknown"
        self._awaitingSASL = False
        self._sizes: list[int] = []
        self._deleted: set[int] = set()

    # Connection life cycle

    def connectionMade(self) -> None:
        sendPromptly(self.transport)
        self._host = peerHost(self.transport)
        if self.connections is not None:
            refusal = self.connections.admit(self._host)
            if refusal is not None:
                self._log.warn(
                    "POP3 refused {host}: too many connections ({which})",
                    host=self._host,
                    which="from it" if refusal is Refusal.CLIENT else "in all",
                )
                if refusal is Refusal.CLIENT:
                    self.failResponse(b"[SYS/TEMP] Too many connections from your address")
                else:
                    self.failResponse(b"[SYS/TEMP] Too many connections; try later")
                self.transport.loseConnection()
                return
            self._acquired = True
        self.successResponse(f"{self.hostname} POP3 ready")
        self.setTimeout(self.settings.timeout)

    def connectionLost(self, reason: Failure | None = None) -> None:
        self._closed = True
        if self._acquired and self.connections is not None:
            self.connections.release(self._host)
            self._acquired = False
        super().connectionLost(reason)

    def timeoutConnection(self) -> None:
        """
        RFC 1939 autologout: close without entering the UPDATE state.  A
        client that stopped reading a response gets no C{-ERR} in the middle
        of it.
        """
        if not self._busy:
            self.failResponse(b"Disconnected for inactivity")
        self.transport.loseConnection()

    def successResponse(self, message: bytes | str = b"") -> None:
        if isinstance(message, str):
            message = message.encode("utf-8")
        self.transport.write(b"+OK " + message + b"\r\n" if message else b"+OK\r\n")

    # Input

    def dataReceived(self, data: bytes) -> None:
        self._input += data
        self._processInput()

    def _stopped(self) -> bool:
        return self._closed or bool(getattr(self.transport, "disconnecting", False))

    def _processInput(self) -> None:
        """
        Run every complete line in the input, unless a command is still in
        progress; re-entered from a command that completes synchronously, it
        leaves the work to the loop already running.
        """
        if self._processing:
            return
        self._processing = True
        limit = self.settings.max_line_length
        try:
            while not self._busy and not self._stopped():
                end = self._input.find(b"\n")
                if end < 0:
                    if len(self._input) > limit + 1:
                        del self._input[:]
                        if not self._skippingLongLine:
                            self._skippingLongLine = True
                            self._lineTooLong()
                    break
                line = bytes(self._input[:end]).removesuffix(b"\r")
                del self._input[: end + 1]
                if self._skippingLongLine:
                    self._skippingLongLine = False
                elif len(line) > limit:
                    self._lineTooLong()
                else:
                    self.lineReceived(line)
        finally:
            self._processing = False
        self._throttleReads()

    def _lineTooLong(self) -> None:
        self._awaitingSASL = False
        self.failResponse(b"Line too long")

    def _throttleReads(self) -> None:
        if self._stopped():
            return
        if self._busy and not self._readsPaused and len(self._input) > _BACKLOG:
            self._readsPaused = True
            self.transport.pauseProducing()
        elif self._readsPaused and not self._busy:
            self._readsPaused = False
            self.transport.resumeProducing()

    def lineReceived(self, line: bytes) -> None:
        self.resetTimeout()
        try:
            if self._awaitingSASL:
                self._awaitingSASL = False
                self._saslResponse(line)
            else:
                self._dispatch(line)
        except Exception:
            self._log.failure("POP3 command failed for {host}", host=self._host)
            self.failResponse(b"Internal error")

    def _dispatch(self, line: bytes) -> None:
        name, _, rest = line.partition(b" ")
        command = name.upper()
        if command not in _ARITY:
            self.failResponse(b"Unknown command")
            return
        arity = _ARITY[command]
        if self.mbox is None and command in _TRANSACTION_ONLY:
            self.failResponse(b"Not logged in")
            return
        if self.mbox is not None and command in _AUTHORIZATION_ONLY:
            self.failResponse(b"Already logged in")
            return
        handler = getattr(self, "do_" + command.decode("ascii"))
        if arity is None:
            handler(rest)
            return
        args = rest.split()
        if len(args) < arity[0]:
            self.failResponse(b"Missing argument")
        elif len(args) > arity[1]:
            self.failResponse(b"Too many arguments")
        else:
            handler(*args)

    def holdInput(self, d: Deferred[Any]) -> Deferred[None]:
        """
        Hold further input until C{d} fires; answer an unexpected failure
        with C{-ERR Internal error}.  The idle timer keeps running (a
        transfer resets it with every chunk), so a client that stops
        reading does not hold its session open for ever.
        """
        self._busy = True

        def unexpected(failure: Failure) -> None:
            self._log.failure("POP3 command failed for {host}", failure, host=self._host)
            if not self._closed:
                self.failResponse(b"Internal error")

        def finished(_: object) -> None:
            self._busy = False
            if not self._closed:
                self.resetTimeout()
                self._processInput()

        return d.addErrback(unexpected).addBoth(finished)

    # Authorization state

    def listCapabilities(self) -> list[bytes]:
        """
        RFC 2449 capabilities: what this session can do now.  C{USER} and
        C{SASL PLAIN} only where a password may be sent, C{STLS} only before
        TLS and login.
        """
        caps = [b"TOP", b"UIDL", b"RESP-CODES", b"AUTH-RESP-CODE", b"PIPELINING"]
        if self.mbox is None:
            if self._plaintextAllowed():
                caps += [b"USER", b"SASL PLAIN"]
            if self._canStartTLS():
                caps.append(b"STLS")
        caps.append(b"IMPLEMENTATION tmail")
        return caps

    def _plaintextAllowed(self) -> bool:
        return plaintextAuthAllowed(self.settings.allow_plaintext_auth, self.transport)

    def _canStartTLS(self) -> bool:
        return (
            self.tlsContextFactory is not None
            and ITLSTransport.providedBy(self.transport)
            and not isSecure(self.transport)
        )

    def do_STLS(self) -> None:
        """
        RFC 2595 STLS.  Input already received after the command was sent in
        the clear and could have been injected by anyone on the path, so it
        is discarded, along with a pending C{USER}.
        """
        if not self._canStartTLS():
            self.failResponse(
                b"Already using TLS" if isSecure(self.transport) else b"STLS not available"
            )
            return
        self.successResponse(b"Begin TLS negotiation")
        del self._input[:]
        self._userIs = None
        self.transport.startTLS(self.tlsContextFactory)

    def do_APOP(self, rest: bytes) -> None:
        self.failResponse(b"APOP not supported")

    def do_USER(self, user: bytes) -> None:
        if not self._plaintextAllowed():
            self.failResponse(PLAINTEXT_DISALLOWED)
            return
        self._userIs = user
        self.successResponse(b"Send your password")

    def do_PASS(self, password: bytes) -> None:
        if not self._plaintextAllowed():
            self.failResponse(PLAINTEXT_DISALLOWED)
            return
        user, self._userIs = self._userIs, None
        if user is None:
            self.failResponse(b"Send USER first")
        elif not password:
            self.failResponse(b"Missing argument")
        else:
            self._login(user, password)

    def do_AUTH(self, mechanism: bytes | None = None, initial: bytes | None = None) -> None:
        """RFC 5034 AUTH; only PLAIN, and only where a password may be sent."""
        allowed = self._plaintextAllowed()
        if mechanism is None:
            self.transport.write(b"+OK\r\n" + (b"PLAIN\r\n" if allowed else b"") + b".\r\n")
        elif mechanism.upper() != b"PLAIN":
            self.failResponse(b"Unsupported authentication mechanism")
        elif not allowed:
            self.failResponse(PLAINTEXT_DISALLOWED)
        elif initial is None:
            self._awaitingSASL = True
            self.transport.write(b"+ \r\n")
        else:
            self._saslResponse(b"" if initial == b"=" else initial)

    def _saslResponse(self, line: bytes) -> None:
        if line == b"*":
            self.failResponse(b"Authentication aborted")
            return
        try:
            decoded = binascii.a2b_base64(line, strict_mode=True)
        except binascii.Error:
            self.failResponse(b"Invalid base64 data")
            return
        parts = decoded.split(b"\0")
        if len(parts) != 3 or not parts[1] or not parts[2] or parts[0] not in (b"", parts[1]):
            self.failResponse(b"[AUTH] Authentication failed")
            return
        self._login(parts[1], parts[2])

    def _login(self, user: bytes, password: bytes) -> None:
        """
        Log in once the throttle counts the check as running
        (L{tmail.auth.throttle}); an address at its limit is refused
        without a check.
        """

        def begun(attempt: ILoginAttempt | None) -> Deferred[None] | None:
            if attempt is None:
                if not self._closed:
                    self.failResponse(b"[SYS/TEMP] Too many failed logins, try again later")
                return None
            credentials = UsernamePassword(user, password)
            login = maybeDeferred(self.portal.login, credentials, None, IMailUser)
            return settle(attempt, login).addCallbacks(
                self._loggedIn, self._loginFailed, callbackArgs=(user,), errbackArgs=(user,)
            )

        self.holdInput(self.throttle.begin(self._host).addCallback(begun))

    def _loggedIn(self, result: tuple[Any, Any, Any], user: bytes) -> Deferred[None] | None:
        interface, avatar, logout = result
        if self._closed:
            logout()
            return None
        if interface is not IMailUser:
            logout()
            raise TypeError(f"realm returned {interface!r}, not IMailUser")

        async def opened() -> None:
            try:
                mailbox = await self.openMailbox(avatar)
                sizes = await maybeDeferred(mailbox.listMessages)
            except BaseException:
                logout()
                raise
            if self._closed:
                logout()
                return
            self.mbox = mailbox
            self._onLogout = logout
            self._sizes = list(sizes)
            self._log.info(
                "POP3 login {user} from {host}",
                user=user.decode("utf-8", "replace"),
                host=self._host,
            )
            self.successResponse(b"Logged in")

        return Deferred.fromCoroutine(opened())

    async def openMailbox(self, user: IMailUser) -> pop3.IMailbox:
        """
        What POP3 serves of a user who logged in: the INBOX of its store, as
        it is now (other processes' changes taken in).  A subclass may
        serve another view.
        """
        inbox = await maybeDeferred(user.store.getFolder, "INBOX")
        return await openMailbox(inbox, self.settings.uidl_format)

    def _loginFailed(self, failure: Failure, user: bytes) -> None:
        if not failure.check(LoginFailed):  # type: ignore[no-untyped-call]
            self._log.failure("POP3 login failed for {host}", failure, host=self._host)
            if not self._closed:
                self.failResponse(b"[SYS/TEMP] Internal error")
            return
        self._log.warn(
            "POP3 failed login {user} from {host}",
            user=user.decode("utf-8", "replace"),
            host=self._host,
        )
        if not self._closed:
            self.failResponse(b"[AUTH] Authentication failed")

    # Transaction state

    def _index(self, number: bytes) -> int | None:
        """The 0-based index of an undeleted message, or answer C{-ERR} and return C{None}."""
        if not _NUMBER.fullmatch(number):
            self.failResponse(b"Invalid message number")
            return None
        n = int(number)
        if not 1 <= n <= len(self._sizes):
            self.failResponse(b"No such message, only %d in maildrop" % len(self._sizes))
            return None
        if n - 1 in self._deleted:
            self.failResponse(b"Message %d already deleted" % n)
            return None
        return n - 1

    def _live(self) -> list[int]:
        return [i for i in range(len(self._sizes)) if i not in self._deleted]

    def do_STAT(self) -> None:
        live = self._live()
        self.successResponse(b"%d %d" % (len(live), sum(self._sizes[i] for i in live)))

    def do_LIST(self, number: bytes | None = None) -> None:
        if number is not None:
            i = self._index(number)
            if i is not None:
                self.successResponse(b"%d %d" % (i + 1, self._sizes[i]))
            return
        live = self._live()
        lines = [b"+OK %d messages\r\n" % len(live)]
        lines += [b"%d %d\r\n" % (i + 1, self._sizes[i]) for i in live]
        lines.append(b".\r\n")
        self.transport.writeSequence(lines)

    def _uidl(self, i: int) -> bytes:
        uidl = self.mbox.getUidl(i)
        return uidl if isinstance(uidl, bytes) else str(uidl).encode("utf-8")

    def do_UIDL(self, number: bytes | None = None) -> None:
        if number is not None:
            i = self._index(number)
            if i is not None:
                self.successResponse(b"%d %s" % (i + 1, self._uidl(i)))
            return
        lines = [b"+OK\r\n"]
        lines += [b"%d %s\r\n" % (i + 1, self._uidl(i)) for i in self._live()]
        lines.append(b".\r\n")
        self.transport.writeSequence(lines)

    def do_DELE(self, number: bytes) -> None:
        i = self._index(number)
        if i is None:
            return
        self.mbox.deleteMessage(i)
        self._deleted.add(i)
        self.successResponse(b"Message %d deleted" % (i + 1))

    def do_NOOP(self) -> None:
        self.successResponse()

    def do_RSET(self) -> None:
        self.mbox.undeleteMessages()
        self._deleted.clear()
        self.successResponse(b"%d messages" % len(self._sizes))

    def do_RETR(self, number: bytes) -> None:
        i = self._index(number)
        if i is not None:
            self._sendMessage(i, None)

    def do_TOP(self, number: bytes, lines: bytes) -> None:
        i = self._index(number)
        if i is None:
            return
        if not _NUMBER.fullmatch(lines):
            self.failResponse(b"Invalid line count")
            return
        self._sendMessage(i, int(lines))

    def _sendMessage(self, i: int, bodyLines: int | None) -> None:
        def unavailable(failure: Failure) -> Failure | None:
            if not failure.check(ValueError, IndexError, KeyError):  # type: ignore[no-untyped-call]
                return failure
            self.failResponse(b"Message %d no longer exists" % (i + 1))
            return None

        d = maybeDeferred(self.mbox.getMessage, i)
        d.addCallbacks(self._transfer, unavailable, callbackArgs=(i, bodyLines))
        self.holdInput(d)

    def _transfer(self, file: BinaryIO, i: int, bodyLines: int | None) -> Deferred[None] | None:
        """Send a message as a dot-stuffed multi-line response, streaming it from C{file}."""
        # A lone CR goes as stored: the octets sent are the size LIST gave.
        stuffer = DotStuffer("keep")

        def transform(chunk: bytes) -> bytes:
            self.resetTimeout()
            return stuffer.feed(chunk)

        if bodyLines is None:
            self.successResponse(b"%d octets" % self._sizes[i])
            source: Any = file
        else:
            self.successResponse(b"Top of message follows")
            source = TopReader(file, bodyLines)

        def sent(_: object) -> None:
            self.transport.write(stuffer.finish())
            listener = IRetrievalListener(self.mbox, None)
            if bodyLines is None and listener is not None:
                listener.messageRetrieved(i)

        def stopped(failure: Failure) -> None:
            self._log.debug(
                "POP3 transfer to {host} stopped: {f.value}", f=failure, host=self._host
            )
            self.transport.loseConnection()

        def close(_: object) -> None:
            try:
                file.close()
            except OSError:
                self._log.failure("POP3 could not close a message file")

        try:
            d: Deferred[Any] = FileSender().beginFileTransfer(  # type: ignore[no-untyped-call]
                source, self.transport, transform
            )
        except Exception:
            self._log.failure("POP3 could not read message {n}", n=i + 1)
            self.transport.unregisterProducer()
            self.transport.loseConnection()
            close(None)
            return None
        return d.addCallbacks(sent, stopped).addBoth(close)

    def do_QUIT(self) -> None:
        """Enter the UPDATE state (only from here do deletions take effect) and close."""
        if self.mbox is None:
            self.successResponse(b"Bye")
            self.transport.loseConnection()
            return

        def updated(_: object) -> None:
            self.successResponse(b"Bye")

        def failed(failure: Failure) -> None:
            if isinstance(failure.value, StoreFull):
                self._log.warn("POP3 update failed for {host}: disk full", host=self._host)
            else:
                self._log.failure("POP3 update failed for {host}", failure, host=self._host)
            self.failResponse(b"[SYS/TEMP] Some deleted messages not removed")

        def close(_: object) -> None:
            self.transport.loseConnection()

        d = maybeDeferred(self.mbox.sync).addCallbacks(updated, failed).addBoth(close)
        self.holdInput(d)
