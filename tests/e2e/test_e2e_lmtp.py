"""
End to end: the real C{twistd -n tmail} process with an C{[lmtp]} section,
reached with C{smtplib.LMTP} over TCP and a unix socket, and from a private
Postfix that hands mail to it the way Postfix hands mail to Dovecot
(C{virtual_transport = lmtp:unix:...}).
"""

from __future__ import annotations

import grp
import os
import re
import smtplib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import postfix
from support.process import TmailServer, freePorts

pytestmark = pytest.mark.e2e

ALICE = "alice@example.test"
BOB = "bob@example.test"
PASSWORD = "correct horse battery"
SENDER = "someone@remote.example"
BODY = b"From: someone@remote.example\r\nSubject: over LMTP\r\n\r\nHello.\r\n"


def startWithLMTP(folder: Path, socket: Path, mode: str) -> tuple[TmailServer, int]:
    """A tmail with alice and bob, LMTP on a loopback port and on C{socket}."""
    server = TmailServer(folder)
    server.write()
    port = next(p for p in freePorts(8) if p not in server.ports.values())
    with server.config.open("a") as config:
        config.write(
            f'\n[lmtp]\nlisten = ["tcp:{port}:interface=127.0.0.1", "unix:{socket}:mode={mode}"]\n'
        )
    server.ports["lmtp"] = port
    server.addUser(ALICE, PASSWORD)
    server.addUser(BOB, PASSWORD)
    server.start()
    deadline = time.monotonic() + 10
    while not socket.exists():
        assert time.monotonic() < deadline, server.log.read_text()
        time.sleep(0.05)
    return server, port


def inbox(server: TmailServer, user: str) -> list[bytes]:
    """The messages in C{user}'s Maildir INBOX, read from the files."""
    local, domain = user.split("@")
    maildir = server.folder / "data" / "mail" / domain / local
    return [
        path.read_bytes() for sub in ("new", "cur") for path in sorted((maildir / sub).iterdir())
    ]


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A short folder (unix socket paths are limited) that Postfix may enter."""
    with postfix.scratchDirectory() as path:
        yield path


def test_lmtp_listeners_from_the_config_deliver_over_tcp_and_a_unix_socket(
    scratch: Path,
) -> None:
    socket = scratch / "lmtp"
    server, port = startWithLMTP(scratch / "tmail", socket, "660")
    try:
        assert socket.stat().st_mode & 0o777 == 0o660

        with smtplib.LMTP("127.0.0.1", port, local_hostname="mx.example.org") as client:
            assert client.sendmail(SENDER, [ALICE], BODY) == {}

        with smtplib.LMTP(str(socket), local_hostname="mx.example.org") as client:
            client.ehlo()
            assert client.mail(SENDER)[0] == 250
            assert client.rcpt(ALICE)[0] == 250
            assert client.rcpt("nobody@example.test")[0] == 550
            assert client.rcpt(BOB)[0] == 250
            first = client.data(BODY)
            second = client.getreply()
        assert first[0] == second[0] == 250
        assert first[1].startswith(b"2.0.0 <alice@example.test> ")
        assert second[1].startswith(b"2.0.0 <bob@example.test> ")

        received = re.compile(
            rb"Received: from (.*)\r\n\tby mail\.example\.test \(tmail\) with LMTP "
        )
        clients = sorted(received.findall(message)[0] for message in inbox(server, ALICE))
        assert clients == [b"mx.example.org", b"mx.example.org (127.0.0.1 [127.0.0.1])"]
        assert len(inbox(server, BOB)) == 1
    finally:
        server.stop()
    assert not socket.exists(), "the socket outlived the server"


@pytest.mark.skipif(postfix.missing() is not None, reason=postfix.missing() or "")
def test_postfix_relays_into_tmail_over_lmtp_exactly_once(scratch: Path) -> None:
    """
    Postfix accepts mail for example.test over SMTP and hands it to tmail's
    unix socket, set up as the README says (mode 660 in a setgid directory
    of Postfix's group): each hosted user gets it once, under Postfix's
    Received header and tmail's; tmail's refusal of an unknown user at RCPT
    reaches Postfix as a bounce.
    """
    run = scratch / "run"
    run.mkdir()
    os.chown(run, 0, grp.getgrnam("postfix").gr_gid)
    run.chmod(0o2750)  # the socket takes the directory's group: Postfix may connect
    socket = run / "lmtp"
    server, _ = startWithLMTP(scratch / "tmail", socket, "660")
    mta = postfix.Postfix(scratch / "postfix", domain="example.test", destination=f"unix:{socket}")
    try:
        mta.start()
        with smtplib.SMTP("127.0.0.1", mta.port, local_hostname="client.example.org") as smtp:
            refused = smtp.sendmail(SENDER, [ALICE, BOB, "nobody@example.test"], BODY)
        assert refused == {}

        deadline = time.monotonic() + 10
        while len(re.findall(r"status=(sent|bounced)", mta.logText())) < 3:
            assert time.monotonic() < deadline, mta.logText()
            time.sleep(0.1)
        log = mta.logText()
        for user in (ALICE, BOB):
            assert re.search(rf"to=<{user}>, relay=.*status=sent \(250 2\.0\.0 <{user}> Ok", log)
        assert re.search(
            r"to=<nobody@example\.test>, .*status=bounced .*550 5\.1\.1 Recipient address"
            r" rejected: User unknown",
            log,
        ), log
    finally:
        mta.stop()
        server.stop()

    for user in (ALICE, BOB):
        [message] = inbox(server, user)
        tmailReceived = message.index(
            b"Received: from mx.postfix.test\r\n\tby mail.example.test (tmail) with LMTP id "
        )
        postfixReceived = message.index(b"\tby mx.postfix.test (Postfix) with ESMTP id ")
        assert tmailReceived < postfixReceived
        assert message.endswith(b"\r\nHello.\r\n")
