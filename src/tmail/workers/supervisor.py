"""
The supervising process: opens every listening socket once, starts the
worker processes that serve them, restarts a worker that dies, and keeps
what the workers share (L{tmail.workers.anvil}) and the queue runner.

Each worker is C{python -m tmail.workers} started with
C{IReactorProcess.spawnProcess}; it inherits the listening sockets and one
end of a socket pair (its AMP channel) as file descriptors, and its
standard output carries its log events, one line each
(L{tmail.workers.loglines}), which the supervisor publishes in its own
log with the worker's number and pid as the system.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError, ProcessExitedAlready
from twisted.internet.interfaces import (
    IListeningPort,
    IProcessTransport,
    IReactorCore,
    IReactorProcess,
    IReactorSocket,
    IReactorTime,
)
from twisted.internet.protocol import Factory, ProcessProtocol, ServerFactory
from twisted.logger import Logger, globalLogPublisher
from twisted.python.failure import Failure

from tmail.changes import hub
from tmail.config.endpoints import isTLSShorthand, splitEndpoint
from tmail.workers.anvil import Anvil, WorkerChannel
from tmail.workers.channel import (
    CHANNEL_FD,
    FIRST_LISTENER_FD,
    RefreshFolder,
    Serve,
    WatchedElsewhere,
)
from tmail.workers.loglines import eventFromLine

__all__ = ["CHANNEL_FD", "FIRST_LISTENER_FD", "Listener", "WorkerSupervisor", "canHandOver"]


#: Longest log line read from a worker; longer ones are cut.
MAX_LOG_LINE = 1 << 20


#: The listener kinds a worker can serve from an inherited descriptor.
HANDED_OVER = ("tcp", "tcp6", "unix", "systemd")


def canHandOver(description: str) -> bool:
    """Whether workers can share the listener C{description} (see L{tmail.workers})."""
    return isTLSShorthand(description) or splitEndpoint(description)[0] in HANDED_OVER


@dataclass
class Listener:
    """One listening socket the workers share."""

    name: str
    description: str
    #: What the supervisor listens on (a C{tls:} shorthand listens on plain TCP).
    plain: str
    port: IListeningPort | None = None


class HandedToWorkers(ServerFactory):
    """The supervisor's listening ports do not read: the workers accept."""

    noisy = False

    def buildProtocol(self, addr: Any) -> None:
        return None


class _LogLines:
    """Splits a worker's output into lines (cutting any too long)."""

    def __init__(self, publish: Callable[[bytes], None]) -> None:
        self.publish = publish
        self._buffer = b""

    def dataReceived(self, data: bytes) -> None:
        *lines, self._buffer = (self._buffer + data).split(b"\n")
        for line in lines:
            self.publish(line)
        if len(self._buffer) > MAX_LOG_LINE:
            self.publish(self._buffer[:MAX_LOG_LINE])
            self._buffer = b""


@dataclass
class _Worker:
    index: int
    process: IProcessTransport | None = None
    pid: int = 0
    started: float = 0.0
    failures: int = 0
    ended: Deferred[None] = field(default_factory=Deferred)
    restart: Any = None


class _WorkerProcess(ProcessProtocol):
    def __init__(self, supervisor: WorkerSupervisor, worker: _Worker) -> None:
        self.supervisor = supervisor
        self.worker = worker
        self._out = _LogLines(self._event)
        self._err = _LogLines(self._stderr)

    def _system(self) -> str:
        return f"worker {self.worker.index} pid {self.worker.pid}"

    def _event(self, line: bytes) -> None:
        event = eventFromLine(line, self._system())
        if event is None:
            self._stderr(line)
            return
        globalLogPublisher(event)

    def _stderr(self, line: bytes) -> None:
        if line.strip():
            self.supervisor.log.warn(
                "{system}: {line}", system=self._system(), line=line.decode("utf-8", "replace")
            )

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        (self._out if childFD == 1 else self._err).dataReceived(data)

    def processEnded(self, reason: Failure) -> None:
        self.supervisor._ended(self.worker, reason)


