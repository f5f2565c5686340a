"""
Sequence sets: parsed in one pass into merged ranges, the same numbers as a
naive expansion, a canonical form that reads back the same, a cap on the
ranges, and hostile sets on a large folder answered at once.
"""

from __future__ import annotations

import imaplib
import itertools
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.mail import imap4
from twisted.trial.unittest import SynchronousTestCase, TestCase

from support.net import inThread, listen
from support.realm import ALICE, PASSWORD, makeRealm
from tmail.auth.throttle import AuthThrottle
from tmail.config.schema import AuthSettings, IMAPSettings
from tmail.imap.factory import IMAPFactory
from tmail.imap.mailbox import IMAPMailbox
from tmail.imap.parse import LimitExceeded
from tmail.imap.seqset import SequenceSet, parseSequenceSet
from tmail.interfaces import IMailFolder

MESSAGE = b"Subject: x\r\n\r\nhi\r\n"
#: The 54 KB set that stalled the server for 38.8 s.
ODD_NUMBERS = b",".join(b"%d" % n for n in range(1, 20000, 2))

_NUMBER = st.integers(min_value=1, max_value=60)
_BOUND = st.one_of(_NUMBER, st.just(None))
_ITEM = st.tuples(_BOUND, st.one_of(st.just(False), _BOUND))


def _text(bound: int | None) -> bytes:
    return b"*" if bound is None else b"%d" % bound


def render(items: list[tuple[int | None, int | bool | None]]) -> bytes:
    """A sequence set as a client might write it; C{False}: no second bound."""
    return b",".join(
        _text(first) if second is False else _text(first) + b":" + _text(second)  # type: ignore[arg-type]
        for first, second in items
    )


def naive(items: list[tuple[int | None, int | bool | None]], last: int) -> set[int]:
    """RFC 3501's reading, one number at a time: C{*} is C{last}, ranges go either way."""
    numbers: set[int] = set()
    for first, second in items:
        low = last if first is None else first
        high = low if second is False else (last if second is None else second)
        assert not isinstance(high, bool)
        numbers.update(range(min(low, high), max(low, high) + 1))
    return numbers


def expand(ranges: Any) -> set[int]:
    return {n for low, high in ranges for n in range(low, high + 1)}


def bulkFolder(fixture: Any, count: int) -> IMailFolder:
    """An INBOX of C{count} messages, written straight into the Maildir (fast)."""
    inbox: IMailFolder = fixture.store(ALICE).getFolder("INBOX")
    pending = inbox.beginMessage()
    pending.write(MESSAGE)
    pending.commit()
    maildir = fixture.root / "data" / "mail"
    cur = next(d for d in maildir.rglob("cur") if d.parent.name != "tmp")
    for i in range(count - 1):
        (cur / f"1700000000.M{i}P1.bulk:2,").write_bytes(MESSAGE)
    inbox.refresh()
    return inbox


class SequenceSetModelTests(SynchronousTestCase):
    @settings(max_examples=500)
    @given(st.lists(_ITEM, min_size=1, max_size=12), st.integers(min_value=0, max_value=70))
    def test_membershipEqualsNaiveExpansion(
        self, items: list[tuple[int | None, int | bool | None]], last: int
    ) -> None:
        ranges = parseSequenceSet(render(items)).resolve(last)
        expected = naive(items, last)
        self.assertEqual(expand(ranges), expected)
        for n in range(0, 75):
            self.assertEqual(n in ranges, n in expected)
        pairs = list(ranges)
        for (_, high), (low, _) in itertools.pairwise(pairs):
            self.assertGreater(low, high + 1, "ranges are merged and ascending")

    @settings(max_examples=500)
    @given(st.lists(_ITEM, min_size=1, max_size=12))
    def test_formatReadsBackTheSameSet(
        self, items: list[tuple[int | None, int | bool | None]]
    ) -> None:
        parsed = parseSequenceSet(render(items))
        self.assertEqual(parseSequenceSet(parsed.format()), parsed)
        for last in (0, 1, 30, 100):
            self.assertEqual(expand(parsed.resolve(last)), naive(items, last))

    def test_examples(self) -> None:
        self.assertEqual(parseSequenceSet(b"5:*").resolve(4).ranges, ((4, 5),))
        self.assertEqual(parseSequenceSet(b"3,1:2,7:*,9:*").format(), b"1:3,7:*,9:*")
        self.assertEqual(parseSequenceSet(b"*:4,*").format(), b"4:*")
        self.assertEqual(parseSequenceSet(b"*").resolve(0).ranges, ((0, 0),))
        self.assertEqual(parseSequenceSet(b"2,4:6").highest(), 6)
        self.assertEqual(parseSequenceSet(b"2,9:*").highest(), 9)
        self.assertEqual(SequenceSet.fromNumbers([5, 1, 2, 3]).format(), b"1:3,5")
        for bad in [b"0", b"1:0", b"-1", b"1,,2", b"a", b"*:*:*", b"4294967296", b"1 2", b""]:
            self.assertRaises(imap4.IllegalClientResponse, parseSequenceSet, bad)

    def test_rangesAreCapped(self) -> None:
        """More ranges than C{imap.max_sequence_ranges} is L{LimitExceeded}, counted as written."""
        self.assertEqual(parseSequenceSet(b"1," * 9 + b"1", maxRanges=10).ranges, ((1, 1),))
        self.assertRaises(LimitExceeded, parseSequenceSet, b"1," * 10 + b"1", maxRanges=10)
        self.assertEqual(len(parseSequenceSet(ODD_NUMBERS).ranges), 10000)

    @settings(max_examples=20, deadline=1000)
    @given(st.integers(min_value=1, max_value=19999), st.booleans())
    def test_hostileSetsParseInLinearTime(self, start: int, reverse: bool) -> None:
        """Ten thousand ranges, in order or not, overlapping or not, parse in under a second."""
        numbers = list(range(start, start + 20000, 2))
        if reverse:
            numbers.reverse()
        parseSequenceSet(b",".join(b"%d:%d" % (n, n + 5) for n in numbers))
        parseSequenceSet(b",".join(b"%d" % n for n in numbers))
        parseSequenceSet(b",".join([b"1:*"] * 19999))


