"""The shipped examples run: embedding in a web application, and a SQLite realm."""

from __future__ import annotations

import imaplib
import poplib
import smtplib
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from support.process import TmailServer, freePorts

pytestmark = pytest.mark.e2e

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
USER = "erin@example.test"
PASSWORD = "erin's password"
RAW = b"From: x@example.org\r\nTo: erin@example.test\r\nSubject: stored in sqlite\r\n\r\nbody\r\n"


def waitForPort(port: int, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "process exited early"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


def test_embedded_tmail_serves_mail_next_to_a_web_page(tmp_path: Path) -> None:
    server = TmailServer(tmp_path)
    server.write()
    server.addUser(USER, PASSWORD)
    (web,) = freePorts(1)
    process = subprocess.Popen(
        [
            sys.executable,
            str(EXAMPLES / "embed.py"),
            str(server.config),
            f"tcp:{web}:interface=127.0.0.1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        waitForPort(web, process)
        waitForPort(server.ports["smtp"], process)
        with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as smtp:
            smtp.sendmail("x@example.org", [USER], RAW)
        page = urllib.request.urlopen(f"http://127.0.0.1:{web}/", timeout=10).read()
        assert b"example.test: 1 users" in page
        inbox = urllib.request.urlopen(f"http://127.0.0.1:{web}/inbox/{USER}", timeout=10).read()
        assert inbox == f"{USER}: 1 messages\n".encode()
        with imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=10) as imap:
            imap.login(USER, PASSWORD)
            typ, data = imap.select("INBOX")
            assert typ == "OK" and data == [b"1"]
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_sqlite_realm_stores_and_serves_mail(tmp_path: Path) -> None:
    server = TmailServer(tmp_path, backend="custom_realm:SQLiteRealm", pythonPath=(EXAMPLES,))
    server.write()
    server.addUser(USER, PASSWORD)
    server.start()
    try:
        with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as smtp:
            smtp.sendmail("x@example.org", [USER], RAW)
        assert (tmp_path / "data" / "mail.sqlite3").exists()
        assert not (tmp_path / "data" / "mail").exists()
        with imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=10) as imap:
            imap.login(USER, PASSWORD)
            imap.select("INBOX")
            typ, data = imap.fetch("1", "(BODY.PEEK[])")
            assert typ == "OK" and data[0][1].endswith(RAW)
            imap.create("Archive")
            typ, data = imap.copy("1", "Archive")
            assert typ == "OK"
        pop = poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=10)
        pop.user(USER)
        pop.pass_(PASSWORD)
        assert pop.stat()[0] == 1
        pop.quit()
    finally:
        server.stop()