class WorkerSupervisor(MultiService):
    """
    Runs C{count} workers on the listeners, and its child services (the
    queue runner) itself.

    @ivar restartDelay: seconds before a dead worker is started again,
        doubled for each death within L{stableAfter} seconds of its start,
        up to L{maxRestartDelay}.
    @ivar stopTimeout: seconds a stopping worker gets to finish before it
        is killed.
    @ivar exitOnListenFailure: print one line and exit the process when a
        listener cannot listen (as L{tmail.service.TmailService}).
    @ivar readyTimeout: seconds the first workers get to be set up before
        those that are start accepting without the others.
    """

    log = Logger()
    exitOnListenFailure = False
    restartDelay = 0.5
    maxRestartDelay = 30.0
    stableAfter = 30.0
    stopTimeout = 15.0
    readyTimeout = 10.0

    def __init__(
        self,
        configPath: str,
        count: int,
        listeners: list[Listener],
        anvil: Anvil,
        reactor: Any = None,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as installed

            reactor = installed
        self.configPath = configPath
        self.count = count
        self.listeners = listeners
        self.anvil = anvil
        self.reactor = reactor
        self.channels: list[WorkerChannel] = []
        self._workers: list[_Worker] = []
        self._stopping = False
        anvil.changed = self._changed
        anvil.watches = self._watches
        anvil.ready = self._ready
        self._serving = False
        self._readyTimer: Any = None
        super().__init__()  # type: ignore[no-untyped-call]
        self.setName("tmail")  # type: ignore[no-untyped-call]

    # Listening

    def privilegedStartService(self) -> None:
        super().privilegedStartService()  # type: ignore[no-untyped-call]
        for listener in self.listeners:
            if listener.port is not None:
                continue
            try:
                listener.port = self._listen(listener.plain)
            except CannotListenError as e:
                if not self.exitOnListenFailure:
                    raise
                stderr = sys.__stderr__ or sys.stderr
                stderr.write(
                    f"tmail: cannot listen for {listener.name} {listener.description}:"
                    f" {e.socketError}\n"
                )
                stderr.flush()
                sys.exit(1)

    def _listen(self, description: str) -> IListeningPort:
        endpoint = serverFromString(self.reactor, description)
        outcome: list[Any] = []
        endpoint.listen(HandedToWorkers()).addBoth(outcome.append)
        if not outcome:
            raise RuntimeError(f"{description} did not listen at once")
        if isinstance(outcome[0], Failure):
            outcome[0].raiseException()
        port = cast(IListeningPort, outcome[0])
        port.stopReading()  # type: ignore[attr-defined]
        return port

    # Workers

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        self._stopping = False
        hub.announceTo(self._announce)
        self._workers = [_Worker(index) for index in range(1, self.count + 1)]
        cast(IReactorCore, self.reactor).callWhenRunning(self._spawnAll)

    def _spawnAll(self) -> None:
        """
        Start the workers once the reactor runs: twistd starts services
        before it installs its signal handlers, and a supervisor killed by
        an early SIGTERM would leave its workers holding the listeners.
        """
        if self._stopping:
            return
        self._awaitReady()
        for worker in self._workers:
            self._spawn(worker)

    def _awaitReady(self) -> None:
        """Hold the workers' accepting until all are set up, or L{readyTimeout}."""
        self._serving = False
        self._readyTimer = cast(IReactorTime, self.reactor).callLater(
            self.readyTimeout, self._serveAll
        )

    def _ready(self, link: WorkerChannel) -> None:
        """
        A worker is set up: it accepts at once if the workers already do,
        and all of them do once all are set up.
        """
        if self._serving:
            link.callRemote(Serve)  # type: ignore[no-untyped-call]
        elif sum(other.isReady for other in self.channels) >= self.count:
            self._serveAll()

    def _serveAll(self) -> None:
        if self._readyTimer is not None and self._readyTimer.active():
            self._readyTimer.cancel()
        self._readyTimer = None
        self._serving = True
        for link in self.channels:
            if link.isReady:
                link.callRemote(Serve)  # type: ignore[no-untyped-call]

    def _spawn(self, worker: _Worker) -> None:
        worker.restart = None
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        childFDs: dict[int, int | str] = {0: "w", 1: "r", 2: "r", CHANNEL_FD: theirs.fileno()}
        described = []
        for offset, listener in enumerate(self.listeners):
            assert listener.port is not None
            fd = FIRST_LISTENER_FD + offset
            childFDs[fd] = listener.port.fileno()  # type: ignore[attr-defined]
            described.append({"name": listener.name, "description": listener.description, "fd": fd})
        args = [
            sys.executable,
            "-m",
            "tmail.workers",
            "--config",
            self.configPath,
            "--index",
            str(worker.index),
            "--listeners",
            json.dumps(described),
        ]
        try:
            worker.process = cast(IReactorProcess, self.reactor).spawnProcess(
                _WorkerProcess(self, worker),
                sys.executable,
                args,
                env=dict(os.environ),
                childFDs=childFDs,
            )
            worker.pid = worker.process.pid or 0
            worker.started = cast(IReactorTime, self.reactor).seconds()
            link = WorkerChannel(self.anvil, f"worker {worker.index}")
            self.channels.append(link)
            link.lost.addCallback(lambda _: self._gone(link))
            cast(IReactorSocket, self.reactor).adoptStreamConnection(
                ours.fileno(), socket.AF_UNIX, cast(Any, Factory.forProtocol(lambda: link))
            )
            self._welcome(link)
        finally:
            ours.close()
            theirs.close()
        self.log.info(
            "tmail worker {index} started (pid {pid})", index=worker.index, pid=worker.pid
        )

    def _ended(self, worker: _Worker, reason: Failure) -> None:
        worker.process = None
        ended, worker.ended = worker.ended, Deferred()
        ended.callback(None)
        if self._stopping:
            return
        now = cast(IReactorTime, self.reactor).seconds()
        if now - worker.started >= self.stableAfter:
            worker.failures = 0
        delay = min(self.restartDelay * 2**worker.failures, self.maxRestartDelay)
        worker.failures += 1
        self.log.warn(
            "tmail worker {index} (pid {pid}) ended ({why}); restarting in {delay:.1f} s",
            index=worker.index,
            pid=worker.pid,
            why=reason.getErrorMessage(),
            delay=delay,
        )
        worker.restart = cast(IReactorTime, self.reactor).callLater(delay, self._spawn, worker)

    def workerPids(self) -> list[int]:
        """The pids of the workers running now."""
        return [w.pid for w in self._workers if w.process is not None]

    # Cross-worker notices

    def _changed(self, key: str, origin: WorkerChannel | None) -> None:
        for link in list(self.channels):
            if link is not origin and key in link.watching:
                link.callRemote(RefreshFolder, key=key)  # type: ignore[no-untyped-call]
        if origin is not None:
            hub.changedElsewhere(key)

    def _watches(self, key: str) -> None:
        """Tell each worker whether folder C{key} is watched in another."""
        watchers = [link for link in self.channels if key in link.watching]
        for link in list(self.channels):
            elsewhere = any(other is not link for other in watchers)
            if elsewhere != (key in link.watchedElsewhere):
                if elsewhere:
                    link.watchedElsewhere.add(key)
                else:
                    link.watchedElsewhere.discard(key)
                link.callRemote(WatchedElsewhere, key=key, watched=elsewhere)  # type: ignore[no-untyped-call]

    def _welcome(self, link: WorkerChannel) -> None:
        """Tell a new worker the folders the others watch already."""
        for key in {key for other in self.channels if other is not link for key in other.watching}:
            link.watchedElsewhere.add(key)
            link.callRemote(WatchedElsewhere, key=key, watched=True)  # type: ignore[no-untyped-call]

    def _gone(self, link: WorkerChannel) -> None:
        self.channels.remove(link)
        for key in link.watching:
            self._watches(key)

    def _announce(self, key: str) -> None:
        self._changed(key, None)

    # Stopping

    def stopService(self) -> Deferred[Any]:
        self._stopping = True
        hub.stopAnnouncing(self._announce)
        if self._readyTimer is not None and self._readyTimer.active():
            self._readyTimer.cancel()
        self._readyTimer = None
        waits = []
        for worker in self._workers:
            if worker.restart is not None and worker.restart.active():
                worker.restart.cancel()
            if worker.process is not None:
                waits.append(worker.ended)
                kill = cast(IReactorTime, self.reactor).callLater(
                    self.stopTimeout, self._kill, worker
                )
                worker.ended.addBoth(_cancel, kill)
                self._signal(worker, "TERM")

        def closed(_: object) -> Deferred[Any]:
            stops = [
                Deferred.fromCoroutine(_stop(listener.port))
                for listener in self.listeners
                if listener.port is not None
            ]
            for listener in self.listeners:
                listener.port = None
            return DeferredList(stops)

        def children(_: object) -> Any:
            return super(WorkerSupervisor, self).stopService()  # type: ignore[no-untyped-call]

        return DeferredList(waits).addCallback(closed).addCallback(children)

    def _kill(self, worker: _Worker) -> None:
        self.log.warn("tmail worker {index} did not stop in time; killing it", index=worker.index)
        self._signal(worker, "KILL")

    def _signal(self, worker: _Worker, name: str) -> None:
        if worker.process is not None:
            with contextlib.suppress(ProcessExitedAlready):
                worker.process.signalProcess(name)


def _cancel(result: object, call: Any) -> object:
    if call.active():
        call.cancel()
    return result


async def _stop(port: IListeningPort) -> None:
    result = port.stopListening()
    if isinstance(result, Deferred):
        await result
