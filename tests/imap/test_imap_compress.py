"""COMPRESS=DEFLATE (RFC 4978) with a real socket and zlib on the client side."""

from __future__ import annotations

import imaplib
import random
import socket
import time
import zlib
from collections.abc import Generator
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import task
from twisted.internet.defer import Deferred, gatherResults, inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase, TestCase

from imap.test_imap_protocol import Session, deliver
from support.imaploop import listenIMAP
from support.net import inThread
from support.realm import ALICE, BOB, PASSWORD, makeRealm


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


class CompressedInputTests(SynchronousTestCase):
    @settings(max_examples=40, deadline=None)
    @given(
        st.lists(st.sampled_from([1, 300, 16_380, 16_384, 40_000]), min_size=1, max_size=8),
        st.lists(st.integers(min_value=1, max_value=70_000), min_size=1, max_size=6),
    )
    def test_pipelined_commands_and_literals_arrive_whole_however_the_input_is_cut(
        self, literals: list[int], cuts: list[int]
    ) -> None:
        """
        Commands with literals of sizes around the inflater's piece size,
        deflated and delivered in arbitrary pieces, each get their answer.
        """
        session = Session(self, max_inflation_ratio=0)
        session.loginDirectly()
        session.send(b"c COMPRESS DEFLATE\r\n")
        commands = b"".join(
            b"a%d APPEND INBOX {%d+}\r\n%s\r\nn%d NOOP\r\n" % (n, size, b"x" * size, n)
            for n, size in enumerate(literals)
        )
        deflater = zlib.compressobj(6, zlib.DEFLATED, -15)
        stream = deflater.compress(commands) + deflater.flush(zlib.Z_SYNC_FLUSH)
        inflater = zlib.decompressobj(-15)
        answers = b""
        position = 0
        for cut in [*cuts, len(stream)]:
            answers += inflater.decompress(session.send(stream[position : position + cut]))
            position += cut
        self.assertEqual(answers.count(b" OK [APPENDUID"), len(literals), answers)
        self.assertEqual(answers.count(b" OK NOOP completed"), len(literals), answers)


