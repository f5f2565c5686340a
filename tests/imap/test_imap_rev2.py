"""
IMAP4rev2 (RFC 9051) and UTF8=ACCEPT (RFC 6855), both turned on with
ENABLE.  Under IMAP4rev2 the server sends no RECENT and no C{\\Recent},
answers SEARCH with ESEARCH, includes a LIST response in SELECT and says
C{[CLOSED]} when a new SELECT closes the previous mailbox.  Under either,
mailbox names travel as UTF-8 instead of modified UTF-7, and APPEND takes
C{UTF8 (~{n}...)}.  A client that enables neither sees IMAP4rev1 unchanged.
"""

from __future__ import annotations

from test_imap_protocol import MESSAGE, Session, created, deliver
from twisted.trial.unittest import SynchronousTestCase

from support.realm import ALICE, PASSWORD

ENTWUERFE = "Entwürfe"


class Rev2Tests(SynchronousTestCase):
    def setUp(self) -> None:
        self.session = Session(self)
        self.inbox = self.session.store.getFolder("INBOX")

    def enable(self, *names: bytes) -> bytes:
        self.session.loginDirectly()
        return self.session.send(b"e ENABLE " + b" ".join(names) + b"\r\n")

    def test_capability_offers_imap4rev2_and_utf8_accept(self) -> None:
        reply = self.session.send(b"c CAPABILITY\r\n")
        self.assertIn(b" IMAP4rev1 ", reply)
        self.assertIn(b" IMAP4rev2 ", reply)
        self.assertIn(b" UTF8=ACCEPT", reply)

    def test_enable_answers_with_the_rfc_spelling(self) -> None:
        self.assertEqual(
            self.enable(b"imap4rev2"), b"* ENABLED IMAP4rev2\r\ne OK ENABLE completed\r\n"
        )
        self.assertTrue(self.session.server.rev2)

    def test_select_under_rev2_sends_a_list_response_and_no_recent_or_unseen(self) -> None:
        deliver(self.inbox)
        self.enable(b"IMAP4rev2")
        reply = self.session.send(b"s SELECT INBOX\r\n")
        self.assertIn(b'* LIST () "/" "INBOX"\r\n', reply)
        self.assertIn(b"* 1 EXISTS\r\n", reply)
        self.assertNotIn(b"RECENT", reply)
        self.assertNotIn(b"[UNSEEN", reply)
        self.assertTrue(reply.endswith(b"s OK [READ-WRITE] SELECT completed\r\n"))

    def test_rev1_select_still_reports_recent_and_unseen(self) -> None:
        deliver(self.inbox)
        reply = self.session.select()
        self.assertIn(b"* 1 RECENT\r\n", reply)
        self.assertIn(b"* OK [UNSEEN 1]", reply)
        self.assertNotIn(b"* LIST", reply)

    def test_fetch_flags_under_rev2_never_shows_recent(self) -> None:
        deliver(self.inbox)
        self.enable(b"IMAP4rev2")
        self.session.send(b"s SELECT INBOX\r\n")
        self.assertEqual(
            self.session.send(b"f FETCH 1 FLAGS\r\n"),
            b"* 1 FETCH (FLAGS ())\r\nf OK FETCH completed\r\n",
        )

    def test_new_mail_under_rev2_is_announced_without_recent(self) -> None:
        self.enable(b"IMAP4rev2")
        self.session.send(b"s SELECT INBOX\r\n")
        deliver(self.inbox)
        self.assertEqual(self.session.send(b"n NOOP\r\n"), b"* 1 EXISTS\r\nn OK NOOP completed\r\n")

    def test_search_under_rev2_answers_with_esearch(self) -> None:
        for _ in range(3):
            deliver(self.inbox)
        self.inbox.setFlags(2, ["\\Deleted"])
        self.enable(b"IMAP4rev2")
        self.session.send(b"s SELECT INBOX\r\n")
        self.assertEqual(
            self.session.send(b"a SEARCH UNDELETED\r\n"),
            b'* ESEARCH (TAG "a") ALL 1,3\r\na OK SEARCH completed\r\n',
        )
        self.assertEqual(
            self.session.send(b"b UID SEARCH DELETED\r\n"),
            b'* ESEARCH (TAG "b") UID ALL 2\r\nb OK SEARCH completed\r\n',
        )
        self.assertEqual(
            self.session.send(b"c SEARCH DRAFT\r\n"),
            b'* ESEARCH (TAG "c")\r\nc OK SEARCH completed\r\n',
        )

    def test_explicit_return_options_still_rule_under_rev2(self) -> None:
        for _ in range(3):
            deliver(self.inbox)
        self.enable(b"IMAP4rev2")
        self.session.send(b"s SELECT INBOX\r\n")
        self.assertEqual(
            self.session.send(b"a SEARCH RETURN (COUNT) ALL\r\n"),
            b'* ESEARCH (TAG "a") COUNT 3\r\na OK SEARCH completed\r\n',
        )

    def test_reselecting_under_rev2_says_closed_first(self) -> None:
        self.session.store.createFolder("Work")
        self.enable(b"IMAP4rev2")
        self.session.send(b"s SELECT INBOX\r\n")
        reply = self.session.send(b"t EXAMINE Work\r\n")
        self.assertTrue(reply.startswith(b"* OK [CLOSED]"), reply)

    def test_rev1_reselect_sends_no_closed(self) -> None:
        self.session.store.createFolder("Work")
        self.session.select()
        self.assertNotIn(b"CLOSED", self.session.send(b"t EXAMINE Work\r\n"))


