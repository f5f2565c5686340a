"""Server processes under measurement: start, wait for ports, CPU and memory, stop."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil


def freePorts(count: int) -> list[int]:
    """Ports that were free a moment ago on 127.0.0.1."""
    sockets = []
    for _ in range(count):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def waitForPorts(
    ports: Sequence[int],
    process: subprocess.Popen[bytes] | None,
    log: Path | None,
    timeout: float = 60.0,
) -> None:
    """Block until something accepts on every port (or fail with the log)."""
    deadline = time.monotonic() + timeout
    pending = set(ports)
    while pending:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{_tail(log)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"server did not listen on {sorted(pending)}:\n{_tail(log)}")
        for port in list(pending):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                pending.discard(port)
            except OSError:
                time.sleep(0.02)


def _tail(log: Path | None) -> str:
    if log is None or not log.exists():
        return "(no log)"
    return "\n".join(log.read_text(errors="replace").splitlines()[-30:])


@dataclass
class Running:
    """
    A started server: where it listens, and the processes whose CPU time and
    memory count as the server's (a daemon's whole process tree).

    @ivar ports: protocol name (C{smtp}, C{imap}, C{pop3}) -> port.
    @ivar maildirs: user address -> the Maildir its INBOX mail lands in.
    @ivar relaunch: starts the server process again on the same data and
        ports, for scenarios that time a cold start (see L{restart}).
    """

    name: str
    ports: dict[str, int]
    maildirs: dict[str, Path] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    rootPid: int | None = None
    stopCommand: list[str] | None = None
    log: Path | None = None
    relaunch: Callable[[], subprocess.Popen[bytes]] | None = None

    def processes(self) -> list[psutil.Process]:
        """The server's processes right now."""
        pid = self.rootPid or (self.process.pid if self.process else None)
        if pid is None:
            return []
        try:
            root = psutil.Process(pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def cpuSeconds(self) -> float:
        """User + system CPU seconds used so far by the server's processes."""
        total = 0.0
        for proc in self.processes():
            try:
                times = proc.cpu_times()
                total += times.user + times.system
                total += getattr(times, "children_user", 0.0)
                total += getattr(times, "children_system", 0.0)
            except psutil.NoSuchProcess:
                pass
        return total

    def rssBytes(self) -> int:
        """Resident memory of the server's processes."""
        total = 0
        for proc in self.processes():
            with contextlib.suppress(psutil.NoSuchProcess):
                total += proc.memory_info().rss
        return total

    def pssBytes(self) -> int:
        """
        Proportional memory of the server's processes: each shared page
        counted once in all, split between the processes sharing it (summed
        RSS counts shared libraries once per process, which overstates any
        server of several processes).
        """
        total = 0
        for proc in self.processes():
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                total += proc.memory_full_info().pss
        return total

    def restart(self) -> None:
        """Stop the server, start it again with L{relaunch} and wait for its ports."""
        if self.relaunch is None:
            raise RuntimeError(f"{self.name} cannot be restarted")
        self.stop()
        self.process = self.relaunch()
        waitForPorts(list(self.ports.values()), self.process, self.log)

    def stop(self) -> None:
        if self.stopCommand:
            subprocess.run(self.stopCommand, capture_output=True, timeout=60, check=False)
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.rootPid and not self.process:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.rootPid, signal.SIGTERM)


def spawn(
    command: list[str], log: Path, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start a server in the background, its output to C{log}."""
    log.parent.mkdir(parents=True, exist_ok=True)
    out = log.open("ab")
    return subprocess.Popen(
        command,
        stdout=out,
        stderr=subprocess.STDOUT,
        cwd=cwd,
        env=dict(os.environ, **(env or {})),
        start_new_session=True,
    )
