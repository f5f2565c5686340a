"""
STORE, COPY, MOVE, EXPUNGE, UID EXPUNGE, CLOSE, a FETCH that sets
C{\\Seen}, LIST-STATUS, DELETE and RENAME of INBOX run a slice at a time
among the other sessions' work (each used to run at one go: a rename and a
log line, or a link and a uidlist line, per message, all in one reactor
turn), and a FETCH of small items is streamed a slice per step too.

Here a cooperator runs one step per turn the test takes, so each command
can be seen half done: the answers are the ones the commands gave at one
go, the session's view holds until the command ends (no EXPUNGE before
it), what another session changes meanwhile is kept as the per-message code
kept it, and a client that goes away stops the work, save what must not
stay half done (a COPY's copies are expunged again; a MOVE whose copies are
all made still removes the originals; DELETE and RENAME finish).
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

from test_imap_protocol import Session
from twisted.internet import reactor, task
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import Cooperator, deferLater
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from support.imaploop import listenIMAP
from support.net import eventually, inThread, readLine
from support.realm import ALICE, PASSWORD, makeRealm
from tmail.interfaces import IMailFolder
from tmail.steps import StepBudget


def fill(maildir: Path, count: int, letters: str = "S") -> None:
    """Write C{count} messages into a Maildir folder's C{cur/}, as another program would."""
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    for n in range(count):
        data = b"Subject: number %d\r\n\r\nbody %d\r\n" % (n, n)
        name = f"{1_700_000_000 + n}.M{n}P1Q1.test,S={len(data)}:2,{letters}"
        (maildir / "cur" / name).write_bytes(data)


def flagged(folder: IMailFolder, flag: str) -> int:
    return sum(1 for info in folder.messages() if flag in info.flags)


class _Turn:
    """One scheduled turn of a cooperator."""

    def __init__(self, call: Callable[[], None]) -> None:
        self.call = call
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Turns:
    """A cooperator's scheduler whose turns the test takes, one step each."""

    def __init__(self) -> None:
        self.pending: list[_Turn] = []

    def schedule(self, call: Callable[[], None]) -> Any:
        scheduled = _Turn(call)
        self.pending.append(scheduled)
        return scheduled

    def turn(self) -> bool:
        """Take one turn; whether there was one to take."""
        while self.pending:
            scheduled = self.pending.pop(0)
            if not scheduled.cancelled:
                scheduled.call()
                return True
        return False


class SlicedTestCase(SynchronousTestCase):
    """A session whose long commands advance one step per turn the test takes."""

    def setUp(self) -> None:
        self.session = Session(self)
        self.turns = Turns()
        self.session.server.cooperator = Cooperator(
            terminationPredicateFactory=lambda: lambda: True,
            scheduler=self.turns.schedule,
            started=True,
        )
        self.store = self.session.store
        self.root: Path = self.store.root
        self.inbox = self.store.getFolder("INBOX")

    def start(self, command: bytes, steps: int = 1) -> bytes:
        """Send a command and let it take C{steps} steps; what it wrote so far."""
        self.session.server.dataReceived(command + b"\r\n")
        self.session.pump()
        for _ in range(steps):
            self.turns.turn()
            self.session.pump()
        return self.session.take()

    def finish(self) -> bytes:
        """Let everything pending run; what the session wrote."""
        self.session.pump()
        while self.turns.turn():
            self.session.pump()
        return self.session.take()

    def hangUp(self) -> None:
        self.session.server.connectionLost(Failure(ConnectionError("gone")))

    def other(self, name: str = "INBOX") -> IMailFolder:
        """The folder as another session (sharing the process's index) changes it."""
        folder: IMailFolder = self.store.getFolder(name)
        return folder


