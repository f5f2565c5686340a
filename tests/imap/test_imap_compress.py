"""COMPRESS=DEFLATE (RFC 4978) with a real socket and zlib on the client side."""

from __future__ import annotations

import socket
import zlib
from collections.abc import Generator
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase, TestCase

from imap.test_imap_protocol import Session, deliver
from support.imaploop import listenIMAP
from support.net import inThread
from support.realm import ALICE, PASSWORD, makeRealm


class CompressClient:
    """A raw IMAP client that turns on deflate after COMPRESS, as RFC 4978 section 5 shows."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buffer = b""
        self.inflater: Any = None
        self.deflater: Any = None
        self.readUntil(b"\r\n")

    def send(self, data: bytes) -> None:
        if self.deflater is not None:
            data = self.deflater.compress(data) + self.deflater.flush(zlib.Z_SYNC_FLUSH)
        self.sock.sendall(data)

    def readUntil(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(self.buffer)
            self.buffer += self.inflater.decompress(chunk) if self.inflater else chunk
        data, _, self.buffer = self.buffer.partition(marker)
        return data + marker

    def command(self, line: bytes, tag: bytes) -> bytes:
        self.send(line + b"\r\n")
        return self.response(tag)

    def response(self, tag: bytes) -> bytes:
        """Lines up to and including the tagged one."""
        lines = b""
        while True:
            line = self.readUntil(b"\r\n")
            lines += line
            if line.startswith(tag + b" "):
                return lines

    @classmethod
    def compressing(cls, port: int) -> CompressClient:
        """A client logged in as Alice with compression on."""
        imap = cls(port)
        imap.command(b'a LOGIN %s "%s"' % (ALICE.encode(), PASSWORD.encode()), b"a")
        imap.compress()
        return imap

    def compress(self) -> bytes:
        self.send(b"c COMPRESS DEFLATE\r\n")
        answer = self.readUntil(b"\r\n")
        self.inflater = zlib.decompressobj(-15)
        self.deflater = zlib.compressobj(6, zlib.DEFLATED, -15)
        return answer


class CompressTranscriptTests(SynchronousTestCase):
    def test_unknown_mechanism_is_bad_and_compress_needs_a_login(self) -> None:
        session = Session(self)
        self.assertEqual(
            session.send(b"a COMPRESS DEFLATE\r\n"), b"a BAD Command not allowed now\r\n"
        )
        session.loginDirectly()
        self.assertEqual(
            session.send(b"b COMPRESS LZW\r\n"), b"b BAD Unknown compression mechanism\r\n"
        )


class CompressNetworkTests(TestCase):
    @inlineCallbacks
    def test_a_compressed_session_works_and_a_second_compress_is_refused(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        fixture = makeRealm(Path(self.mktemp()))
        body = b"Subject: squeeze\r\n\r\n" + b"the same line again\r\n" * 2000
        deliver(fixture.realm.storeFor(ALICE).getFolder("INBOX"), body)
        port = yield listenIMAP(self, fixture)

        def client() -> tuple[bytes, ...]:
            imap = CompressClient(port)
            try:
                login = imap.command(b'a LOGIN %s "%s"' % (ALICE.encode(), PASSWORD.encode()), b"a")
                answer = imap.compress()
                # Pipelined: both commands arrive in one compressed write.
                imap.send(b"s SELECT INBOX\r\nf FETCH 1 BODY.PEEK[]\r\n")
                selected = imap.response(b"s")
                fetched = imap.response(b"f")
                again = imap.command(b"g COMPRESS DEFLATE", b"g")
                # A literal, and a command pipelined right behind it.
                imap.send(b"h APPEND INBOX {8+}\r\nSubject:\r\ni NOOP\r\n")
                appended = imap.response(b"h") + imap.response(b"i")
                return login, answer, selected, fetched, again + appended
            finally:
                imap.sock.close()

        login, answer, selected, fetched, again = yield inThread(client)
        self.assertIn(b"a OK", login)
        self.assertEqual(answer, b"c OK DEFLATE active\r\n")
        self.assertIn(b"* 1 EXISTS", selected)
        self.assertIn(b"{%d}\r\n%s)" % (len(body), body), fetched)
        self.assertIn(b"g NO [COMPRESSIONACTIVE] DEFLATE is active already\r\n", again)
        self.assertIn(b"h OK [APPENDUID", again)
        self.assertTrue(again.endswith(b"i OK NOOP completed\r\n"), again)

    @inlineCallbacks
    def test_garbage_instead_of_deflate_data_ends_the_session(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        port = yield listenIMAP(self, makeRealm(Path(self.mktemp())))

        def client() -> bytes:
            imap = CompressClient.compressing(port)
            try:
                imap.sock.sendall(b"\xff\xfe not deflate at all\r\n")
                return imap.sock.recv(100)
            finally:
                imap.sock.close()

        self.assertEqual((yield inThread(client)), b"")

    @inlineCallbacks
    def test_a_deflate_bomb_is_parsed_in_pieces_and_meets_the_line_limit(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        port = yield listenIMAP(self, makeRealm(Path(self.mktemp())))

        def client() -> bytes:
            imap = CompressClient.compressing(port)
            try:
                imap.send(b"x NOOP " + b"A" * 50_000_000 + b"\r\n")
                return imap.readUntil(b"\r\n")
            finally:
                imap.sock.close()

        self.assertEqual((yield inThread(client)), b"* BAD Line too long\r\n")
