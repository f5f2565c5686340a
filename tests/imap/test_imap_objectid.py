"""
OBJECTID (RFC 8474) over C{StringTransport}, from the RFC's examples:
MAILBOXID in CREATE, SELECT and STATUS, kept by RENAME; EMAILID kept by
COPY and MOVE; THREADID NIL; SEARCH EMAILID/THREADID; all of them the same
after a restart (a new realm over the same Maildir).
"""

from __future__ import annotations

import dataclasses
import re

from test_imap_protocol import MESSAGE, Session, deliver
from twisted.trial.unittest import SynchronousTestCase

from tmail.realm.virtual import VirtualDomainRealm
from tmail.store.filework import INLINE

_OBJECTID = rb"[A-Za-z0-9_-]{1,255}"


def mailboxIdOf(reply: bytes) -> bytes:
    match = re.search(rb"\[MAILBOXID \((" + _OBJECTID + rb")\)\]", reply)
    assert match is not None, reply
    return match.group(1)


def emailIdOf(reply: bytes) -> bytes:
    match = re.search(rb"EMAILID \((" + _OBJECTID + rb")\)", reply)
    assert match is not None, reply
    return match.group(1)


class ObjectIdTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.session = Session(self)
        self.session.loginDirectly()

    def restarted(self) -> Session:
        """A session on a new realm (a restarted server) over the same Maildir."""
        fixture = self.session.fixture
        realm = VirtualDomainRealm(
            fixture.directory, fixture.root / "data" / "mail", fileWork=INLINE
        )
        session = Session(self, dataclasses.replace(fixture, realm=realm))
        session.loginDirectly()
        return session

    def test_objectid_is_advertised(self) -> None:
        self.assertIn(b" OBJECTID", self.session.send(b"c CAPABILITY\r\n"))

    def test_rfc8474_create_select_status_and_rename_report_one_mailboxid(self) -> None:
        """Section 7's example: CREATE's code, SELECT's, STATUS's, kept by RENAME."""
        foo = mailboxIdOf(self.session.send(b"3 create foo\r\n"))
        bar = mailboxIdOf(self.session.send(b"4 create bar\r\n"))
        self.assertNotEqual(foo, bar)
        self.assertTrue(self.session.send(b"5 create foo\r\n").startswith(b"5 NO [ALREADYEXISTS]"))
        inbox = mailboxIdOf(self.session.send(b"6 select INBOX\r\n"))
        self.assertNotIn(inbox, (foo, bar))
        self.assertEqual(
            self.session.send(b"7 status foo (MAILBOXID)\r\n"),
            b'* STATUS "foo" (MAILBOXID (%s))\r\n7 OK STATUS completed\r\n' % foo,
        )
        self.assertEqual(
            self.session.send(b"8 rename foo renamed\r\n"), b"8 OK RENAME completed\r\n"
        )
        self.assertEqual(
            self.session.send(b"9 status renamed (MESSAGES MAILBOXID)\r\n"),
            b'* STATUS "renamed" (MESSAGES 0 MAILBOXID (%s))\r\n9 OK STATUS completed\r\n' % foo,
        )
        self.assertTrue(self.session.send(b"10 status foo (MAILBOXID)\r\n").startswith(b"10 NO "))
        self.assertEqual(mailboxIdOf(self.session.send(b"11 examine renamed\r\n")), foo)
        later = self.restarted()
        self.assertEqual(mailboxIdOf(later.send(b"12 select renamed\r\n")), foo)
        self.assertEqual(mailboxIdOf(later.send(b"13 select INBOX\r\n")), inbox)

    def test_rfc8474_emailid_is_kept_by_copy_move_and_restart(self) -> None:
        """Section 7's example: FETCH EMAILID THREADID, then of the copy, then after MOVE."""
        message = MESSAGE
        self.session.send(b"a create foo\r\n")
        self.session.send(b"b create bar\r\n")
        reply = self.session.send(
            b'5 append inbox "20-Mar-2018 03:07:37 +1100" {%d+}\r\n%s\r\n' % (len(message), message)
        )
        self.assertIn(b"OK [APPENDUID", reply)
        self.session.send(b"s select inbox\r\n")
        reply = self.session.send(b"11 fetch 1 (emailid threadid)\r\n")
        original = emailIdOf(reply)
        self.assertEqual(
            reply,
            b"* 1 FETCH (EMAILID (%s) THREADID NIL)\r\n11 OK FETCH completed\r\n" % original,
        )
        self.assertIn(b"OK [COPYUID", self.session.send(b"12 copy 1 foo\r\n"))
        self.session.send(b"13 select foo\r\n")
        reply = self.session.send(b"14 fetch 1 (emailid threadid)\r\n")
        self.assertEqual(emailIdOf(reply), original)
        # As Dovecot records a hard-linked copy: G<the original's GUID>, its file name.
        source = self.session.store.getFolder("INBOX").messages()[0].key
        uidlist = (self.session.store.root / ".foo" / "dovecot-uidlist").read_text()
        self.assertTrue(uidlist.split("\n")[1].startswith(f"1 G{source} :"), uidlist)
        self.assertIn(b"OK [COPYUID", self.session.send(b"15 move 1 bar\r\n"))
        self.session.send(b"16 select bar\r\n")
        self.assertEqual(emailIdOf(self.session.send(b"17 fetch 1 emailid\r\n")), original)
        later = self.restarted()
        later.send(b"18 select bar\r\n")
        self.assertEqual(emailIdOf(later.send(b"19 uid fetch 1 (EMAILID)\r\n")), original)

    def test_distinct_messages_have_distinct_emailids(self) -> None:
        inbox = self.session.store.getFolder("INBOX")
        deliver(inbox)
        deliver(inbox)
        self.session.send(b"s select inbox\r\n")
        reply = self.session.send(b"f fetch 1:2 emailid\r\n")
        ids = re.findall(rb"EMAILID \((" + _OBJECTID + rb")\)", reply)
        self.assertEqual(len(set(ids)), 2)

    def test_rfc8474_search_emailid_and_threadid(self) -> None:
        inbox = self.session.store.getFolder("INBOX")
        deliver(inbox)
        deliver(inbox)
        self.session.send(b"s select inbox\r\n")
        second = emailIdOf(self.session.send(b"f fetch 2 emailid\r\n"))
        self.assertEqual(
            self.session.send(b"27 search emailid %s\r\n" % second),
            b"* SEARCH 2\r\n27 OK SEARCH completed\r\n",
        )
        self.assertEqual(
            self.session.send(b"28 search threadid T64b478a75b7ea9\r\n"),
            b"* SEARCH\r\n28 OK SEARCH completed\r\n",
        )
        self.assertEqual(
            self.session.send(b"29 search not emailid %s\r\n" % second),
            b"* SEARCH 1\r\n29 OK SEARCH completed\r\n",
        )

    def test_fetch_items_mixed_with_others_keep_their_order(self) -> None:
        inbox = self.session.store.getFolder("INBOX")
        deliver(inbox)
        self.session.send(b"s select inbox\r\n")
        reply = self.session.send(
            b"f fetch 1 (UID THREADID BODY.PEEK[HEADER.FIELDS (SUBJECT)])\r\n"
        )
        self.assertEqual(
            reply,
            b"* 1 FETCH (UID 1 THREADID NIL BODY[HEADER.FIELDS (SUBJECT)] {18}\r\n"
            b"Subject: hello\r\n\r\n)\r\nf OK FETCH completed\r\n",
        )

    def test_dovecot_message_guid_in_the_uidlist_is_the_emailid(self) -> None:
        """A uidlist line's C{G} field (Dovecot's message GUID) is what EMAILID says."""
        inbox = self.session.store.getFolder("INBOX")
        deliver(inbox)
        path = self.session.store.root / "dovecot-uidlist"
        lines = path.read_text().split("\n")
        number, _, name = lines[1].partition(" ")
        lines[1] = f"{number} G0123456789abcdef0123456789abcdef {name}"
        path.write_text("\n".join(lines))
        later = self.restarted()
        later.send(b"s select inbox\r\n")
        self.assertEqual(
            emailIdOf(later.send(b"f fetch 1 emailid\r\n")), b"0123456789abcdef0123456789abcdef"
        )