class StoreTests(SlicedTestCase):
    COUNT = 2000

    def setUp(self) -> None:
        super().setUp()
        fill(self.root, self.COUNT)
        self.session.select()

    def test_store_on_thousands_of_messages_answers_as_at_one_go(self) -> None:
        partial = self.start(b"a STORE 1:* +FLAGS (\\Flagged)")
        self.assertEqual(partial, b"")
        self.assertTrue(0 < flagged(self.inbox, "\\Flagged") < self.COUNT)
        expected = b"".join(
            b"* %d FETCH (FLAGS (\\Flagged \\Seen))\r\n" % n for n in range(1, self.COUNT + 1)
        )
        self.assertEqual(self.finish(), expected + b"a OK STORE completed\r\n")
        self.assertEqual(flagged(self.inbox, "\\Flagged"), self.COUNT)

    def test_store_keeps_what_another_session_changes_meanwhile(self) -> None:
        """
        A flag another session adds to a message not reached yet stays, and
        the client hears of it before the tagged answer; a message expunged
        meanwhile gets no FETCH, and its EXPUNGE waits for a later command
        (RFC 3501 7.4.1).
        """
        uids = [info.uid for info in self.inbox.messages()]
        self.start(b"a STORE 1:* +FLAGS.SILENT (\\Flagged)")
        other = self.other()
        other.changeFlags(uids[-2], ["\\Answered"], [])  # type: ignore[attr-defined]
        other.expunge([uids[-1]])
        answer = self.finish()
        self.assertNotIn(b"EXPUNGE", answer)
        self.assertEqual(
            answer,
            b"* %d FETCH (FLAGS (\\Answered \\Flagged \\Seen))\r\na OK STORE completed\r\n"
            % (self.COUNT - 1),
        )
        self.assertEqual(
            self.session.send(b"n NOOP\r\n"),
            b"* %d EXPUNGE\r\n* %d EXISTS\r\n* 0 RECENT\r\nn OK NOOP completed\r\n"
            % (self.COUNT, self.COUNT - 1),
        )

    def test_conditional_store_in_slices_names_what_changed_since(self) -> None:
        uids = [info.uid for info in self.inbox.messages()]
        since = self.inbox.highestModSeq()  # type: ignore[attr-defined]
        self.start(b"a STORE 1:* (UNCHANGEDSINCE %d) +FLAGS.SILENT (\\Flagged)" % since)
        self.other().changeFlags(uids[-1], ["\\Answered"], [])  # type: ignore[attr-defined]
        answer = self.finish()
        self.assertTrue(
            answer.endswith(b"a OK [MODIFIED %d] Conditional STORE failed\r\n" % self.COUNT), answer
        )
        self.assertEqual(answer.count(b" FETCH (MODSEQ ("), self.COUNT - 1)
        self.assertEqual(flagged(self.inbox, "\\Flagged"), self.COUNT - 1)

    def test_a_client_hanging_up_during_a_long_store_stops_it(self) -> None:
        """The changes made so far stay made, as after a crash; no more are made."""
        self.start(b"a STORE 1:* +FLAGS (\\Flagged)")
        self.hangUp()
        done = flagged(self.inbox, "\\Flagged")
        self.finish()
        self.assertEqual(flagged(self.inbox, "\\Flagged"), done)
        self.assertTrue(0 < done < self.COUNT, done)

    def test_fetch_setting_seen_on_thousands_of_messages_answers_as_at_one_go(self) -> None:
        self.start(b"a STORE 1:* -FLAGS.SILENT (\\Seen)")
        self.finish()
        partial = self.start(b"f FETCH 1:* (BODY[HEADER.FIELDS (SUBJECT)])")
        self.assertEqual(partial, b"")
        self.assertTrue(0 < flagged(self.inbox, "\\Seen") < self.COUNT)
        answer = self.finish()
        self.assertEqual(answer.count(b" FETCH (BODY[HEADER.FIELDS (SUBJECT)] {"), self.COUNT)
        self.assertEqual(answer.count(b"\r\n\r\n FLAGS (\\Seen))\r\n"), self.COUNT)
        self.assertTrue(answer.endswith(b"f OK FETCH completed\r\n"))
        self.assertEqual(flagged(self.inbox, "\\Seen"), self.COUNT)

    def test_fetch_of_many_small_responses_is_streamed_a_slice_per_step(self) -> None:
        """Not only a full buffer ends a FETCH step: so does the step's budget."""
        self.patch(StepBudget, "ITEMS", 100)
        partial = self.start(b"f FETCH 1:* (UID FLAGS)")
        self.assertTrue(0 < partial.count(b" FETCH (") <= 100, partial.count(b" FETCH ("))
        answer = partial + self.finish()
        expected = b"".join(
            b"* %d FETCH (UID %d FLAGS (\\Seen))\r\n" % (n, n) for n in range(1, self.COUNT + 1)
        )
        self.assertEqual(answer, expected + b"f OK FETCH completed\r\n")


