"""
pymap (from PyPI, in the bench environment) with its maildir backend, on
loopback, without TLS.

Users live in the backend's own C{pymap-etc-passwd} (home: the Maildir,
relative to the data directory) and C{pymap-etc-shadow}.  Without passlib
pymap checks passwords with PBKDF2-SHA256 and reads the round count from the
hash, so one round is the cheapest it supports.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

from harness.model import PASSWORD
from harness.processes import Running, freePorts, spawn, waitForPorts


def _script() -> Path:
    return Path(sys.executable).parent / "pymap"


class PymapPeer:
    name = "pymap"
    protocols = frozenset({"imap"})

    def missing(self) -> str | None:
        if importlib.util.find_spec("pymap") is None or not _script().exists():
            return "not installed"
        return None

    def start(self, workdir: Path, userList: list[str], protocols: frozenset[str]) -> Running:
        from pysasl.hashing import BuiltinHash

        if workdir.exists():
            shutil.rmtree(workdir)
        data = workdir / "data"
        data.mkdir(parents=True)
        digest = BuiltinHash(rounds=1).hash(PASSWORD)
        maildirs = {}
        passwd, shadow = [], []
        for user in userList:
            local, domain = user.split("@", 1)
            home = f"{domain}/{local}"
            maildirs[user] = data / home
            passwd.append(f"{user}:x::::{home}:\r\n")
            shadow.append(f"{user}:{digest}:::::::\r\n")
        (data / "pymap-etc-passwd").write_text("".join(passwd))
        (data / "pymap-etc-shadow").write_text("".join(shadow))
        (port,) = freePorts(1)
        command = [
            str(_script()),
            "--no-tls",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "maildir",
            str(data),
        ]
        log = workdir / "pymap.log"

        def launch() -> subprocess.Popen[bytes]:
            return spawn(command, log, cwd=workdir)

        process = launch()
        waitForPorts([port], process, log)
        return Running(
            self.name, {"imap": port}, maildirs, process=process, log=log, relaunch=launch
        )


PEER = PymapPeer()
