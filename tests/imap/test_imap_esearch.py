"""
Extended SEARCH: ESEARCH's RETURN options (RFC 4731), the saved result C{$}
(SEARCHRES, RFC 5182), OLDER/YOUNGER (WITHIN, RFC 5032) and SEARCH's
CHARSET, as transcripts over C{StringTransport} and with C{imaplib} and
C{imapclient} over loopback.
"""

from __future__ import annotations

import imaplib
import itertools
import re
import time
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
from support.net import inThread
from support.realm import ALICE, PASSWORD, makeRealm
from tmail.imap.responses import uidSet
from tmail.interfaces import IMailFolder


def put(
    folder: IMailFolder,
    sender: str = "jones@example.test",
    subject: str = "note",
    flags: tuple[str, ...] = (),
    date: float | None = None,
) -> int:
    """Store a small message; return its UID."""
    pending = folder.beginMessage(flags, date)
    pending.write(b"From: %s\r\nSubject: %s\r\n\r\nbody\r\n" % (sender.encode(), subject.encode()))
    return pending.commit()


def rfcMailbox(folder: IMailFolder) -> None:
    """
    Eleven messages; \\Flagged ones are 1 (from Smith), 2, 10 and 11, so
    C{FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith"} finds 2, 10 and 11 as in
    the examples of RFC 4731 and RFC 5182.
    """
    for seq in range(1, 12):
        flagged = ("\\Flagged",) if seq in (1, 2, 10, 11) else ()
        put(folder, "smith@example.test" if seq == 1 else "jones@example.test", flags=flagged)


class ESearchTests(SynchronousTestCase):
    """RFC 4731: SEARCH RETURN (...) answers with one ESEARCH response."""

    def setUp(self) -> None:
        self.session = Session(self)
        rfcMailbox(self.session.store.getFolder("INBOX"))
        self.session.select()

    def send(self, line: bytes) -> bytes:
        return self.session.send(line + b"\r\n")

    def test_rfcExamples(self) -> None:
        """RFC 4731 3.1: MIN and COUNT; an empty RETURN list means ALL, as a sequence set."""
        self.assertEqual(
            self.send(b'A282 SEARCH RETURN (MIN COUNT) FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith"'),
            b'* ESEARCH (TAG "A282") MIN 2 COUNT 3\r\nA282 OK SEARCH completed\r\n',
        )
        self.assertEqual(
            self.send(b'A283 SEARCH RETURN () FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith"'),
            b'* ESEARCH (TAG "A283") ALL 2,10:11\r\nA283 OK SEARCH completed\r\n',
        )

    def test_uidSearchSaysUID(self) -> None:
        self.assertEqual(
            self.send(b"A285 UID SEARCH RETURN (MIN MAX) 1:5000"),
            b'* ESEARCH (TAG "A285") UID MIN 1 MAX 11\r\nA285 OK SEARCH completed\r\n',
        )

    def test_allOptionsInOneResponse(self) -> None:
        self.assertEqual(
            self.send(b"t1 SEARCH RETURN (count all max min) FLAGGED"),
            b'* ESEARCH (TAG "t1") MIN 1 MAX 11 ALL 1:2,10:11 COUNT 4\r\n'
            b"t1 OK SEARCH completed\r\n",
        )

    def test_noMatchGivesOnlyCount(self) -> None:
        """RFC 4731 3.1: MIN, MAX and ALL are left out when nothing matches."""
        self.assertEqual(
            self.send(b"t1 SEARCH RETURN (MIN MAX ALL COUNT) DELETED"),
            b'* ESEARCH (TAG "t1") COUNT 0\r\nt1 OK SEARCH completed\r\n',
        )
        self.assertEqual(
            self.send(b"t2 SEARCH RETURN (MIN) DELETED"),
            b'* ESEARCH (TAG "t2")\r\nt2 OK SEARCH completed\r\n',
        )

    def test_returnWithCharset(self) -> None:
        self.assertEqual(
            self.send(b"t1 SEARCH RETURN (COUNT) CHARSET UTF-8 FLAGGED"),
            b'* ESEARCH (TAG "t1") COUNT 4\r\nt1 OK SEARCH completed\r\n',
        )

    def test_plainSearchIsUnchanged(self) -> None:
        self.assertEqual(
            self.send(b"t1 SEARCH FLAGGED"), b"* SEARCH 1 2 10 11\r\nt1 OK SEARCH completed\r\n"
        )

    def test_badReturnOptionsAreBAD(self) -> None:
        for line in [
            b"t SEARCH RETURN (FROB) ALL",
            b"t SEARCH RETURN ALL",
            b"t SEARCH RETURN",
            b"t SEARCH RETURN (MIN)",
            b"t SEARCH RETURN ((MIN)) ALL",
        ]:
            self.assertTrue(self.send(line).startswith(b"t BAD "), line)