class CopyTests(SlicedTestCase):
    COUNT = 600

    def setUp(self) -> None:
        super().setUp()
        fill(self.root, self.COUNT)
        self.target = self.store.createFolder("Target")
        self.session.select()

    def test_copy_of_hundreds_of_messages_answers_as_at_one_go(self) -> None:
        self.assertEqual(self.start(b"a COPY 1:* Target"), b"")
        self.assertTrue(0 < len(self.target.messages()) < self.COUNT)
        self.assertEqual(
            self.finish(),
            b"a OK [COPYUID %d 1:%d 1:%d] COPY completed\r\n"
            % (self.target.uidValidity(), self.COUNT, self.COUNT),
        )
        self.assertEqual(len(self.target.messages()), self.COUNT)

    def test_copy_expunges_its_copies_when_a_message_goes_meanwhile(self) -> None:
        uids = [info.uid for info in self.inbox.messages()]
        self.start(b"a COPY 1:* Target")
        self.other().expunge([uids[-1]])
        # The client hears of the expunge at the tagged answer, as COPY allows.
        self.assertEqual(
            self.finish(),
            b"* %d EXPUNGE\r\n* %d EXISTS\r\n* 0 RECENT\r\n" % (self.COUNT, self.COUNT - 1)
            + b"a NO [EXPUNGEISSUED] Some of the requested messages no longer exist\r\n",
        )
        self.assertEqual(self.target.messages(), ())

    def test_a_client_hanging_up_during_a_long_copy_stops_it_and_expunges_the_copies(
        self,
    ) -> None:
        self.start(b"a COPY 1:* Target", steps=3)
        self.assertTrue(0 < len(self.target.messages()) < self.COUNT)
        self.hangUp()
        self.finish()
        self.assertEqual(self.target.messages(), ())
        self.assertEqual(len(self.inbox.messages()), self.COUNT)

    def test_move_of_hundreds_of_messages_answers_as_at_one_go(self) -> None:
        self.assertEqual(self.start(b"a MOVE 1:* Target"), b"")
        answer = self.finish()
        expunges = b"".join(b"* %d EXPUNGE\r\n" % n for n in range(self.COUNT, 0, -1))
        self.assertEqual(
            answer,
            b"* OK [COPYUID %d 1:%d 1:%d] Moved\r\n"
            % (self.target.uidValidity(), self.COUNT, self.COUNT)
            + expunges
            + b"a OK MOVE completed\r\n",
        )
        self.assertEqual(self.inbox.messages(), ())
        self.assertEqual(len(self.target.messages()), self.COUNT)

    def test_a_client_hanging_up_during_a_moves_copies_leaves_both_folders_as_they_were(
        self,
    ) -> None:
        self.start(b"a MOVE 1:* Target", steps=3)
        self.hangUp()
        self.finish()
        self.assertEqual(self.target.messages(), ())
        self.assertEqual(len(self.inbox.messages()), self.COUNT)

    def test_a_client_hanging_up_once_every_copy_is_made_still_gets_its_move(self) -> None:
        written = self.start(b"a MOVE 1:* Target")
        while b"Moved" not in written:
            self.assertTrue(self.turns.turn())
            written += self.session.take()
        self.turns.turn()
        self.assertTrue(0 < len(self.inbox.messages()) < self.COUNT)
        self.hangUp()
        self.finish()
        self.assertEqual(self.inbox.messages(), ())
        self.assertEqual(len(self.target.messages()), self.COUNT)


