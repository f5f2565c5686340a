"""
LIST and LSUB patterns that are not valid modified UTF-7 (RFC 3501 6.3.8:
a pattern may hold any printable character): they are patterns still, and
match the names they spell (often none), never C{NO [CANNOT]}.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from test_imap_protocol import Session
from twisted.trial.unittest import SynchronousTestCase

from tmail.imap import mutf7


class InvalidModifiedUTF7PatternTests(SynchronousTestCase):
    def session(self, *folders: str) -> Session:
        session = Session(self)
        for name in folders:
            session.store.createFolder(name)
            session.store.subscribe(name)
        session.loginDirectly()
        return session

    def test_list_pattern_with_lone_ampersand_matches_nothing(self) -> None:
        session = self.session("Drafts")
        self.assertEqual(session.send(b'a LIST "" &\r\n'), b"a OK LIST completed\r\n")
        self.assertEqual(session.send(b'b LIST "" &Jjo\r\n'), b"b OK LIST completed\r\n")
        self.assertEqual(session.send(b'c LIST "" "&AC4ALgAv-"\r\n'), b"c OK LIST completed\r\n")

    def test_list_pattern_with_ampersand_matches_names_holding_it(self) -> None:
        session = self.session("R&D", "R&D/2025", "Plain", "\u263a")
        self.assertEqual(
            session.send(b'a LIST "" *&*\r\n'),
            b'* LIST (\\HasChildren) "/" "R&-D"\r\n'
            b'* LIST (\\HasNoChildren) "/" "R&-D/2025"\r\n'
            b"a OK LIST completed\r\n",
        )
        self.assertEqual(
            session.send(b'b LIST "" R&D/%\r\n'),
            b'* LIST (\\HasNoChildren) "/" "R&-D/2025"\r\nb OK LIST completed\r\n',
        )
        self.assertEqual(
            session.send(b'c LIST "" (R&D &Jjo- &Jjo)\r\n'),
            b'* LIST (\\HasChildren) "/" "R&-D"\r\n'
            b'* LIST (\\HasNoChildren) "/" "&Jjo-"\r\n'
            b"c OK LIST completed\r\n",
        )

    def test_list_reference_that_is_not_modified_utf7_is_still_a_reference(self) -> None:
        session = self.session("R&D/2025")
        self.assertEqual(
            session.send(b"a LIST R&D/ %\r\n"),
            b'* LIST (\\HasNoChildren) "/" "R&-D/2025"\r\na OK LIST completed\r\n',
        )

    def test_lsub_pattern_that_is_not_modified_utf7_is_still_a_pattern(self) -> None:
        session = self.session("R&D", "Plain")
        self.assertEqual(session.send(b'a LSUB "" &\r\n'), b"a OK LSUB completed\r\n")
        self.assertEqual(
            session.send(b'b LSUB "" R&D\r\n'),
            b'* LSUB () "/" "R&-D"\r\nb OK LSUB completed\r\n',
        )

    def test_utf8_list_pattern_that_is_not_utf8_matches_nothing(self) -> None:
        session = self.session("Entw\u00fcrfe")
        session.send(b"e ENABLE UTF8=ACCEPT\r\n")
        self.assertEqual(session.send(b'a LIST "" "Entw\xfc*"\r\n'), b"a OK LIST completed\r\n")
        self.assertEqual(
            session.send(b'b LIST "" "Entw\xc3\xbc*"\r\n'),
            b'* LIST (\\HasNoChildren) "/" "Entw\xc3\xbcrfe"\r\nb OK LIST completed\r\n',
        )

    @given(st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E)))
    def test_any_printable_pattern_decodes(self, pattern: str) -> None:
        mutf7.decodePattern(pattern.encode("ascii"))

    @given(st.text(st.characters(blacklist_categories=("Cc", "Cs"))))
    def test_a_valid_name_decodes_as_a_pattern_to_itself(self, name: str) -> None:
        self.assertEqual(mutf7.decodePattern(mutf7.encodeName(name)), name)
