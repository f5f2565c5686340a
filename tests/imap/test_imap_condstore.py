"""
CONDSTORE and QRESYNC (RFC 7162) as a client sees them: HIGHESTMODSEQ and
NOMODSEQ, the MODSEQ FETCH item, FETCH (CHANGEDSINCE), conditional STORE
with MODIFIED, SEARCH MODSEQ, SELECT (QRESYNC ...) with VANISHED (EARLIER),
VANISHED instead of EXPUNGE; changes made by other sessions, by another
Maildir program and before a restart.  The transcripts follow the RFC's
examples with the mod-sequences the store really gives out.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import time
from collections.abc import Generator
from pathlib import Path
from types import ModuleType
from typing import Any

from test_imap_protocol import MESSAGE, Session, deliver
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase, TestCase

from support.imaploop import imapclient, listenIMAP
from support.net import inThread
from support.realm import RealmFixture, makeRealm
from tmail.interfaces import IMailFolder
from tmail.realm.virtual import VirtualDomainRealm
from tmail.store.blocking import blocking
from tmail.store.filework import INLINE

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def modseqs(folder: IMailFolder) -> dict[int, int]:
    """UID to mod-sequence, as the store has them now."""
    return {info.uid: info.modseq for info in folder.messages()}


def untagged(reply: bytes) -> list[bytes]:
    """The untagged lines of a reply, in order."""
    return [line for line in reply.split(b"\r\n") if line.startswith(b"* ")]


def restarted(fixture: RealmFixture) -> RealmFixture:
    """The same users and Maildir, as a freshly started server opens them."""
    realm = VirtualDomainRealm(fixture.directory, fixture.root / "data" / "mail", fileWork=INLINE)
    return dataclasses.replace(fixture, realm=realm)


def renameInCur(store: Any, uid: int, letters: str) -> None:
    """Set an INBOX message's flag letters as another Maildir program does: by renaming it."""
    key = {info.uid: info.key for info in store.getFolder("INBOX").messages()}[uid]
    cur = store.root / "cur"
    [name] = [n for n in os.listdir(cur) if n.startswith(key)]
    os.rename(cur / name, cur / f"{key}:2,{letters}")


def renameInCurUnseen(store: Any, uid: int, letters: str) -> None:
    """
    L{renameInCur} on a file system whose coarse timestamps leave the
    directories' mtimes as they were, with mtimes old enough for the store
    to trust: the store cannot tell that anything changed until it comes
    across the new file name.
    """
    folder = store.getFolder("INBOX")
    past = int((time.time() - 60) * 1_000_000_000)
    for sub in ("cur", "new"):
        os.utime(store.root / sub, ns=(past, past))
    folder.messages()
    renameInCur(store, uid, letters)
    for sub in ("cur", "new"):
        os.utime(store.root / sub, ns=(past, past))


def loadExample(name: str) -> ModuleType:
    """A module of the examples folder (the SQLite realm keeps no mod-sequences)."""
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Mailbox(SynchronousTestCase):
    """One session over a real Maildir INBOX."""

    def setUp(self) -> None:
        self.session = Session(self)
        self.store = self.session.store
        self.inbox = self.store.getFolder("INBOX")

    def fill(self, count: int) -> None:
        """Deliver C{count} messages to INBOX (UIDs 1 to C{count} in a new folder)."""
        for _ in range(count):
            deliver(self.inbox)
        self.inbox.refresh()
        self.inbox.messages()

    def enable(self, name: bytes, session: Session | None = None) -> None:
        session = session or self.session
        session.loginDirectly()
        reply = session.send(b"en ENABLE " + name + b"\r\n")
        self.assertTrue(reply.endswith(b"en OK ENABLE completed\r\n"), reply)

    def selectInbox(self, session: Session | None = None, how: bytes = b"SELECT") -> bytes:
        session = session or self.session
        session.loginDirectly()
        reply = session.send(b"s " + how + b" INBOX\r\n")
        self.assertTrue(reply.endswith(b" completed\r\n"), reply)
        return reply


