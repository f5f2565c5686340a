"""
MOVE and UID MOVE (RFC 6851): the messages are copied, then expunged from
the selected mailbox.  The client sees C{* OK [COPYUID ...]} first, then
the EXPUNGEs, then the tagged OK; other sessions see the EXPUNGEs when RFC
3501 lets them.  A move that cannot finish (missing target, over quota,
a message gone meanwhile) leaves both mailboxes as they were.
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import Any

from test_imap_protocol import MESSAGE, Session, deliver
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase, TestCase

from support.imaploop import imapclient, listenIMAP
from support.net import inThread
from support.realm import ALICE, makeRealm
from tmail.interfaces import IMailFolder
from tmail.store.quota import overrideFields


def uids(folder: IMailFolder) -> list[int]:
    return [info.uid for info in folder.messages()]


class MoveTranscriptTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.session = Session(self)
        self.store = self.session.store
        self.inbox = self.store.getFolder("INBOX")
        self.foo = self.store.createFolder("foo")

    def fill(self, count: int) -> None:
        for i in range(count):
            deliver(self.inbox, MESSAGE + b"number %d\r\n" % i)

    def test_rfc6851_uid_move_sends_copyuid_then_expunges_then_ok(self) -> None:
        """RFC 6851 4.1, with UIDs 2:4 of 5 messages for 42:69 of 100."""
        self.fill(5)
        self.session.select()
        reply = self.session.send(b"a UID MOVE 2:4 foo\r\n")
        self.assertEqual(
            reply,
            b"* OK [COPYUID %d 2:4 1:3] Moved\r\n"
            b"* 4 EXPUNGE\r\n* 3 EXPUNGE\r\n* 2 EXPUNGE\r\n"
            b"a OK MOVE completed\r\n" % self.foo.uidValidity(),
        )
        self.assertEqual(uids(self.inbox), [1, 5])
        self.assertEqual(uids(self.foo), [1, 2, 3])
        with self.foo.openMessage(1) as f:
            self.assertEqual(f.read(), MESSAGE + b"number 1\r\n")

    def test_rfc6851_move_by_sequence_numbers_keeps_flags(self) -> None:
        """RFC 6851 4.2: MOVE by sequence numbers; flags travel with the message."""
        self.fill(3)
        self.inbox.setFlags(2, ["\\Flagged", "$Work"])
        self.session.select()
        reply = self.session.send(b"a MOVE 2:3 foo\r\n")
        self.assertEqual(
            reply,
            b"* OK [COPYUID %d 2:3 1:2] Moved\r\n* 3 EXPUNGE\r\n* 2 EXPUNGE\r\n"
            b"a OK MOVE completed\r\n" % self.foo.uidValidity(),
        )
        self.assertEqual(self.foo.messages()[0].flags, frozenset({"\\Flagged", "$Work"}))
        self.assertEqual(
            self.session.send(b"b FETCH 1:* (UID)\r\n"),
            b"* 1 FETCH (UID 1)\r\nb OK FETCH completed\r\n",
        )

    def test_another_session_sees_the_expunges_at_its_next_noop_not_during_fetch(self) -> None:
        self.fill(3)
        watcher = Session(self, self.session.fixture)
        watcher.select()
        self.session.select()
        self.session.send(b"a MOVE 1 foo\r\n")
        reply = watcher.send(b"b FETCH 1:3 (UID)\r\n")
        self.assertNotIn(b"EXPUNGE", reply)
        self.assertEqual(
            watcher.send(b"c NOOP\r\n"),
            b"* 1 EXPUNGE\r\n* 2 EXISTS\r\n* 2 RECENT\r\nc OK NOOP completed\r\n",
        )
        self.assertEqual(watcher.send(b"d SELECT foo\r\n").count(b"* 1 EXISTS"), 1)

    def test_moving_into_the_selected_mailbox_gives_new_uids(self) -> None:
        self.fill(2)
        self.session.select()
        reply = self.session.send(b"a MOVE 1:2 INBOX\r\n")
        self.assertEqual(
            reply,
            b"* OK [COPYUID %d 1:2 3:4] Moved\r\n* 2 EXPUNGE\r\n* 1 EXPUNGE\r\n"
            b"* 2 EXISTS\r\n* 2 RECENT\r\na OK MOVE completed\r\n" % self.inbox.uidValidity(),
        )
        self.assertEqual(uids(self.inbox), [3, 4])

    def test_a_missing_target_is_trycreate_and_nothing_moves(self) -> None:
        self.fill(1)
        self.session.select()
        reply = self.session.send(b"a MOVE 1 Nowhere\r\nb UID MOVE 1 Nowhere\r\n")
        self.assertEqual(
            reply, b"a NO [TRYCREATE] No such mailbox\r\nb NO [TRYCREATE] No such mailbox\r\n"
        )
        self.assertEqual(uids(self.inbox), [1])

    def test_a_read_only_mailbox_refuses_move_and_copies_nothing(self) -> None:
        self.fill(1)
        self.session.loginDirectly()
        self.session.send(b"e EXAMINE INBOX\r\n")
        self.assertEqual(self.session.send(b"a MOVE 1 foo\r\n"), b"a NO Mailbox is read-only\r\n")
        self.assertEqual((uids(self.inbox), uids(self.foo)), ([1], []))

    def test_a_message_expunged_meanwhile_moves_nothing(self) -> None:
        """The vanished message's EXPUNGE is reported with the refusal."""
        self.fill(3)
        self.session.select()
        self.inbox.expunge([2])
        reply = self.session.send(b"a MOVE 1:3 foo\r\n")
        self.assertEqual(
            reply,
            b"* 2 EXPUNGE\r\n* 2 EXISTS\r\n* 2 RECENT\r\n"
            b"a NO [EXPUNGEISSUED] Some of the requested messages no longer exist\r\n",
        )
        self.assertEqual((uids(self.inbox), uids(self.foo)), ([1, 3], []))

    def test_over_quota_is_no_overquota_and_nothing_moves(self) -> None:
        """The copy half of a move counts against the quota: a full mailbox refuses it."""
        self.fill(3)
        fixture = self.session.fixture
        usage = self.store.quota()
        fixture.directory.setUserFields(
            ALICE, overrideFields({}, usage.storage + len(MESSAGE) + 20, None)
        )
        self.session.select()
        reply = self.session.send(b"a MOVE 1:3 foo\r\n")
        self.assertEqual(reply, b"a NO [OVERQUOTA] Quota exceeded (mailbox for user is full)\r\n")
        self.assertEqual((uids(self.inbox), uids(self.foo)), ([1, 2, 3], []))
        self.assertEqual(self.store.quota().messages, 3)

    def test_uids_that_match_nothing_move_nothing_and_say_ok(self) -> None:
        self.fill(1)
        self.session.select()
        self.assertEqual(self.session.send(b"a UID MOVE 7:9 foo\r\n"), b"a OK MOVE completed\r\n")

    def test_syntax_errors_and_wrong_states_are_bad(self) -> None:
        self.fill(1)
        self.session.loginDirectly()
        self.assertEqual(
            self.session.send(b"a MOVE 1 foo\r\n"), b"a BAD Command not allowed now\r\n"
        )
        self.session.select()
        for command in [b"MOVE", b"MOVE 1", b"MOVE x foo", b"MOVE 2 foo", b"MOVE 1 foo bar"]:
            for prefix in (b"", b"UID "):
                reply = self.session.send(b"b " + prefix + command + b"\r\n")
                if prefix and command == b"MOVE 2 foo":
                    self.assertEqual(reply, b"b OK MOVE completed\r\n")
                    continue
                self.assertTrue(reply.startswith(b"b BAD "), (prefix + command, reply))
        self.assertEqual(uids(self.inbox), [1])

    def test_move_of_a_saved_search_result(self) -> None:
        """SEARCHRES (RFC 5182): C{$} names what SEARCH RETURN (SAVE) found."""
        self.fill(3)
        self.inbox.setFlags(2, ["\\Flagged"])
        self.inbox.setFlags(3, ["\\Flagged"])
        self.session.select()
        self.session.send(b"a SEARCH RETURN (SAVE) FLAGGED\r\n")
        self.assertEqual(
            self.session.send(b"b MOVE $ foo\r\n"),
            b"* OK [COPYUID %d 2:3 1:2] Moved\r\n* 3 EXPUNGE\r\n* 2 EXPUNGE\r\n"
            b"b OK MOVE completed\r\n" % self.foo.uidValidity(),
        )
        self.assertEqual(self.session.send(b"c UID MOVE $ foo\r\n"), b"c OK MOVE completed\r\n")
        self.assertEqual((uids(self.inbox), uids(self.foo)), ([1], [1, 2]))

    def test_capability_lists_move(self) -> None:
        self.assertIn(b" MOVE ", self.session.greeting)


