"""
BODY and BODYSTRUCTURE (RFC 3501 7.4.2, RFC 9051 7.5.2) of awkward
messages: types, subtypes and parameters as the message gives them,
RFC 2045's defaults only where a field is absent (or not type/subtype),
octet and line counts that match the bytes BODY[n] serves, comments
removed, odd boundaries, and nested message/rfc822.
"""

from __future__ import annotations

from test_imap_protocol import Session, deliver
from twisted.trial.unittest import SynchronousTestCase

from support.imapdata import Value, fetchResponses
from support.mimecorpus import CORPUS
from tmail.imap.mimeentity import MimeEntity
from tmail.imap.structure import bodyStructure


def structure(raw: bytes, extended: bool = True) -> bytes:
    return bodyStructure(MimeEntity(raw), extended)


def leaves(value: Value, path: tuple[int, ...] = ()) -> list[tuple[tuple[int, ...], list[Value]]]:
    """The zero-based paths and structures of the non-multipart parts."""
    assert isinstance(value, list)
    if not isinstance(value[0], list):
        return [(path or (0,), value)]
    found = []
    for number, part in enumerate(value):
        if not isinstance(part, list):
            break
        found.extend(leaves(part, (*path, number)))
    return found


class BodyStructureTranscriptTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.session = Session(self)
        self.inbox = self.session.store.getFolder("INBOX")

    def fetch(self, raw: bytes, items: bytes) -> bytes:
        deliver(self.inbox, raw)
        self.session.select()
        return self.session.send(b"a FETCH 1 " + items + b"\r\n")

    def test_an_unknown_text_subtype_is_kept_as_given(self) -> None:
        """It was text/plain; BODY and BODYSTRUCTURE name the type the message names."""
        self.assertEqual(
            self.fetch(CORPUS["unknown-text-subtype-mixed-case"], b"(BODY BODYSTRUCTURE)"),
            b'* 1 FETCH (BODY ("TEXT" "X-MyOwn" ("Charset" "UTF-8" "FORMAT" "flowed") NIL NIL '
            b'"7bit" 24 2) BODYSTRUCTURE ("TEXT" "X-MyOwn" ("Charset" "UTF-8" "FORMAT" "flowed") '
            b'NIL NIL "7bit" 24 2 NIL NIL NIL NIL))\r\n'
            b"a OK FETCH completed\r\n",
        )

    def test_part_lines_count_line_ends_and_sizes_match_the_sections(self) -> None:
        """
        The line break before a delimiter belongs to it (RFC 2046 5.1.1): a
        part of one line without its line end is 3 octets and 0 lines; it
        was 1 line, so the line counts disagreed with the bytes BODY[1] serves.
        """
        answer = self.fetch(
            CORPUS["multipart-quoted-boundary-with-spaces"],
            b"(BODYSTRUCTURE BODY.PEEK[1] BODY.PEEK[2])",
        )
        self.assertEqual(
            answer,
            b'* 1 FETCH (BODYSTRUCTURE (("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 3 0 '
            b'NIL NIL NIL NIL)("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 14 0 NIL NIL '
            b'NIL NIL) "mixed" ("boundary" "a b  c") NIL NIL NIL) '
            b"BODY[1] {3}\r\none BODY[2] {14}\r\ntwo, no header)\r\n"
            b"a OK FETCH completed\r\n",
        )

    def test_a_multipart_without_a_boundary_has_one_empty_part(self) -> None:
        """It was application/octet-stream: the type is as given, BODY[1] is that empty part."""
        self.assertEqual(
            self.fetch(CORPUS["multipart-without-boundary"], b"(BODY BODY.PEEK[1])"),
            b'* 1 FETCH (BODY (("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0) '
            b'"mixed") BODY[1] {0}\r\n)\r\n'
            b"a OK FETCH completed\r\n",
        )

    def test_nested_message_rfc822(self) -> None:
        answer = self.fetch(CORPUS["message-rfc822-in-message-rfc822"], b"BODYSTRUCTURE")
        self.assertEqual(
            answer,
            b'* 1 FETCH (BODYSTRUCTURE ("message" "rfc822" NIL NIL NIL "7bit" 82 '
            b'(NIL "middle" NIL NIL NIL NIL NIL NIL NIL NIL) ("message" "rfc822" NIL NIL NIL '
            b'"7bit" 33 (NIL "innermost" NIL NIL NIL NIL NIL NIL NIL NIL) ("text" "plain" '
            b'("charset" "us-ascii") NIL NIL "7bit" 11 1 NIL NIL NIL NIL) 3 NIL NIL NIL NIL) '
            b"6 NIL NIL NIL NIL))\r\n"
            b"a OK FETCH completed\r\n",
        )


