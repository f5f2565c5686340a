"""
ESORT and CONTEXT=SEARCH / CONTEXT=SORT (RFC 5267): SORT's RETURN options,
the CONTEXT hint, live results (UPDATE: ADDTO and REMOVEFROM as the mailbox
changes), CANCELUPDATE and NOUPDATE, as transcripts over C{StringTransport}
and with C{imaplib} over loopback.
"""

from __future__ import annotations

import imaplib
import random
import re
from collections.abc import Generator
from pathlib import Path
from typing import Any

from test_imap_esearch import put
from test_imap_partial import WANTED, junkMailbox, untagged
from test_imap_protocol import Session
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase, TestCase

from support.imaploop import listenIMAP
from support.liveresult import ClientView, numbers
from support.net import inThread
from support.realm import ALICE, PASSWORD, makeRealm
from tmail.interfaces import IMailFolder


def dated(folder: IMailFolder, day: int, flags: tuple[str, ...] = ()) -> int:
    """Store a message sent on day C{day} of January 2024; return its UID."""
    pending = folder.beginMessage(flags, None)
    pending.write(b"Date: %d Jan 2024 12:00:00 +0000\r\nSubject: s\r\n\r\nbody\r\n" % day)
    return pending.commit()


class ESortTests(SynchronousTestCase):
    """RFC 5267 3: SORT with RETURN options answers with ESEARCH, in sort order."""

    def setUp(self) -> None:
        self.session = Session(self)
        self.inbox = self.session.store.getFolder("INBOX")

    def send(self, line: bytes) -> bytes:
        return self.session.send(line + b"\r\n")

    def sixMessages(self) -> None:
        """UIDs 1-6 sent on days 1-6; 1 is \\Deleted, 3 is $Junk."""
        for day in range(1, 7):
            flags = ("\\Deleted",) if day == 1 else ("$Junk",) if day == 3 else ()
            dated(self.inbox, day, flags)
        self.session.select()

    def test_rfc_example_lists_in_sort_order_without_descending_ranges(self) -> None:
        """RFC 5267 3.3: C{RETURN ()} is ALL, in sort order; never C{6:4} for 6, 5, 4."""
        self.sixMessages()
        self.assertEqual(
            self.send(b"E01 UID SORT RETURN () (REVERSE DATE) UTF-8 " + WANTED),
            b'* ESEARCH (TAG "E01") UID ALL 6,5,4,2\r\nE01 OK SORT completed\r\n',
        )
        self.assertEqual(
            self.send(b"E02 UID SORT RETURN (ALL) (DATE) UTF-8 " + WANTED),
            b'* ESEARCH (TAG "E02") UID ALL 2,4:6\r\nE02 OK SORT completed\r\n',
        )

    def test_min_and_max_are_first_and_last_in_sort_order(self) -> None:
        """RFC 5267 3.1."""
        self.sixMessages()
        self.assertEqual(
            self.send(b"t SORT RETURN (MIN MAX COUNT) (REVERSE DATE) UTF-8 " + WANTED),
            b'* ESEARCH (TAG "t") MIN 6 MAX 2 COUNT 4\r\nt OK SORT completed\r\n',
        )

    def test_no_match_gives_only_count(self) -> None:
        self.sixMessages()
        self.assertEqual(
            self.send(b"t SORT RETURN (MIN MAX ALL COUNT) (DATE) UTF-8 KEYWORD nothing"),
            b'* ESEARCH (TAG "t") COUNT 0\r\nt OK SORT completed\r\n',
        )

    def test_save_keeps_the_sorted_result(self) -> None:
        self.sixMessages()
        self.assertEqual(
            self.send(b"a SORT RETURN (SAVE MIN) (REVERSE DATE) UTF-8 " + WANTED),
            b'* ESEARCH (TAG "a") MIN 6\r\na OK SORT completed\r\n',
        )
        self.assertEqual(
            self.send(b"b UID SEARCH RETURN (ALL) UID $"),
            b'* ESEARCH (TAG "b") UID ALL 6\r\nb OK SEARCH completed\r\n',
        )

    def test_sort_without_return_is_unchanged(self) -> None:
        self.sixMessages()
        self.assertEqual(
            self.send(b"t SORT (REVERSE DATE) UTF-8 " + WANTED),
            b"* SORT 6 5 4 2\r\nt OK SORT completed\r\n",
        )

    def test_bad_return_options_are_bad(self) -> None:
        self.sixMessages()
        for line in [
            b"t SORT RETURN (FROB) (DATE) UTF-8 ALL",
            b"t SORT RETURN MIN (DATE) UTF-8 ALL",
            b"t SORT RETURN (MIN) UTF-8 ALL",
            b"t SORT RETURN (PARTIAL 1:2 ALL) (DATE) UTF-8 ALL",
        ]:
            self.assertTrue(self.send(line).startswith(b"t BAD "), line)

    def test_capabilities(self) -> None:
        caps = self.send(b"c CAPABILITY").split(b"\r\n")[0].split(b" ")
        for name in (b"ESORT", b"CONTEXT=SEARCH", b"CONTEXT=SORT", b"SORT", b"ESEARCH"):
            self.assertIn(name, caps)


