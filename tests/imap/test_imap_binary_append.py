"""
APPEND of a literal8 that holds NUL octets (RFC 3516 4.4), and the FETCH
answers for such a message: BINARY[], BINARY.SIZE and BINARY[n] give the
octets the client sent (in a literal8); BODY[] and the other items never
put a NUL in a literal (RFC 3501 4.3).  A leaf part whose body holds NUL is
stored base64-encoded (RFC 3516 4.4: the server may change the
content-transfer-encoding, losing nothing); a NUL elsewhere is stored as
sent and shown as 0x80 by BODY[], as Dovecot shows it.
"""

from __future__ import annotations

import base64
import re
import socket
from collections.abc import Generator
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from test_imap_protocol import Session
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase, TestCase

from support.imaploop import listenIMAP
from support.mimeinputs import mimeMessages
from support.net import inThread
from support.realm import ALICE, PASSWORD, makeRealm
from tmail.imap import largemessages
from tmail.imap.binary import UnknownCTE, decodeContent
from tmail.imap.binaryappend import storable, transferEncoding, withTransferEncoding
from tmail.imap.mimeentity import MimeEntity, MimeLimits

BINARY_LEAF = (
    b"Subject: binary\r\n"
    b"Content-Type: application/octet-stream\r\n"
    b"Content-Transfer-Encoding: binary\r\n"
    b"\r\n"
    b"\x00\x01\x02hello\r\n"
)
#: The crymap/RFC-style probe: three octets, no header end at all.
HEADER_ONLY = b"f\x00o"
MULTIPART = (
    b"Subject: parts\r\n"
    b"Content-Type: multipart/mixed; boundary=b\r\n"
    b"\r\n"
    b"pre\x00amble\r\n"
    b"--b\r\n"
    b"Content-Transfer-Encoding: binary\r\n"
    b"\r\n"
    b"\x00\x01\r\n"
    b"--b\r\n"
    b"Content-Type: text/plain\r\n"
    b"\r\n"
    b"text\x00nul\r\n"
    b"--b--\r\n"
)
NUL_SUBJECT = b"Subject: s\x00ubj\r\nContent-Type: text/plain\r\n\r\nx\r\n"


def literals(answer: bytes) -> list[bytes]:
    """The contents of the plain (not literal8) literals in an answer."""
    found = []
    for match in re.finditer(rb"(?<!~)\{(\d+)\}\r\n", answer):
        found.append(answer[match.end() : match.end() + int(match.group(1))])
    return found


class BinaryAppendTranscriptTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.session = Session(self)
        self.session.select()

    def append(self, message: bytes) -> bytes:
        self.assertEqual(
            self.session.send(b"A APPEND INBOX ~{%d}\r\n" % len(message)),
            b"+ Ready for literal data\r\n",
        )
        return self.session.send(message + b"\r\n")

    def fetch(self, line: bytes) -> bytes:
        answer = self.session.send(line + b"\r\n")
        for literal in literals(answer):
            self.assertNotIn(b"\x00", literal, answer)
        self.assertFalse(self.session.transport.disconnecting)
        return answer

    def test_binary_part_is_served_back_by_binary_and_binary_size(self) -> None:
        """It was NO [UNKNOWN-CTE]; the FETCH that followed lost the connection."""
        self.assertRegex(self.append(BINARY_LEAF), rb"A OK \[APPENDUID \d+ 1\] APPEND completed")
        self.assertEqual(
            self.fetch(b"a FETCH 1 (BINARY.SIZE[1] BINARY.PEEK[1])"),
            b"* 1 FETCH (BINARY.SIZE[1] 10 BINARY[1] ~{10}\r\n\x00\x01\x02hello\r\n)\r\n"
            b"a OK FETCH completed\r\n",
        )
        self.assertEqual(self.session.send(b"n NOOP\r\n"), b"n OK NOOP completed\r\n")

    def test_body_serves_the_binary_part_base64_encoded(self) -> None:
        self.append(BINARY_LEAF)
        stored = (
            b"Subject: binary\r\n"
            b"Content-Type: application/octet-stream\r\n"
            b"Content-Transfer-Encoding: base64\r\n"
            b"\r\n"
            b"AAECaGVsbG8NCg=="
        )
        self.assertEqual(
            self.fetch(b"a FETCH 1 (RFC822.SIZE BODY.PEEK[] BODYSTRUCTURE)"),
            b"* 1 FETCH (RFC822.SIZE %d BODY[] {%d}\r\n%s BODYSTRUCTURE "
            b'("application" "octet-stream" NIL NIL NIL "base64" 16 NIL NIL NIL NIL))\r\n'
            b"a OK FETCH completed\r\n" % (len(stored), len(stored), stored),
        )

    def test_binary_of_the_whole_message_names_the_binary_encoding(self) -> None:
        """As Dovecot: BINARY[] is the header, saying binary, and the decoded body."""
        self.append(BINARY_LEAF)
        self.assertEqual(
            self.fetch(b"a FETCH 1 (BINARY.SIZE[] BINARY.PEEK[])"),
            b"* 1 FETCH (BINARY.SIZE[] %d BINARY[] ~{%d}\r\n%s)\r\na OK FETCH completed\r\n"
            % (len(BINARY_LEAF), len(BINARY_LEAF), BINARY_LEAF),
        )

    def test_nul_outside_any_part_is_kept_for_binary_and_shown_as_0x80(self) -> None:
        self.assertRegex(self.append(HEADER_ONLY), rb"A OK \[APPENDUID \d+ 1\]")
        self.assertEqual(
            self.fetch(b"a FETCH 1 (BINARY.SIZE[1] BINARY.PEEK[1] BINARY.SIZE[] BINARY.PEEK[])"),
            b"* 1 FETCH (BINARY.SIZE[1] 0 BINARY[1] {0}\r\n BINARY.SIZE[] 3 "
            b"BINARY[] ~{3}\r\nf\x00o)\r\na OK FETCH completed\r\n",
        )
        self.assertEqual(
            self.fetch(b"a FETCH 1 (RFC822.SIZE BODY.PEEK[] BODY.PEEK[HEADER] RFC822.HEADER)"),
            b"* 1 FETCH (RFC822.SIZE 3 BODY[] {3}\r\nf\x80o BODY[HEADER] {3}\r\nf\x80o "
            b"RFC822.HEADER {3}\r\nf\x80o)\r\na OK FETCH completed\r\n",
        )

    def test_multipart_parts_and_preamble(self) -> None:
        self.append(MULTIPART)
        self.assertEqual(
            self.fetch(b"a FETCH 1 (BINARY.PEEK[1] BINARY.PEEK[2] BINARY.SIZE[2] BODY.PEEK[1])"),
            b"* 1 FETCH (BINARY[1] ~{2}\r\n\x00\x01 BINARY[2] ~{8}\r\ntext\x00nul "
            b"BINARY.SIZE[2] 8 BODY[1] {4}\r\nAAE=)\r\na OK FETCH completed\r\n",
        )
        whole = self.fetch(b"b FETCH 1 (BODY.PEEK[] RFC822 BODY.PEEK[TEXT] RFC822.TEXT)")
        self.assertIn(b"pre\x80amble", whole)

    def test_binary_of_a_multipart_gives_back_the_octets_appended(self) -> None:
        """
        BINARY[] decodes every part (as Dovecot does): the parts stored
        base64-encoded come back as appended, their headers naming the
        binary encoding.
        """
        self.append(MULTIPART)
        answer = self.session.send(b"c FETCH 1 (BINARY.SIZE[] BINARY.PEEK[])\r\n")
        expected = MULTIPART.replace(
            b"Content-Type: text/plain\r\n",
            b"Content-Type: text/plain\r\nContent-Transfer-Encoding: binary\r\n",
        )
        self.assertEqual(
            answer,
            b"* 1 FETCH (BINARY.SIZE[] %d BINARY[] ~{%d}\r\n%s)\r\nc OK FETCH completed\r\n"
            % (len(expected), len(expected), expected),
        )

    def test_nul_in_a_header_field_is_u_fffd_in_envelope(self) -> None:
        self.append(NUL_SUBJECT)
        self.assertEqual(
            self.fetch(b"a FETCH 1 ENVELOPE"),
            b"* 1 FETCH (ENVELOPE (NIL {7}\r\ns\xef\xbf\xbdubj "
            b"NIL NIL NIL NIL NIL NIL NIL NIL))\r\na OK FETCH completed\r\n",
        )

    def test_partial_fetches_of_nul_data(self) -> None:
        self.append(HEADER_ONLY)
        self.assertEqual(
            self.fetch(b"a FETCH 1 (BINARY.PEEK[]<1.1> BODY.PEEK[]<1.2>)"),
            b"* 1 FETCH (BINARY[]<1> ~{1}\r\n\x00 BODY[]<1> {2}\r\n\x80o)\r\n"
            b"a OK FETCH completed\r\n",
        )

    def test_large_messages_streamed_and_in_the_worker(self) -> None:
        """Streamed plain literals show NUL as 0x80; a streamed literal8 keeps it."""
        content = bytes(range(256)) * 400
        message = (
            b"Subject: large\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
            b"pre\x00amble "
            + b"x" * 70_000
            + b"\r\n--b\r\nContent-Transfer-Encoding: binary\r\n\r\n"
            + content
            + b"\r\n--b--\r\n"
        )
        self.append(message)
        for threshold in (1 << 40, 1):
            self.patch(largemessages, "LARGE_MESSAGE", threshold)
            answer = self.fetch(b"a FETCH 1 (BODY.PEEK[] BINARY.SIZE[1] BINARY.PEEK[1])")
            self.assertIn(b"pre\x80amble", answer)
            self.assertIn(
                b"BINARY.SIZE[1] %d BINARY[1] ~{%d}\r\n%s)" % (len(content), len(content), content),
                answer,
            )
            self.assertIn(b"a OK FETCH completed", answer)