class UTF8NameTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.session = Session(self)
        self.store = self.session.store
        self.session.loginDirectly()

    def test_rev1_names_stay_modified_utf7(self) -> None:
        self.store.createFolder(ENTWUERFE)
        reply = self.session.send(b'l LIST "" *\r\n')
        self.assertIn(b'"Entw&APw-rfe"', reply)

    def test_names_are_utf8_both_ways_under_rev2(self) -> None:
        self.session.send(b"e ENABLE IMAP4rev2\r\n")
        raw = ENTWUERFE.encode("utf-8")
        self.assertEqual(
            created(self.session.send(b'c CREATE "' + raw + b'"\r\n')), b"c OK CREATE completed\r\n"
        )
        self.assertIn(ENTWUERFE, self.store.listFolders())
        self.assertIn(
            b'* LIST (\\HasNoChildren) "/" "' + raw + b'"\r\n',
            self.session.send(b'l LIST "" *\r\n'),
        )
        self.assertIn(
            b'* STATUS "' + raw + b'" (MESSAGES 0)',
            self.session.send(b'st STATUS "' + raw + b'" (MESSAGES)\r\n'),
        )

    def test_utf8_accept_alone_switches_names_but_keeps_rev1_responses(self) -> None:
        self.store.createFolder(ENTWUERFE)
        deliver(self.store.getFolder("INBOX"))
        self.assertEqual(
            self.session.send(b"e ENABLE UTF8=ACCEPT\r\n"),
            b"* ENABLED UTF8=ACCEPT\r\ne OK ENABLE completed\r\n",
        )
        self.assertIn(ENTWUERFE.encode("utf-8"), self.session.send(b'l LIST "" *\r\n'))
        self.assertIn(b"* 1 RECENT\r\n", self.session.send(b"s SELECT INBOX\r\n"))

    def test_a_utf8_name_is_decomposed_the_same_as_composed(self) -> None:
        """RFC 6855 3: names are compared in NFC, so u + combining diaeresis is ü."""
        self.session.send(b"e ENABLE UTF8=ACCEPT\r\n")
        decomposed = "Entwu\u0308rfe".encode()
        self.session.send(b'c CREATE "' + decomposed + b'"\r\n')
        self.assertEqual(self.store.listFolders(), ["INBOX", ENTWUERFE])

    def test_a_name_that_is_not_utf8_is_refused_as_a_bad_modified_utf7_name_is(self) -> None:
        self.session.send(b"e ENABLE UTF8=ACCEPT\r\n")
        reply = self.session.send(b'c CREATE "Entw\xfcrfe"\r\n')
        self.assertEqual(reply, b"c NO [CANNOT] mailbox name is not UTF-8\r\n")
        self.assertEqual(self.session.send(b"n NOOP\r\n"), b"n OK NOOP completed\r\n")

    def test_append_takes_utf8_data_as_a_literal8(self) -> None:
        self.session.send(b"e ENABLE UTF8=ACCEPT\r\n")
        message = "From: jörg@example.test\r\nSubject: Grüße\r\n\r\nHallo\r\n".encode()
        reply = self.session.send(
            b"a APPEND INBOX UTF8 (~{%d+}\r\n%s)\r\n" % (len(message), message)
        )
        self.assertTrue(reply.startswith(b"a OK [APPENDUID "), reply)
        inbox = self.store.getFolder("INBOX")
        with inbox.openMessage(inbox.messages()[0].uid) as f:
            self.assertEqual(f.read(), message)

    def test_utf8_append_data_must_be_a_literal8_in_parentheses(self) -> None:
        self.session.send(b"e ENABLE UTF8=ACCEPT\r\n")
        reply = self.session.send(
            b"a APPEND INBOX UTF8 ({%d+}\r\n%s)\r\n" % (len(MESSAGE), MESSAGE)
        )
        self.assertTrue(reply.startswith(b"a BAD "), reply)
        reply = self.session.send(
            b"b APPEND INBOX UTF8 (~{%d+}\r\n%s\r\n" % (len(MESSAGE), MESSAGE)
        )
        self.assertIn(b"b BAD ", reply)
        self.assertEqual(self.session.send(b"n NOOP\r\n"), b"n OK NOOP completed\r\n")

    def test_utf8_append_data_is_not_understood_before_enable(self) -> None:
        reply = self.session.send(
            b"a APPEND INBOX UTF8 (~{%d+}\r\n%s)\r\n" % (len(MESSAGE), MESSAGE)
        )
        self.assertIn(b"a BAD ", reply)
        self.assertEqual(self.store.getFolder("INBOX").messages(), ())


