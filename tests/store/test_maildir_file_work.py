"""
Maildir folders doing their file work in a thread pool: a lock another
process holds, or a slow disk, delays only the operations waiting on that
folder, and the operations asked of one folder complete in order.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from twisted.internet import reactor, task
from twisted.internet.defer import Deferred, gatherResults
from twisted.trial.unittest import TestCase

from tmail.interfaces import IMailStore, MessageInfo
from tmail.store.filework import ThreadedFileWork
from tmail.store.maildir import BlockingMaildirStore, MaildirFolder, MaildirStore
from tmail.testing import MailFolderTestsMixin
from tmail.testing.stateful import FolderModelTestsMixin

MESSAGE = b"From: a@example.test\r\nSubject: hi\r\n\r\nbody\r\n"

#: How long a lock is held elsewhere: long enough to see the reactor turn.
HELD = 1.0


def sleep(seconds: float) -> Deferred[None]:
    return task.deferLater(reactor, seconds, lambda: None)  # type: ignore[arg-type]


def finished(deferred: Deferred[Any]) -> list[Any]:
    """Filled with C{deferred}'s result once it has one (C{called} is true sooner when chained)."""
    outcome: list[Any] = []

    def keep(result: Any) -> Any:
        outcome.append(result)
        return result

    deferred.addBoth(keep)
    return outcome