class CondstoreTranscriptTests(_Mailbox):
    def test_rfc7162_select_condstore_reports_highestmodseq_after_permanentflags(self) -> None:
        self.fill(2)
        self.inbox.setFlags(2, ["\\Seen"])
        self.session.loginDirectly()
        lines = untagged(self.session.send(b"a SELECT INBOX (CONDSTORE)\r\n"))
        self.assertEqual(
            lines[-2:],
            [
                b"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)]"
                b" Flags allowed",
                b"* OK [HIGHESTMODSEQ %d] Highest" % self.inbox.highestModSeq(),
            ],
        )
        self.assertEqual(self.inbox.highestModSeq(), modseqs(self.inbox)[2])
        self.assertTrue(self.session.server.condstore)

    def test_examine_reports_highestmodseq_without_turning_condstore_on(self) -> None:
        """A plain SELECT/EXAMINE is not a CONDSTORE-enabling command: FLAGS come alone."""
        self.fill(1)
        reply = self.selectInbox(how=b"EXAMINE")
        self.assertIn(b"* OK [HIGHESTMODSEQ %d] Highest\r\n" % self.inbox.highestModSeq(), reply)
        self.assertTrue(reply.endswith(b"s OK [READ-ONLY] EXAMINE completed\r\n"))
        self.assertEqual(
            self.session.send(b"f FETCH 1 (FLAGS)\r\n"),
            b"* 1 FETCH (FLAGS ())\r\nf OK FETCH completed\r\n",
        )

    def test_a_folder_without_mod_sequences_is_nomodseq_and_refuses_modseq_commands(
        self,
    ) -> None:
        fixture = makeRealm(Path(self.mktemp()))
        realm = loadExample("custom_realm").SQLiteRealm(
            fixture.directory, fixture.root / "mail.sqlite3"
        )
        self.addCleanup(realm.db.close)
        session = Session(self, fixture=dataclasses.replace(fixture, realm=realm))
        deliver(blocking(session.store).getFolder("INBOX"))
        reply = session.select()
        self.assertIn(b"* OK [NOMODSEQ] No mod-sequences in this mailbox\r\n", reply)
        self.assertNotIn(b"HIGHESTMODSEQ", reply)
        for command in [
            b"FETCH 1 (FLAGS MODSEQ)",
            b"FETCH 1 (FLAGS) (CHANGEDSINCE 1)",
            b"STORE 1 (UNCHANGEDSINCE 1) +FLAGS (\\Seen)",
        ]:
            reply = session.send(b"b " + command + b"\r\n")
            self.assertEqual(reply, b"b BAD This mailbox keeps no mod-sequences\r\n", command)
        self.assertEqual(
            session.send(b"c STATUS INBOX (HIGHESTMODSEQ)\r\n"),
            b'* STATUS "INBOX" (HIGHESTMODSEQ 0)\r\nc OK STATUS completed\r\n',
        )
        self.assertEqual(
            session.send(b"d FETCH 1 (FLAGS)\r\n"),
            b"* 1 FETCH (FLAGS ())\r\nd OK FETCH completed\r\n",
        )

    def test_status_highestmodseq_reports_the_folder_value_and_turns_condstore_on(self) -> None:
        self.fill(3)
        self.inbox.setFlags(3, ["\\Flagged"])
        highest = self.inbox.highestModSeq()
        self.session.loginDirectly()
        self.assertEqual(
            self.session.send(b"a STATUS INBOX (MESSAGES HIGHESTMODSEQ)\r\n"),
            b'* STATUS "INBOX" (MESSAGES 3 HIGHESTMODSEQ %d)\r\na OK STATUS completed\r\n'
            % highest,
        )
        self.selectInbox()
        self.assertEqual(
            self.session.send(b"f FETCH 3 (FLAGS)\r\n"),
            b"* 3 FETCH (FLAGS (\\Flagged) MODSEQ (%d))\r\nf OK FETCH completed\r\n" % highest,
        )

    def test_rfc7162_fetch_modseq_gives_each_message_its_own_value(self) -> None:
        self.fill(3)
        self.inbox.setFlags(2, ["\\Answered"])
        values = modseqs(self.inbox)
        self.assertGreater(values[2], values[1])
        self.selectInbox()
        self.assertEqual(
            self.session.sendEnabling(b"a FETCH 1:3 (FLAGS MODSEQ)\r\n"),
            b"* 1 FETCH (FLAGS () MODSEQ (%d))\r\n"
            b"* 2 FETCH (FLAGS (\\Answered) MODSEQ (%d))\r\n"
            b"* 3 FETCH (FLAGS () MODSEQ (%d))\r\n"
            b"a OK FETCH completed\r\n" % (values[1], values[2], values[3]),
        )
        self.assertEqual(
            self.session.send(b"b UID FETCH 2 MODSEQ\r\n"),
            b"* 2 FETCH (UID 2 MODSEQ (%d))\r\nb OK FETCH completed\r\n" % values[2],
        )

    def test_fetching_modseq_turns_condstore_on_for_later_flag_fetches(self) -> None:
        self.fill(1)
        self.selectInbox()
        self.session.send(b"a FETCH 1 (MODSEQ)\r\n")
        self.assertEqual(
            self.session.send(b"b FETCH 1 (FLAGS)\r\n"),
            b"* 1 FETCH (FLAGS () MODSEQ (%d))\r\nb OK FETCH completed\r\n"
            % modseqs(self.inbox)[1],
        )

    def test_rfc7162_fetch_changedsince_returns_only_later_changes_with_modseq(self) -> None:
        self.fill(4)
        before = self.inbox.highestModSeq()
        self.inbox.setFlags(2, ["\\Seen"])
        self.inbox.setFlags(4, ["$Label"])
        values = modseqs(self.inbox)
        self.selectInbox()
        self.assertEqual(
            self.session.sendEnabling(b"s100 FETCH 1:* (UID FLAGS) (CHANGEDSINCE %d)\r\n" % before),
            b"* 2 FETCH (UID 2 FLAGS (\\Seen) MODSEQ (%d))\r\n"
            b"* 4 FETCH (UID 4 FLAGS ($Label) MODSEQ (%d))\r\n"
            b"s100 OK FETCH completed\r\n" % (values[2], values[4]),
        )
        self.assertEqual(
            self.session.send(b"s101 UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d)\r\n" % values[4]),
            b"s101 OK FETCH completed\r\n",
        )

    def test_rfc7162_conditional_store_of_an_unchanged_message_succeeds(self) -> None:
        self.fill(1)
        before = self.inbox.highestModSeq()
        self.selectInbox()
        reply = self.session.sendEnabling(
            b"a102 STORE 1 (UNCHANGEDSINCE %d) +FLAGS (\\Seen)\r\n" % before
        )
        after = modseqs(self.inbox)[1]
        self.assertGreater(after, before)
        self.assertEqual(
            reply,
            b"* 1 FETCH (FLAGS (\\Seen) MODSEQ (%d))\r\na102 OK STORE completed\r\n" % after,
        )
        self.assertEqual(self.inbox.highestModSeq(), after)
        self.assertEqual(self.inbox.messages()[0].flags, {"\\Seen"})

    def test_rfc7162_conditional_store_names_failed_sequence_numbers_in_modified(self) -> None:
        """
        RFC 7162 3.1.3's d105: STORE 7,5,9 +FLAGS.SILENT (\\Deleted) where 7
        and 9 changed: only 5 is stored, with a FETCH of its MODSEQ.
        """
        self.fill(9)
        before = self.inbox.highestModSeq()
        self.inbox.setFlags(7, ["$Work"])
        self.inbox.setFlags(9, ["\\Answered"])
        self.selectInbox()
        reply = self.session.sendEnabling(
            b"d105 STORE 7,5,9 (UNCHANGEDSINCE %d) +FLAGS.SILENT (\\Deleted)\r\n" % before
        )
        values = modseqs(self.inbox)
        self.assertEqual(
            reply,
            b"* 5 FETCH (MODSEQ (%d))\r\nd105 OK [MODIFIED 7,9] Conditional STORE failed\r\n"
            % values[5],
        )
        flags = {info.uid: info.flags for info in self.inbox.messages()}
        self.assertEqual((flags[5], flags[7], flags[9]), ({"\\Deleted"}, {"$Work"}, {"\\Answered"}))

    def test_uid_conditional_store_names_failed_uids_in_modified(self) -> None:
        """With UIDs 1 and 2 expunged, UID 4 is message 2: MODIFIED names the UID."""
        self.fill(5)
        self.inbox.expunge([1, 2])
        before = self.inbox.highestModSeq()
        self.inbox.setFlags(4, ["\\Flagged"])
        self.selectInbox()
        reply = self.session.sendEnabling(
            b"a UID STORE 3:5 (UNCHANGEDSINCE %d) +FLAGS (\\Seen)\r\n" % before
        )
        values = modseqs(self.inbox)
        self.assertEqual(
            reply,
            b"* 1 FETCH (FLAGS (\\Seen) UID 3 MODSEQ (%d))\r\n"
            b"* 3 FETCH (FLAGS (\\Seen) UID 5 MODSEQ (%d))\r\n"
            b"a OK [MODIFIED 4] Conditional STORE failed\r\n" % (values[3], values[5]),
        )

    def test_rfc7162_unchangedsince_zero_always_fails(self) -> None:
        self.fill(2)
        before = modseqs(self.inbox)
        self.selectInbox()
        self.assertEqual(
            self.session.sendEnabling(
                b"a103 UID STORE 1:2 (UNCHANGEDSINCE 0) +FLAGS.SILENT ($MDNSent)\r\n"
            ),
            b"a103 OK [MODIFIED 1:2] Conditional STORE failed\r\n",
        )
        self.assertEqual(modseqs(self.inbox), before)
        self.assertEqual([info.flags for info in self.inbox.messages()], [set(), set()])

    def test_silent_store_under_condstore_still_reports_the_new_modseq(self) -> None:
        self.fill(2)
        self.enable(b"CONDSTORE")
        self.selectInbox()
        reply = self.session.send(b"a STORE 1:2 +FLAGS.SILENT (\\Seen)\r\n")
        values = modseqs(self.inbox)
        self.assertEqual(
            reply,
            b"* 1 FETCH (MODSEQ (%d))\r\n* 2 FETCH (MODSEQ (%d))\r\na OK STORE completed\r\n"
            % (values[1], values[2]),
        )

    def test_silent_store_that_changes_nothing_sends_nothing_and_keeps_the_modseq(self) -> None:
        self.fill(1)
        self.inbox.setFlags(1, ["\\Seen"])
        before = modseqs(self.inbox)
        self.enable(b"CONDSTORE")
        self.selectInbox()
        self.assertEqual(
            self.session.send(b"a STORE 1 +FLAGS.SILENT (\\Seen)\r\n"), b"a OK STORE completed\r\n"
        )
        self.assertEqual(modseqs(self.inbox), before)

    def test_silent_store_meeting_another_change_sends_no_stale_modseq(self) -> None:
        """
        Another program set \\Flagged after the session last looked: the
        silent STORE sends no MODSEQ the client already knew; one FETCH
        brings the flags as they are now with the mod-sequence of the change.
        """
        self.fill(1)
        self.enable(b"CONDSTORE")
        self.selectInbox()
        known = modseqs(self.inbox)[1]
        self.inbox.setFlags(1, ["\\Flagged"])
        reply = self.session.send(b"a STORE 1 +FLAGS.SILENT (\\Seen)\r\n")
        after = modseqs(self.inbox)[1]
        self.assertGreater(after, known)
        self.assertEqual(
            reply,
            b"* 1 FETCH (FLAGS (\\Flagged \\Seen) MODSEQ (%d))\r\na OK STORE completed\r\n" % after,
        )

    def test_silent_store_without_condstore_stays_silent(self) -> None:
        self.fill(1)
        self.selectInbox()
        self.assertEqual(
            self.session.send(b"a STORE 1 +FLAGS.SILENT (\\Seen)\r\n"), b"a OK STORE completed\r\n"
        )

    def test_rfc7162_search_modseq_appends_the_highest_modseq_of_the_matches(self) -> None:
        """RFC 7162 3.1.5: C{MODSEQ "/flags/\\\\draft" all n} matches mod-sequences >= n."""
        self.fill(6)
        self.inbox.setFlags(2, ["\\Draft"])
        since = modseqs(self.inbox)[2]
        self.inbox.setFlags(5, ["\\Seen"])
        highest = self.inbox.highestModSeq()
        self.selectInbox()
        self.assertEqual(
            self.session.sendEnabling(b'a SEARCH MODSEQ "/flags/\\\\draft" all %d\r\n' % since),
            b"* SEARCH 2 5 (MODSEQ %d)\r\na OK SEARCH completed\r\n" % highest,
        )
        self.assertEqual(
            self.session.send(b"b UID SEARCH MODSEQ %d\r\n" % highest),
            b"* SEARCH 5 (MODSEQ %d)\r\nb OK SEARCH completed\r\n" % highest,
        )
        self.assertTrue(self.session.server.condstore)

    def test_search_modseq_without_matches_sends_no_modseq(self) -> None:
        self.fill(2)
        self.selectInbox()
        self.assertEqual(
            self.session.sendEnabling(b"a SEARCH MODSEQ %d\r\n" % (self.inbox.highestModSeq() + 1)),
            b"* SEARCH\r\na OK SEARCH completed\r\n",
        )

    def test_esearch_with_modseq_adds_the_modseq_result_option(self) -> None:
        self.fill(4)
        since = self.inbox.highestModSeq() + 1
        self.inbox.setFlags(2, ["\\Seen"])
        self.inbox.setFlags(3, ["\\Seen"])
        highest = self.inbox.highestModSeq()
        self.selectInbox()
        self.assertEqual(
            self.session.sendEnabling(b"a SEARCH RETURN (ALL COUNT) MODSEQ %d\r\n" % since),
            b'* ESEARCH (TAG "a") ALL 2:3 COUNT 2 MODSEQ %d\r\na OK SEARCH completed\r\n' % highest,
        )
        self.assertEqual(
            self.session.send(b"b UID SEARCH RETURN (COUNT) MODSEQ %d\r\n" % (highest + 1)),
            b'* ESEARCH (TAG "b") UID COUNT 0\r\nb OK SEARCH completed\r\n',
        )

    def test_esearch_min_or_max_reports_the_returned_message_modseq(self) -> None:
        """RFC 7162 3.1.5 with RFC 4731: MODSEQ belongs to the message MIN or MAX returns."""
        self.fill(3)
        self.inbox.setFlags(3, ["\\Seen"])
        values = modseqs(self.inbox)
        self.selectInbox()
        self.assertEqual(
            self.session.sendEnabling(b"a SEARCH RETURN (MIN) MODSEQ 1\r\n"),
            b'* ESEARCH (TAG "a") MIN 1 MODSEQ %d\r\na OK SEARCH completed\r\n' % values[1],
        )
        self.assertEqual(
            self.session.send(b"b SEARCH RETURN (MAX) MODSEQ 1\r\n"),
            b'* ESEARCH (TAG "b") MAX 3 MODSEQ %d\r\nb OK SEARCH completed\r\n' % values[3],
        )

    def test_malformed_modseq_arguments_are_bad_and_the_session_goes_on(self) -> None:
        self.fill(2)
        self.enable(b"QRESYNC")
        self.selectInbox()
        before = modseqs(self.inbox)
        for command in [
            b"FETCH 1 (FLAGS) (CHANGEDSINCE)",
            b"FETCH 1 (FLAGS) (CHANGEDSINCE x)",
            b"FETCH 1 (FLAGS) (CHANGEDSINCE -1)",
            b"FETCH 1 (FLAGS) (CHANGEDSINCE 9223372036854775808)",
            b"FETCH 1 (FLAGS) (CHANGEDSINCE 1 CHANGEDSINCE 2)",
            b"FETCH 1 (FLAGS) (FROB 1)",
            b"FETCH 1 (FLAGS) CHANGEDSINCE 1",
            b"UID FETCH 1 (FLAGS) (VANISHED)",
            b"STORE 1 (UNCHANGEDSINCE) +FLAGS (\\Seen)",
            b"STORE 1 (UNCHANGEDSINCE abc) +FLAGS (\\Seen)",
            b"STORE 1 (UNCHANGEDSINCE 5 +FLAGS (\\Seen)",
            b"STORE 1 (UNCHANGEDSINCE 5)+FLAGS (\\Seen)",
            b"STORE 1 (FROB 5) +FLAGS (\\Seen)",
            b"STORE 1 (UNCHANGEDSINCE 5)",
            b"SEARCH MODSEQ",
            b"SEARCH MODSEQ x",
            b'SEARCH MODSEQ "/flags/\\\\draft" nosuch 1',
            b"SELECT INBOX (FROB)",
            b"SELECT INBOX (QRESYNC (1))",
            b"SELECT INBOX (QRESYNC (1 0))",
            b"SELECT INBOX (QRESYNC (0 5))",
            b"SELECT INBOX (QRESYNC (1 5 1:*))",
            b"SELECT INBOX (QRESYNC (1 5 1:2 (1:2)))",
        ]:
            reply = self.session.send(b"b " + command + b"\r\n")
            self.assertTrue(reply.startswith(b"b BAD "), (command, reply))
            self.assertEqual(reply.count(b"\r\n"), 1, (command, reply))
        self.assertEqual(modseqs(self.inbox), before)
        self.assertEqual(self.session.server.state, "select")
        self.assertRegex(
            self.session.send(
                b"c STORE 1 (UNCHANGEDSINCE %d) +FLAGS.SILENT (\\Seen)\r\n" % before[1]
            ),
            rb"^\* 1 FETCH \((UID 1 )?MODSEQ \(%d\)\)\r\nc OK STORE completed\r\n$"
            % modseqs(self.inbox)[1],
        )


