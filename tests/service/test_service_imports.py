"""
Each process of a server with workers imports what it runs: the
supervisor no protocol servers, a worker no queue runner or DKIM signing.
Every module a process imports is memory it holds for its whole life;
neither imports Twisted's test framework (checking an endpoint
description once did).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CONFIG = """hostname = "mx.example.test"
data_dir = "data"
[server]
workers = 2
[smtp]
listen = ["tcp:0:interface=127.0.0.1"]
[imap]
listen = ["tcp:0:interface=127.0.0.1"]
[pop3]
listen = ["tcp:0:interface=127.0.0.1"]
"""

SUPERVISOR = """
import sys
from pathlib import Path
from tmail.config.loader import loadSettings
from tmail.service import makeServerService
makeServerService(loadSettings(Path("tmail.toml")))
print("\\n".join(sorted(sys.modules)))
"""

WORKER = """
import sys
from pathlib import Path
from twisted.internet import reactor
from twisted.protocols import amp
from tmail.config.loader import loadSettings
from tmail.service import listenersOf, makeService
from tmail.workers.worker import WorkerLink
settings = loadSettings(Path("tmail.toml"))
link = WorkerLink(amp.AMP(), {key: 100 for key in listenersOf(settings)}, reactor, 0.0)
makeService(settings, worker=link)
print("\\n".join(sorted(sys.modules)))
"""


def imported(tmp_path: Path, script: str) -> set[str]:
    (tmp_path / "tmail.toml").write_text(CONFIG)
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return set(done.stdout.split())


def test_the_supervisor_imports_no_protocol_servers(tmp_path: Path) -> None:
    modules = imported(tmp_path, SUPERVISOR)
    assert "tmail.queue.runner" in modules
    for name in (
        "tmail.imap.server",
        "tmail.pop3.server",
        "tmail.smtp.server",
        "tmail.smtp.lmtp",
        "twisted.trial",
    ):
        assert name not in modules


def test_a_worker_imports_no_queue_runner_smtp_client_nor_dkim_signing(tmp_path: Path) -> None:
    modules = imported(tmp_path, WORKER)
    assert "tmail.imap.server" in modules
    for name in (
        "tmail.queue.runner",
        "tmail.queue.attempt",
        "tmail.queue.client",
        "tmail.queue.conversation",
        "tmail.queue.clientsession",
        "tmail.queue.dkim",
        "dkim",
        "tmail.workers.anvil",
        "twisted.trial",
    ):
        assert name not in modules
