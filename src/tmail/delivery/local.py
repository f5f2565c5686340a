"""
Local delivery: recipients resolved through the realm, messages written into
each user's INBOX with the store's two-phase contract.

Twisted's C{IMessageDelivery} is not used: its C{validateTo} and
C{receivedHeader} see neither the TLS nor the AUTH state of the session, and
its C{DATA} handling answers before anything is durable.  The SMTP and LMTP
servers keep the envelope and ask L{LocalDelivery} for one L{MailboxMessage}
(a Twisted C{IMessage}) per local user when C{DATA} starts; the outbound
queue's local transport (L{tmail.queue.local}) does the same for the
queued mail of hosted users.

The store's disk and network operations may answer with Deferreds (the
store seam): each recipient's INBOX is found (L{LocalDelivery.inboxes})
and its quota checked (L{LocalDelivery.overQuota}) while C{RCPT} is
answered, before any content arrives, so that writing the message needs
nothing that waits; a copy's C{commit} is waited for before the reply that
says the message is stored.

Quotas are per recipient: L{LocalDelivery.overQuota} lets C{RCPT} refuse a
user whose mailbox is already full (or too full for the size C{MAIL FROM}
declared), and L{commitAll} refuses a copy that does not fit without
stopping the other recipients' copies.

A message for several users whose INBOXes can share a file
(L{ILinkingFolder}: Maildirs on one filesystem) is written once, with trace
headers that name none of them, and linked into the other mailboxes at the
end; each copy is still published and committed on its own.

Each copy starts with C{Return-Path}, C{Delivered-To} (not in a shared
copy), the header fields SMTP policies added before DATA
(L{tmail.smtp.policy}), and C{Received}.  A message is shared only when
every user gets the same policy fields.  Fields a policy adds at the end of
DATA go in the same place, just above C{Received} (where RFC 7208 9.1 and
RFC 8601 5 want C{Received-SPF} and C{Authentication-Results}), so they
must be inserted in front of content already written: while nothing has
reached the store the copy does it in its own buffer; after that the store
inserts them (L{IInsertablePendingMessage}: free while the bytes are in its
buffer, one copy of the file otherwise, made before a shared file is
linked).  A store that cannot insert is handed nothing before the end when
late fields are possible, so such a copy is held in memory: the price of a
store without that interface.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from typing import Any, TypeVar, cast

from twisted.internet.defer import (
    Deferred,
    FirstError,
    fail,
    gatherResults,
    inlineCallbacks,
    maybeDeferred,
    succeed,
)
from twisted.internet.threads import deferToThread
from twisted.logger import Logger
from twisted.mail import smtp
from twisted.python.failure import Failure
from zope.interface import implementer

from tmail.delivery.destination import Destination, LocalUser
from tmail.delivery.trace import Trace, sharedTraceHeaders, traceHeaders
from tmail.errors import OverQuota
from tmail.interfaces import (
    Destinations,
    IDeliveryStore,
    IForwardingRealm,
    IInsertablePendingMessage,
    ILinkingFolder,
    IMailFolder,
    IMailRealm,
    IMailStore,
    IPendingMessage,
    IQuotaStore,
)

_log = Logger()

#: Bytes gathered in memory before they are handed to the store.
WRITE_CHUNK = 64 * 1024

T = TypeVar("T")


async def _each(answers: Iterable[Deferred[T]]) -> list[T]:
    """The results of C{answers}, all under way at once; the first failure, as itself."""
    pending = list(answers)
    if len(pending) == 1:
        return [await pending[0]]
    try:
        return await gatherResults(pending, consumeErrors=True)
    except FirstError as e:
        e.subFailure.raiseException()
        raise


@implementer(smtp.IMessage)
class MailboxMessage:
    """
    One copy of a message, on its way into a folder (or the outbound queue).

    Lines arrive without their CRLF and are stored with it; the trace
    headers are written first.

    @ivar destination: the user (or the queue) the copy is for.
    """

    def __init__(
        self,
        pending: IPendingMessage,
        prefix: bytes,
        destination: Destination,
        *,
        headersAt: int | None = None,
        hold: bool = False,
    ) -> None:
        """
        @param prefix: the trace header fields, written first.
        @param headersAt: where in C{prefix} L{addHeaders} puts fields (the
            end of C{prefix} when C{None}).
        @param hold: hand nothing to C{pending} before L{flush}, so that
            L{addHeaders} works on a store that cannot insert.
        """
        self.pending: IPendingMessage | None = pending
        self.destination = destination
        self._chunks: list[bytes] = [prefix]
        self._buffered = len(prefix)
        self._headersAt = len(prefix) if headersAt is None else headersAt
        self._hold = hold
        #: Whether the prefix went to the store already.
        self._handed = False
        self._finished = False

    def lineReceived(self, line: bytes) -> None:
        self.write(line + b"\r\n")

    def write(self, data: bytes) -> None:
        """Add content (with its CRLFs); handed to the store in large pieces."""
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered >= WRITE_CHUNK and not self._hold:
            self.flush()

    def flush(self) -> None:
        """Hand buffered bytes to the store (which may raise C{StoreFull})."""
        if self._chunks:
            data = b"".join(self._chunks)
            self._chunks = []
            self._buffered = 0
            self._handed = True
            assert self.pending is not None
            self.pending.write(data)

    def addHeaders(self, fields: bytes) -> None:
        """
        Put header fields (CRLF-terminated) after those the copy started
        with, above C{Received}, though content may follow already.
        """
        if not fields:
            return
        at = self._headersAt
        if not self._handed:
            prefix = self._chunks[0]
            self._chunks[0] = prefix[:at] + fields + prefix[at:]
            self._buffered += len(fields)
        elif IInsertablePendingMessage.providedBy(self.pending):
            self.pending.insert(at, fields)
        else:
            raise RuntimeError("the store cannot insert, and the copy was not held")
        self._headersAt += len(fields)

    def eomReceived(self) -> Deferred[int]:
        """
        Flush and commit (fsync); fires with the new message's UID once
        the store has it durable.
        """
        try:
            self.flush()
            assert self.pending is not None
            committed: Deferred[int] = maybeDeferred(self.pending.commit)
        except BaseException:
            self.connectionLost()
            return fail()

        def done(uid: int) -> int:
            self._finished = True
            return uid

        def failed(failure: Failure) -> Failure:
            self.connectionLost()
            return failure

        return committed.addCallbacks(done, failed)

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
        super().__init__(None, b"", LocalUser(user))  # type: ignore[arg-type]
        self.pending = None
        self._folder = folder
        self._source = source

    def write(self, data: bytes) -> None:
        """The source has the content."""

    def addHeaders(self, fields: bytes) -> None:
        """The source has the content, and gets the fields."""

    def flush(self) -> None:
        if self.pending is None and not self._finished:
            source = self._source
            source.flush()
            assert source.pending is not None
            self.pending = self._folder.linkedCopy(source.pending)


def _deliveryInbox(store: IMailStore) -> Deferred[IMailFolder]:
    """A store's INBOX to deliver into, its index not read where the store allows."""
    if IDeliveryStore.providedBy(store):
        return maybeDeferred(store.deliveryFolder, "INBOX")
    return maybeDeferred(store.getFolder, "INBOX")


