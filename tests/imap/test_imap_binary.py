"""
BINARY (RFC 3516): FETCH BINARY[section]<partial>, BINARY.PEEK and
BINARY.SIZE return a part with its Content-Transfer-Encoding removed, in a
literal8 when it holds NUL; APPEND takes a literal8.
"""

from __future__ import annotations

import base64
import contextlib
import quopri
import re
from collections.abc import Generator
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from test_imap_protocol import Session, deliver
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.mail import imap4
from twisted.trial.unittest import SynchronousTestCase, TestCase

from support.imaploop import listenIMAP
from support.net import inThread
from support.realm import ALICE, PASSWORD, makeRealm
from tmail.imap import pieces
from tmail.imap.binary import decodeBase64, decodeContent, parseFetchItems
from tmail.imap.charsets import trailingSpaceRemoved

TEXT = "Grüße aus Köln = ok\r\n".encode()
DATA = bytes(range(256))
QP = quopri.encodestring(TEXT)

MULTIPART = (
    b"From: bob@example.test\r\n"
    b"Subject: parts\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="xx"\r\n'
    b"\r\n"
    b"--xx\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n"
    b"\r\n" + QP + b"\r\n"
    b"--xx\r\n"
    b"Content-Type: application/octet-stream\r\n"
    b"Content-Transfer-Encoding: BASE64\r\n"
    b"\r\n" + base64.encodebytes(DATA).replace(b"\n", b"\r\n") + b"\r\n"
    b"--xx\r\n"
    b"Content-Type: text/plain\r\n"
    b"\r\n"
    b"plain text\r\n"
    b"--xx\r\n"
    b"Content-Type: application/octet-stream\r\n"
    b"Content-Transfer-Encoding: x-uuencode\r\n"
    b"\r\n"
    b"begin 644 x\r\n"
    b"--xx--\r\n"
)

SINGLE = (
    b"From: bob@example.test\r\n"
    b"Subject: single\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n" + base64.b64encode(b"hello world") + b"\r\n"
)


class BinaryFetchTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.session = Session(self)
        self.inbox = self.session.store.getFolder("INBOX")
        deliver(self.inbox, MULTIPART)
        deliver(self.inbox, SINGLE)
        self.session.select()

    def send(self, line: bytes) -> bytes:
        return self.session.send(line + b"\r\n")

    def flags(self, uid: int) -> frozenset[str]:
        return next(i.flags for i in self.inbox.messages() if i.uid == uid)

    def test_capability_advertises_binary(self) -> None:
        self.assertIn(b" BINARY", self.send(b"c CAPABILITY").split(b"\r\n")[0])

    def test_quoted_printable_part_is_decoded(self) -> None:
        self.assertEqual(
            self.send(b"a FETCH 1 (BINARY.PEEK[1])"),
            b"* 1 FETCH (BINARY[1] {%d}\r\n%s)\r\na OK FETCH completed\r\n" % (len(TEXT), TEXT),
        )

    def test_base64_part_with_nul_is_sent_as_literal8(self) -> None:
        self.assertEqual(
            self.send(b"a FETCH 1 (BINARY.PEEK[2])"),
            b"* 1 FETCH (BINARY[2] ~{256}\r\n%s)\r\na OK FETCH completed\r\n" % DATA,
        )

    def test_partial_range_of_decoded_content(self) -> None:
        """RFC 3516 4.2: the partial range counts decoded octets."""
        self.assertEqual(
            self.send(b"a FETCH 1 (BINARY.PEEK[2]<65.3> BINARY.PEEK[1]<300.5>)"),
            b"* 1 FETCH (BINARY[2]<65> {3}\r\nABC BINARY[1]<300> {0}\r\n)\r\n"
            b"a OK FETCH completed\r\n",
        )

    def test_binary_size_is_the_decoded_size(self) -> None:
        self.assertEqual(
            self.send(b"a FETCH 1:2 (BINARY.SIZE[1] BINARY.SIZE[2] UID)"),
            b"* 1 FETCH (BINARY.SIZE[1] %d BINARY.SIZE[2] 256 UID 1)\r\n"
            b"* 2 FETCH (BINARY.SIZE[1] 11 BINARY.SIZE[2] 0 UID 2)\r\n"
            b"a OK FETCH completed\r\n" % len(TEXT),
        )

    def test_unencoded_part_and_single_part_message(self) -> None:
        self.assertEqual(
            self.send(b"a UID FETCH 1:2 BINARY.PEEK[1]"),
            b"* 1 FETCH (UID 1 BINARY[1] {%d}\r\n%s)\r\n"
            % (len(TEXT), TEXT)
            + b"* 2 FETCH (UID 2 BINARY[1] {11}\r\nhello world)\r\n"
            b"a OK FETCH completed\r\n",
        )
        self.assertIn(b"BINARY[3] {10}\r\nplain text)", self.send(b"a FETCH 1 BINARY.PEEK[3]"))

    def test_whole_message_has_header_and_decoded_body(self) -> None:
        """The header names the encoding of the body sent with it, as Dovecot's does."""
        header = SINGLE.split(b"\r\n\r\n")[0].replace(b": base64", b": binary") + b"\r\n\r\n"
        self.assertEqual(
            self.send(b"a FETCH 2 BINARY.PEEK[]"),
            b"* 2 FETCH (BINARY[] {%d}\r\n%shello world)\r\na OK FETCH completed\r\n"
            % (len(header) + 11, header),
        )

    def test_missing_part_is_nil(self) -> None:
        self.assertEqual(
            self.send(b"a FETCH 2 BINARY.PEEK[7]"),
            b"* 2 FETCH (BINARY[7] NIL)\r\na OK FETCH completed\r\n",
        )

    def test_unknown_encoding_is_no_unknown_cte(self) -> None:
        """RFC 3516 4.2: a tagged NO [UNKNOWN-CTE]; the other messages are still sent."""
        self.assertEqual(
            self.send(b"a FETCH 1:2 (BINARY.PEEK[4])"),
            b"* 2 FETCH (BINARY[4] NIL)\r\n"
            b"a NO [UNKNOWN-CTE] Cannot decode the content transfer encoding\r\n",
        )
        self.assertTrue(self.send(b"b FETCH 1 BINARY.SIZE[4]").startswith(b"b NO [UNKNOWN-CTE]"))

    def test_binary_sets_seen_and_peek_does_not(self) -> None:
        self.send(b"a FETCH 1 (BINARY.PEEK[1] BINARY.SIZE[2])")
        self.assertNotIn("\\Seen", self.flags(1))
        self.assertEqual(
            self.send(b"a FETCH 1 (BINARY[3])"),
            b"* 1 FETCH (BINARY[3] {10}\r\nplain text FLAGS (\\Seen \\Recent))\r\n"
            b"a OK FETCH completed\r\n",
        )
        self.assertIn("\\Seen", self.flags(1))

    def test_binary_mixes_with_other_items_in_order(self) -> None:
        reply = self.send(
            b"a FETCH 2 (FLAGS BINARY.SIZE[1] BODY.PEEK[HEADER.FIELDS (SUBJECT)] RFC822.SIZE)"
        )
        self.assertEqual(
            reply,
            b"* 2 FETCH (FLAGS (\\Recent) BINARY.SIZE[1] 11 "
            b"BODY[HEADER.FIELDS (SUBJECT)] {19}\r\nSubject: single\r\n\r\n "
            b"RFC822.SIZE %d)\r\na OK FETCH completed\r\n" % len(SINGLE),
        )

    def test_malformed_binary_items_are_bad(self) -> None:
        for items in [
            b"BINARY[MIME]",
            b"BINARY[1MIME]",
            b"BINARY[.TEXT]",
            b"BINARY[1.HEADER.FIELDS]",
            b"BINARY[1.HEADER.FIELDS ()]",
            b"BINARY[0]",
            b"BINARY[1.]",
            b"BINARY",
            b"BINARY.SIZE",
            b"BINARY.SIZE[1]<0.5>",
            b"BINARY[1]<0.0>",
            b"BINARY.FOO[1]",
            b"(BINARY[1] NOSUCH)",
            b"(BINARY[1]",
        ]:
            reply = self.send(b"a FETCH 1 " + items)
            self.assertTrue(reply.startswith(b"a BAD "), (items, reply))
        self.assertNotIn("\\Seen", self.flags(1))

    def test_header_text_and_mime_sections_are_served_as_stored(self) -> None:
        """
        BINARY[1.MIME], BINARY[HEADER.FIELDS (...)]: beyond RFC 3516's
        grammar, as Dovecot takes them; they carry no transfer encoding to
        remove, so they are the bytes BODY[...] serves.
        """
        for section in [b"1.MIME", b"HEADER", b"2.MIME", b"HEADER.FIELDS (SUBJECT)"]:
            body = self.send(b"a FETCH 1 BODY.PEEK[%s]" % section)
            binary = self.send(b"a FETCH 1 BINARY.PEEK[%s]" % section)
            self.assertEqual(binary, body.replace(b"BODY[", b"BINARY["), section)
            size = body.split(b"{", 1)[1].split(b"}", 1)[0]
            self.assertEqual(
                self.send(b"a FETCH 1 BINARY.SIZE[%s]" % section),
                b"* 1 FETCH (BINARY.SIZE[%s] %s)\r\na OK FETCH completed\r\n" % (section, size),
            )
        self.assertEqual(
            self.send(b"a FETCH 1 (BINARY.PEEK[1.mime]<14.10> BINARY.SIZE[header.fields.not (x)])"),
            b"* 1 FETCH (BINARY[1.MIME]<14> {10}\r\ntext/plain "
            b"BINARY.SIZE[HEADER.FIELDS.NOT (X)] %d)\r\na OK FETCH completed\r\n"
            % (MULTIPART.index(b"\r\n\r\n--xx") + 4),
        )
        self.assertNotIn("\\Seen", self.flags(1))

    def test_text_and_an_encapsulated_message_are_decoded(self) -> None:
        """
        BINARY[TEXT] is the message's decoded body; a message/rfc822 part is
        its header, naming the binary encoding, and its decoded body, as
        BINARY[] serves a whole message (as Dovecot serves them).
        """
        inner = (
            b"Subject: inner\r\n"
            b"Content-Transfer-Encoding: base64\r\n"
            b"\r\n" + base64.b64encode(b"inner\x00body") + b"\r\n"
        )
        deliver(
            self.inbox,
            b"From: bob@example.test\r\n"
            b'Content-Type: multipart/mixed; boundary="m"\r\n'
            b"\r\n"
            b"--m\r\n"
            b"Content-Type: message/rfc822\r\n"
            b"\r\n" + inner + b"--m--\r\n",
        )
        self.session.send(b"n NOOP\r\n")
        header = inner.split(b"\r\n\r\n")[0].replace(b": base64", b": binary") + b"\r\n\r\n"
        self.assertEqual(
            self.send(b"a FETCH 3 (BINARY.PEEK[1] BINARY.SIZE[1] BINARY.PEEK[1.TEXT])"),
            b"* 3 FETCH (BINARY[1] ~{%d}\r\n%sinner\x00body BINARY.SIZE[1] %d "
            b"BINARY[1.TEXT] ~{10}\r\ninner\x00body)\r\na OK FETCH completed\r\n"
            % (len(header) + 10, header, len(header) + 10),
        )
        self.assertEqual(
            self.send(b"a FETCH 2 (BINARY.PEEK[TEXT] BINARY.PEEK[1.TEXT])"),
            b"* 2 FETCH (BINARY[TEXT] {11}\r\nhello world BINARY[1.TEXT] {0}\r\n)\r\n"
            b"a OK FETCH completed\r\n",
        )

    def test_binary_text_of_a_multipart_decodes_each_part_it_can(self) -> None:
        """
        BINARY[TEXT] holds every part decoded, its header naming the binary
        encoding; a part in an encoding tmail cannot remove stays as stored
        (only a BINARY of that part itself is NO [UNKNOWN-CTE]).
        """
        answer = self.send(b"a FETCH 1 (BINARY.SIZE[TEXT] BINARY.PEEK[TEXT])")
        text = MULTIPART.split(b"\r\n\r\n", 1)[1]
        expected = (
            text.replace(QP, TEXT)
            .replace(base64.encodebytes(DATA).replace(b"\n", b"\r\n"), DATA)
            .replace(b": quoted-printable", b": binary")
            .replace(b": BASE64", b": binary")
        )
        self.assertIn(b"x-uuencode\r\n\r\nbegin 644 x\r\n--xx--", expected)
        self.assertEqual(
            answer,
            b"* 1 FETCH (BINARY.SIZE[TEXT] %d BINARY[TEXT] ~{%d}\r\n%s)\r\n"
            b"a OK FETCH completed\r\n" % (len(expected), len(expected), expected),
        )

    def test_partial_range_without_a_length_runs_to_the_end(self) -> None:
        """C{<n>} alone (as Dovecot takes it): the decoded content from octet n on."""
        self.assertEqual(
            self.send(b"a FETCH 1 (BINARY.PEEK[2]<250> BINARY.PEEK[1]<300>)"),
            b"* 1 FETCH (BINARY[2]<250> {6}\r\n%s BINARY[1]<300> {0}\r\n)\r\n"
            b"a OK FETCH completed\r\n" % DATA[250:],
        )

    def test_quoted_printable_drops_blanks_that_end_a_line(self) -> None:
        """
        RFC 2045 6.7 (3): blanks at the end of an encoded line were added in
        transport and are deleted; those written as =20 or =09 stay, and a
        soft line break followed by blanks is still one.
        """
        deliver(
            self.inbox,
            b"From: bob@example.test\r\n"
            b"Content-Transfer-Encoding: quoted-printable\r\n"
            b"\r\n"
            b"one \t \r\n"
            b"two=20=09\r\n"
            b"soft= \t\r\n"
            b"ly  \r\n"
            b"last \t",
        )
        self.session.send(b"n NOOP\r\n")
        decoded = b"one\r\ntwo \t\r\nsoftly\r\nlast"
        self.assertEqual(
            self.send(b"a FETCH 3 (BINARY.SIZE[1] BINARY.PEEK[1])"),
            b"* 3 FETCH (BINARY.SIZE[1] %d BINARY[1] {%d}\r\n%s)\r\na OK FETCH completed\r\n"
            % (len(decoded), len(decoded), decoded),
        )


class BinaryAppendTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.session = Session(self)
        self.inbox = self.session.store.getFolder("INBOX")
        self.session.loginDirectly()

    def stored(self) -> list[bytes]:
        out = []
        for info in self.inbox.messages():
            with self.inbox.openMessage(info.uid) as f:
                out.append(f.read())
        return out

    def test_append_literal8_stores_the_bytes_as_sent(self) -> None:
        message = b"Subject: raw\r\n\r\n8bit \xff\xfe and a bare\nline feed\r\n"
        reply = self.session.send(b"a APPEND INBOX ~{%d}\r\n" % len(message))
        self.assertEqual(reply, b"+ Ready for literal data\r\n")
        reply = self.session.send(message + b"\r\n")
        self.assertRegex(reply, rb"^a OK \[APPENDUID \d+ 1\] APPEND completed\r\n$")
        self.assertEqual(self.stored(), [message])

    def test_append_nonsynchronizing_literal8(self) -> None:
        message = b"Subject: one\r\n\r\nbody\r\n"
        reply = self.session.send(
            b"a APPEND INBOX (\\Seen) ~{%d+}\r\n%s\r\n" % (len(message), message)
        )
        self.assertRegex(reply, rb"^a OK \[APPENDUID \d+ 1\] APPEND completed\r\n$")
        self.assertEqual(self.stored(), [message])

    def test_append_literal8_with_nul_is_stored_base64_encoded(self) -> None:
        """RFC 3516 4.4 (test_imap_binary_append has the FETCH side)."""
        message = b"Subject: nul\r\n\r\na\x00b\r\n"
        reply = self.session.send(b"a APPEND INBOX ~{%d+}\r\n%s\r\n" % (len(message), message))
        self.assertRegex(reply, rb"^a OK \[APPENDUID \d+ 1\] APPEND completed\r\n$")
        self.assertEqual(
            self.stored(),
            [b"Subject: nul\r\nContent-Transfer-Encoding: base64\r\n\r\nYQBiDQo="],
        )
        self.assertEqual(self.session.send(b"b NOOP\r\n"), b"b OK NOOP completed\r\n")

    def test_refused_literal8_is_not_run_as_commands(self) -> None:
        reply = self.session.send(b"a APPEND nosuch ~{12+}\r\nb LOGOUT\r\nxx\r\n")
        self.assertEqual(reply, b"a NO [TRYCREATE] No such mailbox\r\n")
        self.assertEqual(self.session.send(b"c NOOP\r\n"), b"c OK NOOP completed\r\n")

    def test_multiappend_mixes_literal8_and_literal(self) -> None:
        first = b"Subject: one\r\n\r\nbinary\n"
        second = b"Subject: two\r\n\r\ntext\n"
        reply = self.session.send(
            b"a APPEND INBOX ~{%d+}\r\n%s {%d+}\r\n%s\r\n"
            % (len(first), first, len(second), second)
        )
        self.assertRegex(reply, rb"^a OK \[APPENDUID \d+ 1:2\] APPEND completed\r\n$")
        self.assertEqual(self.stored(), [first, b"Subject: two\r\n\r\ntext\r\n"])


