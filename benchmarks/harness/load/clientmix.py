"""
IMAP client mix (C{imap-client-mix}): what desktop and mobile clients send
into a folder they keep open, on realistic messages.

Ten clients, each with one session kept open on its own user's INBOX of 200
messages (L{seeding.realisticMessage}: text, text and HTML, attachments of
tens of KB, forwards, encoded words; LOGIN and SELECT before the clock
starts).  A client repeats a check of twelve commands: NOOP, the flags of
every message, UID SEARCH UNSEEN, the list view of a window of 25 messages
(ENVELOPE, BODYSTRUCTURE, header fields, size, INTERNALDATE), the first part
of one message, the HTML part of another's alternative, a whole message,
marking one read and another unread, APPEND of a new message, and deleting
and expunging the oldest, so the folder keeps its size.  The figure is IMAP
commands answered OK per second; C{lost} counts those that were not.
"""

from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass, field

from harness.load.imap import openSession
from harness.load.imapclient import ImapClient
from harness.load.seeding import fillRealistic, realisticMessage
from harness.load.sessions import FAILURES, Budget, Tally, counting, timedRound
from harness.model import Measurement, Scenario, users
from harness.processes import Running

#: Commands in one check of the folder.
CHECK_COMMANDS = 12
#: Messages in a list view's window.
WINDOW = 25
#: New messages a client has ready to APPEND (built before the clock starts).
APPENDS = 64

LIST_VIEW = (
    b"UID RFC822.SIZE INTERNALDATE FLAGS ENVELOPE BODYSTRUCTURE BODY.PEEK[HEADER.FIELDS "
    b"(DATE FROM TO CC SUBJECT MESSAGE-ID IN-REPLY-TO REFERENCES CONTENT-TYPE X-PRIORITY)]"
)


@dataclass
class MailClient:
    """One user's client: a session kept open on INBOX, checked again and again."""

    port: int
    user: str
    rng: random.Random
    appends: list[bytes]
    client: ImapClient | None = None

    async def open(self, tally: Tally) -> None:
        with counting(tally, 2) as steps:
            self.client = await openSession(self.port, self.user, steps)

    async def session(self, number: int, tally: Tally) -> None:
        if self.client is None:
            tally.lost += CHECK_COMMANDS
            return
        client = self.client
        with counting(tally, CHECK_COMMANDS) as steps:
            count = client.exists
            steps.count((await client.command(b"NOOP")).ok)
            steps.count((await client.command(b"FETCH 1:* (UID FLAGS)")).ok)
            steps.count((await client.command(b"UID SEARCH UNSEEN")).ok)
            first = self.rng.randrange(1, max(count - WINDOW, 1) + 1)
            last = min(first + WINDOW - 1, count)
            steps.count((await client.command(b"FETCH %d:%d (%s)" % (first, last, LIST_VIEW))).ok)
            read, html, whole, unread = (self.rng.randrange(1, count + 1) for _ in range(4))
            steps.count((await client.command(b"FETCH %d (BODY.PEEK[1])" % read)).ok)
            steps.count((await client.command(b"FETCH %d (BODY.PEEK[1.2])" % html)).ok)
            steps.count((await client.command(b"FETCH %d (BODY.PEEK[])" % whole)).ok)
            steps.count((await client.command(b"STORE %d +FLAGS.SILENT (\\Seen)" % read)).ok)
            steps.count((await client.command(b"STORE %d -FLAGS.SILENT (\\Seen)" % unread)).ok)
            appended = self.appends[number % len(self.appends)]
            steps.count((await client.command(b"APPEND INBOX ()", appended)).ok)
            steps.count((await client.command(b"STORE 1 +FLAGS.SILENT (\\Deleted)")).ok)
            steps.count((await client.command(b"EXPUNGE")).ok)

    async def close(self) -> None:
        if self.client is not None:
            with contextlib.suppress(*FAILURES):
                await self.client.command(b"LOGOUT")
            self.client.close()
            self.client = None


@dataclass
class ClientMix:
    """C{imap-client-mix}: IMAP commands per second."""

    name: str
    clients: int
    messages: int
    budget: Budget
    unit: str = "commands/s"
    higherIsBetter: bool = True
    protocols: frozenset[str] = frozenset({"imap"})
    appends: dict[str, list[bytes]] = field(default_factory=dict)

    @property
    def userCount(self) -> int:
        return self.clients

    def seed(self, server: Running) -> None:
        for user in users(self.userCount):
            fillRealistic(server.maildirs[user], self.messages, user)

    def _appends(self, user: str) -> list[bytes]:
        if user not in self.appends:
            self.appends[user] = [
                realisticMessage(1_000_000 + n, user) for n in range(min(APPENDS, self.messages))
            ]
        return self.appends[user]

    def measure(self, server: Running) -> Measurement:
        port = server.ports["imap"]
        clients = [
            MailClient(port, user, random.Random(i), self._appends(user))
            for i, user in enumerate(users(self.userCount))
        ]
        return timedRound(server, clients, self.budget)

    def value(self, m: Measurement) -> float:
        return m.rate


def scenarios(size: str) -> list[Scenario]:
    clients, messages, budget = {
        "full": (10, 200, Budget(20, 100_000)),
        "quick": (10, 200, Budget(5, 100_000)),
        "smoke": (2, 30, Budget(0.2, 2)),
    }[size]
    return [ClientMix("imap-client-mix", clients, messages, budget)]