class SearchResTests(SynchronousTestCase):
    """RFC 5182: RETURN (SAVE) keeps the result for C{$}."""

    def setUp(self) -> None:
        self.session = Session(self)
        self.inbox = self.session.store.getFolder("INBOX")
        rfcMailbox(self.inbox)
        self.session.select()

    def send(self, line: bytes) -> bytes:
        return self.session.send(line + b"\r\n")

    def fetchUIDs(self, command: bytes = b"f FETCH $ (UID)") -> bytes:
        return self.send(command)

    def test_saveThenFetch(self) -> None:
        """RFC 5182 2.1's example: SAVE alone sends no ESEARCH; FETCH $ gets the saved messages."""
        self.assertEqual(
            self.send(b'A282 SEARCH RETURN (SAVE) FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith"'),
            b"A282 OK SEARCH completed\r\n",
        )
        self.assertEqual(
            self.send(b"A283 FETCH $ (UID FLAGS)"),
            b"* 2 FETCH (UID 2 FLAGS (\\Flagged \\Recent))\r\n"
            b"* 10 FETCH (UID 10 FLAGS (\\Flagged \\Recent))\r\n"
            b"* 11 FETCH (UID 11 FLAGS (\\Flagged \\Recent))\r\n"
            b"A283 OK FETCH completed\r\n",
        )

    def test_savedResultWorksWithUIDCommandsAndPipelining(self) -> None:
        """RFC 5182 2.2: a pipelined UID STORE/COPY/FETCH $ uses the SEARCH before it."""
        self.session.server.account.create("Other")  # type: ignore[union-attr]
        reply = self.send(
            b"A301 UID SEARCH RETURN (SAVE) FLAGGED NOT FROM Smith UID 1:10\r\n"
            b"A302 UID STORE $ +FLAGS.SILENT (\\Deleted)\r\n"
            b"A303 UID COPY $ Other\r\n"
            b"A304 UID FETCH $ (FLAGS)"
        )
        validity = self.session.store.getFolder("Other").uidValidity()
        self.assertEqual(
            reply,
            b"A301 OK SEARCH completed\r\n"
            b"A302 OK STORE completed\r\n"
            b"A303 OK [COPYUID %d 2,10 1:2] COPY completed\r\n"
            b"* 2 FETCH (UID 2 FLAGS (\\Deleted \\Flagged \\Recent))\r\n"
            b"* 10 FETCH (UID 10 FLAGS (\\Deleted \\Flagged \\Recent))\r\n"
            b"A304 OK FETCH completed\r\n" % validity,
        )

    def test_searchUsesDollar(self) -> None:
        """C{$} as a search key (sequence set or UID set), with a new SAVE using the old value."""
        self.send(b"a SEARCH RETURN (SAVE) FLAGGED")
        self.assertEqual(
            self.send(b"b SEARCH $ NOT 1"), b"* SEARCH 2 10 11\r\nb OK SEARCH completed\r\n"
        )
        self.assertEqual(
            self.send(b"c UID SEARCH UID $"), b"* SEARCH 1 2 10 11\r\nc OK SEARCH completed\r\n"
        )
        self.send(b"d SEARCH RETURN (SAVE) $ 10:*")
        self.assertEqual(
            self.send(b"e SEARCH RETURN (ALL) $"),
            b'* ESEARCH (TAG "e") ALL 10:11\r\ne OK SEARCH completed\r\n',
        )

    def test_saveWithMinMaxKeepsOnlyThose(self) -> None:
        """RFC 5182 2.4: SAVE with MIN and/or MAX (and no ALL or COUNT) keeps only those."""
        self.assertEqual(
            self.send(b"a SEARCH RETURN (SAVE MIN) FLAGGED"),
            b'* ESEARCH (TAG "a") MIN 1\r\na OK SEARCH completed\r\n',
        )
        self.assertEqual(self.send(b"b SEARCH $"), b"* SEARCH 1\r\nb OK SEARCH completed\r\n")
        self.send(b"c SEARCH RETURN (MAX SAVE MIN) FLAGGED")
        self.assertEqual(self.send(b"d SEARCH $"), b"* SEARCH 1 11\r\nd OK SEARCH completed\r\n")
        self.send(b"e SEARCH RETURN (SAVE MIN COUNT) FLAGGED")
        self.assertEqual(
            self.send(b"f SEARCH $"), b"* SEARCH 1 2 10 11\r\nf OK SEARCH completed\r\n"
        )

    def test_nothingSavedIsTheEmptySet(self) -> None:
        self.assertEqual(self.send(b"a FETCH $ (UID)"), b"a OK FETCH completed\r\n")
        self.assertEqual(self.send(b"b SEARCH $"), b"* SEARCH\r\nb OK SEARCH completed\r\n")
        self.assertEqual(self.send(b"c UID STORE $ +FLAGS (x)"), b"c OK STORE completed\r\n")

    def test_failedSaveEmptiesTheResult(self) -> None:
        """RFC 5182 2.1: a SEARCH with SAVE that fails, however it fails, leaves C{$} empty."""
        for failing in [
            b"x SEARCH RETURN (SAVE) FROB",
            b"x SEARCH RETURN (SAVE) CHARSET KOI8-R ALL",
            b"x SEARCH RETURN (SAVE) (ALL",
            b"x UID SEARCH RETURN (SAVE MIN) UID x",
        ]:
            self.send(b"a SEARCH RETURN (SAVE) FLAGGED")
            self.assertTrue(self.send(failing).startswith((b"x BAD", b"x NO")), failing)
            self.assertEqual(self.send(b"b SEARCH $"), b"* SEARCH\r\nb OK SEARCH completed\r\n")

    def test_failedSearchWithoutSaveKeepsTheResult(self) -> None:
        self.send(b"a SEARCH RETURN (SAVE) FLAGGED")
        self.assertTrue(self.send(b"x SEARCH RETURN (MIN) FROB").startswith(b"x BAD"))
        self.assertEqual(
            self.send(b"b SEARCH $"), b"* SEARCH 1 2 10 11\r\nb OK SEARCH completed\r\n"
        )

    def test_selectExamineCloseUnselectReset(self) -> None:
        for reset in [b"r SELECT INBOX", b"r EXAMINE INBOX", b"r CLOSE", b"r UNSELECT"]:
            self.send(b"s SELECT INBOX")
            self.send(b"a SEARCH RETURN (SAVE) FLAGGED")
            self.send(reset)
            self.send(b"s SELECT INBOX")
            self.assertEqual(
                self.send(b"b SEARCH $"), b"* SEARCH\r\nb OK SEARCH completed\r\n", reset
            )

    def test_expungedMessagesLeaveTheResult(self) -> None:
        """Saved as UIDs: after an EXPUNGE, C{$} names the survivors by their new numbers."""
        self.send(b"a SEARCH RETURN (SAVE) 2:4")
        self.send(b"b STORE 2 +FLAGS.SILENT (\\Deleted)")
        self.assertEqual(self.send(b"c EXPUNGE"), b"* 2 EXPUNGE\r\nc OK EXPUNGE completed\r\n")
        self.assertEqual(
            self.send(b"d FETCH $ (UID)"),
            b"* 2 FETCH (UID 3)\r\n* 3 FETCH (UID 4)\r\nd OK FETCH completed\r\n",
        )
        self.assertEqual(self.send(b"e UID EXPUNGE $"), b"e OK UID EXPUNGE completed\r\n")

    def test_dollarIsAWholeSequenceSet(self) -> None:
        """RFC 5182 3: C{$} stands alone; C{1,$} and C{$:3} are BAD."""
        for line in [
            b"a FETCH 1,$ (UID)",
            b"a FETCH $:3 (UID)",
            b"a SEARCH 1,$",
            b"a FETCH $$ UID",
        ]:
            self.assertTrue(self.send(line).startswith(b"a BAD "), line)


