# -*- test-case-name: tests.smtp.test_smtp_delivery -*-
"""
Local delivery: recipients resolved through the realm, messages written into
each user's INBOX with the store's two-phase contract.

Twisted's C{IMessageDelivery} is not used: its C{validateTo} and
C{receivedHeader} see neither the TLS nor the AUTH state of the session, and
its C{DATA} handling answers before anything is durable.  The server keeps
the envelope and asks L{LocalDelivery} for one L{MailboxMessage} (a Twisted
C{IMessage}) per local user when C{DATA} starts.

Quotas are per recipient: L{LocalDelivery.overQuota} lets C{RCPT} refuse a
user whose mailbox is already full (or too full for the size C{MAIL FROM}
declared), and L{commitAll} refuses a copy that does not fit without
stopping the other recipients' copies.

A message for several users whose INBOXes can share a file
(L{ILinkingFolder}: Maildirs on one filesystem) is written once, with trace
headers that name none of them, and linked into the other mailboxes at the
end; each copy is still published and committed on its own.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from typing import Any, cast

from twisted.internet.defer import Deferred, fail, inlineCallbacks, succeed
from twisted.internet.threads import deferToThread
from twisted.logger import Logger
from twisted.mail import smtp
from zope.interface import implementer

from tmail.errors import OverQuota
from tmail.interfaces import ILinkingFolder, IMailRealm, IPendingMessage, IQuotaStore
from tmail.smtp.headers import Trace, sharedTraceHeaders, traceHeaders

_log = Logger()

#: Bytes gathered in memory before they are handed to the store.
WRITE_CHUNK = 64 * 1024


@implementer(smtp.IMessage)
class MailboxMessage:
    """
    One user's copy of a message, on its way into a folder.

    Lines arrive without their CRLF and are stored with it; the trace
    headers are written first.

    @ivar user: the canonical address of the user the copy is for.
    """

    def __init__(self, pending: IPendingMessage, prefix: bytes, user: str = "") -> None:
        self.pending: IPendingMessage | None = pending
        self.user = user
        self._chunks: list[bytes] = [prefix]
        self._buffered = len(prefix)
        self._finished = False

    def lineReceived(self, line: bytes) -> None:
        self.write(line + b"\r\n")

    def write(self, data: bytes) -> None:
        """Add content (with its CRLFs); handed to the store in large pieces."""
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered >= WRITE_CHUNK:
            self.flush()

    def flush(self) -> None:
        """Hand buffered bytes to the store (which may raise C{StoreFull})."""
        if self._chunks:
            data = b"".join(self._chunks)
            self._chunks = []
            self._buffered = 0
            assert self.pending is not None
            self.pending.write(data)

    def eomReceived(self) -> Deferred[int]:
        """Flush and commit (fsync); fires with the new message's UID."""
        try:
            self.flush()
            assert self.pending is not None
            uid = self.pending.commit()
        except BaseException:
            self.connectionLost()
            return fail()
        self._finished = True
        return succeed(uid)

    def connectionLost(self) -> None:
        """Throw the copy away unless it was committed."""
        self._chunks = []
        if not self._finished:
            self._finished = True
            if self.pending is not None:
                self.pending.abort()


class LinkedMessage(MailboxMessage):
    """
    Another user's copy of a message L{MailboxMessage} C{source} writes:
    nothing is written to it; when the content is complete (L{flush}), it
    becomes a link to the source's file in this user's INBOX.
    """

    def __init__(self, folder: ILinkingFolder, source: MailboxMessage, user: str) -> None:
        super().__init__(None, b"", user)  # type: ignore[arg-type]
        self.pending = None
        self._folder = folder
        self._source = source

    def write(self, data: bytes) -> None:
        """The source has the content."""

    def flush(self) -> None:
        if self.pending is None and not self._finished:
            source = self._source
            source.flush()
            assert source.pending is not None
            self.pending = self._folder.linkedCopy(source.pending)


