"""
A message over L{largemessages.LARGE_MESSAGE} is read, taken apart,
decoded and searched in worker threads of its own pool, a bounded piece at
a time; a client gets the same answers for it as when all of that is done
at once on the reactor thread.
"""

from __future__ import annotations

import base64
import imaplib
import quopri
import sys
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

from test_imap_protocol import deliver
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.interfaces import IReactorFromThreads
from twisted.trial.unittest import SynchronousTestCase, TestCase

from support.imaploop import listenIMAP
from support.net import inThread
from support.realm import ALICE, PASSWORD, makeRealm
from tmail.imap import largemessages, pieces
from tmail.imap.largemessages import SWITCH_INTERVAL, MessageThreads

#: Text of the first part: Latin-1, with the needle after many pieces.
TEXT = (
    b"".join(b"caf\xe9 line %06d of the report\r\n" % n for n in range(24_000))
    + b"the zebra-needle is here\r\n"
)
HTML = "".join(f"<p>quoted-printable soft line {n} = ok</p>\r\n" for n in range(4_000)).encode()
#: A header larger than a piece: many fields, encoded words, folding.
HEADER = (
    b"From: =?utf-8?q?Caf=C3=A9_Owner?= <cafe@example.test>\r\n"
    b"To: alice@example.test\r\n"
    b"Subject: =?utf-8?q?Grand_r=C3=A9port?=\r\n =?iso-8859-1?b?cXVhcnRlcmx5?= figures\r\n"
    b"Date: Mon, 7 Feb 2022 10:00:00 +0000\r\n"
    b"Message-ID: <large@example.test>\r\n"
    b"X-Folded: first\r\n second\r\n third\r\n"
    + b"".join(b"X-Filler-%05d: filler-line-%05d\r\n" % (n, n) for n in range(8_000))
    + b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="outer"\r\n'
    b"\r\n"
)
LARGE = (
    HEADER + b"--outer\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\n"
    + base64.encodebytes(TEXT).replace(b"\n", b"\r\n")
    + b"--outer\r\nContent-Type: text/html; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    + quopri.encodestring(HTML)
    + b"\r\n--outer\r\nContent-Type: message/rfc822\r\n\r\n"
    b"Subject: inner\r\nContent-Type: text/plain\r\n\r\ninner words\r\n"
    b"--outer--\r\n"
)
SMALL = b"From: bob@example.test\r\nSubject: small\r\n\r\nthe zebra is elsewhere\r\n"

FETCHES = [
    "(BODYSTRUCTURE)",
    "(BODY.PEEK[])",
    "(BINARY.PEEK[1])",
    "(BINARY.PEEK[2] BINARY.SIZE[1] BINARY.SIZE[2])",
    "(ENVELOPE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (SUBJECT X-FOLDED)] BODY.PEEK[1.MIME])",
    "(BODY.PEEK[3.TEXT] BODY.PEEK[2]<1000.200> BODY.PEEK[TEXT]<0.100>)",
]
SEARCHES: list[tuple[str | None, str, bytes | None]] = [
    (None, 'TEXT "needle-not-there"', None),
    (None, 'TEXT "ZEBRA-NEEDLE"', None),
    (None, 'BODY "zebra"', None),
    (None, 'BODY "inner words"', None),
    (None, 'BODY "soft line 3999 = ok"', None),
    (None, 'TEXT "filler-line-07999"', None),
    (None, 'HEADER X-Filler-04000 "line-04000"', None),
    (None, 'HEADER X-Folded "second third"', None),
    (None, 'SUBJECT "quarterly figures"', None),
    (None, 'FROM "cafe@example"', None),
    ("UTF-8", "BODY", "café line 023999".encode()),
    ("UTF-8", "SUBJECT", "grand réport".encode()),
]


def _key(criteria: str, literal: bytes | None) -> str:
    return criteria if literal is None else f"{criteria} {literal.decode()}"