class DecodingTests(SynchronousTestCase):
    @given(st.binary(max_size=2000))
    def test_base64_encoded_bytes_decode_to_themselves(self, data: bytes) -> None:
        self.assertEqual(decodeBase64(base64.b64encode(data)), data)
        wrapped = base64.encodebytes(data).replace(b"\n", b"\r\n")
        self.assertEqual(decodeContent(wrapped, " Base64 "), data)

    @given(st.binary(max_size=2000))
    def test_quoted_printable_encoded_bytes_decode_to_themselves(self, data: bytes) -> None:
        encoded = quopri.encodestring(data.replace(b"\r", b"").replace(b"\n", b""))
        self.assertEqual(
            decodeContent(encoded, "quoted-printable"),
            data.replace(b"\r", b"").replace(b"\n", b""),
        )

    @given(st.binary(max_size=500))
    def test_any_base64_body_decodes_without_error(self, data: bytes) -> None:
        decodeBase64(data)

    @given(st.binary(max_size=80))
    def test_any_fetch_item_list_parses_or_is_bad(self, junk: bytes) -> None:
        for line in (b"BINARY" + junk, b"(BINARY[1] " + junk + b")", junk + b" BINARY[1]"):
            with contextlib.suppress(imap4.IllegalClientResponse):
                parseFetchItems(line)

    def test_quoted_printable_soft_line_breaks_join_lines(self) -> None:
        self.assertEqual(
            decodeContent(b"abc=\r\ndef=3D\r\nnext", "Quoted-Printable"), b"abcdef=\r\nnext"
        )

    @given(st.lists(st.sampled_from([b" ", b"\t", b"\r", b"\n", b"\r\n", b"a", b"="]), max_size=60))
    def test_blanks_that_end_lines_go_whatever_the_piece_size(self, parts: list[bytes]) -> None:
        data = b"".join(parts)
        expected = re.sub(rb"[ \t]+(?=\r?\n)", b"", data).rstrip(b" \t")
        original = pieces.PIECE
        try:
            for size in (1, 2, 3, 7):
                pieces.PIECE = size
                self.assertEqual(trailingSpaceRemoved(b"xx" + data, 2, 2 + len(data)), expected)
        finally:
            pieces.PIECE = original

    def test_unknown_encodings_raise(self) -> None:
        from tmail.imap.binary import UnknownCTE

        for name in ["x-uuencode", "gzip", "base65"]:
            self.assertRaises(UnknownCTE, decodeContent, b"x", name)


class BinaryNetworkTests(TestCase):
    timeout = 20

    @inlineCallbacks
    def test_imaplib_fetches_a_decoded_part(self) -> Generator[Deferred[Any], Any, None]:
        fixture = makeRealm(Path(self.mktemp()))
        deliver(fixture.store(ALICE).getFolder("INBOX"), MULTIPART)
        port = yield listenIMAP(self, fixture)

        def client() -> tuple[Any, Any, Any]:
            import imaplib

            imap = imaplib.IMAP4("127.0.0.1", port, timeout=10)
            try:
                imap.login(ALICE, PASSWORD)
                imap.select("INBOX")
                text = imap.fetch("1", "(BINARY.PEEK[1])")
                size = imap.fetch("1", "(BINARY.SIZE[2])")
                flags = imap.fetch("1", "(FLAGS)")
                return text, size, flags
            finally:
                imap.logout()

        text, size, flags = yield inThread(client)
        self.assertEqual(text[0], "OK")
        self.assertEqual(text[1][0], (b"1 (BINARY[1] {%d}" % len(TEXT), TEXT))
        self.assertEqual(size[1], [b"1 (BINARY.SIZE[2] 256)"])
        self.assertNotIn(b"\\Seen", flags[1][0])
