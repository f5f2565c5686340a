"""
Run the real C{twistd -n tmail} process from a configuration file, the way an
operator does, on free loopback ports.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from support.pki import TestPKI, makePKI

BIN = Path(sys.executable).parent
SERVICES = ("smtp", "submission", "submissions", "imap", "imaps", "pop3", "pop3s")


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


def tmailCommand(
    config: Path, *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the C{tmail} admin CLI against C{config}."""
    return subprocess.run(
        [str(BIN / "tmail"), "--config", str(config), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


@dataclass
class TmailServer:
    """A configured tmail instance in C{folder}; L{start} runs it."""

    folder: Path
    extra: str = ""
    #: Lines added to the [imap] section.
    imapExtra: str = ""
    #: Lines added to the [smtp] section.
    smtpExtra: str = ""
    #: Lines added to the [submission] section.
    submissionExtra: str = ""
    #: The MX's greet_pause; None: its default.  Off unless a test is about
    #: it, as every connection to the MX waits for it.
    greetPause: float | None = 0.0
    backend: str = "virtual"
    logFormat: str = "text"
    pythonPath: tuple[Path, ...] = ()
    ports: dict[str, int] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    pki: TestPKI | None = None

    @property
    def config(self) -> Path:
        return self.folder / "tmail.toml"

    @property
    def log(self) -> Path:
        return self.folder / "twistd.log"

    def write(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.pki = makePKI(self.folder / "pki")
        self.ports = dict(zip(SERVICES, freePorts(len(SERVICES)), strict=True))
        p = self.ports
        self.config.write_text(
            f"""
hostname = "mail.example.test"
data_dir = "data"
log_format = "{self.logFormat}"

[realm]
backend = "{self.backend}"

[tls]
certificate = "pki/cert.pem"
key = "pki/key.pem"

[smtp]
listen = ["tcp:{p["smtp"]}:interface=127.0.0.1"]
{"" if self.greetPause is None else f"greet_pause = {self.greetPause}"}
{self.smtpExtra}

[submission]
listen = ["tcp:{p["submission"]}:interface=127.0.0.1", "tls:{p["submissions"]}:interface=127.0.0.1"]
{self.submissionExtra}

[imap]
listen = ["tcp:{p["imap"]}:interface=127.0.0.1", "tls:{p["imaps"]}:interface=127.0.0.1"]
{self.imapExtra}

[pop3]
listen = ["tcp:{p["pop3"]}:interface=127.0.0.1", "tls:{p["pop3s"]}:interface=127.0.0.1"]
{self.extra}
"""
        )

    def environment(self) -> dict[str, str]:
        """The environment of the server and the CLI: L{pythonPath} on C{PYTHONPATH}."""
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        if self.pythonPath:
            env["PYTHONPATH"] = os.pathsep.join(str(p) for p in self.pythonPath)
        return env

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return tmailCommand(self.config, *args, stdin=stdin, env=self.environment())

    def addUser(self, address: str, password: str) -> None:
        domain = address.split("@", 1)[1]
        listed = self.cli("domain", "list")
        if domain not in listed.stdout.split():
            result = self.cli("domain", "add", domain)
            assert result.returncode == 0, result.stderr
        result = self.cli("user", "add", address, "--password-stdin", stdin=password + "\n")
        assert result.returncode == 0, result.stderr

    def start(self, timeout: float = 30.0) -> None:
        env = self.environment()
        logFile = self.log.open("ab")
        self.process = subprocess.Popen(
            [
                str(BIN / "twistd"),
                "-n",
                "--pidfile=",
                "--logfile",
                "-",
                "tmail",
                "--config",
                str(self.config),
            ],
            stdout=logFile,
            stderr=subprocess.STDOUT,
            cwd=self.folder,
            env=env,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        pending = set(self.ports.values())
        while pending:
            if self.process.poll() is not None:
                raise RuntimeError(f"twistd exited early:\n{self.log.read_text()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"tmail did not listen in time:\n{self.log.read_text()}")
            for port in list(pending):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    pending.discard(port)
                except OSError:
                    pass
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
                return
        self.process = None

    def kill(self) -> None:
        """
        kill -9 the server and its worker processes (its process group), as
        a crash of the machine's service manager would: no worker is left
        holding the listeners when the server is started again.
        """
        if self.process is None:
            return
        group = self.process.pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
        self.process.wait()
        self.process = None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _groupHoldsListeners(group):
            time.sleep(0.02)


def _groupHoldsListeners(group: int) -> bool:
    """
    Whether a process of C{group} still runs a thread.  A process whose
    first thread is already a zombie still holds its sockets while another
    of its threads finishes (one killed in the middle of an fsync finishes
    the fsync first): every thread must be gone.
    """
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == group and _runsAThread(entry):
            return True
    return False


def _runsAThread(process: Path) -> bool:
    try:
        tasks = list((process / "task").iterdir())
    except OSError:
        return False
    for task in tasks:
        try:
            state = (task / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state not in ("Z", "X"):
            return True
    return False
