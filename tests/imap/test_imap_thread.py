"""
THREAD (RFC 5256): ORDEREDSUBJECT and REFERENCES on in-memory messages,
the response grammar for random message graphs, the THREAD command as
transcripts and with C{imaplib} and C{imapclient} over loopback.
"""

from __future__ import annotations

import imaplib
import re
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
from tmail.imap.thread import formatThreads, threadMessages
from tmail.interfaces import IMailFolder

JAN_2024 = 1704067200.0


def day(n: int) -> str:
    return f"{n} Jan 2024 12:00:00 +0000"


def thread(algorithm: bytes, messages: list[Any], uid: bool = False) -> bytes:
    return formatThreads(threadMessages(algorithm, messages), uid)


def parseThreads(data: bytes) -> list[int]:
    """
    The numbers of a THREAD response's data, in order, after checking it
    against RFC 5256's grammar (thread-list, thread-members, thread-nested).
    """
    tokens = re.findall(rb"\(|\)|\d+| ", data)
    assert b"".join(tokens) == data, data
    numbers: list[int] = []
    position = 0

    def expect(token: bytes) -> None:
        nonlocal position
        assert tokens[position : position + 1] == [token], (data, position, token)
        position += 1

    def peek() -> bytes | None:
        return tokens[position] if position < len(tokens) else None

    def threadList() -> None:
        nonlocal position
        expect(b"(")
        if peek() == b"(":
            nested()
        else:
            while True:
                number = peek()
                assert number is not None and number.isdigit() and int(number) > 0, data
                numbers.append(int(number))
                position += 1
                if peek() != b" ":
                    break
                position += 1
                if peek() == b"(":
                    nested()
                    break
        expect(b")")

    def nested() -> None:
        count = 0
        while peek() == b"(":
            threadList()
            count += 1
        assert count >= 2, data

    while position < len(tokens):
        threadList()
    return numbers


class OrderedSubjectTests(SynchronousTestCase):
    def test_groupsBySubjectInDateOrder(self) -> None:
        """Each base subject is one thread: its first message with the others as children."""
        messages = [
            facts(1, subject="b", date=day(3)),
            facts(2, subject="Re: a", date=day(2)),
            facts(3, subject="a", date=day(1)),
            facts(4, subject="[x] B", date=day(4)),
            facts(5, subject="c", date=day(9)),
            facts(6, subject="Fwd: a", date=day(5)),
            facts(7, subject="c (fwd)", date=day(9)),
        ]
        self.assertEqual(thread(b"ORDEREDSUBJECT", messages), b"(3 (2)(6))(1 4)(5 7)")

    def test_uidsInsteadOfSequenceNumbers(self) -> None:
        messages = [facts(1, uid=10, subject="a"), facts(2, uid=20, subject="a")]
        self.assertEqual(thread(b"ORDEREDSUBJECT", messages, uid=True), b"(10 20)")


