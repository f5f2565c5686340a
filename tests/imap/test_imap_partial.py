"""
PARTIAL (RFC 9394): a window of a SEARCH or SORT result and of the messages
a UID FETCH names, as transcripts over C{StringTransport} (the RFC's
examples on a small mailbox) and with C{imaplib} over loopback.
"""

from __future__ import annotations

import imaplib
import re
from collections.abc import Generator
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from test_imap_esearch import put
from test_imap_protocol import Session
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.mail import imap4
from twisted.trial.unittest import SynchronousTestCase, TestCase

from support.imaploop import listenIMAP
from support.net import inThread
from support.realm import ALICE, PASSWORD, makeRealm
from tmail.imap.esearch import parseReturnOptions
from tmail.imap.partial import parsePartialRange
from tmail.imap.seqset import SequenceSet
from tmail.interfaces import IMailFolder

#: C{UNDELETED UNKEYWORD $Junk} in L{junkMailbox}.
WANTED = b"UNDELETED UNKEYWORD $Junk"


def junkMailbox(folder: IMailFolder) -> None:
    """
    Twelve messages, UIDs 1 to 12: 2 and 7 are C{$Junk}, 5 is C{\\Deleted},
    so C{UNDELETED UNKEYWORD $Junk} finds 1, 3, 4, 6, 8, 9, 10, 11, 12.
    """
    for uid in range(1, 13):
        flags = ("$Junk",) if uid in (2, 7) else ("\\Deleted",) if uid == 5 else ()
        put(folder, flags=flags)


