"""
SMTP receive and store: unique 4 KB messages sent over N concurrent
connections by a raw-SMTP asyncio client, counted once their file is in the
recipient's Maildir C{new/}.

A message counts as delivered only when its file is there, for every peer:
tmail and aiosmtpd store before their C{250}, Postfix queues first and
delivers later, so the clock runs until the last file appears.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path

from harness.model import Measurement, users
from harness.processes import Running

#: Size of each message as the recipient's copy starts (before trace headers).
MESSAGE_SIZE = 4096
SENDER = "sender@client.test"
CONNECT_TIMEOUT = 10.0
REPLY_TIMEOUT = 60.0
#: The whole client run stops here; what is unsent by then is lost.
CLIENT_DEADLINE = 600.0
#: How long accepted messages may take to reach C{new/} after the last C{250}.
DELIVERY_TIMEOUT = 120.0
POLL_INTERVAL = 0.05

_TEXT = (
    "the mail server accepts each message and writes it to disk before it answers so "
    "nothing is lost when power fails a queue holds what cannot be delivered yet and "
    "every recipient gets a copy in the folder named new until a reader moves it "
    "meeting notes agenda budget review quarterly report schedule project deadline "
    "please find attached thanks regards tomorrow morning afternoon office"
)
_WORDS = _TEXT.split()


def _textLines(rng: random.Random, count: int) -> list[bytes]:
    """Lines of plain prose, 40-76 characters; a few start with a dot."""
    lines = []
    for number in range(count):
        words: list[str] = []
        target = rng.randint(40, 76)
        while len(" ".join(words)) < target:
            words.append(rng.choice(_WORDS))
        line = " ".join(words)[:76]
        lines.append(("." + line[1:] if number % 40 == 7 else line).encode())
    return lines


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message ready for the wire: its recipient, envelope and dot-stuffed DATA."""

    recipient: str
    mailFrom: bytes
    rcptTo: bytes
    data: bytes


def buildMessages(count: int, recipients: list[str], token: str) -> list[Outgoing]:
    """
    C{count} unique messages of L{MESSAGE_SIZE} bytes with realistic headers,
    recipients taken in turn; C{token} makes them unique across rounds.
    """
    rng = random.Random(token)
    pool = _textLines(rng, 400)
    filler = b" ".join(pool)
    date = formatdate()
    messages = []
    for index in range(count):
        recipient = recipients[index % len(recipients)]
        head = (
            f"From: Bench Sender <{SENDER}>\r\nTo: <{recipient}>\r\n"
            f"Subject: Load test {token} message {index}\r\nDate: {date}\r\n"
            f"Message-ID: <{token}.{index}@client.test>\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
        ).encode()
        lines, size = [], len(head) + 2  # the last line's CRLF
        while size + len(line := rng.choice(pool)) + 2 <= MESSAGE_SIZE:
            lines.append(line)
            size += len(line) + 2
        lines.append(filler[: MESSAGE_SIZE - size])
        body = b"".join(
            b"." + line + b"\r\n" if line.startswith(b".") else line + b"\r\n" for line in lines
        )
        messages.append(
            Outgoing(
                recipient,
                f"MAIL FROM:<{SENDER}>\r\n".encode(),
                f"RCPT TO:<{recipient}>\r\n".encode(),
                head + body + b".\r\n",
            )
        )
    return messages


class SmtpError(Exception):
    """The server closed the connection or answered something unreadable."""


