"""
PREVIEW (RFC 8970) over C{StringTransport}: the RFC's examples, the first
text part (HTML as text), transfer encodings and charsets, at most 256
characters, and work bounded by C{imap.preview_scan_bytes}.
"""

from __future__ import annotations

import base64
import time
from typing import Any

from test_imap_protocol import Session, deliver
from twisted.trial.unittest import SynchronousTestCase

from tmail.imap.preview import PREVIEW_CHARACTERS, previewText

PLAIN = b"From: a@example.test\r\nSubject: s\r\n\r\nPreview   text!\r\n\r\nMore.\r\n"
ALTERNATIVE = (
    b"From: a@example.test\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/alternative; boundary="b"\r\n\r\n'
    b"--b\r\nContent-Type: text/html\r\n\r\n<p>HTML version</p>\r\n"
    b"--b\r\nContent-Type: text/plain\r\n\r\nPlain version\r\n--b--\r\n"
)
HTML = (
    b"From: a@example.test\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
    b"<html><head><title>T</title><style>p {color: red}</style></head>"
    b"<body><script>alert(1)</script><p>Hello&nbsp;<b>there</b></p>"
    b"<p>&amp; you</p></body></html>\r\n"
)
LATIN1 = (
    b"From: a@example.test\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\n"
    + base64.encodebytes("Grüße aus Köln".encode("latin-1")).replace(b"\n", b"\r\n")
)
ATTACHMENT_ONLY = (
    b"From: a@example.test\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n"
    b"--x\r\nContent-Type: text/plain\r\nContent-Disposition: attachment\r\n\r\nnot this\r\n"
    b"--x\r\nContent-Type: image/png\r\n\r\nPNG\r\n--x--\r\n"
)


class PreviewTests(SynchronousTestCase):
    def session(self, *messages: bytes, **options: Any) -> Session:
        session = Session(self, **options)
        inbox = session.store.getFolder("INBOX")
        for message in messages:
            deliver(inbox, message)
        session.select()
        return session

    def test_preview_is_advertised(self) -> None:
        self.assertIn(b" PREVIEW", self.session().send(b"c CAPABILITY\r\n"))

    def test_rfc8970_fetch_preview_and_preview_lazy(self) -> None:
        session = self.session(PLAIN, b"From: a@example.test\r\n\r\n")
        self.assertEqual(
            session.send(b"A1 FETCH 1 (PREVIEW)\r\n"),
            b'* 1 FETCH (PREVIEW "Preview text! More.")\r\nA1 OK FETCH completed\r\n',
        )
        self.assertEqual(
            session.send(b"A2 FETCH 2 (PREVIEW)\r\n"),
            b'* 2 FETCH (PREVIEW "")\r\nA2 OK FETCH completed\r\n',
        )
        self.assertEqual(
            session.send(b"A3 FETCH 1 (UID PREVIEW (LAZY) FLAGS)\r\n"),
            b'* 1 FETCH (UID 1 PREVIEW "Preview text! More." FLAGS (\\Recent))\r\n'
            b"A3 OK FETCH completed\r\n",
        )
        self.assertEqual(session.send(b"A4 FETCH 1 (PREVIEW (EAGER))\r\n")[:7], b"A4 BAD ")
        self.assertEqual(session.send(b"A5 FETCH 1 (PREVIEW ())\r\n")[:7], b"A5 BAD ")

    def test_preview_does_not_set_seen(self) -> None:
        session = self.session(PLAIN)
        session.send(b"f FETCH 1 PREVIEW\r\n")
        self.assertEqual(
            session.send(b"g FETCH 1 FLAGS\r\n"),
            b"* 1 FETCH (FLAGS (\\Recent))\r\ng OK FETCH completed\r\n",
        )

    def test_preview_takes_the_plain_text_part_html_as_text_and_decodes(self) -> None:
        self.assertEqual(previewText(ALTERNATIVE), "Plain version")
        self.assertEqual(previewText(HTML), "Hello there & you")
        self.assertEqual(previewText(LATIN1), "Grüße aus Köln")
        self.assertEqual(previewText(ATTACHMENT_ONLY), "")

    def test_a_preview_that_is_not_ascii_is_sent_as_a_literal(self) -> None:
        session = self.session(LATIN1)
        text = "Grüße aus Köln".encode()
        self.assertEqual(
            session.send(b"f FETCH 1 PREVIEW\r\n"),
            b"* 1 FETCH (PREVIEW {%d}\r\n%s)\r\nf OK FETCH completed\r\n" % (len(text), text),
        )

    def test_preview_holds_at_most_256_characters(self) -> None:
        body = b"word " * 1000
        text = previewText(b"Subject: long\r\n\r\n" + body)
        self.assertEqual(len(text), PREVIEW_CHARACTERS)
        self.assertTrue(("word " * 60).startswith(text))

    def test_preview_reads_only_preview_scan_bytes_of_a_huge_message(self) -> None:
        """Text past the scanned octets is not looked at; a cut multibyte character is dropped."""
        huge = b"Subject: big\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        huge += b"\xc3\xa4" * (2 * 1024 * 1024)
        session = self.session(huge, preview_scan_bytes=1001)
        started = time.monotonic()
        reply = session.send(b"f FETCH 1 PREVIEW\r\n")
        self.assertLess(time.monotonic() - started, 2.0)
        text = ("ä" * 256).encode()
        self.assertEqual(
            reply, b"* 1 FETCH (PREVIEW {%d}\r\n%s)\r\nf OK FETCH completed\r\n" % (len(text), text)
        )
        self.assertEqual(previewText(b"\r\n" + "ä".encode()[:1], cut=True), "")