class MoveClientTests(TestCase):
    timeout = 20

    @inlineCallbacks
    def test_imapclient_move_and_a_second_client_sees_the_expunge(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        fixture = makeRealm(Path(self.mktemp()))
        store = fixture.store(ALICE)
        inbox = store.getFolder("INBOX")
        for _ in range(3):
            deliver(inbox)
        store.createFolder("Archive")
        port = yield listenIMAP(self, fixture)

        def client() -> dict[str, Any]:
            mover, watcher = imapclient(port), imapclient(port)
            try:
                mover.select_folder("INBOX")
                watcher.select_folder("INBOX")
                watcher.idle()
                moved = mover.move([2, 3], "Archive")
                seen: list[Any] = []
                while sum(1 for item in seen if item[1] == b"EXPUNGE") < 2:
                    more = watcher.idle_check(timeout=5)
                    if not more:
                        break
                    seen.extend(more)
                watcher.idle_done()
                return {
                    "moved": moved,
                    "copyuid": mover._imap.untagged_responses.get("COPYUID", []),
                    "left": mover.search("ALL"),
                    "archive": mover.folder_status("Archive", ["MESSAGES", "UIDNEXT"]),
                    "watcher": seen,
                }
            finally:
                mover.logout()
                watcher.logout()

        seen = yield inThread(client)
        self.assertEqual(seen["left"], [1])
        self.assertEqual(seen["archive"], {b"MESSAGES": 2, b"UIDNEXT": 3})
        self.assertEqual(seen["watcher"][:2], [(3, b"EXPUNGE"), (2, b"EXPUNGE")])
        self.assertEqual(len(seen["copyuid"]), 1)
        self.assertRegex(seen["copyuid"][0], rb"^\d+ 2:3 1:2$")