class PartialSearchTests(SynchronousTestCase):
    """RFC 9394 3.1: C{RETURN (PARTIAL m:n)} answers with the window of the result."""

    def setUp(self) -> None:
        self.session = Session(self)
        self.inbox = self.session.store.getFolder("INBOX")
        junkMailbox(self.inbox)
        self.session.select()

    def send(self, line: bytes) -> bytes:
        return self.session.send(line + b"\r\n")

    def test_rfc_examples_page_through_the_result(self) -> None:
        """The first page, a page past the end (shorter), one wholly past it (NIL)."""
        self.assertEqual(
            self.send(b"A01 UID SEARCH RETURN (PARTIAL 1:5) " + WANTED),
            b'* ESEARCH (TAG "A01") UID PARTIAL (1:5 1,3:4,6,8)\r\nA01 OK SEARCH completed\r\n',
        )
        self.assertEqual(
            self.send(b"A02 UID SEARCH RETURN (PARTIAL 6:10) " + WANTED),
            b'* ESEARCH (TAG "A02") UID PARTIAL (6:10 9:12)\r\nA02 OK SEARCH completed\r\n',
        )
        self.assertEqual(
            self.send(b"A04 UID SEARCH RETURN (PARTIAL 20:30) " + WANTED),
            b'* ESEARCH (TAG "A04") UID PARTIAL (20:30 NIL)\r\nA04 OK SEARCH completed\r\n',
        )

    def test_negative_range_counts_from_the_last_result(self) -> None:
        self.assertEqual(
            self.send(b"A05 UID SEARCH RETURN (PARTIAL -1:-3) " + WANTED),
            b'* ESEARCH (TAG "A05") UID PARTIAL (-1:-3 10:12)\r\nA05 OK SEARCH completed\r\n',
        )
        self.assertEqual(
            self.send(b"A06 SEARCH RETURN (PARTIAL -9:-8) " + WANTED),
            b'* ESEARCH (TAG "A06") PARTIAL (-9:-8 1,3)\r\nA06 OK SEARCH completed\r\n',
        )
        self.assertEqual(
            self.send(b"A07 SEARCH RETURN (PARTIAL -12:-10) " + WANTED),
            b'* ESEARCH (TAG "A07") PARTIAL (-12:-10 NIL)\r\nA07 OK SEARCH completed\r\n',
        )

    def test_range_ends_may_come_in_either_order(self) -> None:
        """
        RFC 9394 4: C{500:400} is C{400:500}, and is answered as C{400:500};
        a range from the end is answered as the client wrote it.
        """
        self.assertEqual(
            self.send(b"t UID SEARCH RETURN (PARTIAL 3:1) " + WANTED),
            b'* ESEARCH (TAG "t") UID PARTIAL (1:3 1,3:4)\r\nt OK SEARCH completed\r\n',
        )
        self.assertEqual(
            self.send(b"s SORT RETURN (PARTIAL 4:2) (ARRIVAL) UTF-8 " + WANTED),
            b'* ESEARCH (TAG "s") PARTIAL (2:4 3:4,6)\r\ns OK SORT completed\r\n',
        )
        self.assertEqual(
            self.send(b"u UID SEARCH RETURN (PARTIAL -1:-2) " + WANTED),
            b'* ESEARCH (TAG "u") UID PARTIAL (-1:-2 11:12)\r\nu OK SEARCH completed\r\n',
        )

    def test_partial_with_min_max_count(self) -> None:
        """The other options still see the whole result (RFC 9394 3.2)."""
        self.assertEqual(
            self.send(b"t UID SEARCH RETURN (MIN MAX COUNT PARTIAL 2:3) " + WANTED),
            b'* ESEARCH (TAG "t") UID MIN 1 MAX 12 COUNT 9 PARTIAL (2:3 3:4)\r\n'
            b"t OK SEARCH completed\r\n",
        )

    def test_save_keeps_the_window_unless_count_is_asked(self) -> None:
        """RFC 9394 3.2: C{$} is the PARTIAL results (with MIN/MAX ones), all with COUNT."""
        self.send(b"a SEARCH RETURN (SAVE PARTIAL 2:3) " + WANTED)
        self.assertEqual(
            self.send(b"b UID SEARCH RETURN (ALL) UID $"),
            b'* ESEARCH (TAG "b") UID ALL 3:4\r\nb OK SEARCH completed\r\n',
        )
        self.send(b"c SEARCH RETURN (SAVE MAX PARTIAL 1:1) " + WANTED)
        self.assertEqual(
            self.send(b"d UID SEARCH RETURN (ALL) UID $"),
            b'* ESEARCH (TAG "d") UID ALL 1,12\r\nd OK SEARCH completed\r\n',
        )
        self.send(b"e SEARCH RETURN (SAVE COUNT PARTIAL 1:1) " + WANTED)
        self.assertEqual(
            self.send(b"f UID SEARCH RETURN (COUNT) UID $"),
            b'* ESEARCH (TAG "f") UID COUNT 9\r\nf OK SEARCH completed\r\n',
        )

    def test_partial_sort_windows_the_sorted_result(self) -> None:
        """With SORT the window is over the sort order, and the set keeps that order."""
        self.assertEqual(
            self.send(b"t UID SORT RETURN (PARTIAL 1:4) (REVERSE ARRIVAL) UTF-8 " + WANTED),
            b'* ESEARCH (TAG "t") UID PARTIAL (1:4 12,11,10,9)\r\nt OK SORT completed\r\n',
        )
        self.assertEqual(
            self.send(b"u SORT RETURN (PARTIAL -2:-1) (REVERSE ARRIVAL) UTF-8 " + WANTED),
            b'* ESEARCH (TAG "u") PARTIAL (-2:-1 3,1)\r\nu OK SORT completed\r\n',
        )

    def test_sort_return_options_may_follow_the_charset(self) -> None:
        """
        C{RETURN (...)} placed after a SORT's charset reads as it does before
        the criteria; a second RETURN is still no search key.
        """
        self.assertEqual(
            self.send(b"t SORT (REVERSE ARRIVAL) UTF-8 RETURN (PARTIAL 2:3) " + WANTED),
            b'* ESEARCH (TAG "t") PARTIAL (2:3 11,10)\r\nt OK SORT completed\r\n',
        )
        self.assertEqual(
            self.send(b"u UID SORT (ARRIVAL) US-ASCII RETURN (MIN COUNT) " + WANTED),
            b'* ESEARCH (TAG "u") UID MIN 1 COUNT 9\r\nu OK SORT completed\r\n',
        )
        self.assertTrue(
            self.send(b"v SORT RETURN (MIN) (ARRIVAL) UTF-8 RETURN (MAX) ALL").startswith(b"v BAD ")
        )

    def test_malformed_partial_is_bad(self) -> None:
        """RFC 9394 3.1, 4: one PARTIAL, not with ALL; two same-sign non-zero numbers, no C{*}."""
        for options in [
            b"PARTIAL 1:5 ALL",
            b"ALL PARTIAL 1:5",
            b"PARTIAL 1:5 PARTIAL 6:10",
            b"PARTIAL",
            b"PARTIAL 0:5",
            b"PARTIAL 1:*",
            b"PARTIAL -1:5",
            b"PARTIAL 1:-5",
            b"PARTIAL 5",
            b"PARTIAL -0:-1",
            b"PARTIAL 1:4294967296",
            b"PARTIAL 01:5",
            b"PARTIAL (1:5)",
        ]:
            answer = self.send(b"t SEARCH RETURN (" + options + b") ALL")
            self.assertTrue(answer.startswith(b"t BAD "), (options, answer))
            self.assertNotIn(b"ESEARCH", answer)

    def test_uid_fetch_partial_modifier(self) -> None:
        """RFC 9394 3.3: only the window of the messages the set names is fetched."""
        self.assertEqual(
            self.send(b"10 UID FETCH 3:11 (FLAGS) (PARTIAL -1:-3)"),
            b"* 9 FETCH (UID 9 FLAGS (\\Recent))\r\n"
            b"* 10 FETCH (UID 10 FLAGS (\\Recent))\r\n"
            b"* 11 FETCH (UID 11 FLAGS (\\Recent))\r\n"
            b"10 OK FETCH completed\r\n",
        )
        self.assertEqual(
            self.send(b"11 UID FETCH 1:* (FLAGS) (PARTIAL 2:3)"),
            b"* 2 FETCH (UID 2 FLAGS ($Junk \\Recent))\r\n"
            b"* 3 FETCH (UID 3 FLAGS (\\Recent))\r\n"
            b"11 OK FETCH completed\r\n",
        )
        self.assertEqual(
            self.send(b"12 UID FETCH 1:* (FLAGS) (PARTIAL 20:30)"), b"12 OK FETCH completed\r\n"
        )

    def test_uid_fetch_partial_over_several_ranges(self) -> None:
        self.assertEqual(
            self.send(b"t UID FETCH 2:3,6:9,11,40:50 (FLAGS) (PARTIAL 2:4)"),
            b"* 3 FETCH (UID 3 FLAGS (\\Recent))\r\n"
            b"* 6 FETCH (UID 6 FLAGS (\\Recent))\r\n"
            b"* 7 FETCH (UID 7 FLAGS ($Junk \\Recent))\r\n"
            b"t OK FETCH completed\r\n",
        )
        self.assertEqual(
            self.send(b"u UID FETCH 2:3,6:9,11 (FLAGS) (PARTIAL -2:-1)"),
            b"* 9 FETCH (UID 9 FLAGS (\\Recent))\r\n"
            b"* 11 FETCH (UID 11 FLAGS (\\Recent))\r\n"
            b"u OK FETCH completed\r\n",
        )

    def test_uid_fetch_partial_after_changedsince(self) -> None:
        """RFC 9394 3.4: the window is of the messages CHANGEDSINCE leaves."""
        self.send(b"a STORE 4,8,10 +FLAGS.SILENT (\\Flagged)")
        highest = self.session.server.mbox.highestModSeq()  # type: ignore[union-attr]
        self.send(b"b STORE 1,3,9,12 +FLAGS.SILENT (\\Answered)")
        answer = self.send(b"c UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d PARTIAL -2:-1)" % highest)
        self.assertEqual(re.findall(rb"UID (\d+)", answer), [b"9", b"12"], answer)

    def test_fetch_partial_needs_uid_fetch(self) -> None:
        answer = self.send(b"t FETCH 1:* (FLAGS) (PARTIAL 1:2)")
        self.assertTrue(answer.startswith(b"t BAD "), answer)
        self.assertNotIn(b"FETCH (", answer)
        answer = self.send(b"u UID FETCH 1:* (FLAGS) (PARTIAL 0:2)")
        self.assertTrue(answer.startswith(b"u BAD "), answer)

    def test_capability_lists_partial(self) -> None:
        self.assertIn(b" PARTIAL", self.send(b"c CAPABILITY").split(b"\r\n")[0])


