"""
SEARCH, SORT and THREAD of a large folder run a message at a time among
the other sessions' work: another user's NOOP is answered at once, the
answers are those of the same computation run in one go, the session's
view (and RFC 3501 7.4.1's rule on EXPUNGE) holds while other sessions
expunge, and a client that goes away stops the work.
"""

from __future__ import annotations

import imaplib
import socket
import threading
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twisted.internet import task
from twisted.internet.defer import Deferred, gatherResults, inlineCallbacks
from twisted.trial.unittest import TestCase

from support.imaploop import listenIMAP
from support.net import eventually, inThread, readLine, readUntil
from support.realm import ALICE, BOB, PASSWORD, makeRealm
from tmail.imap.mailbox import IMAPMailbox
from tmail.imap.session import HOLD_LIMIT
from tmail.imap.sort import MessageFacts
from tmail.imap.thread import formatThreads, threadMessages

#: Messages in the large folder, and how many of them hold the needle.
COUNT = 4000
NEEDLE_EVERY = 7

#: The trace fields of a message that came a long way.
_RECEIVED = b"".join(
    b"Received: from relay%d.example.net (relay%d.example.net [192.0.2.%d])\r\n"
    b"\tby relay%d.example.net with ESMTPS id 4Xy%dZz; Mon, 1 Jan 2024 12:00:%02d +0000\r\n"
    % (hop, hop, hop, hop + 1, hop, hop)
    for hop in range(20)
)
_FILLER = b"".join(b"line %d of a long enough text part, " % n for n in range(120))


def _message(n: int) -> bytes:
    """A two-part message; every NEEDLE_EVERY-th one says "needle" in quoted-printable HTML."""
    topic = n % 40
    parent = b"References: <m%d@example.test>\r\n" % (n - 40) if n >= 40 else b""
    html = b"<p>needle=20here</p>" if n % NEEDLE_EVERY == 0 else b"<p>nothing</p>"
    return (
        _RECEIVED + b"From: sender%d@example.test\r\n"
        b"Subject: %sTopic %d\r\n"
        b"Message-ID: <m%d@example.test>\r\n%s"
        b"Content-Type: multipart/alternative; boundary=alt\r\n\r\n"
        b"--alt\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n%s\r\n"
        b"--alt\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        b"%s %s\r\n--alt--\r\n"
    ) % (n % 97, b"Re: " if parent else b"", topic, n, parent, _FILLER, html, _FILLER)


@dataclass
class Beside:
    """How long a command took, and the NOOPs another user sent meanwhile."""

    duration: float = 0.0
    latencies: list[float] = field(default_factory=list)


def fillInbox(maildir: Path, count: int) -> None:
    """Write C{count} messages into a Maildir's C{cur/}, as another MDA would."""
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    for n in range(count):
        data = _message(n)
        name = f"{1_700_000_000 + n}.M{n}P1Q1.test,S={len(data)}:2,S"
        (maildir / "cur" / name).write_bytes(data)


