"""aiosmtpd with a Maildir handler that fsyncs before C{250}, run as its own process."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

from harness.processes import Running, freePorts, spawn, waitForPorts

SCRIPT = Path(__file__).resolve().parents[2] / "peers" / "aiosmtpd_maildir.py"


class AiosmtpdPeer:
    name = "aiosmtpd"
    protocols = frozenset({"smtp"})

    def missing(self) -> str | None:
        if importlib.util.find_spec("aiosmtpd") is None:
            return "not installed (pip install aiosmtpd)"
        return None

    def start(self, workdir: Path, userList: list[str], protocols: frozenset[str]) -> Running:
        if workdir.exists():
            shutil.rmtree(workdir)
        workdir.mkdir(parents=True)
        usersFile = workdir / "users.txt"
        usersFile.write_text("\n".join(userList) + "\n")
        root = workdir / "mail"
        (port,) = freePorts(1)
        log = workdir / "server.log"
        process = spawn(
            [
                sys.executable,
                str(SCRIPT),
                "--port",
                str(port),
                "--root",
                str(root),
                "--users",
                str(usersFile),
            ],
            log,
            cwd=workdir,
        )
        try:
            waitForPorts([port], process, log)
        except BaseException:
            process.kill()
            process.wait()
            raise
        maildirs = {}
        for user in userList:
            local, domain = user.split("@", 1)
            maildirs[user] = root / domain / local
        return Running(self.name, {"smtp": port}, maildirs, process=process, log=log)


PEER = AiosmtpdPeer()
