"""
End to end: the real C{twistd -n tmail} process, users made with the C{tmail}
CLI, mail sent with smtplib and read back with imaplib and poplib.
"""

from __future__ import annotations

import imaplib
import poplib
import smtplib
import socket
import ssl
import subprocess
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from support.process import BIN, TmailServer

pytestmark = pytest.mark.e2e

ALICE = "alice@example.test"
PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TmailServer]:
    instance = TmailServer(tmp_path_factory.mktemp("tmail"))
    instance.write()
    instance.addUser(ALICE, PASSWORD)
    instance.start()
    yield instance
    instance.stop()


def context(server: TmailServer) -> ssl.SSLContext:
    assert server.pki is not None
    return server.pki.clientContext()


def message(subject: str, body: str = "Hello.\n.leading dot line\nbye\n") -> bytes:
    msg = EmailMessage()
    msg["From"] = ALICE
    msg["To"] = ALICE
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{subject.replace(' ', '-')}@example.test>"
    msg["Date"] = "Mon, 02 Jun 2025 10:00:00 +0000"
    msg.set_content(body)
    return msg.as_bytes().replace(b"\n", b"\r\n")


def submit(server: TmailServer, raw: bytes) -> None:
    with smtplib.SMTP("localhost", server.ports["submission"], timeout=10) as smtp:
        smtp.starttls(context=context(server))
        smtp.login(ALICE, PASSWORD)
        smtp.sendmail(ALICE, [ALICE], raw)


def imapFetchBySubject(server: TmailServer, subject: str) -> tuple[int, bytes]:
    with imaplib.IMAP4("localhost", server.ports["imap"], timeout=10) as imap:
        imap.starttls(ssl_context=context(server))
        imap.login(ALICE, PASSWORD)
        imap.select("INBOX")
        typ, data = imap.uid("SEARCH", "HEADER", "Subject", f'"{subject}"')
        assert typ == "OK", data
        uids = data[0].split()
        assert len(uids) == 1, data
        typ, data = imap.uid("FETCH", uids[0], "(BODY.PEEK[])")
        assert typ == "OK"
        return int(uids[0]), data[0][1]


def popMessages(server: TmailServer) -> list[bytes]:
    pop = poplib.POP3_SSL("localhost", server.ports["pop3s"], context=context(server), timeout=10)
    try:
        pop.user(ALICE)
        pop.pass_(PASSWORD)
        count, _ = pop.stat()
        return [b"\r\n".join(pop.retr(i + 1)[1]) + b"\r\n" for i in range(count)]
    finally:
        pop.quit()


def test_twistd_lists_the_tmail_plugin() -> None:
    result = subprocess.run(
        [str(BIN / "twistd"), "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert "tmail" in result.stdout


def test_submission_message_reads_back_identically_over_imap_and_pop3(
    server: TmailServer,
) -> None:
    raw = message("roundtrip one")
    submit(server, raw)
    _, viaImap = imapFetchBySubject(server, "roundtrip one")
    assert viaImap.endswith(raw)
    assert viaImap.startswith(b"Return-Path: <alice@example.test>\r\n")
    assert b"\r\nDelivered-To: alice@example.test\r\n" in viaImap
    assert b"with ESMTPSA" in viaImap
    viaPop = [m for m in popMessages(server) if b"roundtrip one" in m]
    assert viaPop == [viaImap]


def test_mx_accepts_local_users_and_refuses_others(server: TmailServer) -> None:
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as smtp:
        smtp.ehlo("client.example.org")
        smtp.mail("someone@example.org")
        code, text = smtp.rcpt("nobody@example.test")
        assert code == 550 and text.startswith(b"5.1.1"), text
        code, text = smtp.rcpt("victim@elsewhere.example")
        assert code == 550 and text.startswith(b"5.7.1"), text
        code, _ = smtp.rcpt("alice+lists@example.test")
        assert code == 250
        code, _ = smtp.data(message("from outside"))
        assert code == 250
    _, body = imapFetchBySubject(server, "from outside")
    assert b"\r\nDelivered-To: alice@example.test\r\n" in body


def test_implicit_tls_submission_offers_auth_at_once(server: TmailServer) -> None:
    with smtplib.SMTP_SSL(
        "localhost", server.ports["submissions"], context=context(server), timeout=10
    ) as smtp:
        smtp.ehlo("client.example.org")
        assert smtp.has_extn("auth")
        assert not smtp.has_extn("starttls")
        smtp.login(ALICE, PASSWORD)


def test_imaps_listener_serves_the_same_mailbox(server: TmailServer) -> None:
    with imaplib.IMAP4_SSL(
        "localhost", server.ports["imaps"], ssl_context=context(server), timeout=10
    ) as imap:
        imap.login(ALICE, PASSWORD)
        typ, data = imap.select("INBOX", readonly=True)
        assert typ == "OK" and int(data[0]) >= 1


def test_user_added_while_running_can_log_in(server: TmailServer) -> None:
    server.addUser("carol@example.test", "carol's password")
    with imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=10) as imap:
        typ, _ = imap.login("carol@example.test", "carol's password")
        assert typ == "OK"


def test_pop3_session_without_quit_deletes_nothing(server: TmailServer) -> None:
    submit(server, message("keep me"))
    before = len(popMessages(server))
    pop = poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=10)
    pop.user(ALICE)
    pop.pass_(PASSWORD)
    pop.dele(1)
    pop.sock.close()
    assert len(popMessages(server)) == before


