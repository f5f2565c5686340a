"""
Clients other than Python's stdlib: curl (libcurl's SMTP, IMAP and POP3),
swaks and mbsync (isync) when installed.
"""

from __future__ import annotations

import shutil
import smtplib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.mbsync import writeMbsyncConfig
from support.process import TmailServer

pytestmark = pytest.mark.e2e

USER = "dave@example.test"
PASSWORD = "dave's password"
RAW = (
    b"From: dave@example.test\r\nTo: dave@example.test\r\nSubject: via curl\r\n"
    b"Message-ID: <curl-1@example.test>\r\nDate: Mon, 02 Jun 2025 10:00:00 +0000\r\n"
    b"\r\nline one\r\n.line two starts with a dot\r\n"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TmailServer]:
    instance = TmailServer(tmp_path_factory.mktemp("tmail-clients"))
    instance.write()
    instance.addUser(USER, PASSWORD)
    instance.start()
    yield instance
    instance.stop()


def curl(server: TmailServer, *args: str, stdin: bytes | None = None) -> bytes:
    assert server.pki is not None
    result = subprocess.run(
        [
            "curl",
            "--silent",
            "--show-error",
            "--cacert",
            str(server.pki.caCertificate),
            "--user",
            f"{USER}:{PASSWORD}",
            *args,
        ],
        input=stdin,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
def test_curl_sends_with_starttls_and_reads_back_over_imap_and_pop3(server: TmailServer) -> None:
    curl(
        server,
        f"smtp://localhost:{server.ports['submission']}",
        "--ssl-reqd",
        "--mail-from",
        USER,
        "--mail-rcpt",
        USER,
        "--upload-file",
        "-",
        stdin=RAW,
    )
    viaImap = curl(server, f"imaps://localhost:{server.ports['imaps']}/INBOX;UID=1")
    viaPop = curl(server, f"pop3://localhost:{server.ports['pop3']}/1", "--ssl-reqd")
    assert viaImap.endswith(RAW)
    assert viaPop == viaImap


@pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks not installed")
def test_swaks_submits_over_implicit_tls(server: TmailServer) -> None:
    result = subprocess.run(
        [
            "swaks",
            "--server",
            f"127.0.0.1:{server.ports['submissions']}",
            "--tlsc",
            "--auth",
            "PLAIN",
            "--auth-user",
            USER,
            "--auth-password",
            PASSWORD,
            "--from",
            USER,
            "--to",
            USER,
            "--header",
            "Subject: via swaks",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "250 2.0.0" in result.stdout


@pytest.mark.skipif(shutil.which("mbsync") is None, reason="mbsync (isync) not installed")
def test_mbsync_pulls_the_inbox_and_a_second_run_changes_nothing(
    server: TmailServer, tmp_path: Path
) -> None:
    assert server.pki is not None
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as smtp:
        smtp.sendmail("x@example.org", [USER], RAW.replace(b"via curl", b"via mbsync"))
    local = tmp_path / "local"
    local.mkdir()
    config = writeMbsyncConfig(
        tmp_path / "mbsyncrc",
        server,
        USER,
        PASSWORD,
        local,
        """Channel sync
Far :remote:
Near :local:
Patterns *
Create Both
SyncState *
""",
    )

    def run() -> str:
        result = subprocess.run(
            ["mbsync", "-c", str(config), "-a"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout + result.stderr

    run()
    pulled = sorted((local / "INBOX").glob("*/*"))
    assert pulled, "mbsync fetched nothing"
    bodies = [p.read_bytes() for p in pulled]
    body = RAW.split(b"\r\n\r\n", 1)[1].replace(b"\r\n", b"\n")
    assert any(b"Subject: via mbsync\n" in b and b.endswith(b"\n\n" + body) for b in bodies)
    run()
    assert sorted((local / "INBOX").glob("*/*")) == pulled