class Connection:
    """A client SMTP session that sends messages one after another."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port), CONNECT_TIMEOUT
        )
        connection = cls(reader, writer)
        try:
            if (
                await connection.reply() != 220
                or await connection.command(b"EHLO client.test\r\n") != 250
            ):
                raise SmtpError("greeting or EHLO refused")
        except BaseException:
            connection.close()
            raise
        return connection

    async def reply(self) -> int:
        """The code of the next (possibly multi-line) reply."""
        while True:
            line = await asyncio.wait_for(self.reader.readline(), REPLY_TIMEOUT)
            if len(line) < 4 or not line[:3].isdigit():
                raise SmtpError(f"bad reply {line[:80]!r}")
            if line[3:4] != b"-":
                return int(line[:3])

    async def command(self, line: bytes) -> int:
        self.writer.write(line)
        return await self.reply()

    async def send(self, message: Outgoing) -> bool:
        """Send one message; C{True} if it got its C{250}."""
        if (
            await self.command(message.mailFrom) != 250
            or await self.command(message.rcptTo) not in (250, 251)
            or await self.command(b"DATA\r\n") != 354
        ):
            await self.command(b"RSET\r\n")
            return False
        return await self.command(message.data) == 250

    async def quit(self) -> None:
        with contextlib.suppress(OSError, TimeoutError, SmtpError):
            await self.command(b"QUIT\r\n")
        self.close()

    def close(self) -> None:
        self.writer.close()


@dataclass
class Tally:
    """What the client saw: C{250}s per recipient and when the last one came."""

    accepted: Counter[str] = field(default_factory=Counter)
    lastAccept: float = 0.0


async def _sender(port: int, queue: Iterator[Outgoing], tally: Tally) -> None:
    """Take messages from the shared queue until it is empty; reconnect after a failure."""
    connection: Connection | None = None
    try:
        for message in queue:
            try:
                if connection is None:
                    connection = await Connection.open(port)
                if await connection.send(message):
                    tally.accepted[message.recipient] += 1
                    tally.lastAccept = time.perf_counter()
            except (OSError, TimeoutError, SmtpError):
                if connection is not None:
                    connection.close()
                connection = None
        if connection is not None:
            await connection.quit()
            connection = None
    finally:
        if connection is not None:
            connection.close()


async def sendAll(port: int, messages: list[Outgoing], connections: int) -> Tally:
    """Send C{messages} over C{connections} sessions sharing one queue."""
    tally = Tally()
    queue = iter(messages)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(CLIENT_DEADLINE):
            await asyncio.gather(*(_sender(port, queue, tally) for _ in range(connections)))
    return tally


def countNew(maildir: Path) -> int:
    """Files in a Maildir's C{new/} (0 before the Maildir exists)."""
    try:
        return len(os.listdir(maildir / "new"))
    except FileNotFoundError:
        return 0


def waitForDelivery(
    maildirs: dict[str, Path], baseline: dict[str, int], expected: Counter[str], timeout: float
) -> tuple[int, float]:
    """
    Poll until each user's C{new/} holds its C{expected} new files, or
    C{timeout}; returns the new files found and when the poll saw them.
    """
    deadline = time.perf_counter() + timeout
    waiting = {user for user in baseline if expected[user]}
    found = dict.fromkeys(baseline, 0)
    while True:
        for user in list(waiting):
            found[user] = countNew(maildirs[user]) - baseline[user]
            if found[user] >= expected[user]:
                waiting.discard(user)
        now = time.perf_counter()
        if not waiting or now > deadline:
            return sum(found.values()), now
        time.sleep(POLL_INTERVAL)


@dataclass
class SmtpScenario:
    """C{messages} messages over C{connections} concurrent SMTP sessions."""

    name: str
    messages: int
    connections: int
    userCount: int = 10
    unit: str = "msg/s"
    higherIsBetter: bool = True
    protocols: frozenset[str] = frozenset({"smtp"})

    def seed(self, server: Running) -> None:
        """Nothing to seed: the scenario brings its own mail."""

    def measure(self, server: Running) -> Measurement:
        recipients = users(self.userCount)
        token = f"{os.getpid()}.{time.time_ns()}"
        messages = buildMessages(self.messages, recipients, token)
        baseline = {user: countNew(server.maildirs[user]) for user in recipients}
        cpuBefore = server.cpuSeconds()
        start = time.perf_counter()
        tally = asyncio.run(sendAll(server.ports["smtp"], messages, self.connections))
        found, end = waitForDelivery(server.maildirs, baseline, tally.accepted, DELIVERY_TIMEOUT)
        cpuSeconds = server.cpuSeconds() - cpuBefore
        accepted = tally.accepted.total()
        acceptSeconds = tally.lastAccept - start
        return Measurement(
            ops=min(found, self.messages),
            seconds=end - start,
            cpuSeconds=cpuSeconds,
            lost=max(0, self.messages - found),
            extra={
                "accepted": accepted,
                "accept_rate": accepted / acceptSeconds if accepted else 0.0,
                "rss_mb": server.rssBytes() / 1e6,
            },
        )

    def value(self, m: Measurement) -> float:
        return m.rate


#: size -> (messages over 20 connections, messages over 1 connection)
SIZES = {"full": (5000, 5000), "quick": (1000, 300), "smoke": (40, 10)}


def scenarios(size: str) -> list[SmtpScenario]:
    many, one = SIZES[size]
    return [SmtpScenario("smtp-20conn", many, 20), SmtpScenario("smtp-1conn", one, 1)]
