# -*- test-case-name: tests.queue.test_queue_runner -*-
"""
The queue runner: the service that sends queued mail on, retries it, and
tells senders what became of it.

L{QueueRunner} follows the steps L{tmail.queue.store} lays down.  At start
it makes the queue's directories and recovers from a crash; then it reads
the whole queue at start, when an operator asks
(L{QueueStore.takeWakeup}, polled every L{RelaySettings.wakeupPoll}
seconds), and every L{RelaySettings.rescanInterval} seconds.  In between
it reads single entries only, so that the work per message does not grow
with the queue: a new entry is attempted when the outbox says it was
queued (L{QueueRunner.attemptSoon}), an entry whose attempt ended is
attempted again when its next attempt falls due, and an entry that came
while the runner was busy waits for an attempt to end.  For each due
entry:

  1. its due recipients are grouped by domain, and the domains are
     attempted side by side (with a smarthost, all of them but those of
     hosted domains go together, in one transaction); recipients at a
     hosted domain (reports to local senders, above all) are stored by
     the L{LocalTransport} instead: an MX lookup would lead back here;
  2. each domain's L{Route} comes from L{MXResolver.route} (with a
     smarthost, L{MXResolver.hostRoute} of the smarthost: no MX lookup,
     no loop check); a L{NoRoute} is every recipient's outcome there
     (permanent: failed; temporary: deferred, or failed once the entry
     expired);
  3. the message, DKIM-signed when a signer is given, goes to the route's
     targets in turn with L{deliver}; when a host cannot be used
     (L{DeliveryResult.hostFailed}) the recipients it did not answer
     (L{DeliveryResult.retryElsewhere}) go on to the next target, and
     those still unanswered after the last one are deferred;
  4. each domain's outcomes are recorded as soon as it is done
     (L{QueueStore.record}), so a crash repeats as little as possible;
  5. then the notices the entry owes are queued: failure and success DSNs
     (L{QueueEntry.noticesOwed}) and delay warnings
     (L{RetrySchedule.delayWarningDue}), each a new entry from C{<>} to the
     sender, and marked sent.  A notice owed by an entry whose recipients
     are all final (a crash came between recording and queueing it) is
     queued by the next look at the queue.

Steps 1 to 3, one attempt of one entry, are L{tmail.queue.attempt}'s.

At most L{RelaySettings.maxConnections} domains are attempted at once, and
at most L{RelaySettings.maxPerDomain} of them to the same domain (or to
the smarthost).  Connections are kept open for the next message to the
same server (a L{ConnectionCache}: at most L{RelaySettings.reuseTime}
seconds idle, for L{RelaySettings.reuseLimit} messages), so that entries
for one domain waiting for a connection use the ones already open.  Held
entries are skipped, and so is an entry deleted
meanwhile.  Nothing is lost when the process dies at any point: the queue
is the only state.

A smarthost (L{RelaySettings.smarthost}, see L{tmail.queue.smarthost})
takes all mail for other domains: STARTTLS is required unless it speaks implicit TLS, its
certificate is verified unless told otherwise, and the login is sent
when credentials are given.  Failing to reach it or to log in defers the
mail; its C{5xx} to a recipient or to the message fails them as an MX
host's would.

Stopping the runner lets the attempts under way finish for
L{RelaySettings.stopGrace} seconds, then cancels them: their connections
are dropped and nothing is recorded for them, so they are made again
after the next start.  The idle connections are closed with QUIT, within
the same grace.

The server runs it as a child of its L{MultiService}::

    runner = QueueRunner(
        QueueStore(queueDirectory(settings.data_dir)),
        RelaySettings.fromConfig(settings),
        signer=DKIMSigner.fromSettings(settings, directory),
        local=LocalTransport(realm, settings.hostname, outbox),
    )
    runner.setServiceParent(service)
    outbox.listen(runner.attemptSoon)

A DKIM-signed copy is held in memory for the attempt; it is read and
signed in a thread of the reactor's pool (signing takes about 10 ms for
an RSA-2048 key, too long to hold up the reactor).  Unsigned mail is sent
from its file.
"""

from __future__ import annotations

import contextlib
import heapq
from collections.abc import Sequence
from typing import Any, cast

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from tmail.config.remotes import parseNameserver
from tmail.queue.attempt import EntryAttempt
from tmail.queue.connections import ConnectionCache
from tmail.queue.dkim import DKIMSigner
from tmail.queue.dnssec import isLoopback
from tmail.queue.dsn import buildReport
from tmail.queue.entry import CorruptEntry, NoSuchEntry, Notice, QueueEntry, Recipient
from tmail.queue.local import LocalTransport
from tmail.queue.mx import MXResolver
from tmail.queue.relaysettings import RelaySettings
from tmail.queue.store import QueueStore

