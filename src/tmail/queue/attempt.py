# -*- test-case-name: tests.queue.test_queue_runner -*-
"""
One attempt of one queued entry, as L{tmail.queue.runner.QueueRunner}
makes it (steps 1 to 3 of L{tmail.queue.runner}'s docstring): the due
recipients grouped by domain (L{EntryAttempt.domains}), then for each
domain the outcomes of storing the message here for a hosted domain, or of
sending it to the hosts of the domain's route in turn, with the TLS that
DANE decides for each (L{EntryAttempt.toDomain}).  The message goes as
L{OutgoingMessage} has it: from its file, or signed once for every domain.

Apart from the runner, which decides when entries are attempted and how
many at once, records the outcomes and queues the notices they call for.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Mapping, Sequence
from typing import Any, BinaryIO

from twisted.internet import defer, threads
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint, wrapClientTLS
from twisted.internet.interfaces import IReactorTCP, IReactorTime, IStreamClientEndpoint
from twisted.logger import Logger

from tmail.queue.client import deliver, envelopeFor
from tmail.queue.clientsettings import TLSPolicy
from tmail.queue.connections import ConnectionCache
from tmail.queue.dane import HostTLS, hostPolicy
from tmail.queue.dkim import DKIMKeyError, DKIMSigner
from tmail.queue.entry import Diagnostic, NoSuchEntry, Outcome, QueueEntry, Recipient, State
from tmail.queue.local import LocalTransport
from tmail.queue.mx import MailHost, MXResolver, NoRoute, Route
from tmail.queue.relaysettings import RelaySettings
from tmail.queue.results import DeliveryResult, RecipientResult
from tmail.queue.schedule import RetrySchedule
from tmail.queue.store import QueueStore

__all__ = ["EntryAttempt", "OutgoingMessage"]


def _domainOf(address: str) -> str:
    return address.rpartition("@")[2].lower()


def _outcomes(
    results: Mapping[str, RecipientResult], schedule: RetrySchedule, entry: QueueEntry, now: float
) -> dict[str, Outcome]:
    return DeliveryResult(results).outcomes(schedule, entry, now)


class EntryAttempt:
    """
    One attempt of C{entry}: the outcomes for its recipients, domain by
    domain; see the module docstring.

    @ivar store: the queue.
    @ivar settings: the runner's L{RelaySettings}.
    @ivar local: stores the mail of recipients at hosted domains (notices
        to local senders) instead of sending it through MX lookup, which
        would loop back here.
    @ivar log: where to log (the runner's logger).
    @ivar message: the message as it is sent to every domain.
    """

    def __init__(
        self,
        store: QueueStore,
        entry: QueueEntry,
        settings: RelaySettings,
        signer: DKIMSigner | None,
        local: LocalTransport | None,
        reactor: Any,
        log: Logger,
    ) -> None:
        self.store = store
        self.entry = entry
        self.settings = settings
        self.local = local
        self.reactor = reactor
        self.clock: IReactorTime = reactor
        self.log = log
        self.message = OutgoingMessage(store, entry, signer, reactor)

    def domains(self, now: float) -> dict[str, list[Recipient]]:
        """
        The recipients due at C{now} by domain; with a smarthost, those of
        every domain not hosted here together, under the smarthost's name.
        """
        smarthost = self.settings.smarthost
        byDomain: dict[str, list[Recipient]] = {}
        for r in self.entry.dueRecipients(now):
            group = _domainOf(r.address)
            if smarthost is not None and not self.hosted(group):
                group = f"[{smarthost.host}]:{smarthost.port}"
            byDomain.setdefault(group, []).append(r)
        return byDomain

    def _judgeAll(
        self, entry: QueueEntry, recipients: Sequence[Recipient], diagnostic: Diagnostic
    ) -> dict[str, Outcome]:
        now = self.clock.seconds()
        schedule = self.settings.schedule
        return {
            r.address: schedule.judge(entry.arrival, r.attempts + 1, diagnostic, now)
            for r in recipients
        }

    async def toDomain(
        self,
        domain: str,
        recipients: Sequence[Recipient],
        resolver: MXResolver | None,
        connections: ConnectionCache,
    ) -> dict[str, Outcome]:
        """
        The outcome of one attempt of the entry to C{recipients} at C{domain}
        (or at the smarthost), routed by C{resolver} (none: nothing is
        attempted), over connections kept in C{connections}.
        """
        entry = self.entry
        message = self.message
        smarthost = self.settings.smarthost
        if self.hosted(domain):
            return await self._storeLocally(entry, recipients)
        if resolver is None:
            return {}
        try:
            if smarthost is None:
                route: Route = await resolver.route(domain)
            else:
                route = await resolver.hostRoute(smarthost.host, smarthost.port)
        except NoRoute as e:
            return self._judgeAll(entry, recipients, e.diagnostic)
        try:
            await message.prepare()
        except DKIMKeyError as e:
            return self._judgeAll(entry, recipients, Diagnostic("4.7.0", f"local error: {e}"))
        except NoSuchEntry:
            return {}
        results: dict[str, RecipientResult] = {}
        remaining = list(recipients)
        implicitTLS = smarthost is not None and smarthost.implicitTLS
        domainClient = self.settings.clientSettings(domain)
        decided: dict[str, HostTLS] = {}
        for host, address in route.targets():
            client = domainClient
            if domainClient.tls.dane is not None and smarthost is None:
                if host.name not in decided:
                    decided[host.name] = await self._dane(
                        entry, route, host, domainClient.tls, resolver
                    )
                hostTLS = decided[host.name]
                if hostTLS.policy is None:
                    assert hostTLS.diagnostic is not None
                    for r in remaining:
                        results[r.address] = RecipientResult(State.DEFERRED, hostTLS.diagnostic)
                    continue
                client = dataclasses.replace(domainClient, tls=hostTLS.policy)
            endpoint = self._endpoint(address, route.port)
            if implicitTLS:
                endpoint = wrapClientTLS(client.tls.contextFor(host.name), endpoint)
            envelope = envelopeFor(entry, remaining)
            try:
                opened = message.open()
            except NoSuchEntry:
                return {}
            with opened:
                result = await deliver(
                    endpoint,
                    host.name,
                    envelope,
                    opened,
                    client,
                    requireTLS=entry.requireTLS,
                    clock=self.clock,
                    implicitTLS=implicitTLS,
                    cache=connections,
                    destination=(address, route.port),
                )
            results.update(result.recipients)
            elsewhere = set(result.retryElsewhere())
            remaining = [r for r in remaining if r.address in elsewhere]
            if not remaining:
                break
        return _outcomes(results, self.settings.schedule, entry, self.clock.seconds())

    async def _dane(
        self,
        entry: QueueEntry,
        route: Route,
        host: MailHost,
        policy: TLSPolicy,
        resolver: MXResolver,
    ) -> HostTLS:
        """The TLS for C{host} under a DANE C{policy}, logged."""
        decision = await hostPolicy(policy, route, host, resolver)
        if decision.policy is None:
            self.log.warn(
                "queue: {id} to {domain}: {host} not used now ({policy}: {reason})",
                id=entry.id,
                domain=route.domain,
                host=host.name,
                policy=str(policy.dane),
                reason=decision.reason,
            )
        else:
            self.log.info(
                "queue: {id} to {domain} via {host}: TLS {tlsLevel} ({policy}: {reason})",
                id=entry.id,
                domain=route.domain,
                host=host.name,
                tlsLevel=decision.level,
                policy=str(policy.dane),
                reason=decision.reason,
            )
        return decision

    def hosted(self, domain: str) -> bool:
        """Whether C{domain}'s recipients are stored here (never sent on)."""
        return self.local is not None and self.local.hosts(domain)

    async def _storeLocally(
        self, entry: QueueEntry, recipients: Sequence[Recipient]
    ) -> dict[str, Outcome]:
        """The outcome of storing C{entry} for hosted C{recipients}."""
        assert self.local is not None
        try:
            opened = self.store.openMessage(entry.id)
        except NoSuchEntry:
            return {}
        with opened:
            results = await self.local.deliver(entry, recipients, opened)
        now = self.clock.seconds()
        attempts = {r.address: r.attempts for r in recipients}
        return {
            address: Outcome.delivered(result.diagnostic)
            if result.delivered
            else self.settings.schedule.judge(
                entry.arrival, attempts[address] + 1, result.diagnostic, now
            )
            for address, result in results.items()
        }

    def _endpoint(self, address: str, port: int) -> IStreamClientEndpoint:
        reactor: IReactorTCP = self.reactor
        timeout = max(1, int(self.settings.timeouts.connect))
        if ":" in address:
            return TCP6ClientEndpoint(reactor, address, port, timeout=timeout)
        return TCP4ClientEndpoint(reactor, address, port, timeout=timeout)


class OutgoingMessage:
    """
    An entry's message as it is sent: signed once per attempt when a signer
    is given (in a thread of C{reactor}'s pool, and then held in memory),
    else read from its file each time.
    """

    def __init__(
        self, store: QueueStore, entry: QueueEntry, signer: DKIMSigner | None, reactor: Any
    ) -> None:
        self.store = store
        self.entry = entry
        self.signer = signer
        self.reactor = reactor
        self._signed: bytes | None = None
        self._signing = defer.DeferredLock()

    async def prepare(self) -> None:
        """
        Sign it if it is to be signed (once, however many domains ask at
        once); L{DKIMKeyError}, L{NoSuchEntry} as they come.
        """
        if self.signer is None or self._signed is not None:
            return
        await self._signing.acquire()
        try:
            if self._signed is None:
                self._signed = await threads.deferToThreadPool(
                    self.reactor, self.reactor.getThreadPool(), self._sign, self.signer
                )
        finally:
            self._signing.release()

    def _sign(self, signer: DKIMSigner) -> bytes:
        with self.store.openMessage(self.entry.id) as f:
            return signer.signMessage(f.read())

    def open(self) -> BinaryIO:
        """The message to send, at its start; L{NoSuchEntry} when it is gone."""
        if self._signed is not None:
            return io.BytesIO(self._signed)
        return self.store.openMessage(self.entry.id)
