"""
The ESMTP extensions against the real C{twistd -n tmail}: Debian's swaks
for PIPELINING, STARTTLS and AUTH (it knows no BDAT, SMTPUTF8 or DSN),
Python's smtplib for SMTPUTF8 and DSN, and a raw socket for CHUNKING and
BINARYMIME.  Every message is read back from the Maildir through the store.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import shutil
import smtplib
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.net import readLine, readUntil
from support.process import TmailServer
from tmail.store.maildir import BlockingMaildirStore

pytestmark = pytest.mark.e2e

USER = "erin@example.test"
PASSWORD = "erin's password"
UTF8_USER = "jörg@exämple.test"

swaksInstalled = pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks not installed")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TmailServer]:
    # The MX with all its defaults: real clients pipeline and wait for the
    # two-line greeting as they should.
    instance = TmailServer(tmp_path_factory.mktemp("tmail-extensions"), greetPause=None)
    instance.write()
    instance.addUser(USER, PASSWORD)
    instance.addUser(UTF8_USER, PASSWORD)
    instance.start()
    yield instance
    instance.stop()


def inbox(server: TmailServer, address: str) -> list[bytes]:
    """Every message in the user's INBOX, oldest first, as stored."""
    local, domain = address.split("@")
    ascii = domain.encode("idna").decode("ascii")
    root = server.folder / "data" / "mail" / ascii / local.lower()
    folder = BlockingMaildirStore(Path(root)).getFolder("INBOX")
    found = []
    for info in folder.messages():
        with folder.openMessage(info.uid) as f:
            found.append(f.read())
    return found