class ContextSearchTests(SynchronousTestCase):
    """RFC 5267 4: CONTEXT and UPDATE on SEARCH; CANCELUPDATE; NOUPDATE."""

    def setUp(self) -> None:
        self.session = Session(self)
        self.inbox = self.session.store.getFolder("INBOX")
        junkMailbox(self.inbox)
        self.session.select()
        self.actor = Session(self, self.session.fixture)
        self.actor.select()

    def send(self, line: bytes) -> bytes:
        return self.session.send(line + b"\r\n")

    def act(self, line: bytes) -> bytes:
        return self.actor.send(line + b"\r\n")

    def test_context_hint_rfc_example(self) -> None:
        """RFC 5267 4.2: CONTEXT is a hint; the other options are answered as ever."""
        self.assertEqual(
            self.send(b"A01 SEARCH RETURN (CONTEXT COUNT) " + WANTED),
            b'* ESEARCH (TAG "A01") COUNT 9\r\nA01 OK SEARCH completed\r\n',
        )
        self.assertEqual(
            self.send(b"A02 SEARCH RETURN (CONTEXT) " + WANTED),
            b'* ESEARCH (TAG "A02") ALL 1,3:4,6,8:12\r\nA02 OK SEARCH completed\r\n',
        )

    def test_update_addto_follows_exists(self) -> None:
        """RFC 5267 4.3.3: a delivered message that matches is added after EXISTS."""
        self.assertEqual(
            self.send(b"B01 UID SEARCH RETURN (UPDATE COUNT) " + WANTED),
            b'* ESEARCH (TAG "B01") UID COUNT 9\r\nB01 OK SEARCH completed\r\n',
        )
        put(self.inbox)
        put(self.inbox, flags=("$Junk",))
        put(self.inbox)
        self.assertEqual(
            self.send(b"B02 NOOP"),
            b"* 15 EXISTS\r\n* 15 RECENT\r\n"
            b'* ESEARCH (TAG "B01") UID ADDTO (0 13,15)\r\nB02 OK NOOP completed\r\n',
        )

    def test_update_removefrom_precedes_expunge(self) -> None:
        """RFC 5267 4.3.4: REMOVEFROM goes out while the sequence numbers still hold."""
        self.send(b"B01 SEARCH RETURN (UPDATE) " + WANTED)
        self.act(b"a STORE 5:7 +FLAGS.SILENT (\\Deleted)")
        self.assertEqual(
            self.send(b"B02 NOOP"),
            b"* 6 FETCH (FLAGS (\\Deleted \\Recent))\r\n"
            b"* 7 FETCH (FLAGS ($Junk \\Deleted \\Recent))\r\n"
            b'* ESEARCH (TAG "B01") REMOVEFROM (0 6)\r\nB02 OK NOOP completed\r\n',
        )
        self.act(b"b EXPUNGE")
        self.assertEqual(
            self.send(b"B03 NOOP"),
            b"* 7 EXPUNGE\r\n* 6 EXPUNGE\r\n* 5 EXPUNGE\r\n* 9 EXISTS\r\n* 9 RECENT\r\n"
            b"B03 OK NOOP completed\r\n",
        )
        self.send(b"B04 UID SEARCH RETURN (UPDATE) " + WANTED)
        self.act(b"c STORE 1,9 +FLAGS.SILENT (\\Deleted)")
        self.act(b"d EXPUNGE")
        self.assertEqual(
            self.send(b"B05 NOOP"),
            b'* ESEARCH (TAG "B01") REMOVEFROM (0 1,9)\r\n'
            b'* ESEARCH (TAG "B04") UID REMOVEFROM (0 1,12)\r\n'
            b"* 9 EXPUNGE\r\n* 1 EXPUNGE\r\n* 7 EXISTS\r\n* 7 RECENT\r\n"
            b"B05 OK NOOP completed\r\n",
        )

    def test_update_with_save_answers_nothing_and_updates(self) -> None:
        """RFC 5182 2.1: SAVE alone sends no ESEARCH; UPDATE changes nothing there."""
        self.assertEqual(
            self.send(b"B01 UID SEARCH RETURN (SAVE UPDATE) UNSEEN"),
            b"B01 OK SEARCH completed\r\n",
        )
        self.assertEqual(
            self.send(b"B02 UID SEARCH RETURN (COUNT) UID $"),
            b'* ESEARCH (TAG "B02") UID COUNT 12\r\nB02 OK SEARCH completed\r\n',
        )
        self.act(b"a STORE 2 +FLAGS.SILENT (\\Seen)")
        self.assertIn(b'* ESEARCH (TAG "B01") UID REMOVEFROM (0 2)\r\n', self.send(b"B03 NOOP"))

    def test_own_store_updates_the_result(self) -> None:
        self.send(b"B01 UID SEARCH RETURN (UPDATE) " + WANTED)
        self.assertEqual(
            self.send(b"B02 STORE 1,2 FLAGS ($Junk)"),
            b"* 1 FETCH (FLAGS ($Junk \\Recent))\r\n* 2 FETCH (FLAGS ($Junk \\Recent))\r\n"
            b'* ESEARCH (TAG "B01") UID REMOVEFROM (0 1)\r\nB02 OK STORE completed\r\n',
        )
        self.assertEqual(
            self.send(b"B03 UID STORE 2,5,7 FLAGS.SILENT ()"),
            b'* ESEARCH (TAG "B01") UID ADDTO (0 2,5,7)\r\nB03 OK STORE completed\r\n',
        )

    def test_fetch_setting_seen_updates_the_result(self) -> None:
        self.send(b"B01 UID SEARCH RETURN (UPDATE) UNSEEN")
        answer = self.send(b"B02 FETCH 3 BODY[TEXT]")
        self.assertIn(b'* ESEARCH (TAG "B01") UID REMOVEFROM (0 3)\r\n', answer)
        self.assertTrue(answer.endswith(b"B02 OK FETCH completed\r\n"))

    def test_update_during_idle(self) -> None:
        """RFC 5267 4.3.2: updates may come at any time, IDLE included."""
        self.send(b"B01 UID SEARCH RETURN (UPDATE) " + WANTED)
        self.assertEqual(self.send(b"B02 IDLE"), b"+ Idling\r\n")
        self.act(b"a STORE 4 +FLAGS.SILENT ($Junk)")
        self.session.pump()
        self.assertEqual(
            self.session.take(),
            b'* 4 FETCH (FLAGS ($Junk \\Recent))\r\n* ESEARCH (TAG "B01") UID REMOVEFROM (0 4)\r\n',
        )
        self.assertEqual(self.session.send(b"DONE\r\n"), b"B02 OK IDLE terminated\r\n")

    def test_cancelupdate_stops_the_updates(self) -> None:
        """RFC 5267 4.3.5."""
        self.send(b"B01 UID SEARCH RETURN (UPDATE) " + WANTED)
        self.send(b"B02 UID SEARCH RETURN (UPDATE) UNSEEN")
        self.assertEqual(self.send(b'B04 CANCELUPDATE "B01"'), b"B04 OK CANCELUPDATE completed\r\n")
        self.act(b"a STORE 1 +FLAGS.SILENT ($Junk \\Seen)")
        self.assertEqual(
            self.send(b"B05 NOOP"),
            b"* 1 FETCH (FLAGS ($Junk \\Seen \\Recent))\r\n"
            b'* ESEARCH (TAG "B02") UID REMOVEFROM (0 1)\r\nB05 OK NOOP completed\r\n',
        )
        self.assertEqual(self.send(b'B06 CANCELUPDATE "B02"'), b"B06 OK CANCELUPDATE completed\r\n")
        self.act(b"b STORE 1 -FLAGS.SILENT ($Junk \\Seen)")
        self.assertEqual(
            self.send(b"B07 NOOP"),
            b"* 1 FETCH (FLAGS (\\Recent))\r\nB07 OK NOOP completed\r\n",
        )

    def test_cancelupdate_takes_several_tags_and_knows_them(self) -> None:
        self.send(b"B01 UID SEARCH RETURN (UPDATE) " + WANTED)
        self.send(b"B02 SEARCH RETURN (UPDATE) " + WANTED)
        self.assertTrue(self.send(b'c CANCELUPDATE "B01" "X9"').startswith(b"c BAD "))
        self.assertTrue(self.send(b"c CANCELUPDATE").startswith(b"c BAD "))
        self.assertTrue(self.send(b'c CANCELUPDATE "B01""B02"').startswith(b"c BAD "))
        self.assertEqual(
            self.send(b'c CANCELUPDATE "B01" "B02"'), b"c OK CANCELUPDATE completed\r\n"
        )
        self.assertTrue(self.send(b'd CANCELUPDATE "B01"').startswith(b"d BAD "))

    def test_malformed_cancelupdate_is_bad(self) -> None:
        self.send(b"B01 UID SEARCH RETURN (UPDATE) " + WANTED)
        for line in [b'CANCELUPDATE "B01', b"CANCELUPDATE (B01)", b'CANCELUPDATE "B\\x"']:
            answer = self.send(b"c " + line)
            self.assertTrue(answer.startswith(b"c BAD "), (line, answer))
            self.assertNotIn(b"Traceback", answer)
        self.assertEqual(self.send(b"d CANCELUPDATE B01"), b"d OK CANCELUPDATE completed\r\n")

    def test_removefrom_precedes_vanished_under_qresync(self) -> None:
        self.send(b"u UNSELECT")
        self.send(b"e ENABLE QRESYNC")
        self.send(b"s SELECT INBOX")
        self.send(b"B01 UID SEARCH RETURN (UPDATE) " + WANTED)
        self.act(b"a STORE 3 +FLAGS.SILENT (\\Deleted)")
        self.act(b"b EXPUNGE")
        answer = self.send(b"B02 NOOP")
        self.assertTrue(
            answer.startswith(b'* ESEARCH (TAG "B01") UID REMOVEFROM (0 3)\r\n* VANISHED 3,5\r\n'),
            answer,
        )

    def test_tag_reuse_is_bad(self) -> None:
        """RFC 5267 4.3: UPDATE under a tag with a live result is BAD."""
        self.send(b"B01 UID SEARCH RETURN (UPDATE) " + WANTED)
        self.assertEqual(self.send(b"B01 UID SEARCH RETURN (UPDATE) ALL"), b"B01 BAD Tag reuse\r\n")
        self.assertEqual(
            self.send(b"B01 UID SORT RETURN (UPDATE) (DATE) UTF-8 ALL"), b"B01 BAD Tag reuse\r\n"
        )

    def test_noupdate_when_the_criteria_change_by_themselves(self) -> None:
        """Sequence numbers and OLDER/YOUNGER: answered, not kept (RFC 5267 4.3.1)."""
        self.assertEqual(
            self.send(b"B01 SEARCH RETURN (UPDATE COUNT) 1:3"),
            b'* NO [NOUPDATE "B01"] Criteria with sequence numbers or times are not kept'
            b' up to date\r\n* ESEARCH (TAG "B01") COUNT 3\r\nB01 OK SEARCH completed\r\n',
        )
        answer = self.send(b"B02 SEARCH RETURN (UPDATE COUNT) YOUNGER 100000")
        self.assertTrue(answer.startswith(b'* NO [NOUPDATE "B02"] '), answer)
        self.assertTrue(self.send(b'c CANCELUPDATE "B01"').startswith(b"c BAD "))

    def test_updates_end_when_the_mailbox_is_closed(self) -> None:
        self.send(b"B01 UID SEARCH RETURN (UPDATE) " + WANTED)
        self.send(b"s SELECT INBOX")
        self.act(b"a STORE 1 +FLAGS.SILENT ($Junk)")
        self.assertNotIn(b"ESEARCH", self.send(b"B02 NOOP"))
        self.assertEqual(
            self.send(b"B01 UID SEARCH RETURN (UPDATE COUNT) " + WANTED),
            b'* ESEARCH (TAG "B01") UID COUNT 8\r\nB01 OK SEARCH completed\r\n',
        )


