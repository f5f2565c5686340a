"""
What each session is told of a folder that other sessions change, as
transcripts over C{StringTransport}: C{\\Recent} (RFC 3501 2.3.2), the
HIGHESTMODSEQ a CONDSTORE-enabling command brings (RFC 7162 3.1), new
keywords announced before a FETCH names them (RFC 3501 7.2.6), messages
another session expunged (RFC 2180 4.1.1, Dovecot's EXPUNGEISSUED), and
EXPUNGE responses that are valid for the session's view when sent.
"""

from __future__ import annotations

from test_imap_protocol import MESSAGE, Session, deliver, responses
from twisted.trial.unittest import SynchronousTestCase


class RecentTests(SynchronousTestCase):
    """RFC 3501 2.3.2: recent for the one session that sees a message first."""

    def setUp(self) -> None:
        self.first = Session(self)
        self.inbox = self.first.store.getFolder("INBOX")
        self.first.loginDirectly()

    def other(self) -> Session:
        session = Session(self, fixture=self.first.fixture)
        session.loginDirectly()
        return session

    def test_status_recent_counts_new_messages_without_taking_them_away(self) -> None:
        deliver(self.inbox)
        deliver(self.inbox)
        for tag in (b"a", b"b"):
            self.assertEqual(
                self.first.send(tag + b" STATUS INBOX (MESSAGES RECENT)\r\n"),
                b'* STATUS "INBOX" (MESSAGES 2 RECENT 2)\r\n' + tag + b" OK STATUS completed\r\n",
            )
        self.assertIn(b"* 2 RECENT\r\n", self.first.send(b"c SELECT INBOX\r\n"))

    def test_examine_reports_recent_and_leaves_it_for_the_next_select(self) -> None:
        deliver(self.inbox)
        deliver(self.inbox)
        examined = self.other()
        reply = examined.send(b"a EXAMINE INBOX\r\n")
        self.assertIn(b"* 2 RECENT\r\n", reply)
        self.assertIn(b"* 1 FETCH (FLAGS (\\Recent))", examined.send(b"b FETCH 1 FLAGS\r\n"))
        self.assertIn(b"* 2 RECENT\r\n", self.first.send(b"c SELECT INBOX\r\n"))
        self.assertIn(b"* 1 FETCH (FLAGS (\\Recent))", self.first.send(b"d FETCH 1 FLAGS\r\n"))
        late = self.other()
        self.assertIn(b"* 0 RECENT\r\n", late.send(b"e SELECT INBOX\r\n"))
        self.assertIn(b"* 1 FETCH (FLAGS ())", late.send(b"f FETCH 1 FLAGS\r\n"))
        self.assertIn(b"(RECENT 0)", late.send(b"g STATUS INBOX (RECENT)\r\n"))

    def test_a_new_message_is_recent_for_the_one_selected_session_that_sees_it_first(
        self,
    ) -> None:
        self.first.send(b"a SELECT INBOX\r\n")
        second = self.other()
        second.send(b"b SELECT INBOX\r\n")
        deliver(self.inbox)
        self.assertEqual(
            self.first.send(b"c NOOP\r\n"),
            b"* 1 EXISTS\r\n* 1 RECENT\r\nc OK NOOP completed\r\n",
        )
        self.assertEqual(
            second.send(b"d NOOP\r\n"),
            b"* 1 EXISTS\r\n* 0 RECENT\r\nd OK NOOP completed\r\n",
        )


class CondstoreEnablingTests(SynchronousTestCase):
    """
    RFC 7162 3.1: the first CONDSTORE-enabling command with a mailbox
    selected is answered with the mailbox's HIGHESTMODSEQ too, in an
    untagged OK before the tagged reply (as Dovecot does); later ones
    are not.
    """

    def setUp(self) -> None:
        self.session = Session(self)
        self.inbox = self.session.store.getFolder("INBOX")
        deliver(self.inbox)
        deliver(self.inbox)
        self.session.select()
        self.highest = self.inbox.highestModSeq()
        self.told = b"* OK [HIGHESTMODSEQ %d] Highest\r\n" % self.highest

    def assertEnabledBy(self, command: bytes) -> None:
        reply = self.session.send(b"a " + command + b"\r\n")
        self.assertTrue(reply.startswith(self.told), reply)
        self.assertEqual(reply.count(b"HIGHESTMODSEQ"), 1, reply)
        again = self.session.send(b"b " + command + b"\r\n")
        self.assertNotIn(b"[HIGHESTMODSEQ", again)

    def test_fetch_modseq_first_brings_highestmodseq(self) -> None:
        self.assertEnabledBy(b"FETCH 1 MODSEQ")

    def test_fetch_changedsince_first_brings_highestmodseq(self) -> None:
        self.assertEnabledBy(b"FETCH 1 (FLAGS) (CHANGEDSINCE 1)")

    def test_search_modseq_first_brings_highestmodseq(self) -> None:
        self.assertEnabledBy(b"SEARCH MODSEQ 1")

    def test_conditional_store_first_brings_highestmodseq(self) -> None:
        self.assertEnabledBy(b"STORE 1 (UNCHANGEDSINCE %d) +FLAGS ($A)" % (self.highest + 5))

    def test_status_highestmodseq_while_selected_brings_it_for_the_selected_mailbox(self) -> None:
        self.session.store.createFolder("Other")
        reply = self.session.send(b"a STATUS Other (HIGHESTMODSEQ)\r\n")
        self.assertTrue(reply.startswith(self.told), reply)

    def test_select_condstore_says_it_once_in_the_select_responses(self) -> None:
        reply = self.session.send(b"a SELECT INBOX (CONDSTORE)\r\n")
        self.assertEqual(reply.count(b"HIGHESTMODSEQ"), 1, reply)
        self.assertNotIn(b"[HIGHESTMODSEQ", self.session.send(b"b FETCH 1 MODSEQ\r\n"))