class QResyncTranscriptTests(_Mailbox):
    def setUp(self) -> None:
        super().setUp()
        self.fill(5)
        self.validity = self.inbox.uidValidity()
        #: What a client that saw the folder now would remember.
        self.known = self.inbox.highestModSeq()

    def change(self) -> None:
        """Since L{known}: flags of UIDs 2 and 4 changed, UID 3 expunged."""
        self.inbox.setFlags(2, ["\\Seen"])
        self.inbox.expunge([3])
        self.inbox.setFlags(4, ["\\Answered", "$Done"])

    def resync(self, parameters: bytes, how: bytes = b"SELECT") -> list[bytes]:
        self.enable(b"QRESYNC")
        reply = self.session.send(b"A03 " + how + b" INBOX (QRESYNC (" + parameters + b"))\r\n")
        self.assertTrue(reply.endswith(b" completed\r\n"), reply)
        return reply.split(b"\r\n")[:-1]

    def test_select_qresync_without_enabling_it_is_bad(self) -> None:
        self.session.loginDirectly()
        reply = self.session.send(b"A02 SELECT INBOX (QRESYNC (%d %d))\r\n" % (self.validity, 1))
        self.assertEqual(reply, b"A02 BAD QRESYNC must be enabled first\r\n")
        self.assertEqual(self.session.server.state, "auth")
        self.assertTrue(self.selectInbox().endswith(b"s OK [READ-WRITE] SELECT completed\r\n"))

    def test_rfc7162_select_qresync_sends_vanished_earlier_then_the_changed_messages(
        self,
    ) -> None:
        self.change()
        values = modseqs(self.inbox)
        lines = self.resync(b"%d %d" % (self.validity, self.known))
        self.assertEqual(
            lines[-5:],
            [
                b"* OK [HIGHESTMODSEQ %d] Highest" % self.inbox.highestModSeq(),
                b"* VANISHED (EARLIER) 3",
                b"* 2 FETCH (UID 2 FLAGS (\\Seen) MODSEQ (%d))" % values[2],
                b"* 3 FETCH (UID 4 FLAGS ($Done \\Answered) MODSEQ (%d))" % values[4],
                b"A03 OK [READ-WRITE] SELECT completed",
            ],
        )

    def test_rfc7162_known_uids_limit_what_select_qresync_reports(self) -> None:
        self.change()
        lines = self.resync(b"%d %d 1:3" % (self.validity, self.known))
        self.assertEqual(
            lines[-4:-1],
            [
                b"* OK [HIGHESTMODSEQ %d] Highest" % self.inbox.highestModSeq(),
                b"* VANISHED (EARLIER) 3",
                b"* 2 FETCH (UID 2 FLAGS (\\Seen) MODSEQ (%d))" % modseqs(self.inbox)[2],
            ],
        )

    def test_sequence_match_data_is_accepted_with_examine(self) -> None:
        self.change()
        lines = self.resync(b"%d %d 1:5 (1:4 1:4)" % (self.validity, self.known), b"EXAMINE")
        self.assertIn(b"* VANISHED (EARLIER) 3", lines)
        self.assertEqual(lines[-1], b"A03 OK [READ-ONLY] EXAMINE completed")

    def test_select_qresync_with_another_uidvalidity_sends_no_resync_data(self) -> None:
        self.change()
        lines = self.resync(b"%d %d" % (self.validity + 1, self.known))
        self.assertEqual(
            lines[-2:],
            [
                b"* OK [HIGHESTMODSEQ %d] Highest" % self.inbox.highestModSeq(),
                b"A03 OK [READ-WRITE] SELECT completed",
            ],
        )

    def test_select_qresync_with_nothing_changed_reports_nothing(self) -> None:
        lines = self.resync(b"%d %d" % (self.validity, self.known))
        self.assertFalse([line for line in lines if b"VANISHED" in line or b"FETCH" in line])

    def test_reselecting_under_qresync_sends_closed_before_the_new_mailbox(self) -> None:
        self.store.createFolder("Archive")
        self.enable(b"QRESYNC")
        self.selectInbox()
        reply = self.session.send(b"b SELECT Archive\r\n")
        self.assertTrue(reply.startswith(b"* OK [CLOSED] Previous mailbox closed\r\n* FLAGS "))
        self.assertEqual(reply.count(b"[CLOSED]"), 1)

    def test_reselecting_without_qresync_sends_no_closed(self) -> None:
        self.selectInbox()
        self.assertNotIn(b"CLOSED", self.session.send(b"b EXAMINE INBOX\r\n"))

    def test_rfc7162_uid_fetch_changedsince_vanished_reports_expunges_first(self) -> None:
        self.enable(b"QRESYNC")
        self.selectInbox()
        self.change()
        self.session.send(b"n NOOP\r\n")
        values = modseqs(self.inbox)
        self.assertEqual(
            self.session.send(
                b"s100 UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)\r\n" % (self.known)
            ),
            b"* VANISHED (EARLIER) 3\r\n"
            b"* 2 FETCH (UID 2 FLAGS (\\Seen) MODSEQ (%d))\r\n"
            b"* 3 FETCH (UID 4 FLAGS ($Done \\Answered) MODSEQ (%d))\r\n"
            b"s100 OK FETCH completed\r\n" % (values[2], values[4]),
        )
        self.assertEqual(
            self.session.send(
                b"s101 UID FETCH 4:5 (FLAGS) (CHANGEDSINCE %d VANISHED)\r\n" % (self.known)
            ),
            b"* 3 FETCH (UID 4 FLAGS ($Done \\Answered) MODSEQ (%d))\r\n"
            b"s101 OK FETCH completed\r\n" % values[4],
        )

    def test_vanished_star_is_the_highest_uid_given_without_narrowing_the_fetch(self) -> None:
        """
        UID 5, the last, was expunged: C{5:*} still reaches it for VANISHED,
        and the FETCH part still means the highest UID present (4).
        """
        self.enable(b"QRESYNC")
        self.selectInbox()
        known = self.inbox.highestModSeq()
        self.session.send(b"a UID STORE 5 +FLAGS (\\Deleted)\r\nb UID EXPUNGE 5\r\n")
        self.session.send(b"c UID STORE 4 +FLAGS (\\Seen)\r\n")
        reply = self.session.send(b"d UID FETCH 5:* (FLAGS) (CHANGEDSINCE %d VANISHED)\r\n" % known)
        self.assertEqual(
            reply,
            b"* VANISHED (EARLIER) 5\r\n"
            b"* 4 FETCH (UID 4 FLAGS (\\Seen) MODSEQ (%d))\r\n"
            b"d OK FETCH completed\r\n" % modseqs(self.inbox)[4],
        )

    def test_vanished_modifier_needs_uid_fetch_and_qresync(self) -> None:
        self.enable(b"CONDSTORE")
        self.selectInbox()
        expected = b"a BAD VANISHED needs UID FETCH and QRESYNC enabled\r\n"
        command = b"a UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)\r\n"
        self.assertEqual(self.session.send(command), expected)
        other = Session(self, fixture=self.session.fixture)
        self.enable(b"QRESYNC", other)
        self.selectInbox(other)
        self.assertEqual(other.send(b"a FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)\r\n"), expected)

    def test_expunge_under_qresync_reports_vanished_uids(self) -> None:
        for uid in (2, 4):
            self.inbox.setFlags(uid, ["\\Deleted"])
        self.enable(b"QRESYNC")
        self.selectInbox()
        self.assertEqual(
            self.session.send(b"a EXPUNGE\r\n"), b"* VANISHED 2,4\r\na OK EXPUNGE completed\r\n"
        )

    def test_uid_expunge_under_qresync_reports_vanished_uids(self) -> None:
        for uid in (1, 2, 3, 5):
            self.inbox.setFlags(uid, ["\\Deleted"])
        self.enable(b"QRESYNC")
        self.selectInbox()
        self.assertEqual(
            self.session.send(b"a UID EXPUNGE 1:3\r\n"),
            b"* VANISHED 1:3\r\na OK UID EXPUNGE completed\r\n",
        )

    def test_move_under_qresync_reports_vanished_uids(self) -> None:
        archive = self.store.createFolder("Archive")
        self.enable(b"QRESYNC")
        self.selectInbox()
        self.assertEqual(
            self.session.send(b"a UID MOVE 2:3 Archive\r\n"),
            b"* OK [COPYUID %d 2:3 1:2] Moved\r\n* VANISHED 2:3\r\na OK MOVE completed\r\n"
            % archive.uidValidity(),
        )