class PartialCostTests(SynchronousTestCase):
    """
    A search for a window stops once the window is full: C{PARTIAL 1:5} of a
    body search reads five messages, not the folder.
    """

    def setUp(self) -> None:
        self.session = Session(self)
        self.inbox = self.session.store.getFolder("INBOX")
        for _ in range(200):
            put(self.inbox)
        self.session.select()
        folder = self.session.server.mbox.folder  # type: ignore[union-attr]
        self.opened: list[int] = []
        original = folder.openMessage

        def counting(uid: int) -> Any:
            self.opened.append(uid)
            return original(uid)

        folder.openMessage = counting

    def test_partial_search_reads_only_what_the_window_needs(self) -> None:
        self.assertEqual(
            self.session.send(b"a UID SEARCH RETURN (PARTIAL 1:5) BODY body\r\n"),
            b'* ESEARCH (TAG "a") UID PARTIAL (1:5 1:5)\r\na OK SEARCH completed\r\n',
        )
        self.assertEqual(sorted(set(self.opened)), [1, 2, 3, 4, 5])
        del self.opened[:]
        self.assertEqual(
            self.session.send(b"b UID SEARCH RETURN (PARTIAL -1:-5) BODY body\r\n"),
            b'* ESEARCH (TAG "b") UID PARTIAL (-1:-5 196:200)\r\nb OK SEARCH completed\r\n',
        )
        self.assertEqual(sorted(set(self.opened)), [196, 197, 198, 199, 200])

    def test_count_still_needs_every_message(self) -> None:
        self.assertEqual(
            self.session.send(b"a UID SEARCH RETURN (COUNT PARTIAL 1:5) BODY body\r\n"),
            b'* ESEARCH (TAG "a") UID COUNT 200 PARTIAL (1:5 1:5)\r\na OK SEARCH completed\r\n',
        )
        self.assertEqual(len(set(self.opened)), 200)


