"""
Fairness under attack: one real C{twistd -n tmail} process serving IMAP and
SMTP on loopback, a hostile client (in a thread, from its own loopback
address) sending one of the inputs that used to stall the server, and a
victim that meanwhile measures how long the server takes to answer it:
the round trip of an IMAP NOOP on a session opened beforehand, and every
step of a whole SMTP delivery on the MX port (connect and greeting, EHLO,
MAIL, RCPT, DATA, the message, up to its C{250}).

Every answer must come within L{LIMIT} (100 ms) plus L{SLACK}
(C{FAIRNESS_SLACK} seconds, 0 unless set: for a machine too noisy to hold
100 ms even with nobody attacking).  A probe that gets no answer within
L{PROBE_TIMEOUT} ends the measurement: the server is stalled, and it is
started afresh for the next test.

Attacks that change or empty a folder (EXPUNGE, MOVE, DELETE, RENAME of
INBOX) work on folders of their own, filled with hard links to the same
3,000 messages, so every attack finds what it needs whatever ran before.
The attacks on one message of 40 MB (its 30 MB of base64 text searched,
its structure and decoded text fetched) each get a folder holding a hard
link to it, written once.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import os
import random
import re
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from support.mailworld import nestedMultipart
from support.process import TmailServer

#: How quickly the victim must be answered, whatever the attacker does.
LIMIT = 0.1
SLACK = float(os.environ.get("FAIRNESS_SLACK", "0"))
#: How long a probe waits before calling the server stalled.
PROBE_TIMEOUT = 1.0
#: How long the victim keeps probing once the attack has begun, at least
#: and (while the attacker is still busy) at most.
WINDOW = 0.5
MAX_WINDOW = 2.0

DOMAIN = "example.test"
VICTIM = f"alice@{DOMAIN}"
ATTACKER = f"bob@{DOMAIN}"
#: The attacker's second account, whose INBOX the RENAME attack empties.
RENAMER = f"carol@{DOMAIN}"
PASSWORD = "fairness password"
#: Messages in the attacker's INBOX, for the commands that walk a folder.
FOLDER_SIZE = 3000
DEEP_FOLDER = "Deep"
#: Copies of each deeply nested message in it.
DEEP_COPIES = 10

_sources = itertools.count(2)
_names = itertools.count()


def attackerAddress() -> str:
    """A loopback address of its own for each attack, so throttles and bans stay with it."""
    n = next(_sources)
    return f"127.0.{n // 250}.{n % 250 + 2}"


def rfc822Chain(depth: int) -> bytes:
    """A message inside a message, C{depth} times."""
    message = b"Subject: in\r\n\r\ndeep text\r\n"
    for level in range(depth):
        message = b"Subject: l%d\r\nContent-Type: message/rfc822\r\n\r\n" % level + message
    return message


def _writeOriginals(folder: Path) -> None:
    """The attacker's messages, once, for the folders that get hard links to them."""
    past = time.time() - 3600
    folder.mkdir(parents=True)
    for n in range(FOLDER_SIZE):
        body = (
            f"From: sender{n % 50}@remote.example\r\nTo: {ATTACKER}\r\n"
            f"Subject: report {n % 97} about things\r\nMessage-ID: <{n}@remote.example>\r\n"
            f"References: <{n // 3}@remote.example>\r\n"
            f"Date: Mon, {1 + n % 28} Feb 2022 10:00:00 +0000\r\n\r\n"
            + "lorem ipsum dolor sit amet consectetur adipiscing elit\r\n"
            * 20
        ).encode()
        path = folder / f"{1_600_000_000 + n}.M{n}P1Q1.seed,S={len(body)}"
        path.write_bytes(body)
        os.utime(path, (past, past))


