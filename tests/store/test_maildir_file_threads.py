"""
A Maildir store doing its file work in threads keeps the reactor turning:
folder tree operations over many messages (renaming INBOX moves each file,
deleting a folder removes each file) and the first look at a large folder
answer with Deferreds while a timer keeps ticking on time.  Tree
operations asked for together run one at a time, in order.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.task import LoopingCall
from twisted.trial.unittest import TestCase

from tmail.errors import NoSuchFolder
from tmail.store.filework import ThreadedFileWork
from tmail.store.maildir import MaildirFolder, MaildirStore
from tmail.store.quota import QuotaLimits

#: Messages in the large folders: what took the reactor seconds to get through.
MANY = 20_000

#: The longest a 10 ms timer may wait, however loaded the machine (building
#: the index of what was listed still runs in the reactor thread).
MAX_GAP = 0.25


def fill(folder: Path, count: int) -> None:
    """Write C{count} small messages into a folder's C{cur/}, as another program would."""
    for sub in ("cur", "new", "tmp"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    cur = f"{folder / 'cur'}{os.sep}"
    for n in range(count):
        data = b"Subject: number %d\r\n\r\nbody\r\n" % n
        name = f"{1_700_000_000 + n}.M{n}P1Q1.test,S={len(data)}:2,S"
        fd = os.open(cur + name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)


def answered(deferred: Deferred[Any]) -> bool:
    """Whether C{deferred} has its result (not just been called and paused)."""
    seen: list[object] = []

    def see(result: object) -> object:
        seen.append(result)
        return result

    deferred.addBoth(see)
    return bool(seen)


class Ticks:
    """A 10 ms timer that records the longest wait between its calls."""

    def __init__(self) -> None:
        self.last = time.monotonic()
        self.longest = 0.0
        self.count = 0
        self.loop = LoopingCall(self.tick)

    def tick(self) -> None:
        now = time.monotonic()
        self.longest = max(self.longest, now - self.last)
        self.last = now
        self.count += 1

    def start(self) -> None:
        self.last = time.monotonic()
        self.loop.start(0.01, now=False)

    def stop(self) -> None:
        self.tick()
        self.loop.stop()


class ThreadedTreeTests(TestCase):
    def setUp(self) -> None:
        self.root = Path(self.mktemp())
        self.work = ThreadedFileWork(_reactor(), 2)
        self.work.startService()
        self.addCleanup(self.work.stopService)
        self.store = MaildirStore(
            self.root, quota=lambda: QuotaLimits(0, 10 * MANY), fileWork=self.work
        )
        self.ticks = Ticks()

    async def whileTicking(self, operation: Deferred[object]) -> object:
        self.assertFalse(answered(operation), "the store answered before any file work ran")
        self.ticks.start()
        try:
            return await operation
        finally:
            self.ticks.stop()

    def assertReactorKeptTurning(self) -> None:
        self.assertGreater(self.ticks.count, 1)
        self.assertLess(self.ticks.longest, MAX_GAP)

    async def test_renaming_an_inbox_of_many_messages_keeps_the_reactor_turning(self) -> None:
        await self.store.listFolders()
        fill(self.root, MANY)
        await self.whileTicking(self.store.renameFolder("INBOX", "Old"))
        self.assertReactorKeptTurning()
        self.assertEqual(os.listdir(self.root / "cur"), [])
        self.assertEqual(len(os.listdir(self.root / ".Old" / "cur")), MANY)

    async def test_deleting_a_folder_of_many_messages_keeps_the_reactor_turning(self) -> None:
        await self.store.createFolder("Big")
        fill(self.root / ".Big", MANY)
        await self.whileTicking(self.store.deleteFolder("Big"))
        self.assertReactorKeptTurning()
        self.assertEqual(await self.store.listFolders(), ["INBOX"])
        self.assertEqual([n for n in os.listdir(self.root / "tmp") if "deleted" in n], [])
        await self.assertFailure(self.store.getFolder("Big"), NoSuchFolder)

    async def test_first_look_at_a_large_folder_keeps_the_reactor_turning(self) -> None:
        if "Deferred" not in str(MaildirFolder.refresh.__annotations__.get("return")):
            self.skipTest("this MaildirFolder loads its index in the caller's thread")
        fill(self.root, MANY)
        folder = await self.whileTicking(self.store.getFolder("INBOX"))
        self.assertReactorKeptTurning()
        assert isinstance(folder, MaildirFolder)
        self.assertEqual(len(folder.messages()), MANY)

    async def test_tree_operations_asked_for_together_run_in_order(self) -> None:
        created = self.store.createFolder("A")
        renamed = self.store.renameFolder("A", "B")
        subscribed = self.store.subscribe("B")
        deleted = self.store.deleteFolder("B")
        self.assertFalse(answered(created))
        folder = await created
        await renamed
        self.assertEqual(folder.name, "B")
        await subscribed
        await deleted
        self.assertEqual(await self.store.listFolders(), ["INBOX"])
        self.assertEqual(await self.store.subscriptions(), ["B"])


def _reactor() -> IReactorFromThreads:
    assert IReactorFromThreads.providedBy(reactor)
    return reactor  # type: ignore[return-value]
