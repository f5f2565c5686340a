"""
Assemble tmail's Twisted services from settings.

Operators get this through C{twistd tmail} (L{makeServerService}: with
C{[server] workers} above 1, a supervisor and worker processes, see
L{tmail.workers}); integrators call L{makeService} (or L{serviceFromConfig})
and attach the result to their own application with C{setServiceParent}:
one process, as before.

Each process imports what it runs: the protocol modules are imported
when a listener needs them, the queue runner's (DNS, DKIM, the SMTP
client) only where the queue runs, so that a supervisor holds no
IMAP server and a worker no queue runner.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from twisted.application.service import IService, MultiService
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IProtocolFactory, IReactorFromThreads, IReactorTime
from twisted.logger import Logger

from tmail.config.endpoints import escapeEndpointValue, isTLSShorthand, parseTLSShorthand
from tmail.config.loader import loadSettings
from tmail.config.schema import BUNDLED_POLICIES, PolicySettings, Settings, SubmissionSettings
from tmail.connections import ConnectionCounter
from tmail.directory.passwdfile import PasswdFileDirectory
from tmail.errors import ConfigError
from tmail.interfaces import ILoginThrottle, IMailRealm, IUserDirectory
from tmail.queue.outbox import Outbox
from tmail.queue.store import QueueStore, queueDirectory
from tmail.realm.build import realmFromSettings
from tmail.realm.maildir import MaildirRealm
from tmail.store.filework import ThreadedFileWork

if TYPE_CHECKING:
    from twisted.cred.portal import Portal
    from twisted.internet.protocol import ServerFactory
    from twisted.internet.ssl import CertificateOptions

    from tmail.config.schema import SMTPSettings
    from tmail.queue.runner import QueueRunner
    from tmail.smtp.policy import ISMTPPolicy
    from tmail.workers.supervisor import WorkerSupervisor
    from tmail.workers.worker import WorkerLink

#: Listen queue of C{tcp:} listeners that do not set C{backlog=}: Twisted's
#: default of 50 drops connections when hundreds of clients connect at once.
DEFAULT_BACKLOG = 511


def withBacklog(description: str) -> str:
    """Give a C{tcp:}/C{tcp6:} endpoint description L{DEFAULT_BACKLOG} unless it has one."""
    kind = description.split(":", 1)[0]
    if kind in ("tcp", "tcp6") and "backlog=" not in description:
        return f"{description}:backlog={DEFAULT_BACKLOG}"
    return description


class TmailService(MultiService):
    """
    All of tmail's listeners, and the queue runner, as one service.

    @ivar settings: the settings it was built from.
    @ivar directory: the user directory.
    @ivar realm: the realm every protocol logs in and delivers through.
    @ivar fileWork: the thread pool the realm's stores do their file work
        in (C{[realm] file_threads}), a child service; C{None} for a realm
        an integrator built, whose stores use their own.
    @ivar portal: the cred portal over C{realm}.
    @ivar outbox: where the SMTP listeners queue mail for other servers.
    @ivar runner: the L{QueueRunner} that sends it on; C{None} in a worker
        process, whose supervisor runs the queue.
    @ivar exitOnListenFailure: print one line and exit the process when a
        listener cannot listen (what C{twistd tmail} wants); integrators get
        the C{CannotListenError} instead.
    """

    log = Logger()
    exitOnListenFailure = False

    def __init__(
        self,
        settings: Settings,
        directory: IUserDirectory,
        realm: IMailRealm,
        portal: Portal,
        outbox: Outbox,
        runner: QueueRunner | None,
        worker: WorkerLink | None = None,
        fileWork: ThreadedFileWork | None = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.settings = settings
        self.directory = directory
        self.realm = realm
        self.fileWork = fileWork
        self.portal = portal
        self.outbox = outbox
        self.runner = runner
        self.worker = worker
        self.setName("tmail")  # type: ignore[no-untyped-call]
        if fileWork is not None:
            fileWork.setName("store file threads")  # type: ignore[no-untyped-call]
            fileWork.setServiceParent(self)  # type: ignore[no-untyped-call]
        if runner is not None:
            runner.setServiceParent(self)  # type: ignore[no-untyped-call]

    def addListener(
        self,
        name: str,
        description: str,
        factory: ServerFactory,
        tls: CertificateOptions | None = None,
    ) -> None:
        """
        Listen on one endpoint description with C{factory}.  A C{tls:}
        shorthand listens on TCP and wraps the factory in TLS with C{tls}
        (the same context STARTTLS uses: TLS 1.2 or newer, the whole chain).
        """
        if self.worker is not None:
            self._adoptListener(name, description, factory, tls)
            return
        from twisted.application.internet import StreamServerEndpointService
        from twisted.internet import reactor
        from twisted.internet.endpoints import serverFromString
        from twisted.protocols.tls import TLSMemoryBIOFactory

        serving: IProtocolFactory = factory
        if isTLSShorthand(description):
            port, interface = parseTLSShorthand(description)
            if tls is None:
                raise ConfigError(str(self.settings.path), name, f"{description} needs [tls]")
            plain = f"tcp:{port}"
            if interface:
                plain += f":interface={escapeEndpointValue(interface)}"
            endpoint = serverFromString(reactor, withBacklog(plain))
            serving = TLSMemoryBIOFactory(tls, False, factory)
        else:
            endpoint = serverFromString(reactor, withBacklog(description))
        service = StreamServerEndpointService(endpoint, serving)
        service._raiseSynchronously = True
        service.setName(f"{name} {description}")
        service.setServiceParent(self)

    def _adoptListener(
        self,
        name: str,
        description: str,
        factory: ServerFactory,
        tls: CertificateOptions | None,
    ) -> None:
        """Serve the socket the supervisor opened for C{description}, counted by it."""
        from twisted.protocols.tls import TLSMemoryBIOFactory

        from tmail.workers.shared import AdmissionFactory, SharedConnectionCounter
        from tmail.workers.worker import AdoptedListener

        assert self.worker is not None
        counter = getattr(factory, "connections", None)
        serving: IProtocolFactory = factory
        if isTLSShorthand(description):
            if tls is None:
                raise ConfigError(str(self.settings.path), name, f"{description} needs [tls]")
            serving = TLSMemoryBIOFactory(tls, False, factory)
        if isinstance(counter, ConnectionCounter):
            if not isinstance(counter, SharedConnectionCounter):
                counter = self.worker.counter(
                    name, counter.limit, counter.total, counter.ipv6Prefix
                )
                cast(Any, factory).connections = counter
            serving = AdmissionFactory(serving, counter)
        service = AdoptedListener(self.worker.listeners[name, description], serving)
        service.setName(f"{name} {description}")  # type: ignore[no-untyped-call]
        service.setServiceParent(self)  # type: ignore[no-untyped-call]

    def privilegedStartService(self) -> None:
        for child in self:
            try:
                child.privilegedStartService()
            except CannotListenError as e:
                if not self.exitOnListenFailure:
                    raise
                # twistd has redirected sys.stderr into the log by now.
                stderr = sys.__stderr__ or sys.stderr
                stderr.write(f"tmail: cannot listen for {child.name}: {e.socketError}\n")
                stderr.flush()
                sys.exit(1)

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        from twisted.application.internet import StreamServerEndpointService

        listening: tuple[type, ...] = (StreamServerEndpointService,)
        if self.worker is not None:
            from tmail.workers.worker import AdoptedListener

            listening += (AdoptedListener,)
        self.outbox.listen(self._queued)
        for child in self:
            name = cast(IService, child).name
            if isinstance(child, listening):
                self.log.info("tmail listening: {name}", name=name)
            else:
                self.log.info("tmail started: {name}", name=name)

    def _queued(self, entryId: str) -> None:
        if self.runner is not None:
            self.runner.attemptSoon(entryId)
        elif self.worker is not None:
            self.worker.queued(entryId)

    def stopService(self) -> Any:
        self.outbox.unlisten(self._queued)
        return super().stopService()  # type: ignore[no-untyped-call]


def buildPolicies(
    settings: Settings, smtp: SMTPSettings, clock: IReactorTime, built: dict[str, ISMTPPolicy]
) -> list[ISMTPPolicy]:
    """
    The policies C{smtp.policies} names, in order; each name is built once
    (kept in C{built}), so listeners naming the same policy share it.

    @raise ConfigError: naming the C{[policy.<name>]} key at fault.
    """
    from tmail.smtp.policy import PolicyError, buildPolicy

    policies = []
    for name in smtp.policies:
        if name not in built:
            spec = settings.policy.get(name)
            if spec is None and name in BUNDLED_POLICIES:
                spec = PolicySettings(name, BUNDLED_POLICIES[name])
            if spec is None:
                raise ConfigError(str(settings.path), f"policy.{name}", "no such policy")
            try:
                built[name] = buildPolicy(spec, clock)
            except PolicyError as e:
                key = f"policy.{name}" + (f".{e.key}" if e.key else "")
                raise ConfigError(str(settings.path), key, e.problem) from None
        policies.append(built[name])
    return policies


def checkPolicies(settings: Settings) -> None:
    """
    Build every policy the listeners name, with a clock of their own, to
    check their settings; a process that serves builds its own once more.

    @raise ConfigError: naming the key at fault.
    """
    from twisted.internet.task import Clock

    built: dict[str, ISMTPPolicy] = {}
    for smtp in (settings.smtp, settings.submission, settings.lmtp):
        if smtp is not None:
            buildPolicies(settings, smtp, Clock(), built)


def checkConfig(path: Path) -> Settings:
    """
    What C{tmail check} checks: the file loads, and every policy it names
    can be built from its settings.

    @raise ConfigError: one line naming the file, the key and the problem.
    """
    settings = loadSettings(path)
    checkPolicies(settings)
    return settings


def makeService(
    settings: Settings,
    realm: IMailRealm | None = None,
    clock: IReactorTime | None = None,
    worker: WorkerLink | None = None,
) -> TmailService:
    """
    Build every service the settings turn on.

    @param realm: a realm to use instead of the configured backend (for
        integrators who build their own).
    @param worker: build a worker process's services: the listeners on the
        sockets its supervisor opened, the throttle and connection limits
        its supervisor keeps, no queue runner (L{tmail.workers}).
    """
    from twisted.cred.portal import Portal
    from twisted.internet import reactor

    from tmail.auth.checker import DirectoryChecker
    from tmail.auth.throttle import AuthThrottle
    from tmail.auth.workers import CheckerThreads

    if clock is None:
        clock = reactor
    directory: IUserDirectory = PasswdFileDirectory(settings.data_dir)
    fileWork = None
    if realm is None:
        fileWork = storeFileWork(settings)
        realm = realmFromSettings(settings, directory, fileWork)
    else:
        directory = realm.directory
    defaultDomain = realm.domain if isinstance(realm, MaildirRealm) else None
    checkerThreads = CheckerThreads(cast(IReactorFromThreads, reactor), settings.auth.check_threads)
    portal = Portal(realm, [DirectoryChecker(directory, defaultDomain, checkerThreads.run)])
    prefix = settings.ipv6_prefix_length
    throttle: ILoginThrottle = (
        AuthThrottle(settings.auth, clock, prefix) if worker is None else worker.throttle
    )
    tls = None
    if settings.tls:
        from tmail.tls import serverContextFactory

        tls = serverContextFactory(settings.tls)
    queue = QueueStore(queueDirectory(settings.data_dir))
    outbox = Outbox(queue)
    runner = None if worker is not None else _queueRunner(settings, directory, realm, outbox)
    top = TmailService(settings, directory, realm, portal, outbox, runner, worker, fileWork)
    checkerThreads.setName("password check threads")  # type: ignore[no-untyped-call]
    checkerThreads.setServiceParent(top)  # type: ignore[no-untyped-call]

    factories: list[tuple[str, tuple[str, ...], Any]] = []
    policies: dict[str, ISMTPPolicy] = {}
    for name, smtp, submission in (
        ("smtp", settings.smtp, False),
        ("submission", settings.submission, True),
    ):
        if smtp is not None:
            from tmail.smtp.factory import SMTPFactory

            factory = SMTPFactory(
                realm,
                smtp,
                hostname=settings.hostname,
                submission=submission,
                portal=portal,
                tlsContextFactory=tls,
                throttle=throttle,
                overQuota=settings.quota.over_quota,
                policies=buildPolicies(settings, smtp, clock, policies),
                senderCheck=(
                    smtp.sender_check if isinstance(smtp, SubmissionSettings) else "envelope+header"
                ),
                outbox=outbox,
                clock=clock,
                ipv6Prefix=prefix,
            )
            factories.append((name, smtp.listen, factory))
    if settings.imap is not None:
        from tmail.imap.factory import IMAPFactory
        from tmail.imap.largemessages import MessageThreads

        messageThreads = MessageThreads(
            cast(IReactorFromThreads, reactor), settings.imap.message_threads
        )
        messageThreads.setName("large message threads")  # type: ignore[no-untyped-call]
        messageThreads.setServiceParent(top)  # type: ignore[no-untyped-call]
        imapFactory = IMAPFactory(
            portal,
            settings.imap,
            tlsContextFactory=tls,
            throttle=throttle,
            hostname=settings.hostname,
            ipv6Prefix=prefix,
            messageThreads=messageThreads.run,
        )
        factories.append(("imap", settings.imap.listen, imapFactory))
    if settings.pop3 is not None:
        from tmail.pop3.factory import POP3Factory

        popFactory = POP3Factory(
            portal,
            settings.pop3,
            tlsContextFactory=tls,
            throttle=throttle,
            hostname=settings.hostname,
            ipv6Prefix=prefix,
        )
        factories.append(("pop3", settings.pop3.listen, popFactory))
    if settings.lmtp is not None:
        from tmail.smtp.lmtp import LMTPFactory

        lmtpFactory = LMTPFactory(
            realm,
            settings.lmtp,
            hostname=settings.hostname,
            tlsContextFactory=tls,
            throttle=throttle if isinstance(throttle, AuthThrottle) else None,
            overQuota=settings.quota.over_quota,
            policies=buildPolicies(settings, settings.lmtp, clock, policies),
            outbox=outbox,
            clock=clock,
            ipv6Prefix=prefix,
        )
        factories.append(("lmtp", settings.lmtp.listen, lmtpFactory))
    for name, listeners, factory in factories:
        for description in listeners:
            top.addListener(name, description, factory, tls)
    return top


def storeFileWork(settings: Settings) -> ThreadedFileWork:
    """The thread pool of one process's stores, C{[realm] file_threads} threads."""
    from twisted.internet import reactor

    return ThreadedFileWork(cast(IReactorFromThreads, reactor), settings.realm.file_threads)