def fillFolder(originals: Path, folder: Path, letters: str = "S", inbox: bool = False) -> None:
    """
    Fill a Maildir folder (an INBOX, else a sub-folder) with hard links to
    every original, flagged with C{letters}, as a delivery agent would; the
    running server finds them at its next look.
    """
    for sub in ("cur", "new", "tmp"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    if not inbox:
        (folder / "maildirfolder").touch()
    unique = next(_names)
    for original in sorted(originals.iterdir()):
        stem, size = original.name.split(",S=")
        os.link(original, folder / "cur" / f"{stem}.f{unique},S={size}:2,{letters}")


def _seed(originals: Path, maildir: Path) -> None:
    """Write the attacker's mail as a delivery agent would, before the server starts."""
    past = time.time() - 3600
    fillFolder(originals, maildir, inbox=True)
    deep = maildir / f".{DEEP_FOLDER}"
    for sub in ("cur", "new", "tmp"):
        (deep / sub).mkdir(parents=True, exist_ok=True)
    (deep / "maildirfolder").touch()
    deepest = (rfc822Chain(1000), nestedMultipart(1000)) * DEEP_COPIES
    for n, message in enumerate(deepest):
        (deep / "cur" / f"{1_600_000_000 + n}.M{n}P2Q1.seed,S={len(message)}:2,").write_bytes(
            message
        )
    for folder in (maildir, deep):
        for sub in ("cur", "new", "tmp"):
            os.utime(folder / sub, (past, past))


@dataclass
class FairnessServer:
    """The server under test, started once and again whenever an attack stalled it."""

    folder: Path
    server: TmailServer = field(init=False)

    def __post_init__(self) -> None:
        self.server = TmailServer(self.folder)
        self.server.write()
        self.server.addUser(VICTIM, PASSWORD)
        self.server.addUser(ATTACKER, PASSWORD)
        self.server.addUser(RENAMER, PASSWORD)
        _writeOriginals(self.originals)
        _seed(self.originals, self.mailDir(ATTACKER))
        self.server.start()
        self.warm()

    @property
    def originals(self) -> Path:
        """The attacker's messages, of which folders get hard links."""
        return self.folder / "originals"

    def mailDir(self, user: str) -> Path:
        return self.folder / "data" / "mail" / DOMAIN / user.split("@", 1)[0]

    @property
    def imapPort(self) -> int:
        return self.server.ports["imap"]

    @property
    def smtpPort(self) -> int:
        return self.server.ports["smtp"]

    def warm(self) -> None:
        """Index the attacker's folders now, so no attack pays for the first look."""
        with IMAPClient(self.imapPort, "127.0.0.1", timeout=60) as imap:
            imap.login(ATTACKER)
            imap.command(b"SELECT INBOX")
            imap.command(b"SELECT " + DEEP_FOLDER.encode())

    def healthy(self) -> bool:
        try:
            with IMAPClient(self.imapPort, "127.0.0.1", timeout=1.0) as imap:
                imap.command(b"NOOP")
        except OSError:
            return False
        return True

    def restart(self) -> None:
        self.server.kill()
        self.server.start()

    def stop(self) -> None:
        self.server.stop()


class IMAPClient:
    """A blocking IMAP client over a raw socket: exact bytes, exact timing."""

    def __init__(self, port: int, source: str, timeout: float = PROBE_TIMEOUT) -> None:
        self.sock = socket.create_connection(
            ("127.0.0.1", port), timeout=timeout, source_address=(source, 0)
        )
        self.buffer = b""
        self.tags = (b"v%d" % n for n in itertools.count())
        self.readLine()

    def __enter__(self) -> IMAPClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def readLine(self) -> bytes:
        while b"\r\n" not in self.buffer:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("the server closed the connection")
            self.buffer += data
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    def command(self, line: bytes) -> bytes:
        """Send one tagged command; return its tagged response (literals are not expected)."""
        tag = next(self.tags)
        self.sock.sendall(tag + b" " + line + b"\r\n")
        while True:
            response = self.readLine()
            if response.startswith(tag + b" "):
                return response

    def login(self, user: str) -> None:
        reply = self.command(b"LOGIN " + user.encode() + b' "' + PASSWORD.encode() + b'"')
        assert b" OK" in reply, reply


@dataclass
class Probe:
    what: str
    seconds: float


@dataclass
class Victim:
    """An IMAP session of the victim, and SMTP deliveries to it, timed."""

    server: FairnessServer
    probes: list[Probe] = field(default_factory=list)
    stalled: str | None = None

    def __post_init__(self) -> None:
        self.imap = IMAPClient(self.server.imapPort, "127.0.0.1", timeout=30)
        self.imap.login(VICTIM)
        self.imap.command(b"SELECT INBOX")
        self.imap.sock.settimeout(PROBE_TIMEOUT)

    def timed(self, what: str, step: Callable[[], object]) -> None:
        began = time.perf_counter()
        try:
            step()
        except OSError as e:
            self.stalled = f"{what}: {type(e).__name__} after {time.perf_counter() - began:.1f} s"
            raise
        self.probes.append(Probe(what, time.perf_counter() - began))

    def noop(self) -> None:
        self.timed("IMAP NOOP", lambda: self.imap.command(b"NOOP"))

    def delivery(self) -> None:
        """One whole SMTP transaction to the victim on the MX port, each step timed."""
        sock: socket.socket | None = None
        buffer = b""

        def reply() -> bytes:
            nonlocal buffer
            assert sock is not None
            while True:
                end = buffer.find(b"\r\n")
                if end >= 0:
                    line, buffer = buffer[:end], buffer[end + 2 :]
                    if line[3:4] != b"-":
                        return line
                    continue
                data = sock.recv(65536)
                if not data:
                    raise ConnectionError("the server closed the connection")
                buffer += data

        def step(line: bytes, expect: bytes) -> Callable[[], object]:
            def run() -> None:
                assert sock is not None
                sock.sendall(line)
                answer = reply()
                assert answer.startswith(expect), (line, answer)

            return run

        def connect() -> None:
            nonlocal sock
            sock = socket.create_connection(
                ("127.0.0.1", self.server.smtpPort), timeout=PROBE_TIMEOUT
            )
            assert reply().startswith(b"220")

        try:
            self.timed("SMTP connect and greeting", connect)
            self.timed("SMTP EHLO", step(b"EHLO victim.example\r\n", b"250"))
            self.timed("SMTP MAIL", step(b"MAIL FROM:<friend@remote.example>\r\n", b"250"))
            self.timed("SMTP RCPT", step(b"RCPT TO:<" + VICTIM.encode() + b">\r\n", b"250"))
            self.timed("SMTP DATA", step(b"DATA\r\n", b"354"))
            message = b"Subject: still there?\r\n\r\n" + b"hello\r\n" * 20 + b".\r\n"
            self.timed("SMTP message until 250", step(message, b"250"))
            self.timed("SMTP QUIT", step(b"QUIT\r\n", b"221"))
        finally:
            if sock is not None:
                sock.close()

    def probeWhile(self, attack: Attack) -> None:
        """Probe from the moment the attack begins until the window closes."""
        if not attack.begun.wait(30):
            raise AssertionError(f"the attack never began: {attack.error}")
        began = time.monotonic()
        for n in itertools.count():
            elapsed = time.monotonic() - began
            if elapsed > MAX_WINDOW or (elapsed > WINDOW and attack.finished.is_set()):
                return
            try:
                if n % 4 == 3:
                    self.delivery()
                else:
                    self.noop()
            except OSError:
                return
            time.sleep(0.01)

    def close(self) -> None:
        self.imap.close()

    def verdict(self, attack: str) -> str | None:
        """Why the victim was not served fairly, if it was not."""
        limit = LIMIT + SLACK
        if self.stalled is not None:
            return f"while {attack} ran, the victim got no answer: {self.stalled}"
        slow = sorted((p for p in self.probes if p.seconds > limit), key=lambda p: -p.seconds)
        if not slow:
            return None
        worst = ", ".join(f"{p.what} {p.seconds * 1000:.0f} ms" for p in slow[:5])
        return (
            f"while {attack} ran, {len(slow)} of {len(self.probes)} answers to the victim took"
            f" longer than {limit * 1000:.0f} ms: {worst}"
        )


@dataclass
class Attack:
    """A hostile client running in a thread; C{begun} is set when the hostile input starts."""

    run: Callable[[Attack], None]
    server: FairnessServer
    source: str = field(default_factory=attackerAddress)
    begun: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)
    sockets: list[socket.socket] = field(default_factory=list)
    error: BaseException | None = None

    def connect(self, port: int) -> socket.socket:
        sock = socket.create_connection(
            ("127.0.0.1", port), timeout=30, source_address=(self.source, 0)
        )
        self.sockets.append(sock)
        return sock

    def imap(self, user: str | None = ATTACKER, select: str | None = None) -> IMAPClient:
        client = IMAPClient(self.server.imapPort, self.source, timeout=30)
        self.sockets.append(client.sock)
        if user is not None:
            client.login(user)
        if select is not None:
            client.command(b"SELECT " + select.encode())
        return client

    def start(self) -> threading.Thread:
        def main() -> None:
            try:
                self.run(self)
            except (OSError, AssertionError) as e:
                self.error = e
            finally:
                self.begun.set()
                self.finished.set()

        thread = threading.Thread(target=main, daemon=True)
        thread.start()
        return thread

    def end(self, thread: threading.Thread) -> None:
        self.stop.set()
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        thread.join(5)