__all__ = ["QueueRunner"]


class QueueRunner(Service):
    """
    Sends the queue's mail on; see the module docstring.

    @ivar store: the queue.
    @ivar settings: the L{RelaySettings}.
    @ivar resolver: where routes come from (by default
        L{RelaySettings.resolver}, made when the runner starts and closed
        when it stops).
    @ivar signer: signs outgoing copies with DKIM, when given.
    @ivar local: stores the mail of recipients at hosted domains (notices
        to local senders) instead of sending it through MX lookup, which
        would loop back here.
    """

    log = Logger()

    def __init__(
        self,
        store: QueueStore,
        settings: RelaySettings,
        resolver: MXResolver | None = None,
        signer: DKIMSigner | None = None,
        reactor: Any = None,
        local: LocalTransport | None = None,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as globalReactor  # noqa: N812

            reactor = globalReactor
        self.store = store
        self.settings = settings
        self.resolver = resolver
        self._ownsResolver = resolver is None
        self.signer = signer
        self.local = local
        self.reactor = reactor
        self.clock: IReactorTime = reactor
        self.setName("queue runner")  # type: ignore[no-untyped-call]
        self._total = defer.DeferredSemaphore(settings.maxConnections)
        self._perDomain: dict[str, defer.DeferredSemaphore] = {}
        self._busy: dict[str, defer.Deferred[None]] = {}
        self._troubled: dict[str, float] = {}
        self._timer: IDelayedCall | None = None
        self._poll: LoopingCall | None = None
        self._stopping = False
        self._planned: dict[str, float] = {}
        self._upcoming: list[tuple[float, str]] = []
        self._attemptTimer: IDelayedCall | None = None
        self._waiting: dict[str, None] = {}
        self._draining = False
        self.connections = self._connectionCache()

    def _connectionCache(self) -> ConnectionCache:
        return ConnectionCache(
            self.clock,
            self.settings.reuseTime,
            self.settings.reuseLimit,
            quitTimeout=self.settings.timeouts.initial,
        )

    # Service

    def startService(self) -> None:
        """Recover the queue, then start looking at it."""
        super().startService()  # type: ignore[no-untyped-call]
        if self.resolver is None:
            self.resolver = self.settings.resolver()
            self._warnOfRemoteResolvers()
        self._stopping = False
        self.connections = self._connectionCache()
        self.store.create()
        recovery = self.store.recover(now=self.clock.seconds())
        for entryId in recovery.corrupt:
            self.log.warn("queue: entry {id} is unreadable, set aside in corrupt/", id=entryId)
        poll = LoopingCall(self._checkWakeup)
        poll.clock = self.clock
        self._poll = poll
        poll.start(self.settings.wakeupPoll, now=False)
        self.scan()

    def _warnOfRemoteResolvers(self) -> None:
        """DANE trusts the AD bit: say so when it comes from another host (as Postfix warns)."""
        if not self.settings.usesDANE:
            return
        servers = [parseNameserver(s)[0] for s in self.settings.nameservers]
        for server in servers or ["the servers of /etc/resolv.conf"]:
            if not isLoopback(server):
                self.log.warn(
                    "relay: DANE trusts the DNSSEC validation (AD bit) of {server}, which is"
                    " not on this host: use a local validating resolver (127.0.0.1, ::1)",
                    server=server,
                )

    def stopService(self) -> defer.Deferred[Any]:
        """
        Stop looking; fires once the attempts under way have ended, those
        not done within L{RelaySettings.stopGrace} seconds cancelled, and
        the connections kept for reuse are closed (QUIT, within the grace).
        """
        super().stopService()  # type: ignore[no-untyped-call]
        self._stopping = True
        if self._poll is not None and self._poll.running:
            self._poll.stop()
        self._cancelTimer()
        self._forgetPlans()
        if self._ownsResolver and self.resolver is not None:
            self.resolver.close()
            self.resolver = None
        closed = self.connections.close(self.settings.stopGrace)
        busy = list(self._busy.values())
        ended: defer.Deferred[Any] = defer.DeferredList([*busy, closed])
        if not busy:
            return ended

        def cancelAll() -> None:
            for d in busy:
                d.cancel()

        grace = self.clock.callLater(self.settings.stopGrace, cancelAll)

        def stopWaiting(result: object) -> object:
            if grace.active():
                grace.cancel()
            return result

        return ended.addBoth(stopWaiting)

    # Deciding when to look

    def _cancelTimer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _forgetPlans(self) -> None:
        if self._attemptTimer is not None and self._attemptTimer.active():
            self._attemptTimer.cancel()
        self._attemptTimer = None
        self._planned.clear()
        self._upcoming.clear()
        self._waiting.clear()

    def _checkWakeup(self) -> None:
        if self.store.takeWakeup():
            self.scan()

    def _wakeSoon(self, delay: float) -> None:
        """Scan the queue in C{delay} seconds, or sooner if planned."""
        if not self.running:
            return
        when = self.clock.seconds() + max(0.0, delay)
        if self._timer is not None and self._timer.active():
            if self._timer.getTime() <= when:
                return
            self._timer.cancel()
        self._timer = self.clock.callLater(max(0.0, delay), self.scan)

    def _busyEnough(self) -> bool:
        return len(self._busy) >= 2 * self.settings.maxConnections

    def scan(self) -> None:
        """
        Start attempts of the due entries, queue owed notices, plan every
        entry's next attempt and the next scan.
        """
        if not self.running:
            return
        self._cancelTimer()
        now = self.clock.seconds()
        self._troubled = {i: t for i, t in self._troubled.items() if t > now}
        try:
            entries = self.store.entries()
        except OSError as e:
            self.log.error("queue: cannot read the queue: {error}", error=str(e))
            self._wakeSoon(self.settings.rescanInterval)
            return
        self._forgetPlans()
        due = sorted(
            (e for e in entries if e.isDue(now)), key=lambda e: (e.nextAttempt() or 0.0, e.id)
        )
        for entry in due:
            if entry.id in self._busy or entry.id in self._troubled:
                continue
            if self._busyEnough():
                self._waiting[entry.id] = None
            else:
                self._start(entry.id)
        for entry in entries:
            if entry.id in self._busy or entry.id in self._troubled or entry.held:
                continue
            if not entry.active() and entry.noticesOwed():
                self._start(entry.id)
            else:
                upcoming = entry.nextAttempt()
                if upcoming is not None and upcoming > now:
                    self._plan(entry.id, upcoming)
        self._wakeSoon(self.settings.rescanInterval)

    def attemptSoon(self, entryId: str) -> None:
        """
        Attempt a new entry now, without reading the whole queue (an
        L{tmail.queue.outbox.Outbox} listener).  When the runner is busy
        enough, the entry waits for an attempt under way to end.
        """
        if not self.running or entryId in self._busy:
            return
        if self._busyEnough():
            self._waiting[entryId] = None
        else:
            self._start(entryId)

    def _plan(self, entryId: str, when: float) -> None:
        """Attempt C{entryId} at C{when} (instead of any time planned before)."""
        self._planned[entryId] = when
        heapq.heappush(self._upcoming, (when, entryId))
        self._armAttemptTimer()

    def _armAttemptTimer(self) -> None:
        upcoming = self._upcoming
        while upcoming and self._planned.get(upcoming[0][1]) != upcoming[0][0]:
            heapq.heappop(upcoming)
        timer = self._attemptTimer
        if not upcoming or not self.running:
            if timer is not None and timer.active():
                timer.cancel()
            self._attemptTimer = None
            return
        when = upcoming[0][0]
        if timer is not None and timer.active():
            if timer.getTime() <= when:
                return
            timer.cancel()
        self._attemptTimer = self.clock.callLater(
            max(0.0, when - self.clock.seconds()), self._attemptPlanned
        )

    def _attemptPlanned(self) -> None:
        """Start the entries whose planned time has come."""
        self._attemptTimer = None
        now = self.clock.seconds()
        upcoming = self._upcoming
        while upcoming and upcoming[0][0] <= now:
            when, entryId = heapq.heappop(upcoming)
            if self._planned.get(entryId) != when:
                continue
            del self._planned[entryId]
            if entryId not in self._troubled:
                self.attemptSoon(entryId)
        self._armAttemptTimer()

    def _start(self, entryId: str) -> None:
        self._planned.pop(entryId, None)
        self._waiting.pop(entryId, None)
        d = defer.Deferred.fromCoroutine(self._process(entryId))

        def failed(reason: Failure) -> None:
            if reason.check(defer.CancelledError):  # type: ignore[no-untyped-call]
                return
            self.log.failure("queue: entry {id} could not be handled", reason, id=entryId)
            self._troubled[entryId] = self.clock.seconds() + self.settings.rescanInterval

        def finished(_: object) -> None:
            self._busy.pop(entryId, None)
            self._finished(entryId)

        d.addErrback(failed).addBoth(finished)
        if not d.called:
            self._busy[entryId] = d

    def _finished(self, entryId: str) -> None:
        """
        An attempt ended: start a waiting entry, and plan this one's next
        attempt from its own metadata (the rest of the queue is unchanged).
        """
        if not self.running:
            return
        if not self._draining:
            # Attempts that end at once start the next ones here, not deeper.
            self._draining = True
            try:
                while self._waiting and not self._busyEnough():
                    waiting = next(iter(self._waiting))
                    del self._waiting[waiting]
                    if waiting not in self._busy:
                        self._start(waiting)
            finally:
                self._draining = False
        if entryId in self._troubled or entryId in self._busy:
            return
        try:
            entry = self.store.load(entryId)
        except (NoSuchEntry, CorruptEntry, OSError):
            return
        upcoming = entry.nextAttempt()
        if not entry.held and upcoming is not None:
            self._plan(entryId, upcoming)

    # One entry

    async def _process(self, entryId: str) -> None:
        try:
            entry = self.store.load(entryId)
        except NoSuchEntry:
            return
        if entry.held:
            return
        now = self.clock.seconds()
        attempt = EntryAttempt(
            self.store, entry, self.settings, self.signer, self.local, self.reactor, self.log
        )
        byDomain = attempt.domains(now)
        attempts = [
            defer.Deferred.fromCoroutine(self._attemptDomain(attempt, domain, recipients))
            for domain, recipients in byDomain.items()
        ]
        results = await defer.DeferredList(attempts, consumeErrors=True)
        if self._stopping:
            # Cut short (or done) as the runner stops: what was recorded
            # stays, the rest is attempted again after the next start.
            return
        recorded = False
        for ok, value in results:
            if ok:
                recorded = recorded or value
            else:
                failure = cast(Failure, value)
                self.log.failure("queue: attempt of {id} failed", failure, id=entryId)
        if byDomain and not recorded:
            # Nothing could be recorded (its message is gone?): do not try
            # again before the next rescan.
            self._troubled[entryId] = now + self.settings.rescanInterval
        try:
            latest = self.store.load(entryId)
        except NoSuchEntry:
            return
        self._queueNotices(latest)

    async def _attemptDomain(
        self, attempt: EntryAttempt, domain: str, recipients: Sequence[Recipient]
    ) -> bool:
        """Attempt C{domain}'s recipients and record how it went; C{False} if nothing was."""
        entry = attempt.entry
        semaphore = self._perDomain.setdefault(
            domain, defer.DeferredSemaphore(self.settings.maxPerDomain)
        )
        await semaphore.acquire()
        try:
            await self._total.acquire()
            try:
                outcomes = await attempt.toDomain(
                    domain, recipients, self.resolver, self.connections
                )
            finally:
                self._total.release()
        finally:
            semaphore.release()
            if not semaphore.waiting and semaphore.tokens == semaphore.limit:
                self._perDomain.pop(domain, None)
        if not outcomes:
            return False
        now = self.clock.seconds()
        try:
            self.store.record(entry.id, outcomes, now)
        except NoSuchEntry:
            self.log.info("queue: {id} was deleted during its attempt", id=entry.id)
            return True
        for address, outcome in outcomes.items():
            self.log.info(
                "queue: {id} to <{rcpt}>: {state} ({why})",
                id=entry.id,
                rcpt=address,
                state=outcome.state.value,
                why=outcome.diagnostic.describe() if outcome.diagnostic else "",
            )
        return True

    # Notices

    def _queueNotices(self, entry: QueueEntry) -> None:
        """Queue the DSNs C{entry} owes and mark them sent."""
        if not entry.sender:
            return
        now = self.clock.seconds()
        schedule = self.settings.schedule
        for notice, recipients in entry.noticesOwed().items():
            self._queueNotice(entry, notice, recipients, now, None)
        if schedule.delayWarningDue(entry.arrival, now):
            candidates = entry.delayNoticeCandidates()
            if candidates:
                until = schedule.expiry(entry.arrival)
                self._queueNotice(entry, Notice.DELAY, candidates, now, until)

    def _queueNotice(
        self,
        entry: QueueEntry,
        notice: Notice,
        recipients: Sequence[Recipient],
        now: float,
        retryUntil: float | None,
    ) -> None:
        try:
            with self.store.openMessage(entry.id) as original:
                report = buildReport(
                    entry, notice, recipients, original, self.settings.heloName, now, retryUntil
                )
        except NoSuchEntry:
            return
        queued = self.store.enqueue(report.envelope(), report.data, now)
        self.attemptSoon(queued.id)
        self.log.info(
            "queue: {id}: {notice} notice to <{sender}> queued as {dsn}",
            id=entry.id,
            notice=notice.value,
            sender=entry.sender,
            dsn=queued.id,
        )
        with contextlib.suppress(NoSuchEntry):
            self.store.markNoticeSent(entry.id, [r.address for r in recipients], notice)