def test_flags_and_uids_survive_a_restart(server: TmailServer) -> None:
    submit(server, message("flag me"))
    uid, _ = imapFetchBySubject(server, "flag me")
    with imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=10) as imap:
        imap.login(ALICE, PASSWORD)
        imap.select("INBOX")
        typ, _ = imap.uid("STORE", str(uid), "+FLAGS", r"(\Flagged \Seen)")
        assert typ == "OK"
        validity = imap.response("UIDVALIDITY")
    server.stop()
    server.start()
    again, _ = imapFetchBySubject(server, "flag me")
    assert again == uid
    with imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=10) as imap:
        imap.login(ALICE, PASSWORD)
        imap.select("INBOX")
        assert imap.response("UIDVALIDITY") == validity
        typ, data = imap.uid("FETCH", str(uid), "(FLAGS)")
        assert b"\\Flagged" in data[0] and b"\\Seen" in data[0]


def test_plaintext_pipelined_after_starttls_is_discarded(server: TmailServer) -> None:
    with socket.create_connection(("127.0.0.1", server.ports["submission"]), timeout=10) as s:
        s.recv(1024)
        s.sendall(b"EHLO x\r\n")
        s.recv(4096)
        s.sendall(b"STARTTLS\r\nRSET\r\n")
        reply = s.recv(1024)
        assert reply.startswith(b"220")
        tls = context(server).wrap_socket(s, server_hostname="localhost")
        tls.sendall(b"NOOP\r\n")
        assert tls.recv(1024).startswith(b"250")


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('hostname = "x"\n[imap]\nlisten = ["tcp:notaport"]\n', "imap.listen"),
        (
            # Checked by the supervisor, not told once by each worker.
            'hostname = "x"\n[server]\nworkers = 2\n'
            '[smtp]\nlisten = ["tcp:0:interface=127.0.0.1"]\npolicies = ["ratelimit"]\n'
            "[policy.ratelimit]\nmessages = 5\nwindow = -1\n",
            "policy.ratelimit.window",
        ),
    ],
    ids=["listener", "policy-with-workers"],
)
def test_bad_config_exits_2_with_one_line(tmp_path: Path, text: str, key: str) -> None:
    config = tmp_path / "tmail.toml"
    config.write_text(text)
    result = subprocess.run(
        [str(BIN / "twistd"), "-n", "--pidfile=", "tmail", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(config) in lines[0] and key in lines[0]


def test_port_in_use_exits_with_one_clear_line(server: TmailServer) -> None:
    result = subprocess.run(
        [str(BIN / "twistd"), "-n", "--pidfile=", "tmail", "--config", str(server.config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "tmail: cannot listen for smtp" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_json_log_format_writes_json_lines(tmp_path: Path) -> None:
    instance = TmailServer(tmp_path, extra="", logFormat="json")
    instance.write()
    instance.start()
    instance.stop()
    lines = [line for line in instance.log.read_text().splitlines() if line.strip()]
    assert lines and all(line.lstrip("\x1e").startswith("{") for line in lines), lines[:3]


def test_idle_session_hears_of_an_smtp_delivery(server: TmailServer) -> None:
    from imapclient import IMAPClient

    with IMAPClient(
        "localhost", port=server.ports["imaps"], ssl_context=context(server), timeout=10
    ) as client:
        client.login(ALICE, PASSWORD)
        exists = client.select_folder("INBOX")[b"EXISTS"]
        client.idle()
        with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as smtp:
            smtp.sendmail("someone@example.org", [ALICE], message("wake up"))
        responses = client.idle_check(timeout=2)
        client.idle_done()
    assert (exists + 1, b"EXISTS") in responses


def test_idle_session_hears_of_a_pop3_deletion_within_a_second(server: TmailServer) -> None:
    """A message a POP3 client deletes reaches an idling IMAP session as EXPUNGE."""
    from imapclient import IMAPClient

    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as smtp:
        smtp.sendmail("someone@example.org", [ALICE], message("to be deleted by POP3"))
    with IMAPClient(
        "localhost", port=server.ports["imaps"], ssl_context=context(server), timeout=10
    ) as client:
        client.login(ALICE, PASSWORD)
        exists = client.select_folder("INBOX")[b"EXISTS"]
        client.idle()
        pop = poplib.POP3_SSL(
            "localhost", server.ports["pop3s"], context=context(server), timeout=10
        )
        pop.user(ALICE)
        pop.pass_(PASSWORD)
        count = len(pop.list()[1])
        pop.dele(count)
        pop.quit()
        responses = client.idle_check(timeout=1)
        client.idle_done()
    assert (exists, b"EXPUNGE") in responses
