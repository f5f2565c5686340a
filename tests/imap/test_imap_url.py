"""
IMAP URLs (RFC 5092) naming a message or part: the RFCs' examples, what
is refused, a round trip of every component through percent-encoding, and
linear time on long hostile input.
"""

from __future__ import annotations

import contextlib
import time
from urllib.parse import quote

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tmail.imap.imapurl import IMAPURL, BadURL, Section, parseSection, parseURL


class ExampleTests(SynchronousTestCase):
    def test_rfc4467_rump_and_full_url(self) -> None:
        rump = "imap://joe@example.com/INBOX/;uid=20/;section=1.2;urlauth=submit+fred"
        url = parseURL(rump)
        self.assertEqual(
            (url.user, url.host, url.mailbox, url.uid, url.section, url.access, url.rump),
            ("joe", "example.com", "INBOX", 20, Section((1, 2)), "submit+fred", rump),
        )
        self.assertIsNone(url.token)
        full = parseURL(rump + ":internal:91354a473744909de610943775f92038")
        self.assertEqual(
            (full.rump, full.mechanism, full.token),
            (rump, "internal", "91354a473744909de610943775f92038"),
        )

    def test_rfc4469_relative_urls(self) -> None:
        url = parseURL("/Drafts;UIDVALIDITY=385759045/;UID=20/;section=HEADER", user="me")
        self.assertEqual(
            (url.user, url.host, url.mailbox, url.uidvalidity, url.uid, url.section),
            ("me", None, "Drafts", 385759045, 20, Section((), "HEADER")),
        )
        base = IMAPURL("", None, None, "Sent", 7, 1)
        url = parseURL(";UID=3/;SECTION=2.MIME/;PARTIAL=5.10", base=base)
        self.assertEqual(
            (url.mailbox, url.uidvalidity, url.uid, url.section, url.partial),
            ("Sent", 7, 3, Section((2,), "MIME"), (5, 10)),
        )

    def test_rfc5092_examples_with_escapes_expire_and_port(self) -> None:
        url = parseURL(
            "imap://michael@example.org:143/Archive%20%E2%82%AC/2025;UIDVALIDITY=1/;UID=5"
            "/;PARTIAL=100;EXPIRE=2026-01-02T03:04:05+01:00;URLAUTH=anonymous"
        )
        self.assertEqual(url.mailbox, "Archive \u20ac/2025")
        self.assertEqual(url.host, "example.org:143")
        self.assertEqual(url.partial, (100, None))
        assert url.expire is not None
        self.assertEqual(url.expire.utcoffset().total_seconds(), 3600)  # type: ignore[union-attr]

    def test_header_fields_section(self) -> None:
        self.assertEqual(
            parseSection("1.HEADER.FIELDS (To From)"),
            Section((1,), "HEADER.FIELDS", (b"TO", b"FROM")),
        )

    def test_refused(self) -> None:
        for text in (
            "",
            "imap://host/INBOX",
            "imap://host/INBOX?SUBJECT%20x",
            "imap://host/INBOX/;UID=0",
            "imap://host/INBOX/;UID=abc",
            "imap://host/;UID=3",
            "imap://user@host/INBOX/;UID=3/;SECTION=0",
            "imap://user@host/INBOX/;UID=3/;SECTION=MIME",
            "imap://user@host/INBOX/;UID=3/;SECTION=TEXT%20(x)",
            "imap://user@host/INBOX/;UID=3:internal:" + "a" * 32,
            "imap://user@host/INBOX/;UID=3;URLAUTH=someone",
            "imap://user@host/INBOX/;UID=3;URLAUTH=anonymous:internal:abc",
            "imap://user@host/INB%ZZOX/;UID=3",
            "imap://user@host/INB%FFOX/;UID=3",
            "imap://user@host/IN BOX/;UID=3",
            "imap://user@host:99999/INBOX/;UID=3",
            "imap://user@host/INBOX/;UID=3;EXPIRE=2026-13-45T99:99:99Z;URLAUTH=anonymous",
            "http://host/INBOX/;UID=3",
            ";UID=3",
            "INBOX/;UID=3",
            "imap://us\u00e9r@host/INBOX/;UID=3",
        ):
            with self.assertRaises(BadURL, msg=text):
                parseURL(text)


_MAILBOX = st.text(
    st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=30
).filter(lambda name: not name.startswith("/") and not name.endswith("/") and "//" not in name)
_USER = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=30)


class PropertyTests(SynchronousTestCase):
    @settings(max_examples=200, deadline=None)
    @given(
        user=_USER,
        mailbox=_MAILBOX,
        validity=st.one_of(st.none(), st.integers(1, 2**32 - 1)),
        uid=st.integers(1, 2**32 - 1),
        path=st.lists(st.integers(1, 50), max_size=4),
        partial=st.one_of(st.none(), st.tuples(st.integers(0, 10**6), st.integers(1, 10**6))),
        access=st.sampled_from(
            [None, "anonymous", "authuser", "submit+fred", "user+joe%40example.com"]
        ),
    )
    def test_components_round_trip(
        self,
        user: str,
        mailbox: str,
        validity: int | None,
        uid: int,
        path: list[int],
        partial: tuple[int, int] | None,
        access: str | None,
    ) -> None:
        text = f"imap://{quote(user, safe='')}@mail.example.test/{quote(mailbox, safe='/')}"
        if validity is not None:
            text += f";UIDVALIDITY={validity}"
        text += f"/;UID={uid}"
        if path:
            text += "/;SECTION=" + ".".join(map(str, path))
        if partial is not None:
            text += f"/;PARTIAL={partial[0]}.{partial[1]}"
        if access is not None:
            text += f";URLAUTH={access}"
        url = parseURL(text)
        self.assertEqual(
            (url.user, url.mailbox, url.uidvalidity, url.uid, url.partial, url.access),
            (user, mailbox, validity, uid, partial, access),
        )
        self.assertEqual(url.section, Section(tuple(path)) if path else None)
        self.assertEqual(url.rump, text if access is not None else None)

    @settings(max_examples=300, deadline=None)
    @given(st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=200))
    def test_any_text_parses_or_is_badurl(self, text: str) -> None:
        for candidate in (text, "imap://u@h/" + text, "/INBOX" + text):
            with contextlib.suppress(BadURL):
                parseURL(candidate)

    def test_long_hostile_urls_take_linear_time(self) -> None:
        for text in (
            "imap://u@h/" + "a/" * 4000 + ";UID=x",
            "imap://u@h/INBOX/;UID=1/;SECTION=" + "1." * 4000 + "X",
            "imap://u@h/INBOX/;UID=1;URLAUTH=anonymous:internal:" + "a" * 8000 + "g",
            "imap://" + "a@" * 4000,
            "/" + ";" * 8000,
        ):
            started = time.monotonic()
            with self.assertRaises(BadURL):
                parseURL(text)
            self.assertLess(time.monotonic() - started, 1.0, text[:40])
