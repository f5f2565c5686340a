"""
INTERNALDATE in the server's local time zone: FETCH shows it there, and
BEFORE, ON and SINCE compare its day there (RFC 3501 6.4.4 "disregarding
time and timezone"), so a message appended late in the evening of a day
east of UTC is found on that day; transcripts over C{StringTransport} with
the process's time zone set for the test.
"""

from __future__ import annotations

import os
import time

from test_imap_protocol import Session
from twisted.trial.unittest import SynchronousTestCase

#: Eastern European time, as a POSIX rule (no zone database needed).
EASTERN = "EET-2EEST,M3.5.0/3,M10.5.0/4"

#: Append dates either side of the spring and autumn clock changes.
DATES = [
    b"24-Mar-2007 23:00:00 +0200",
    b"25-Mar-2007 00:00:00 +0200",
    b"25-Mar-2007 04:00:00 +0300",
    b"26-Mar-2007 00:00:00 +0300",
    b"27-Oct-2007 23:00:00 +0300",
    b"28-Oct-2007 03:00:00 +0200",
    b"29-Oct-2007 00:00:00 +0200",
]


def useTimeZone(testCase: SynchronousTestCase, zone: str) -> None:
    previous = os.environ.get("TZ")

    def restore() -> None:
        if previous is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = previous
        time.tzset()

    os.environ["TZ"] = zone
    time.tzset()
    testCase.addCleanup(restore)


class InternalDateZoneTests(SynchronousTestCase):
    def setUp(self) -> None:
        useTimeZone(self, EASTERN)
        self.session = Session(self)
        self.session.loginDirectly()
        for date in DATES:
            message = b"Subject: at %s\r\n\r\nbody\r\n" % date
            self.session.send(b'a APPEND INBOX "%s" {%d}\r\n' % (date, len(message)))
            reply = self.session.send(message + b"\r\n")
            self.assertTrue(reply.startswith(b"a OK"), reply)
        self.session.send(b"s SELECT INBOX\r\n")

    def search(self, keys: bytes) -> bytes:
        reply = self.session.send(b"t SEARCH " + keys + b"\r\n")
        return reply.split(b"\r\n")[0]

    def test_fetch_shows_the_local_time_and_offset(self) -> None:
        reply = self.session.send(b"f FETCH 1,3,6 INTERNALDATE\r\n")
        self.assertEqual(
            reply,
            b'* 1 FETCH (INTERNALDATE "24-Mar-2007 23:00:00 +0200")\r\n'
            b'* 3 FETCH (INTERNALDATE "25-Mar-2007 04:00:00 +0300")\r\n'
            b'* 6 FETCH (INTERNALDATE "28-Oct-2007 03:00:00 +0200")\r\n'
            b"f OK FETCH completed\r\n",
        )

    def test_date_keys_compare_the_local_day(self) -> None:
        self.assertEqual(self.search(b"ON 24-Mar-2007"), b"* SEARCH 1")
        self.assertEqual(self.search(b"ON 25-Mar-2007"), b"* SEARCH 2 3")
        self.assertEqual(self.search(b"BEFORE 25-Mar-2007"), b"* SEARCH 1")
        self.assertEqual(self.search(b"SINCE 26-Mar-2007"), b"* SEARCH 4 5 6 7")
        self.assertEqual(self.search(b"ON 27-Oct-2007"), b"* SEARCH 5")
        self.assertEqual(self.search(b"ON 28-Oct-2007"), b"* SEARCH 6")
        self.assertEqual(self.search(b"SINCE 29-Oct-2007"), b"* SEARCH 7")


class UTCInternalDateTests(SynchronousTestCase):
    def test_utc_server_shows_plus_zero(self) -> None:
        useTimeZone(self, "UTC0")
        session = Session(self)
        session.loginDirectly()
        message = b"Subject: x\r\n\r\nbody\r\n"
        session.send(b'a APPEND INBOX "24-Mar-2007 23:00:00 +0200" {%d}\r\n' % len(message))
        session.send(message + b"\r\n")
        session.send(b"s SELECT INBOX\r\n")
        self.assertEqual(
            session.send(b"f FETCH 1 INTERNALDATE\r\n"),
            b'* 1 FETCH (INTERNALDATE "24-Mar-2007 21:00:00 +0000")\r\nf OK FETCH completed\r\n',
        )
        self.assertEqual(
            session.send(b"t SEARCH ON 24-Mar-2007\r\n"),
            b"* SEARCH 1\r\nt OK SEARCH completed\r\n",
        )
