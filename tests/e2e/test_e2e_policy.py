"""
End to end: SMTP policies named in the configuration file of the real
C{twistd -n tmail} (the bundled rate limit, and a class of one's own on
C{PYTHONPATH}), seen by smtplib and imaplib.
"""

from __future__ import annotations

import imaplib
import smtplib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.process import BIN, TmailServer

pytestmark = pytest.mark.e2e

ALICE = "alice@example.test"
PASSWORD = "alice's password"
TESTS = Path(__file__).resolve().parent.parent
POLICIES = """
[policy.ratelimit]
messages = 2
window = 3600

[policy.stamp]
class = "support.policies:Stamp"
text = "checked by the stamp policy"
refuse = ["spammer@example.org"]
"""


def message(subject: str, lines: int = 1) -> bytes:
    return (
        f"From: someone@example.org\r\nTo: {ALICE}\r\nSubject: {subject}\r\n"
        "Date: Mon, 02 Jun 2025 10:00:00 +0000\r\nMessage-ID: <p@example.org>\r\n\r\n"
        + "hello, this is a line of the message body\r\n"
        * lines
    ).encode()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TmailServer]:
    instance = TmailServer(
        tmp_path_factory.mktemp("tmail-policy"),
        smtpExtra='policies = ["stamp", "ratelimit"]',
        extra=POLICIES,
        pythonPath=(TESTS,),
    )
    instance.write()
    instance.addUser(ALICE, PASSWORD)
    instance.start()
    yield instance
    instance.stop()


def test_configured_policies_stamp_refuse_and_rate_limit(server: TmailServer) -> None:
    """
    The stamp policy refuses its sender and adds its field above Received,
    also in a message the store had on disk before the policy answered;
    after two messages from 127.0.0.1 the rate limit asks for patience.
    """
    sent = [message("policy small"), message("policy large", lines=10_000)]
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as smtp:
        smtp.ehlo("client.example.org")
        assert smtp.mail("spammer@example.org") == (
            550,
            b"5.7.1 spammer@example.org is refused by the stamp policy",
        )
        for raw in sent:
            smtp.rset()
            assert smtp.sendmail("someone@example.org", [ALICE], raw) == {}
        smtp.rset()
        assert smtp.mail("someone@example.org") == (
            450,
            b"4.7.1 Error: too much mail from 127.0.0.1",
        )
    with imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=10) as imap:
        imap.login(ALICE, PASSWORD)
        imap.select("INBOX", readonly=True)
        typ, data = imap.fetch("1:*", "(BODY.PEEK[])")
        assert typ == "OK"
    stored = [item[1] for item in data if isinstance(item, tuple)]
    assert len(stored) == 2
    for raw, copy in zip(sent, stored, strict=True):
        assert b"\r\nX-Stamp: checked by the stamp policy\r\nReceived: from client" in copy
        assert copy.endswith(raw)


def test_a_policy_setting_it_refuses_stops_twistd_with_one_line(tmp_path: Path) -> None:
    config = tmp_path / "tmail.toml"
    config.write_text(
        'hostname = "x.example"\n[policy.ratelimit]\nwindow = 60\n'
        '[smtp]\nlisten = ["tcp:0"]\npolicies = ["ratelimit"]\n'
    )
    result = subprocess.run(
        [str(BIN / "twistd"), "-n", "--pidfile=", "tmail", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"{config}: policy.ratelimit: set connections or messages (or both) to a limit above 0"
    )
