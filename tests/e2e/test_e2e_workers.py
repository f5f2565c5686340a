"""
C{[server] workers = 2} through the real C{twistd -n tmail}: both worker
processes serve the listeners the supervisor opened; a worker killed with
SIGKILL is started again while the other keeps answering; the failed-login
limit and the per-client connection limit hold for both together; a
delivery through one worker wakes an IDLE session held by the other at
once; the queue runner sends a message once; C{workers = 1} is one process.

Which worker serves a connection is found from C{/proc}: the worker whose
descriptors include the server's end of it.
"""

from __future__ import annotations

import imaplib
import os
import re
import signal
import smtplib
import socket
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial.unittest import TestCase

from support.dns import a, mx, startDNS
from support.net import eventually, inThread, readLine
from support.process import TmailServer
from support.sink import SinkFactory, startSink

pytestmark = pytest.mark.skipif(
    not os.path.exists("/proc/net/tcp"), reason="finding a connection's worker needs Linux /proc"
)

ALICE = "alice@example.test"
PASSWORD = "alice-password"


#: Connections opened at once to reach a given worker.
BURST = 4
TOO_MANY = b"* BYE Too many connections from your address\r\n"


def workerPids(server: TmailServer) -> set[int]:
    """The supervisor's child processes."""
    assert server.process is not None
    pid = server.process.pid
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except FileNotFoundError:
        return set()
    return {int(child) for child in children}


def running(pid: int) -> bool:
    """Whether process C{pid} runs (neither gone nor a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _inode(serverPort: int, clientPort: int) -> str | None:
    local = f"0100007F:{serverPort:04X}"
    remote = f"0100007F:{clientPort:04X}"
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == local and fields[2] == remote:
            return fields[9]
    return None


def workerOf(server: TmailServer, sock: socket.socket) -> int:
    """The pid of the worker serving the connection C{sock} (once it has answered)."""
    serverPort = sock.getpeername()[1]
    clientPort = sock.getsockname()[1]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        inode = _inode(serverPort, clientPort)
        if inode is not None:
            target = f"socket:[{inode}]"
            for pid in workerPids(server):
                try:
                    for fd in os.listdir(f"/proc/{pid}/fd"):
                        try:
                            if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                                return pid
                        except OSError:
                            continue
                except OSError:
                    continue
        time.sleep(0.02)
    raise AssertionError("no worker holds the connection")


def servingWorkers(server: TmailServer) -> set[int]:
    """The two workers' pids, once both serve (each answered a connection)."""
    pids: set[int] = set()
    deadline = time.monotonic() + 30
    while len(pids) < 2 and time.monotonic() < deadline:
        pids = workerPids(server)
        time.sleep(0.05)
    assert len(pids) == 2, pids
    for pid in pids:
        connectedTo(server, pid).close()
    return pids


def onEachWorker(server: TmailServer, tries: int = 60) -> dict[int, socket.socket]:
    """
    One greeted IMAP connection on each worker.  Two are opened at once, as
    under load (see L{connectedTo}), and tried again until the workers took
    one each; a too-many-connections BYE (a closed connection not yet
    released: a loaded machine may delay it) is tried again too.
    """
    for _ in range(tries):
        socks = [
            socket.create_connection(("127.0.0.1", server.ports["imap"]), timeout=10)
            for _ in range(2)
        ]
        greetings = [readLine(sock) for sock in socks]
        for greeting in greetings:
            assert greeting.startswith(b"* OK") or greeting == TOO_MANY, greeting
        if all(greeting.startswith(b"* OK") for greeting in greetings):
            found = {workerOf(server, sock): sock for sock in socks}
            if len(found) == 2:
                return found
        for sock in socks:
            sock.close()
        time.sleep(0.1)
    raise AssertionError("two connections at once never reached both workers")