class BodyStructureTests(SynchronousTestCase):
    def test_defaults_stand_in_only_for_absent_fields(self) -> None:
        self.assertEqual(
            structure(CORPUS["no-content-type"]),
            b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 24 2 NIL NIL NIL NIL)',
        )
        self.assertEqual(
            structure(CORPUS["transfer-encoding-mixed-case"], extended=False),
            b'("text" "plain" ("charset" "us-ascii") NIL NIL "BaSe64" 10 1)',
        )
        # A text part without a charset has RFC 2046 4.1.2's, after its own parameters.
        self.assertEqual(
            structure(CORPUS["text-with-params-but-no-charset"], extended=False),
            b'("text" "html" ("format" "flowed" "charset" "us-ascii") NIL NIL "7bit" 24 2)',
        )
        self.assertEqual(
            structure(CORPUS["unknown-main-type"], extended=False),
            b'("x-unknown" "whatever" ("a" "b") NIL NIL "7bit" 24)',
        )

    def test_a_type_that_is_not_type_slash_subtype_is_the_default(self) -> None:
        """RFC 2045 5.2 recommends text/plain; charset=us-ascii for those."""
        for name in ("type-without-subtype", "type-without-subtype-with-params", "type-only-slash"):
            self.assertEqual(
                structure(CORPUS[name], extended=False),
                b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 24 2)',
                name,
            )

    def test_comments_are_no_part_of_types_values_or_encodings(self) -> None:
        self.assertEqual(
            structure(CORPUS["type-with-spaces-and-comments"], extended=False),
            b'("text" "plain" ("charset" "utf-8") NIL NIL "7bit" 24 2)',
        )
        self.assertEqual(
            structure(CORPUS["transfer-encoding-with-comment"], extended=False),
            b'("text" "plain" ("charset" "us-ascii") NIL NIL "base64" 10 1)',
        )

    def test_parameters_repeated_garbled_and_encoded(self) -> None:
        self.assertIn(
            b'("charset" "utf-8" "charset" "iso-8859-1")', structure(CORPUS["duplicate-parameter"])
        )
        self.assertIn(b'("charset" "utf-8")', structure(CORPUS["parameter-without-value"]))
        self.assertIn(b'("charset" "utf-8")', structure(CORPUS["unterminated-quoted-parameter"]))
        self.assertIn(b'("charset" "utf-8")', structure(CORPUS["empty-parameters"]))
        self.assertIn(
            b'("charset" "utf\\\\-8" "x" "a\\"b;c")',
            structure(CORPUS["quoted-parameter-with-escapes"]).replace(b"utf-8", b"utf\\\\-8"),
        )
        encoded = structure(CORPUS["rfc2231-parameters"])
        self.assertIn('("name" {9}\r\ncafé.txt)'.encode(), encoded)
        self.assertIn('("attachment" ("filename" {12}\r\nrésumé.pdf))'.encode(), encoded)

    def test_extension_data(self) -> None:
        self.assertEqual(
            structure(CORPUS["all-content-fields"]),
            b'("text" "plain" ("charset" "utf-8") "<part@example.test>" "a description" "8bit" '
            b'9 2 "Q2hlY2sgSW50ZWdyaXR5IQ==" ("inline" ("filename" "a.txt")) ("en" "de") '
            b'"http://example.test/a")',
        )
        self.assertEqual(
            structure(CORPUS["multipart-upper-case"]),
            b'(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 3 0 NIL NIL NIL NIL) "Mixed" '
            b'("BOUNDARY" "B" "x-extra" "1") ("inline" NIL) ("fr") NIL)',
        )
        self.assertIn(b" NIL NIL NIL)", structure(CORPUS["disposition-garbled"]))

    def test_odd_boundaries(self) -> None:
        self.assertEqual(
            structure(CORPUS["multipart-missing-close-delimiter"], extended=False),
            b'(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 3 0)'
            b'("text" "html" ("charset" "us-ascii") NIL NIL "7bit" 26 1) "mixed")',
        )
        self.assertEqual(
            structure(CORPUS["multipart-empty-parts"], extended=False),
            b'(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0)'
            b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0)'
            b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0) "mixed")',
        )
        self.assertEqual(
            structure(CORPUS["multipart-lookalike-delimiters"], extended=False),
            b'(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 43 1)'
            b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 3 0) "mixed")',
        )
        for name in (
            "multipart-no-parts",
            "multipart-only-close-delimiter",
            "multipart-empty-boundary",
        ):
            self.assertEqual(
                structure(CORPUS[name], extended=False),
                b'(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0) "mixed")',
                name,
            )

    def test_digest_parts_default_to_message_rfc822(self) -> None:
        self.assertTrue(
            structure(CORPUS["multipart-digest"], extended=False).startswith(
                b'(("message" "rfc822" NIL NIL NIL "7bit" 52 (NIL "digested one" '
            )
        )

    def test_every_part_of_the_corpus_is_as_long_as_its_section(self) -> None:
        """Size and lines of each leaf part agree with the bytes of its section."""
        for name, raw in CORPUS.items():
            entity = MimeEntity(raw)
            fetched = fetchResponses(b"* 1 FETCH (BODYSTRUCTURE " + bodyStructure(entity) + b")")
            for path, part in leaves(fetched[1][b"BODYSTRUCTURE"]):
                body = entity.section(path, "")
                assert body is not None, (name, path)
                self.assertEqual(part[6], b"%d" % len(body), (name, path))
                kind = [p.lower() if isinstance(p, bytes) else p for p in part[:2]]
                if kind[0] == b"text":
                    self.assertEqual(part[7], b"%d" % body.count(b"\n"), (name, path))
                elif kind == [b"message", b"rfc822"]:
                    self.assertEqual(part[9], b"%d" % body.count(b"\n"), (name, path))
