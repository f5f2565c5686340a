"""
What workers tell each other cheaply: folder changes only where another
worker watches the folder, gathered over a short while; log events as one
formatted line each; new connections one per wakeup, so a burst is shared.
"""

from __future__ import annotations

import io
import socket
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.logger import Logger, LogLevel, formatEvent, globalLogPublisher
from twisted.protocols import amp
from twisted.test.iosim import IOPump, connect, makeFakeClient, makeFakeServer
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tmail.config.schema import AuthSettings
from tmail.workers import channel
from tmail.workers.anvil import Anvil, WorkerChannel
from tmail.workers.loglines import LogLineWriter
from tmail.workers.supervisor import WorkerSupervisor, _Worker, _WorkerProcess
from tmail.workers.worker import (
    ANNOUNCE_DELAY,
    AdoptedListener,
    SupervisorChannel,
    WorkerLink,
)


class _Recorder:
    """A channel that keeps what is sent on it."""

    def __init__(self) -> None:
        self.sent: list[tuple[type[amp.Command], dict[str, Any]]] = []

    def callRemote(self, command: type[amp.Command], **kw: Any) -> None:
        self.sent.append((command, kw))

    def changes(self) -> list[str]:
        return [kw["key"] for command, kw in self.sent if command is channel.FolderChanged]


class AnnouncementTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.channel = _Recorder()
        self.link = WorkerLink(self.channel, {}, self.clock, 0.0)  # type: ignore[arg-type]

    def test_a_burst_of_changes_is_one_notice(self) -> None:
        self.link.watchedElsewhere("INBOX", True)
        self.clock.advance(1)
        self.channel.sent.clear()
        for _ in range(4):
            self.link.announce("INBOX")
            self.clock.advance(ANNOUNCE_DELAY / 5)
        self.clock.advance(1)
        self.assertEqual(self.channel.changes(), ["INBOX"])

    def test_changes_nobody_else_watches_are_not_sent(self) -> None:
        self.link.announce("INBOX")
        self.clock.advance(1)
        self.assertEqual(self.channel.sent, [])

    def test_a_folder_watched_elsewhere_from_now_on_is_announced_once(self) -> None:
        self.link.announce("INBOX")
        self.link.watchedElsewhere("INBOX", True)
        self.clock.advance(1)
        self.assertEqual(self.channel.changes(), ["INBOX"])
        self.link.watchedElsewhere("INBOX", False)
        self.link.announce("INBOX")
        self.clock.advance(1)
        self.assertEqual(self.channel.changes(), ["INBOX"])


class _StoppedClock(Clock):
    """A reactor that is not running (a worker's channel stops it when lost)."""

    running = False


class WatchedElsewhereTests(SynchronousTestCase):
    """A supervisor and two workers' ends of their channels, over AMP in memory."""

    def setUp(self) -> None:
        self.clock = _StoppedClock()
        anvil = Anvil(AuthSettings(), self.clock)
        self.supervisor = WorkerSupervisor("tmail.toml", 2, [], anvil, reactor=self.clock)
        self.served: list[int] = []
        self.heard: list[list[tuple[str, bool]]] = []
        self.pumps: list[IOPump] = []
        self.workers: list[SupervisorChannel] = []
        for index in range(2):
            self.add(anvil, index)

    def add(self, anvil: Anvil, index: int) -> WorkerChannel:
        link = WorkerChannel(anvil, f"worker {index + 1}")
        worker = SupervisorChannel(self.clock)
        heard: list[tuple[str, bool]] = []
        worker.watchedElsewhere = lambda key, watched: heard.append((key, watched))
        worker.serve = lambda: self.served.append(index)
        pump = connect(link, makeFakeServer(link), worker, makeFakeClient(worker), greet=False)
        self.supervisor.channels.append(link)
        link.lost.addCallback(lambda _: self.supervisor._gone(link))
        self.heard.append(heard)
        self.pumps.append(pump)
        self.workers.append(worker)
        self.supervisor._welcome(link)
        self.flush()
        return link

    def flush(self) -> None:
        for _ in range(2):
            for pump in self.pumps:
                pump.flush()

    def watch(self, index: int, watched: bool) -> None:
        self.workers[index].callRemote(channel.Watch, key="INBOX", watched=watched)
        self.flush()

    def test_a_worker_hears_when_another_starts_and_stops_watching(self) -> None:
        self.watch(1, True)
        self.assertEqual(self.heard, [[("INBOX", True)], []])
        self.watch(1, False)
        self.assertEqual(self.heard, [[("INBOX", True), ("INBOX", False)], []])

    def test_a_worker_that_dies_stops_watching(self) -> None:
        self.watch(1, True)
        self.supervisor.channels[1].transport.loseConnection()  # type: ignore[union-attr]
        self.flush()
        self.assertEqual(self.heard[0], [("INBOX", True), ("INBOX", False)])

    def test_a_new_worker_hears_of_folders_watched_already(self) -> None:
        self.watch(0, True)
        self.add(self.supervisor.anvil, 2)
        self.assertEqual(self.heard[2], [("INBOX", True)])