class PartialRangeTests(SynchronousTestCase):
    @given(st.binary(max_size=30))
    @settings(max_examples=200, deadline=None)
    def test_any_bytes_parse_or_are_bad(self, token: bytes) -> None:
        try:
            parsed = parsePartialRange(token)
        except imap4.IllegalClientResponse:
            return
        self.assertTrue(1 <= parsed.first <= parsed.last <= 2**32 - 1)

    @given(
        st.integers(1, 40),
        st.integers(1, 40),
        st.booleans(),
        st.lists(st.integers(), max_size=30),
    )
    @settings(max_examples=200, deadline=None)
    def test_window_is_the_positions_named(
        self, a: int, b: int, fromEnd: bool, results: list[int]
    ) -> None:
        sign = b"-" if fromEnd else b""
        partial = parsePartialRange(b"%s%d:%s%d" % (sign, a, sign, b))
        low, high = min(a, b), max(a, b)
        count = len(results)
        positions = range(low, high + 1)
        if fromEnd:
            wanted = [results[count - p] for p in reversed(positions) if p <= count]
        else:
            wanted = [results[p - 1] for p in positions if p <= count]
        self.assertEqual(list(partial.window(results)), wanted)


def untagged(response: tuple[str, list[Any]]) -> list[bytes]:
    """imaplib's ESEARCH data without the (random) tag."""
    return [re.sub(rb'^\(TAG "[^"]*"\) ', b"", data) for data in response[1]]