class ContextLimitTests(SynchronousTestCase):
    def test_too_many_contexts_rfc_example(self) -> None:
        """RFC 5267 4.3.1: over the limit, NO [NOUPDATE]; the other options are answered."""
        session = Session(self, max_search_contexts=1)
        junkMailbox(session.store.getFolder("INBOX"))
        session.select()
        session.send(b"B01 UID SEARCH RETURN (UPDATE) " + WANTED + b"\r\n")
        self.assertEqual(
            session.send(b"B02 UID SORT RETURN (UPDATE COUNT) (DATE) UTF-8 KEYWORD $Junk\r\n"),
            b'* NO [NOUPDATE "B02"] Too many contexts\r\n'
            b'* ESEARCH (TAG "B02") UID COUNT 2\r\nB02 OK SORT completed\r\n',
        )
        session.send(b"c STORE 1 +FLAGS.SILENT ($Junk)\r\n")
        self.assertEqual(session.send(b"d NOOP\r\n"), b"d OK NOOP completed\r\n")

    def test_too_many_reads_at_once_end_a_live_result(self) -> None:
        """
        A report that would make a live result read more than
        C{max_update_reads} messages ends it with NO [NOUPDATE]; one that
        reads only the index goes on.
        """
        session = Session(self, max_update_reads=2)
        junkMailbox(session.store.getFolder("INBOX"))
        session.select()
        session.send(b"B01 UID SEARCH RETURN (UPDATE) UNSEEN BODY body\r\n")
        session.send(b"B02 UID SEARCH RETURN (UPDATE) UNSEEN\r\n")
        actor = Session(self, session.fixture)
        actor.select()
        actor.send(b"a STORE 1:2 +FLAGS.SILENT (\\Seen)\r\n")
        self.assertEqual(
            session.send(b"B03 NOOP\r\n"),
            b"* 1 FETCH (FLAGS (\\Seen \\Recent))\r\n* 2 FETCH (FLAGS ($Junk \\Seen \\Recent))\r\n"
            b'* ESEARCH (TAG "B01") UID REMOVEFROM (0 1:2)\r\n'
            b'* ESEARCH (TAG "B02") UID REMOVEFROM (0 1:2)\r\n'
            b"B03 OK NOOP completed\r\n",
        )
        actor.send(b"b STORE 3:5 +FLAGS.SILENT (\\Seen)\r\n")
        self.assertEqual(
            session.send(b"B04 NOOP\r\n"),
            b"* 3 FETCH (FLAGS (\\Seen \\Recent))\r\n"
            b"* 4 FETCH (FLAGS (\\Seen \\Recent))\r\n"
            b"* 5 FETCH (FLAGS (\\Deleted \\Seen \\Recent))\r\n"
            b'* NO [NOUPDATE "B01"] Cannot follow these changes at once\r\n'
            b'* ESEARCH (TAG "B02") UID REMOVEFROM (0 3:5)\r\n'
            b"B04 OK NOOP completed\r\n",
        )
        self.assertTrue(session.send(b'c CANCELUPDATE "B01"\r\n').startswith(b"c BAD "))

    def test_sort_keys_read_from_headers_count_as_reads(self) -> None:
        """A live SORT by SUBJECT reads the header of each message that joins."""
        session = Session(self, max_update_reads=2)
        junkMailbox(session.store.getFolder("INBOX"))
        session.select()
        session.send(b"a STORE 1:12 +FLAGS.SILENT (\\Seen)\r\n")
        session.send(b"C01 UID SORT RETURN (UPDATE) (SUBJECT) UTF-8 UNSEEN\r\n")
        session.send(b"C02 UID SORT RETURN (UPDATE) (REVERSE ARRIVAL) UTF-8 UNSEEN\r\n")
        actor = Session(self, session.fixture)
        actor.select()
        actor.send(b"b STORE 1:3 -FLAGS.SILENT (\\Seen)\r\n")
        answer = session.send(b"c NOOP\r\n")
        self.assertIn(b'* NO [NOUPDATE "C01"] Cannot follow these changes at once\r\n', answer)
        self.assertIn(b'* ESEARCH (TAG "C02") UID ADDTO (1 3,2,1)\r\n', answer)

    def test_a_large_message_ends_a_live_result_that_reads_text(self) -> None:
        """
        A live result reading whole messages is not kept for one over a
        megabyte (a SEARCH reads it in a worker thread); one reading
        headers or the index goes on.
        """
        session = Session(self)
        inbox = session.store.getFolder("INBOX")
        junkMailbox(inbox)
        session.select()
        session.send(b"B01 UID SEARCH RETURN (UPDATE) BODY body\r\n")
        session.send(b'B02 UID SEARCH RETURN (UPDATE) HEADER Subject "note"\r\n')
        session.send(b"B03 UID SEARCH RETURN (UPDATE) LARGER 1000000\r\n")
        pending = inbox.beginMessage((), None)
        pending.write(b"Subject: note\r\n\r\n" + b"body of a large message\r\n" * 50000)
        pending.commit()
        self.assertEqual(
            session.send(b"B04 NOOP\r\n"),
            b"* 13 EXISTS\r\n* 13 RECENT\r\n"
            b'* NO [NOUPDATE "B01"] Cannot follow these changes at once\r\n'
            b'* ESEARCH (TAG "B02") UID ADDTO (0 13)\r\n'
            b'* ESEARCH (TAG "B03") UID ADDTO (0 13)\r\n'
            b"B04 OK NOOP completed\r\n",
        )