class ReadyTests(WatchedElsewhereTests):
    """Workers accept connections once all of them are set up."""

    def ready(self, index: int) -> None:
        self.workers[index].callRemote(channel.Ready)
        self.flush()

    def test_workers_accept_once_all_are_ready(self) -> None:
        self.supervisor._awaitReady()
        self.ready(0)
        self.assertEqual(self.served, [])
        self.ready(1)
        self.assertEqual(sorted(self.served), [0, 1])

    def test_ready_workers_accept_when_the_others_are_late(self) -> None:
        self.supervisor._awaitReady()
        self.ready(1)
        self.clock.advance(self.supervisor.readyTimeout)
        self.flush()
        self.assertEqual(self.served, [1])
        self.ready(0)
        self.assertEqual(self.served, [1, 0])

    def test_a_restarted_worker_accepts_as_soon_as_it_is_ready(self) -> None:
        self.supervisor._awaitReady()
        self.ready(0)
        self.ready(1)
        self.add(self.supervisor.anvil, 2)
        self.ready(2)
        self.assertEqual(sorted(self.served), [0, 1, 2])


class LogLineTests(SynchronousTestCase):
    def test_a_worker_log_line_reaches_the_log_tagged_with_its_worker(self) -> None:
        out = io.StringIO()
        log = Logger(namespace="tmail.test", observer=LogLineWriter(out))
        log.info("delivered {count} for {user}", count=3, user="alice")
        try:
            1 / 0  # noqa: B018
        except ZeroDivisionError:
            log.failure("broken {what}", what="thing")
        published: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(published.append)
        self.addCleanup(globalLogPublisher.removeObserver, published.append)
        worker = _Worker(1, pid=42)
        supervisor = WorkerSupervisor("tmail.toml", 0, [], Anvil(AuthSettings(), Clock()))
        process = _WorkerProcess(supervisor, worker)
        process.childDataReceived(1, out.getvalue().encode())
        ours = [event for event in published if event.get("log_namespace") == "tmail.test"]
        self.assertEqual(
            [(e["log_system"], e["log_level"]) for e in ours],
            [("worker 1 pid 42", LogLevel.info), ("worker 1 pid 42", LogLevel.critical)],
        )
        self.assertEqual(formatEvent(ours[0]), "delivered 3 for alice")
        self.assertIn("broken thing", formatEvent(ours[1]))
        self.assertIn("ZeroDivisionError", formatEvent(ours[1]))

    def test_output_that_is_no_log_line_is_logged_as_a_warning(self) -> None:
        published: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(published.append)
        self.addCleanup(globalLogPublisher.removeObserver, published.append)
        supervisor = WorkerSupervisor("tmail.toml", 0, [], Anvil(AuthSettings(), Clock()))
        _WorkerProcess(supervisor, _Worker(2, pid=7)).childDataReceived(1, b"{not json\n")
        self.assertTrue(
            any("worker 2 pid 7: {not json" in formatEvent(event) for event in published)
        )


class _Counted(Protocol):
    made: list[Protocol] = []

    def connectionMade(self) -> None:
        self.made.append(self)


class AcceptTests(TestCase):
    def test_a_worker_accepts_one_waiting_connection_per_wakeup(self) -> Deferred[None]:
        listening = socket.socket()
        listening.bind(("127.0.0.1", 0))
        listening.listen(50)
        listening.setblocking(False)
        made: list[Protocol] = []
        factory = Factory.forProtocol(_Counted)
        _Counted.made = made
        listener = AdoptedListener(listening.fileno(), factory, reactor)
        clients = [socket.create_connection(listening.getsockname(), timeout=5) for _ in range(5)]
        for client in clients:
            self.addCleanup(client.close)
        listener.startService()
        listening.close()
        assert listener.port is not None
        listener.port.doRead()  # type: ignore[attr-defined]
        self.assertEqual(len(made), 1)
        listener.port.doRead()  # type: ignore[attr-defined]
        self.assertEqual(len(made), 2)
        for protocol in made:
            protocol.transport.loseConnection()  # type: ignore[union-attr]
        return listener.stopService()  # type: ignore[return-value]


class _Running(Clock):
    running = True


class _CountingOut(io.StringIO):
    flushes = 0

    def flush(self) -> None:
        self.flushes += 1
        super().flush()


class LogLineBatchTests(SynchronousTestCase):
    def test_the_log_lines_of_one_reactor_turn_are_written_at_once(self) -> None:
        out = _CountingOut()
        clock = _Running()
        log = Logger(namespace="tmail.test", observer=LogLineWriter(out, clock))
        for number in range(5):
            log.info("line {number}", number=number)
        self.assertEqual(out.flushes, 0)
        clock.advance(0)
        self.assertEqual(out.flushes, 1)
        self.assertEqual(len(out.getvalue().splitlines()), 5)

    def test_without_a_running_reactor_each_line_is_written_at_once(self) -> None:
        out = _CountingOut()
        log = Logger(namespace="tmail.test", observer=LogLineWriter(out, Clock()))
        log.info("stopping")
        self.assertEqual(out.flushes, 1)
