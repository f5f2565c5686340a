# -*- test-case-name: tests.imap.test_imap_protocol -*-
"""
The IMAP4rev1 session: Twisted's L{imap4.IMAP4Server} with its command
dispatch, literal handling and error reporting replaced, and most commands
re-bound to handlers that speak to tmail's store.

What this subclass fixes (each has a regression test named after it):
  - STARTTLS runs no command pipelined after it (CVE-2011-0411 class).
  - Literal sizes are 32-bit numbers; a negative or absurd size is C{BAD},
    a large one C{NO [TOOBIG]}, and the bytes of a refused non-synchronizing
    literal are read and thrown away, never run as commands.
  - Quoted strings honour C{\\"} and C{\\\\}; mailbox names must be
    canonical modified UTF-7.
  - IDLE ends only on C{DONE}; other sessions' changes reach idling clients.
  - Store errors are C{NO} with RFC 5530 codes (C{TRYCREATE}, C{NONEXISTENT},
    C{ALREADYEXISTS}), never C{BAD} or exception text.
  - One command runs at a time: input is paused while a command waits for
    the store, the password checker or the transport.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from typing import Any

from twisted.cred import credentials
from twisted.cred.error import LoginFailed
from twisted.cred.portal import Portal
from twisted.internet import reactor, task
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.ssl import CertificateOptions
from twisted.logger import Logger
from twisted.mail import imap4
from twisted.python.failure import Failure
from zope.interface import implementer

from tmail.auth.policy import isSecure, peerHost, plaintextAuthAllowed
from tmail.auth.throttle import AuthThrottle
from tmail.config.schema import IMAPSettings
from tmail.connections import ConnectionCounter
from tmail.errors import FolderExists, InvalidFolderName, NoSuchFolder, StoreFull
from tmail.imap.account import IMAPAccount
from tmail.imap.fetch import FetchOutcome, FetchStream, messageItems, setsSeen
from tmail.imap.mailbox import (
    MAILBOX_FLAGS,
    Changes,
    IMAPMailbox,
    ISessionListener,
    folderStatus,
)
from tmail.imap.mutf7 import BadMailboxName, decodeName, encodeName
from tmail.imap.parse import (
    BadLiteral,
    Tokenizer,
    literalMarker,
    parseDateTime,
    parseFlags,
    parseQuoted,
    parseSequenceSet,
    splitAtom,
    wholeLiteral,
)
from tmail.imap.structure import quoted

_log = Logger()
_COOPERATOR = task.Cooperator()

_S = imap4.IMAP4Server
_TAG = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\+]+\Z')
_NO_EXPUNGE = frozenset({b"FETCH", b"STORE", b"SEARCH"})
_STATUS_ITEMS = frozenset({b"MESSAGES", b"RECENT", b"UIDNEXT", b"UIDVALIDITY", b"UNSEEN"})
_STATES = ("unauth", "auth", "select", "logout")

#: RFC 3501 5.4: an authenticated client may stay idle at least 30 minutes.
MIN_POSTAUTH_TIMEOUT = 30 * 60.0
#: Idle time allowed before login, at most.
PREAUTH_TIMEOUT = 60.0


class CommandError(Exception):
    """Ends the current command with a tagged C{NO} or C{BAD}."""

    def __init__(self, status: bytes, text: bytes) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


def _no(text: bytes) -> CommandError:
    return CommandError(b"NO", text)


def _safe(text: str) -> bytes:
    """Printable ASCII for a response text, whatever an exception said."""
    cleaned = "".join(c if " " <= c <= "~" else "?" for c in text)
    return cleaned[:200].encode("ascii") or b"Failed"


def uidSet(uids: list[int]) -> bytes:
    """C{1:3,7} for the UIDs 1, 2, 3, 7 (in the given order)."""
    ranges: list[list[int]] = []
    for uid in uids:
        if ranges and uid == ranges[-1][1] + 1:
            ranges[-1][1] = uid
        else:
            ranges.append([uid, uid])
    return b",".join(b"%d" % a if a == b else b"%d:%d" % (a, b) for a, b in ranges)


class _LiteralReader:
    """
    Takes a literal's octets in raw mode (passing them to C{sink}, if any),
    then fires C{deferred} with the rest of the command line.  A sink that
    fails is not called again; the failure is reported once the literal
    has been read, so its bytes are never taken for commands.
    """

    def __init__(self, size: int, sink: Callable[[bytes], object] | None) -> None:
        self.remaining = size
        self.sink = sink
        self.deferred: Deferred[bytes] = Deferred()
        self.failure: Exception | None = None

    def write(self, data: bytes) -> bytes | None:
        take = data[: self.remaining]
        self.remaining -= len(take)
        if take and self.sink is not None and self.failure is None:
            try:
                self.sink(take)
            except Exception as e:
                self.failure = e
        return data[len(take) :] if self.remaining == 0 else None

    def callback(self, line: bytes) -> None:
        if self.failure is not None:
            self.deferred.errback(self.failure)
        else:
            self.deferred.callback(line)


@implementer(ISessionListener)
class IMAPServer(imap4.IMAP4Server):  # type: ignore[misc]
    """
    One IMAP session.  Command handlers are bound, as in Twisted, through
    C{<state>_<COMMAND>} tuples of a handler and argument parsers; a handler
    may return a L{Deferred}, and any error it raises becomes a tagged
    response (see L{describeFailure}).

    @cvar idlePollInterval: seconds between looks at the folder while a
        client idles, to notice changes made by other processes.
    """

    IDENT = b"tmail ready."
    idlePollInterval = 5.0

    account: IMAPAccount | None
    mbox: IMAPMailbox | None
    _pendingLiteral: Any

    def __init__(
        self,
        portal: Portal,
        settings: IMAPSettings,
        *,
        tlsContextFactory: CertificateOptions | None,
        throttle: AuthThrottle,
        connections: ConnectionCounter,
        clock: IReactorTime | None = None,
        cooperator: task.Cooperator | None = None,
    ) -> None:
        super().__init__(chal={}, contextFactory=tlsContextFactory)
        self.portal = portal
        self.settings = settings
        self.throttle = throttle
        self.connections = connections
        self.clock: IReactorTime = clock if clock is not None else reactor
        self.cooperator = cooperator if cooperator is not None else _COOPERATOR
        self.MAX_LENGTH = settings.max_line_length
        self.timeOut = min(settings.timeout, PREAUTH_TIMEOUT)
        self.POSTAUTH_TIMEOUT = max(settings.timeout, MIN_POSTAUTH_TIMEOUT)
        self._tag: bytes | None = None
        self._noExpunge = False
        self._trailing: tuple[int, bool] | None = None
        self._trailingInvalid = False
        self._authTag: bytes | None = None
        self._idleTag: bytes | None = None
        self._idlePoll: task.LoopingCall | None = None
        self._flushPending = False
        self._counted = False
        self._lost = False
        self._host = "unknown"
        self._abortOnLost: Any = None

    def callLater(self, period: float, func: Callable[[], object]) -> Any:
        return self.clock.callLater(period, func)

    # Connection

    def connectionMade(self) -> None:
        self._host = peerHost(self.transport)
        if not self.connections.acquire(self._host):
            self.transport.write(b"* BYE Too many connections from your address\r\n")
            self.transport.loseConnection()
            return
        self._counted = True
        super().connectionMade()

    def dataReceived(self, data: bytes) -> None:
        if self._counted:
            super().dataReceived(data)

    def connectionLost(self, reason: Failure | None = None) -> None:
        self._lost = True
        if self._counted:
            self._counted = False
            self.connections.release(self._host)
        self._stopIdle()
        self._deselect()
        if self._abortOnLost is not None:
            self._abortOnLost.abort()
            self._abortOnLost = None
        self.state = "logout"
        super().connectionLost(reason)

    def timeoutConnection(self) -> None:
        self.sendLine(b"* BYE Autologout; connection idle too long")
        self.transport.loseConnection()

    def lineLengthExceeded(self, line: bytes) -> None:
        self.sendLine(b"* BAD Line too long")
        self.sendLine(b"* BYE Closing connection")
        self.transport.loseConnection()

    # Capabilities and security

    def _secure(self) -> bool:
        return bool(self.startedTLS) or isSecure(self.transport)

    def _plaintextOK(self) -> bool:
        return self._secure() or plaintextAuthAllowed(
            self.settings.allow_plaintext_auth, self.transport
        )

    def capabilities(self) -> dict[bytes, list[bytes] | None]:
        caps: dict[bytes, list[bytes] | None] = {
            b"LITERAL+": None,
            b"IDLE": None,
            b"NAMESPACE": None,
            b"UIDPLUS": None,
            b"CHILDREN": None,
            b"UNSELECT": None,
        }
        if self.state == "unauth":
            if self.ctx is not None and self.canStartTLS and not self._secure():
                caps[b"STARTTLS"] = None
            if self._plaintextOK():
                caps[b"SASL-IR"] = None
                caps[b"AUTH"] = [b"PLAIN"]
            else:
                caps[b"LOGINDISABLED"] = None
        return caps

    # Input: lines, literals, one command at a time

    def lineReceived(self, line: bytes) -> None:
        self.resetTimeout()
        if self.parseState in ("command", "pending"):
            self._noteTrailingLiteral(line)
        try:
            getattr(self, "parse_" + self.parseState)(line)
        except Exception:
            _log.failure("Unexpected error handling a command line")
            self._recover()
        if (
            self._tag is not None
            and self.parseState == "command"
            and self.line_mode
            and not self.paused
            and self._connected()
        ):
            self.pauseProducing()

    def rawDataReceived(self, data: bytes) -> None:
        self.resetTimeout()
        passon = self._pendingLiteral.write(data)
        if passon is not None:
            self.setLineMode(passon)

    def _noteTrailingLiteral(self, line: bytes) -> None:
        try:
            self._trailing = literalMarker(line)
            self._trailingInvalid = False
        except BadLiteral:
            self._trailing = None
            self._trailingInvalid = line.endswith(b"+}")

    def _recover(self) -> None:
        self.parseState = "command"
        self._pendingLiteral = None
        self.setLineMode()
        if self._tag is not None:
            self.sendNegativeResponse(self._tag, b"[SERVERBUG] Internal error")
        else:
            self.sendUntaggedResponse(b"BAD Internal error")

    def parse_command(self, line: bytes) -> None:
        self._noExpunge = False
        tag, _, rest = line.partition(b" ")
        if not _TAG.match(tag):
            self.sendBadResponse(None, b"Invalid tag")
            self._afterCommand()
            return
        self._tag = tag
        command, _, args = rest.partition(b" ")
        if not command:
            self.sendBadResponse(tag, b"Missing command")
            return
        self.dispatchCommand(tag, command.upper(), args)

    def lookupCommand(self, cmd: bytes) -> Any:
        if not (cmd.isascii() and cmd.isalpha()):
            return None
        return getattr(self, f"{self.state}_{cmd.decode()}", None)

    def dispatchCommand(self, tag: bytes, cmd: bytes, rest: bytes, uid: int | None = None) -> None:
        entry = self.lookupCommand(cmd)
        if entry is None:
            known = (
                cmd.isascii()
                and cmd.isalpha()
                and any(hasattr(self, f"{state}_{cmd.decode()}") for state in _STATES)
            )
            self.sendBadResponse(tag, b"Command not allowed now" if known else b"Unknown command")
            return
        self._noExpunge = cmd in _NO_EXPUNGE
        self._run(tag, entry, rest, uid).addErrback(self._commandFailed, tag)

    def _run(
        self, tag: bytes, entry: tuple[Any, ...], line: bytes, uid: int | None
    ) -> Deferred[Any]:
        """Parse the arguments named by C{entry}, then call its handler."""

        def resume(parsed: tuple[Any, bytes], spec: tuple[Any, ...], args: list[Any]) -> Any:
            return step(parsed[1] or b"", spec, [*args, parsed[0]])

        def step(line: bytes, spec: tuple[Any, ...], args: list[Any]) -> Any:
            for i, parser in enumerate(spec):
                if not callable(parser):
                    args.append(parser)
                    continue
                result = parser(self, line)
                if isinstance(result, Deferred):
                    return result.addCallback(resume, spec[i + 1 :], args)
                value, line = result
                args.append(value)
                line = line or b""
            if line.strip():
                raise imap4.IllegalClientResponse("Too many arguments")
            extra = {} if uid is None else {"uid": uid}
            return entry[0](self, tag, *args, **extra)

        return maybeDeferred(step, line, entry[1:], [])

    def _readLiteral(
        self, size: int, synchronizing: bool, sink: Callable[[bytes], object] | None
    ) -> Deferred[bytes]:
        """
        Read the literal announced at the end of the current line; fires with
        the rest of the command.
        """
        reader = _LiteralReader(size, sink)
        self._trailing = None
        self._pendingLiteral = reader
        self.parseState = "pending"
        if synchronizing:
            self.sendContinuationRequest(b"Ready for literal data")
        if size:
            self.setRawMode()
        return reader.deferred

    def _swallow(self, size: int) -> None:
        """Read and drop a refused non-synchronizing literal and the rest of its command."""
        self._readLiteral(size, False, None).addCallback(self._discardRest)

    def _discardRest(self, line: bytes) -> None:
        self._noteTrailingLiteral(line)
        self._swallowTrailing()

    def _swallowTrailing(self) -> None:
        trailing, self._trailing = self._trailing, None
        if self._trailingInvalid:
            self._trailingInvalid = False
            self.sendLine(b"* BYE Invalid literal size")
            self.transport.loseConnection()
        elif trailing is not None and not trailing[1]:
            self._swallow(trailing[0])

    def _afterCommand(self) -> None:
        self._swallowTrailing()
        if self.paused:
            self.clock.callLater(0, self._resumeReading)

    def _resumeReading(self) -> None:
        if self.paused and self._tag is None and self._connected():
            self.resumeProducing()

    def _connected(self) -> bool:
        return not self._lost and not getattr(self.transport, "disconnecting", False)

    # Responses

    def _respond(self, state: bytes, tag: bytes | None, message: bytes | None) -> None:
        finishing = tag is not None and tag == self._tag and state in (b"OK", b"NO", b"BAD")
        if finishing:
            self._tag = None
            self._reportChanges()
        super()._respond(state, tag, message)
        if finishing:
            self._afterCommand()

    def _commandFailed(self, failure: Failure, tag: bytes) -> None:
        if tag != self._tag:
            if not isinstance(failure.value, task.TaskStopped):
                _log.failure("Error after the command was answered", failure)
            return
        status, text = self.describeFailure(failure)
        self._respond(status, tag, text)

    def describeFailure(self, failure: Failure) -> tuple[bytes, bytes]:
        """The tagged status and text for an error raised by a command."""
        error = failure.value
        if isinstance(error, CommandError):
            return error.status, error.text
        if isinstance(
            error,
            imap4.IllegalClientResponse
            | imap4.IllegalQueryError
            | imap4.IllegalIdentifierError
            | imap4.MismatchedNesting
            | imap4.MismatchedQuoting,
        ):
            return b"BAD", _safe(str(error))
        if isinstance(error, NoSuchFolder):
            return b"NO", b"[NONEXISTENT] No such mailbox"
        if isinstance(error, FolderExists):
            return b"NO", b"[ALREADYEXISTS] Mailbox already exists"
        if isinstance(error, BadMailboxName | InvalidFolderName):
            return b"NO", b"[CANNOT] " + _safe(str(error))
        if isinstance(error, StoreFull):
            return b"NO", b"[OVERQUOTA] Not enough storage"
        if isinstance(error, imap4.ReadOnlyMailbox):
            return b"NO", b"Mailbox is read-only"
        if isinstance(error, imap4.IllegalMailboxEncoding):
            return b"NO", b"[CANNOT] Invalid mailbox name"
        _log.failure("Command failed unexpectedly", failure)
        return b"NO", b"[SERVERBUG] Internal error"

    def _reportChanges(self, force: bool = False) -> None:
        """Send what changed in the selected folder, if anything, as RFC 3501 7.4.1 allows."""
        mbox = self.mbox
        if mbox is None or self.state != "select" or not (force or mbox.dirty):
            return
        try:
            changes = mbox.sync(allowExpunge=not self._noExpunge)
        except NoSuchFolder:
            self._deselect()
            self.sendUntaggedResponse(b"BYE Selected mailbox was deleted")
            self.transport.loseConnection()
            return
        self._writeChanges(changes)

    def _writeChanges(self, changes: Changes) -> None:
        for seq in changes.expunged:
            self.sendUntaggedResponse(b"%d EXPUNGE" % seq)
        if changes.exists is not None:
            self.sendUntaggedResponse(b"%d EXISTS" % changes.exists)
        if changes.recent is not None:
            self.sendUntaggedResponse(b"%d RECENT" % changes.recent)
        for seq, flags in sorted(changes.flags.items()):
            self.sendUntaggedResponse(b"%d FETCH (FLAGS (%s))" % (seq, " ".join(flags).encode()))

    def mailboxChanged(self) -> None:
        if self.parseState == "idle" and not self._flushPending:
            self._flushPending = True
            self.clock.callLater(0, self._idleReport)

    # Argument parsers

    def arg_astring(self, line: bytes, final: bool = False) -> Any:
        """An astring: atom, quoted string (with escapes) or literal."""
        return self._string(line, b"")

    def arg_finalastring(self, line: bytes) -> Any:
        return self._string(line, b"")

    def _string(self, line: bytes, allowed: bytes) -> Any:
        line = line.lstrip(b" ")
        if line[:1] == b'"':
            value, end = parseQuoted(line)
            rest = line[end:]
            if rest[:1] not in (b"", b" "):
                raise imap4.IllegalClientResponse("Missing space after quoted string")
            return value, rest[1:]
        if line[:1] == b"{":
            marker = wholeLiteral(line)
            if marker is None:
                raise imap4.IllegalClientResponse("Invalid literal")
            return self._stringLiteral(*marker)
        return splitAtom(line, allowed)

    def _stringLiteral(self, size: int, synchronizing: bool) -> Deferred[tuple[bytes, bytes]]:
        if size > self.settings.max_line_length:
            raise _no(b"[TOOBIG] Literal too large")
        chunks: list[bytes] = []
        return self._readLiteral(size, synchronizing, chunks.append).addCallback(
            lambda rest: (b"".join(chunks), rest)
        )

    def _decoded(self, parsed: Any) -> Any:
        if isinstance(parsed, Deferred):
            return parsed.addCallback(self._decoded)
        value, rest = parsed
        return decodeName(value), rest

    def arg_mailbox(self, line: bytes) -> Any:
        """A mailbox name, decoded from canonical modified UTF-7."""
        return self._decoded(self._string(line, b""))

    def arg_listmailbox(self, line: bytes) -> Any:
        """A LIST reference or pattern: a mailbox name that may hold C{%} and C{*}."""
        return self._decoded(self._string(line, b"%*"))

    def arg_seqset(self, line: bytes) -> tuple[imap4.MessageSet, bytes]:
        token, _, rest = line.lstrip(b" ").partition(b" ")
        return parseSequenceSet(token), rest

    def arg_fetchatt(self, line: bytes) -> tuple[list[Any], bytes]:
        parser = imap4._FetchParser()
        try:
            parser.parseString(line)
        except Exception:
            raise imap4.IllegalClientResponse("Invalid FETCH items") from None
        for item in parser.result:
            partial = getattr(item, "partialBegin", None)
            if partial is not None and (partial < 0 or item.partialLength <= 0):
                raise imap4.IllegalClientResponse("Invalid partial range")
        if not parser.result:
            raise imap4.IllegalClientResponse("Missing FETCH items")
        return parser.result, b""

    def arg_searchkeys(self, line: bytes) -> Any:
        """SEARCH criteria, possibly spread over several literals."""
        tokenizer = Tokenizer()

        def feed(line: bytes) -> Any:
            marker = tokenizer.feed(line)
            if marker is None:
                return tokenizer.result(), b""

            def literal(parsed: tuple[bytes, bytes]) -> Any:
                tokenizer.addLiteral(parsed[0])
                return feed(parsed[1])

            return self._stringLiteral(*marker).addCallback(literal)

        return feed(line)

    def opt_line(self, line: bytes | None) -> tuple[bytes | None, bytes]:
        line = (line or b"").strip(b" ")
        return (line or None), b""

    # Any state

    def do_NOOP(self, tag: bytes) -> None:
        self._reportChanges(force=True)
        self.sendPositiveResponse(tag, b"NOOP completed")

    unauth_NOOP = auth_NOOP = select_NOOP = (do_NOOP,)

    def do_LOGOUT(self, tag: bytes) -> None:
        self.sendUntaggedResponse(b"BYE Logging out")
        self.sendPositiveResponse(tag, b"LOGOUT completed")
        self.transport.loseConnection()

    unauth_LOGOUT = auth_LOGOUT = select_LOGOUT = (do_LOGOUT,)

    # Not authenticated

    def do_STARTTLS(self, tag: bytes) -> None:
        if self._secure():
            raise CommandError(b"BAD", b"TLS is already active")
        if self.ctx is None or not self.canStartTLS:
            raise _no(b"TLS is not available")
        discarded = self.clearLineBuffer()
        if discarded:
            _log.info(
                "Discarded {count} bytes pipelined after STARTTLS from {host}",
                count=len(discarded),
                host=self._host,
            )
        self.sendPositiveResponse(tag, b"Begin TLS negotiation now")
        self.transport.startTLS(self.ctx)
        self.startedTLS = True

    unauth_STARTTLS = (do_STARTTLS,)

    def do_LOGIN(self, tag: bytes, user: bytes, password: bytes) -> Deferred[None]:
        if not self._plaintextOK():
            raise _no(b"[PRIVACYREQUIRED] Use STARTTLS before logging in")
        return self._login(tag, credentials.UsernamePassword(user, password))

    unauth_LOGIN = (do_LOGIN, arg_astring, arg_finalastring)

    def do_AUTHENTICATE(self, tag: bytes, mechanism: bytes, initial: bytes | None) -> Any:
        if mechanism.upper() != b"PLAIN":
            raise _no(b"[CANNOT] Unsupported authentication mechanism")
        if not self._plaintextOK():
            raise _no(b"[PRIVACYREQUIRED] Use STARTTLS before authenticating")
        if initial is not None:
            return self._plain(tag, initial)
        self._authTag = tag
        self.parseState = "authenticate"
        self.sendLine(b"+ ")
        return None

    unauth_AUTHENTICATE = (do_AUTHENTICATE, _S.arg_atom, opt_line)

    def parse_authenticate(self, line: bytes) -> None:
        self.parseState = "command"
        tag, self._authTag = self._authTag, None
        assert tag is not None
        if line.strip() == b"*":
            self.sendBadResponse(tag, b"AUTHENTICATE cancelled")
            return
        maybeDeferred(self._plain, tag, line.strip()).addErrback(self._commandFailed, tag)

    def _plain(self, tag: bytes, encoded: bytes) -> Deferred[None]:
        try:
            data = base64.b64decode(b"" if encoded == b"=" else encoded, validate=True)
        except binascii.Error:
            raise imap4.IllegalClientResponse("Invalid base64") from None
        plain = imap4.PLAINCredentials()
        plain.setResponse(data)
        authzid = data.split(b"\0", 1)[0]
        if authzid and authzid != plain.username:
            raise _no(b"[AUTHORIZATIONFAILED] Cannot log in as another user")
        return self._login(tag, plain)

    def _login(self, tag: bytes, creds: credentials.IUsernamePassword) -> Deferred[None]:
        host = self._host
        if self.throttle.isBlocked(host):
            raise _no(b"[UNAVAILABLE] Too many failed logins; try again later")
        user = creds.username.decode("utf-8", "replace")

        def succeeded(result: tuple[Any, IMAPAccount, Callable[[], None]]) -> None:
            _, avatar, logout = result
            if self._lost:
                logout()
                return
            self.throttle.succeeded(host)
            self.account, self._onLogout, self.state = avatar, logout, "auth"
            self.setTimeout(self.POSTAUTH_TIMEOUT)
            _log.info("IMAP login {user} from {host}", user=avatar.user, host=host)
            caps = b" ".join(self.listCapabilities())
            self.sendPositiveResponse(tag, b"[CAPABILITY " + caps + b"] Logged in")

        def failed(failure: Failure) -> Any:
            if not isinstance(failure.value, LoginFailed):
                return failure
            _log.info("IMAP login failed for {user} from {host}", user=user, host=host)

            def refuse(_: object) -> None:
                raise _no(b"[AUTHENTICATIONFAILED] Authentication failed")

            return self.throttle.failed(host).addCallback(refuse)

        login: Deferred[Any] = self.portal.login(creds, None, imap4.IAccount)
        return login.addCallbacks(succeeded, failed)

    # Authenticated: folders

    def do_NAMESPACE(self, tag: bytes) -> None:
        self.sendUntaggedResponse(b'NAMESPACE (("" "/")) NIL NIL')
        self.sendPositiveResponse(tag, b"NAMESPACE completed")

    auth_NAMESPACE = select_NAMESPACE = (do_NAMESPACE,)

    def _account(self) -> IMAPAccount:
        assert self.account is not None
        return self.account

    def do_CREATE(self, tag: bytes, name: str) -> None:
        self._account().create(name)
        self.sendPositiveResponse(tag, b"CREATE completed")

    auth_CREATE = select_CREATE = (do_CREATE, arg_mailbox)

    def do_DELETE(self, tag: bytes, name: str) -> None:
        self._account().delete(name)
        self.sendPositiveResponse(tag, b"DELETE completed")

    auth_DELETE = select_DELETE = (do_DELETE, arg_mailbox)

    def do_RENAME(self, tag: bytes, old: str, new: str) -> None:
        self._account().rename(old, new)
        self.sendPositiveResponse(tag, b"RENAME completed")

    auth_RENAME = select_RENAME = (do_RENAME, arg_mailbox, arg_mailbox)

    def do_SUBSCRIBE(self, tag: bytes, name: str) -> None:
        self._account().subscribe(name)
        self.sendPositiveResponse(tag, b"SUBSCRIBE completed")

    auth_SUBSCRIBE = select_SUBSCRIBE = (do_SUBSCRIBE, arg_mailbox)

    def do_UNSUBSCRIBE(self, tag: bytes, name: str) -> None:
        self._account().unsubscribe(name)
        self.sendPositiveResponse(tag, b"UNSUBSCRIBE completed")

    auth_UNSUBSCRIBE = select_UNSUBSCRIBE = (do_UNSUBSCRIBE, arg_mailbox)

    def _listWork(self, tag: bytes, ref: str, pattern: str, sub: int, cmdName: bytes) -> None:
        account = self._account()
        if not pattern and not sub:
            self.sendUntaggedResponse(b'LIST (\\Noselect) "/" ""')
        else:
            found = account.listSubscribed if sub else account.listMailboxes
            for name, info in found(ref, pattern):
                flags = " ".join(info.getFlags()).encode()
                self.sendUntaggedResponse(
                    b'%s (%s) "/" %s' % (cmdName, flags, quoted(encodeName(name)))
                )
        self.sendPositiveResponse(tag, cmdName + b" completed")

    auth_LIST = select_LIST = (_listWork, arg_listmailbox, arg_listmailbox, 0, b"LIST")
    auth_LSUB = select_LSUB = (_listWork, arg_listmailbox, arg_listmailbox, 1, b"LSUB")

    def do_STATUS(self, tag: bytes, name: str, names: list[Any]) -> None:
        wanted = [n.upper() for n in names if isinstance(n, bytes)]
        if not wanted or len(wanted) != len(names) or not set(wanted) <= _STATUS_ITEMS:
            raise imap4.IllegalClientResponse("Invalid STATUS items")
        status = folderStatus(self._account().folder(name), [n.decode() for n in wanted])
        items = b" ".join(b"%s %d" % (key.encode(), value) for key, value in status.items())
        self.sendUntaggedResponse(b"STATUS %s (%s)" % (quoted(encodeName(name)), items))
        self.sendPositiveResponse(tag, b"STATUS completed")

    auth_STATUS = select_STATUS = (do_STATUS, arg_mailbox, _S.arg_plist)

    def do_APPEND(self, tag: bytes, name: str, rest: bytes) -> Deferred[None]:
        rest = rest.strip(b" ")
        flags: list[str] = []
        if rest[:1] == b"(":
            end = rest.find(b")")
            if end < 0:
                raise imap4.IllegalClientResponse("Unbalanced flag list")
            flags = parseFlags(rest[1:end].split())
            rest = rest[end + 1 :].lstrip(b" ")
        date = None
        if rest[:1] == b'"':
            value, end = parseQuoted(rest)
            date = parseDateTime(value)
            rest = rest[end:].lstrip(b" ")
        marker = wholeLiteral(rest)
        if marker is None:
            raise imap4.IllegalClientResponse("Missing message literal")
        size, synchronizing = marker
        try:
            folder = self._account().folder(name)
        except NoSuchFolder:
            raise _no(b"[TRYCREATE] No such mailbox") from None
        if size > self.settings.max_literal_size:
            raise _no(b"[TOOBIG] Message too large")
        pending = folder.beginMessage(flags, date)
        self._abortOnLost = pending

        def received(rest: bytes) -> None:
            self._abortOnLost = None
            if rest.strip(b" "):
                pending.abort()
                raise imap4.IllegalClientResponse("Unexpected data after the message")
            uid = pending.commit()
            self.sendPositiveResponse(
                tag, b"[APPENDUID %d %d] APPEND completed" % (folder.uidValidity(), uid)
            )

        def failed(failure: Failure) -> Failure:
            self._abortOnLost = None
            pending.abort()
            return failure

        return self._readLiteral(size, synchronizing, pending.write).addCallbacks(received, failed)

    auth_APPEND = select_APPEND = (do_APPEND, arg_mailbox, _S.arg_line)

    # Selecting

    def _deselect(self) -> None:
        mbox, self.mbox = self.mbox, None
        if mbox is not None:
            mbox.removeListener(self)
            mbox.close()
        if self.state == "select":
            self.state = "auth"

    def _selectWork(self, tag: bytes, name: str, rw: int, cmdName: bytes) -> None:
        self._deselect()
        mbox = self._account().select(name, bool(rw))
        mbox.addListener(self)
        send = self.sendUntaggedResponse
        send(b"FLAGS (" + " ".join(mbox.getFlags()).encode() + b")")
        send(b"%d EXISTS" % mbox.getMessageCount())
        send(b"%d RECENT" % mbox.getRecentCount())
        unseen = mbox.firstUnseen()
        if unseen is not None:
            send(b"OK [UNSEEN %d] First unseen message" % unseen)
        send(b"OK [UIDVALIDITY %d] UIDs valid" % mbox.getUIDValidity())
        send(b"OK [UIDNEXT %d] Predicted next UID" % mbox.getUIDNext())
        permanent = " ".join([*MAILBOX_FLAGS, "\\*"]).encode() if rw else b""
        send(b"OK [PERMANENTFLAGS (%s)] Flags allowed" % permanent)
        self.mbox, self.state = mbox, "select"
        mode = b"[READ-WRITE] " if rw else b"[READ-ONLY] "
        self.sendPositiveResponse(tag, mode + cmdName + b" completed")

    auth_SELECT = select_SELECT = (_selectWork, arg_mailbox, 1, b"SELECT")
    auth_EXAMINE = select_EXAMINE = (_selectWork, arg_mailbox, 0, b"EXAMINE")

    def _selected(self) -> IMAPMailbox:
        assert self.mbox is not None
        return self.mbox

    def do_CLOSE(self, tag: bytes) -> None:
        mbox = self._selected()
        if mbox.isWriteable():
            mbox.expunge()
        self._deselect()
        self.sendPositiveResponse(tag, b"CLOSE completed")

    select_CLOSE = (do_CLOSE,)

    def do_UNSELECT(self, tag: bytes) -> None:
        self._deselect()
        self.sendPositiveResponse(tag, b"UNSELECT completed")

    select_UNSELECT = (do_UNSELECT,)

    # IDLE (RFC 2177)

    def do_IDLE(self, tag: bytes) -> None:
        self._idleTag = tag
        self.parseState = "idle"
        self.sendContinuationRequest(b"Idling")
        self._reportChanges(force=True)
        poll = self._idlePoll = task.LoopingCall(self._idleReport)
        poll.clock = self.clock
        poll.start(self.idlePollInterval, now=False)

    auth_IDLE = select_IDLE = (do_IDLE,)

    def parse_idle(self, line: bytes) -> None:
        if line.strip().upper() != b"DONE":
            self.sendBadResponse(None, b"Expected DONE")
            return
        self.parseState = "command"
        tag, self._idleTag = self._idleTag, None
        self._stopIdle()
        self.sendPositiveResponse(tag, b"IDLE terminated")

    def _idleReport(self) -> None:
        self._flushPending = False
        if self.parseState == "idle" and not self._lost:
            self._reportChanges(force=True)

    def _stopIdle(self) -> None:
        poll, self._idlePoll = self._idlePoll, None
        if poll is not None and poll.running:
            poll.stop()

    # Selected: messages

    def do_CHECK(self, tag: bytes) -> None:
        self._reportChanges(force=True)
        self.sendPositiveResponse(tag, b"CHECK completed")

    select_CHECK = (do_CHECK,)

    def do_EXPUNGE(self, tag: bytes) -> None:
        self._writeChanges(Changes(expunged=self._selected().expunge()))
        self.sendPositiveResponse(tag, b"EXPUNGE completed")

    select_EXPUNGE = (do_EXPUNGE,)

    def do_UIDEXPUNGE(self, tag: bytes, messages: imap4.MessageSet, uid: int = 1) -> None:
        self._writeChanges(Changes(expunged=self._selected().expungeUIDs(messages)))
        self.sendPositiveResponse(tag, b"UID EXPUNGE completed")

    def do_SEARCH(self, tag: bytes, charset: bytes | None, query: list[Any], uid: int = 0) -> None:
        if charset is not None and charset.strip(b'"').upper() not in (b"US-ASCII", b"UTF-8"):
            raise _no(b"[BADCHARSET (US-ASCII UTF-8)] Unsupported charset")
        hits = self._selected().search(query, bool(uid))
        self.sendUntaggedResponse(b" ".join([b"SEARCH", *(b"%d" % hit for hit in hits)]))
        self.sendPositiveResponse(tag, b"SEARCH completed")

    select_SEARCH = (do_SEARCH, _S.opt_charset, arg_searchkeys)

    def do_FETCH(
        self, tag: bytes, messages: imap4.MessageSet, query: list[Any], uid: int = 0
    ) -> Deferred[None]:
        mbox = self._selected()
        work = mbox.resolve(messages, bool(uid))
        if mbox.isWriteable() and any(setsSeen(item) for item in query):
            unseen = [u for _, u in work if "\\Seen" not in mbox.info(u).flags]
            mbox.addFlags(unseen, ["\\Seen"])
            if not any(item.type == "flags" for item in query):
                query = [*query, imap4._FetchParser.Flags()]

        def build(seq: int, u: int) -> list[Any]:
            return messageItems(seq, mbox, u, query, bool(uid))

        previousTimeout = self.setTimeout(None)

        def restore(result: object) -> object:
            if not self._lost:
                self.setTimeout(previousTimeout)
            return result

        def stopped(failure: Failure) -> Failure | None:
            return None if isinstance(failure.value, task.TaskStopped) else failure

        def done(outcome: FetchOutcome) -> None:
            if outcome.failed:
                raise _no(b"[SERVERBUG] Some messages could not be fetched")
            if outcome.expunged:
                raise _no(b"[EXPUNGEISSUED] Some messages were expunged")
            self.sendPositiveResponse(tag, b"FETCH completed")

        stream = FetchStream(self.transport, work, build, self.cooperator)
        return stream.start().addBoth(restore).addCallbacks(done, stopped)

    select_FETCH = (do_FETCH, arg_seqset, arg_fetchatt)

    def do_STORE(
        self, tag: bytes, messages: imap4.MessageSet, mode: bytes, flags: list[bytes], uid: int = 0
    ) -> None:
        mode = mode.upper()
        silent = mode.endswith(b".SILENT")
        kind = mode[: -len(b".SILENT")] if silent else mode
        signs = {b"FLAGS": 0, b"+FLAGS": 1, b"-FLAGS": -1}
        if kind not in signs:
            raise imap4.IllegalClientResponse("Invalid STORE item")
        mbox = self._selected()
        result = mbox.store(messages, parseFlags(flags), signs[kind], bool(uid))
        if not silent:
            for seq, current in sorted(result.items()):
                extra = b" UID %d" % mbox.getUID(seq) if uid else b""
                flagList = " ".join(current).encode()
                self.sendUntaggedResponse(b"%d FETCH (FLAGS (%s)%s)" % (seq, flagList, extra))
        self.sendPositiveResponse(tag, b"STORE completed")

    select_STORE = (do_STORE, arg_seqset, _S.arg_atom, _S.arg_flaglist)

    def do_COPY(self, tag: bytes, messages: imap4.MessageSet, name: str, uid: int = 0) -> None:
        try:
            target = self._account().folder(name)
        except NoSuchFolder:
            raise _no(b"[TRYCREATE] No such mailbox") from None
        mbox = self._selected()
        copied: list[tuple[int, int]] = []
        try:
            for _, u in mbox.resolve(messages, bool(uid)):
                copied.append((u, mbox.folder.copyMessage(u, target)))
        except KeyError:
            target.expunge([new for _, new in copied])
            raise _no(b"[EXPUNGEISSUED] Some messages were expunged; nothing copied") from None
        except BaseException:
            target.expunge([new for _, new in copied])
            raise
        code = b""
        if copied:
            code = b"[COPYUID %d %s %s] " % (
                target.uidValidity(),
                uidSet([u for u, _ in copied]),
                uidSet([new for _, new in copied]),
            )
        self.sendPositiveResponse(tag, code + b"COPY completed")

    select_COPY = (do_COPY, arg_seqset, arg_mailbox)

    def do_UID(self, tag: bytes, command: bytes, line: bytes) -> Deferred[Any]:
        command = command.upper()
        entries = {
            b"FETCH": self.select_FETCH,
            b"STORE": self.select_STORE,
            b"SEARCH": self.select_SEARCH,
            b"COPY": self.select_COPY,
            b"EXPUNGE": (IMAPServer.do_UIDEXPUNGE, IMAPServer.arg_seqset),
        }
        entry = entries.get(command)
        if entry is None:
            raise imap4.IllegalClientResponse("Unknown UID command")
        return self._run(tag, entry, line, 1)

    select_UID = (do_UID, _S.arg_atom, _S.arg_line)
