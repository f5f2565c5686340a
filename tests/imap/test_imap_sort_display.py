"""
SORT=DISPLAY (RFC 5957): DISPLAYFROM and DISPLAYTO sort by what a reader
sees of the first address, as transcripts over C{StringTransport} and with
C{imaplib} over loopback.
"""

from __future__ import annotations

import imaplib
from collections.abc import Generator
from pathlib import Path
from typing import Any

from test_imap_protocol import Session
from test_imap_sort import put
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase, TestCase

from support.imaploop import listenIMAP
from support.net import inThread
from support.realm import ALICE, PASSWORD, makeRealm
from tmail.imap.sortdisplay import displayValue
from tmail.interfaces import IMailFolder

#: The From and To fields of the messages, UIDs 1 to 6.
HEADERS = [
    b'From: "Zed" <alice@x.example>\r\nTo: zoe@x.example\r\n',
    b'From: alice <zz@x.example>\r\nTo: "Abe" <zz@x.example>\r\n',
    b"From: <bob@x.example>\r\nTo: undisclosed-recipients:;\r\n",
    b"From: =?utf-8?q?=C3=89mile?= <a@x.example>\r\nTo: team: Carl <c@x.example>;\r\n",
    b"Subject: no sender\r\n",
    b'From: "" <carol@x.example>\r\nTo: bea\r\n',
]


def displayMailbox(folder: IMailFolder) -> None:
    for header in HEADERS:
        put(folder, header)


class DisplayValueTests(SynchronousTestCase):
    """RFC 5957 3: the DISPLAY sort value of an address."""

    def test_display_name_then_mailbox_at_host_then_mailbox(self) -> None:
        cases = [
            (b'"Zed" <alice@x>', b"ZED"),
            (b"=?utf-8?q?=C3=A9mile?= <e@x>", "éMILE".encode()),
            (b"<bob@x.example>", b"BOB@X.EXAMPLE"),
            (b'"" <carol@x>', b"CAROL@X"),
            (b"localonly", b"LOCALONLY"),
            (b"undisclosed-recipients:;", b"UNDISCLOSED-RECIPIENTS"),
            (b"team: Carl <c@x>, d@x;", b"TEAM"),
            (b'"My (team)": Carl <c@x>;', b"MY (TEAM)"),
            (b"(note) crew : a@b;", b"CREW"),
            (b'"Carl: the man" <c@x>', b"CARL: THE MAN"),
            (b"team:;, Dora <d@x>", b"TEAM"),
            (b"", b""),
            (None, b""),
        ]
        for value, wanted in cases:
            self.assertEqual(displayValue(value), wanted, value)

    def test_comment_names_only_a_bare_address(self) -> None:
        """
        A comment inside an address is no display name (as ENVELOPE reads
        it); one after a bare addr-spec is, by the old C{user@host (Name)}
        convention.
        """
        cases = [
            (b"<ann (work)@ (main) x.example>", b"ANN@X.EXAMPLE"),
            (b"ann@x.example (Ann Lee)", b"ANN LEE"),
            (b"<ann@x.example> (Ann Lee)", b"ANN@X.EXAMPLE"),
            (b"Ann (the boss) <ann@x.example>", b"ANN"),
        ]
        for value, wanted in cases:
            self.assertEqual(displayValue(value), wanted, value)


class SortDisplayTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.session = Session(self)
        displayMailbox(self.session.store.getFolder("INBOX"))
        self.session.select()

    def send(self, line: bytes) -> bytes:
        return self.session.send(line + b"\r\n")

    def test_displayfrom_sorts_by_the_name_shown(self) -> None:
        """'' (no From) < ALICE < BOB@X.EXAMPLE < CAROL@X.EXAMPLE < ZED < ÉMILE (octets)."""
        self.assertEqual(
            self.send(b"a SORT (DISPLAYFROM) UTF-8 ALL"),
            b"* SORT 5 2 3 6 1 4\r\na OK SORT completed\r\n",
        )
        self.assertEqual(
            self.send(b"b SORT (FROM) UTF-8 ALL"), b"* SORT 5 4 1 3 6 2\r\nb OK SORT completed\r\n"
        )
        self.assertEqual(
            self.send(b"c UID SORT (REVERSE DISPLAYFROM) UTF-8 NOT UID 5"),
            b"* SORT 4 1 6 3 2\r\nc OK SORT completed\r\n",
        )

    def test_displayto_sorts_by_the_name_shown(self) -> None:
        """'' < ABE < BEA < TEAM < UNDISCLOSED-RECIPIENTS < ZOE@X.EXAMPLE: groups by name."""
        self.assertEqual(
            self.send(b"a SORT (DISPLAYTO) UTF-8 ALL"),
            b"* SORT 5 2 6 4 3 1\r\na OK SORT completed\r\n",
        )

    def test_comment_inside_an_address_does_not_sort_as_its_name(self) -> None:
        """C{<zed (note)@x.example>} sorts as ZED@X.EXAMPLE, not as NOTE."""
        put(self.session.store.getFolder("INBOX"), b"From: <zed (note)@ (hub) x.example>\r\n")
        self.send(b"n NOOP")
        self.assertEqual(
            self.send(b"a SORT (DISPLAYFROM) UTF-8 ALL"),
            b"* SORT 5 2 3 6 1 7 4\r\na OK SORT completed\r\n",
        )

    def test_display_keys_with_esort(self) -> None:
        self.assertEqual(
            self.send(b"a UID SORT RETURN (MIN MAX) (DISPLAYFROM) UTF-8 ALL"),
            b'* ESEARCH (TAG "a") UID MIN 5 MAX 4\r\na OK SORT completed\r\n',
        )

    def test_capability(self) -> None:
        caps = self.send(b"c CAPABILITY").split(b"\r\n")[0].split(b" ")
        self.assertIn(b"SORT=DISPLAY", caps)
        self.assertIn(b"SORT", caps)


class SortDisplayNetworkTests(TestCase):
    timeout = 20

    def setUp(self) -> None:
        self.fixture = makeRealm(Path(self.mktemp()))
        displayMailbox(self.fixture.store(ALICE).getFolder("INBOX"))

    @inlineCallbacks
    def test_imaplib_sorts_by_display_name(self) -> Generator[Deferred[Any], Any, None]:
        port = yield listenIMAP(self, self.fixture)

        def client() -> dict[str, Any]:
            seen: dict[str, Any] = {}
            imap = imaplib.IMAP4("127.0.0.1", port, timeout=10)
            try:
                imap.login(ALICE, PASSWORD)
                seen["caps"] = imap.capabilities
                imap.select("INBOX")
                seen["from"] = imap.sort("(DISPLAYFROM)", "UTF-8", "ALL")
                seen["to"] = imap.uid("SORT", "(REVERSE DISPLAYTO)", "UTF-8", "ALL")
            finally:
                imap.logout()
            return seen

        seen = yield inThread(client)
        self.assertIn("SORT=DISPLAY", seen["caps"])
        self.assertEqual(seen["from"], ("OK", [b"5 2 3 6 1 4"]))
        self.assertEqual(seen["to"], ("OK", [b"1 3 4 6 2 5"]))