class CompressNetworkTests(TestCase):
    @inlineCallbacks
    def test_a_compressed_session_works_and_a_second_compress_is_refused(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        fixture = makeRealm(Path(self.mktemp()))
        body = b"Subject: squeeze\r\n\r\n" + b"the same line again\r\n" * 2000
        deliver(fixture.store(ALICE).getFolder("INBOX"), body)
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
        port = yield listenIMAP(self, makeRealm(Path(self.mktemp())), max_inflation_ratio=0)

        def client() -> bytes:
            imap = CompressClient.compressing(port)
            try:
                imap.send(b"x NOOP " + b"A" * 50_000_000 + b"\r\n")
                return imap.readUntil(b"\r\n")
            finally:
                imap.sock.close()

        self.assertEqual((yield inThread(client)), b"* BAD Line too long\r\n")


def _readUntilEnding(imap: CompressClient, ending: bytes) -> bytes:
    """Everything up to C{ending}, read without re-scanning what came before."""
    chunks = [imap.buffer]
    tail = imap.buffer[-len(ending) :]
    while not tail.endswith(ending):
        data = imap.sock.recv(65536)
        if not data:
            raise EOFError(tail)
        plain = imap.inflater.decompress(data)
        chunks.append(plain)
        tail = (tail + plain)[-len(ending) :]
    imap.buffer = b""
    return b"".join(chunks)


class CompressFairnessTests(TestCase):
    @inlineCallbacks
    def test_a_compressed_flood_behind_a_running_command_is_inflated_as_it_is_parsed(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        """
        Thousands of pipelined commands, a few kilobytes once deflated, sent
        with a command the server is still running: they stay compressed
        until the session reads them, a turn at a time, so another user's
        NOOP is answered at once and the session buffers little inflated input.
        """
        fixture = makeRealm(Path(self.mktemp()))
        inbox = fixture.store(ALICE).getFolder("INBOX")
        for n in range(20):
            deliver(inbox, b"Subject: %d\r\n\r\n" % n + b"body line\r\n" * 500)
        sessions: list[Any] = []
        port = yield listenIMAP(self, fixture, sessions, max_inflation_ratio=0)
        count = 100_000
        flooding = [True]
        peak = [0]

        def sample() -> None:
            peak[0] = max([peak[0], *(session.inflatedBacklog for session in sessions)])

        sampler = task.LoopingCall(sample)
        sampler.start(0.001)
        self.addCleanup(sampler.stop)

        def flood() -> bytes:
            imap = CompressClient.compressing(port)
            try:
                imap.command(b"s SELECT INBOX", b"s")
                imap.send(b"f FETCH 1:* BODY.PEEK[]\r\n" + b"n NOOP\r\n" * count + b"z NOOP\r\n")
                return _readUntilEnding(imap, b"z OK NOOP completed\r\n")
            finally:
                flooding[0] = False
                imap.sock.close()

        def bystander() -> float:
            imap = imaplib.IMAP4("127.0.0.1", port, timeout=30)
            imap.login(BOB, PASSWORD)
            slowest = 0.0
            while flooding[0]:
                started = time.monotonic()
                imap.noop()
                slowest = max(slowest, time.monotonic() - started)
            imap.logout()
            return slowest

        answered, slowest = yield gatherResults([inThread(flood), inThread(bystander)])
        self.assertEqual(answered.count(b"n OK NOOP completed\r\n"), count)
        self.assertIn(b"f OK FETCH completed\r\n", answered)
        self.assertLess(slowest, 0.5)
        self.assertLess(peak[0], 64 * 1024)

    @inlineCallbacks
    def test_input_inflating_beyond_the_ratio_ends_the_session(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        """Ten megabytes of commands deflated to a few kilobytes: a bomb, not mail."""
        port = yield listenIMAP(self, makeRealm(Path(self.mktemp())))

        def client() -> bytes:
            imap = CompressClient.compressing(port)
            try:
                imap.send(b"n NOOP\r\n" * 1_250_000)
                return _readUntilEnding(imap, b"\r\n* BYE Compressed input inflates too much\r\n")
            finally:
                imap.sock.close()

        answered = yield inThread(client)
        self.assertIn(b"n OK NOOP completed\r\n", answered)
        self.assertLess(answered.count(b"n OK"), 200_000)

    @inlineCallbacks
    def test_compressible_messages_append_under_the_default_ratio(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        """
        Two messages of 2.5 MB, plain text (deflating 10:1) and an HTML table
        (30:1), each one literal inside the compressed stream with a command
        pipelined behind it.
        """
        fixture = makeRealm(Path(self.mktemp()))
        port = yield listenIMAP(self, fixture)
        words = [b"mail", b"server", b"inflate", b"ratio", b"message", b"quarterly", b"report"]
        rng = random.Random(7)
        prose = b"Subject: prose\r\n\r\n" + b"\r\n".join(
            b" ".join(rng.choice(words) for _ in range(12)) for _ in range(30_000)
        )
        table = b"Subject: table\r\nContent-Type: text/html\r\n\r\n" + b"".join(
            b'<tr><td class="cell">%d</td><td class="cell">0</td><td class="cell">ok</td></tr>\r\n'
            % i
            for i in range(30_000)
        )

        def client() -> bytes:
            imap = CompressClient.compressing(port)
            try:
                answers = b""
                for n, body in enumerate((table, prose)):
                    imap.send(
                        b"a%d APPEND INBOX {%d+}\r\n%s\r\nn%d NOOP\r\n" % (n, len(body), body, n)
                    )
                    answers += imap.response(b"a%d" % n) + imap.response(b"n%d" % n)
                return answers
            finally:
                imap.sock.close()

        answers = yield inThread(client)
        self.assertEqual(answers.count(b"OK [APPENDUID"), 2, answers)
        self.assertEqual(fixture.inbox(ALICE), [table, prose])
