# -*- test-case-name: tests.imap.test_imap_protocol -*-
"""
How an IMAP session reads its input: Twisted's L{imap4.IMAP4Server} with
command dispatch, literal handling and error reporting replaced.

  - One command runs at a time: input is paused while a command waits for
    the store, the password checker or the transport, so pipelined commands
    run in order and a throttled login holds back what follows it; a
    literal a command asks for once the store answered (APPEND to a folder
    opened later) takes input again.
  - Pipelined input is parsed L{LINES_PER_TURN} lines per reactor turn,
    so one client's flood of commands cannot keep the others waiting; under
    COMPRESS (RFC 4978) input is inflated only as it is parsed (see
    L{tmail.imap.compress}).
  - Literal sizes are 32-bit numbers: a negative or absurd size is C{BAD}
    (Twisted's C{int()} took C{-100}), a large one C{NO [TOOBIG]}; the bytes
    of a refused non-synchronizing literal are read and thrown away, never
    run as commands.  Under LITERAL- (C{imap.literal_minus}) a
    non-synchronizing literal over 4096 octets is C{BAD [TOOBIG]}.
  - One command's lines and literals together, APPEND's message data
    aside, hold at most C{imap.max_command_size} bytes: one SEARCH could
    otherwise keep any number of literals in memory.  Past it the command is
    C{BAD [TOOBIG]} (as RFC 7888 answers a literal over a server's limit)
    and what is still on its way is read and dropped.
  - Quoted strings honour C{\\"} and C{\\\\}; mailbox names must be canonical
    modified UTF-7; lists nest at most C{imap.max_nesting} deep, sequence
    sets hold at most C{imap.max_sequence_ranges} ranges (C{BAD [LIMIT]}).
  - Errors become C{NO}/C{BAD} with RFC 5530 codes and tmail's own words:
    Twisted's parsers put reprs of the input in their exceptions
    (C{BAD b'((MESSAGES'}), so an exception's text reaches the client only
    when it is a plain sentence (L{clientText}).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable
from typing import Any

from twisted.cred.portal import Portal
from twisted.internet import reactor, task
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.ssl import CertificateOptions
from twisted.logger import Logger
from twisted.mail import imap4
from twisted.python.failure import Failure

from tmail.auth.policy import isSecure, peerHost, plaintextAuthAllowed
from tmail.config.schema import IMAPSettings
from tmail.connections import ConnectionCounter, Refusal, sendPromptly
from tmail.errors import FolderExists, InvalidFolderName, NoSuchFolder, OverQuota, StoreFull
from tmail.imap.account import IMAPAccount
from tmail.imap.binary import mentionsBinary, parseFetchItems
from tmail.imap.compress import (
    INFLATE_CHUNK,
    INFLATE_PER_TURN,
    DeflatingTransport,
    Inflater,
    InflationLimit,
)
from tmail.imap.fetchatt import parseFetchAtts
from tmail.imap.fetchitems import mentionsExtra, parseExtendedItems
from tmail.imap.mailbox import IMAPMailbox
from tmail.imap.mutf7 import BadMailboxName, decodeName, decodePattern
from tmail.imap.parse import (
    BadLiteral,
    LimitExceeded,
    Tokenizer,
    literalMarker,
    parseQuoted,
    splitAtom,
    wholeLiteral,
)
from tmail.imap.seqset import Messages, SavedResult, parseSequenceSet
from tmail.interfaces import ILoginThrottle
from tmail.steps import sharedCooperator

_log = Logger()
_COOPERATOR = sharedCooperator()

_TAG = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\+]+\Z')
_NO_EXPUNGE = frozenset({b"FETCH", b"STORE", b"SEARCH", b"SORT", b"THREAD"})
_STATES = ("unauth", "auth", "select", "logout")

#: RFC 3501 5.4: an authenticated client may stay idle at least 30 minutes.
MIN_POSTAUTH_TIMEOUT = 30 * 60.0
#: Idle time allowed before login, at most.
PREAUTH_TIMEOUT = 60.0
#: RFC 7888 5: the largest non-synchronizing literal a LITERAL- server takes.
LITERAL_MINUS_MAX = 4096
#: Pipelined lines parsed in one go before other sessions get their turn.
LINES_PER_TURN = 64
#: Bytes held, unparsed, while a long command watches for the client
#: going away (L{IMAPSession.watchForHangup}); past them reading stops.
HOLD_LIMIT = 64 * 1024


class CommandError(Exception):
    """Ends the current command with a tagged C{NO} or C{BAD}."""

    def __init__(self, status: bytes, text: bytes) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


def no(text: bytes) -> CommandError:
    return CommandError(b"NO", text)


def tooBig() -> CommandError:
    """A command whose lines and literals exceed C{imap.max_command_size}."""
    return CommandError(b"BAD", b"[TOOBIG] Command too large")


#: What a client may read of an error's own text: words, numbers and the
#: punctuation of a sentence; no quotes (a repr), slashes (a path),
#: brackets (a response code) or angle brackets (an object).
_PLAIN_TEXT = re.compile(r"[A-Za-z0-9 ,.;:()*%$+=-]{1,200}\Z")


def clientText(error: BaseException, fallback: bytes) -> bytes:
    """
    The text of C{error} when it is a plain sentence, as tmail's own errors
    are; else C{fallback}.  Twisted's parsers put reprs of the input in
    theirs (C{b'((MESSAGES'}), a store's may name a file: a client reads
    none of that.
    """
    args = error.args
    if len(args) == 1 and isinstance(args[0], str) and _PLAIN_TEXT.match(args[0]):
        return args[0].encode("ascii")
    return fallback


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


class IMAPSession(imap4.IMAP4Server):  # type: ignore[misc]
    """
    Input handling, dispatch, limits and error reporting of an IMAP session;
    L{tmail.imap.server.IMAPServer} adds the commands.

    Command handlers are bound, as in Twisted, through C{<state>_<COMMAND>}
    tuples of a handler and argument parsers; a handler may return a
    L{Deferred}, and any error it raises becomes a tagged response (see
    L{describeFailure}).
    """

    IDENT = b"tmail ready."

    account: IMAPAccount | None
    mbox: IMAPMailbox | None
    transport: Any
    _pendingLiteral: Any

    def __init__(
        self,
        portal: Portal,
        settings: IMAPSettings,
        *,
        tlsContextFactory: CertificateOptions | None,
        throttle: ILoginThrottle,
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
        #: Bytes of the current command's lines and literals so far.
        self._commandSize = 0
        self._noExpunge = False
        self._trailing: tuple[int, bool] | None = None
        self._trailingInvalid = False
        self._counted = False
        self._lost = False
        self._host = "unknown"
        self._abortOnLost: Any = None
        self._inflater: Inflater | None = None
        self._parsing = False
        self._inflateLater: Any = None
        self._parsedInflated = 0
        self._linesThisTurn = 0
        self._watching = False
        self._held = 0

    def callLater(self, period: float, func: Callable[[], object]) -> Any:
        return self.clock.callLater(period, func)

    # Connection

    def connectionMade(self) -> None:
        sendPromptly(self.transport)
        self._host = peerHost(self.transport)
        refusal = self.connections.admit(self._host)
        if refusal is not None:
            _log.warn(
                "IMAP refused {host}: too many connections ({which})",
                host=self._host,
                which="from it" if refusal is Refusal.CLIENT else "in all",
            )
            if refusal is Refusal.CLIENT:
                self.transport.write(b"* BYE Too many connections from your address\r\n")
            else:
                self.transport.write(b"* BYE [UNAVAILABLE] Too many connections; try later\r\n")
            self.transport.loseConnection()
            return
        self._counted = True
        super().connectionMade()

    def dataReceived(self, data: bytes) -> None:
        if not self._counted or not self._connected():
            return
        if self._watching:
            self._held += len(data)
            if self._held > HOLD_LIMIT:
                self._watching = False
                self.transport.pauseProducing()
        if self._inflater is None:
            self._parse(data)
            # If COMPRESS ran, what followed it is deflate data.
            self._inflate()
            return
        self._inflater.add(data)
        self._inflate()

    def _parse(self, data: bytes) -> None:
        """Hand plain input to Twisted's line parser."""
        self._parsing = True
        try:
            super().dataReceived(data)
        finally:
            self._parsing = False

    def _inflate(self) -> None:
        """
        Inflate and parse while the session takes input, one piece at a
        time and at most L{INFLATE_PER_TURN} per reactor turn; the rest
        stays compressed, and the transport paused, until the session
        resumes or the next turn.
        """
        inflater = self._inflater
        if inflater is None or self._parsing:
            return
        self._parse(b"")
        budget = INFLATE_PER_TURN
        try:
            while budget > 0 and not self.paused and self._connected():
                plain = inflater.inflate(INFLATE_CHUNK)
                if not plain:
                    break
                budget -= len(plain)
                self._parse(plain)
        except InflationLimit:
            self._stopInflating(b"* BYE Compressed input inflates too much\r\n")
            return
        except zlib.error:
            self._stopInflating(b"")
            return
        backlog = inflater.pending()
        if backlog and budget <= 0 and not self.paused and self._inflateLater is None:
            self._inflateLater = self.clock.callLater(0, self._inflateNextTurn)
        self._holdInput((backlog or self.paused) and not self._watching)

    def _inflateNextTurn(self) -> None:
        self._inflateLater = None
        if self._connected():
            self._inflate()

    def _holdInput(self, hold: bool) -> None:
        """Stop reading the socket while compressed input is waiting, start again after."""
        if not self._connected():
            return
        if hold:
            self.transport.pauseProducing()
        else:
            self.transport.resumeProducing()

    def _stopInflating(self, goodbye: bytes) -> None:
        if goodbye:
            self.transport.write(goodbye)
        self.transport.loseConnection()

    @property
    def inflatedBacklog(self) -> int:
        """Inflated input not parsed yet (0 when not compressing)."""
        if self._inflater is None:
            return 0
        return self._inflater.produced - self._parsedInflated

    def setLineMode(self, extra: bytes = b"") -> Any:
        """Back to lines after a literal; C{extra} is input already inflated."""
        if extra and self._inflater is not None:
            self.line_mode = 1
            return super().dataReceived(extra)
        return super().setLineMode(extra)

    def startCompressing(self) -> None:
        """
        Deflate everything from now on (RFC 4978).  Bytes the client sent
        after the COMPRESS command are already compressed: they wait in the
        inflater, to be parsed as the rest of the input will be.
        """
        pending = self.clearLineBuffer()
        self._inflater = Inflater(self.settings.max_inflation_ratio)
        self._parsedInflated = 0
        self.transport = DeflatingTransport(self.transport)
        self._inflater.add(pending)

    def connectionLost(self, reason: Failure | None = None) -> None:
        self._lost = True
        if self._counted:
            self._counted = False
            self.connections.release(self._host)
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

    # Security

    def _secure(self) -> bool:
        return bool(self.startedTLS) or isSecure(self.transport)

    def _plaintextOK(self) -> bool:
        return self._secure() or plaintextAuthAllowed(
            self.settings.allow_plaintext_auth, self.transport
        )

    # Input: lines, literals, one command at a time

    def lineReceived(self, line: bytes) -> None:
        self.resetTimeout()
        self._parsedInflated += len(line) + 2
        if self.parseState in ("command", "pending"):
            self._noteTrailingLiteral(line)
            self._countLine(line)
        try:
            getattr(self, "parse_" + self.parseState)(line)
        except Exception:
            _log.failure("Unexpected error handling a command line")
            self._recover()
        if self.paused or not self._connected():
            return
        if self._tag is not None and self.parseState == "command" and self.line_mode:
            self._linesThisTurn = 0
            self.pauseProducing()
            if self._watching:
                self.transport.resumeProducing()
            return
        self._linesThisTurn += 1
        if self._linesThisTurn >= LINES_PER_TURN:
            self._linesThisTurn = 0
            self.pauseProducing()
            self.clock.callLater(0, self._nextTurn)

    def _nextTurn(self) -> None:
        """Go on reading after letting other sessions run, unless a command is running."""
        running = self._tag is not None and self.parseState == "command"
        if self.paused and not running and self._connected():
            self.resumeProducing()

    def rawDataReceived(self, data: bytes) -> None:
        self.resetTimeout()
        passon = self._pendingLiteral.write(data)
        self._parsedInflated += len(data) - len(passon or b"")
        if passon is not None:
            self.setLineMode(passon)

    def _countLine(self, line: bytes) -> None:
        """
        Add a line to the size of its command.  A line after a literal that
        takes the command over C{imap.max_command_size} fails the command
        (its next literal, if non-synchronizing, is then read and dropped).
        """
        if self.parseState == "command":
            self._commandSize = len(line)
            return
        if self._tag is None:
            return
        self._commandSize += len(line)
        reader = self._pendingLiteral
        if self._commandSize > self.settings.max_command_size and isinstance(
            reader, _LiteralReader
        ):
            reader.failure = reader.failure or tooBig()

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
        if self._commandSize > self.settings.max_command_size:
            error = tooBig()
            self._respond(error.status, tag, error.text)
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
        the rest of the command.  Under LITERAL-, a larger non-synchronizing
        literal is C{BAD [TOOBIG]}; its bytes are then read and dropped.
        """
        if not synchronizing and self.settings.literal_minus and size > LITERAL_MINUS_MAX:
            raise CommandError(b"BAD", b"[TOOBIG] Non-synchronizing literal over 4096 octets")
        return self._startLiteral(size, synchronizing, sink)

    def _startLiteral(
        self, size: int, synchronizing: bool, sink: Callable[[bytes], object] | None
    ) -> Deferred[bytes]:
        reader = _LiteralReader(size, sink)
        self._trailing = None
        self._pendingLiteral = reader
        self.parseState = "pending"
        if synchronizing:
            self.sendContinuationRequest(b"Ready for literal data")
        if size:
            self.setRawMode()
        if self.paused:
            # The command waited for the store before asking for its
            # literal: input was held back meanwhile.
            self.clock.callLater(0, self._resumeForLiteral)
        return reader.deferred

    def _resumeForLiteral(self) -> None:
        if self.paused and self.parseState == "pending" and self._connected():
            self.resumeProducing()

    def _swallow(self, size: int) -> None:
        """Read and drop a refused non-synchronizing literal and the rest of its command."""
        self._startLiteral(size, False, None).addCallback(self._discardRest)

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

    def watchForHangup(self) -> None:
        """
        While the running command computes, read the socket again so that
        a client going away is noticed (and the work stopped); what the
        client sends meanwhile is held, up to L{HOLD_LIMIT} bytes, for
        after the command.
        """
        self._watching = True
        self._held = 0
        if self.paused and self._connected():
            self.transport.resumeProducing()

    def _afterCommand(self) -> None:
        self._watching = False
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
            self.reportChanges()
        super()._respond(state, tag, message)
        if finishing:
            self._afterCommand()

    def _commandFailed(self, failure: Failure, tag: bytes) -> None:
        if self._lost and isinstance(failure.value, task.TaskStopped):
            return
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
        if isinstance(error, LimitExceeded):
            return b"BAD", b"[LIMIT] " + clientText(error, b"Over a limit")
        if isinstance(
            error,
            imap4.IllegalClientResponse
            | imap4.IllegalQueryError
            | imap4.IllegalIdentifierError
            | imap4.MismatchedNesting
            | imap4.MismatchedQuoting,
        ):
            return b"BAD", clientText(error, b"Invalid arguments")
        if isinstance(error, NoSuchFolder):
            return b"NO", b"[NONEXISTENT] No such mailbox"
        if isinstance(error, FolderExists):
            return b"NO", b"[ALREADYEXISTS] Mailbox already exists"
        if isinstance(error, BadMailboxName | InvalidFolderName):
            return b"NO", b"[CANNOT] " + clientText(error, b"Invalid mailbox name")
        if isinstance(error, OverQuota):
            return b"NO", b"[OVERQUOTA] Quota exceeded (mailbox for user is full)"
        if isinstance(error, StoreFull):
            return b"NO", b"[OVERQUOTA] Not enough storage"
        if isinstance(error, imap4.ReadOnlyMailbox):
            return b"NO", b"Mailbox is read-only"
        if isinstance(error, imap4.IllegalMailboxEncoding):
            return b"NO", b"[CANNOT] Invalid mailbox name"
        _log.failure("Command failed unexpectedly", failure)
        return b"NO", b"[SERVERBUG] Internal error"

    def reportChanges(self, force: bool = False) -> None:
        """
        Send untagged responses for changes the client has not been told
        about; called before every tagged response.  Nothing to tell here.
        """

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
        """
        Read a string literal; it counts towards the command's size, as
        APPEND's message data does not.
        """
        if size > self.settings.max_line_length:
            raise no(b"[TOOBIG] Literal too large")
        if self._commandSize + size > self.settings.max_command_size:
            raise tooBig()
        self._commandSize += size
        chunks: list[bytes] = []
        return self._readLiteral(size, synchronizing, chunks.append).addCallback(
            lambda rest: (b"".join(chunks), rest)
        )

    def _decoded(self, parsed: Any) -> Any:
        if isinstance(parsed, Deferred):
            return parsed.addCallback(self._decoded)
        value, rest = parsed
        return self.decodeMailbox(value), rest

    def decodeMailbox(self, raw: bytes) -> str:
        """A mailbox name as the client sent it: modified UTF-7 (RFC 3501 5.1.3)."""
        return decodeName(raw)

    def decodeListPattern(self, raw: bytes) -> str:
        """A LIST or LSUB reference or pattern: never refused (L{decodePattern})."""
        return decodePattern(raw)

    def arg_mailbox(self, line: bytes) -> Any:
        """A mailbox name, decoded from canonical modified UTF-7."""
        return self._decoded(self._string(line, b""))

    def arg_listmailbox(self, line: bytes) -> Any:
        """A LIST reference or pattern: a mailbox name that may hold C{%} and C{*}."""
        return self._decodedPattern(self._string(line, b"%*"))

    def _decodedPattern(self, parsed: Any) -> Any:
        if isinstance(parsed, Deferred):
            return parsed.addCallback(self._decodedPattern)
        value, rest = parsed
        return self.decodeListPattern(value), rest

    def arg_seqset(self, line: bytes) -> tuple[Messages, bytes]:
        """A sequence set, or C{$}: the saved SEARCH result (RFC 5182)."""
        token, _, rest = line.lstrip(b" ").partition(b" ")
        if token == b"$":
            return SavedResult(), rest
        return parseSequenceSet(token, self.settings.max_sequence_ranges), rest

    def arg_plist(self, line: bytes) -> tuple[list[bytes], bytes]:
        """
        A flat parenthesised list of atoms and quoted strings (STATUS items,
        SETQUOTA limits).  Twisted's nests C{[} and C{(} without bound and
        answers a mismatch with a repr of the input.
        """
        line = line.lstrip(b" ")
        end = line.find(b")")
        if line[:1] != b"(" or end < 0 or b"(" in line[1:end]:
            raise imap4.IllegalClientResponse("Expected a list in parentheses")
        tokenizer = Tokenizer(maxDepth=0)
        if tokenizer.feed(line[1:end]) is not None:
            raise imap4.IllegalClientResponse("Literals are not allowed in this list")
        return tokenizer.result(), line[end + 1 :]

    def arg_fetchatt(self, line: bytes) -> tuple[list[Any], bytes]:
        """FETCH items: RFC 3501's (L{tmail.imap.fetchatt}), BINARY's and the extensions'."""
        if mentionsExtra(line):
            result = parseExtendedItems(line)
        elif mentionsBinary(line):
            result = parseFetchItems(line)
        else:
            result = parseFetchAtts(line)
        for item in result:
            partial = getattr(item, "partialBegin", None)
            if partial is not None and (partial < 0 or item.partialLength <= 0):
                raise imap4.IllegalClientResponse("Invalid partial range")
        if not result:
            raise imap4.IllegalClientResponse("Missing FETCH items")
        return result, b""

    def arg_searchkeys(self, line: bytes) -> Any:
        """SEARCH criteria, possibly spread over several literals."""
        tokenizer = Tokenizer(self.settings.max_nesting)

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
