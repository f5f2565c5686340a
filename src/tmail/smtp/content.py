# -*- test-case-name: tests.smtp.test_smtp_session -*-
"""
The content of an SMTP transaction: C{DATA} (and the start of C{BDAT}),
each recipient's copy begun (L{tmail.delivery.local}) and the outbound
queue's (L{tmail.smtp.relay}), the content written into all of them as it
arrives and shown to the policies watching, the end-of-data policies, the
commit (fsync'ed before the reply) and the replies: one for SMTP, one per
recipient for LMTP (L{answerData}).
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.mail import smtp
from twisted.python.failure import Failure

from tmail.auth.policy import isSecure, peerHost
from tmail.delivery.destination import OUTBOUND_QUEUE, Destination, LocalUser
from tmail.delivery.envelope import MailFrom, RcptTo
from tmail.delivery.local import MailboxMessage, commitAll
from tmail.delivery.trace import Trace, protocolName
from tmail.errors import OverQuota, StoreFull
from tmail.smtp.commands import Reply
from tmail.smtp.data import DataReader
from tmail.smtp.headerblock import HeaderScanner
from tmail.smtp.policy import PolicyContext, Stage, Verdict, consult
from tmail.smtp.relay import (
    HeaderCapture,
    beginQueued,
    localSuccessReport,
    queueEnvelope,
    wantsSuccess,
)
from tmail.smtp.replies import (
    INTERNAL_ERROR,
    MAILBOX_FULL,
    MAILBOX_FULL_TEMPORARY,
    STORAGE_FULL,
    printable,
)
from tmail.smtp.submission import WATCHED_FIELDS, missingFields
from tmail.smtp.transaction import AcceptedRecipient, Transaction

if TYPE_CHECKING:
    from twisted.logger import Logger

    from tmail.queue.entry import QueueEntry
    from tmail.smtp.deadlines import SessionDeadlines
    from tmail.smtp.factory import SMTPFactory

__all__ = ["MessageContent", "newQueueID"]

COMMAND, DATA = smtp.COMMAND, smtp.DATA


def newQueueID() -> str:
    """
    A short random id for the logs and the C{250} reply: unique enough,
    not secret, so drawn without a system call.
    """
    return f"{random.getrandbits(40):010X}"


class MessageContent:
    """DATA, and the content of every transaction, for an L{tmail.smtp.server.SMTPServer}."""

    if TYPE_CHECKING:
        factory: SMTPFactory
        transport: Any
        log: Logger
        mode: str
        _capture: HeaderCapture | None
        _connectHeaders: bytes
        _heloHeaders: bytes
        _heloName: str | None
        _esmtp: bool
        _user: str | None
        _junk: int
        _messages: list[MailboxMessage]
        _observers: list[Callable[[bytes], None]]
        _queueID: str
        _reader: Any
        _scanner: HeaderScanner | None
        _dataContext: PolicyContext | None
        _deadlines: SessionDeadlines
        _transaction: Transaction | None
        _dataTransaction: Transaction | None

        def reply(self, reply: Reply) -> None: ...
        def sendCode(self, code: int, message: bytes = b"") -> None: ...
        def _wait(self, pending: Deferred[Any]) -> None: ...
        def _context(self, stage: Stage, **known: Any) -> PolicyContext: ...
        def _logRefusal(self, stage: str, refusal: Reply) -> None: ...
        def _resetTransaction(self) -> None: ...

    def do_DATA(self, rest: bytes) -> None:
        if rest.strip():
            self.reply(Reply(501, "5.5.4", "Syntax: DATA"))
            return
        refusal = self._noTransaction()
        if refusal is not None:
            self.reply(refusal)
            return
        if self._transaction is not None and self._transaction.mail.body == "BINARYMIME":
            self.reply(Reply(503, "5.5.1", "Error: BODY=BINARYMIME needs BDAT"))
            return
        if self._startMessage():
            settings = self.factory.settings
            self._reader = DataReader(
                self._writeContent,
                settings.max_message_size,
                settings.max_line_length,
                settings.bare_newlines,
                onFailure=self._abortMessages,
            )
            self.mode = DATA
            self.sendCode(354, b"End data with <CR><LF>.<CR><LF>")
            self._deadlines.dataStarted()

    def _noTransaction(self) -> Reply | None:
        """Why DATA or BDAT cannot start a message now, if it cannot."""
        if self._transaction is None:
            return Reply(503, "5.5.1", "Error: need MAIL command")
        if not self._transaction.recipients:
            return Reply(503, "5.5.1", "Error: need RCPT command")
        return None

    def _startMessage(self) -> bool:
        """Begin every recipient's copy; on failure reply and return C{False}."""
        transaction = self._transaction
        assert transaction is not None
        #: Per local user, the first recipient that led to it.
        firstRecipient: dict[str, str] = {}
        #: Per destination, the header fields policies added for its recipients.
        added: dict[Destination, list[bytes]] = {}
        for recipient in transaction.recipients:
            for destination in recipient.destinations:
                if isinstance(destination, LocalUser):
                    firstRecipient.setdefault(destination.address, recipient.address)
                mine = added.setdefault(destination, [])
                if recipient.headers and recipient.headers not in mine:
                    mine.append(recipient.headers)
        common = self._connectHeaders + self._heloHeaders + transaction.headers
        headers = {destination: common + b"".join(fields) for destination, fields in added.items()}
        policies = self.factory.policies
        self._queueID = newQueueID()
        trace = self._trace()
        context = self._context("data", queueID=self._queueID) if policies else None
        self._dataTransaction = transaction
        forwards = transaction.forwards()
        self._resetTransaction()
        messages: list[MailboxMessage] = []
        try:
            if firstRecipient:
                messages = self.factory.delivery.beginAll(
                    list(firstRecipient.items()),
                    transaction.inboxes,
                    transaction.sender,
                    trace,
                    {str(d): fields for d, fields in headers.items() if isinstance(d, LocalUser)},
                    lateHeaders=bool(policies),
                )
            if forwards:
                outbox = self.factory.outbox
                assert outbox is not None
                messages.append(
                    beginQueued(
                        outbox,
                        queueEnvelope(transaction.mail, forwards),
                        trace,
                        headers.get(OUTBOUND_QUEUE, common),
                        lateHeaders=bool(policies),
                    )
                )
        except StoreFull as e:
            self._abort(messages)
            self.reply(self._storeFull(e))
            return False
        except Exception:
            self.log.failure("smtp {queueID}: delivery failed", queueID=self._queueID)
            self._abort(messages)
            self.reply(INTERNAL_ERROR)
            return False
        try:
            observers = [
                observer
                for policy in policies
                if context is not None and (observer := policy.beginData(context)) is not None
            ]
        except Exception:
            self.log.failure("smtp {queueID}: a policy failed", queueID=self._queueID)
            self._abort(messages)
            self.reply(INTERNAL_ERROR)
            return False
        self._capture = None
        if (
            transaction.sender
            and self.factory.outbox is not None
            and any(wantsSuccess(r.rcpt) and r.local for r in transaction.recipients)
        ):
            self._capture = HeaderCapture()
            observers.append(self._capture)
        self._messages = messages
        self._observers = observers
        self._dataContext = context
        self._scanner = None
        if self.factory.submission:
            self._scanner = HeaderScanner(
                missingFields(self.factory.hostname), watch=WATCHED_FIELDS
            )
        elif policies:
            self._scanner = HeaderScanner()
        return True

    def _storeFull(self, error: StoreFull) -> Reply:
        return self._mailboxFull() if isinstance(error, OverQuota) else STORAGE_FULL

    def _mailboxFull(self, text: str | None = None) -> Reply:
        reply = MAILBOX_FULL_TEMPORARY if self.factory.overQuota == "tempfail" else MAILBOX_FULL
        return reply if text is None else Reply(reply.code, reply.status, text)

    def _trace(self) -> Trace:
        address = peerHost(self.transport)
        return Trace(
            helo=self._heloName or "",
            clientAddress=address,
            clientName=address,
            hostname=self.factory.hostname,
            protocol=protocolName(
                esmtp=self._esmtp,
                tls=isSecure(self.transport),
                authenticated=self._user is not None,
                utf8=self._transaction is not None and self._transaction.mail.utf8,
            ),
            queueID=self._queueID,
            date=datetime.now().astimezone(),
        )

    # DATA and BDAT

    def _writeContent(self, data: bytes) -> None:
        """The reader's sink: content, through the header scanner when there is one."""
        scanner = self._scanner
        if scanner is not None:
            data = scanner.feed(data)
        if data:
            self._store(data)

    def _store(self, data: bytes) -> None:
        """Write content into every copy and show it to the policies watching."""
        reader = self._reader
        assert reader is not None
        try:
            for message in self._messages:
                message.write(data)
        except StoreFull as e:
            reader.fail(self._storeFull(e))
            return
        try:
            for observer in self._observers:
                observer(data)
        except Exception:
            self.log.failure(
                "smtp {queueID}: a policy failed reading the message", queueID=self._queueID
            )
            reader.fail(INTERNAL_ERROR)

    def _abortMessages(self) -> None:
        messages, self._messages = self._messages, []
        self._abort(messages)

    def _abort(self, messages: list[MailboxMessage]) -> None:
        for message in messages:
            try:
                message.connectionLost()
            except Exception:
                self.log.failure("Could not abort a message")

    def _endOfData(self) -> None:
        self.mode = COMMAND
        self._deadlines.dataEnded()
        reader = self._reader
        assert reader is not None
        scanner, self._scanner = self._scanner, None
        if scanner is not None and reader.failure is None:
            tail = scanner.finish()
            if tail:
                self._store(tail)
        self._reader = None
        self._observers = []
        transaction, self._dataTransaction = self._dataTransaction, None
        assert transaction is not None
        recipients = transaction.recipients
        context, self._dataContext = self._dataContext, None
        failure = reader.failure
        if failure is None and scanner is not None:
            failure = self._headerRefusal(scanner)
        if failure is not None:
            self._abortMessages()
            self.log.info(
                "smtp {queueID}: rejected: {reason}", queueID=self._queueID, reason=failure.text
            )
            self.answerData(recipients, failure)
            return
        if not self.factory.policies:
            self._wait(self._commit(transaction, reader.size))
            return
        assert context is not None and scanner is not None
        context = dataclasses.replace(
            context,
            headers=tuple(scanner.fields),
            headersComplete=scanner.complete,
            size=reader.size,
        )
        messages = self._messages

        def decided(verdict: Verdict) -> Deferred[None] | None:
            if self._messages is not messages:
                # The connection was lost meanwhile and the copies thrown away.
                return None
            if verdict.refusal is not None:
                self._abortMessages()
                self._logRefusal("data", verdict.refusal)
                self.answerData(recipients, verdict.refusal)
                return None
            try:
                for message in messages:
                    message.addHeaders(verdict.headers)
            except Exception:
                self.log.failure("smtp {queueID}: delivery failed", queueID=self._queueID)
                self._abortMessages()
                self.answerData(recipients, INTERNAL_ERROR)
                return None
            return self._commit(transaction, reader.size)

        verdict = consult(self.factory.policies, "data", context)
        self._wait(verdict.addCallback(decided))

    def _headerRefusal(self, scanner: HeaderScanner) -> Reply | None:
        """On submission, the refusal of a message whose header names another sender."""
        senders = self.factory.senders
        if senders is None or self._user is None:
            return None
        refusal = senders.headerRefusal(self._user, scanner.fields, scanner.complete)
        if refusal is not None:
            self.log.info(
                "smtp {queueID}: {user} may not send with this From or Sender",
                queueID=self._queueID,
                user=self._user,
            )
        return refusal

    def _commit(self, transaction: Transaction, size: int) -> Deferred[None]:
        """Commit the copies; fires once the client has been answered."""
        messages, self._messages = self._messages, []
        queueID = self._queueID
        recipients = transaction.recipients
        capture, self._capture = self._capture, None
        committed: Deferred[list[MailboxMessage]] = commitAll(
            messages, self.factory.runInThread, self.factory.publisher
        )

        def stored(refused: list[MailboxMessage]) -> None:
            if refused:
                self.log.info(
                    "smtp {queueID}: over quota: {users}; stored for {count} other user(s)",
                    queueID=queueID,
                    users=", ".join(str(message.destination) for message in refused),
                    count=len(messages) - len(refused),
                )
            else:
                self.log.info(
                    "smtp {queueID}: stored {size} bytes for {count} user(s) from {client}",
                    queueID=queueID,
                    size=size,
                    count=len(messages),
                    client=peerHost(self.transport),
                )
            full = {message.destination for message in refused}
            if len(refused) < len(messages):
                self._junk = 0
            delivered = Reply(250, "2.0.0", f"Ok: queued as {queueID}")
            self.answerData(
                recipients,
                {
                    message.destination: self._mailboxFull()
                    if message.destination in full
                    else delivered
                    for message in messages
                },
            )
            if capture is not None:
                self._reportSuccess(
                    transaction.mail,
                    [
                        r.rcpt
                        for r in recipients
                        if wantsSuccess(r.rcpt)
                        and r.local
                        and not any(d in full for d in r.destinations)
                    ],
                    capture.header,
                    size,
                    queueID,
                )

        def failed(reason: Failure) -> None:
            if isinstance(reason.value, StoreFull):
                self.log.warn("smtp {queueID}: store full", queueID=queueID)
                self.answerData(recipients, self._storeFull(reason.value))
            else:
                self.log.failure("smtp {queueID}: delivery failed", reason, queueID=queueID)
                self.answerData(recipients, INTERNAL_ERROR)

        return committed.addCallbacks(stored, failed)

    def _reportSuccess(
        self, mail: MailFrom, delivered: list[RcptTo], header: bytes, size: int, queueID: str
    ) -> None:
        """Queue the success notice C{delivered} asked for (RFC 3461 5.2.2)."""
        outbox = self.factory.outbox
        if not delivered or outbox is None:
            return
        queued = self.factory.runInThread(
            localSuccessReport,
            outbox,
            mail,
            delivered,
            header,
            size,
            queueID,
            self.factory.hostname,
        )

        def done(entry: QueueEntry) -> None:
            self.log.info(
                "smtp {queueID}: success notice to <{sender}> queued as {id}",
                queueID=queueID,
                sender=printable(mail.sender),
                id=entry.id,
            )
            outbox.committed(entry.id)

        def failed(reason: Failure) -> None:
            self.log.failure(
                "smtp {queueID}: the success notice could not be queued", reason, queueID=queueID
            )

        queued.addCallbacks(done, failed)

    def answerData(
        self,
        recipients: Sequence[AcceptedRecipient],
        outcome: Reply | Mapping[Destination, Reply],
    ) -> None:
        """
        Reply at the end of DATA: C{outcome} is one reply for the whole
        message, or one per destination (user, or the outbound queue) the
        recipients led to.  SMTP has a
        single reply (LMTP overrides this with one per recipient): the
        first refusal, telling how many copies were refused, else success.
        """
        if isinstance(outcome, Reply):
            self.reply(outcome)
            return
        refused = [reply for reply in outcome.values() if reply.code >= 400]
        if not refused:
            self.reply(next(iter(outcome.values())))
        elif len(refused) == len(outcome):
            self.reply(refused[0])
        else:
            first = refused[0]
            self.reply(
                Reply(
                    first.code,
                    first.status,
                    f"Mailbox full for {len(refused)} of {len(outcome)} recipients;"
                    " the others have the message",
                )
            )