def converse(port: int, folder: str) -> dict[str, Any]:
    """What imaplib gets for the FETCHes, SEARCHes and a SORT in C{folder}."""
    imap = imaplib.IMAP4("127.0.0.1", port, timeout=60)
    try:
        imap.login(ALICE, PASSWORD)
        imap.select(folder, readonly=True)
        answers: dict[str, Any] = {items: imap.fetch("1:2", items) for items in FETCHES}
        for charset, criteria, literal in SEARCHES:
            imap.literal = literal
            answers[_key(criteria, literal)] = imap.search(charset, criteria)
        answers["SORT"] = imap.sort("(SUBJECT)", "UTF-8", "TEXT", "zebra")
        return answers
    finally:
        imap.logout()


class LargeMessageTests(TestCase):
    timeout = 120

    @inlineCallbacks
    def test_answers_for_a_large_message_are_those_of_the_small_path(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        """
        FETCH (structure, sections, BINARY), SEARCH (text parts in base64
        and quoted-printable, a header larger than a piece, encoded words)
        and SORT answer alike, in a folder of its own for each path.
        """
        fixture = makeRealm(Path(self.mktemp()))
        store = fixture.store(ALICE)
        for name in ("Worker", "Reactor"):
            store.createFolder(name)
            deliver(store.getFolder(name), SMALL)
            deliver(store.getFolder(name), LARGE)
        pool = MessageThreads(_reactor(), 2)
        pool.startService()
        self.addCleanup(pool.stopService)
        jobs: list[Callable[..., Any]] = []

        def run(function: Callable[..., Any], *args: Any) -> Deferred[Any]:
            jobs.append(function)
            return pool.run(function, *args)

        port = yield listenIMAP(self, fixture, messageThreads=run)
        inWorker = yield inThread(converse, port, "Worker")
        self.assertGreaterEqual(len(jobs), len(FETCHES) + len(SEARCHES))
        done = len(jobs)

        self.patch(largemessages, "LARGE_MESSAGE", 1 << 40)
        self.patch(pieces, "PIECE", 1 << 40)
        inReactor = yield inThread(converse, port, "Reactor")
        self.assertEqual(len(jobs), done)

        self.assertEqual(inWorker, inReactor)
        self.assertEqual(inWorker["(BODY.PEEK[])"][1][2][1], LARGE)
        self.assertEqual(inWorker["(BINARY.PEEK[1])"][1][2][1], TEXT)
        found = {key: inWorker[key][1] for key in (_key(c, lit) for _, c, lit in SEARCHES)}
        self.assertEqual(
            found,
            {
                'TEXT "needle-not-there"': [b""],
                'TEXT "ZEBRA-NEEDLE"': [b"2"],
                'BODY "zebra"': [b"1 2"],
                'BODY "inner words"': [b"2"],
                'BODY "soft line 3999 = ok"': [b"2"],
                'TEXT "filler-line-07999"': [b"2"],
                'HEADER X-Filler-04000 "line-04000"': [b"2"],
                'HEADER X-Folded "second third"': [b"2"],
                'SUBJECT "quarterly figures"': [b"2"],
                'FROM "cafe@example"': [b"2"],
                "BODY café line 023999": [b"2"],
                "SUBJECT grand réport": [b"2"],
            },
        )
        self.assertEqual(inWorker["SORT"][1], [b"2 1"])


def _reactor() -> IReactorFromThreads:
    assert IReactorFromThreads.providedBy(reactor)
    return reactor  # type: ignore[return-value]


class MessageThreadsTests(SynchronousTestCase):
    def test_the_pool_has_the_threads_it_is_given_and_switches_quickly_while_it_runs(
        self,
    ) -> None:
        before = sys.getswitchinterval()
        pool = MessageThreads(_reactor(), 3)
        pool.startService()
        try:
            self.assertEqual(pool.pool.max, 3)
            self.assertLessEqual(sys.getswitchinterval(), SWITCH_INTERVAL)
        finally:
            pool.stopService()
        self.assertEqual(sys.getswitchinterval(), before)
