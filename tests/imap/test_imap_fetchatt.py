"""
FETCH data items (RFC 3501 6.4.5): tmail's own parser reads every form of
the grammar into typed items, refuses what is not in it with BAD, and
a real client's FETCH of each form is answered.
"""

from __future__ import annotations

import imaplib
from collections.abc import Generator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_imap_network import MESSAGE, IMAPNetworkTests, deliver
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.mail import imap4

from support.net import inThread
from support.realm import ALICE, PASSWORD
from tmail.imap.fetchatt import BodyItem, HeaderSection, SimpleItem, parseFetchAtts


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"FLAGS", [SimpleItem("flags")]),
        (b"(uid rfc822.size)", [SimpleItem("uid"), SimpleItem("rfc822size")]),
        (
            b"(RFC822 RFC822.HEADER RFC822.TEXT)",
            [SimpleItem(t) for t in ("rfc822", "rfc822header", "rfc822text")],
        ),
        (b"ALL", [SimpleItem(t) for t in ("flags", "internaldate", "rfc822size", "envelope")]),
        (b"fast", [SimpleItem(t) for t in ("flags", "internaldate", "rfc822size")]),
        (
            b"FULL",
            [
                *(SimpleItem(t) for t in ("flags", "internaldate", "rfc822size", "envelope")),
                BodyItem(),
            ],
        ),
        (b"(BODY BODYSTRUCTURE)", [BodyItem(), SimpleItem("bodystructure")]),
        (b"BODY[]", [BodyItem(empty=True)]),
        (
            b"BODY.PEEK[]<0.100>",
            [BodyItem(peek=True, empty=True, partialBegin=0, partialLength=100)],
        ),
        (b"BODY[1.2]", [BodyItem(empty=True, part=(0, 1))]),
        (b"BODY[HEADER]", [BodyItem(header=HeaderSection(negate=True))]),
        (b"BODY[2.TEXT]", [BodyItem(text=True, part=(1,))]),
        (b"BODY[3.MIME]<5.6>", [BodyItem(mime=True, part=(2,), partialBegin=5, partialLength=6)]),
        (
            b'BODY.PEEK[HEADER.FIELDS (Subject "From" "x\\"y")]',
            [BodyItem(peek=True, header=HeaderSection((b"SUBJECT", b"FROM", b'X"Y')))],
        ),
        (
            b"(FLAGS BODY[1.HEADER.FIELDS.NOT (DATE  TO)])",
            [
                SimpleItem("flags"),
                BodyItem(part=(0,), header=HeaderSection((b"DATE", b"TO"), negate=True)),
            ],
        ),
    ],
)
def test_every_form_of_the_grammar_is_read(line: bytes, expected: list[Any]) -> None:
    assert parseFetchAtts(line) == expected


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"()",
        b"ENVELOPEX",
        b"(FLAGS",
        b"(ALL)",
        b"BODY.PEEK",
        b"BODY[0]",
        b"BODY[1.]",
        b"BODY[MIME]",
        b"BODY[HEADER.FIELDS ()]",
        b"BODY[HEADER.FIELDS SUBJECT]",
        b"BODY[TEXT",
        b"BODY[]<5>",
        b"BODY[]<5.0>",
        b"BODY[]<-1.5>",
        b"BODY[1.2.3.4.5.6.7.8.9.10]x",
        b"(FLAGS) UID",
        b"FLAGS]",
        b'BODY[HEADER.FIELDS ("SUBJECT)]',
    ],
)
def test_what_is_not_in_the_grammar_is_refused(line: bytes) -> None:
    with pytest.raises(imap4.IllegalClientResponse):
        parseFetchAtts(line)


SECTIONS = st.one_of(
    st.just(""),
    st.sampled_from(["HEADER", "TEXT"]),
    st.lists(st.from_regex(r"\A[A-Za-z][A-Za-z0-9-]{0,10}\Z"), min_size=1, max_size=4).map(
        lambda names: f"HEADER.FIELDS ({' '.join(names)})"
    ),
)


@given(
    peek=st.booleans(),
    part=st.lists(st.integers(1, 99), max_size=4),
    section=SECTIONS,
    partial=st.none() | st.tuples(st.integers(0, 10**9), st.integers(1, 10**9)),
)
def test_a_body_item_reads_back_as_written(
    peek: bool, part: list[int], section: str, partial: tuple[int, int] | None
) -> None:
    inner = ".".join(map(str, part)) + ("." if part and section else "") + section
    text = f"BODY{'.PEEK' if peek else ''}[{inner}]"
    if partial is not None:
        text += f"<{partial[0]}.{partial[1]}>"
    (item,) = parseFetchAtts(text.encode())
    assert isinstance(item, BodyItem)
    assert (item.peek, item.part) == (peek, tuple(p - 1 for p in part))
    assert (item.partialBegin, item.partialLength) == (partial or (None, None))
    assert item.text == (section == "TEXT")
    assert item.empty == (section == "")
    if section.startswith("HEADER.FIELDS"):
        names = section[section.index("(") + 1 : -1].upper().encode().split()
        assert item.header == HeaderSection(tuple(names))


class FetchItemNetworkTests(IMAPNetworkTests):
    """What imaplib sends for each form gets the answer Dovecot would give."""

    @inlineCallbacks
    def test_imaplib_fetches_header_fields_named_by_quoted_strings(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        deliver(self.inbox, MESSAGE)
        port = yield self.listen()

        def client() -> tuple[Any, Any, Any]:
            imap = self.imap(port)
            imap.login(ALICE, PASSWORD)
            imap.select("INBOX")
            quoted = imap.fetch("1", '(BODY.PEEK[HEADER.FIELDS ("Subject" FROM)])')
            try:
                imap.fetch("1", "(BODY.PEEK[0])")
            except imaplib.IMAP4.error as e:
                refused = str(e)
            else:
                refused = None
            _, flags = imap.fetch("1", "(FLAGS)")
            return quoted, refused, flags

        quoted, refused, flags = yield inThread(client)
        status, data = quoted
        self.assertEqual(status, "OK")
        self.assertEqual(data[0][1], b"From: Bob <bob@example.test>\r\nSubject: Greetings\r\n\r\n")
        self.assertIn("Invalid FETCH item", refused)
        self.assertNotIn(b"\\Seen", flags[0])


del IMAPNetworkTests