def connectedTo(server: TmailServer, pid: int, tries: int = 60) -> socket.socket:
    """
    An IMAP connection served by the worker C{pid}.  Connections come a few
    at once, as under load: which worker takes a lone connection is the
    kernel's choice and may be the same one every time, while the workers
    share a burst (each accepts one per wakeup).
    """
    for _ in range(tries):
        socks = [
            socket.create_connection(("127.0.0.1", server.ports["imap"]), timeout=10)
            for _ in range(BURST)
        ]
        chosen = None
        for sock in socks:
            assert readLine(sock).startswith(b"* OK"), "no greeting"
            if chosen is None and workerOf(server, sock) == pid:
                chosen = sock
            else:
                sock.close()
        if chosen is not None:
            return chosen
        time.sleep(0.02)
    raise AssertionError(f"no connection reached worker {pid}")


def imapGreeted(server: TmailServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.ports["imap"]), timeout=10)
    assert readLine(sock).startswith(b"* OK"), "no greeting"
    return sock


def command(sock: socket.socket, tag: bytes, line: bytes) -> bytes:
    """Send a tagged command; return everything up to its tagged reply."""
    sock.sendall(tag + b" " + line + b"\r\n")
    received = b""
    while True:
        reply = readLine(sock)
        if not reply:
            return received
        received += reply
        if reply.startswith(tag + b" "):
            return received


def workersServer(folder: Path, extra: str = "", **kwargs: Any) -> TmailServer:
    server = TmailServer(folder, extra="[server]\nworkers = 2\n" + extra, **kwargs)
    server.write()
    server.addUser(ALICE, PASSWORD)
    return server


def started(test: TestCase, server: TmailServer) -> TmailServer:
    server.start()
    test.addCleanup(server.stop)
    deadline = time.monotonic() + 30
    while (
        len(set(re.findall(r"tmail worker \d serving \(pid (\d+)\)", server.log.read_text()))) < 2
    ):
        assert time.monotonic() < deadline, server.log.read_text()
        time.sleep(0.05)
    return server


class WorkersTests(TestCase):
    timeout = 120

    def server(self, extra: str = "", **kwargs: Any) -> TmailServer:
        return started(self, workersServer(Path(self.mktemp()).resolve(), extra, **kwargs))

    def test_both_workers_serve_and_log_with_their_pids(self) -> None:
        server = self.server()
        connections = onEachWorker(server)
        for pid, sock in connections.items():
            self.assertIn(b"OK", command(sock, b"a", f"LOGIN {ALICE} {PASSWORD}".encode()))
            sock.close()
            logged = re.compile(rf"\[worker \d pid {pid}\] IMAP login")
            deadline = time.monotonic() + 10
            while not logged.search(server.log.read_text()):
                self.assertLess(time.monotonic(), deadline, f"no {logged.pattern} in the log")
                time.sleep(0.05)

    def test_killed_worker_is_restarted_and_listeners_keep_answering(self) -> None:
        server = self.server()
        before = workerPids(server)
        victim = min(before)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 15
        while True:
            with imapGreeted(server):
                pass
            now = workerPids(server)
            if len(now) == 2 and victim not in now:
                break
            self.assertLess(time.monotonic(), deadline, server.log.read_text())
            time.sleep(0.05)
        self.assertIn("restarting in", server.log.read_text())
        connections = onEachWorker(server)
        self.assertEqual(set(connections), now)
        for sock in connections.values():
            sock.close()

    def test_stopping_the_supervisor_stops_the_workers_first(self) -> None:
        server = self.server()
        pids = workerPids(server)
        server.stop()
        self.assertFalse([pid for pid in pids if running(pid)])
        log = server.log.read_text()
        for pid in pids:
            self.assertRegex(log, rf"\[worker \d pid {pid}\] Main loop terminated")

    def test_workers_exit_when_the_supervisor_is_killed(self) -> None:
        server = self.server()
        pids = workerPids(server)
        assert server.process is not None
        server.process.kill()
        server.process.wait()
        server.process = None
        deadline = time.monotonic() + 15
        while any(running(pid) for pid in pids):
            self.assertLess(time.monotonic(), deadline, "a worker outlived its supervisor")
            time.sleep(0.05)

    def test_failed_logins_on_both_workers_hit_one_limit(self) -> None:
        server = self.server("[auth]\nmax_failures = 3\nfailure_delay = 0\nmax_failure_delay = 1\n")
        first, second = sorted(servingWorkers(server))
        for pid in (first, second, first):
            with connectedTo(server, pid) as sock:
                reply = command(sock, b"a", f"LOGIN {ALICE} wrong-password".encode())
                self.assertIn(b"a NO", reply)
        # The second worker saw one failure of three: counting alone, it would let this in.
        with connectedTo(server, second) as sock:
            reply = command(sock, b"b", f"LOGIN {ALICE} {PASSWORD}".encode())
        self.assertNotIn(b"b OK", reply)

    def test_connection_limit_per_client_holds_across_workers(self) -> None:
        server = self.server(imapExtra="max_connections_per_address = 2")
        held = onEachWorker(server)
        try:
            for _ in range(4):
                with socket.create_connection(
                    ("127.0.0.1", server.ports["imap"]), timeout=10
                ) as extra:
                    self.assertEqual(
                        readLine(extra), b"* BYE Too many connections from your address\r\n"
                    )
        finally:
            for sock in held.values():
                sock.close()

    def test_delivery_through_one_worker_wakes_idle_on_the_other(self) -> None:
        server = self.server()
        idler = imapGreeted(server)
        idlerPid = workerOf(server, idler)
        self.assertIn(b"a OK", command(idler, b"a", f"LOGIN {ALICE} {PASSWORD}".encode()))
        self.assertIn(b"b OK", command(idler, b"b", b"SELECT INBOX"))
        idler.sendall(b"c IDLE\r\n")
        self.assertTrue(readLine(idler).startswith(b"+"))
        for _ in range(40):
            client = smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10)
            assert client.sock is not None
            if workerOf(server, client.sock) != idlerPid:
                break
            client.quit()
        else:
            self.fail("every SMTP connection reached the idling worker")
        with client:
            client.sendmail("bob@elsewhere.test", [ALICE], b"Subject: hi\r\n\r\nhello\r\n")
        sent = time.monotonic()
        idler.settimeout(10)
        line = readLine(idler)
        waited = time.monotonic() - sent
        self.assertEqual(line, b"* 1 EXISTS\r\n")
        # Without the notice the other worker's IDLE poll finds it after 5 s.
        self.assertLess(waited, 2.0)
        idler.close()