class ReturnOptionsTests(SynchronousTestCase):
    @given(
        st.lists(
            st.one_of(
                st.sampled_from(
                    [b"MIN", b"max", b"ALL", b"COUNT", b"SAVE", b"UPDATE", b"CONTEXT", b"PARTIAL"]
                ),
                st.sampled_from([b"1:5", b"-3:-1", b"0:1", b"*", b"5", b"-1:2", b"FROB"]),
                st.just([b"1:2"]),
            ),
            max_size=6,
        )
    )
    @settings(max_examples=300, deadline=None)
    def test_any_return_list_parses_or_is_bad(self, options: list[Any]) -> None:
        """One PARTIAL with a range, not with ALL; an empty list (or only UPDATE/CONTEXT) is ALL."""
        try:
            parsed, rest = parseReturnOptions([b"RETURN", options, b"ALL"])
        except imap4.IllegalClientResponse:
            words = [o.upper() for o in options if isinstance(o, bytes)]
            self.assertTrue(
                b"PARTIAL" in words
                or any(not isinstance(o, bytes) for o in options)
                or set(words) - {b"MIN", b"MAX", b"ALL", b"COUNT", b"SAVE", b"UPDATE", b"CONTEXT"}
            )
            return
        assert parsed is not None
        self.assertEqual(rest, [b"ALL"])
        self.assertFalse(parsed.partial is not None and b"ALL" in parsed.names)
        if parsed.partial is None and not parsed.names & {b"MIN", b"MAX", b"COUNT", b"SAVE"}:
            self.assertIn(b"ALL", parsed.names)


class ResolveWindowTests(SynchronousTestCase):
    """The window of a UID FETCH is the window of what the set names, built alone."""

    def setUp(self) -> None:
        self.session = Session(self)
        inbox = self.session.store.getFolder("INBOX")
        for _ in range(30):
            put(inbox)
        self.session.send(b"a UID STORE 5:9,20 +FLAGS.SILENT (\\Deleted)\r\n")
        self.session.select()
        self.session.send(b"b EXPUNGE\r\n")

    @given(
        st.lists(st.tuples(st.integers(1, 35), st.integers(1, 35)), min_size=1, max_size=5),
        st.integers(1, 30),
        st.integers(1, 30),
        st.booleans(),
        st.booleans(),
    )
    @settings(max_examples=150, deadline=None)
    def test_same_as_resolving_everything(
        self, ranges: list[tuple[int, int]], a: int, b: int, fromEnd: bool, uid: bool
    ) -> None:
        mbox = self.session.server.mbox
        assert mbox is not None
        count = mbox.getMessageCount()
        if not uid:
            ranges = [(min(low, count), min(high, count)) for low, high in ranges]
        messages = SequenceSet.fromNumbers(
            n for low, high in ranges for n in range(min(low, high), max(low, high) + 1)
        )
        sign = b"-" if fromEnd else b""
        partial = parsePartialRange(b"%s%d:%s%d" % (sign, a, sign, b))
        self.assertEqual(
            mbox.resolveWindow(messages, uid, partial.window),
            list(partial.window(mbox.resolve(messages, uid))),
        )


class PartialNetworkTests(TestCase):
    timeout = 20

    def setUp(self) -> None:
        self.fixture = makeRealm(Path(self.mktemp()))
        junkMailbox(self.fixture.store(ALICE).getFolder("INBOX"))

    @inlineCallbacks
    def test_imaplib_pages_a_search(self) -> Generator[Deferred[Any], Any, None]:
        port = yield listenIMAP(self, self.fixture)

        def client() -> dict[str, Any]:
            seen: dict[str, Any] = {}
            imap = imaplib.IMAP4("127.0.0.1", port, timeout=10)
            try:
                imap.login(ALICE, PASSWORD)
                seen["caps"] = imap.capabilities
                imap.select("INBOX")
                seen["first"] = imap.uid("SEARCH", "RETURN", "(PARTIAL 1:3)", "UNDELETED")
                seen["first-data"] = untagged(imap.response("ESEARCH"))
                seen["last"] = imap.uid("SEARCH", "RETURN", "(PARTIAL -1:-3)", "UNDELETED")
                seen["last-data"] = untagged(imap.response("ESEARCH"))
                seen["fetch"] = imap.uid("FETCH", "1:*", "(FLAGS)", "(PARTIAL -2:-1)")
            finally:
                imap.logout()
            return seen

        seen = yield inThread(client)
        self.assertIn("PARTIAL", seen["caps"])
        self.assertEqual(seen["first"][0], "OK")
        self.assertEqual(seen["first-data"], [b"UID PARTIAL (1:3 1:3)"])
        self.assertEqual(seen["last-data"], [b"UID PARTIAL (-1:-3 10:12)"])
        self.assertEqual(
            seen["fetch"],
            ("OK", [b"11 (UID 11 FLAGS (\\Recent))", b"12 (UID 12 FLAGS (\\Recent))"]),
        )
