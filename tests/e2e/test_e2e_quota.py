"""
End to end: quotas in the real C{twistd -n tmail} process, configured in
C{[quota]} and per user with C{tmail quota set} while the server runs.
"""

from __future__ import annotations

import imaplib
import smtplib
from pathlib import Path

import pytest

from support.process import TmailServer

pytestmark = pytest.mark.e2e

ALICE = "alice@example.test"
BOB = "bob@example.test"
PASSWORD = "correct horse battery"
BODY = b"From: someone@remote.example\r\nSubject: big\r\n\r\n" + (b"y" * 76 + b"\r\n") * 80


def send(server: TmailServer, recipients: list[str]) -> dict[str, tuple[int, bytes]]:
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as smtp:
        return smtp.sendmail("someone@remote.example", recipients, BODY)


def test_quota_from_config_and_cli_is_enforced_by_smtp_and_imap(tmp_path: Path) -> None:
    server = TmailServer(tmp_path / "tmail", extra='\n[quota]\nstorage = "4K"\n')
    server.write()
    server.addUser(ALICE, PASSWORD)
    server.addUser(BOB, PASSWORD)
    server.start()
    try:
        result = server.cli("quota", "set", BOB, "--storage", "1M")
        assert result.returncode == 0, result.stderr

        refused = send(server, [ALICE, BOB])
        assert refused == {ALICE: (552, b"5.2.2 Mailbox full: quota exceeded")}

        with imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=10) as imap:
            imap.login(ALICE, PASSWORD)
            typ, data = imap.append("INBOX", "", None, BODY)
            assert (typ, data) == ("NO", [b"[OVERQUOTA] Quota exceeded (mailbox for user is full)"])
            imap.select("INBOX")
            assert imap.search(None, "ALL") == ("OK", [b""])

        shown = server.cli("quota", "show", BOB)
        assert shown.returncode == 0, shown.stderr
        assert "storage: 0 of" not in shown.stdout
        assert "of 1048576" in shown.stdout and "user limit" in shown.stdout

        result = server.cli("quota", "set", ALICE, "--storage", "1M")
        assert result.returncode == 0, result.stderr
        assert send(server, [ALICE]) == {}
        shown = server.cli("quota", "show", ALICE)
        assert "messages: 1 of unlimited" in shown.stdout, shown.stdout
    finally:
        server.stop()
    assert f"smtp: {ALICE}: mailbox full" in server.log.read_text()