class ExpungeTests(SlicedTestCase):
    COUNT = 2000

    def setUp(self) -> None:
        super().setUp()
        fill(self.root, self.COUNT, "ST")
        self.session.select()

    def test_expunge_of_thousands_of_messages_answers_as_at_one_go(self) -> None:
        """The folder loses them a slice at a time; the client hears of them all at the end."""
        self.assertEqual(self.start(b"a EXPUNGE", steps=2), b"")
        self.assertTrue(0 < len(self.inbox.messages()) < self.COUNT)
        expunges = b"".join(b"* %d EXPUNGE\r\n" % n for n in range(self.COUNT, 0, -1))
        self.assertEqual(self.finish(), expunges + b"a OK EXPUNGE completed\r\n")
        self.assertEqual(self.inbox.messages(), ())

    def test_expunge_leaves_a_message_another_session_undeletes_meanwhile(self) -> None:
        uids = [info.uid for info in self.inbox.messages()]
        self.start(b"a EXPUNGE")
        self.other().changeFlags(uids[-1], [], ["\\Deleted"])  # type: ignore[attr-defined]
        answer = self.finish()
        expunges = b"".join(b"* %d EXPUNGE\r\n" % n for n in range(self.COUNT - 1, 0, -1))
        self.assertEqual(
            answer, expunges + b"* 1 FETCH (FLAGS (\\Seen))\r\na OK EXPUNGE completed\r\n"
        )
        self.assertEqual([info.uid for info in self.inbox.messages()], [uids[-1]])

    def test_uid_expunge_of_thousands_under_qresync_answers_one_vanished(self) -> None:
        self.session.send(b"u UNSELECT\r\ne ENABLE QRESYNC\r\ns SELECT INBOX\r\n")
        self.start(b"a UID EXPUNGE 1001:*")
        self.assertEqual(
            self.finish(),
            b"* VANISHED 1001:%d\r\na OK UID EXPUNGE completed\r\n" % self.COUNT,
        )
        self.assertEqual(len(self.inbox.messages()), 1000)

    def test_close_of_thousands_of_deleted_messages_expunges_them_silently(self) -> None:
        self.assertEqual(self.start(b"a CLOSE"), b"")
        self.assertEqual(self.finish(), b"a OK CLOSE completed\r\n")
        self.assertEqual(self.inbox.messages(), ())
        self.assertEqual(self.session.server.state, "auth")

    def test_a_client_hanging_up_during_a_long_expunge_stops_it(self) -> None:
        self.start(b"a EXPUNGE", steps=2)
        self.hangUp()
        left = len(self.inbox.messages())
        self.finish()
        self.assertEqual(len(self.inbox.messages()), left)
        self.assertTrue(0 < left < self.COUNT, left)