class StorableTests(SynchronousTestCase):
    limits = MimeLimits()

    def test_messages_without_nul_are_stored_as_sent(self) -> None:
        message = b"Subject: x\r\nContent-Transfer-Encoding: binary\r\n\r\n\xff\xfe\r\n"
        self.assertIs(storable(message, self.limits), message)

    def test_only_identity_encoded_leaf_bodies_are_re_encoded(self) -> None:
        self.assertEqual(
            storable(MULTIPART, self.limits),
            b"Subject: parts\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
            b"pre\x00amble\r\n"
            b"--b\r\nContent-Transfer-Encoding: base64\r\n\r\nAAE=\r\n"
            b"--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            + base64.b64encode(b"text\x00nul")
            + b"\r\n--b--\r\n",
        )
        garbled = b"Content-Transfer-Encoding: base64\r\n\r\nAA\x00EC\r\n"
        self.assertEqual(storable(garbled, self.limits), garbled)
        self.assertEqual(storable(HEADER_ONLY, self.limits), HEADER_ONLY)

    def test_header_rewriting(self) -> None:
        self.assertEqual(
            withTransferEncoding(
                b"A: b\r\nContent-Transfer-Encoding: binary\r\n (folded)\r\nC: d\r\n"
                b"Content-transfer-encoding: 8bit\r\n\r\n",
                b"base64",
            ),
            b"A: b\r\nContent-Transfer-Encoding: base64\r\nC: d\r\n\r\n",
        )
        self.assertEqual(
            withTransferEncoding(b"\r\n", b"base64"), b"Content-Transfer-Encoding: base64\r\n\r\n"
        )

    def test_nested_message_parts(self) -> None:
        inner = b"Subject: inner\r\n\r\n\x00inner\r\n"
        message = b"Content-Type: message/rfc822\r\n\r\n" + inner
        self.assertEqual(
            storable(message, self.limits),
            b"Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.b64encode(b"\x00inner\r\n"),
        )

    @settings(max_examples=300, deadline=None)
    @given(mimeMessages)
    def test_storing_loses_nothing(self, raw: bytes) -> None:
        """Every part decodes to what it did, and only where NUL was do bodies change."""

        def decoded(data: bytes) -> list[tuple[tuple[str, str], bytes]]:
            parts = []
            for part in MimeEntity(data, limits=self.limits).walk():
                if part.isMultipart or part.isMessage:
                    parts.append((part.contentType, b""))
                    continue
                encoding = transferEncoding(part.header)
                try:
                    content = decodeContent(part.body, encoding)
                except UnknownCTE:
                    content = part.body
                parts.append((part.contentType, content))
            return parts

        stored = storable(raw, self.limits)
        self.assertEqual(decoded(stored), decoded(raw))
        for part in MimeEntity(stored, limits=self.limits).walk():
            if b"\x00" in part.body and part.contentType[0] not in ("multipart", "message"):
                self.assertNotIn(transferEncoding(part.header), ("", "7bit", "8bit", "binary"))


class BinaryAppendNetworkTests(TestCase):
    @inlineCallbacks
    def test_append_then_fetch_keeps_the_connection(self) -> Generator[Deferred[Any], Any, None]:
        """Over a socket, with the store's writes in worker threads."""
        fixture = makeRealm(Path(self.mktemp()))
        port = yield listenIMAP(self, fixture)

        def converse() -> bytes:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                reader = s.makefile("rb")
                reader.readline()
                s.sendall(b"l LOGIN %s %s\r\n" % (ALICE.encode(), PASSWORD.encode()))
                s.sendall(b"s SELECT INBOX\r\n")
                s.sendall(b"a APPEND INBOX ~{%d+}\r\n%s\r\n" % (len(HEADER_ONLY), HEADER_ONLY))
                s.sendall(b"a2 APPEND INBOX ~{%d+}\r\n%s\r\n" % (len(BINARY_LEAF), BINARY_LEAF))
                s.sendall(b"f FETCH 1:2 (BINARY.SIZE[1] BINARY.PEEK[1])\r\n")
                s.sendall(b"n NOOP\r\n")
                answer = b""
                while not answer.endswith(b"n OK NOOP completed\r\n"):
                    line = reader.readline()
                    self.assertTrue(line, answer)
                    answer += line
                return answer

        answer = yield inThread(converse)
        self.assertIn(b"* 1 FETCH (BINARY.SIZE[1] 0 BINARY[1] {0}\r\n)\r\n", answer)
        self.assertIn(
            b"* 2 FETCH (BINARY.SIZE[1] 10 BINARY[1] ~{10}\r\n\x00\x01\x02hello\r\n)", answer
        )
        self.assertIn(b"f OK FETCH completed", answer)