class ManySessionsTests(_Mailbox):
    """Two sessions on one folder: one changes it, the other is told."""

    def setUp(self) -> None:
        super().setUp()
        self.fill(3)
        self.other = Session(self, fixture=self.session.fixture)
        self.selectInbox(self.other)

    def test_condstore_session_gets_flag_changes_with_modseq(self) -> None:
        self.enable(b"CONDSTORE")
        self.selectInbox()
        self.other.send(b"a STORE 2 +FLAGS (\\Seen)\r\n")
        reply = self.session.send(b"n NOOP\r\n")
        self.assertRegex(
            reply,
            rb"^\* 2 FETCH \((UID 2 )?FLAGS \(\\Seen\) MODSEQ \(%d\)\)\r\nn OK NOOP completed\r\n$"
            % modseqs(self.inbox)[2],
        )

    def test_qresync_session_gets_flag_changes_with_uid_and_modseq(self) -> None:
        self.enable(b"QRESYNC")
        self.selectInbox()
        self.other.send(b"a STORE 1,3 +FLAGS (\\Flagged)\r\n")
        values = modseqs(self.inbox)
        self.assertEqual(
            self.session.send(b"n NOOP\r\n"),
            b"* 1 FETCH (UID 1 FLAGS (\\Flagged) MODSEQ (%d))\r\n"
            b"* 3 FETCH (UID 3 FLAGS (\\Flagged) MODSEQ (%d))\r\n"
            b"n OK NOOP completed\r\n" % (values[1], values[3]),
        )

    def test_condstore_session_gets_expunge_and_qresync_session_gets_vanished(self) -> None:
        self.enable(b"CONDSTORE")
        self.selectInbox()
        third = Session(self, fixture=self.session.fixture)
        self.enable(b"QRESYNC", third)
        self.selectInbox(third)
        self.other.send(b"a STORE 1:2 +FLAGS.SILENT (\\Deleted)\r\nb EXPUNGE\r\n")
        self.assertTrue(
            self.session.send(b"n NOOP\r\n").startswith(b"* 2 EXPUNGE\r\n* 1 EXPUNGE\r\n")
        )
        self.assertEqual(
            third.send(b"n NOOP\r\n"),
            b"* VANISHED 1:2\r\n* 1 EXISTS\r\n* 0 RECENT\r\nn OK NOOP completed\r\n",
        )

    def test_no_expunge_or_vanished_is_sent_during_fetch_store_or_search(self) -> None:
        self.enable(b"QRESYNC")
        self.selectInbox()
        self.other.send(b"a STORE 2 +FLAGS.SILENT (\\Deleted)\r\nb EXPUNGE\r\n")
        for command in [
            b"FETCH 1:* (FLAGS)",
            b"UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1)",
            b"STORE 3 +FLAGS (\\Seen)",
            b"UID SEARCH MODSEQ 1",
        ]:
            reply = self.session.send(b"c " + command + b"\r\n")
            self.assertNotIn(b"VANISHED", reply, command)
            self.assertNotIn(b"EXPUNGE\r\n", reply, command)
        self.assertTrue(self.session.send(b"n NOOP\r\n").startswith(b"* VANISHED 2\r\n"))

    def test_held_back_expunge_is_followed_by_a_highestmodseq_below_it(self) -> None:
        """
        RFC 7162 3.2: flag FETCHes with MODSEQ sent while an expunge waits
        are followed by a HIGHESTMODSEQ the client may resynchronise from
        without missing the expunge.
        """
        self.enable(b"QRESYNC")
        self.selectInbox()
        self.other.send(b"a STORE 2 +FLAGS.SILENT (\\Deleted)\r\n")
        self.session.send(b"n NOOP\r\n")
        told = self.inbox.highestModSeq()
        self.other.send(b"b EXPUNGE\r\n")
        expunged = self.inbox.highestModSeq()
        self.other.send(b"c STORE 1 +FLAGS (\\Flagged)\r\n")
        reply = self.session.send(b"f FETCH 3 (UID)\r\n")
        self.assertEqual(
            reply,
            b"* 3 FETCH (UID 3)\r\n"
            b"* 1 FETCH (UID 1 FLAGS (\\Flagged) MODSEQ (%d))\r\n"
            b"* OK [HIGHESTMODSEQ %d] Expunges are still to come\r\n"
            b"f OK FETCH completed\r\n" % (modseqs(self.inbox)[1], told),
        )
        self.assertLess(told, expunged)
        fresh = Session(self, fixture=self.session.fixture)
        self.enable(b"QRESYNC", fresh)
        reply = fresh.send(
            b"s SELECT INBOX (QRESYNC (%d %d))\r\n" % (self.inbox.uidValidity(), told)
        )
        self.assertIn(b"* VANISHED (EARLIER) 2\r\n", reply)
        self.assertIn(b"* 1 FETCH (UID 1 FLAGS (\\Flagged) MODSEQ (", reply)

    def test_own_store_while_an_expunge_is_held_back_is_followed_by_a_safe_highestmodseq(
        self,
    ) -> None:
        """The session's own MODSEQs must not carry a client past a held-back expunge either."""
        self.enable(b"QRESYNC")
        self.selectInbox()
        told = self.inbox.highestModSeq()
        self.other.send(b"a STORE 2 +FLAGS.SILENT (\\Deleted)\r\nb EXPUNGE\r\n")
        reply = self.session.send(b"c STORE 1 +FLAGS (\\Flagged)\r\n")
        self.assertIn(b"* OK [HIGHESTMODSEQ %d] " % told, reply)
        self.assertNotIn(b"VANISHED", reply)
        self.assertTrue(self.session.send(b"n NOOP\r\n").startswith(b"* VANISHED 2\r\n"))

    def test_changes_reported_at_once_need_no_extra_highestmodseq(self) -> None:
        self.enable(b"QRESYNC")
        self.selectInbox()
        self.other.send(b"a STORE 2 +FLAGS.SILENT (\\Deleted)\r\nb EXPUNGE\r\n")
        self.other.send(b"c STORE 1 +FLAGS (\\Flagged)\r\n")
        reply = self.session.send(b"n NOOP\r\n")
        self.assertTrue(reply.startswith(b"* VANISHED 2\r\n"), reply)
        self.assertNotIn(b"HIGHESTMODSEQ", reply)

    def test_a_flag_change_found_by_one_session_is_reported_to_the_others(self) -> None:
        """
        Another program changes a message's flags without the directory
        mtime moving; one session stores the same flags on that message and
        so comes across the new file name (with nothing left to rename).
        The other sessions are told at the end of their next command, with
        a higher MODSEQ: a client that stored the same flag silently finds
        the message with SEARCH.
        """
        self.enable(b"CONDSTORE")
        self.selectInbox()
        told = modseqs(self.inbox)[1]
        renameInCurUnseen(self.store, 1, "R")
        self.assertEqual(
            self.other.send(b"a STORE 1 +FLAGS (\\Answered)\r\n"),
            b"* 1 FETCH (FLAGS (\\Answered))\r\na OK STORE completed\r\n",
        )
        reply = self.session.send(b"b STORE 1 +FLAGS.SILENT (\\Answered)\r\n")
        value = modseqs(self.inbox)[1]
        self.assertGreater(value, told)
        self.assertEqual(
            reply,
            b"* 1 FETCH (FLAGS (\\Answered) MODSEQ (%d))\r\nb OK STORE completed\r\n" % value,
        )
        self.assertEqual(
            self.session.send(b"c SEARCH ANSWERED\r\n"), b"* SEARCH 1\r\nc OK SEARCH completed\r\n"
        )

    def test_store_adding_and_removing_flags_keeps_another_programs_unseen_change(self) -> None:
        """
        +FLAGS and -FLAGS change the flags the message has when the STORE
        renames it, not those the server last saw: a flag another program
        set or cleared meanwhile, in the same mtime tick, stays so.
        """
        self.selectInbox()
        self.inbox.setFlags(2, ["\\Seen"])
        self.session.send(b"n NOOP\r\n")
        renameInCurUnseen(self.store, 1, "R")
        self.assertEqual(
            self.session.send(b"a STORE 1 +FLAGS (\\Seen)\r\n"),
            b"* 1 FETCH (FLAGS (\\Answered \\Seen))\r\na OK STORE completed\r\n",
        )
        renameInCurUnseen(self.store, 2, "FS")
        self.assertEqual(
            self.session.send(b"b STORE 2 -FLAGS (\\Seen)\r\n"),
            b"* 2 FETCH (FLAGS (\\Flagged))\r\nb OK STORE completed\r\n",
        )
        flags = {info.uid: info.flags for info in self.inbox.messages()}
        self.assertEqual(flags[1], {"\\Answered", "\\Seen"})
        self.assertEqual(flags[2], {"\\Flagged"})

    def test_a_flag_change_found_by_reading_a_message_is_reported_to_the_others(self) -> None:
        """The same when the session comes across the new name by reading the message."""
        self.enable(b"CONDSTORE")
        self.selectInbox()
        renameInCurUnseen(self.store, 2, "F")
        reply = self.other.send(b"a FETCH 2 (BODY.PEEK[])\r\n")
        self.assertTrue(reply.endswith(b"a OK FETCH completed\r\n"), reply)
        self.assertEqual(
            self.session.send(b"b FETCH 3 (FLAGS)\r\n"),
            b"* 3 FETCH (FLAGS () MODSEQ (%d))\r\n"
            b"* 2 FETCH (FLAGS (\\Flagged) MODSEQ (%d))\r\n"
            b"b OK FETCH completed\r\n" % (modseqs(self.inbox)[3], modseqs(self.inbox)[2]),
        )

    def test_idling_qresync_session_is_told_at_once(self) -> None:
        self.enable(b"QRESYNC")
        self.selectInbox()
        self.assertEqual(self.session.send(b"i IDLE\r\n"), b"+ Idling\r\n")
        self.other.send(
            b"a STORE 1 +FLAGS (\\Deleted)\r\nb EXPUNGE\r\nc STORE 1 +FLAGS (\\Seen)\r\n"
        )
        self.session.pump()
        self.assertEqual(
            self.session.take(),
            b"* VANISHED 1\r\n* 2 EXISTS\r\n* 0 RECENT\r\n"
            b"* 1 FETCH (UID 2 FLAGS (\\Seen) MODSEQ (%d))\r\n" % modseqs(self.inbox)[2],
        )
        self.assertEqual(self.session.send(b"DONE\r\n"), b"i OK IDLE terminated\r\n")