class FolderTests(SlicedTestCase):
    def test_list_status_of_many_folders_answers_as_at_one_go(self) -> None:
        self.patch(StepBudget, "ITEMS", 3)
        names = [f"F{n:02d}" for n in range(20)]
        for name in names:
            self.store.createFolder(name)
        fill(self.root / ".F07", 5, "")
        self.session.loginDirectly()
        partial = self.start(b'a LIST "" "F*" RETURN (STATUS (MESSAGES UNSEEN))')
        self.assertTrue(0 < partial.count(b"* LIST ") <= 3, partial)
        answer = self.finish()
        lines = (partial + answer).split(b"\r\n")
        expected = []
        for name in names:
            unseen = 5 if name == "F07" else 0
            quoted = b'"%s"' % name.encode()
            expected.append(b'* LIST (\\HasNoChildren) "/" %s' % quoted)
            expected.append(b"* STATUS %s (MESSAGES %d UNSEEN %d)" % (quoted, unseen, unseen))
        self.assertEqual(lines, [*expected, b"a OK LIST completed", b""])

    def test_errors_of_a_rename_are_the_same(self) -> None:
        self.store.createFolder("Old")
        self.session.loginDirectly()
        answer = self.start(b"a RENAME INBOX Old") + self.finish()
        self.assertEqual(answer, b"a NO [ALREADYEXISTS] Mailbox already exists\r\n")
        answer = self.start(b"b RENAME Nothing Else") + self.finish()
        self.assertEqual(answer, b"b NO [NONEXISTENT] No such mailbox\r\n")

    def test_a_client_hanging_up_during_a_rename_of_inbox_still_gets_it_done(self) -> None:
        count = 2000
        fill(self.root, count)
        self.inbox.messages()
        self.session.loginDirectly()
        self.start(b"a RENAME INBOX Old", steps=2)
        self.hangUp()
        self.finish()
        self.assertEqual(self.inbox.messages(), ())
        self.assertEqual(len(self.store.getFolder("Old").messages()), count)

    def trash(self) -> list[Path]:
        return [path for path in (self.root / "tmp").iterdir() if path.is_dir()]

    def test_a_client_hanging_up_during_a_delete_still_frees_the_space(self) -> None:
        self.store.createFolder("Big")
        fill(self.root / ".Big", 3000)
        self.session.loginDirectly()
        self.start(b"a DELETE Big")
        self.hangUp()
        self.finish()
        self.assertEqual(self.trash(), [])

    def test_errors_of_a_delete_are_the_same(self) -> None:
        self.session.loginDirectly()
        answer = self.start(b"a DELETE INBOX") + self.finish()
        self.assertEqual(answer, b"a NO [CANNOT] INBOX cannot be deleted\r\n")
        answer = self.start(b"b DELETE Nothing") + self.finish()
        self.assertEqual(answer, b"b NO [NONEXISTENT] No such mailbox\r\n")


class HangupTests(TestCase):
    """Over loopback: the session notices its client going while a long command runs."""

    COUNT = 6000

    @inlineCallbacks
    def setUp(self) -> Generator[Deferred[Any], Any, None]:
        fixture = makeRealm(Path(self.mktemp()))
        store = fixture.store(ALICE)
        store.getFolder("INBOX")
        fill(store.root, self.COUNT)
        self.inbox = store.getFolder("INBOX")
        self.inbox.messages()
        self.target = store.createFolder("Target")
        self.sessions: list[Any] = []
        self.port = yield listenIMAP(self, fixture, self.sessions)

    @inlineCallbacks
    def hangUpDuring(self, command: bytes) -> Generator[Deferred[Any], Any, None]:
        """Send C{command}, hang up once it runs; it must be stopped, not finish."""
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=60)
        self.addCleanup(sock.close)
        yield inThread(readLine, sock)
        sock.sendall(b'a LOGIN %s "%s"\r\ns SELECT INBOX\r\n' % (ALICE.encode(), PASSWORD.encode()))
        sock.sendall(command + b"\r\n")
        yield eventually(lambda: any(s._running is not None for s in self.sessions))
        (session,) = [s for s in self.sessions if s._running is not None]
        outcome: list[Any] = []
        session._running.whenDone().addCallbacks(
            lambda _: outcome.append("finished"), lambda failure: outcome.append(failure.type)
        )
        sock.close()
        yield eventually(lambda: bool(outcome), within=5.0)
        self.assertEqual(outcome, [task.TaskStopped])

    @inlineCallbacks
    def test_a_client_hanging_up_stops_its_store(self) -> Generator[Deferred[Any], Any, None]:
        yield self.hangUpDuring(b"c STORE 1:* +FLAGS (\\Flagged)")
        done = flagged(self.inbox, "\\Flagged")
        yield deferLater(reactor, 0.2, lambda: None)
        self.assertEqual(flagged(self.inbox, "\\Flagged"), done)
        self.assertLess(done, self.COUNT)

    @inlineCallbacks
    def test_a_client_hanging_up_stops_its_copy_and_the_copies_go(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        yield self.hangUpDuring(b"c COPY 1:* Target")
        yield eventually(lambda: self.target.messages() == (), within=10.0)
        self.assertEqual(len(self.inbox.messages()), self.COUNT)