class LocalDelivery:
    """Resolves recipients and starts messages for the realm's users."""

    def __init__(self, realm: IMailRealm) -> None:
        self.realm = realm

    def resolve(self, address: str) -> list[str]:
        """
        The local users mail to C{address} goes to.  Raises the realm's
        L{tmail.errors.RecipientError}s.
        """
        return self.realm.resolveRecipient(address)

    def begin(self, user: str, recipient: str, sender: str, trace: Trace) -> MailboxMessage:
        """
        Start the copy for C{user} (reached through C{recipient}) in its
        INBOX, trace headers written.
        """
        folder = self.realm.storeFor(user).getFolder("INBOX")
        prefix = traceHeaders(trace, sender, user, recipient)
        return MailboxMessage(folder.beginMessage(), prefix, user)

    def beginAll(
        self, recipients: Sequence[tuple[str, str]], sender: str, trace: Trace
    ) -> list[MailboxMessage]:
        """
        Start the copies for C{(user, RCPT address)} pairs, written once
        and linked when the users' INBOXes allow it, else one per user.
        When this raises, the copies begun are aborted.
        """
        if len(recipients) > 1:
            folders = [self.realm.storeFor(user).getFolder("INBOX") for user, _ in recipients]
            if all(ILinkingFolder.providedBy(folder) for folder in folders[1:]):
                first = recipients[0][0]
                source = MailboxMessage(
                    folders[0].beginMessage(), sharedTraceHeaders(trace, sender), first
                )
                return [
                    source,
                    *(
                        LinkedMessage(cast(ILinkingFolder, folder), source, user)
                        for folder, (user, _) in zip(folders[1:], recipients[1:], strict=True)
                    ),
                ]
        messages: list[MailboxMessage] = []
        try:
            for user, address in recipients:
                messages.append(self.begin(user, address, sender, trace))
        except BaseException:
            for message in messages:
                message.connectionLost()
            raise
        return messages

    def overQuota(self, user: str, size: int) -> bool:
        """
        Whether a message of C{size} bytes would take C{user} over quota,
        as far as the store can tell before the message arrives.  A store
        without quotas, or one whose usage cannot be read, says no: the
        delivery itself is the final check.
        """
        store = self.realm.storeFor(user)
        if not IQuotaStore.providedBy(store):
            return False
        try:
            store.checkQuota(size)
        except OverQuota:
            return True
        except Exception:
            _log.failure("Cannot read the quota of {user}", user=user)
        return False


def publishAll(messages: Sequence[MailboxMessage]) -> list[OverQuota | None]:
    """
    Make every copy durable; runs in a worker thread (see L{commitAll}).
    A copy over its user's quota is refused (and thrown away) without
    stopping the others: the list says which, in order.
    """
    outcomes: list[OverQuota | None] = []
    for message in messages:
        assert message.pending is not None
        try:
            message.pending.publish()
        except OverQuota as e:
            outcomes.append(e)
        else:
            outcomes.append(None)
    return outcomes


@inlineCallbacks
def commitAll(
    messages: Sequence[MailboxMessage],
    inThread: Callable[..., Deferred[Any]] = deferToThread,
) -> Generator[Deferred[Any], Any, list[MailboxMessage]]:
    """
    Flush every copy, publish them (fsync, move into the folder) in a
    worker thread, then commit them one by one in the reactor.  Fires with
    the copies refused because their user is over quota (the others are
    delivered).  On any other failure abort the copies not yet committed
    and fail with that error.

    The fsyncs are what a delivery waits for; in a thread, the deliveries
    of many sessions wait on the disk together and the reactor keeps
    serving.  Flushing first means a full disk is almost always noticed
    before any copy is visible.  A commit can still fail after an earlier
    one succeeded (the fsync of the second folder fails): those users keep
    their copy, the client is told to retry, and they get it twice.
    """
    refused: list[MailboxMessage] = []
    try:
        for message in messages:
            message.flush()
        outcomes = yield inThread(publishAll, messages)
        for message, outcome in zip(messages, outcomes, strict=True):
            if outcome is None:
                try:
                    yield message.eomReceived()
                    continue
                except OverQuota:
                    pass
            message.connectionLost()
            refused.append(message)
    except BaseException:
        for message in messages:
            message.connectionLost()
        raise
    return refused