class CapabilityAfterLoginTests(SynchronousTestCase):
    def test_the_tagged_ok_of_login_lists_every_extension_tmail_offers(self) -> None:
        """The set modern clients look for (Dovecot's and Stalwart's), in one place."""
        session = Session(self)
        reply = session.send(b"a LOGIN " + ALICE.encode() + b" " + PASSWORD.encode() + b"\r\n")
        self.assertTrue(reply.startswith(b"a OK [CAPABILITY "), reply)
        listed = set(reply.split(b"]")[0].split(b" ")[3:])
        expected = (
            b"IMAP4rev1 IMAP4rev2 IDLE NAMESPACE ID ENABLE UNSELECT UIDPLUS MOVE LITERAL+"
            b" SASL-IR CHILDREN SPECIAL-USE CREATE-SPECIAL-USE LIST-EXTENDED LIST-STATUS"
            b" ESEARCH SEARCHRES WITHIN CONDSTORE QRESYNC QUOTA QUOTA=RES-STORAGE"
            b" QUOTA=RES-MESSAGE STATUS=SIZE BINARY MULTIAPPEND APPENDLIMIT=%d SORT"
            b" THREAD=ORDEREDSUBJECT THREAD=REFERENCES COMPRESS=DEFLATE UTF8=ACCEPT"
            % session.server.settings.max_literal_size
        ).split()
        self.assertEqual(set(expected) - listed, set())
        self.assertNotIn(b"LOGINDISABLED", listed)
        self.assertFalse(any(item.startswith(b"AUTH=") for item in listed))
