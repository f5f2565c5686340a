"""
POP3 sessions (C{pop3-sessions}): four clients over fifty users, each
session USER, PASS, STAT, UIDL, RETR of three messages and QUIT, without
DELE so the maildrop keeps its size.  The figure is sessions per second in
which every command got C{+OK}; C{lost} counts the others.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass

from harness.load.imapclient import STREAM_LIMIT, ProtocolError
from harness.load.seeding import fillMaildir
from harness.load.sessions import Budget, Tally, counting, timedRound
from harness.model import PASSWORD, Measurement, Scenario, users
from harness.processes import Running

CLIENTS = 4
USERS = 50
MESSAGES = 20
RETRIEVED = 3


class Pop3Client:
    """One POP3 connection: single-line and dot-terminated multi-line replies."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int, host: str = "127.0.0.1") -> Pop3Client:
        reader, writer = await asyncio.open_connection(host, port, limit=STREAM_LIMIT)
        client = cls(reader, writer)
        if not (await reader.readuntil(b"\r\n")).startswith(b"+OK"):
            client.close()
            raise ProtocolError("no POP3 greeting")
        return client

    async def command(self, line: bytes) -> bytes:
        """Send C{line}; its status line, or raise if it is not C{+OK}."""
        self.writer.write(line + b"\r\n")
        status = await self.reader.readuntil(b"\r\n")
        if not status.startswith(b"+OK"):
            raise ProtocolError(f"{line.split()[0]!r}: {status[:80]!r}")
        return status

    async def multiline(self, line: bytes) -> bytes:
        """Send C{line}; the dot-terminated body of its C{+OK} reply."""
        await self.command(line)
        chunks = []
        while True:
            # Every chunk ends in CRLF, so a chunk that is just ".\r\n" starts a line.
            chunk = await self.reader.readuntil(b".\r\n")
            chunks.append(chunk)
            if chunk == b".\r\n" or chunk.endswith(b"\r\n.\r\n"):
                return b"".join(chunks)

    def close(self) -> None:
        self.writer.close()


@dataclass
class Pop3Checker:
    """A client that checks its users' maildrops in turn, one session each."""

    port: int
    users: list[str]
    rng: random.Random

    async def open(self, tally: Tally) -> None:
        pass

    async def session(self, number: int, tally: Tally) -> None:
        with counting(tally, 1) as steps:
            client = await Pop3Client.connect(self.port)
            try:
                await client.command(b"USER " + self.users[number % len(self.users)].encode())
                await client.command(b"PASS " + PASSWORD.encode())
                count = int((await client.command(b"STAT")).split()[1])
                listing = await client.multiline(b"UIDL")
                if count < RETRIEVED or listing.count(b"\r\n") != count + 1:
                    raise ProtocolError(f"STAT {count} and UIDL disagree or too few messages")
                for which in self.rng.sample(range(1, count + 1), RETRIEVED):
                    await client.multiline(b"RETR %d" % which)
                await client.command(b"QUIT")
                steps.count(True)
            finally:
                client.close()

    async def close(self) -> None:
        pass


@dataclass
class Pop3Sessions:
    """C{pop3-sessions}: complete POP3 sessions per second."""

    budget: Budget
    name: str = "pop3-sessions"
    unit: str = "sessions/s"
    higherIsBetter: bool = True
    protocols: frozenset[str] = frozenset({"pop3"})
    userCount: int = USERS

    def seed(self, server: Running) -> None:
        for user in users(self.userCount):
            fillMaildir(server.maildirs[user], MESSAGES)

    def measure(self, server: Running) -> Measurement:
        everyone = users(self.userCount)
        clients = [
            Pop3Checker(server.ports["pop3"], everyone[i::CLIENTS], random.Random(i))
            for i in range(CLIENTS)
        ]
        return timedRound(server, clients, self.budget)

    def value(self, m: Measurement) -> float:
        return m.rate


def scenarios(size: str) -> list[Scenario]:
    budget = {"full": Budget(20, 100_000), "quick": Budget(5, 100_000), "smoke": Budget(0.2, 2)}[
        size
    ]
    return [Pop3Sessions(budget)]
