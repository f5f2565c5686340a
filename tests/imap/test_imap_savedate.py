"""
SAVEDATE (RFC 8514) over C{StringTransport}: the FETCH item and the
SAVEDBEFORE, SAVEDON, SAVEDSINCE and SAVEDATESUPPORTED search keys, from
the RFC's examples; the save date is when the message came into the
folder (APPEND, COPY), not its INTERNALDATE, and outlives a restart.
"""

from __future__ import annotations

import dataclasses
import datetime
import email.utils
import os
import re
import time

from test_imap_protocol import MESSAGE, Session
from twisted.trial.unittest import SynchronousTestCase

from tmail.realm.virtual import VirtualDomainRealm
from tmail.store.filework import INLINE

_SAVEDATE = re.compile(rb'SAVEDATE "([^"]+)"')
_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def imapDate(stamp: float) -> bytes:
    day = datetime.datetime.fromtimestamp(stamp, datetime.UTC)
    return b"%d-%s-%d" % (day.day, _MONTHS[day.month - 1].encode(), day.year)


def saveDateOf(reply: bytes) -> float:
    match = _SAVEDATE.search(reply)
    assert match is not None, reply
    parsed = email.utils.parsedate_to_datetime(match.group(1).decode().replace("-", " ", 2))
    return parsed.timestamp()


class SaveDateTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.session = Session(self)
        self.session.loginDirectly()
        self.before = time.time()
        reply = self.session.send(
            b'a append INBOX "20-Mar-2018 03:07:37 +1100" {%d+}\r\n%s\r\n' % (len(MESSAGE), MESSAGE)
        )
        self.assertIn(b"OK [APPENDUID", reply)
        self.session.send(b"s select INBOX\r\n")

    def test_savedate_is_advertised(self) -> None:
        self.assertIn(b" SAVEDATE", self.session.send(b"c CAPABILITY\r\n"))

    def test_rfc8514_fetch_savedate_is_when_the_message_was_saved(self) -> None:
        reply = self.session.send(b"A101 FETCH 1 (INTERNALDATE SAVEDATE)\r\n")
        self.assertIn(b'INTERNALDATE "19-Mar-2018 16:07:37 +0000"', reply)
        saved = saveDateOf(reply)
        self.assertLessEqual(int(self.before), saved)
        self.assertLessEqual(saved, time.time() + 1)
        self.assertTrue(reply.endswith(b"A101 OK FETCH completed\r\n"))

    def test_rfc8514_search_by_save_date_not_internal_date(self) -> None:
        today = imapDate(time.time())
        for line, answer in (
            (b"A102 SEARCH SAVEDON %s", b"* SEARCH 1"),
            (b"A103 SEARCH SAVEDSINCE %s", b"* SEARCH 1"),
            (b"A104 SEARCH SAVEDBEFORE %s", b"* SEARCH"),
            (b"A105 SEARCH SAVEDBEFORE 1-Jan-2019", b"* SEARCH"),
            (b"A106 SEARCH BEFORE 1-Jan-2019", b"* SEARCH 1"),
            (b"A107 SEARCH SAVEDATESUPPORTED", b"* SEARCH 1"),
        ):
            command = line % today if b"%s" in line else line
            reply = self.session.send(command + b"\r\n")
            self.assertEqual(reply.split(b"\r\n")[0], answer, command)
        self.assertEqual(self.session.send(b"A108 SEARCH SAVEDON bogus\r\n")[:9], b"A108 BAD ")

    def test_a_copy_is_saved_when_it_is_copied(self) -> None:
        original = saveDateOf(self.session.send(b"f FETCH 1 SAVEDATE\r\n"))
        self.session.send(b"c CREATE Copies\r\n")
        self.assertIn(b"OK [COPYUID", self.session.send(b"c COPY 1 Copies\r\n"))
        self.session.send(b"s SELECT Copies\r\n")
        self.assertGreaterEqual(saveDateOf(self.session.send(b"f FETCH 1 SAVEDATE\r\n")), original)

    def test_save_date_outlives_a_restart(self) -> None:
        saved = saveDateOf(self.session.send(b"f FETCH 1 SAVEDATE\r\n"))
        fixture = self.session.fixture
        realm = VirtualDomainRealm(
            fixture.directory, fixture.root / "data" / "mail", fileWork=INLINE
        )
        later = Session(self, dataclasses.replace(fixture, realm=realm))
        later.loginDirectly()
        later.send(b"s SELECT INBOX\r\n")
        self.assertEqual(saveDateOf(later.send(b"f FETCH 1 SAVEDATE\r\n")), saved)

    def test_a_file_name_without_a_time_has_no_save_date(self) -> None:
        """A Maildir file named otherwise: SAVEDATE NIL; SAVEDON falls back to INTERNALDATE."""
        root = self.session.store.root
        (root / "cur" / "imported-message:2,S").write_bytes(MESSAGE)
        stamp = 1_500_000_000
        os.utime(root / "cur" / "imported-message:2,S", (stamp, stamp))
        self.session.send(b"n NOOP\r\n")
        self.assertEqual(
            self.session.send(b"f FETCH 2 SAVEDATE\r\n"),
            b"* 2 FETCH (SAVEDATE NIL)\r\nf OK FETCH completed\r\n",
        )
        self.assertEqual(
            self.session.send(b"g SEARCH SAVEDON %s\r\n" % imapDate(stamp)),
            b"* SEARCH 2\r\ng OK SEARCH completed\r\n",
        )
