"""
A FETCH of index data only (C{UID FETCH 1:* (UID FLAGS)}) is written a
slice of lines at a time; when a message of a slice is missing from the
session's index, that slice is written message by message instead: every
other message of it is answered, the missing one left out, and the command
ends C{NO [EXPUNGEISSUED]} (RFC 5530), over a real C{imaplib} session.
"""

from __future__ import annotations

import imaplib
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from twisted.cred.portal import Portal
from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from support.net import inThread, listen
from tmail.auth.checker import DirectoryChecker
from tmail.auth.throttle import AuthThrottle
from tmail.config.schema import AuthSettings, IMAPSettings
from tmail.imap.factory import IMAPFactory
from tmail.interfaces import IMailStore, MessageInfo
from tmail.realm.memory import MemoryRealm
from tmail.steps import StepBudget
from tmail.store.listing import Listing
from tmail.store.memory import MemoryFolder, MemoryStore
from tmail.testing import passwdFileDirectory

ALICE = "alice@example.test"
PASSWORD = "alice's password"
MESSAGE = b"From: someone@remote.example\r\nSubject: one of many\r\n\r\nhi\r\n"

#: Enough messages for three slices; the lost one is in the second.
COUNT = 2 * StepBudget.ITEMS + 10
LOST = StepBudget.ITEMS + 5


class ListingWithoutOneEntry(Listing):
    """A listing whose look-up by UID lacks message L{LOST}, which it still lists."""

    def position(self, uid: int) -> int:
        return -1 if uid == LOST else super().position(uid)

    def flagsAtPositions(self, positions: Iterable[int]) -> list[frozenset[str]]:
        positions = list(positions)
        if self.position(LOST) < 0 and LOST - 1 in positions:
            raise KeyError(LOST)
        return super().flagsAtPositions(positions)


class LosesAnIndexEntry(MemoryFolder):
    def messages(self, claimRecent: bool = True) -> Sequence[MessageInfo]:
        return ListingWithoutOneEntry(super().messages(claimRecent))


class Realm(MemoryRealm):
    """Each user's INBOX holds L{COUNT} messages, one of them missing from its index."""

    def createStore(self, user: str) -> IMailStore:
        store = MemoryStore()
        inbox = store.folders["INBOX"]
        for index in range(COUNT):
            pending = inbox.beginMessage({"\\Seen"} if index % 2 else ())
            pending.write(MESSAGE)
            pending.commit()
        inbox.__class__ = LosesAnIndexEntry
        return store


def uidFlags(port: int) -> tuple[str, list[bytes]]:
    client = imaplib.IMAP4("127.0.0.1", port, timeout=10)
    try:
        client.login(ALICE, PASSWORD)
        client.select("INBOX")
        status, said = client.uid("FETCH", "1:*", "(UID FLAGS)")
        _, fetched = client.response("FETCH")
        return status, [item for item in [*fetched, *said] if isinstance(item, bytes)]
    finally:
        client.logout()


class IndexSliceFallbackTests(TestCase):
    timeout = 60

    async def test_slice_with_a_missing_index_entry_answers_its_other_messages(self) -> None:
        directory = passwdFileDirectory(Path(self.mktemp()), {ALICE: PASSWORD.encode()}, {})
        realm = Realm(directory)
        factory = IMAPFactory(
            Portal(realm, [DirectoryChecker(directory)]),
            IMAPSettings(),
            tlsContextFactory=None,
            throttle=AuthThrottle(AuthSettings(failure_delay=0), reactor),
            hostname="mail.example.test",
        )
        status, lines = await inThread(uidFlags, await listen(self, factory))
        self.assertEqual(status, "NO")
        self.assertIn(b"[EXPUNGEISSUED]", lines[-1])
        answered = [
            re.match(rb"(\d+) \(UID (\d+) FLAGS \(([^)]*)\)\)\Z", line) for line in lines[:-1]
        ]
        self.assertNotIn(None, answered)
        uids = [int(match.group(2)) for match in answered if match]
        expected = [uid for uid in range(1, COUNT + 1) if uid != LOST]
        self.assertEqual(uids, expected)
        self.assertEqual([int(match.group(1)) for match in answered if match], expected)
        seen = [b"\\Seen" in match.group(3).split() for match in answered if match]
        self.assertEqual(seen, [uid % 2 == 0 for uid in expected])