class LongCommandTests(TestCase):
    @inlineCallbacks
    def setUp(self) -> Generator[Deferred[Any], Any, None]:
        self.fixture = makeRealm(Path(self.mktemp()))
        store = self.fixture.store(ALICE)
        store.getFolder("INBOX")
        fillInbox(store.root, COUNT)
        self.inbox = store.getFolder("INBOX")
        self.fixture.store(BOB).getFolder("INBOX")
        self.sessions: list[Any] = []
        self.port = yield listenIMAP(self, self.fixture, self.sessions)

    def expected(self, command: str) -> bytes:
        """The answer computed in one go, as the server did before."""
        mailbox = IMAPMailbox(self.inbox)
        if command.startswith("SEARCH"):
            hits = mailbox.search([b"TEXT", b"needle"], uid=False)
            return b" ".join(b"%d" % hit for hit in hits)
        matches = [MessageFacts(seq, m) for seq, m in mailbox.searchMessages([b"ALL"])]
        return formatThreads(threadMessages(b"REFERENCES", matches), uid=False)

    def runBeside(self, command: str, *arguments: str) -> Deferred[tuple[list[Any], Beside]]:
        """
        Alice runs a command on her large INBOX while Bob, already logged
        in, sends NOOPs; her answer, how long it took, and how long each of
        Bob's NOOPs sent meanwhile took.
        """
        bobReady = threading.Event()
        running = threading.Event()
        done = threading.Event()
        beside = Beside()

        def alice() -> list[Any]:
            with imaplib.IMAP4("127.0.0.1", self.port, timeout=120) as imap:
                imap.login(ALICE, PASSWORD)
                imap.select("INBOX")
                bobReady.wait(60)
                running.set()
                started = time.monotonic()
                try:
                    status, data = imap._simple_command(command, *arguments)
                finally:
                    beside.duration = time.monotonic() - started
                    done.set()
                self.assertEqual(status, "OK")
                _, data = imap._untagged_response(status, data, command)
                return data

        def bob() -> None:
            with imaplib.IMAP4("127.0.0.1", self.port, timeout=120) as imap:
                imap.login(BOB, PASSWORD)
                imap.select("INBOX")
                bobReady.set()
                running.wait(60)
                while not done.is_set():
                    started = time.monotonic()
                    imap.noop()
                    beside.latencies.append(time.monotonic() - started)

        answered = gatherResults([inThread(alice), inThread(bob)])
        return answered.addCallback(lambda results: (results[0], beside))

    def assertOthersServed(self, beside: Beside) -> None:
        """
        Bob's NOOPs were answered at once: within 0.5 s, and within half
        the time the command took (run in one go, the reactor answered
        nobody until it was done, so the first NOOP waited all of it).
        """
        bound = min(0.5, beside.duration / 2)
        self.assertLess(max(beside.latencies, default=0.0), bound, beside)
        self.assertGreater(len(beside.latencies), 2, beside)

    @inlineCallbacks
    def test_search_text_of_a_large_folder_lets_other_sessions_in(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        (answer,), beside = yield self.runBeside("SEARCH", "TEXT", "needle")
        self.assertEqual(answer, self.expected("SEARCH"))
        self.assertEqual(len(answer.split()), len(range(0, COUNT, NEEDLE_EVERY)))
        self.assertOthersServed(beside)

    @inlineCallbacks
    def test_sort_of_a_large_folder_lets_other_sessions_in(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        (answer,), beside = yield self.runBeside("SORT", "(SUBJECT)", "UTF-8", "BODY", "needle")
        numbers = [int(n) for n in answer.split()]
        # Base subjects "Topic 0" ... "Topic 39" (Re: dropped), ties by sequence number.
        self.assertEqual(numbers, sorted(numbers, key=lambda seq: (f"{(seq - 1) % 40}", seq)))
        self.assertEqual(sorted(numbers), [n + 1 for n in range(0, COUNT, NEEDLE_EVERY)])
        self.assertOthersServed(beside)

    @inlineCallbacks
    def test_thread_of_a_large_folder_lets_other_sessions_in(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        (answer,), beside = yield self.runBeside("THREAD", "REFERENCES", "UTF-8", "ALL")
        self.assertEqual(answer, self.expected("THREAD"))
        self.assertEqual(answer.count(b"(1 41 81 "), 1)
        self.assertOthersServed(beside)

    @inlineCallbacks
    def test_fetch_of_every_message_of_a_large_folder_lets_other_sessions_in(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        fetched, beside = yield self.runBeside("FETCH", "1:*", "(BODY.PEEK[])")
        bodies = [item[1] for item in fetched if isinstance(item, tuple)]
        self.assertEqual(len(bodies), COUNT)
        self.assertEqual(bodies[-1], _message(COUNT - 1))
        self.assertOthersServed(beside)

    @inlineCallbacks
    def test_expunges_by_others_during_a_search_wait_for_its_end(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        """
        RFC 3501 7.4.1: no EXPUNGE while SEARCH runs; the sequence numbers
        it answers are those of the view it started with.
        """
        uids = [info.uid for info in self.inbox.messages()]
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=60)
        self.addCleanup(sock.close)

        def command(line: bytes, tag: bytes) -> bytes:
            sock.sendall(line + b"\r\n")
            lines = []
            while not lines or not lines[-1].startswith(tag + b" "):
                lines.append(readLine(sock))
            return b"".join(lines)

        yield inThread(readLine, sock)
        yield inThread(command, b'a LOGIN %s "%s"' % (ALICE.encode(), PASSWORD.encode()), b"a")
        yield inThread(command, b"s SELECT INBOX", b"s")
        searched = inThread(command, b"f SEARCH TEXT needle", b"f")
        yield eventually(lambda: any(s._running is not None for s in self.sessions))
        doomed = [uids[0], uids[COUNT - 3]]
        self.inbox.expunge(doomed)
        answer = yield searched
        self.assertNotIn(b"EXPUNGE", answer)
        self.assertTrue(answer.endswith(b"f OK SEARCH completed\r\n"), answer[-200:])
        hits = {int(n) for n in answer.split(b"\r\n")[0].split()[2:]}
        needles = {n + 1 for n in range(0, COUNT, NEEDLE_EVERY)}
        # An expunged message matches if it was read before it went: the
        # others keep the numbers of the view the search started with.
        self.assertLessEqual(needles - {1, COUNT - 2}, hits)
        self.assertLessEqual(hits, needles)
        after = yield inThread(command, b"n NOOP", b"n")
        self.assertIn(b"* %d EXPUNGE\r\n* 1 EXPUNGE\r\n" % (COUNT - 2), after)

    @inlineCallbacks
    def test_a_client_that_goes_away_stops_its_search(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=60)
        self.addCleanup(sock.close)
        yield inThread(readLine, sock)
        sock.sendall(b'a LOGIN %s "%s"\r\n' % (ALICE.encode(), PASSWORD.encode()))
        sock.sendall(b"s SELECT INBOX\r\nf SEARCH TEXT needle\r\n")
        yield eventually(lambda: any(s._running is not None for s in self.sessions))
        (session,) = [s for s in self.sessions if s._running is not None]
        outcome: list[Any] = []
        session._running.whenDone().addCallbacks(
            lambda _: outcome.append("finished"), lambda failure: outcome.append(failure.type)
        )
        sock.close()
        yield eventually(lambda: bool(outcome), within=5.0)
        self.assertEqual(outcome, [task.TaskStopped])
        self.assertIsNone(session._running)

    @inlineCallbacks
    def test_commands_sent_during_a_long_search_wait_and_are_held_within_bounds(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        """
        While the search runs the session reads, to notice a hangup, but
        holds no more than about HOLD_LIMIT of what the client sends; the
        commands run, in order, after the search.
        """
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=60)
        self.addCleanup(sock.close)
        yield inThread(readLine, sock)
        sock.sendall(b'a LOGIN %s "%s"\r\ns SELECT INBOX\r\n' % (ALICE.encode(), PASSWORD.encode()))
        sock.sendall(b"f SEARCH TEXT needle\r\n")
        yield eventually(lambda: any(s._running is not None for s in self.sessions))
        (session,) = [s for s in self.sessions if s._running is not None]
        held = [0]

        def sample() -> None:
            held[0] = max(held[0], session._held)

        sampler = task.LoopingCall(sample)
        sampler.start(0.001)
        self.addCleanup(sampler.stop)
        count = 40_000
        flood = inThread(sock.sendall, b"n NOOP\r\n" * count + b"z NOOP\r\n")
        answered = yield inThread(readUntil, sock, b"z OK NOOP completed\r\n")
        yield flood
        searched = answered.index(b"f OK SEARCH completed")
        self.assertLess(searched, answered.index(b"n OK NOOP completed"))
        self.assertEqual(answered.count(b"n OK NOOP completed\r\n"), count)
        self.assertLessEqual(held[0], HOLD_LIMIT + 64 * 1024)
