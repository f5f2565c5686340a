"""
C{[server] workers}: what C{twistd tmail} builds for each setting, and the
state a supervisor keeps for all its workers (connections per client,
failed logins), asked over real AMP channels as the workers ask it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.protocols import amp
from twisted.test.iosim import IOPump, connect, makeFakeClient, makeFakeServer
from twisted.trial.unittest import SynchronousTestCase

from tmail.config.loader import loadSettings
from tmail.config.schema import AuthSettings, Settings
from tmail.connections import Refusal
from tmail.errors import ConfigError
from tmail.queue.runner import QueueRunner
from tmail.service import TmailService, makeServerService, workerCount
from tmail.store.filework import ThreadedFileWork
from tmail.workers.anvil import Anvil, WorkerChannel
from tmail.workers.shared import AdmissionFactory, RemoteThrottle, SharedConnectionCounter
from tmail.workers.supervisor import WorkerSupervisor


def settings(tmp_path: Path, text: str) -> Settings:
    path = tmp_path / "tmail.toml"
    path.write_text('hostname = "mx.example.test"\ndata_dir = "data"\n' + text)
    return loadSettings(path)


IMAP = '[imap]\nlisten = ["tcp:0:interface=127.0.0.1", "tls:0:interface=127.0.0.1"]\n'
TLS = '[tls]\ncertificate = "cert.pem"\nkey = "key.pem"\n'


def test_workers_default_to_one_per_core(tmp_path: Path) -> None:
    loaded = settings(tmp_path, "")
    assert loaded.server.workers == 0
    assert workerCount(loaded) == (os.cpu_count() or 1)


def test_negative_workers_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"server\.workers"):
        settings(tmp_path, "[server]\nworkers = -1\n")


def test_one_worker_is_the_single_process_service(tmp_path: Path) -> None:
    built = makeServerService(settings(tmp_path, "[server]\nworkers = 1\n"))
    assert isinstance(built, TmailService)
    assert built.runner is not None


def test_several_workers_are_a_supervisor_running_the_queue(tmp_path: Path) -> None:
    pytest.importorskip("cryptography")
    from support.pki import makePKI

    makePKI(tmp_path / "pki")
    tls = TLS.replace("cert.pem", "pki/cert.pem").replace("key.pem", "pki/key.pem")
    built = makeServerService(settings(tmp_path, "[server]\nworkers = 3\n" + tls + IMAP))
    assert isinstance(built, WorkerSupervisor)
    assert built.count == 3
    assert [type(child) for child in built] == [ThreadedFileWork, QueueRunner]
    assert [(listener.name, listener.plain) for listener in built.listeners] == [
        ("imap", "tcp:0:interface=127.0.0.1:backlog=511"),
        ("imap", "tcp:0:interface=127.0.0.1:backlog=511"),
    ]


def test_a_listener_workers_cannot_share_keeps_one_process(tmp_path: Path) -> None:
    built = makeServerService(
        settings(
            tmp_path,
            '[server]\nworkers = 2\n[imap]\nlisten = ["haproxy:tcp:0:interface=127.0.0.1"]\n',
        )
    )
    assert isinstance(built, TmailService)


class _Client(amp.AMP):
    pass


class AnvilTests(SynchronousTestCase):
    """Two workers' channels to one anvil, over AMP in memory."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.anvil = Anvil(
            AuthSettings(failure_delay=0, max_failures=3), self.clock, queued=lambda e: None
        )
        self.links: list[tuple[_Client, WorkerChannel, IOPump]] = []
        for name in ("worker 1", "worker 2"):
            server = WorkerChannel(self.anvil, name)
            client = _Client()
            pump = connect(
                server, makeFakeServer(server), client, makeFakeClient(client), greet=False
            )
            self.links.append((client, server, pump))

    def call(self, index: int, command: type[amp.Command], **kw: Any) -> Any:
        client, _, pump = self.links[index]
        results: list[Any] = []
        client.callRemote(command, **kw).addBoth(results.append)
        pump.flush()
        self.clock.advance(0)
        pump.flush()
        [result] = results
        return result

    def counter(self, index: int) -> SharedConnectionCounter:
        return SharedConnectionCounter(self.links[index][0], "imap", limit=2)

    def decide(self, index: int, counter: SharedConnectionCounter) -> Refusal | None:
        results: list[Any] = []
        counter.decide("192.0.2.1").addBoth(results.append)
        self.links[index][2].flush()
        [result] = results
        return result  # type: ignore[no-any-return]

    def test_connection_limit_counts_every_worker(self) -> None:
        one, two = self.counter(0), self.counter(1)
        assert self.decide(0, one) is None
        assert self.decide(1, two) is None
        assert self.decide(0, one) is Refusal.CLIENT
        assert self.decide(1, two) is Refusal.CLIENT

    def test_connections_of_a_dead_worker_are_given_back(self) -> None:
        one, two = self.counter(0), self.counter(1)
        assert self.decide(0, one) is None
        assert self.decide(0, one) is None
        assert self.decide(1, two) is Refusal.CLIENT
        _, _, pump = self.links[0]
        pump.client.transport.loseConnection()
        pump.flush()
        assert self.decide(1, two) is None

    def test_released_connection_makes_room_on_another_worker(self) -> None:
        one, two = self.counter(0), self.counter(1)
        one.expect("192.0.2.1", self.decide(0, one))
        assert one.admit("192.0.2.1") is None
        assert self.decide(0, one) is None
        one.release("192.0.2.1")
        self.links[0][2].flush()
        assert self.decide(1, two) is None

    def begin(self, index: int) -> Any:
        throttle = RemoteThrottle(self.links[index][0], self.clock, 0)
        results: list[Any] = []
        throttle.begin("192.0.2.9").addBoth(results.append)
        self.links[index][2].flush()
        [attempt] = results
        return attempt

    def fail(self, index: int, attempt: Any) -> None:
        done: list[Any] = []
        attempt.failed().addBoth(done.append)
        self.links[index][2].flush()
        self.clock.advance(0)
        self.links[index][2].flush()
        assert done == [None]

    def test_failed_logins_count_for_every_worker(self) -> None:
        self.fail(0, self.begin(0))
        self.fail(1, self.begin(1))
        self.fail(0, self.begin(0))
        assert self.begin(1) is None
        assert self.begin(0) is None

    def test_checks_running_in_a_dead_worker_stop_counting(self) -> None:
        running = [self.begin(0), self.begin(0), self.begin(0)]
        assert all(running)
        assert self.begin(1) is None
        _, _, pump = self.links[0]
        pump.client.transport.loseConnection()
        pump.flush()
        assert self.begin(1) is not None


class _Recorder(Protocol):
    def __init__(self) -> None:
        self.made = False
        self.received = b""

    def connectionMade(self) -> None:
        self.made = True

    def dataReceived(self, data: bytes) -> None:
        self.received += data


class AdmissionTests(SynchronousTestCase):
    def test_connection_is_held_until_the_supervisor_counted_it(self) -> None:
        anvil = Anvil(AuthSettings(), Clock())
        server = WorkerChannel(anvil, "worker 1")
        client = _Client()
        pump = connect(server, makeFakeServer(server), client, makeFakeClient(client), greet=False)
        counter = SharedConnectionCounter(client, "imap", limit=1)
        recorder = _Recorder()
        factory = AdmissionFactory(Factory.forProtocol(lambda: recorder), counter)
        protocol = factory.buildProtocol(None)
        assert protocol is not None
        transport = StringTransport()
        protocol.makeConnection(transport)
        assert not recorder.made
        assert transport.producerState == "paused"
        pump.flush()
        assert recorder.made
        assert transport.producerState == "producing"
        assert counter.admit("192.168.1.1") is None