def _queueRunner(
    settings: Settings, directory: IUserDirectory, realm: IMailRealm, outbox: Outbox
) -> QueueRunner:
    from tmail.queue.dkim import DKIMSigner
    from tmail.queue.local import LocalTransport
    from tmail.queue.relaysettings import RelaySettings
    from tmail.queue.runner import QueueRunner

    return QueueRunner(
        outbox.store,
        RelaySettings.fromConfig(settings),
        signer=DKIMSigner.fromSettings(settings, directory),
        local=LocalTransport(realm, settings.hostname, outbox),
    )


def listenersOf(settings: Settings) -> list[tuple[str, str]]:
    """Each listener the settings turn on: its service's name and its description."""
    sections = (
        ("smtp", settings.smtp),
        ("submission", settings.submission),
        ("imap", settings.imap),
        ("pop3", settings.pop3),
        ("lmtp", settings.lmtp),
    )
    return [
        (name, description)
        for name, section in sections
        if section is not None
        for description in section.listen
    ]


def workerCount(settings: Settings) -> int:
    """The worker processes C{[server] workers} asks for (0: one per core)."""
    return settings.server.workers or os.cpu_count() or 1


def makeSupervisor(settings: Settings, count: int) -> WorkerSupervisor:
    """
    Build the supervising process of C{count} workers: the listening
    sockets, the state all workers share, the queue runner.
    """
    from twisted.internet import reactor

    from tmail.workers.anvil import Anvil
    from tmail.workers.supervisor import Listener, WorkerSupervisor

    directory: IUserDirectory = PasswdFileDirectory(settings.data_dir)
    fileWork = storeFileWork(settings)
    realm = realmFromSettings(settings, directory, fileWork)
    outbox = Outbox(QueueStore(queueDirectory(settings.data_dir)))
    runner = _queueRunner(settings, directory, realm, outbox)
    anvil = Anvil(settings.auth, reactor, settings.ipv6_prefix_length, queued=runner.attemptSoon)
    listeners = []
    for name, description in listenersOf(settings):
        if isTLSShorthand(description):
            port, interface = parseTLSShorthand(description)
            plain = f"tcp:{port}"
            if interface:
                plain += f":interface={escapeEndpointValue(interface)}"
        else:
            plain = description
        listeners.append(Listener(name, description, withBacklog(plain)))
    supervisor = WorkerSupervisor(str(settings.path), count, listeners, anvil)
    fileWork.setName("store file threads")  # type: ignore[no-untyped-call]
    fileWork.setServiceParent(supervisor)  # type: ignore[no-untyped-call]
    runner.setServiceParent(supervisor)  # type: ignore[no-untyped-call]
    outbox.listen(runner.attemptSoon)
    return supervisor


def makeServerService(settings: Settings) -> IService:
    """
    What C{twistd tmail} runs: L{makeService}'s one process when
    C{[server] workers} is 1 (or a listener cannot be shared), else a
    supervisor of that many worker processes.
    """
    from tmail.workers.supervisor import canHandOver

    count = workerCount(settings)
    if count > 1:
        # The workers build the policies; a mistake is told here, once.
        checkPolicies(settings)
        unshared = [d for _, d in listenersOf(settings) if not canHandOver(d)]
        if unshared:
            TmailService.log.warn(
                "tmail: one process only: {listener} cannot be shared by workers",
                listener=unshared[0],
            )
            count = 1
    if count == 1:
        return makeService(settings)
    return makeSupervisor(settings, count)


def serviceFromConfig(path: Path | str) -> TmailService:
    """Load a configuration file and build its services (raises ConfigError)."""
    return makeService(loadSettings(Path(path)))
