"""MIME sections over exact bytes, ENVELOPE and BODYSTRUCTURE."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tmail.imap.headerfields import selectFields
from tmail.imap.message import IMAPPart
from tmail.imap.mimeentity import MAX_MIME_DEPTH, MimeEntity
from tmail.imap.structure import bodyStructure, envelope

INNER = (
    b"From: Carol <carol@example.test>\r\n"
    b"Subject: inner\r\n"
    b"Content-Type: multipart/alternative; boundary=in\r\n"
    b"\r\n"
    b"--in\r\n"
    b"Content-Type: text/plain\r\n"
    b"\r\n"
    b"plain inner\r\n"
    b"--in\r\n"
    b"Content-Type: text/html\r\n"
    b"\r\n"
    b"<p>html inner</p>\r\n"
    b"--in--\r\n"
)

MIXED = (
    b"From: Bob <bob@example.test>, Dave <dave@example.test>\r\n"
    b"To: alice@example.test\r\n"
    b"Subject: =?utf-8?q?caf=C3=A9?=\r\n"
    b"X-Folded: first\r\n"
    b"  second\r\n"
    b'Content-Type: multipart/mixed; boundary="outer"\r\n'
    b"\r\n"
    b"preamble\r\n"
    b"--outer\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"\r\n"
    b"caf\xc3\xa9\r\n"
    b"--outer\r\n"
    b"Content-Type: application/octet-stream; name=data.bin\r\n"
    b"Content-Disposition: attachment; filename=data.bin\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    b"AAEC\r\n"
    b"--outer\r\n"
    b"Content-Type: message/rfc822\r\n"
    b"\r\n" + INNER + b"--outer--\r\n"
    b"epilogue\r\n"
)


class SectionTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.message = MimeEntity(MIXED)

    def test_headerAndText(self) -> None:
        header, text = MIXED.split(b"\r\n\r\n", 1)
        self.assertEqual(self.message.section((), "HEADER"), header + b"\r\n\r\n")
        self.assertEqual(self.message.section((), "TEXT"), text)
        self.assertEqual(self.message.section((), ""), MIXED)

    def test_headerFields(self) -> None:
        """Fields keep their order, spelling and folding; NOT keeps the rest."""
        self.assertEqual(
            self.message.section((), "HEADER.FIELDS", [b"X-FOLDED", b"TO"]),
            b"To: alice@example.test\r\nX-Folded: first\r\n  second\r\n\r\n",
        )
        others = self.message.section((), "HEADER.FIELDS.NOT", [b"FROM", b"TO", b"SUBJECT"])
        assert others is not None
        self.assertTrue(others.startswith(b"X-Folded: first\r\n  second\r\nContent-Type"))
        self.assertEqual(selectFields(b"\r\n", [b"SUBJECT"], False), b"\r\n")

    def test_numberedParts(self) -> None:
        """Parts are the exact bytes between delimiters (RFC 3501 6.4.5 numbering)."""
        self.assertEqual(self.message.section((0,), ""), b"caf\xc3\xa9")
        self.assertEqual(
            self.message.section((1,), "MIME"),
            b"Content-Type: application/octet-stream; name=data.bin\r\n"
            b"Content-Disposition: attachment; filename=data.bin\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n",
        )
        self.assertEqual(self.message.section((2,), ""), INNER[:-2])
        self.assertEqual(
            self.message.section((2,), "HEADER"), INNER.split(b"\r\n\r\n")[0] + b"\r\n\r\n"
        )
        self.assertEqual(self.message.section((2, 0), ""), b"plain inner")
        self.assertEqual(self.message.section((2, 1), "MIME"), b"Content-Type: text/html\r\n\r\n")
        self.assertIsNone(self.message.section((3,), ""))
        self.assertIsNone(self.message.section((2, 5), ""))

    def test_singlePartMessageHasPartOne(self) -> None:
        simple = MimeEntity(b"Subject: x\r\n\r\nbody\r\n")
        self.assertEqual(simple.section((0,), ""), b"body\r\n")
        self.assertIsNone(simple.section((1,), ""))

    def test_noBlankLine(self) -> None:
        entity = MimeEntity(b"Subject: only a header\r\n")
        self.assertEqual(entity.header, b"Subject: only a header\r\n")
        self.assertEqual(entity.body, b"")
        self.assertEqual(MimeEntity(b"\r\nbody").header, b"\r\n")

    def test_partAdapter(self) -> None:
        part = IMAPPart(self.message).getSubPart(1)
        self.assertEqual(
            part.getHeaders(False, "content-disposition"),
            {
                "content-disposition": "attachment; filename=data.bin",
            },
        )
        self.assertEqual(part.getBodyFile().read(), b"AAEC")
        self.assertRaises(IndexError, IMAPPart(self.message).getSubPart, 9)


class StructureTests(SynchronousTestCase):
    def test_simpleText(self) -> None:
        self.assertEqual(
            bodyStructure(MimeEntity(b"Subject: x\r\n\r\nhello\r\n")),
            b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 7 1 NIL NIL NIL NIL)',
        )
        self.assertEqual(
            bodyStructure(MimeEntity(b"Subject: x\r\n\r\nhello\r\n"), extended=False),
            b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 7 1)',
        )

    def test_multipart(self) -> None:
        structure = bodyStructure(MimeEntity(MIXED))
        self.assertTrue(
            structure.startswith(b'(("text" "plain" ("charset" "utf-8") NIL NIL "8bit" 5 0')
        )
        self.assertIn(
            b'("application" "octet-stream" ("name" "data.bin") NIL NIL "base64" 4 NIL '
            b'("attachment" ("filename" "data.bin")) NIL NIL)',
            structure,
        )
        self.assertIn(b'("message" "rfc822" NIL NIL NIL "7bit" %d (' % (len(INNER) - 2), structure)
        self.assertIn(b'"alternative" ("boundary" "in") NIL NIL NIL)', structure)
        self.assertTrue(structure.endswith(b' "mixed" ("boundary" "outer") NIL NIL NIL)'))

    def test_oddParametersDoNotCrash(self) -> None:
        """Twisted's parser raised on a parameter without C{=}."""
        entity = MimeEntity(b"Content-Type: text/plain; flowed; charset\r\n\r\nx")
        self.assertTrue(bodyStructure(entity).startswith(b'("text" "plain"'))

    def test_deepNestingIsBounded(self) -> None:
        """A thousand nested multiparts (Dovecot CVE-2020-12100) stop at MAX_MIME_DEPTH."""
        raw = b""
        for level in range(1000):
            raw = (
                b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (level, level)
                + raw
                + b"\r\n--b%d--\r\n" % level
            )
        structure = bodyStructure(MimeEntity(raw))
        self.assertEqual(structure.count(b'"mixed"'), MAX_MIME_DEPTH)

    def test_envelope(self) -> None:
        self.assertEqual(
            envelope(MimeEntity(MIXED).header),
            b'(NIL "=?utf-8?q?caf=C3=A9?=" '
            + b'(("Bob" NIL "bob" "example.test")("Dave" NIL "dave" "example.test")) ' * 3
            + b'((NIL NIL "alice" "example.test")) NIL NIL NIL NIL)',
        )

    def test_eightBitHeadersBecomeLiterals(self) -> None:
        header = b"Subject: caf\xc3\xa9\r\nFrom: J\xc3\xbcrgen <j@example.test>\r\n\r\n"
        self.assertIn(b"{5}\r\ncaf\xc3\xa9", envelope(header))
        self.assertIn(b"{7}\r\nJ\xc3\xbcrgen", envelope(header))

    @settings(max_examples=200, deadline=None)
    @given(st.binary(max_size=400))
    def test_anyBytesEncode(self, raw: bytes) -> None:
        """Whatever is stored, BODYSTRUCTURE, ENVELOPE and sections come out."""
        entity = MimeEntity(b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n" + raw)
        bodyStructure(entity)
        envelope(raw)
        entity.section((0, 0), "MIME")
