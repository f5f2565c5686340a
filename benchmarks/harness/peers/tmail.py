"""
tmail itself, run as operators run it: C{twistd -n tmail --config ...},
with its default C{[server] workers} (one per core).  C{tmail-1} is the
same with C{workers = 1} (one process), to see what the workers bring; it
runs only when C{--peers} names it.

With C{BENCH_TMAIL_PROFILE} set to a directory, twistd runs the reactor
under cProfile and saves the stats there when the server stops, one file per
start (C{<scenario>-<n>.prof}), and each worker process its own
(C{<scenario>-<n>-worker<i>-<pid>.prof}, L{tmail.workers.worker}); the
profiler costs time, so a profiled run's figures are not comparable with
others.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
from pathlib import Path

from harness.model import PASSWORD
from harness.processes import Running, freePorts, spawn, waitForPorts

SECTIONS = {"smtp": "smtp", "imap": "imap", "pop3": "pop3"}

#: Where profiles go, if anywhere (see the module docstring).
PROFILE_ENV = "BENCH_TMAIL_PROFILE"
#: What tells tmail's worker processes to profile themselves
#: (C{tmail.workers.worker.PROFILE_ENV}).
WORKER_PROFILE_ENV = "TMAIL_WORKER_PROFILE"
_starts = itertools.count(1)


class TmailPeer:
    protocols = frozenset({"smtp", "imap", "pop3"})

    def __init__(self, name: str = "tmail", workers: int | None = None) -> None:
        self.name = name
        #: C{[server] workers}; C{None}: tmail's default.
        self.workers = workers
        #: Left out unless C{--peers} names it.
        self.optional = workers is not None

    def missing(self) -> str | None:
        try:
            import tmail  # noqa: F401
        except ImportError:
            return "not installed"
        return None

    def start(self, workdir: Path, userList: list[str], protocols: frozenset[str]) -> Running:
        from tmail.directory.passwdfile import PasswdFileDirectory
        from tmail.directory.passwords import cheapHasher

        if workdir.exists():
            shutil.rmtree(workdir)
        workdir.mkdir(parents=True)
        directory = PasswdFileDirectory(workdir / "data", hasher=cheapHasher())
        for user in userList:
            domain = user.split("@", 1)[1]
            if not directory.hasDomain(domain):
                directory.addDomain(domain)
            directory.addUser(user, PASSWORD.encode())
        # tmail always serves all three, so a scenario may deliver by SMTP.
        served = sorted(self.protocols)
        ports = dict(zip(served, freePorts(len(served)), strict=True))
        sections = "\n".join(
            f'[{SECTIONS[p]}]\nlisten = ["tcp:{port}:interface=127.0.0.1"]\n'
            + (
                # Dovecot's and pymap's sessions are not capped either: the
                # idle scenario opens 10,000 at full size.
                'allow_plaintext_auth = "always"\nmax_connections_per_address = 100000\n'
                "max_connections = 100000\n"
                if p != "smtp"
                # The MX's greeting pause (a postscreen-like check) is a
                # per-connection wait the peers do not make: off, as Postfix
                # without postscreen.
                else "max_connections_per_address = 100000\ngreet_pause = 0.0\n"
            )
            for p, port in ports.items()
        )
        config = workdir / "tmail.toml"
        config.write_text(
            f'hostname = "bench.test"\ndata_dir = "data"\n'
            f"[auth]\nmax_failures = 1000000\n{sections}"
            + ("" if self.workers is None else f"[server]\nworkers = {self.workers}\n")
        )
        twistd = Path(sys.executable).parent / "twistd"
        log = workdir / "twistd.log"
        command = [str(twistd), "-n", "--pidfile=", "--logfile", str(log)]
        tail = ["tmail", "--config", str(config)]
        profiles = os.environ.get(PROFILE_ENV)

        def launch() -> subprocess.Popen[bytes]:
            profile: list[str] = []
            env: dict[str, str] = {}
            if profiles:
                Path(profiles).mkdir(parents=True, exist_ok=True)
                target = Path(profiles).resolve() / f"{workdir.parent.name}-{next(_starts)}.prof"
                profile = ["--profile", str(target), "--profiler", "cprofile", "--savestats"]
                env[WORKER_PROFILE_ENV] = str(target.with_suffix(""))
            return spawn(command + profile + tail, workdir / "stdout.log", cwd=workdir, env=env)

        process = launch()
        waitForPorts(list(ports.values()), process, log)
        maildirs = {}
        for user in userList:
            local, domain = user.split("@", 1)
            maildirs[user] = workdir / "data" / "mail" / domain / local
        return Running(self.name, ports, maildirs, process=process, log=log, relaunch=launch)


PEER = TmailPeer()