class WithinTests(SynchronousTestCase):
    """RFC 5032: OLDER and YOUNGER count seconds back from now, by INTERNALDATE."""

    def setUp(self) -> None:
        self.session = Session(self)
        inbox = self.session.store.getFolder("INBOX")
        now = time.time()
        for age in (7 * 86400, 3600, 60):
            put(inbox, date=now - age)
        self.session.select()

    def send(self, line: bytes) -> bytes:
        return self.session.send(line + b"\r\n")

    def test_olderAndYounger(self) -> None:
        self.assertEqual(
            self.send(b"a SEARCH YOUNGER 259200"), b"* SEARCH 2 3\r\na OK SEARCH completed\r\n"
        )
        self.assertEqual(
            self.send(b"b SEARCH OLDER 600"), b"* SEARCH 1 2\r\nb OK SEARCH completed\r\n"
        )
        self.assertEqual(
            self.send(b"c SEARCH OLDER 600 YOUNGER 7200"),
            b"* SEARCH 2\r\nc OK SEARCH completed\r\n",
        )
        self.assertEqual(
            self.send(b"d SEARCH NOT YOUNGER 7200"), b"* SEARCH 1\r\nd OK SEARCH completed\r\n"
        )

    def test_intervalMustBeAPositiveNumber(self) -> None:
        for line in [
            b"a SEARCH OLDER 0",
            b"a SEARCH YOUNGER -5",
            b"a SEARCH OLDER",
            b"a SEARCH YOUNGER x",
        ]:
            self.assertTrue(self.send(line).startswith(b"a BAD "), line)


