"""
SORT (RFC 5256): base subject extraction, the ordering of each sort key, the
SORT command as transcripts and with C{imaplib} and C{imapclient} over
loopback.
"""

from __future__ import annotations

import imaplib
import itertools
from collections.abc import Generator
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from imapclient import IMAPClient
from test_imap_protocol import Session
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase, TestCase

from support.imaploop import listenIMAP
from support.messagefacts import facts
from support.net import inThread
from support.realm import ALICE, PASSWORD, makeRealm
from tmail.imap.sort import SORT_KEYS, baseSubject, parseSortCriteria, sortMessages
from tmail.interfaces import IMailFolder

DAY = 86400.0
JAN_2024 = 1704067200.0


def put(
    folder: IMailFolder, header: bytes, body: bytes = b"body\r\n", date: float = JAN_2024
) -> int:
    pending = folder.beginMessage((), date)
    pending.write(header + b"\r\n" + body)
    return pending.commit()


class BaseSubjectTests(SynchronousTestCase):
    """RFC 5256 2.1, step by step."""

    def test_examples(self) -> None:
        cases = {
            "hello": ("hello", False),
            "  hello \t  world  ": ("hello world", False),
            "Re: hello": ("hello", True),
            "RE: re: Fwd: FW: fwd:hello": ("hello", True),
            "Re[2]: hello": ("hello", True),
            "Re [list]: hello": ("hello", True),
            "[list] Re: hello": ("hello", True),
            "Re: [list] Re: hello": ("hello", True),
            "[list] hello": ("hello", False),
            "[a] [b] hello": ("hello", False),
            "[list]": ("[list]", False),
            "[a] [b]": ("[b]", False),
            "hello (fwd)": ("hello", True),
            "hello (FWD) (fwd)  ": ("hello", True),
            "[fwd: hello]": ("hello", True),
            "[Fwd: Re: hello (fwd)]": ("hello", True),
            "Re: [Fwd: [list] hello]": ("hello", True),
            "Ref: hello": ("Ref: hello", False),
            "Re:": ("", True),
            "": ("", False),
            "Re:\r\n  folded\tline": ("folded line", True),
        }
        for subject, expected in cases.items():
            self.assertEqual(baseSubject(subject), expected, subject)

    def test_hostileSubjectsTakeLinearTime(self) -> None:
        """Long runs of leaders, blobs, trailers and wrappers: quadratic work would take minutes."""
        n = 50000
        self.assertEqual(baseSubject("Re: " * n + "x"), ("x", True))
        self.assertEqual(baseSubject("[a] " * n + "x"), ("x", False))
        self.assertEqual(baseSubject("x" + " (fwd)" * n), ("x", True))
        self.assertEqual(baseSubject("[fwd: " * n + "x" + "]" * n), ("x", True))
        self.assertEqual(baseSubject("[a] " * n + "Re: x"), ("x", True))

    @settings(max_examples=300, deadline=None)
    @given(
        st.lists(
            st.sampled_from(
                [
                    "Re:",
                    "re",
                    "Fwd:",
                    "fw:",
                    " ",
                    "\t",
                    "[x]",
                    "[",
                    "]",
                    "(fwd)",
                    "[fwd:",
                    ":",
                    "a",
                    "b c",
                ]
            ),
            max_size=12,
        ).map("".join)
    )
    def test_extractionIsIdempotentAndTrimmed(self, subject: str) -> None:
        """A base subject is its own base subject, and neither starts nor ends with a space."""
        base, _ = baseSubject(subject)
        self.assertEqual(baseSubject(base)[0], base)
        self.assertEqual(base, base.strip(" \t"))
        self.assertFalse(base.lower().endswith("(fwd)"))


_CRITERION = st.tuples(st.sampled_from(sorted(SORT_KEYS)), st.booleans())
_MESSAGE = st.fixed_dictionaries(
    {
        "subject": st.sampled_from(["a", "Re: a", "b", "[l] B", "", "c (fwd)"]),
        "from": st.sampled_from(["x@h", "Y <y@h>", "z", "", "A <b@h>, c@h"]),
        "to": st.sampled_from(["p@h", "q@h"]),
        "cc": st.sampled_from(["", "m@h"]),
        "date": st.sampled_from(
            ["Mon, 1 Jan 2024 10:00:00 +0000", "Mon, 1 Jan 2024 09:00:00 -0200", "garbage", ""]
        ),
        "size": st.integers(1, 4),
        "arrival": st.integers(0, 3),
    }
)


def _fromDict(seq: int, fields: dict[str, Any]) -> Any:
    header = b"".join(
        b"%s: %s\r\n" % (name.title().encode(), fields[name].encode())
        for name in ("subject", "from", "to", "cc", "date")
        if fields[name]
    )
    return facts(seq, header, size=fields["size"], internaldate=JAN_2024 + fields["arrival"] * 3600)


