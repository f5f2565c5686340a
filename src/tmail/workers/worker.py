"""
A worker process: serves the listening sockets its supervisor opened
(adopted with L{IReactorSocket.adoptStreamPort}) with the protocols
L{tmail.service.makeService} builds, and asks the supervisor, over its
channel, for what all workers share (L{tmail.workers.shared}).  It
announces the folders it changes (L{tmail.changes}) and the queue entries
it commits, and exits when the supervisor goes away.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocolFactory,
    IReactorCore,
    IReactorFromThreads,
    IReactorSocket,
    IReactorTime,
)
from twisted.internet.protocol import Factory
from twisted.logger import (
    FilteringLogObserver,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
)
from twisted.protocols import amp
from twisted.python.failure import Failure

from tmail.changes import hub
from tmail.clientaddress import IPV6_PREFIX_LENGTH
from tmail.config.loader import loadSettings
from tmail.config.schema import Settings
from tmail.errors import ConfigError
from tmail.heap import freezeStartupObjects
from tmail.workers import channel
from tmail.workers.channel import CHANNEL_FD
from tmail.workers.loglines import LogLineWriter
from tmail.workers.shared import Caller, RemoteThrottle, SharedConnectionCounter

__all__ = ["AdoptedListener", "SupervisorChannel", "WorkerLink", "main"]

_log = Logger()

#: Seconds a worker gathers folder changes before it announces them.
ANNOUNCE_DELAY = 0.05


class SupervisorChannel(amp.AMP):
    """A worker's end of its channel; the worker stops when it closes."""

    def __init__(self, reactor: Any) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.reactor = reactor
        self._refreshing: set[str] = set()
        #: Called with a folder key and whether another worker watches it now.
        self.watchedElsewhere: Callable[[str, bool], object] = lambda key, watched: None
        #: Called when the supervisor says to accept connections.
        self.serve: Callable[[], object] = lambda: None

    @channel.Serve.responder
    def _serve(self) -> dict[str, Any]:
        self.serve()
        return {}

    @channel.WatchedElsewhere.responder
    def _watchedElsewhere(self, key: str, watched: bool) -> dict[str, Any]:
        self.watchedElsewhere(key, watched)
        return {}

    @channel.RefreshFolder.responder
    def refreshFolder(self, key: str) -> dict[str, Any]:
        """Look at the folder once for all the notices about it read together."""
        if not self._refreshing:
            cast(IReactorTime, self.reactor).callLater(0, self._refresh)
        self._refreshing.add(key)
        return {}

    def _refresh(self) -> None:
        keys, self._refreshing = self._refreshing, set()
        for key in keys:
            hub.changedElsewhere(key)

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        super().connectionLost(reason)  # type: ignore[no-untyped-call]
        if not _stopping:
            _log.warn("tmail worker: the supervisor is gone; stopping")
        _stop(cast(IReactorCore, self.reactor))


class WorkerLink:
    """
    What L{tmail.service.makeService} needs to build a worker: the
    inherited listening sockets and the channel to the supervisor.

    @ivar listeners: the descriptor of each (name, description) listener.
    """

    def __init__(
        self,
        channel: amp.AMP,
        listeners: dict[tuple[str, str], int],
        clock: IReactorTime,
        failureDelay: float,
        index: int = 0,
    ) -> None:
        self.channel = channel
        self.listeners = listeners
        self.index = index
        self.clock = clock
        self._announcing: set[str] = set()
        self._elsewhere: set[str] = set()
        self.throttle = RemoteThrottle(cast(Caller, channel), clock, failureDelay)

    def counter(
        self, name: str, limit: int, total: int, ipv6Prefix: int = IPV6_PREFIX_LENGTH
    ) -> SharedConnectionCounter:
        """The connection counter of the listeners C{name}, kept by the supervisor."""
        return SharedConnectionCounter(cast(Caller, self.channel), name, limit, total, ipv6Prefix)

    def queued(self, entry: str) -> None:
        """Tell the supervisor's queue runner of a committed entry."""
        self.channel.callRemote(channel.Queued, entry=entry)  # type: ignore[no-untyped-call]

    def announce(self, key: str) -> None:
        """
        Tell the other workers that folder C{key} changed here, if one of
        them watches it: once for all the changes of L{ANNOUNCE_DELAY}
        seconds (a STORE to many messages, a burst of deliveries).
        """
        if key not in self._elsewhere:
            return
        if not self._announcing:
            self.clock.callLater(ANNOUNCE_DELAY, self._announce)
        self._announcing.add(key)

    def watchedElsewhere(self, key: str, watched: bool) -> None:
        """
        Whether another worker watches folder C{key} now.  When it starts
        to, the folder is announced once: a change made here just before
        this was heard was not.
        """
        if watched:
            self._elsewhere.add(key)
            self.announce(key)
        else:
            self._elsewhere.discard(key)

    def watch(self, key: str, watched: bool) -> None:
        """Tell the supervisor whether sessions here watch folder C{key}."""
        self.channel.callRemote(channel.Watch, key=key, watched=watched)  # type: ignore[no-untyped-call]

    def _announce(self) -> None:
        keys, self._announcing = self._announcing, set()
        for key in keys:
            self.channel.callRemote(channel.FolderChanged, key=key)  # type: ignore[no-untyped-call]