class PersistenceTests(_Mailbox):
    """What a client sees after the server restarts over the same Maildir."""

    def reopened(self) -> Session:
        return Session(self, fixture=restarted(self.session.fixture))

    def test_modseqs_and_highestmodseq_survive_a_restart(self) -> None:
        self.fill(3)
        self.inbox.setFlags(2, ["\\Seen"])
        self.selectInbox()
        self.session.send(b"a STORE 3 +FLAGS (\\Flagged)\r\n")
        query = b"f FETCH 1:* (FLAGS MODSEQ)\r\n"
        before = self.session.send(query)
        highest = self.inbox.highestModSeq()
        later = self.reopened()
        self.assertIn(b"* OK [HIGHESTMODSEQ %d] Highest\r\n" % highest, later.select())
        self.assertEqual(later.send(query), before)

    def test_qresync_after_a_restart_reports_exactly_the_changes_made_before_it(self) -> None:
        self.fill(6)
        validity = self.inbox.uidValidity()
        known = self.inbox.highestModSeq()
        self.selectInbox()
        self.session.send(b"a STORE 2,5 +FLAGS.SILENT (\\Deleted)\r\nb EXPUNGE\r\n")
        self.session.send(b"c UID STORE 3 +FLAGS (\\Seen)\r\n")
        changed = modseqs(self.inbox)[3]
        later = self.reopened()
        self.enable(b"QRESYNC", later)
        reply = later.send(b"s SELECT INBOX (QRESYNC (%d %d))\r\n" % (validity, known))
        self.assertEqual(
            [line for line in untagged(reply) if b"VANISHED" in line or b"FETCH" in line],
            [
                b"* VANISHED (EARLIER) 2,5",
                b"* 2 FETCH (UID 3 FLAGS (\\Seen) MODSEQ (%d))" % changed,
            ],
        )

    def test_a_rename_in_cur_by_another_program_is_reported_with_a_new_modseq(self) -> None:
        self.fill(3)
        before = self.inbox.highestModSeq()
        self.enable(b"CONDSTORE")
        self.selectInbox()
        renameInCur(self.store, 2, "FS")
        reply = self.session.send(b"n NOOP\r\n")
        value = modseqs(self.inbox)[2]
        self.assertGreater(value, before)
        self.assertRegex(
            reply,
            rb"^\* 2 FETCH \((UID 2 )?FLAGS \(\\Flagged \\Seen\) MODSEQ \(%d\)\)\r\n"
            rb"n OK NOOP completed\r\n$" % value,
        )
        self.assertEqual(
            self.session.send(b"f FETCH 1:* (FLAGS) (CHANGEDSINCE %d)\r\n" % before),
            b"* 2 FETCH (FLAGS (\\Flagged \\Seen) MODSEQ (%d))\r\nf OK FETCH completed\r\n" % value,
        )

    def test_a_rename_in_cur_before_select_shows_up_in_fetch_changedsince(self) -> None:
        self.fill(3)
        before = self.inbox.highestModSeq()
        renameInCur(self.store, 1, "D")
        self.selectInbox()
        value = modseqs(self.inbox)[1]
        self.assertGreater(value, before)
        self.assertEqual(
            self.session.sendEnabling(b"f FETCH 1:* (FLAGS) (CHANGEDSINCE %d)\r\n" % before),
            b"* 1 FETCH (FLAGS (\\Draft) MODSEQ (%d))\r\nf OK FETCH completed\r\n" % value,
        )

    def test_a_rename_in_cur_while_the_server_is_down_is_a_change_since(self) -> None:
        self.fill(3)
        self.selectInbox()
        before = self.inbox.highestModSeq()
        renameInCur(self.store, 3, "R")
        later = self.reopened()
        later.select()
        reply = later.sendEnabling(b"f FETCH 1:* (FLAGS) (CHANGEDSINCE %d)\r\n" % before)
        value = modseqs(later.store.getFolder("INBOX"))[3]
        self.assertGreater(value, before)
        self.assertEqual(
            reply,
            b"* 3 FETCH (FLAGS (\\Answered) MODSEQ (%d))\r\nf OK FETCH completed\r\n" % value,
        )

    def test_a_deletion_by_another_program_is_vanished_earlier_after_a_restart(self) -> None:
        self.fill(3)
        validity = self.inbox.uidValidity()
        known = self.inbox.highestModSeq()
        key = {info.uid: info.key for info in self.inbox.messages()}[2]
        cur = self.store.root / "cur"
        [name] = [n for n in os.listdir(cur) if n.startswith(key)]
        os.unlink(cur / name)
        later = self.reopened()
        self.enable(b"QRESYNC", later)
        reply = later.send(b"s SELECT INBOX (QRESYNC (%d %d))\r\n" % (validity, known))
        self.assertIn(b"* VANISHED (EARLIER) 2\r\n", reply)
        self.assertGreater(later.store.getFolder("INBOX").highestModSeq(), known)

    def test_a_lost_modseq_log_makes_qresync_report_every_missing_uid(self) -> None:
        """
        Without its log the folder cannot say what was expunged when: a
        client resynchronising from before then is told every missing UID
        and every message's flags, under a higher HIGHESTMODSEQ.
        """
        self.fill(4)
        validity = self.inbox.uidValidity()
        known = self.inbox.highestModSeq()
        self.inbox.expunge([2])
        os.unlink(self.store.root / "tmail-modseq")
        later = self.reopened()
        self.enable(b"QRESYNC", later)
        reply = later.send(b"s SELECT INBOX (QRESYNC (%d %d))\r\n" % (validity, known))
        folder = later.store.getFolder("INBOX")
        self.assertGreater(folder.highestModSeq(), known)
        values = modseqs(folder)
        self.assertEqual(
            [line for line in untagged(reply) if b"VANISHED" in line or b"FETCH" in line],
            [b"* VANISHED (EARLIER) 2"]
            + [
                b"* %d FETCH (UID %d FLAGS () MODSEQ (%d))" % (seq, uid, values[uid])
                for seq, uid in [(1, 1), (2, 3), (3, 4)]
            ],
        )


