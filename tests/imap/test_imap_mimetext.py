"""
Reading hostile message text in linear time and without recursion:
address lists, RFC 2047 encoded words, charsets, RFC 2231 parameters and
header fields.
"""

from __future__ import annotations

import time
from email._parseaddr import AddressList

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tmail.imap.addresses import getaddresses
from tmail.imap.charsets import codecFor, decodeText, decodeWords
from tmail.imap.headerfields import MAX_HEADER_LINES, fieldValue, headerFields
from tmail.imap.mimeentity import MimeEntity
from tmail.imap.mimeparams import MAX_PARAMETERS, parseParameterized
from tmail.imap.structure import bodyStructure, envelope

#: Pieces of address fields, nesting and specials included.
_ADDRESS_PIECES = st.sampled_from(
    [*'ab ()<>@,:;."[]\\\r\n\t', "bob", "x.y", "=?utf-8?q?a?=", "Bob Smith"]
)


class Elapsed:
    """Times a block: C{with Elapsed() as t: ...; t.seconds}."""

    seconds = 0.0

    def __enter__(self) -> Elapsed:
        self._start = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.monotonic() - self._start


class AddressListTests(SynchronousTestCase):
    @settings(max_examples=1000, deadline=None)
    @given(st.lists(_ADDRESS_PIECES, max_size=25).map("".join))
    def test_ordinary_fields_read_as_the_stdlib_reads_them(self, text: str) -> None:
        try:
            expected = AddressList(text).addresslist
        except RecursionError:
            return
        self.assertEqual(getaddresses(text), expected)

    def test_examples(self) -> None:
        self.assertEqual(
            getaddresses('"Smith, Bob" <bob@example.test>, carol@example.test (Carol)'),
            [("Smith, Bob", "bob@example.test"), ("Carol", "carol@example.test")],
        )
        self.assertEqual(
            getaddresses("friends: a@example.test, b@example.test;, c@example.test"),
            [("", "a@example.test"), ("", "b@example.test"), ("", "c@example.test")],
        )
        self.assertEqual(getaddresses("undisclosed-recipients:;"), [("", "")])

    def test_deep_nesting_takes_linear_time_without_recursion(self) -> None:
        """The stdlib raises RecursionError on each of these."""
        for field in ["(" * 200_000 + "a@b", "a:" * 100_000, "g: " + "a@b, " * 50_000 + ";"]:
            with Elapsed() as t:
                getaddresses(field)
            self.assertLess(t.seconds, 5.0, field[:10])
        self.assertEqual(getaddresses("((((comment)))) a@b"), [("comment", "a@b")])


class EncodedWordTests(SynchronousTestCase):
    def test_words_decode_and_the_space_between_them_goes(self) -> None:
        self.assertEqual(decodeWords("=?utf-8?q?caf=C3=A9?="), "café")
        self.assertEqual(decodeWords("=?UTF-8?B?Y2Fm?= =?utf-8?q?=C3=A9?= ok"), "café ok")
        self.assertEqual(decodeWords("a =?iso-8859-1?q?=E9t=E9?= b"), "a été b")
        self.assertEqual(decodeWords("=?utf-8*fr?q?oui?="), "oui")

    def test_unknown_and_unsafe_charsets_stay_encoded(self) -> None:
        for word in ["=?x-nothing?q?abc?=", "=?punycode?q?abc-?=", "=?idna?q?abc?="]:
            self.assertEqual(decodeWords(word), word)
        self.assertIsNone(codecFor("punycode"))
        self.assertIsNone(codecFor("base64"))
        self.assertEqual(codecFor("ISO-8859-1"), "latin_1")
        self.assertEqual(decodeText(b"caf\xe9", "x-unknown"), "café")
        self.assertEqual(decodeText(b"caf\xc3\xa9", "UTF-8"), "café")

    def test_many_encoded_words_take_linear_time(self) -> None:
        """The stdlib's decode_header takes minutes for a megabyte of these."""
        text = "=?utf-8?q?a?= " * 100_000 + "=?a?q?" * 100_000
        with Elapsed() as t:
            decoded = decodeWords(text)
        self.assertTrue(decoded.startswith("a" * 100_000))
        self.assertLess(t.seconds, 5.0)


