"""
A smaller set of fuzzed input over loopback sockets to the real
C{twistd -n tmail}: what the in-process tests check, through the real
network stack, listeners and worker threads.  The server's log must show no
traceback, its memory must not grow past the budget, and each input (with
the NOOP after it) must be answered within the time budget.

Only commands that leave the session in command mode are sent (no
literals, DATA, AUTH, IDLE, COMPRESS, STARTTLS or QUIT): over a socket the
client cannot see what the server still waits for.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
from hypothesis import given
from hypothesis import strategies as st

from support.budget import Budget
from support.fairness import attackerAddress
from support.fuzzinputs import imapLine, pop3Line, program, smtpLine
from support.fuzzprofile import fuzzSettings
from support.mailworld import MESSAGES
from support.process import TmailServer
from support.replies import Transcript, checkIMAP, checkPOP3, checkSMTP
from tmail.directory.passwdfile import PasswdFileDirectory

pytestmark = pytest.mark.e2e

USER = "alice@example.test"
PASSWORD = "loopback password"


def _without(*words: bytes) -> Callable[[bytes], bool]:
    def allowed(line: bytes) -> bool:
        upper = line.upper()
        return b"{" not in line and not any(word in upper for word in words)

    return allowed


IMAP_LINES = imapLine().filter(
    _without(b"IDLE", b"AUTHENTICATE", b"COMPRESS", b"STARTTLS", b"LOGOUT", b"APPEND", b"DONE")
)
SMTP_LINES = smtpLine().filter(_without(b"DATA", b"BDAT", b"AUTH", b"STARTTLS", b"QUIT"))
POP3_LINES = pop3Line().filter(_without(b"AUTH", b"STLS", b"QUIT"))


class Server:
    def __init__(self, folder: Path) -> None:
        # Fuzzed LOGINs fail often: their answers are not to wait for the throttle.
        # Inputs are sent without waiting for replies: the MX's checks for early
        # talkers and unnegotiated pipelining would end each session at once.
        self.tmail = TmailServer(
            folder,
            extra="[auth]\nfailure_delay = 0.0\n",
            smtpExtra='early_talkers = "allow"\nunauth_pipelining = "allow"',
        )
        self.tmail.write()
        # Written here, with the suite's cheap hashes: a login per input must be quick.
        directory = PasswdFileDirectory(folder / "data")
        directory.addDomain("example.test")
        directory.addUser(USER, PASSWORD.encode())
        self.tmail.start()
        self.logOffset = 0
        with socket.create_connection(("127.0.0.1", self.tmail.ports["smtp"]), 10) as sock:
            script = b"EHLO seed.example\r\n"
            for message in MESSAGES:
                script += b"MAIL FROM:<seed@remote.example>\r\nRCPT TO:<%s>\r\nDATA\r\n" % (
                    USER.encode()
                )
                script += message.replace(b"\r\n.", b"\r\n..") + b"\r\n.\r\n"
            sock.sendall(script + b"QUIT\r\n")
            while sock.recv(65536):
                pass

    @property
    def process(self) -> psutil.Process:
        assert self.tmail.process is not None
        return psutil.Process(self.tmail.process.pid)

    def newLog(self) -> str:
        text = self.tmail.log.read_bytes()[self.logOffset :]
        self.logOffset += len(text)
        return text.decode("utf-8", "replace")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    instance = Server(tmp_path_factory.mktemp("loopback") / "tmail")
    yield instance
    instance.tmail.stop()


def exchange(
    server: Server,
    service: str,
    setup: bytes,
    chunks: list[bytes],
    probe: bytes,
    answered: Callable[[bytes], bool],
    check: Callable[[bytes], Transcript],
    goodbye: Callable[[bytes], bool],
) -> None:
    budget = Budget()
    before = server.process.memory_info().rss
    sock = socket.create_connection(
        ("127.0.0.1", server.tmail.ports[service]),
        timeout=budget.seconds,
        source_address=(attackerAddress(), 0),
    )
    output = b""
    began = time.monotonic()
    closed = False
    with sock:
        try:
            for data in (setup, *chunks, b"\r\n" + probe):
                sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            closed = True
        try:
            while not answered(output):
                data = sock.recv(65536)
                if not data:
                    closed = True
                    break
                output += data
        except ConnectionResetError:
            closed = True
        except TimeoutError:
            raise AssertionError(
                f"{service}: no answer to {probe!r} within {budget.seconds} s after"
                f" {chunks!r:.500}; got {output[-300:]!r}"
            ) from None
    spent = time.monotonic() - began
    grown = server.process.memory_info().rss - before
    transcript = check(output)
    problems = transcript.problems
    if not answered(output) and not (closed and goodbye(transcript.last)):
        problems.append(f"closed without answering the NOOP or saying goodbye: {output[-300:]!r}")
    log = server.newLog()
    if "Traceback" in log:
        problems.append("the server logged a traceback:\n" + log[-3000:])
    if spent > budget.seconds:
        problems.append(f"took {spent:.2f} s, over the budget of {budget.seconds} s")
    if grown > budget.memory:
        problems.append(f"the server grew by {grown / 2**20:.0f} MiB")
    assert not problems, f"{service}, input {chunks!r:.1000}:\n  " + "\n  ".join(problems)


def _login() -> bytes:
    return b'l LOGIN %s "%s"\r\ns SELECT INBOX\r\n' % (USER.encode(), PASSWORD.encode())


@fuzzSettings(0.5)
@given(chunks=program(st.lists(IMAP_LINES, min_size=1, max_size=5)))
def test_imap_over_loopback_within_budget(server: Server, chunks: list[bytes]) -> None:
    exchange(
        server,
        "imap",
        _login(),
        chunks,
        b"zzNOOP NOOP\r\n",
        lambda out: b"\r\nzzNOOP " in b"\r\n" + out,
        lambda out: checkIMAP(out),
        lambda last: last.startswith(b"* BYE"),
    )


@fuzzSettings(0.5)
@given(chunks=program(st.lists(SMTP_LINES, min_size=1, max_size=5)))
def test_smtp_over_loopback_within_budget(server: Server, chunks: list[bytes]) -> None:
    exchange(
        server,
        "smtp",
        b"",
        chunks,
        b"NOOP\r\n",
        lambda out: out.endswith(b"250 2.0.0 Ok\r\n") or b"\r\n421 " in out,
        lambda out: checkSMTP(out, b"mail.example.test"),
        lambda last: last[:3] in (b"221", b"421"),
    )


@fuzzSettings(0.5)
@given(chunks=program(st.lists(POP3_LINES, min_size=1, max_size=5)))
def test_pop3_over_loopback_within_budget(server: Server, chunks: list[bytes]) -> None:
    exchange(
        server,
        "pop3",
        b"USER %s\r\nPASS %s\r\n" % (USER.encode(), PASSWORD.encode()),
        chunks,
        b"NOOP\r\n",
        lambda out: out.endswith(b"+OK\r\n"),
        lambda out: checkPOP3(out),
        lambda last: last.startswith((b"+OK", b"-ERR")),
    )
