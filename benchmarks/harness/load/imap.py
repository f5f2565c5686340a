"""
IMAP session mix (C{imap-mix}, C{imap-mix-open}) and, from L{harness.load.large},
the large-folder timings.

Ten clients share fifty users (each user belongs to one client, so no two
sessions race on a folder).  A session does what a mail client does on a
check: LOGIN, SELECT, FETCH the flags, FETCH the headers, FETCH three whole
bodies, mark one read, APPEND a message, delete and EXPUNGE the oldest, and
LOGOUT; the folder keeps its size.  C{imap-mix-open} keeps one session per
user open and repeats the work between LOGIN and LOGOUT.  The figure is IMAP
commands answered OK per second; C{lost} counts commands that were not.
"""

from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass, field

from harness.load import large
from harness.load.imapclient import ImapClient, ProtocolError
from harness.load.seeding import fillMaildir, message, sizeFor
from harness.load.sessions import FAILURES, Budget, Steps, Tally, counting, timedRound
from harness.model import Measurement, Scenario, users
from harness.processes import Running

CLIENTS = 10
USERS = 50
MESSAGES = 20
#: Commands in the folder work of a session, and around it (LOGIN, SELECT, LOGOUT).
WORK_COMMANDS = 7
SESSION_COMMANDS = WORK_COMMANDS + 3

HEADERS = b"BODY.PEEK[HEADER.FIELDS (DATE FROM TO SUBJECT MESSAGE-ID)]"


async def folderWork(client: ImapClient, rng: random.Random, steps: Steps) -> None:
    """The seven commands a client sends into a selected INBOX."""
    count = client.exists
    steps.count((await client.command(b"FETCH 1:%d (FLAGS)" % count)).ok)
    steps.count((await client.command(b"FETCH 1:%d (UID RFC822.SIZE %s)" % (count, HEADERS))).ok)
    picks = rng.sample(range(1, count + 1), min(3, count))
    bodies = b",".join(b"%d" % n for n in picks)
    steps.count((await client.command(b"FETCH %s (BODY.PEEK[])" % bodies)).ok)
    steps.count((await client.command(b"STORE %d +FLAGS.SILENT (\\Seen)" % picks[0])).ok)
    number = rng.randrange(1_000_000, 2_000_000)
    appended = message(number, sizeFor(number))
    steps.count((await client.command(b"APPEND INBOX (\\Seen)", appended)).ok)
    steps.count((await client.command(b"STORE 1 +FLAGS.SILENT (\\Deleted)")).ok)
    steps.count((await client.command(b"EXPUNGE")).ok)


async def openSession(port: int, user: str, steps: Steps) -> ImapClient:
    """Connect, LOGIN and SELECT INBOX."""
    client = await ImapClient.connect(port)
    try:
        if not steps.count((await client.login(user)).ok):
            raise ProtocolError(f"LOGIN {user} refused")
        if not steps.count((await client.command(b"SELECT INBOX")).ok) or client.exists == 0:
            raise ProtocolError(f"SELECT INBOX of {user} failed or found it empty")
    except BaseException:
        client.close()
        raise
    return client


@dataclass
class SessionPerCheck:
    """A client that opens a new session for every check of a mailbox."""

    port: int
    users: list[str]
    rng: random.Random

    async def open(self, tally: Tally) -> None:
        pass

    async def session(self, number: int, tally: Tally) -> None:
        with counting(tally, SESSION_COMMANDS) as steps:
            client = await openSession(self.port, self.users[number % len(self.users)], steps)
            try:
                await folderWork(client, self.rng, steps)
                steps.count((await client.command(b"LOGOUT")).ok)
            finally:
                client.close()

    async def close(self) -> None:
        pass


@dataclass
class OpenSessions:
    """A client that keeps a session open per user and checks them in turn."""

    port: int
    users: list[str]
    rng: random.Random
    clients: list[ImapClient] = field(default_factory=list)

    async def open(self, tally: Tally) -> None:
        for user in self.users:
            with counting(tally, 2) as steps:
                self.clients.append(await openSession(self.port, user, steps))

    async def session(self, number: int, tally: Tally) -> None:
        if not self.clients:
            tally.lost += WORK_COMMANDS
            return
        with counting(tally, WORK_COMMANDS) as steps:
            await folderWork(self.clients[number % len(self.clients)], self.rng, steps)

    async def close(self) -> None:
        for client in self.clients:
            with contextlib.suppress(*FAILURES):
                await client.command(b"LOGOUT")
            client.close()
        self.clients.clear()


@dataclass
class ImapMix:
    """C{imap-mix} and C{imap-mix-open}: IMAP commands per second."""

    name: str
    keepOpen: bool
    budget: Budget
    unit: str = "commands/s"
    higherIsBetter: bool = True
    protocols: frozenset[str] = frozenset({"imap"})
    userCount: int = USERS

    def seed(self, server: Running) -> None:
        for user in users(self.userCount):
            fillMaildir(server.maildirs[user], MESSAGES)

    def measure(self, server: Running) -> Measurement:
        everyone = users(self.userCount)
        kind = OpenSessions if self.keepOpen else SessionPerCheck
        clients = [
            kind(server.ports["imap"], everyone[i::CLIENTS], random.Random(i))
            for i in range(CLIENTS)
        ]
        return timedRound(server, clients, self.budget)

    def value(self, m: Measurement) -> float:
        return m.rate


def scenarios(size: str) -> list[Scenario]:
    budget = {"full": Budget(20, 100_000), "quick": Budget(5, 100_000), "smoke": Budget(0.2, 2)}[
        size
    ]
    return [
        ImapMix("imap-mix", False, budget),
        ImapMix("imap-mix-open", True, budget),
        *large.scenarios(size),
    ]