class ThreadedMaildirFolderTests(TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.root = Path(self.mktemp())
        setup = BlockingMaildirStore(self.root)
        setup.getFolder("INBOX")
        setup.createFolder("Other")
        self.work = ThreadedFileWork(reactor, threads=4)  # type: ignore[arg-type]
        self.work.startService()
        self.addCleanup(self.work.stopService)

    async def folder(self, name: str) -> MaildirFolder:
        """Folder C{name} with threaded file work, its index loaded."""
        path = self.root if name == "INBOX" else self.root / f".{name}"
        folder = MaildirFolder(name, path, fileWork=self.work)
        await folder.refresh()
        return folder

    async def deliver(self, folder: MaildirFolder, body: bytes = MESSAGE) -> int:
        pending = folder.beginMessage()
        pending.write(body)
        uid: int = await pending.commit()  # type: ignore[misc]
        return uid

    def holdLock(self, folder: Path) -> Path:
        """
        Take the folder's uidlist dot-lock as another program (Dovecot)
        does: a plain lock file, live for two minutes (let go at the end of
        the test, before the threads waiting for it are stopped).
        """
        lock = folder / "dovecot-uidlist.lock"
        os.close(os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        self.addCleanup(lambda: lock.unlink(missing_ok=True))
        return lock

    def ticking(self) -> list[float]:
        """The times of a ticker's calls, every 10 ms for the rest of the test."""
        ticks: list[float] = []
        loop = task.LoopingCall(lambda: ticks.append(time.monotonic()))
        loop.start(0.01)
        self.addCleanup(loop.stop)
        return ticks

    async def test_a_commit_waits_for_a_lock_held_elsewhere_while_the_reactor_turns(self) -> None:
        inbox = await self.folder("INBOX")
        lock = self.holdLock(self.root)
        ticks = self.ticking()
        pending = inbox.beginMessage()
        pending.write(MESSAGE)
        committed: Deferred[int] = pending.commit()  # type: ignore[assignment]
        outcome = finished(committed)
        await sleep(HELD)
        self.assertEqual(outcome, [], "the commit did not wait for the uidlist lock")
        # The reactor kept turning while the commit waited: roughly 100 ticks.
        self.assertGreater(len(ticks), 20)
        os.unlink(lock)
        self.assertEqual(await committed, 1)
        self.assertEqual([m.uid for m in inbox.messages()], [1])

    async def test_a_lock_held_on_one_folder_does_not_hold_up_delivery_into_another(self) -> None:
        inbox = await self.folder("INBOX")
        other = await self.folder("Other")
        lock = self.holdLock(self.root)
        waiting = inbox.beginMessage()
        waiting.write(MESSAGE)
        held: Deferred[int] = waiting.commit()  # type: ignore[assignment]
        outcome = finished(held)
        started = time.monotonic()
        uids = [await self.deliver(other) for _ in range(3)]
        elapsed = time.monotonic() - started
        self.assertEqual(uids, [1, 2, 3])
        self.assertEqual(outcome, [])
        self.assertLess(elapsed, HELD * 10)
        os.unlink(lock)
        self.assertEqual(await held, 1)

    async def test_operations_on_one_folder_complete_in_the_order_asked(self) -> None:
        inbox = await self.folder("INBOX")
        for _ in range(3):
            await self.deliver(inbox)
        done: list[str] = []

        def track(result: Any, name: str) -> Any:
            done.append(name)
            return result

        pending = inbox.beginMessage()
        pending.write(MESSAGE)
        asked: list[tuple[str, Deferred[Any]]] = [
            ("seen", inbox.setFlags(1, ["\\Seen"])),
            ("flagged", inbox.changeFlags(1, ["\\Flagged"], ["\\Seen"])),
            ("refresh", inbox.refresh()),
            ("open", inbox.openMessage(2)),
            ("expunge", inbox.expunge([1, 3])),
            ("commit", pending.commit()),  # type: ignore[arg-type]
            ("answered", inbox.setFlags(2, ["\\Answered"])),
        ]
        for name, deferred in asked:
            deferred.addCallback(track, name)
        results = await gatherResults([deferred for _, deferred in asked])
        self.assertEqual(done, [name for name, _ in asked])
        seen, flagged, _, opened, expunged, uid, answered = results
        with opened:
            self.assertEqual(opened.read(), MESSAGE)
        self.assertIsInstance(seen, MessageInfo)
        self.assertEqual((seen.flags, flagged.flags), ({"\\Seen"}, {"\\Flagged"}))
        self.assertEqual((expunged, uid), ([1, 3], 4))
        self.assertEqual(answered.flags, {"\\Answered"})
        self.assertEqual(
            [(m.uid, m.flags) for m in inbox.messages()],
            [
                (2, {"\\Answered"}),
                (4, set()),
            ],
        )

    async def test_copies_both_ways_at_once_complete(self) -> None:
        inbox = await self.folder("INBOX")
        other = await self.folder("Other")
        await self.deliver(inbox, MESSAGE + b"inbox\r\n")
        await self.deliver(other, MESSAGE + b"other\r\n")
        copies = [
            copy
            for _ in range(3)
            for copy in (inbox.copyMessage(1, other), other.copyMessage(1, inbox))
        ]
        uids = await gatherResults(copies)  # type: ignore[arg-type]
        self.assertEqual(sorted(uids), [2, 2, 3, 3, 4, 4])
        for folder, origin in ((inbox, b"other"), (other, b"inbox")):
            for uid in (2, 3, 4):
                with await folder.openMessage(uid) as f:
                    self.assertEqual(f.read(), MESSAGE + origin + b"\r\n")

    async def test_index_readers_answer_while_an_operation_waits_for_a_lock(self) -> None:
        inbox = await self.folder("INBOX")
        await self.deliver(inbox)
        before = [m.key for m in inbox.messages()]
        lock = self.holdLock(self.root)
        pending = inbox.beginMessage()
        pending.write(MESSAGE)
        committed: Deferred[int] = pending.commit()  # type: ignore[assignment]
        await sleep(0.2)
        self.assertEqual([m.key for m in inbox.messages()], before)
        self.assertEqual(inbox.messageCount(), 1)
        self.assertEqual(inbox.uidNext(), 2)
        os.unlink(lock)
        await committed
        self.assertEqual(inbox.messageCount(), 2)

    async def test_messages_opened_together_are_opened_side_by_side(self) -> None:
        """
        Opens asked for together with nothing else in the folder's turn go
        to the file work at once, not one after another: a FETCH of many
        bodies waits for one trip, not one per message.
        """
        inbox = await self.folder("INBOX")
        uids = [await self.deliver(inbox, MESSAGE + b"%d\r\n" % n) for n in range(6)]
        asked: list[object] = []
        work = self.work

        class Counting:
            def run(self, function: Any, *args: Any) -> Deferred[Any]:
                asked.append(function)
                return work.run(function, *args)

        inbox._fileWork = Counting()  # type: ignore[assignment]
        opening = [inbox.openMessage(uid) for uid in uids]
        self.assertEqual(len(asked), len(uids), "every open was asked of the file work at once")
        for n, f in enumerate(await gatherResults(opening)):
            with f:
                self.assertEqual(f.read(), MESSAGE + b"%d\r\n" % n)

    async def test_a_message_another_program_renamed_is_still_opened(self) -> None:
        inbox = await self.folder("INBOX")
        uid = await self.deliver(inbox)
        (name,) = os.listdir(self.root / "new")
        os.rename(self.root / "new" / name, self.root / "cur" / f"{name}:2,S")
        with await inbox.openMessage(uid) as f:
            self.assertEqual(f.read(), MESSAGE)
        self.assertEqual(inbox.info(uid).flags, {"\\Seen"})

    async def test_a_change_of_the_folder_itself_waits_for_the_operations_asked_before(
        self,
    ) -> None:
        inbox = await self.folder("INBOX")
        lock = self.holdLock(self.root)
        pending = inbox.beginMessage()
        pending.write(MESSAGE)
        committed: Deferred[int] = pending.commit()  # type: ignore[assignment]
        order: list[str] = []
        committed.addCallback(lambda uid: order.append("commit") or uid)
        exclusive = inbox._exclusively(order.append, "exclusive")
        await sleep(0.2)
        self.assertEqual(order, [])
        os.unlink(lock)
        await gatherResults([committed, exclusive])
        self.assertEqual(order, ["commit", "exclusive"])


class _ThreadedStores(TestCase):
    """Makes L{_ThreadedFolderStore}s sharing one thread pool."""

    def setUp(self) -> None:
        self.work = ThreadedFileWork(reactor, threads=4)  # type: ignore[arg-type]
        self.work.startService()
        self.addCleanup(self.work.stopService)

    def makeStore(self) -> IMailStore:
        return MaildirStore(Path(self.mktemp()), fileWork=self.work)

    def reopenStore(self, store: IMailStore) -> IMailStore:
        assert isinstance(store, MaildirStore)
        return MaildirStore(store.root, fileWork=self.work)


class ThreadedMaildirFolderContractTests(_ThreadedStores, MailFolderTestsMixin):
    """The folder contract holds for folders doing their file work in threads."""

    timeout = 60


class ThreadedMaildirFolderModelTests(_ThreadedStores, FolderModelTestsMixin):
    """So do random sequences of operations checked against a model."""

    timeout = 300