class CharsetTests(SynchronousTestCase):
    """SEARCH's CHARSET: US-ASCII and UTF-8 in any spelling; others are NO [BADCHARSET]."""

    def setUp(self) -> None:
        self.session = Session(self)
        put(self.session.store.getFolder("INBOX"), subject="=?UTF-8?Q?gr=C3=BC=C3=9Fe?=")
        self.session.select()

    def send(self, line: bytes) -> bytes:
        return self.session.send(line + b"\r\n")

    def test_supportedCharsets(self) -> None:
        for line in [
            b"a SEARCH CHARSET US-ASCII ALL",
            b"a SEARCH CHARSET utf-8 ALL",
            b'a SEARCH CHARSET "UTF-8" ALL',
            b"a SEARCH charset us-ascii ALL",
        ]:
            self.assertEqual(self.send(line), b"* SEARCH 1\r\na OK SEARCH completed\r\n", line)

    def test_literalCharsetAndUTF8Criteria(self) -> None:
        self.assertEqual(self.send(b"a SEARCH CHARSET {5}"), b"+ Ready for literal data\r\n")
        self.assertEqual(self.send(b"UTF-8 SUBJECT {6}"), b"+ Ready for literal data\r\n")
        self.assertEqual(self.send("grüß".encode()), b"* SEARCH 1\r\na OK SEARCH completed\r\n")

    def test_otherCharsetsAreBadcharset(self) -> None:
        for line in [
            b"a SEARCH CHARSET ISO-8859-1 ALL",
            b"a SEARCH CHARSET KOI8-R SUBJECT x",
            b"a UID SEARCH RETURN (ALL) CHARSET UTF-7 ALL",
        ]:
            self.assertEqual(
                self.send(line), b"a NO [BADCHARSET (US-ASCII UTF-8)] Unsupported charset\r\n"
            )

    def test_missingCharsetOrKeysIsBAD(self) -> None:
        for line in [
            b"a SEARCH CHARSET",
            b"a SEARCH CHARSET UTF-8",
            b"a SEARCH CHARSET (UTF-8) ALL",
        ]:
            self.assertTrue(self.send(line).startswith(b"a BAD "), line)