class LocalDelivery:
    """Resolves recipients and starts messages for the realm's users."""

    def __init__(self, realm: IMailRealm) -> None:
        self.realm = realm

    def destinations(self, address: str) -> Destinations:
        """
        Where mail to C{address} goes: local users, and (from a realm that
        provides L{IForwardingRealm}) addresses elsewhere.  Raises the
        realm's L{tmail.errors.RecipientError}s.
        """
        realm = self.realm
        if IForwardingRealm.providedBy(realm):
            found: Destinations = realm.destinations(address)
            return found
        return Destinations(tuple(realm.resolveRecipient(address)))

    def inboxes(self, users: Iterable[str]) -> Deferred[dict[str, IMailFolder]]:
        """
        The INBOX of each of C{users}, asked of their stores all at once;
        fails as the first store that cannot find one does.
        """
        users = list(users)

        async def found() -> dict[str, IMailFolder]:
            folders = await _each(_deliveryInbox(self.realm.storeFor(user)) for user in users)
            return dict(zip(users, folders, strict=True))

        return Deferred.fromCoroutine(found())

    def begin(
        self,
        inbox: IMailFolder,
        user: str,
        recipient: str,
        sender: str,
        trace: Trace,
        headers: bytes = b"",
        lateHeaders: bool = False,
    ) -> MailboxMessage:
        """
        Start the copy for C{user} (reached through C{recipient}) in its
        C{inbox} (from L{inboxes}), trace headers written.

        @param headers: header fields (CRLF-terminated) to write above
            C{Received}.
        @param lateHeaders: whether L{MailboxMessage.addHeaders} may be
            called once the content is in.
        """
        prefix = traceHeaders(trace, sender, user, recipient, headers)
        return _started(inbox.beginMessage(), prefix, trace.received(recipient), user, lateHeaders)

    def beginAll(
        self,
        recipients: Sequence[tuple[str, str]],
        inboxes: Mapping[str, IMailFolder],
        sender: str,
        trace: Trace,
        headers: Mapping[str, bytes] | None = None,
        lateHeaders: bool = False,
    ) -> list[MailboxMessage]:
        """
        Start the copies for C{(user, RCPT address)} pairs, written once
        and linked when the users' INBOXes allow it and C{headers} gives
        every user the same fields, else one per user.  When this raises,
        the copies begun are aborted.

        @param inboxes: the INBOX of every user (from L{inboxes}).
        @param headers: per user, the header fields to write above
            C{Received} (none for a user not named).
        @param lateHeaders: as for L{begin}.
        """
        headers = headers or {}
        fields = {headers.get(user, b"") for user, _ in recipients}
        if len(recipients) > 1 and len(fields) == 1:
            folders = [inboxes[user] for user, _ in recipients]
            if all(ILinkingFolder.providedBy(folder) for folder in folders[1:]):
                first = recipients[0][0]
                source = _started(
                    folders[0].beginMessage(),
                    sharedTraceHeaders(trace, sender, fields.pop()),
                    trace.received(None),
                    first,
                    lateHeaders,
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
                messages.append(
                    self.begin(
                        inboxes[user],
                        user,
                        address,
                        sender,
                        trace,
                        headers.get(user, b""),
                        lateHeaders,
                    )
                )
        except BaseException:
            for message in messages:
                message.connectionLost()
            raise
        return messages

    def overQuota(self, user: str, size: int) -> Deferred[bool]:
        """
        Whether a message of C{size} bytes would take C{user} over quota,
        as far as the store can tell before the message arrives.  A store
        without quotas, or one whose usage cannot be read, says no: the
        delivery itself is the final check.
        """
        store = self.realm.storeFor(user)
        if not IQuotaStore.providedBy(store):
            return succeed(False)

        def refused(failure: Failure) -> bool:
            if failure.check(OverQuota):  # type: ignore[no-untyped-call]
                return True
            _log.failure("Cannot read the quota of {user}", failure, user=user)
            return False

        checked: Deferred[object] = maybeDeferred(store.checkQuota, size)
        return checked.addCallbacks(lambda _: False, refused)

    def allOverQuota(self, users: Iterable[str], size: int) -> Deferred[bool]:
        """Whether every one of C{users} is over quota (L{overQuota}), asked all at once."""

        async def checked() -> bool:
            full: list[bool] = await _each(self.overQuota(user, size) for user in users)
            return all(full)

        return Deferred.fromCoroutine(checked())


def _started(
    pending: IPendingMessage, prefix: bytes, received: bytes, user: str, lateHeaders: bool
) -> MailboxMessage:
    """A copy for C{user} whose C{prefix} ends in C{received}, above which late fields go."""
    return MailboxMessage(
        pending,
        prefix,
        LocalUser(user),
        headersAt=len(prefix) - len(received),
        hold=lateHeaders and not IInsertablePendingMessage.providedBy(pending),
    )


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
    publish: Callable[[Sequence[MailboxMessage]], Deferred[list[OverQuota | None]]] | None = None,
) -> Generator[Deferred[Any], Any, list[MailboxMessage]]:
    """
    Flush every copy, publish them (fsync, move into the folder) in a
    worker thread (a C{inThread} job of their own, or with C{publish}, a
    L{tmail.delivery.groupcommit.GroupPublisher}, one shared with other
    deliveries), then commit them one by one, each once the commit before
    it has fired (so a failure leaves the copies after it uncommitted).
    Fires with
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
        outcomes = yield (
            publish(messages) if publish is not None else inThread(publishAll, messages)
        )
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