class ReferencesTests(SynchronousTestCase):
    def ref(self, messages: list[Any]) -> bytes:
        return thread(b"REFERENCES", messages)

    def test_chainAndBranches(self) -> None:
        """RFC 5256 5's example shape: (3 6 (4 23)(44 7 96))."""
        messages = [
            facts(1, message_id="<1@x>", subject="s", date=day(1)),
            facts(2, message_id="<2@x>", references="<1@x>", subject="Re: s", date=day(2)),
            facts(3, message_id="<3@x>", references="<1@x> <2@x>", subject="Re: s", date=day(3)),
            facts(4, message_id="<4@x>", references="<3@x>", subject="Re: s", date=day(4)),
            facts(5, message_id="<5@x>", in_reply_to="<2@x>", subject="Re: s", date=day(5)),
            facts(6, message_id="<6@x>", references="<2@x> <5@x>", subject="Re: s", date=day(6)),
            facts(7, message_id="<7@x>", subject="other", date=day(7)),
        ]
        self.assertEqual(self.ref(messages), b"(1 2 (3 4)(5 6))(7)")

    def test_missingParentWithSeveralChildrenStaysADummy(self) -> None:
        messages = [
            facts(1, message_id="<1@x>", references="<gone@x>", subject="one", date=day(1)),
            facts(2, message_id="<2@x>", references="<gone@x>", subject="two", date=day(2)),
            facts(3, message_id="<3@x>", subject="three", date=day(3)),
        ]
        self.assertEqual(self.ref(messages), b"((1)(2))(3)")

    def test_missingParentWithOneChildIsPromoted(self) -> None:
        messages = [
            facts(1, message_id="<1@x>", references="<gone@x>", subject="one"),
            facts(2, message_id="<2@x>", references="<2@x> <gone2@x>", subject="two"),
        ]
        self.assertEqual(self.ref(messages), b"(1)(2)")

    def test_missingMessageInsideAThreadIsSplicedOut(self) -> None:
        messages = [
            facts(1, message_id="<1@x>", subject="a", date=day(1)),
            facts(2, message_id="<2@x>", references="<1@x> <gone@x>", subject="b", date=day(2)),
            facts(3, message_id="<3@x>", references="<1@x> <gone@x>", subject="c", date=day(3)),
        ]
        self.assertEqual(self.ref(messages), b"(1 (2)(3))")

    def test_existingLinksAreKeptAndTheLastReferenceWins(self) -> None:
        """1.A keeps a parent found first; 1.B moves a message under its own last reference."""
        messages = [
            facts(1, message_id="<a@x>", subject="a", date=day(1)),
            facts(2, message_id="<b@x>", references="<a@x>", subject="b", date=day(2)),
            facts(3, message_id="<c@x>", references="<z@x> <b@x>", subject="c", date=day(3)),
            facts(4, message_id="<d@x>", references="<c@x>", subject="d", date=day(4)),
            facts(5, message_id="<e@x>", references="<b@x>", subject="e", date=day(5)),
        ]
        self.assertEqual(self.ref(messages), b"(1 2 (3 4)(5))")

    def test_referenceLoopsAreNotFollowed(self) -> None:
        messages = [
            facts(1, message_id="<a@x>", references="<b@x>", subject="a", date=day(1)),
            facts(2, message_id="<b@x>", references="<a@x>", subject="b", date=day(2)),
            facts(3, message_id="<c@x>", references="<c@x>", subject="c", date=day(3)),
            facts(4, message_id="<d@x>", references="<e@x> <d@x> <e@x>", subject="d", date=day(4)),
        ]
        self.assertEqual(sorted(parseThreads(self.ref(messages))), [1, 2, 3, 4])
        self.assertEqual(self.ref(messages), b"(2 1)(3)(4)")

    def test_duplicateMessageIdsAreTwoMessages(self) -> None:
        messages = [
            facts(1, message_id="<a@x>", subject="one", date=day(1)),
            facts(2, message_id="<a@x>", subject="two", date=day(2)),
            facts(3, message_id="<r@x>", references="<a@x>", subject="three", date=day(3)),
        ]
        self.assertEqual(self.ref(messages), b"(1 3)(2)")

    def test_sameSubjectThreadsMerge(self) -> None:
        """Step 5: a reply goes under the original; two originals get a dummy parent."""
        self.assertEqual(
            self.ref(
                [facts(1, subject="hello", date=day(1)), facts(2, subject="Re: hello", date=day(2))]
            ),
            b"(1 2)",
        )
        self.assertEqual(
            self.ref(
                [facts(1, subject="Re: hello", date=day(1)), facts(2, subject="hello", date=day(2))]
            ),
            b"(2 1)",
        )
        self.assertEqual(
            self.ref(
                [facts(1, subject="hello", date=day(1)), facts(2, subject="[l] hello", date=day(2))]
            ),
            b"((1)(2))",
        )
        self.assertEqual(
            self.ref(
                [
                    facts(1, subject="Re: hello", date=day(1)),
                    facts(2, subject="Re: hello", date=day(2)),
                    facts(3, subject="other", date=day(3)),
                ]
            ),
            b"((1)(2))(3)",
        )

    def test_dummyThreadsGatherSameSubjectMessages(self) -> None:
        """Step 5.C: under a dummy the current message joins its children; two dummies merge."""
        messages = [
            facts(1, references="<gone@x>", subject="topic", date=day(1)),
            facts(2, references="<gone@x>", subject="Re: topic", date=day(2)),
            facts(3, subject="topic", date=day(3)),
            facts(4, references="<gone2@x>", subject="Re: topic", date=day(4)),
            facts(5, references="<gone2@x>", subject="Re: topic", date=day(5)),
        ]
        self.assertEqual(self.ref(messages), b"((1)(2)(3)(4)(5))")

    def test_emptySubjectsAreNotMerged(self) -> None:
        self.assertEqual(self.ref([facts(1, subject="Re:"), facts(2)]), b"(1)(2)")

    def test_siblingsInSentDateOrderDummyByFirstChild(self) -> None:
        messages = [
            facts(1, message_id="<p@x>", subject="p", date=day(5)),
            facts(2, message_id="<q@x>", references="<p@x>", subject="q", date=day(9)),
            facts(3, message_id="<r@x>", references="<p@x>", subject="r", date=day(7)),
            facts(4, references="<gone@x>", subject="s", date=day(3)),
            facts(5, references="<gone@x>", subject="t", date=day(8)),
            facts(6, subject="u", date="garbage", internaldate=JAN_2024 + 86400),
        ]
        self.assertEqual(self.ref(messages), b"(6)((4)(5))(1 (3)(2))")

    def test_longChainsNeedNoRecursion(self) -> None:
        count = 5000
        messages = [facts(1, message_id="<m1@x>", subject="s")]
        for n in range(2, count + 1):
            messages.append(
                facts(n, message_id=f"<m{n}@x>", in_reply_to=f"<m{n - 1}@x>", subject="Re: s")
            )
        data = self.ref(messages)
        self.assertEqual(parseThreads(data), list(range(1, count + 1)))
        self.assertTrue(data.startswith(b"(1 2 3 "))