class SortAlgorithmTests(SynchronousTestCase):
    def key(self, f: Any, name: bytes) -> Any:
        return {
            b"ARRIVAL": f.arrival,
            b"CC": f.mailbox(b"cc"),
            b"DATE": f.sentDate,
            b"FROM": f.mailbox(b"from"),
            b"SIZE": f.size,
            b"SUBJECT": f.baseSubject,
            b"TO": f.mailbox(b"to"),
            b"DISPLAYFROM": f.display(b"from"),
            b"DISPLAYTO": f.display(b"to"),
        }[name]

    @settings(max_examples=200, deadline=None)
    @given(st.lists(_MESSAGE, max_size=12), st.lists(_CRITERION, min_size=1, max_size=4))
    def test_sortIsAStablePermutationInCriteriaOrder(
        self, messages: list[dict[str, Any]], criteria: list[tuple[bytes, bool]]
    ) -> None:
        """Every message once; neighbours ordered by the first differing key, else by sequence."""
        items = [_fromDict(seq, m) for seq, m in enumerate(messages, 1)]
        ordered = sortMessages(items[::-1], criteria)
        self.assertEqual(sorted(f.seq for f in ordered), list(range(1, len(items) + 1)))
        for a, b in itertools.pairwise(ordered):
            for name, reverse in criteria:
                ka, kb = self.key(a, name), self.key(b, name)
                if ka != kb:
                    self.assertTrue(ka > kb if reverse else ka < kb, (name, reverse, ka, kb))
                    break
            else:
                self.assertLess(a.seq, b.seq)

    @settings(max_examples=100, deadline=None)
    @given(
        st.lists(st.integers(1, 10**6), unique=True, max_size=15),
        st.sampled_from([b"SIZE", b"ARRIVAL"]),
    )
    def test_reverseReversesDistinctKeys(self, values: list[int], name: bytes) -> None:
        items = [facts(seq, size=v, internaldate=float(v)) for seq, v in enumerate(values, 1)]
        forward = [f.seq for f in sortMessages(items, [(name, False)])]
        backward = [f.seq for f in sortMessages(items, [(name, True)])]
        self.assertEqual(backward, forward[::-1])

    def test_reverseKeepsTiesInSequenceOrder(self) -> None:
        items = [facts(1, size=5), facts(2, size=9), facts(3, size=5)]
        self.assertEqual([f.seq for f in sortMessages(items, [(b"SIZE", True)])], [2, 1, 3])

    def test_dateIsUTCWithInternalDateFallback(self) -> None:
        items = [
            facts(1, date="Mon, 1 Jan 2024 10:00:00 +0200"),
            facts(2, date="Mon, 1 Jan 2024 09:00:00 +0000"),
            facts(3, date="not a date", internaldate=JAN_2024 + 8.5 * 3600),
            facts(4, internaldate=JAN_2024),
            facts(5, date="Mon, 1 Jan 2024 08:45:00"),
        ]
        self.assertEqual([f.seq for f in sortMessages(items, [(b"DATE", False)])], [4, 1, 3, 5, 2])

    def test_addressesSortByFirstMailboxLocalPart(self) -> None:
        items = [
            facts(1, **{"from": "Aaron <zed@example.test>"}),
            facts(2, **{"from": "bob@example.test, aaa@example.test"}),
            facts(3),
            facts(4, **{"from": "undisclosed-recipients:;"}),
            facts(5, **{"from": "BOB@other.test"}),
        ]
        self.assertEqual([f.seq for f in sortMessages(items, [(b"FROM", False)])], [3, 2, 5, 4, 1])

    def test_addressKeyIsTheEnvelopesFirstMailbox(self) -> None:
        """
        RFC 5256 3: the IMAP addr-mailbox of the first address, as ENVELOPE
        lists it: a group's start marker holds the group's name, an address
        without a local part holds MISSING_MAILBOX, and a comment is none.
        """
        items = [
            facts(1, cc="team: zed@x.test;"),
            facts(2, cc="<>"),
            facts(3, cc="(nobody)"),
            facts(4, cc="Ann (the boss) <nora@x.test>"),
            facts(5, cc='"a b"@x.test'),
        ]
        self.assertEqual([f.seq for f in sortMessages(items, [(b"CC", False)])], [3, 5, 2, 4, 1])

    def test_headerReadOnceForAllCriteria(self) -> None:
        items = [facts(n, subject="s", to="a@b", cc="c@d", date="x") for n in range(1, 4)]
        sortMessages(items, [(b"SUBJECT", False), (b"TO", True), (b"CC", False), (b"DATE", False)])
        self.assertEqual([f.message.headerReads for f in items], [1, 1, 1])

    def test_criteriaParsing(self) -> None:
        self.assertEqual(
            parseSortCriteria([b"reverse", b"date", b"SUBJECT"]),
            [(b"DATE", True), (b"SUBJECT", False)],
        )
        for bad in [
            [],
            [b"REVERSE"],
            [b"FROB"],
            [b"REVERSE", b"REVERSE", b"DATE"],
            [[b"DATE"]],
            b"DATE",
        ]:
            with self.assertRaises(ValueError):
                parseSortCriteria(bad)


class SortCommandTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.session = Session(self)
        self.inbox = self.session.store.getFolder("INBOX")

    def send(self, line: bytes) -> bytes:
        return self.session.send(line + b"\r\n")

    def rfcMailbox(self) -> None:
        """Five messages that sort as in RFC 5256's example (C{* SORT 5 3 4 1 2})."""
        for subject, day in [("Re: c", 5), ("c", 1), ("b", 4), ("[list] b", 2), ("A", 3)]:
            put(
                self.inbox,
                b"Subject: %s\r\nDate: %d Jan 2024 12:00:00 +0000\r\n" % (subject.encode(), day),
            )
        self.session.select()

    def test_rfcExamples(self) -> None:
        self.rfcMailbox()
        self.assertEqual(
            self.send(b"A282 SORT (SUBJECT) UTF-8 SINCE 1-Feb-1994"),
            b"* SORT 5 3 4 1 2\r\nA282 OK SORT completed\r\n",
        )
        self.assertEqual(
            self.send(b"A282 SORT (SUBJECT DATE) UTF-8 SINCE 1-Feb-1994"),
            b"* SORT 5 4 3 2 1\r\nA282 OK SORT completed\r\n",
        )
        self.assertEqual(
            self.send(b"A283 SORT (SUBJECT REVERSE DATE) UTF-8 ALL"),
            b"* SORT 5 3 4 1 2\r\nA283 OK SORT completed\r\n",
        )
        self.assertEqual(
            self.send(b'A284 SORT (SUBJECT) US-ASCII TEXT "not in mailbox"'),
            b"* SORT\r\nA284 OK SORT completed\r\n",
        )

    def test_uidSortAndSearchKeys(self) -> None:
        for _ in range(3):
            put(self.inbox, b"Subject: x\r\n")
        self.inbox.expunge([1])
        put(self.inbox, b"Subject: y\r\n", b"z" * 50)
        self.session.select()
        self.assertEqual(
            self.send(b"a UID SORT (REVERSE SIZE) UTF-8 ALL"),
            b"* SORT 4 2 3\r\na OK SORT completed\r\n",
        )
        self.assertEqual(
            self.send(b"b SORT (ARRIVAL) utf-8 SUBJECT x"), b"* SORT 1 2\r\nb OK SORT completed\r\n"
        )
        self.assertEqual(
            self.send(b"c SORT (REVERSE ARRIVAL) UTF-8 ALL"),
            b"* SORT 1 2 3\r\nc OK SORT completed\r\n",
        )

    def test_addressKeys(self) -> None:
        put(self.inbox, b"From: Zoe <amy@x>\r\nTo: b@x\r\nCc: z@x\r\n")
        put(self.inbox, b"From: bert@x\r\nTo: A@x\r\n")
        put(self.inbox, b"From: =?UTF-8?Q?Ann?= <carl@x>\r\nTo: c@x\r\nCc: a@x\r\n")
        self.session.select()
        for criteria, order in [
            (b"FROM", b"1 2 3"),
            (b"TO", b"2 1 3"),
            (b"CC", b"2 3 1"),
            (b"REVERSE CC", b"1 3 2"),
        ]:
            self.assertEqual(
                self.send(b"a SORT (%s) UTF-8 ALL" % criteria),
                b"* SORT %s\r\na OK SORT completed\r\n" % order,
                criteria,
            )

    def test_headerReadOnceEvenWhenSearchReadsIt(self) -> None:
        for n in range(4):
            put(self.inbox, b"Subject: s%d\r\nFrom: f%d@x\r\n" % (3 - n, n))
        self.session.select()
        folder = self.session.server.mbox.folder  # type: ignore[union-attr]
        opened: list[int] = []
        original = folder.openMessage

        def counting(uid: int) -> Any:
            opened.append(uid)
            return original(uid)

        folder.openMessage = counting
        self.assertEqual(
            self.send(b"a SORT (FROM SUBJECT DATE) UTF-8 HEADER Subject s"),
            b"* SORT 1 2 3 4\r\na OK SORT completed\r\n",
        )
        self.assertEqual(sorted(opened), [1, 2, 3, 4])
        del opened[:]
        self.send(b"b SORT (SIZE ARRIVAL) UTF-8 UNSEEN")
        self.assertEqual(opened, [])

    def test_expungesByOthersWaitUntilAfterSortAndThread(self) -> None:
        """
        SORT and THREAD answer with sequence numbers, so, as during SEARCH,
        another session's expunge is reported only afterwards; meanwhile the
        vanished message keeps its place.
        """
        for subject in (b"c", b"a", b"b"):
            put(self.inbox, b"Subject: %s\r\n" % subject)
        self.session.select()
        actor = Session(self, self.session.fixture)
        actor.select()
        actor.send(b"a STORE 2 +FLAGS.SILENT (\\Deleted)\r\nb EXPUNGE\r\n")
        self.assertEqual(
            self.send(b"c SORT (SUBJECT) UTF-8 ALL"), b"* SORT 2 3 1\r\nc OK SORT completed\r\n"
        )
        self.assertEqual(
            self.send(b"d THREAD ORDEREDSUBJECT UTF-8 ALL"),
            b"* THREAD (1)(2)(3)\r\nd OK THREAD completed\r\n",
        )
        self.assertEqual(
            self.send(b"e NOOP"),
            b"* 2 EXPUNGE\r\n* 2 EXISTS\r\n* 2 RECENT\r\ne OK NOOP completed\r\n",
        )
        self.assertEqual(
            self.send(b"f SORT (SUBJECT) UTF-8 ALL"), b"* SORT 2 1\r\nf OK SORT completed\r\n"
        )

    def test_badArgumentsAreBAD(self) -> None:
        self.rfcMailbox()
        for line in [
            b"a SORT",
            b"a SORT SUBJECT UTF-8 ALL",
            b"a SORT () UTF-8 ALL",
            b"a SORT (FROB) UTF-8 ALL",
            b"a SORT (REVERSE) UTF-8 ALL",
            b"a SORT (SUBJECT) UTF-8",
            b"a SORT (SUBJECT) ALL",
            b"a SORT (SUBJECT) UTF-8 FROB",
            b"a SORT (SUBJECT UTF-8 ALL",
            b"a UID SORT (SUBJECT) UTF-8 UID x",
        ]:
            self.assertTrue(self.send(line).startswith(b"a BAD "), line)
        self.assertEqual(
            self.send(b"b SORT (SUBJECT) ISO-8859-1 ALL"),
            b"b NO [BADCHARSET (US-ASCII UTF-8)] Unsupported charset\r\n",
        )

    def test_needsASelectedMailbox(self) -> None:
        self.session.loginDirectly()
        self.assertEqual(
            self.send(b"a SORT (SUBJECT) UTF-8 ALL"), b"a BAD Command not allowed now\r\n"
        )