class AdoptedListener(Service):
    """
    Serves an inherited listening socket with C{factory}.

    @ivar held: set up but not accepting until L{serve} is called.
    """

    held = False

    def __init__(self, fd: int, factory: IProtocolFactory, reactor: Any = None) -> None:
        if reactor is None:
            from twisted.internet import reactor as installed

            reactor = installed
        self.fd = fd
        self.factory = factory
        self.reactor = reactor
        self.port: IListeningPort | None = None

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        probe = socket.socket(fileno=os.dup(self.fd))
        family = probe.family
        probe.close()
        self.port = cast(IReactorSocket, self.reactor).adoptStreamPort(
            self.fd, family, cast(Any, self.factory)
        )
        _acceptOneAtATime(self.port)
        if self.held:
            cast(Any, self.port).stopReading()

    def serve(self) -> None:
        """Start accepting connections (if held)."""
        if self.held:
            self.held = False
            if self.port is not None:
                cast(Any, self.port).startReading()

    def stopService(self) -> Deferred[None] | None:
        super().stopService()  # type: ignore[no-untyped-call]
        port, self.port = self.port, None
        if port is None:
            return None
        return port.stopListening()


def _acceptOneAtATime(port: IListeningPort) -> None:
    """
    Have C{port} accept one connection each time it is readable rather
    than as many as are waiting (Twisted's ports start at 100 and grow).
    Every worker is woken when the shared socket is readable: a worker
    that took a whole burst of connections would serve them all while the
    others sat idle.  With one each, the workers free to answer share them.
    """
    if not hasattr(port, "numberAccepts"):
        return
    accept = cast(Any, port).doRead

    def doRead() -> object:
        cast(Any, port).numberAccepts = 1
        return accept()

    cast(Any, port).doRead = doRead


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tmail.workers")
    parser.add_argument("--config", required=True)
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--listeners", default="[]")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None, terminated: list[bool] | None = None) -> None:
    """
    Run one worker, as its supervisor starts it.

    @param terminated: not empty when SIGTERM came while the worker started.
    """
    from twisted.internet import reactor

    from tmail.service import makeService

    args = _parse(sys.argv[1:] if argv is None else argv)
    try:
        settings: Settings = loadSettings(Path(args.config))
    except ConfigError as e:
        sys.stderr.write(f"{e}\n")
        sys.exit(2)
    globalLogBeginner.beginLoggingTo(
        [
            FilteringLogObserver(
                LogLineWriter(sys.stdout, reactor),
                [LogLevelFilterPredicate(LogLevel.info)],
            )
        ],
        redirectStandardIO=False,
    )
    supervisor = SupervisorChannel(reactor)
    cast(IReactorSocket, reactor).adoptStreamConnection(
        CHANNEL_FD, socket.AF_UNIX, cast(Any, Factory.forProtocol(lambda: supervisor))
    )
    os.close(CHANNEL_FD)
    listeners = {
        (str(item["name"]), str(item["description"])): int(item["fd"])
        for item in json.loads(args.listeners)
    }
    link = WorkerLink(supervisor, listeners, reactor, settings.auth.failure_delay, index=args.index)
    supervisor.watchedElsewhere = link.watchedElsewhere
    hub.announceTo(link.announce)
    hub.reportWatchesTo(link.watch)
    try:
        top = makeService(settings, worker=link)
    except ConfigError as e:
        sys.stderr.write(f"{e}\n")
        sys.exit(2)
    adopted = [service for service in top if isinstance(service, AdoptedListener)]
    for listener in adopted:
        listener.held = True

    def serve() -> None:
        for listener in adopted:
            listener.serve()

    supervisor.serve = serve
    top.privilegedStartService()
    top.startService()
    freezeStartupObjects()
    supervisor.callRemote(channel.Ready)  # type: ignore[no-untyped-call]
    for fd in set(listeners.values()):
        os.close(fd)
    _log.info("tmail worker {index} serving (pid {pid})", index=args.index, pid=os.getpid())
    core = cast(IReactorCore, reactor)
    core.addSystemEventTrigger("before", "shutdown", top.stopService)
    _stopOnTerm(core)
    if terminated:
        core.callWhenRunning(_stop, core)
    _run(core, args.index)


#: A path prefix: a worker started with it set runs its reactor under
#: cProfile and saves the stats to C{<prefix>-worker<index>-<pid>.prof}
#: when it stops (twistd's C{--profile} covers only the supervisor).
PROFILE_ENV = "TMAIL_WORKER_PROFILE"


def _run(core: IReactorCore, index: int) -> None:
    prefix = os.environ.get(PROFILE_ENV)
    if not prefix:
        core.run(installSignalHandlers=False)  # type: ignore[call-arg]
        return
    import cProfile

    profiler = cProfile.Profile()
    profiler.runcall(lambda: core.run(installSignalHandlers=False))  # type: ignore[call-arg]
    profiler.dump_stats(f"{prefix}-worker{index}-{os.getpid()}.prof")


_stopping = False


def _stop(core: IReactorCore) -> None:
    global _stopping
    if not _stopping and core.running:
        _stopping = True
        core.stop()


def _stopOnTerm(core: IReactorCore) -> None:
    """
    Stop once on SIGTERM (the supervisor's); ignore SIGINT, which a
    terminal sends the whole process group: the supervisor stops the
    workers in order.
    """
    threads = cast(IReactorFromThreads, core)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda number, frame: threads.callFromThread(_stop, core))