class KeywordAnnouncementTests(SynchronousTestCase):
    """
    RFC 3501 7.2.6 / RFC 9051 7.3.5: a client is told of a keyword in
    FLAGS (and PERMANENTFLAGS) before any FETCH names it, whichever session
    created it.
    """

    FLAGS = b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft"

    def permanent(self, keyword: bytes) -> bytes:
        return (
            b"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft %s \\*)]"
            b" Flags allowed" % keyword
        )

    def setUp(self) -> None:
        self.first = Session(self)
        self.inbox = self.first.store.getFolder("INBOX")
        deliver(self.inbox)
        deliver(self.inbox)
        self.first.select()
        self.second = Session(self, fixture=self.first.fixture)
        self.second.select()

    def test_own_store_of_a_new_keyword_announces_it_before_the_fetch(self) -> None:
        self.assertEqual(
            responses(self.first.send(b"a STORE 1 +FLAGS ($Work)\r\n")),
            [
                self.FLAGS + b" $Work)",
                self.permanent(b"$Work"),
                b"* 1 FETCH (FLAGS ($Work \\Recent))",
                b"a OK STORE completed",
            ],
        )
        self.assertEqual(
            self.first.send(b"b STORE 2 +FLAGS ($Work)\r\n"),
            b"* 2 FETCH (FLAGS ($Work \\Recent))\r\nb OK STORE completed\r\n",
        )

    def test_another_sessions_new_keyword_is_announced_before_its_fetch(self) -> None:
        self.second.send(b"a STORE 2 +FLAGS.SILENT ($Other)\r\n")
        self.assertEqual(
            responses(self.first.send(b"b NOOP\r\n")),
            [
                self.FLAGS + b" $Other)",
                self.permanent(b"$Other"),
                b"* 2 FETCH (FLAGS ($Other \\Recent))",
                b"b OK NOOP completed",
            ],
        )

    def test_a_keyword_learned_while_storing_is_announced_before_the_store_reply(self) -> None:
        self.second.send(b"a STORE 1 +FLAGS.SILENT ($Other)\r\n")
        reply = responses(self.first.send(b"b STORE 1 +FLAGS (\\Flagged)\r\n"))
        self.assertEqual(
            reply[:3],
            [
                self.FLAGS + b" $Other)",
                self.permanent(b"$Other"),
                b"* 1 FETCH (FLAGS ($Other \\Flagged \\Recent))",
            ],
        )
        self.assertEqual(reply[-1], b"b OK STORE completed")

    def test_examine_announces_new_keywords_with_empty_permanentflags(self) -> None:
        reader = Session(self, fixture=self.first.fixture)
        reader.loginDirectly()
        reader.send(b"a EXAMINE INBOX\r\n")
        self.first.send(b"b STORE 1 +FLAGS.SILENT ($Seen2)\r\n")
        self.assertEqual(
            responses(reader.send(b"c NOOP\r\n"))[:2],
            [self.FLAGS + b" $Seen2)", b"* OK [PERMANENTFLAGS ()] Flags allowed"],
        )