class ContextCostTests(SynchronousTestCase):
    """A change costs a test of the changed message, not a new search of the folder."""

    def test_update_reads_only_the_changed_messages(self) -> None:
        session = Session(self)
        inbox = session.store.getFolder("INBOX")
        for _ in range(200):
            put(inbox)
        session.select()
        folder = session.server.mbox.folder  # type: ignore[union-attr]
        opened: list[int] = []
        original = folder.openMessage

        def counting(uid: int) -> Any:
            opened.append(uid)
            return original(uid)

        folder.openMessage = counting
        session.send(b"B01 UID SEARCH RETURN (UPDATE COUNT) UNSEEN BODY body\r\n")
        session.send(b"B02 UID SORT RETURN (UPDATE COUNT) (DATE) UTF-8 UNSEEN BODY body\r\n")
        del opened[:]
        actor = Session(self, session.fixture)
        actor.select()
        actor.send(b"a STORE 50 +FLAGS.SILENT (\\Seen)\r\n")
        put(inbox)
        self.assertEqual(
            session.send(b"B03 NOOP\r\n"),
            b"* 201 EXISTS\r\n* 201 RECENT\r\n* 50 FETCH (FLAGS (\\Seen \\Recent))\r\n"
            b'* ESEARCH (TAG "B01") UID REMOVEFROM (0 50) ADDTO (0 201)\r\n'
            b'* ESEARCH (TAG "B02") UID REMOVEFROM (50 50) ADDTO (200 201)\r\n'
            b"B03 OK NOOP completed\r\n",
        )
        self.assertIn(201, opened)
        self.assertLessEqual(set(opened), {50, 201})


