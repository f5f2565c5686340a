"""
SEARCH FROM, TO, CC and BCC (RFC 3501 6.4.4, RFC 9051 6.4.4) match a
substring of an address (local part, domain, the whole addr-spec) or of
its RFC 2047-decoded display name, in every form a header may hold them:
bare addr-spec, angle address, quoted names with escapes, comments, groups,
encoded words, folded lines, obsolete syntax, several addresses.
"""

from __future__ import annotations

import time

from test_imap_protocol import Session, deliver
from twisted.trial.unittest import SynchronousTestCase

from support.mimecorpus import ADDRESS_MESSAGES as MESSAGES
from tmail.imap.addressfields import searchText


class SearchAddressTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.session = Session(self)
        inbox = self.session.store.getFolder("INBOX")
        for raw in MESSAGES:
            deliver(inbox, raw)
        self.session.select()

    def search(self, criteria: str) -> list[int]:
        answer = self.session.send(b"a SEARCH CHARSET UTF-8 " + criteria.encode() + b"\r\n")
        lines = answer.split(b"\r\n")
        self.assertEqual(lines[-2], b"a OK SEARCH completed", answer)
        return [int(n) for n in lines[0].split()[2:]]

    def test_local_part_domain_and_whole_address(self) -> None:
        self.assertEqual(self.search("FROM alice"), [1])
        self.assertEqual(self.search("TO example.org"), [1])
        self.assertEqual(self.search("FROM ALICE@EXAMPLE.TEST"), [1])
        self.assertEqual(self.search('FROM "Alice Example <alice@"'), [1])

    def test_quoted_names_match_without_their_quoting(self) -> None:
        self.assertEqual(self.search('FROM "Smith, \\"Bobby\\" Bob"'), [2])
        self.assertEqual(self.search("FROM bob@x.test"), [2])

    def test_comments_are_not_part_of_the_address(self) -> None:
        self.assertEqual(self.search("TO pete@silly.test"), [3])
        self.assertEqual(self.search('TO "Pete <pete@silly"'), [3])
        # The field as written still matches too.
        self.assertEqual(self.search('TO "his account"'), [3])

    def test_group_members_and_group_names(self) -> None:
        self.assertEqual(self.search("CC friends"), [4])
        self.assertEqual(self.search("CC dave@y.test"), [4])
        self.assertEqual(self.search("CC erin"), [4])
        self.assertEqual(self.search("CC Dave"), [4])

    def test_encoded_names_match_decoded(self) -> None:
        self.assertEqual(self.search('FROM "Jürgen Müller"'), [5])
        self.assertEqual(self.search('TO "André"'), [5])
        self.assertEqual(self.search('TO "Fränk <frank@"'), [5])

    def test_folded_names_match_with_one_space(self) -> None:
        self.assertEqual(self.search('TO "Mary Smith"'), [6])

    def test_obsolete_syntax_and_quoted_local_parts(self) -> None:
        self.assertEqual(self.search("FROM john.q.public@example.test"), [7])
        self.assertEqual(self.search('BCC "local part@x.test"'), [7])

    def test_names_in_comments(self) -> None:
        self.assertEqual(self.search('FROM "Sam Jones"'), [8])

    def test_no_false_matches(self) -> None:
        self.assertEqual(self.search("FROM missing_domain"), [])
        self.assertEqual(self.search("BCC x.test"), [7])
        self.assertEqual(self.search("NOT TO x.test"), [1, 3, 4, 7])


class SearchTextTests(SynchronousTestCase):
    def test_written_out_forms(self) -> None:
        self.assertEqual(
            searchText('g: "A \\"b\\"" <a@x>, c@y (C);, <@r:d@z>, e . f @ w'),
            'g: A "b" <a@x>, C <c@y>, ; <@r:d@z>, e.f@w, ',
        )

    def test_hostile_fields_take_linear_time(self) -> None:
        for field in ["(" * 200_000, "a:" * 100_000, "=?utf-8?q?a?= " * 20_000, '"\\' * 100_000]:
            start = time.monotonic()
            searchText(field)
            self.assertLess(time.monotonic() - start, 5.0, field[:10])
