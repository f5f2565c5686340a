"""Strict parsing of literals, quoted strings, sets, dates and flags; mailbox names."""

from __future__ import annotations

import datetime

from hypothesis import given
from hypothesis import strategies as st
from twisted.mail import imap4
from twisted.trial.unittest import SynchronousTestCase

from tmail.errors import InvalidFolderName
from tmail.imap.account import checkName, wildcardPattern
from tmail.imap.mutf7 import BadMailboxName, decodeName, encodeName
from tmail.imap.parse import (
    BadLiteral,
    Tokenizer,
    literalMarker,
    parseDate,
    parseDateTime,
    parseFlags,
    parseQuoted,
    wholeLiteral,
)
from tmail.imap.seqset import parseSequenceSet


class LiteralTests(SynchronousTestCase):
    def test_markers(self) -> None:
        self.assertEqual(literalMarker(b"a LOGIN {5}"), (5, True))
        self.assertEqual(literalMarker(b"a LOGIN {5+}"), (5, False))
        self.assertEqual(literalMarker(b"a LOGIN {0}"), (0, True))
        self.assertEqual(literalMarker(b"{4294967295}"), (4294967295, True))
        self.assertIsNone(literalMarker(b"a NOOP"))
        self.assertIsNone(literalMarker(b"a STORE 1 +FLAGS x}"))

    def test_badSizes(self) -> None:
        """Twisted's C{int()} took C{-100}, C{+5} and C{1_0}; RFC 3501 says 32-bit digits."""
        for marker in [
            b"{-1}",
            b"{-100}",
            b"{+5}",
            b"{1_0}",
            b"{ 5}",
            b"{}",
            b"{abc}",
            b"{4294967296}",
            b"{99999999999999}",
            b"{5++}",
        ]:
            self.assertRaises(BadLiteral, literalMarker, b"a LOGIN " + marker)

    def test_wholeLiteral(self) -> None:
        self.assertEqual(wholeLiteral(b"{3}"), (3, True))
        self.assertIsNone(wholeLiteral(b"x {3}"))
        self.assertRaises(BadLiteral, wholeLiteral, b"{-3}")


class QuotedTests(SynchronousTestCase):
    def test_escapes(self) -> None:
        self.assertEqual(parseQuoted(b'"a\\"b\\\\c" rest'), (b'a"b\\c', 9))
        self.assertEqual(parseQuoted(b'""'), (b"", 2))

    def test_errors(self) -> None:
        for bad in [b'"open', b'"bad \\n escape"', b'"nul\x00"', b'"ends with \\']:
            self.assertRaises(imap4.IllegalClientResponse, parseQuoted, bad)


class TokenizerTests(SynchronousTestCase):
    def test_nestingQuotesAndLiterals(self) -> None:
        tokens = Tokenizer()
        self.assertEqual(tokens.feed(b'OR (SEEN FROM "a \\"b\\"") SUBJECT {3}'), (3, True))
        tokens.addLiteral(b"x y")
        self.assertIsNone(tokens.feed(b" UID 1:*"))
        self.assertEqual(
            tokens.result(),
            [b"OR", [b"SEEN", b"FROM", b'a "b"'], b"SUBJECT", b"x y", b"UID", b"1:*"],
        )

    def test_unbalanced(self) -> None:
        for line in [b"(SEEN", b"SEEN)", b"{3} SEEN", b'"open']:
            tokens = Tokenizer()
            with self.assertRaises(imap4.IllegalClientResponse):
                tokens.feed(line)
                tokens.result()


class SetAndDateTests(SynchronousTestCase):
    def test_sequenceSets(self) -> None:
        messages = parseSequenceSet(b"1,3:5,7:*").resolve(9)
        self.assertEqual(list(messages), [(1, 1), (3, 5), (7, 9)])
        for bad in [b"0", b"1:0", b"-1", b"1,,2", b"a", b"*:*:*", b"4294967296", b"1 2", b""]:
            self.assertRaises(imap4.IllegalClientResponse, parseSequenceSet, bad)

    def test_dates(self) -> None:
        self.assertEqual(parseDate(b"1-Feb-1994"), datetime.date(1994, 2, 1))
        self.assertRaises(ValueError, parseDate, b"31-Feb-1994")
        self.assertRaises(ValueError, parseDate, b"1-Foo-1994")
        self.assertEqual(parseDateTime(b"17-Jul-1996 02:44:25 -0700"), 837596665.0)
        self.assertEqual(parseDateTime(b" 7-Jul-1996 02:44:25 +0000"), 836707465.0)
        self.assertRaises(imap4.IllegalClientResponse, parseDateTime, b"17-Jul-1996")

    def test_flags(self) -> None:
        self.assertEqual(
            parseFlags([b"\\seen", b"\\FLAGGED", b"$Label", b"Junk"]),
            ["\\Seen", "\\Flagged", "$Label", "Junk"],
        )
        for bad in [b"\\Recent", b"\\Bogus", b"a(b", b"\\*"]:
            self.assertRaises(imap4.IllegalClientResponse, parseFlags, [bad])


class MailboxNameTests(SynchronousTestCase):
    def test_canonicalOnly(self) -> None:
        """Only the one canonical spelling of a name is accepted."""
        self.assertEqual(decodeName(b"Entw&APw-rfe"), "Entwürfe")
        self.assertEqual(decodeName(b"Tom &- Jerry"), "Tom & Jerry")
        self.assertEqual(encodeName("Entwürfe/日本"), b"Entw&APw-rfe/&ZeVnLA-")
        for bad in [
            b"&AC4ALgAv-",
            b"&AGEAYgBj-",
            b"&APw",
            b"&Jjo!-",
            b"caf\xc3\xa9",
            b"&AAA-",
            b"tab\there",
            b"&2AA-",
        ]:
            self.assertRaises(BadMailboxName, decodeName, bad)

    @given(st.text(min_size=1, max_size=30))
    def test_roundTrip(self, name: str) -> None:
        try:
            encoded = encodeName(name)
        except Exception:
            return
        try:
            decoded = decodeName(encoded)
        except BadMailboxName:
            return
        self.assertEqual(decoded, name)

    def test_checkName(self) -> None:
        self.assertEqual(checkName("inbox"), "INBOX")
        self.assertEqual(checkName("Inbox/Sub"), "INBOX/Sub")
        self.assertEqual(checkName("Archive/2025"), "Archive/2025")
        for bad in [
            "",
            "/etc",
            "../x",
            "a/../../b",
            "a//b",
            "a/",
            ".",
            "a/./b",
            "x*",
            "y%",
            "a\x01",
        ]:
            self.assertRaises(InvalidFolderName, checkName, bad)

    def test_wildcards(self) -> None:
        self.assertTrue(wildcardPattern("*").fullmatch("a/b/c"))
        self.assertTrue(wildcardPattern("%").fullmatch("a"))
        self.assertFalse(wildcardPattern("%").fullmatch("a/b"))
        self.assertTrue(wildcardPattern("a/%").fullmatch("a/b"))
        self.assertTrue(wildcardPattern("inbox").fullmatch("INBOX"))
        self.assertTrue(wildcardPattern("Inbox%").fullmatch("INBOX"))
        self.assertFalse(wildcardPattern("archive").fullmatch("Archive"))
        self.assertFalse(wildcardPattern("a.c").fullmatch("abc"))