class SequenceSetTests(SynchronousTestCase):
    @settings(max_examples=200, deadline=None)
    @given(st.sets(st.integers(min_value=1, max_value=60)))
    def test_allIsACompactSequenceSetOfTheHits(self, hits: set[int]) -> None:
        """ESEARCH ALL names exactly the hits, with no two ranges that could be joined."""
        ordered = sorted(hits)
        encoded = uidSet(ordered).decode()
        named: list[int] = []
        ends: list[tuple[int, int]] = []
        for part in filter(None, encoded.split(",")):
            low, _, high = part.partition(":")
            ends.append((int(low), int(high or low)))
            named.extend(range(int(low), int(high or low) + 1))
        self.assertEqual(named, ordered)
        for (_, high), (low, _) in itertools.pairwise(ends):
            self.assertGreater(low, high + 1)


class ReturnOptionTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.fixture = makeRealm(Path(self.mktemp()))
        rfcMailbox(self.fixture.store(ALICE).getFolder("INBOX"))

    @settings(max_examples=100, deadline=None)
    @given(
        st.lists(
            st.sampled_from(["MIN", "MAX", "ALL", "COUNT", "min", "Max", "all", "count"]),
            max_size=5,
        ),
        st.booleans(),
        st.sampled_from([b"FLAGGED", b"UNFLAGGED", b"DELETED", b"2:4,9"]),
    )
    def test_esearchCarriesExactlyTheAskedItems(
        self, options: list[str], uid: bool, criteria: bytes
    ) -> None:
        """RETURN options in any order and case give those items of the plain SEARCH result."""
        session = Session(self, self.fixture)
        session.select()
        prefix = b"UID " if uid else b""
        plain = session.send(b"p " + prefix + b"SEARCH " + criteria + b"\r\n")
        hits = [int(n) for n in plain.split(b"\r\n")[0].split()[2:]]
        line = b"e %sSEARCH RETURN (%s) %s\r\n" % (prefix, " ".join(options).encode(), criteria)
        reply = session.send(line)
        wanted = {o.upper() for o in options} or {"ALL"}
        expected = [b'* ESEARCH (TAG "e")'] + ([b"UID"] if uid else [])
        if hits and "MIN" in wanted:
            expected.append(b"MIN %d" % min(hits))
        if hits and "MAX" in wanted:
            expected.append(b"MAX %d" % max(hits))
        if hits and "ALL" in wanted:
            expected.append(b"ALL " + uidSet(hits))
        if "COUNT" in wanted:
            expected.append(b"COUNT %d" % len(hits))
        self.assertEqual(reply, b" ".join(expected) + b"\r\ne OK SEARCH completed\r\n")