class ExpungedElsewhereTests(SynchronousTestCase):
    """
    A message another session expunged stays in this session's view until
    it may be told (RFC 3501 7.4.1); meanwhile a FETCH of it is served
    while the bytes can be read (RFC 2180 4.1.1), and only when they
    cannot is it C{NO [EXPUNGEISSUED]} in Dovecot's words.
    """

    def setUp(self) -> None:
        self.watcher = Session(self)
        self.store = self.watcher.store
        self.inbox = self.store.getFolder("INBOX")
        for n in range(3):
            deliver(self.inbox, MESSAGE + b"number %d\r\n" % n)
        self.store.createFolder("Other")
        self.watcher.select()
        self.actor = Session(self, fixture=self.watcher.fixture)
        self.actor.select()
        self.actor.send(b"a STORE 2 +FLAGS.SILENT (\\Deleted)\r\nb EXPUNGE\r\n")

    def tmpFiles(self) -> list[str]:
        return sorted(p.name for p in (self.store.root / "tmp").iterdir())

    def test_fetch_of_a_message_expunged_elsewhere_serves_its_bytes_until_told(self) -> None:
        body = MESSAGE + b"number 1\r\n"
        self.assertEqual(
            self.watcher.send(b"c FETCH 2 (UID BODY.PEEK[])\r\n"),
            b"* 2 FETCH (UID 2 BODY[] {%d}\r\n%s)\r\nc OK FETCH completed\r\n" % (len(body), body),
        )
        self.assertEqual(
            self.watcher.send(b"d NOOP\r\n"),
            b"* 2 EXPUNGE\r\n* 2 EXISTS\r\n* 2 RECENT\r\nd OK NOOP completed\r\n",
        )
        self.assertEqual(self.tmpFiles(), [])

    def test_a_message_whose_file_is_gone_is_expungeissued_in_dovecots_words(self) -> None:
        for name in self.tmpFiles():
            (self.store.root / "tmp" / name).unlink()
        self.assertEqual(
            responses(self.watcher.send(b"c FETCH 1:3 (UID BODY.PEEK[HEADER])\r\n"))[-1],
            b"c NO [EXPUNGEISSUED] Some of the requested messages no longer exist",
        )

    def test_copy_of_a_message_expunged_elsewhere_copies_nothing(self) -> None:
        self.assertEqual(
            self.watcher.send(b"c COPY 1:3 Other\r\n"),
            b"* 2 EXPUNGE\r\n* 2 EXISTS\r\n* 2 RECENT\r\n"
            b"c NO [EXPUNGEISSUED] Some of the requested messages no longer exist\r\n",
        )
        self.assertEqual(self.store.getFolder("Other").messages(), ())

    def test_store_of_a_message_expunged_elsewhere_changes_the_others(self) -> None:
        """
        The tagged reply is Dovecot's (OK); the expunged message gets no
        FETCH: nothing changed, and no higher MODSEQ could be given.
        """
        self.assertEqual(
            self.watcher.send(b"c STORE 1:3 +FLAGS (\\Flagged)\r\n"),
            b"* 1 FETCH (FLAGS (\\Flagged \\Recent))\r\n"
            b"* 3 FETCH (FLAGS (\\Flagged \\Recent))\r\n"
            b"c OK STORE completed\r\n",
        )

    def test_the_kept_file_goes_when_the_last_session_holding_it_leaves(self) -> None:
        self.assertEqual(len(self.tmpFiles()), 1)
        self.watcher.server.connectionLost(None)
        self.assertEqual(self.tmpFiles(), [])


class ExpungeValidityTests(SynchronousTestCase):
    """
    Every EXPUNGE a session sends is valid for its view when sent (RFC
    3501 7.4.1), and none comes at LOGOUT, after BYE: the client has
    dropped its view by then (Dovecot sends none either).
    """

    def setUp(self) -> None:
        self.watcher = Session(self)
        self.inbox = self.watcher.store.getFolder("INBOX")
        for _ in range(3):
            deliver(self.inbox)
        self.watcher.select()
        self.actor = Session(self, fixture=self.watcher.fixture)
        self.actor.select()

    def test_logout_reports_no_expunge_after_bye(self) -> None:
        self.actor.send(b"a STORE 2:3 +FLAGS.SILENT (\\Deleted)\r\nb EXPUNGE\r\n")
        self.assertEqual(
            self.watcher.send(b"c LOGOUT\r\n"), b"* BYE Logging out\r\nc OK LOGOUT completed\r\n"
        )

    def test_expunges_held_through_fetch_come_highest_first_at_noop(self) -> None:
        self.actor.send(b"a STORE 1:3 +FLAGS.SILENT (\\Deleted)\r\nb EXPUNGE\r\n")
        self.assertNotIn(b"EXPUNGE", self.watcher.send(b"c FETCH 1:3 (FLAGS)\r\n"))
        deliver(self.inbox)
        self.assertEqual(
            self.watcher.send(b"d NOOP\r\n"),
            b"* 3 EXPUNGE\r\n* 2 EXPUNGE\r\n* 1 EXPUNGE\r\n* 1 EXISTS\r\n* 1 RECENT\r\n"
            b"d OK NOOP completed\r\n",
        )


class StoreReplyTests(SynchronousTestCase):
    """A STORE's FETCH shows the change it made, whatever another session did first."""

    def test_store_reply_shows_its_change_after_another_sessions_change(self) -> None:
        first = Session(self)
        inbox = first.store.getFolder("INBOX")
        deliver(inbox)
        first.select()
        second = Session(self, fixture=first.fixture)
        second.select()
        second.send(b"a STORE 1 +FLAGS.SILENT (\\Seen)\r\n")
        self.assertEqual(
            first.send(b"b STORE 1 +FLAGS (\\Flagged)\r\n"),
            b"* 1 FETCH (FLAGS (\\Flagged \\Seen \\Recent))\r\nb OK STORE completed\r\n",
        )
        self.assertEqual(
            first.send(b"c FETCH 1 FLAGS\r\n"),
            b"* 1 FETCH (FLAGS (\\Flagged \\Seen \\Recent))\r\nc OK FETCH completed\r\n",
        )