class SortNetworkTests(TestCase):
    timeout = 20

    def setUp(self) -> None:
        self.fixture = makeRealm(Path(self.mktemp()))
        inbox = self.fixture.store(ALICE).getFolder("INBOX")
        put(inbox, b"Subject: Re: beta\r\nFrom: carol@x\r\nDate: 3 Jan 2024 00:00:00 +0000\r\n")
        put(
            inbox,
            b"Subject: alpha\r\nFrom: bob@x\r\nDate: 2 Jan 2024 00:00:00 +0000\r\n",
            b"x" * 99,
        )
        put(inbox, b"Subject: beta\r\nFrom: Zed <alice@x>\r\nDate: 1 Jan 2024 00:00:00 +0000\r\n")

    @inlineCallbacks
    def test_clientsSort(self) -> Generator[Deferred[Any], Any, None]:
        port = yield listenIMAP(self, self.fixture)

        def client() -> dict[str, Any]:
            seen: dict[str, Any] = {}
            with IMAPClient("127.0.0.1", port=port, ssl=False, timeout=10) as imap:
                imap.login(ALICE, PASSWORD)
                seen["caps"] = imap.capabilities()
                imap.select_folder("INBOX")
                seen["subject"] = imap.sort(["SUBJECT", "DATE"])
                seen["from"] = imap.sort("REVERSE FROM", ["NOT", "SUBJECT", "alpha"])
                seen["size"] = imap.sort(["REVERSE SIZE"])
            imap2 = imaplib.IMAP4("127.0.0.1", port, timeout=10)
            try:
                imap2.login(ALICE, PASSWORD)
                imap2.select("INBOX")
                seen["imaplib"] = imap2.sort("(DATE)", "UTF-8", "ALL")
            finally:
                imap2.logout()
            return seen

        seen = yield inThread(client)
        self.assertIn(b"SORT", seen["caps"])
        self.assertEqual(seen["subject"], [2, 3, 1])
        self.assertEqual(seen["from"], [1, 3])
        self.assertEqual(seen["size"][0], 2)
        self.assertEqual(seen["imaplib"], ("OK", [b"3 2 1"]))