class ParameterTests(SynchronousTestCase):
    def test_rfc2231_examples(self) -> None:
        """RFC 2231 3 and 4: continuations, charset and language, mixed segments."""
        self.assertEqual(
            parseParameterized(
                "message/external-body; access-type=URL;\r\n"
                ' URL*0="ftp://";\r\n URL*1="cs.utk.edu/pub/moore/bulk-mailer/bulk-mailer.tar"'
            )[1],
            [
                ("access-type", "URL"),
                ("url", "ftp://cs.utk.edu/pub/moore/bulk-mailer/bulk-mailer.tar"),
            ],
        )
        self.assertEqual(
            parseParameterized(
                "application/x-stuff;\r\n"
                " title*0*=us-ascii'en'This%20is%20even%20more%20;\r\n"
                " title*1*=%2A%2A%2Afun%2A%2A%2A%20;\r\n"
                ' title*2="isn\'t it!"'
            ),
            ("application/x-stuff", [("title", "This is even more ***fun*** isn't it!")]),
        )
        self.assertEqual(
            parseParameterized("attachment; filename*=UTF-8''caf%C3%A9.txt"),
            ("attachment", [("filename", "café.txt")]),
        )

    def test_quotes_escapes_and_oddities(self) -> None:
        self.assertEqual(
            parseParameterized('text/plain; a="x;y"; B="q\\"r"; flowed; =z; c=d')[1],
            [("a", "x;y"), ("b", 'q"r'), ("c", "d")],
        )
        # A number too long for int() and name* mixed with name*0 broke the stdlib.
        self.assertEqual(parseParameterized("a/b; n*" + "9" * 5000 + "=x")[1], [])
        self.assertEqual(parseParameterized("a/b; n*=x; n*0=y")[1], [("n", "xy")])

    def test_continuation_floods_take_linear_time(self) -> None:
        """Dovecot CVE-2026-27859 class: the stdlib is quadratic in both."""
        continuations = "".join(f";\r\n n*{i}*=%41%42" for i in range(200_000))
        quoted = '; a="' + ";" * 1_000_000 + '"'
        for value in ["text/plain" + continuations, "text/plain" + quoted]:
            with Elapsed() as t:
                parseParameterized(value)
            self.assertLess(t.seconds, 2.0)
        self.assertEqual(
            parseParameterized("text/plain" + continuations)[1], [("n", "AB" * MAX_PARAMETERS)]
        )

    def test_bodystructure_of_a_parameter_flood(self) -> None:
        flood = "".join(f";\r\n name*{i}*=a" for i in range(100_000)).encode()
        message = b"Content-Type: text/plain" + flood + b"\r\nContent-Disposition: inline"
        message += flood + b"\r\n\r\nbody\r\n"
        with Elapsed() as t:
            structure = bodyStructure(MimeEntity(message))
        self.assertLess(t.seconds, 2.0)
        self.assertIn(b'("name" "' + b"a" * MAX_PARAMETERS + b'" "charset" "us-ascii")', structure)


class HeaderTests(SynchronousTestCase):
    def test_long_folded_fields_take_linear_time(self) -> None:
        header = b"Subject: a\r\n" + b" x\r\n" * 500_000 + b"To: b@example.test\r\n\r\n"
        with Elapsed() as t:
            fields = headerFields(header)
            value = fieldValue(header, b"subject")
        self.assertLess(t.seconds, 2.0)
        self.assertEqual([name for name, _ in fields], [b"subject", b"to"])
        self.assertEqual(value, b"a" + b" x" * 500_000)

    def test_a_header_of_countless_fields_is_read_up_to_the_limit(self) -> None:
        header = b"X-A: b\r\n" * 1_000_000 + b"From: late@example.test\r\n\r\n"
        with Elapsed() as t:
            fields = headerFields(header)
            structure = envelope(header)
        self.assertLess(t.seconds, 2.0)
        self.assertEqual(len(fields), MAX_HEADER_LINES)
        self.assertEqual(structure.count(b"NIL"), 10)

    def test_envelope_of_hostile_addresses(self) -> None:
        header = (
            b"From: " + b"(" * 100_000 + b"\r\n"
            b"To: " + b"a:" * 100_000 + b"\r\n"
            b"Cc: " + b"x@y, " * 100_000 + b"\r\n\r\n"
        )
        with Elapsed() as t:
            structure = envelope(header)
        self.assertLess(t.seconds, 2.0)
        self.assertIn(b'(NIL NIL "x" "y")', structure)