class ResolveTests(SynchronousTestCase):
    def test_repeated_whole_ranges_resolve_once_on_a_large_folder(self) -> None:
        """
        C{1:*} written 15,000 times over 20,000 messages is one range: the
        work is the messages named, not ranges times messages.
        """
        fixture = makeRealm(Path(self.mktemp()))
        mailbox = IMAPMailbox(bulkFolder(fixture, 20000))
        hostile = parseSequenceSet(b",".join([b"1:*"] * 15000))
        started = time.monotonic()
        self.assertEqual(len(mailbox.resolve(hostile, True)), 20000)
        self.assertEqual(len(mailbox.resolve(hostile, False)), 20000)
        odd = mailbox.resolve(parseSequenceSet(ODD_NUMBERS), False)
        self.assertEqual([seq for seq, _ in odd], list(range(1, 20000, 2)))
        self.assertLess(time.monotonic() - started, 2.0)


class SequenceSetNetworkTests(TestCase):
    timeout = 60

    @inlineCallbacks
    def test_fetch_search_store_of_ten_thousand_ranges_answer_quickly(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        """
        FETCH, SEARCH, UID STORE and UID SEARCH with the 54 KB set of odd
        numbers (a 38.8 s stall before) each answer in seconds; a set over
        the cap is C{BAD [LIMIT]} and the session goes on.
        """
        fixture = makeRealm(Path(self.mktemp()))
        bulkFolder(fixture, 20000)
        factory = IMAPFactory(
            fixture.portal,
            IMAPSettings(),
            tlsContextFactory=None,
            throttle=AuthThrottle(AuthSettings(failure_delay=0), reactor),
            hostname="mail.example.test",
        )
        port = yield listen(self, factory)
        odd = ODD_NUMBERS.decode()

        def client() -> dict[str, Any]:
            timings: dict[str, Any] = {}
            with imaplib.IMAP4("127.0.0.1", port, timeout=30) as imap:
                imap.login(ALICE, PASSWORD)
                imap.select("INBOX")
                for name, call in [
                    ("fetch", lambda: imap.fetch(odd, "(FLAGS)")),
                    ("search", lambda: imap.search(None, odd)),
                    ("uid store", lambda: imap.uid("STORE", odd, "+FLAGS.SILENT", "(\\Flagged)")),
                    ("uid search", lambda: imap.uid("SEARCH", "UID", odd)),
                    ("many stars", lambda: imap.search(None, ",".join(["1:*"] * 15000))),
                ]:
                    started = time.monotonic()
                    typ, data = call()
                    timings[name] = (typ, time.monotonic() - started, data)
                try:
                    imap.search(None, "1," * 20000 + "1")
                except imap.error as e:
                    timings["over the cap"] = str(e)
                timings["noop"] = imap.noop()[0]
            return timings

        timings = yield inThread(client)
        for name in ("fetch", "search", "uid store", "uid search", "many stars"):
            typ, elapsed, _ = timings[name]
            self.assertEqual(typ, "OK", name)
            self.assertLess(elapsed, 5.0, name)
        self.assertEqual(len(timings["fetch"][2]), 10000)
        self.assertEqual(len(timings["search"][2][0].split()), 10000)
        self.assertEqual(len(timings["many stars"][2][0].split()), 20000)
        self.assertIn("[LIMIT] Too many ranges in a sequence set", timings["over the cap"])
        self.assertEqual(timings["noop"], "OK")