def sendAndWait(client: IMAPClient, attack: Attack, data: bytes, tag: bytes) -> None:
    """Send C{data}, mark the attack begun, and read until C{tag}'s answer (or the end)."""
    client.sock.sendall(data)
    attack.begun.set()
    client.sock.settimeout(MAX_WINDOW + PROBE_TIMEOUT)
    while not attack.stop.is_set():
        if client.readLine().startswith(tag + b" "):
            return


# The hostile inputs, each as the attacker sends it.


def listWildcards(attack: Attack) -> None:
    client = attack.imap()
    sendAndWait(client, attack, b'h LIST "" "' + b"*%" * 25 + b'Z"\r\n', b"h")


def fetchSequenceSet(attack: Attack) -> None:
    client = attack.imap(select="INBOX")
    sequence = b",".join(b"%d" % n for n in range(1, 20000, 2))
    sendAndWait(client, attack, b"h FETCH " + sequence + b" FLAGS\r\n", b"h")


def compressFlood(attack: Attack) -> None:
    """Megabytes of command lines behind a pending command, in a few KB of deflate."""
    client = attack.imap(select="INBOX")
    reply = client.command(b"COMPRESS DEFLATE")
    assert b" OK" in reply, reply
    deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
    flood = b"h1 SEARCH TEXT nowhere\r\n" + b"h2 NOOP\r\n" * (2 * 1024 * 1024 // 9)
    data = deflater.compress(flood) + deflater.flush(zlib.Z_SYNC_FLUSH)
    client.sock.sendall(data)
    attack.begun.set()
    client.sock.settimeout(MAX_WINDOW + PROBE_TIMEOUT)
    while not attack.stop.is_set() and client.sock.recv(65536):
        pass


def searchLiterals(attack: Attack) -> None:
    client = attack.imap(select="INBOX")
    literal = b" TEXT {60000+}\r\n" + b"x" * 60000
    client.sock.sendall(b"h SEARCH")
    attack.begun.set()
    for _ in range(1500):
        if attack.stop.is_set():
            return
        client.sock.sendall(literal)
    sendAndWait(client, attack, b"\r\n", b"h")


def parallelLogins(attack: Attack) -> None:
    clients = [attack.imap(user=None) for _ in range(45)]
    for client in clients:
        client.sock.sendall(b"h LOGIN " + ATTACKER.encode() + b" wrong-password\r\n")
    attack.begun.set()
    for client in clients:
        if attack.stop.is_set():
            return
        try:
            client.sock.settimeout(MAX_WINDOW + PROBE_TIMEOUT)
            while not attack.stop.is_set() and not client.readLine().startswith(b"h "):
                pass
        except (OSError, ConnectionError):
            pass


def search(criteria: bytes, folder: str = "INBOX") -> Callable[[Attack], None]:
    def run(attack: Attack) -> None:
        client = attack.imap(select=folder)
        sendAndWait(client, attack, b"h " + criteria + b"\r\n", b"h")

    return run


def deepMime(attack: Attack) -> None:
    client = attack.imap(select=DEEP_FOLDER)
    sendAndWait(
        client,
        attack,
        b"h1 SEARCH TEXT deep\r\nh2 FETCH 1:* (BODYSTRUCTURE BODY.PEEK[1.1.1])\r\n"
        b"h3 SEARCH BODY text\r\n",
        b"h3",
    )


def smtpSlowloris(attack: Attack) -> None:
    """Twenty SMTP sessions that send one byte at a time, never finishing a line."""
    socks = [attack.connect(attack.server.smtpPort) for _ in range(20)]
    attack.begun.set()
    deadline = time.monotonic() + MAX_WINDOW
    for byte in itertools.cycle(b"EHLO slow.example"):
        if attack.stop.is_set() or time.monotonic() > deadline:
            return
        for sock in socks:
            sock.sendall(bytes([byte]))
        time.sleep(0.05)


def earlyTalker(attack: Attack) -> None:
    """A whole transaction written before the greeting, pipelined without PIPELINING."""
    script = (
        b"HELO early.example\r\nMAIL FROM:<spam@remote.example>\r\nRCPT TO:<"
        + VICTIM.encode()
        + b">\r\nDATA\r\nSubject: spam\r\n\r\nspam\r\n.\r\nQUIT\r\n"
    )
    attack.begun.set()
    deadline = time.monotonic() + MAX_WINDOW
    while not attack.stop.is_set() and time.monotonic() < deadline:
        sock = attack.connect(attack.server.smtpPort)
        sock.sendall(script)
        sock.settimeout(PROBE_TIMEOUT)
        try:
            while sock.recv(65536):
                pass
        except OSError:
            pass


def seededFolder(attack: Attack, letters: str = "S") -> str:
    """A new folder of the attacker's holding every original, flagged with C{letters}."""
    name = f"Seeded{next(_names)}"
    fillFolder(attack.server.originals, attack.server.mailDir(ATTACKER) / f".{name}", letters)
    return name


def storeEveryMessage(attack: Attack) -> None:
    """Flag every message of the INBOX, then unflag them: a rename and a log line each."""
    client = attack.imap(select="INBOX")
    sendAndWait(
        client,
        attack,
        b"h1 STORE 1:* +FLAGS (\\Flagged)\r\nh2 STORE 1:* -FLAGS.SILENT (\\Flagged)\r\n",
        b"h2",
    )


def copyEveryMessage(attack: Attack) -> None:
    client = attack.imap(select="INBOX")
    target = b"Copies%d" % next(_names)
    client.command(b"CREATE " + target)
    sendAndWait(client, attack, b"h COPY 1:* " + target + b"\r\n", b"h")


def moveEveryMessage(attack: Attack) -> None:
    client = attack.imap(select=seededFolder(attack))
    target = b"Moved%d" % next(_names)
    client.command(b"CREATE " + target)
    sendAndWait(client, attack, b"h MOVE 1:* " + target + b"\r\n", b"h")


def expungeEveryMessage(command: bytes) -> Callable[[Attack], None]:
    """C{command} in a folder whose every message is marked C{\\Deleted}."""

    def run(attack: Attack) -> None:
        client = attack.imap(select=seededFolder(attack, "ST"))
        sendAndWait(client, attack, b"h " + command + b"\r\n", b"h")

    return run


def fetchSettingSeen(attack: Attack) -> None:
    """A FETCH that marks every unseen message C{\\Seen}."""
    client = attack.imap(select=seededFolder(attack, ""))
    sendAndWait(client, attack, b"h FETCH 1:* (BODY[HEADER.FIELDS (SUBJECT)])\r\n", b"h")


#: Folders LIST-STATUS looks into.
MANY_FOLDERS = 300


def listStatusOfManyFolders(attack: Attack) -> None:
    maildir = attack.server.mailDir(ATTACKER)
    for n in range(MANY_FOLDERS):
        folder = maildir / f".Many.{n}"
        for sub in ("cur", "new", "tmp"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        (folder / "maildirfolder").touch()
    client = attack.imap()
    request = b'h LIST "" "Many/*" RETURN (STATUS (MESSAGES UNSEEN SIZE))\r\n'
    sendAndWait(client, attack, request, b"h")


def deleteLargeFolder(attack: Attack) -> None:
    client = attack.imap()
    name = seededFolder(attack).encode()
    sendAndWait(client, attack, b"h DELETE " + name + b"\r\n", b"h")


#: The large message's text part: about 30 MB of base64 (22 MB of text).
LARGE_TEXT = 22 * 1024 * 1024
#: Its other part: about 9 MB of base64, for a message of about 40 MB.
LARGE_ATTACHMENT = 6 * 1024 * 1024 + 512 * 1024


def _base64Lines(data: bytes) -> bytes:
    return base64.encodebytes(data).replace(b"\n", b"\r\n")


def largeMessage(server: FairnessServer) -> Path:
    """
    A message of about 40 MB whose first part is text in base64 (about
    30 MB of it), written once, of which folders get hard links.
    """
    path = server.folder / "large-message"
    if not path.exists():
        line = b"lorem ipsum dolor sit amet consectetur adipiscing elit %08d\r\n"
        text = b"".join(line % n for n in range(LARGE_TEXT // len(line % 0)))
        path.write_bytes(
            b"From: sender@remote.example\r\nTo: " + ATTACKER.encode() + b"\r\n"
            b"Subject: the large one\r\nDate: Mon, 7 Feb 2022 10:00:00 +0000\r\n"
            b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=large\r\n\r\n"
            b"--large\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n"
            + _base64Lines(text)
            + b"--large\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n"
            + _base64Lines(random.Random(7).randbytes(LARGE_ATTACHMENT))
            + b"--large--\r\n"
        )
    return path


def largeMessageFolder(attack: Attack) -> str:
    """A new folder of the attacker's holding the large message alone."""
    name = f"Large{next(_names)}"
    folder = attack.server.mailDir(ATTACKER) / f".{name}"
    for sub in ("cur", "new", "tmp"):
        (folder / sub).mkdir(parents=True)
    (folder / "maildirfolder").touch()
    original = largeMessage(attack.server)
    size = original.stat().st_size
    os.link(original, folder / "cur" / f"1600000000.M1P3Q1.large,S={size}:2,S")
    return name


def readUntilTagged(client: IMAPClient, attack: Attack, tag: bytes) -> None:
    """Read as fast as the server sends, literals and all, up to C{tag}'s answer."""
    client.sock.settimeout(MAX_WINDOW + PROBE_TIMEOUT)
    tail = client.buffer
    ending = re.compile(rb"(?:^|\r\n)" + tag + rb" (?:OK|NO|BAD)\b")
    while not attack.stop.is_set() and not ending.search(tail):
        data = client.sock.recv(1 << 20)
        if not data:
            raise ConnectionError("the server closed the connection")
        tail = tail[-64:] + data


def searchLargeMessage(attack: Attack) -> None:
    """SEARCH TEXT through a message of 40 MB: its 30 MB of base64 text decoded and searched."""
    client = attack.imap(select=largeMessageFolder(attack))
    sendAndWait(client, attack, b"h SEARCH TEXT needle-not-there\r\n", b"h")


def fetchLargeMessagePart(attack: Attack) -> None:
    """The structure of a message of 40 MB and its text part decoded (22 MB), read at full speed."""
    client = attack.imap(select=largeMessageFolder(attack))
    client.sock.sendall(b"h FETCH 1 (BODYSTRUCTURE BINARY.PEEK[1])\r\n")
    attack.begun.set()
    readUntilTagged(client, attack, b"h")


def renameInbox(attack: Attack) -> None:
    """RENAME of a full INBOX (the attacker's other account's), which moves every message."""
    fillFolder(attack.server.originals, attack.server.mailDir(RENAMER), inbox=True)
    client = attack.imap(user=RENAMER, select="INBOX")
    client.command(b"UNSELECT")
    sendAndWait(client, attack, b"h RENAME INBOX Old%d\r\n" % next(_names), b"h")


ATTACKS: dict[str, Callable[[Attack], None]] = {
    "list-25-wildcard-pairs": listWildcards,
    "fetch-54kb-sequence-set": fetchSequenceSet,
    "compress-deflate-flood": compressFlood,
    "search-1500-large-literals": searchLiterals,
    "45-parallel-wrong-logins": parallelLogins,
    "search-2000-nots": search(b"SEARCH " + b"NOT " * 2000 + b"ALL"),
    "search-500-nested-parentheses": search(b"SEARCH " + b"(" * 500 + b"ALL" + b")" * 500),
    "search-3000-ors": search(b"SEARCH " + b"OR ALL " * 3000 + b"ALL"),
    "deeply-nested-mime-searched-and-fetched": deepMime,
    "smtp-slowloris": smtpSlowloris,
    "smtp-early-talker": earlyTalker,
    "search-text-large-folder": search(b"SEARCH TEXT needle-not-there"),
    "sort-large-folder": search(b"SORT (REVERSE SUBJECT FROM) UTF-8 TEXT lorem"),
    "thread-large-folder": search(b"THREAD REFERENCES UTF-8 TEXT lorem"),
    "store-flags-of-every-message": storeEveryMessage,
    "copy-every-message": copyEveryMessage,
    "move-every-message": moveEveryMessage,
    "expunge-every-message": expungeEveryMessage(b"EXPUNGE"),
    "uid-expunge-every-message": expungeEveryMessage(b"UID EXPUNGE 1:*"),
    "close-expunging-every-message": expungeEveryMessage(b"CLOSE"),
    "fetch-setting-seen-on-every-message": fetchSettingSeen,
    "status-size-of-a-large-folder": search(b"STATUS INBOX (MESSAGES UNSEEN SIZE)"),
    "list-status-of-300-folders": listStatusOfManyFolders,
    "delete-folder-of-3000-messages": deleteLargeFolder,
    "rename-inbox-of-3000-messages": renameInbox,
    "search-text-of-a-40mb-message": searchLargeMessage,
    "fetch-bodystructure-and-binary-part-of-a-40mb-message": fetchLargeMessagePart,
}


def underAttack(server: FairnessServer, name: str) -> str | None:
    """
    Run the attack C{name} while the victim probes; return what went wrong,
    if anything.  A server that did not serve the victim fairly may still be
    busy with the attack: it is started afresh.
    """
    victim = Victim(server)
    attack = Attack(ATTACKS[name], server)
    thread = attack.start()
    try:
        victim.probeWhile(attack)
    finally:
        attack.end(thread)
        victim.close()
    verdict = victim.verdict(name)
    if verdict is not None or attack.error is not None:
        server.restart()
    return verdict


def quietLatencies(server: FairnessServer, rounds: int = 5) -> Iterator[Probe]:
    """The victim's answers with nobody attacking: what the machine itself allows."""
    victim = Victim(server)
    try:
        for _ in range(rounds):
            victim.noop()
            victim.delivery()
    finally:
        victim.close()
    return iter(victim.probes)