class CondstoreClientTests(TestCase):
    """imapclient over a real socket parses every CONDSTORE and QRESYNC response."""

    timeout = 20

    @inlineCallbacks
    def test_imapclient_condstore_select_fetch_changedsince_and_search_modseq(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        fixture = makeRealm(Path(self.mktemp()))
        inbox = fixture.store("alice@example.test").getFolder("INBOX")
        for _ in range(3):
            deliver(inbox, MESSAGE)
        inbox.messages()
        since = inbox.highestModSeq()
        port = yield listenIMAP(self, fixture)

        def client() -> dict[str, Any]:
            imap = imapclient(port)
            try:
                enabled = imap.enable("CONDSTORE")
                examined = imap.select_folder("INBOX", readonly=True)
                imap.unselect_folder()
                selected = imap.select_folder("INBOX")
                imap.add_flags([2], ["\\Seen"])
                changed = imap.fetch([1, 2, 3], ["MODSEQ", "FLAGS"], [f"CHANGEDSINCE {since}"])
                found = imap.search(["MODSEQ", since + 1])
            finally:
                imap.logout()
            return {
                "enabled": enabled,
                "examined": examined,
                "selected": selected,
                "changed": changed,
                "found": found,
            }

        seen = yield inThread(client)
        modseq = modseqs(inbox)[2]
        self.assertEqual(seen["enabled"], [b"CONDSTORE"])
        self.assertEqual(seen["examined"][b"HIGHESTMODSEQ"], since)
        self.assertEqual(seen["selected"][b"HIGHESTMODSEQ"], since)
        self.assertEqual(
            seen["changed"], {2: {b"SEQ": 2, b"MODSEQ": (modseq,), b"FLAGS": (b"\\Seen",)}}
        )
        self.assertEqual(list(seen["found"]), [2])
        self.assertEqual(seen["found"].modseq, modseq)

    @inlineCallbacks
    def test_imapclient_qresync_session_parses_vanished_and_closed(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        fixture = makeRealm(Path(self.mktemp()))
        store = fixture.store("alice@example.test")
        store.createFolder("Archive")
        inbox = store.getFolder("INBOX")
        for _ in range(3):
            deliver(inbox, MESSAGE)
        port = yield listenIMAP(self, fixture)

        def client() -> dict[str, Any]:
            imap = imapclient(port)
            other = imapclient(port)
            try:
                enabled = imap.enable("QRESYNC")
                imap.select_folder("INBOX")
                other.select_folder("INBOX")
                other.add_flags([1], ["\\Flagged"])
                other.delete_messages([2])
                other.expunge()
                told = imap.noop()
                archive = imap.select_folder("Archive")
            finally:
                other.logout()
                imap.logout()
            return {"enabled": enabled, "told": told, "archive": archive}

        seen = yield inThread(client)
        self.assertEqual(seen["enabled"], [b"QRESYNC"])
        self.assertEqual(
            seen["told"][1],
            [
                (b"VANISHED", 2),
                (2, b"EXISTS"),
                (2, b"RECENT"),
                (
                    1,
                    b"FETCH",
                    (
                        b"UID",
                        1,
                        b"FLAGS",
                        (b"\\Flagged", b"\\Recent"),
                        b"MODSEQ",
                        (modseqs(inbox)[1],),
                    ),
                ),
            ],
        )
        self.assertEqual(seen["archive"][b"CLOSED"], [b""])
        self.assertEqual(
            seen["archive"][b"HIGHESTMODSEQ"], store.getFolder("Archive").highestModSeq()
        )


class OtherSessionsChangesTests(SynchronousTestCase):
    """What one session's own commands must not hide of another session's changes."""

    def sessions(self, qresync: bool = False, condstore: bool = False) -> tuple[Session, Session]:
        first = Session(self)
        second = Session(self, fixture=first.fixture)
        inbox = first.store.getFolder("INBOX")
        deliver(inbox)
        deliver(inbox)
        first.select()
        second.loginDirectly()
        if qresync:
            second.send(b"e ENABLE QRESYNC\r\n")
        elif condstore:
            second.send(b"e ENABLE CONDSTORE\r\n")
        second.send(b"s SELECT INBOX\r\n")
        return first, second

    def test_a_silent_store_does_not_swallow_another_sessions_flag_change(self) -> None:
        first, second = self.sessions()
        first.send(b"1 STORE 1 +FLAGS (\\Flagged)\r\n")
        told = second.send(b"2 STORE 1 +FLAGS.SILENT (\\Seen)\r\n")
        told += second.send(b"3 NOOP\r\n")
        self.assertIn(b"* 1 FETCH (FLAGS (\\Flagged \\Seen", told)

    def test_a_silent_store_does_not_swallow_a_flag_another_program_set_unseen(self) -> None:
        """
        Another Maildir program renamed the file (a flag the store had not
        yet seen), then a session adds a flag with .SILENT: the rename
        the store comes across keeps that flag, and the client, which
        takes its own change as made, is told of the other one.
        """
        for condstore in (False, True):
            first, second = self.sessions(condstore=condstore)
            renameInCurUnseen(first.store, 1, "R")
            told = second.send(b"1 STORE 1 +FLAGS.SILENT (\\Seen)\r\n")
            told += second.send(b"2 NOOP\r\n")
            flags = {info.uid: info.flags for info in first.store.getFolder("INBOX").messages()}
            self.assertEqual(flags[1], {"\\Answered", "\\Seen"})
            self.assertIn(b"* 1 FETCH (FLAGS (\\Answered \\Seen)", told)

    def test_fetching_a_body_sets_seen_another_session_took_away(self) -> None:
        first, second = self.sessions()
        second.send(b"1 STORE 1 +FLAGS (\\Seen)\r\n")
        first.send(b"2 STORE 1 -FLAGS (\\Seen)\r\n")
        second.send(b"3 FETCH 1 BODY[]\r\n")
        flags = {info.uid: info.flags for info in first.store.getFolder("INBOX").messages()}
        self.assertIn("\\Seen", flags[1])

    def test_a_store_changing_nothing_still_warns_of_held_expunges(self) -> None:
        first, second = self.sessions(qresync=True)
        first.send(b"1 STORE 1 +FLAGS (\\Deleted)\r\n2 EXPUNGE\r\n")
        second.send(b"3 STORE 2 +FLAGS (\\Answered)\r\n")
        reply = second.send(b"5 STORE 2 +FLAGS (\\Answered)\r\n")
        self.assertIn(b"MODSEQ", reply)
        self.assertIn(b"OK [HIGHESTMODSEQ ", reply)

    def test_a_fetch_with_expungeissued_still_warns_of_held_expunges(self) -> None:
        first, second = self.sessions(qresync=True)
        first.send(b"1 STORE 1 +FLAGS (\\Deleted)\r\n2 EXPUNGE\r\n")
        # The file kept for the second session goes too: it cannot be read.
        for kept in (first.store.root / "tmp").iterdir():
            kept.unlink()
        reply = second.send(b"3 FETCH 1:2 (FLAGS BODY[HEADER.FIELDS (SUBJECT)])\r\n")
        self.assertIn(b"NO [EXPUNGEISSUED]", reply)
        self.assertIn(b"OK [HIGHESTMODSEQ ", reply)

    def test_under_qresync_store_and_fetch_responses_carry_the_uid(self) -> None:
        _, second = self.sessions(qresync=True)
        self.assertIn(b"UID 1", second.send(b"1 STORE 1 +FLAGS (\\Flagged)\r\n"))
        self.assertIn(b"UID 2", second.send(b"2 FETCH 2 BODY[HEADER.FIELDS (SUBJECT)]\r\n"))
        self.assertIn(b"UID 2", second.send(b"3 FETCH 2 FLAGS\r\n"))