class ContextSortTests(SynchronousTestCase):
    """CONTEXT=SORT: updates at context positions keep the client's order."""

    def test_updates_keep_the_client_in_step_with_a_fresh_sort(self) -> None:
        """
        After each of many random changes (by this session and another,
        to ranges of messages, new ones, expunges), applying the updates
        to what the client was told gives what a fresh SORT or SEARCH says.
        """
        for seed in (5267, 9394, 5957):
            self.randomChanges(random.Random(seed))

    def randomChanges(self, rng: random.Random) -> None:
        session = Session(self)
        inbox = session.store.getFolder("INBOX")
        for _ in range(15):
            dated(inbox, rng.randint(1, 28), ("\\Seen",) if rng.random() < 0.3 else ())
        session.select()
        actor = Session(self, session.fixture)
        actor.select()
        queries = {
            b"C01": b"UID SORT RETURN (UPDATE ALL) (REVERSE DATE) UTF-8 UNSEEN",
            b"C02": b"UID SORT RETURN (UPDATE ALL) (DATE REVERSE ARRIVAL) UTF-8 UNFLAGGED",
            b"C03": b"UID SEARCH RETURN (UPDATE ALL) UNSEEN UNFLAGGED",
            b"C04": b"UID SORT RETURN (UPDATE ALL) (REVERSE SIZE ARRIVAL) UTF-8 FLAGGED",
        }
        views = {}
        for tag, query in queries.items():
            answer = session.send(tag + b" " + query + b"\r\n")
            found = re.search(rb" ALL ([0-9:,]+)", answer)
            views[tag] = ClientView(tag, numbers(found[1]) if found else [])
        for step in range(40):
            actor.send(b"n NOOP\r\n")
            roll = rng.random()
            low = rng.randint(1, 25)
            span = b"%d:%d" % (low, low + rng.randint(0, 6))
            if roll < 0.25:
                for _ in range(rng.randint(1, 3)):
                    dated(inbox, rng.randint(1, 28), ("\\Flagged",) if rng.random() < 0.3 else ())
            elif roll < 0.8:
                flag = rng.choice([b"\\Seen", b"\\Flagged"])
                sign = rng.choice([b"+", b"-"])
                line = b"s UID STORE %s %sFLAGS (%s)\r\n" % (span, sign, flag)
                if rng.random() < 0.5:
                    actor.send(line)
                else:
                    told = session.send(line)
                    for view in views.values():
                        view.apply(told)
            else:
                actor.send(b"x UID STORE %s +FLAGS.SILENT (\\Deleted)\r\ny EXPUNGE\r\n" % span)
            output = session.send(b"n%d NOOP\r\n" % step)
            for view in views.values():
                view.apply(output)
            for tag, query in queries.items():
                fresh = session.send(b"f " + query.replace(b"UPDATE ", b"") + b"\r\n")
                found = re.search(rb" ALL ([0-9:,]+)", fresh)
                self.assertEqual(views[tag].results, numbers(found[1]) if found else [], tag)
        for view in views.values():
            self.assertGreater(view.changes, 5)