def swaks(server: TmailServer, *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["swaks", "--from", "sender@remote.example", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@swaksInstalled
def test_swaks_sees_every_extension_on_the_mx_and_pipelines_a_message(
    server: TmailServer,
) -> None:
    before = len(inbox(server, USER))
    result = swaks(
        server,
        "--server",
        f"127.0.0.1:{server.ports['smtp']}",
        "--to",
        USER,
        "--pipeline",
        "--header",
        "Subject: pipelined by swaks",
    )
    for extension in (
        "PIPELINING",
        "SIZE",
        "8BITMIME",
        "ENHANCEDSTATUSCODES",
        "SMTPUTF8",
        "CHUNKING",
        "BINARYMIME",
        "DSN",
        "HELP",
        "STARTTLS",
    ):
        assert f"250-{extension}" in result.stdout or f"250 {extension}" in result.stdout
    assert "AUTH" not in result.stdout.split("EHLO", 1)[1].split("MAIL FROM", 1)[0]
    messages = inbox(server, USER)
    assert len(messages) == before + 1
    assert b"Subject: pipelined by swaks" in messages[-1]


@swaksInstalled
def test_swaks_starttls_on_the_mx_then_delivers(server: TmailServer) -> None:
    result = swaks(
        server,
        "--server",
        f"127.0.0.1:{server.ports['smtp']}",
        "--to",
        USER,
        "--tls",
        "--header",
        "Subject: over STARTTLS",
    )
    assert "220 2.0.0 Ready to start TLS" in result.stdout
    assert b"with ESMTPS " in inbox(server, USER)[-1]


@swaksInstalled
def test_swaks_submission_authenticates_only_after_starttls(server: TmailServer) -> None:
    plain = subprocess.run(
        [
            "swaks",
            "--server",
            f"127.0.0.1:{server.ports['submission']}",
            "--from",
            USER,
            "--to",
            USER,
            "--quit-after",
            "EHLO",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "AUTH" not in plain.stdout
    result = swaks(
        server,
        "--server",
        f"127.0.0.1:{server.ports['submission']}",
        "--to",
        USER,
        "--tls",
        "--auth",
        "LOGIN",
        "--auth-user",
        USER,
        "--auth-password",
        PASSWORD,
        "--header",
        "Subject: submitted by swaks",
        "--from",
        USER,
    )
    assert "235 2.7.0 Authentication successful" in result.stdout
    assert b"with ESMTPSA " in inbox(server, USER)[-1]


@swaksInstalled
def test_swaks_data_with_dots_and_8bit_text_arrives_unchanged(server: TmailServer) -> None:
    body = "Subject: dots\n\n.starts with a dot\n..two dots\nGrüße\n"
    swaks(
        server,
        "--server",
        f"127.0.0.1:{server.ports['smtp']}",
        "--to",
        USER,
        "--data",
        body,
    )
    stored = inbox(server, USER)[-1]
    assert "\r\n\r\n.starts with a dot\r\n..two dots\r\nGrüße\r\n".encode() in stored


def test_smtplib_smtputf8_reaches_a_utf8_mailbox_at_an_idna_domain(server: TmailServer) -> None:
    message = f"From: {UTF8_USER}\r\nTo: {UTF8_USER}\r\nSubject: Grüße\r\n\r\nHallo\r\n".encode()
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as client:
        client.ehlo("client.example")
        assert client.has_extn("smtputf8")
        refused = client.sendmail(
            "absender@exämple.test", [UTF8_USER], message, mail_options=["SMTPUTF8"]
        )
    assert refused == {}
    stored = inbox(server, UTF8_USER)[-1]
    assert stored.endswith(message)
    assert b" with UTF8SMTP " in stored


def test_smtplib_dsn_parameters_are_accepted(server: TmailServer) -> None:
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as client:
        refused = client.sendmail(
            "sender@remote.example",
            [USER],
            b"Subject: dsn\r\n\r\nbody\r\n",
            mail_options=["RET=HDRS", "ENVID=QQ314159"],
            rcpt_options=["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;" + USER],
        )
    assert refused == {}
    assert b"Subject: dsn" in inbox(server, USER)[-1]


@contextlib.contextmanager
def greeted(server: TmailServer) -> Iterator[socket.socket]:
    """
    A raw connection to the MX that has read the whole greeting and the
    reply to EHLO, as a client must before it pipelines (the MX closes
    on one that does not).
    """
    with socket.create_connection(("127.0.0.1", server.ports["smtp"]), timeout=10) as sock:
        while not readLine(sock).startswith(b"220 "):
            pass
        sock.sendall(b"EHLO client.example\r\n")
        extensions = [readLine(sock)]
        while not extensions[-1].startswith(b"250 "):
            extensions.append(readLine(sock))
        assert b"250-PIPELINING\r\n" in extensions
        yield sock


def test_bdat_with_binarymime_stores_the_octets_as_sent(server: TmailServer) -> None:
    payload = b"Subject: binary\r\nContent-Type: application/octet-stream\r\n\r\n\x00\x01\n\r\xff"
    with greeted(server) as sock:
        wire = (
            b"MAIL FROM:<s@remote.example> BODY=BINARYMIME\r\n"
            b"RCPT TO:<" + USER.encode() + b">\r\n"
            b"BDAT 20\r\n"
            + payload[:20]
            + b"BDAT %d LAST\r\n" % (len(payload) - 20)
            + payload[20:]
            + b"QUIT\r\n"
        )
        sock.sendall(wire)
        received = readUntil(sock, b"221 2.0.0 Bye\r\n")
    assert b"250 2.0.0 20 octets received" in received
    assert inbox(server, USER)[-1].endswith(payload)


def test_smuggled_second_message_over_the_wire_is_never_delivered(server: TmailServer) -> None:
    before = inbox(server, USER)
    with greeted(server) as sock:
        sock.sendall(
            b"MAIL FROM:<s@remote.example>\r\nRCPT TO:<" + USER.encode() + b">\r\nDATA\r\n"
        )
        received = readUntil(sock, b"354 End data with <CR><LF>.<CR><LF>\r\n")
        sock.sendall(
            b"Subject: one\r\n\r\nhello\n.\nMAIL FROM:<evil@remote.example>\r\nRCPT TO:<"
            + USER.encode()
            + b">\r\nDATA\r\nSubject: smuggled\r\n\r\nboo\r\n.\r\nQUIT\r\n"
        )
        received = readUntil(sock, b"221 2.0.0 Bye\r\n", received)
    assert b"550 5.5.2 Bare <CR> or <LF> received" in received
    assert inbox(server, USER) == before


def test_implicit_tls_submission_offers_auth_at_once(server: TmailServer) -> None:
    assert server.pki is not None
    context = ssl.create_default_context(cafile=str(server.pki.caCertificate))
    with smtplib.SMTP_SSL(
        "localhost", server.ports["submissions"], context=context, timeout=10
    ) as client:
        client.ehlo("client.example")
        assert "PLAIN" in client.esmtp_features.get("auth", "")
        client.login(USER, PASSWORD)
        refused = client.sendmail(USER, [USER], b"Subject: implicit\r\n\r\nbody\r\n")
    assert refused == {}
    parsed = email.message_from_bytes(inbox(server, USER)[-1], policy=email.policy.default)
    assert parsed["Subject"] == "implicit"


def test_postmaster_without_a_domain_is_accepted_and_stored(server: TmailServer) -> None:
    """RFC 5321 4.1.1.3 and 4.5.1: <Postmaster> is always a valid recipient."""
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as client:
        client.ehlo("client.example")
        client.mail("sender@remote.example")
        assert client.rcpt("<Postmaster>")[0] == 250
        assert client.rcpt("<postmaster@example.test>")[0] == 250
        code, _ = client.data(b"Subject: to the postmaster\r\n\r\nhello\r\n")
    assert code == 250
    assert b"Subject: to the postmaster" in inbox(server, "postmaster@example.test")[-1]