ZONE = {
    "elsewhere.example": [mx(10, "mx.elsewhere.example")],
    "mx.elsewhere.example": [a("127.0.0.1")],
}


class QueueOnceTests(TestCase):
    timeout = 90

    @inlineCallbacks
    def test_queued_message_is_sent_once(self) -> Generator[Deferred[Any], Any, None]:
        dns = yield startDNS(self, ZONE)
        sink = SinkFactory()
        sinkPort = yield startSink(self, sink)
        server = workersServer(
            Path(self.mktemp()).resolve(),
            f'[relay]\nnameservers = ["127.0.0.1:{dns.port}"]\nport = {sinkPort}\n',
        )
        yield inThread(started, self, server)

        def submit() -> None:
            assert server.pki is not None
            with smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=10) as client:
                client.starttls(context=server.pki.clientContext())
                client.login(ALICE, PASSWORD)
                client.sendmail(
                    ALICE, ["friend@elsewhere.example"], b"Subject: once\r\n\r\nonce\r\n"
                )

        submitted = time.monotonic()
        yield inThread(submit)
        yield eventually(lambda: len(sink.messages) >= 1, 20.0, server.log.read_text)
        # Attempted at once, not at the runner's next look at the queue.
        self.assertLess(time.monotonic() - submitted, 5.0)
        yield inThread(time.sleep, 2.0)
        self.assertEqual(len(sink.messages), 1)


class OneWorkerTests(TestCase):
    timeout = 60

    def test_one_worker_is_one_process(self) -> None:
        server = TmailServer(Path(self.mktemp()).resolve(), extra="[server]\nworkers = 1\n")
        server.write()
        server.addUser(ALICE, PASSWORD)
        server.start()
        self.addCleanup(server.stop)
        client = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=10)
        client.login(ALICE, PASSWORD)
        client.logout()
        self.assertEqual(workerPids(server), set())
        self.assertNotRegex(server.log.read_text(), r"\[worker \d")
