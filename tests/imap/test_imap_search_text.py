"""
SEARCH TEXT and BODY (RFC 3501 6.4.4) over multipart messages, as
transcripts over C{StringTransport}: TEXT finds a string anywhere in the
message, the headers of its parts and of a message inside it included;
BODY reads the decoded content of its text parts.
"""

from __future__ import annotations

from test_imap_protocol import Session, deliver
from twisted.trial.unittest import SynchronousTestCase

ALTERNATIVE = (
    b"From: ann@x.example\r\nSubject: choices\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/alternative; boundary="alt"\r\n\r\n'
    b"--alt\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\n"
    b"cGxhaW4gd29yZHM=\r\n"
    b"--alt\r\nContent-Type: text/html; charset=us-ascii\r\n"
    b"Content-Disposition: inline; filename=page.html\r\n\r\n"
    b"<p>markup words</p>\r\n--alt--\r\n"
)

FORWARDED = (
    b"From: bob@x.example\r\nSubject: fwd\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: multipart/mixed; boundary=mix\r\n\r\n"
    b"--mix\r\nContent-Type: text/plain\r\n\r\nsee below\r\n"
    b"--mix\r\nContent-Type: message/rfc822\r\n\r\n"
    b"From: carol@y.example\r\nSubject: =?utf-8?q?quarterly_r=C3=A9sults?=\r\n\r\n"
    b"numbers inside\r\n--mix--\r\n"
)


class SearchTextTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.session = Session(self)
        inbox = self.session.store.getFolder("INBOX")
        deliver(inbox, ALTERNATIVE)
        deliver(inbox, FORWARDED)
        self.session.select()

    def search(self, keys: bytes) -> bytes:
        reply = self.session.send(b"t SEARCH " + keys + b"\r\n")
        self.assertTrue(reply.endswith(b"t OK SEARCH completed\r\n"), reply)
        return reply.split(b"\r\n")[0]

    def test_text_finds_the_headers_of_body_parts(self) -> None:
        """A part's MIME header is part of the message's body, so TEXT finds it."""
        self.assertEqual(self.search(b"TEXT page.html"), b"* SEARCH 1")
        self.assertEqual(self.search(b'TEXT "text/html"'), b"* SEARCH 1")
        self.assertEqual(self.search(b"TEXT message/rfc822"), b"* SEARCH 2")

    def test_text_finds_the_header_of_an_attached_message(self) -> None:
        """The header of a message inside a message/rfc822 part, its encoded words decoded."""
        self.assertEqual(self.search(b"TEXT carol@y.example"), b"* SEARCH 2")
        self.assertEqual(self.search(b'CHARSET UTF-8 TEXT "r\xc3\xa9sults"'), b"* SEARCH 2")

    def test_body_reads_the_content_of_text_parts(self) -> None:
        """BODY and TEXT both find decoded content; only TEXT reads headers."""
        self.assertEqual(self.search(b'BODY "plain words"'), b"* SEARCH 1")
        self.assertEqual(self.search(b'TEXT "plain words"'), b"* SEARCH 1")
        self.assertEqual(self.search(b"BODY markup"), b"* SEARCH 1")
        self.assertEqual(self.search(b'BODY "numbers inside"'), b"* SEARCH 2")
        self.assertEqual(self.search(b"BODY page.html"), b"* SEARCH")
        self.assertEqual(self.search(b"TEXT nowhere"), b"* SEARCH")
