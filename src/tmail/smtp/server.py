# -*- test-case-name: tests.smtp.test_smtp_server -*-
"""
The SMTP server protocol for the MX (C{[smtp]}) and submission
(C{[submission]}) listeners: Twisted's C{ESMTP} with its defects fixed.

What this subclass changes, and why:

  - Input is split into lines here, not by C{LineOnlyReceiver}: an
    over-long line is answered and then skipped up to its CRLF (Twisted
    keeps growing the buffer, and inside DATA it returns to command mode,
    so the rest of the body ran as commands); bytes pipelined after
    C{STARTTLS} are thrown away (CVE-2011-0411 class); and no line is read
    while an answer is still pending, so pipelined replies keep their order.
  - DATA and BDAT (CHUNKING, RFC 3030) are streamed into the store a
    buffer at a time by L{tmail.smtp.data} and checked as they arrive: size
    limit, over-long lines, and bare CR or LF, which reject the message (or
    become CRLF, with C{bare_newlines = "normalise"}) instead of ending it
    (SMTP smuggling, CVE-2023-51764 class).  C{250} is sent only after
    every copy is committed (fsync'd).
  - BURL (RFC 4468) on submission (L{tmail.smtp.burl}): a message part
    given by an IMAP URLAUTH URL, read from tmail's own store and checked
    as a BDAT chunk is.
  - SMTPUTF8 (RFC 6531) addresses, BINARYMIME (BDAT only), and the DSN
    parameters of RFC 3461, which are checked and kept with the envelope.
  - Every reply carries an enhanced status code (RFC 2034/3463) except the
    greeting, the HELO/EHLO replies and 3xx replies, which have none.
  - A recipient over quota is refused at C{RCPT} when its mailbox is full
    already or too full for the C{SIZE} declared, else its copy is refused
    at the end of DATA while the other recipients get theirs; the reply is
    C{552 5.2.2} (or C{452 4.2.2} with C{over_quota = "tempfail"}).  SMTP
    has one reply for the whole message, so when only some copies were
    refused the client is still told so (and the others may get the message
    again on a retry): better twice than a 250 for mail nobody delivered.
  - AUTH PLAIN/LOGIN on submission only, and only over TLS; failures are
    throttled per client address, counting checks still running, so
    parallel connections get no more guesses than one.
  - Submission rules (L{tmail.smtp.submission}): an authenticated user may
    use only its own addresses in C{MAIL FROM} and in C{From}/C{Sender}
    (C{553 5.7.1}), and a message without C{Message-ID} or C{Date} gets
    them, written at the end of its header section as it streams in.
  - Policies (L{tmail.smtp.policy}) are asked at connect, HELO/EHLO, MAIL,
    RCPT and the end of DATA/BDAT, after the server's own checks passed;
    no line is read while they decide.  Without policies nothing of this
    runs, and the MX without policies does not look at headers at all.
  - Unexpected errors are logged and answered C{451 4.3.0}; no exception
    text ever reaches the client.
  - Time is bounded, not only silence (L{tmail.smtp.deadlines}): a command
    line, message content and a whole transaction each have a deadline, so
    a client trickling a byte at a time cannot keep a session; junk
    commands (NOOP, RSET, ...) past C{junk_command_limit} count as errors.
  - On the MX, clients that do not wait for their turn are turned away
    (L{tmail.smtp.synchronization}): talking before the last line of a
    greeting sent in two, C{greet_pause} seconds apart, and pipelining
    RFC 2920 does not allow.
  - C{MAIL} is refused with C{452 4.3.1} when the disk cannot hold the
    declared size (less C{min_free_space}), rather than after the content:
    the free space is measured with C{statvfs} in a thread, at each C{MAIL}.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, ITLSTransport
from twisted.logger import Logger
from twisted.mail import smtp
from twisted.python.failure import Failure

from tmail.auth.policy import isSecure, peerHost
from tmail.connections import Refusal, sendPromptly
from tmail.delivery.destination import OUTBOUND_QUEUE, Destination, LocalUser
from tmail.delivery.local import MailboxMessage
from tmail.errors import NotHostedDomain, RecipientError, StoreFull, UnknownRecipient
from tmail.interfaces import Destinations, IMailFolder
from tmail.smtp.auth import AuthCommand
from tmail.smtp.burl import BURLCommand
from tmail.smtp.chunking import BDAT, ChunkingCommand
from tmail.smtp.commands import CommandError, Reply, parseMailFrom, parseRcptTo
from tmail.smtp.content import MessageContent
from tmail.smtp.data import BARE_NEWLINE, LINE_TOO_LONG, TOO_BIG, ChunkReader, DataReader
from tmail.smtp.deadlines import Deadline, SessionDeadlines
from tmail.smtp.framing import InputFraming
from tmail.smtp.headerblock import HeaderScanner
from tmail.smtp.headers import sanitiseHelo
from tmail.smtp.policy import NO_OBJECTION, PolicyContext, Stage, Verdict, consult
from tmail.smtp.relay import (
    HeaderCapture,
)
from tmail.smtp.replies import (
    OK,
    STORAGE_FULL,
    printable,
)
from tmail.smtp.sasl import MECHANISMS, Mechanism
from tmail.smtp.synchronization import EARLY_TALKER, UNSYNCHRONIZED, mayBePipelined
from tmail.smtp.transaction import AcceptedRecipient, Transaction

if TYPE_CHECKING:
    from tmail.smtp.factory import SMTPFactory

__all__ = ["BARE_NEWLINE", "BDAT", "LINE_TOO_LONG", "TOO_BIG", "SMTPServer"]

COMMAND, DATA, AUTH = smtp.COMMAND, smtp.DATA, smtp.AUTH

_VERBS = frozenset(
    b"HELO EHLO MAIL RCPT DATA BDAT BURL RSET NOOP QUIT VRFY EXPN HELP STARTTLS AUTH".split()
)
#: Commands that move no mail, counted against C{junk_command_limit}.
_JUNK = frozenset(b"HELO EHLO LHLO RSET NOOP VRFY EXPN HELP".split())


class SMTPServer(
    InputFraming,
    MessageContent,
    AuthCommand,
    ChunkingCommand,
    BURLCommand,
    smtp.ESMTP,  # type: ignore[misc]
):
    """
    One SMTP session.  Settings, realm and policy come from the
    L{SMTPFactory} that built it.
    """

    log = Logger()
    mode: str

    def __init__(self, factory: SMTPFactory) -> None:
        super().__init__(contextFactory=factory.tlsContextFactory)
        self.factory = factory
        self.host = factory.hostname.encode("idna")
        self.timeout = factory.settings.timeout
        self.clock = factory.clock
        self.callLater = self.clock.callLater
        self._deadlines = SessionDeadlines(
            self.clock, factory.settings, self._deadlinePassed, self._inTransaction
        )
        #: The last greeting line is sent (or the connection refused).
        self._greeted = False
        self._greetPause: IDelayedCall | None = None
        #: The command being handled arrived with more input behind it.
        self._pipelined = False
        self._junk = 0
        self._buffer = b""
        self._processing = False
        self._blocked = False
        #: Reading is paused while an answer is pending (see L{_wait}).
        self._paused = False
        #: While input is handled: the bytes of it after the command or
        #: content being handled.
        self._held = 0
        self._skipping = False
        self._discardInput = False
        self._errors = 0
        self._countedHost: str | None = None
        self._heloName: str | None = None
        self._esmtp = False
        self._user: str | None = None
        self._mechanism: Mechanism | None = None
        #: The transaction whose commands are arriving (from MAIL on).
        self._transaction: Transaction | None = None
        #: The transaction whose content is arriving: what the replies at
        #: its end are about; and its header section, when a success notice
        #: will return it.
        self._dataTransaction: Transaction | None = None
        self._capture: HeaderCapture | None = None
        self._reader: DataReader | ChunkReader | None = None
        #: BDAT: whether the chunk being read is the last, and its size.
        self._lastChunk = False
        self._chunkSize = 0
        self._messages: list[MailboxMessage] = []
        self._queueID = ""
        #: Header fields policies added at connect and HELO (those of MAIL
        #: and RCPT are the transaction's).
        self._connectHeaders = b""
        self._heloHeaders = b""
        #: A policy refused the connection with 554: only QUIT is served.
        self._refusedSession = False
        #: The connection is gone (a policy may answer after that).
        self._lost = False
        #: While a message is read: its header section, what policies
        #: watch of its content, and what they are told at its end.
        self._scanner: HeaderScanner | None = None
        self._observers: list[Callable[[bytes], None]] = []
        self._dataContext: PolicyContext | None = None

    # Connection life cycle

    def connectionMade(self) -> None:
        sendPromptly(self.transport)
        host = peerHost(self.transport)
        refusal = self.factory.connections.admit(host)
        if refusal is not None:
            self.log.warn(
                "smtp: refused {client}: too many connections ({which})",
                client=host,
                which="from it" if refusal is Refusal.CLIENT else "in all",
            )
            if refusal is Refusal.CLIENT:
                self.sendCode(421, b"4.7.0 Too many connections from your address")
            else:
                self.sendCode(421, b"4.3.2 " + self.host + b" Too many connections; try later")
            self.transport.loseConnection()
            return
        self._countedHost = host
        self.setTimeout(self.timeout)
        pause = self.factory.settings.greet_pause
        if pause > 0:
            self.sendLine(b"220-" + self.greeting())
            if self.factory.settings.early_talkers == "allow":
                self.transport.pauseProducing()
            self._greetPause = self.clock.callLater(pause, self._pauseOver)
            return
        self._welcome()

    def _pauseOver(self) -> None:
        self._greetPause = None
        if self.factory.settings.early_talkers == "allow":
            self.transport.resumeProducing()
        self._welcome()

    def _welcome(self) -> None:
        """Ask the policies about the connection, then greet."""
        if not self.factory.policies:
            self._sendGreeting()
            return
        self._consult("connect", self._connectDecided)

    def _sendGreeting(self) -> None:
        """The (last) greeting line; input that waited for it is read now."""
        self._greeted = True
        super().connectionMade()
        if self._buffer:
            self._process()

    def _earlyTalker(self) -> None:
        """Input before the last greeting line: refused, or kept for after it."""
        if self.factory.settings.early_talkers == "allow" or self.transport.disconnecting:
            return
        self.log.info(
            "smtp: client {client} sent {size} bytes before the greeting: {data}",
            client=peerHost(self.transport),
            size=len(self._buffer),
            data=printable(self._buffer[:100].decode("latin-1")),
        )
        if self._greetPause is not None and self._greetPause.active():
            self._greetPause.cancel()
        self._greetPause = None
        self._greeted = True
        self._buffer = b""
        self.sendCode(EARLY_TALKER.code, EARLY_TALKER.line())
        self.transport.loseConnection()

    def _connectDecided(self, verdict: Verdict) -> None:
        """
        Greet, or refuse the connection: C{421} and hang up for a temporary
        refusal; C{554} for a permanent one, after which only C{QUIT} is
        served (RFC 5321 3.1: the client is to send QUIT, and the server to
        wait for it; other commands get C{503}).
        """
        if self._lost or self.transport.disconnecting:
            return
        refusal = verdict.refusal
        if refusal is None:
            self._connectHeaders = verdict.headers
            self._sendGreeting()
            return
        self._greeted = True
        self._logRefusal("connect", refusal)
        if refusal.code < 500:
            self.sendCode(421, Reply(421, refusal.status, refusal.text).line())
            self.transport.loseConnection()
            return
        self._refusedSession = True
        self.sendCode(554, Reply(554, refusal.status, refusal.text).line())

    def connectionLost(self, reason: Failure | None = None) -> None:
        self._lost = True
        if self._greetPause is not None and self._greetPause.active():
            self._greetPause.cancel()
        self._greetPause = None
        self._deadlines.stop()
        self._abortMessages()
        if self._countedHost is not None:
            self.factory.connections.release(self._countedHost)
            self._countedHost = None
        super().connectionLost(reason)

    def greeting(self) -> bytes:
        return self.host + b" ESMTP tmail"

    def timeoutConnection(self) -> None:
        self.sendCode(421, b"4.4.2 " + self.host + b" Error: timeout exceeded")
        self.transport.loseConnection()

    def _deadlinePassed(self, which: Deadline) -> None:
        if self.transport.disconnecting:
            return
        self.log.info(
            "smtp: {which} deadline passed for {client}; closing",
            which=which,
            client=peerHost(self.transport),
        )
        self.setTimeout(None)
        self.timeoutConnection()

    def _inTransaction(self) -> bool:
        """Whether a transaction's commands or content are still to come."""
        return self._transaction is not None or self._reader is not None

    # Policies

    def _context(self, stage: Stage, **known: Any) -> PolicyContext:
        """What the policies are told at C{stage}: the session, and C{known}."""
        transaction = self._transaction
        fields: dict[str, Any] = {
            "clientAddress": peerHost(self.transport),
            "hostname": self.factory.hostname,
            "submission": self.factory.submission,
            "tls": isSecure(self.transport),
            "helo": self._heloName,
            "user": self._user,
            "sender": transaction.sender if transaction is not None else None,
            "mail": transaction.mail if transaction is not None else None,
            "recipients": tuple(r.address for r in transaction.recipients) if transaction else (),
        }
        fields.update(known)
        return PolicyContext(stage, **fields)

    def _consult(self, stage: Stage, decided: Callable[[Verdict], object], **known: Any) -> None:
        """
        Ask the policies about C{stage} (telling them C{known} besides the
        session's state) and call C{decided} with their verdict, reading no
        further line until then.  Without policies, C{decided} is called at
        once.
        """
        pending = self._decide(stage, decided, **known)
        if pending is not None:
            self._wait(pending)

    def _decide(
        self, stage: Stage, decided: Callable[[Verdict], object], **known: Any
    ) -> Deferred[Any] | None:
        """
        As L{_consult}, without waiting: the policies' verdict, C{decided}
        already added, or C{None} when there are no policies (and
        C{decided} has been called).
        """
        if not self.factory.policies:
            decided(NO_OBJECTION)
            return None
        verdict = consult(self.factory.policies, stage, self._context(stage, **known))
        return verdict.addCallback(decided)

    def _logRefusal(self, stage: str, refusal: Reply) -> None:
        self.log.info(
            "smtp: policy refused {stage} from {client}: {code} {status} {text}",
            stage=stage,
            client=peerHost(self.transport),
            code=refusal.code,
            status=refusal.status,
            text=refusal.text,
        )

    # Replies

    def reply(self, reply: Reply) -> None:
        """Send C{reply}; hang up after C{max_errors} permanent errors."""
        self.sendCode(reply.code, reply.line())
        if reply.code >= 500:
            self._countError()

    def _countError(self) -> bool:
        """One more error; at C{max_errors}, hang up and return C{True}."""
        self._errors += 1
        if self._errors < self.factory.settings.max_errors:
            return False
        self.sendCode(421, b"4.7.0 " + self.host + b" Error: too many errors")
        self.transport.loseConnection()
        return True

    def sendSyntaxError(self) -> None:
        self.reply(Reply(500, "5.5.2", "Error: bad syntax"))

    def do_UNKNOWN(self, rest: bytes) -> None:
        self.reply(Reply(500, "5.5.2", "Error: command not recognized"))

    # Commands

    def lookupMethod(self, command: bytes) -> Callable[[bytes], None] | None:
        verb = command.upper()
        if verb not in _VERBS:
            return None
        name = verb.decode("ascii")
        method = getattr(self, "do_" + name, None) or getattr(self, "ext_" + name)
        return method  # type: ignore[no-any-return]

    def state_COMMAND(self, line: bytes) -> None:
        if b"\r" in line or b"\n" in line:
            self.reply(Reply(500, "5.5.2", "Bare <CR> or <LF> in command"))
            return
        if self._refusedSession:
            if line.strip().upper() == b"QUIT":
                self.do_QUIT(b"")
            else:
                self.reply(Reply(503, "5.5.1", "Error: connection refused; send QUIT"))
            return
        words = line.split(None, 1)
        verb = words[0].upper() if words else b""
        if self._pipelined and self._forbidsPipelining(verb):
            self.log.info(
                "smtp: improper command pipelining after {verb} from {client}",
                verb=printable(verb.decode("latin-1")),
                client=peerHost(self.transport),
            )
            self.sendCode(UNSYNCHRONIZED.code, UNSYNCHRONIZED.line())
            self.transport.loseConnection()
            return
        if verb in _JUNK:
            self._junk += 1
            if self._junk > self.factory.settings.junk_command_limit and self._countError():
                return
        super().state_COMMAND(line)

    def _forbidsPipelining(self, verb: bytes) -> bool:
        """Whether C{verb}, with more input behind it, ends the session."""
        return (
            self.factory.settings.unauth_pipelining == "reject"
            and self._user is None
            and not mayBePipelined(verb, self._esmtp)
        )

    def _greet(self, rest: bytes, esmtp: bool, answer: Callable[[], None]) -> None:
        """
        HELO or EHLO: check the name, ask the policies, then C{answer}.  A
        refused client has not greeted (MAIL needs a HELO again).
        """
        argument = rest.strip()
        if not argument:
            verb = "EHLO" if esmtp else "HELO"
            self.reply(Reply(501, "5.5.4", f"Syntax: {verb} hostname"))
            return
        name = sanitiseHelo(argument)
        self._heloName = None
        self._heloHeaders = b""
        self._resetTransaction()

        def decided(verdict: Verdict) -> None:
            if verdict.refusal is not None:
                self._logRefusal("helo", verdict.refusal)
                self.reply(verdict.refusal)
                return
            self._heloName = name
            self._esmtp = esmtp
            self._heloHeaders = verdict.headers
            answer()

        self._consult("helo", decided, helo=name)

    def do_HELO(self, rest: bytes) -> None:
        self._greet(rest, False, lambda: self.sendCode(250, self.host))

    def do_EHLO(self, rest: bytes) -> None:
        self._greet(
            rest, True, lambda: self.sendCode(250, self.host + b"\n" + self.listExtensions())
        )

    def extensions(self) -> dict[bytes, list[bytes] | None]:
        extensions: dict[bytes, list[bytes] | None] = {
            b"PIPELINING": None,
            b"SIZE": [str(self.factory.settings.max_message_size).encode()],
            b"8BITMIME": None,
            b"ENHANCEDSTATUSCODES": None,
            b"SMTPUTF8": None,
            b"CHUNKING": None,
            b"BINARYMIME": None,
            b"DSN": None,
            b"HELP": None,
        }
        if self._canStartTLS():
            extensions[b"STARTTLS"] = None
        if isSecure(self.transport):
            extensions[b"REQUIRETLS"] = None
        if self._authEnabled() and isSecure(self.transport):
            extensions[b"AUTH"] = list(MECHANISMS)
            extensions.update(self.burlExtension())
        return extensions

    def do_NOOP(self, rest: bytes) -> None:
        self.reply(OK)

    def do_RSET(self, rest: bytes) -> None:
        if rest.strip():
            self.reply(Reply(501, "5.5.4", "Syntax: RSET"))
            return
        self._resetTransaction()
        self.reply(OK)

    def do_QUIT(self, rest: bytes) -> None:
        self.reply(Reply(221, "2.0.0", "Bye"))
        self.transport.loseConnection()

    def do_VRFY(self, rest: bytes) -> None:
        if not rest.strip():
            self.reply(Reply(501, "5.5.4", "Syntax: VRFY address"))
            return
        self.reply(Reply(252, "2.5.2", "Cannot verify the user, but will try delivery"))

    do_EXPN = do_VRFY

    def do_HELP(self, rest: bytes) -> None:
        self.reply(Reply(214, "2.0.0", "See RFC 5321"))

    def do_MAIL(self, rest: bytes) -> None:
        if self._heloName is None:
            self.reply(Reply(503, "5.5.1", "Error: send HELO/EHLO first"))
            return
        if self._transaction is not None:
            self.reply(Reply(503, "5.5.1", "Error: nested MAIL command"))
            return
        if self.factory.submission and self._user is None:
            self.reply(Reply(530, "5.7.0", "Authentication required"))
            return
        try:
            mail = parseMailFrom(rest)
        except CommandError as refusal:
            self.reply(refusal.reply)
            return
        if mail.size is not None and mail.size > self.factory.settings.max_message_size:
            self.reply(TOO_BIG)
            return
        if mail.requireTLS and not isSecure(self.transport):
            self.reply(Reply(530, "5.7.10", "REQUIRETLS needs a TLS session"))
            return
        senders = self.factory.senders
        if senders is not None and self._user is not None:
            notOwned = senders.envelopeRefusal(self._user, mail.sender)
            if notOwned is not None:
                self.log.info(
                    "smtp: {user} may not send as {sender}",
                    user=self._user,
                    sender=printable(mail.sender),
                )
                self.reply(notOwned)
                return

        def decided(verdict: Verdict) -> None:
            if verdict.refusal is not None:
                self._logRefusal("mail", verdict.refusal)
                self.reply(verdict.refusal)
                return
            self._transaction = Transaction(mail, verdict.headers)
            self._deadlines.transactionStarted()
            self.reply(Reply(250, "2.1.0", "Ok"))

        def measured(free: int | None) -> Deferred[Any] | None:
            if self._lost:
                return None
            needed = max(mail.size or 0, 1)
            if free is not None and free - self.factory.settings.min_free_space < needed:
                self.log.warn(
                    "smtp: {free} bytes free, {needed} needed: refusing mail from {client}",
                    free=free,
                    needed=needed,
                    client=peerHost(self.transport),
                )
                self.reply(STORAGE_FULL)
                return None
            return self._decide("mail", decided, sender=mail.sender, mail=mail)

        self._wait(self.factory.freeSpace().addCallback(measured))

    def do_RCPT(self, rest: bytes) -> None:
        transaction = self._transaction
        if transaction is None:
            self.reply(Reply(503, "5.5.1", "Error: need MAIL command"))
            return
        try:
            rcpt = parseRcptTo(rest, utf8=transaction.mail.utf8)
        except CommandError as refusal:
            self.reply(refusal.reply)
            return
        address = rcpt.address
        if len(transaction.recipients) >= self.factory.settings.max_recipients:
            self.reply(Reply(452, "4.5.3", "Too many recipients"))
            return
        outbox = self.factory.outbox
        try:
            found = self.factory.delivery.destinations(address)
        except NotHostedDomain:
            if not (self.factory.submission and outbox is not None):
                self.reply(Reply(550, "5.7.1", "Relaying denied"))
                return
            found = Destinations((), (address,))
        except UnknownRecipient:
            self.reply(Reply(550, "5.1.1", "Recipient address rejected: User unknown"))
            return
        except RecipientError as e:
            self.reply(Reply(550, "5.1.2", printable(str(e))))
            return
        if found.remote and outbox is None:
            self.reply(
                Reply(
                    550,
                    "5.1.2",
                    "Recipient address points outside the hosted domains; nothing is relayed here",
                )
            )
            return
        destinations: tuple[Destination, ...] = tuple(LocalUser(user) for user in found.local)
        if found.remote:
            destinations += (OUTBOUND_QUEUE,)
        size = max(transaction.mail.size or 0, 1)
        delivery = self.factory.delivery
        inboxes: dict[str, IMailFolder] = {}

        def decided(verdict: Verdict) -> None:
            if verdict.refusal is not None:
                self._logRefusal("rcpt", verdict.refusal)
                self.reply(verdict.refusal)
                return
            transaction.accept(
                AcceptedRecipient(rcpt, destinations, found.remote, verdict.headers), inboxes
            )
            self.reply(Reply(250, "2.1.5", "Ok"))

        async def checked() -> None:
            try:
                inboxes.update(await delivery.inboxes(found.local))
                full = not found.remote and await delivery.allOverQuota(found.local, size)
            except StoreFull as e:
                if not self._lost:
                    self.log.warn("smtp: {address}: store full", address=printable(address))
                    self.reply(self._storeFull(e))
                return
            if self._lost:
                return
            if full:
                self.log.info("smtp: {address}: mailbox full", address=printable(address))
                self.reply(self._mailboxFull())
                return
            pending = self._decide("rcpt", decided, recipient=address)
            if pending is not None:
                await pending

        self._wait(Deferred.fromCoroutine(checked()))

    def _resetTransaction(self) -> None:
        self._transaction = None

    # STARTTLS

    def _canStartTLS(self) -> bool:
        return (
            self.ctx is not None
            and ITLSTransport.providedBy(self.transport)
            and not isSecure(self.transport)
        )

    def ext_STARTTLS(self, rest: bytes) -> None:
        if rest.strip():
            self.reply(Reply(501, "5.5.4", "Syntax: STARTTLS"))
        elif isSecure(self.transport):
            self.reply(Reply(503, "5.5.1", "Error: TLS already active"))
        elif not self._canStartTLS():
            self.reply(Reply(454, "4.7.0", "TLS not available"))
        else:
            self.reply(Reply(220, "2.0.0", "Ready to start TLS"))
            self._discardInput = True
            self._heloName = None
            self._heloHeaders = b""
            self._esmtp = False
            self._user = None
            self._resetTransaction()
            self.transport.startTLS(self.ctx)
            self.startedTLS = True