class ESearchNetworkTests(TestCase):
    """Real clients over loopback."""

    timeout = 20

    def setUp(self) -> None:
        self.fixture = makeRealm(Path(self.mktemp()))
        rfcMailbox(self.fixture.store(ALICE).getFolder("INBOX"))

    @inlineCallbacks
    def test_imaplibSavesAndReuses(self) -> Generator[Deferred[Any], Any, None]:
        """imaplib: ESEARCH data, then UID FETCH and STORE on C{$}."""
        port = yield listenIMAP(self, self.fixture)

        def client() -> dict[str, Any]:
            imap = imaplib.IMAP4("127.0.0.1", port, timeout=10)
            try:
                imap.login(ALICE, PASSWORD)
                imap.select("INBOX")
                seen: dict[str, Any] = {"caps": imap.capabilities}
                imap.uid("SEARCH", "RETURN", "(SAVE ALL)", "FLAGGED", "NOT", "FROM", "smith")
                seen["esearch"] = imap.untagged_responses.pop("ESEARCH")
                seen["fetch"] = imap.uid("FETCH", "$", "(FLAGS)")
                seen["store"] = imap.uid("STORE", "$", "+FLAGS", "(\\Seen)")[0]
                seen["unseen"] = imap.search(None, "UNSEEN")[1][0]
                seen["within"] = imap.search(None, "YOUNGER", "3600")[1][0]
                return seen
            finally:
                imap.logout()

        seen = yield inThread(client)
        for cap in ("ESEARCH", "SEARCHRES", "WITHIN"):
            self.assertIn(cap, seen["caps"])
        self.assertEqual(len(seen["esearch"]), 1)
        self.assertRegex(seen["esearch"][0], rb'^\(TAG "[A-Z0-9]+"\) UID ALL 2,10:11$')
        self.assertEqual(len(seen["fetch"][1]), 3)
        self.assertEqual(seen["store"], "OK")
        self.assertEqual(seen["unseen"], b"1 3 4 5 6 7 8 9")
        self.assertEqual(seen["within"], b"1 2 3 4 5 6 7 8 9 10 11")

    @inlineCallbacks
    def test_imapclientSearchWithinAndCharset(self) -> Generator[Deferred[Any], Any, None]:
        """imapclient: OLDER/YOUNGER criteria, UTF-8 charset, and a refused charset."""
        port = yield listenIMAP(self, self.fixture)

        def client() -> dict[str, Any]:
            with IMAPClient("127.0.0.1", port=port, ssl=False, timeout=10) as imap:
                imap.login(ALICE, PASSWORD)
                imap.select_folder("INBOX")
                seen: dict[str, Any] = {}
                seen["young"] = imap.search(["YOUNGER", 3600, "FLAGGED"], charset="UTF-8")
                seen["old"] = imap.search(["OLDER", 3600])
                try:
                    imap.search(["ALL"], charset="KOI8-R")
                except imaplib.IMAP4.error as e:
                    seen["refused"] = str(e)
                return seen

        seen = yield inThread(client)
        self.assertEqual(list(seen["young"]), [1, 2, 10, 11])
        self.assertEqual(list(seen["old"]), [])
        self.assertIn("BADCHARSET", seen["refused"])


_WORDS = [
    b"RETURN",
    b"(",
    b")",
    b"()",
    b"SAVE",
    b"MIN",
    b"MAX",
    b"ALL",
    b"COUNT",
    b"CHARSET",
    b"UTF-8",
    b"KOI8-R",
    b"$",
    b"1:*",
    b"1,$",
    b"OLDER",
    b"YOUNGER",
    b"0",
    b"5",
    b"NOT",
    b"OR",
    b"SUBJECT",
    b'"x"',
    b"REVERSE",
    b"DATE",
    b"FROM",
    b"REFERENCES",
    b"ORDEREDSUBJECT",
    b"UID",
    b"FLAGS",
    b"\\Seen",
    b"+FLAGS",
    b"\xff",
]
_COMMANDS = [
    b"SEARCH",
    b"UID SEARCH",
    b"SORT",
    b"UID SORT",
    b"THREAD",
    b"UID THREAD",
    b"FETCH",
    b"UID FETCH",
    b"STORE",
    b"COPY INBOX",
    b"UID EXPUNGE",
]
_TAGGED = re.compile(rb"^g (OK|NO|BAD) ")


class ExtendedSearchGarbageTests(SynchronousTestCase):
    """Random arguments to the search family get a tagged OK/NO/BAD, never an internal error."""

    def setUp(self) -> None:
        self.fixture = makeRealm(Path(self.mktemp()))
        rfcMailbox(self.fixture.store(ALICE).getFolder("INBOX"))

    @settings(max_examples=200, deadline=None)
    @given(st.sampled_from(_COMMANDS), st.lists(st.sampled_from(_WORDS), max_size=8))
    def test_randomArguments(self, command: bytes, words: list[bytes]) -> None:
        session = Session(self, self.fixture)
        session.select()
        reply = session.send(b"g " + command + b" " + b" ".join(words) + b"\r\n")
        last = reply.rstrip(b"\r\n").split(b"\r\n")[-1]
        self.assertRegex(last, _TAGGED)
        self.assertNotIn(b"SERVERBUG", last)
        self.assertTrue(session.send(b"z NOOP\r\n").endswith(b"z OK NOOP completed\r\n"))