class ContextNetworkTests(TestCase):
    timeout = 20

    def setUp(self) -> None:
        self.fixture = makeRealm(Path(self.mktemp()))
        junkMailbox(self.fixture.store(ALICE).getFolder("INBOX"))

    @inlineCallbacks
    def test_imaplib_gets_updates_made_by_another_client(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        port = yield listenIMAP(self, self.fixture)

        def client() -> dict[str, Any]:
            seen: dict[str, Any] = {}
            watcher = imaplib.IMAP4("127.0.0.1", port, timeout=10)
            actor = imaplib.IMAP4("127.0.0.1", port, timeout=10)
            try:
                for imap in (watcher, actor):
                    imap.login(ALICE, PASSWORD)
                    imap.select("INBOX")
                seen["caps"] = watcher.capabilities
                seen["search"] = watcher.uid("SEARCH", "RETURN", "(UPDATE COUNT)", "UNSEEN")
                seen["count"] = untagged(watcher.response("ESEARCH"))
                seen["sort"] = watcher.uid(
                    "SORT", "RETURN", "(UPDATE)", "(REVERSE ARRIVAL)", "UTF-8", "UNSEEN"
                )
                seen["all"] = untagged(watcher.response("ESEARCH"))
                actor.uid("STORE", "4", "+FLAGS", "(\\Seen)")
                watcher.noop()
                seen["updates"] = untagged(watcher.response("ESEARCH"))
                seen["cancel"] = watcher.xatom("CANCELUPDATE", '"x"')
            except imaplib.IMAP4.error as e:
                seen["error"] = str(e)
            finally:
                watcher.logout()
                actor.logout()
            return seen

        seen = yield inThread(client)
        self.assertIn("CONTEXT=SEARCH", seen["caps"])
        self.assertIn("CONTEXT=SORT", seen["caps"])
        self.assertIn("ESORT", seen["caps"])
        self.assertEqual(seen["count"], [b"UID COUNT 12"])
        self.assertEqual(seen["all"], [b"UID ALL 12,11,10,9,8,7,6,5,4,3,2,1"])
        self.assertEqual(seen["updates"], [b"UID REMOVEFROM (0 4)", b"UID REMOVEFROM (9 4)"])
        self.assertIn("No update context", seen.get("error", ""))