_IDS = st.sampled_from(["<a@x>", "<b@x>", "<c@x>", "<d@x>", "<e@x>", "junk", ""])
_GRAPH_MESSAGE = st.fixed_dictionaries(
    {
        "message_id": _IDS,
        "references": st.lists(_IDS, max_size=4).map(" ".join),
        "in_reply_to": _IDS,
        "subject": st.sampled_from(["", "a", "Re: a", "b", "[x] b", "Fwd: [fwd: a]"]),
        "date": st.sampled_from([day(1), day(2), day(3), "bad"]),
    }
)


class ThreadPropertyTests(SynchronousTestCase):
    @settings(max_examples=300, deadline=None)
    @given(
        st.lists(_GRAPH_MESSAGE, max_size=14), st.sampled_from([b"REFERENCES", b"ORDEREDSUBJECT"])
    )
    def test_everyMessageExactlyOnceInAValidResponse(
        self, messages: list[dict[str, str]], algorithm: bytes
    ) -> None:
        items = [
            facts(seq, **{k: v for k, v in fields.items() if v})
            for seq, fields in enumerate(messages, 1)
        ]
        data = thread(algorithm, items)
        self.assertEqual(sorted(parseThreads(data)), list(range(1, len(items) + 1)))

    @settings(max_examples=100, deadline=None)
    @given(st.lists(_GRAPH_MESSAGE, min_size=1, max_size=10))
    def test_orderedSubjectThreadsShareOneBaseSubject(self, messages: list[dict[str, str]]) -> None:
        items = [
            facts(seq, **{k: v for k, v in fields.items() if v})
            for seq, fields in enumerate(messages, 1)
        ]
        root = threadMessages(b"ORDEREDSUBJECT", items)
        subjects = [t.facts.baseSubject for t in root.children if t.facts is not None]
        self.assertEqual(len(subjects), len(set(subjects)))
        for top in root.children:
            assert top.facts is not None
            for child in top.children:
                assert child.facts is not None
                self.assertEqual(child.facts.baseSubject, top.facts.baseSubject)
                self.assertEqual(child.children, [])


def put(folder: IMailFolder, header: bytes) -> int:
    pending = folder.beginMessage((), JAN_2024)
    pending.write(header + b"\r\nbody\r\n")
    return pending.commit()


def rfcMailbox(folder: IMailFolder) -> None:
    """Messages threading as (1 2 (3 4)(5 6))(7) by REFERENCES."""
    links = [None, 1, 2, 3, 2, 5, None]
    for n, parent in enumerate(links, 1):
        header = b"Message-ID: <%d@x>\r\nDate: %s\r\nSubject: %s\r\n" % (
            n,
            day(n).encode(),
            b"other" if n == 7 else b"Re: topic" if parent else b"topic",
        )
        if parent is not None:
            header += b"In-Reply-To: <%d@x>\r\n" % parent
        put(folder, header)


class ThreadCommandTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.session = Session(self)
        self.inbox = self.session.store.getFolder("INBOX")

    def send(self, line: bytes) -> bytes:
        return self.session.send(line + b"\r\n")

    def test_rfcExamples(self) -> None:
        rfcMailbox(self.inbox)
        self.session.select()
        self.assertEqual(
            self.send(b"A283 THREAD ORDEREDSUBJECT UTF-8 SINCE 5-MAR-2000"),
            b"* THREAD (1 (2)(3)(4)(5)(6))(7)\r\nA283 OK THREAD completed\r\n",
        )
        self.assertEqual(
            self.send(b'A284 THREAD ORDEREDSUBJECT US-ASCII TEXT "gewp"'),
            b"* THREAD\r\nA284 OK THREAD completed\r\n",
        )
        self.assertEqual(
            self.send(b"A285 THREAD REFERENCES UTF-8 SINCE 5-MAR-2000"),
            b"* THREAD (1 2 (3 4)(5 6))(7)\r\nA285 OK THREAD completed\r\n",
        )

    def test_uidThreadAndSearchKeys(self) -> None:
        rfcMailbox(self.inbox)
        self.inbox.expunge([2])
        self.session.select()
        self.assertEqual(
            self.send(b"a UID THREAD REFERENCES UTF-8 ALL"),
            b"* THREAD ((1)(3 4)(5 6))(7)\r\na OK THREAD completed\r\n",
        )
        self.assertEqual(
            self.send(b"b THREAD references utf-8 NOT SUBJECT other"),
            b"* THREAD ((1)(2 3)(4 5))\r\nb OK THREAD completed\r\n",
        )

    def test_headerReadOnce(self) -> None:
        rfcMailbox(self.inbox)
        self.session.select()
        folder = self.session.server.mbox.folder  # type: ignore[union-attr]
        opened: list[int] = []
        original = folder.openMessage

        def counting(uid: int) -> Any:
            opened.append(uid)
            return original(uid)

        folder.openMessage = counting
        self.send(b"a THREAD REFERENCES UTF-8 HEADER Message-ID x")
        self.assertEqual(sorted(opened), list(range(1, 8)))

    def test_badArguments(self) -> None:
        rfcMailbox(self.inbox)
        self.session.select()
        for line in [
            b"a THREAD",
            b"a THREAD REFERENCES",
            b"a THREAD REFERENCES UTF-8",
            b"a THREAD FROB UTF-8 ALL",
            b"a THREAD (REFERENCES) UTF-8 ALL",
            b"a THREAD REFERENCES UTF-8 FROB",
            b"a UID THREAD REFERENCES UTF-8 UID x",
        ]:
            self.assertTrue(self.send(line).startswith(b"a BAD "), line)
        self.assertEqual(
            self.send(b"b THREAD REFERENCES KOI8-R ALL"),
            b"b NO [BADCHARSET (US-ASCII UTF-8)] Unsupported charset\r\n",
        )


class ThreadNetworkTests(TestCase):
    timeout = 20

    def setUp(self) -> None:
        self.fixture = makeRealm(Path(self.mktemp()))
        rfcMailbox(self.fixture.store(ALICE).getFolder("INBOX"))

    @inlineCallbacks
    def test_clientsThread(self) -> Generator[Deferred[Any], Any, None]:
        port = yield listenIMAP(self, self.fixture)

        def client() -> dict[str, Any]:
            seen: dict[str, Any] = {}
            with IMAPClient("127.0.0.1", port=port, ssl=False, timeout=10) as imap:
                imap.login(ALICE, PASSWORD)
                seen["caps"] = imap.capabilities()
                imap.select_folder("INBOX")
                seen["references"] = imap.thread("REFERENCES")
                seen["subject"] = imap.thread("ORDEREDSUBJECT", ["NOT", "SUBJECT", "other"])
            imap2 = imaplib.IMAP4("127.0.0.1", port, timeout=10)
            try:
                imap2.login(ALICE, PASSWORD)
                imap2.select("INBOX")
                seen["imaplib"] = imap2.thread("REFERENCES", "UTF-8", "ALL")
            finally:
                imap2.logout()
            return seen

        seen = yield inThread(client)
        self.assertIn(b"THREAD=REFERENCES", seen["caps"])
        self.assertIn(b"THREAD=ORDEREDSUBJECT", seen["caps"])
        self.assertEqual(seen["references"], ((1, 2, (3, 4), (5, 6)), (7,)))
        self.assertEqual(seen["subject"], ((1, (2,), (3,), (4,), (5,), (6,)),))
        self.assertEqual(seen["imaplib"], ("OK", [b"(1 2 (3 4)(5 6))(7)"]))
