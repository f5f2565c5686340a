# -*- test-case-name: tests.queue.test_queue_local -*-
"""
Final delivery of queued mail to recipients at hosted domains.

The queue holds mail for local users too: the notices (DSNs) it sends to
senders of this server, above all.  Sending those through MX lookup would
loop back to this host (RFC 5321 5.1 forbids that), so the runner hands a
hosted domain's recipients to L{LocalTransport}, which stores them the way
the SMTP server does (L{LocalDelivery}: aliases, sub-addresses, quotas,
one shared file for several users) with trace fields saying where the copy
came from.  An alias of such a recipient that points outside gets a new
queue entry through the L{Outbox}.  The store may answer with Deferreds
(the users' INBOXes, each copy's commit): a recipient counts as delivered
only once its copy's commit has fired.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, BinaryIO

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThread

from tmail.delivery.local import LocalDelivery, MailboxMessage, commitAll
from tmail.delivery.trace import Trace
from tmail.errors import NotHostedDomain, RecipientError, StoreFull, UnknownRecipient
from tmail.interfaces import IMailRealm
from tmail.queue.dsn import xtextEncode
from tmail.queue.entry import Diagnostic, Envelope, QueueEntry, Recipient
from tmail.queue.outbox import Outbox

__all__ = ["LocalResult", "LocalTransport"]

#: How much of the queued message is read at a time.
READ_SIZE = 64 * 1024

DELIVERED = Diagnostic("2.0.0", "delivered to the mailbox")


@dataclass(frozen=True, slots=True)
class LocalResult:
    """
    What became of one recipient: C{delivered}, with a diagnostic either
    way (a failure's status says whether it is permanent).
    """

    delivered: bool
    diagnostic: Diagnostic


class LocalTransport:
    """
    Stores queued mail for hosted recipients.

    @ivar hostname: this server's name, for the trace fields.
    @ivar outbox: where an alias's outside targets are queued (without it
        they fail).
    """

    def __init__(
        self,
        realm: IMailRealm,
        hostname: str,
        outbox: Outbox | None = None,
        runInThread: Callable[..., Deferred[Any]] = deferToThread,
    ) -> None:
        self.delivery = LocalDelivery(realm)
        self.hostname = hostname
        self.outbox = outbox
        self.runInThread = runInThread

    def hosts(self, domain: str) -> bool:
        """Whether recipients at C{domain} are stored here."""
        try:
            self.delivery.destinations(f"postmaster@{domain}")
        except NotHostedDomain:
            return False
        except RecipientError:
            return True
        return True

    async def deliver(
        self, entry: QueueEntry, recipients: Sequence[Recipient], message: BinaryIO
    ) -> dict[str, LocalResult]:
        """Store C{message} (read from its start) for C{recipients} of C{entry}."""
        results: dict[str, LocalResult] = {}
        pairs: dict[str, str] = {}
        forwards: list[Recipient] = []
        wanted: dict[str, tuple[str, ...]] = {}
        for r in recipients:
            try:
                found = self.delivery.destinations(r.address)
            except UnknownRecipient:
                results[r.address] = _failed("5.1.1", "no such user here")
                continue
            except NotHostedDomain:
                results[r.address] = _failed("5.1.2", "the domain is not hosted here")
                continue
            except RecipientError as e:
                results[r.address] = _failed("5.1.2", str(e))
                continue
            wanted[r.address] = found.local
            for user in found.local:
                pairs.setdefault(user, r.address)
            forwards += [
                Recipient(target, r.notify, r.orcpt or f"rfc822;{xtextEncode(r.address)}")
                for target in found.remote
            ]
        if forwards and self.outbox is None:
            for r in recipients:
                results.setdefault(r.address, _failed("5.1.2", "forwarding is not available"))
            return results
        try:
            refused = await self._store(entry, list(pairs.items()), forwards, message)
        except StoreFull as e:
            diagnostic = Diagnostic("4.3.1", f"insufficient system storage: {e}")
            return {**results, **{a: LocalResult(False, diagnostic) for a in wanted}}
        for address, users in wanted.items():
            if users and all(user in refused for user in users):
                results[address] = LocalResult(False, Diagnostic("4.2.2", "mailbox full"))
            else:
                results[address] = LocalResult(
                    True, Diagnostic("2.0.0", "delivered to the mailbox")
                )
        return results

    async def _store(
        self,
        entry: QueueEntry,
        pairs: list[tuple[str, str]],
        forwards: list[Recipient],
        message: BinaryIO,
    ) -> set[str]:
        """Write and commit every copy; the users refused for their quota."""
        trace = Trace(
            helo=self.hostname,
            clientAddress="local",
            clientName="local",
            hostname=self.hostname,
            protocol="local",
            queueID=entry.id,
            date=datetime.now().astimezone(),
        )
        copies: list[MailboxMessage] = []
        if pairs:
            inboxes = await self.delivery.inboxes(user for user, _ in pairs)
            copies = self.delivery.beginAll(pairs, inboxes, entry.sender, trace)
        pending = None
        if forwards:
            assert self.outbox is not None
            pending = self.outbox.store.begin(
                Envelope(
                    entry.sender,
                    tuple(forwards),
                    entry.body,
                    entry.utf8,
                    entry.ret,
                    entry.envid,
                    entry.requireTLS,
                )
            )
        try:
            while chunk := message.read(READ_SIZE):
                for copy in copies:
                    copy.write(chunk)
                if pending is not None:
                    pending.write(chunk)
        except BaseException:
            for copy in copies:
                copy.connectionLost()
            if pending is not None:
                pending.abort()
            raise
        try:
            if pending is not None:
                forwarded = await self.runInThread(pending.commit)
        except BaseException:
            for copy in copies:
                copy.connectionLost()
            raise
        if pending is not None and self.outbox is not None:
            self.outbox.committed(forwarded.id)
        refused = await commitAll(copies, self.runInThread)
        return {str(copy.destination) for copy in refused}


def _failed(status: str, text: str) -> LocalResult:
    return LocalResult(False, Diagnostic(status, text))
