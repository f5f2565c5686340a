"""
Limits on what one command may hold: the bytes of its lines and literals
(C{imap.max_command_size}, APPEND's message data aside) and the nesting of
its lists and search keys (C{imap.max_nesting}).  Over a limit is C{BAD}
with a response code; a non-synchronizing literal already on its way is
read and dropped, never run; no traceback reaches the log.
"""

from __future__ import annotations

import imaplib
import socket
import time
import tracemalloc
from collections.abc import Generator
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_imap_protocol import MESSAGE, Session, deliver
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase, TestCase

from support.imaploop import listenIMAP
from support.net import eventually, inThread, readLine, readUntil
from support.realm import ALICE, PASSWORD, makeRealm

TOOBIG = b"BAD [TOOBIG] Command too large\r\n"
DEEP_KEYS = b"BAD [LIMIT] Search keys nested too deeply\r\n"
DEEP_PARENS = b"BAD [LIMIT] Parentheses nested too deeply\r\n"


class CommandSizeTests(SynchronousTestCase):
    def session(self, **options: Any) -> Session:
        session = Session(self, **options)
        deliver(session.store.getFolder("INBOX"))
        session.select()
        return session

    def test_search_literals_over_max_command_size_are_refused_and_dropped(self) -> None:
        """
        1,500 literals of 60,000 bytes in one SEARCH held 112 MB.  Past 1 MiB
        the command is C{BAD [TOOBIG]}; the literals still on their way are
        read and dropped (one holds a command: it is not run), and memory
        stays flat while they stream in.
        """
        session = self.session()
        chunk = b"x" * 59990 + b"\r\nz LOGOUT"
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            session.server.dataReceived(b"a SEARCH SUBJECT {60000+}\r\n")
            replies = b""
            for _ in range(300):
                session.server.dataReceived(chunk + b" SUBJECT {60000+}\r\n")
                session.pump()
                replies += session.take()
            session.server.dataReceived(chunk + b"\r\n")
            peak = tracemalloc.get_traced_memory()[1] - before
        finally:
            tracemalloc.stop()
        replies += session.send(b"b NOOP\r\n")
        self.assertEqual(replies, b"a " + TOOBIG + b"b OK NOOP completed\r\n")
        self.assertLess(peak, 8 * 1024 * 1024)
        self.assertFalse(session.transport.disconnecting)

    def test_synchronizing_literal_over_the_size_is_refused_before_it_is_sent(self) -> None:
        session = self.session(max_command_size=10_000)
        self.assertEqual(
            session.send(b"a SEARCH SUBJECT {6000}\r\n"), b"+ Ready for literal data\r\n"
        )
        self.assertEqual(session.send(b"x" * 6000 + b" BODY {6000}\r\n"), b"a " + TOOBIG)
        self.assertEqual(session.send(b"b NOOP\r\n"), b"b OK NOOP completed\r\n")

    def test_lines_joined_by_literals_count_too(self) -> None:
        """Many long lines, each ending in a small literal, add up to the limit."""
        session = self.session(max_command_size=2000)
        keys = b"UNSEEN " * 100
        reply = session.send(b"a SEARCH " + keys + b"SUBJECT {1+}\r\n")
        reply += session.send((b"x " + keys + b"SUBJECT {1+}\r\n") * 5 + b"x\r\n")
        self.assertEqual(reply, b"a " + TOOBIG)
        self.assertEqual(session.send(b"b NOOP\r\n"), b"b OK NOOP completed\r\n")

    def test_first_line_over_the_size(self) -> None:
        session = self.session(max_command_size=100)
        self.assertEqual(session.send(b"a SEARCH " + b"ALL " * 50 + b"\r\n"), b"a " + TOOBIG)
        self.assertEqual(
            session.send(b"b SEARCH ALL\r\n"), b"* SEARCH 1\r\nb OK SEARCH completed\r\n"
        )

    def test_astring_and_id_literals_count(self) -> None:
        """LOGIN (before authentication), CREATE and ID literals are counted; the rest dropped."""
        session = Session(self, max_command_size=1000)
        reply = session.send(
            b"a LOGIN {600+}\r\n" + b"u" * 600 + b" {600+}\r\n" + b"p" * 600 + b"\r\n"
        )
        self.assertEqual(reply, b"a " + TOOBIG)
        reply = session.send(
            b'b ID ("name" {600+}\r\n' + b"n" * 600 + b' "x" {600+}\r\n' + b"v" * 600 + b")\r\n"
        )
        self.assertEqual(reply, b"b " + TOOBIG)
        session.loginDirectly()
        reply = session.send(
            b"c RENAME {600+}\r\n" + b"o" * 600 + b" {600+}\r\n" + b"n" * 600 + b"\r\n"
        )
        self.assertEqual(reply, b"c " + TOOBIG)
        self.assertEqual(session.send(b"d NOOP\r\n"), b"d OK NOOP completed\r\n")

    def test_append_message_data_is_not_counted(self) -> None:
        """APPEND and MULTIAPPEND messages may be far larger than the command size."""
        session = self.session(max_command_size=1000)
        message = MESSAGE + b"y" * 5000 + b"\r\n"
        reply = session.send(b"a APPEND INBOX {%d+}\r\n%s\r\n" % (len(message), message))
        self.assertIn(b"a OK [APPENDUID", reply)
        several = b"".join(b" (\\Seen) {%d+}\r\n%s" % (len(message), message) for _ in range(3))
        reply = session.send(b"b APPEND INBOX" + several + b"\r\n")
        self.assertIn(b"b OK [APPENDUID", reply)
        self.assertEqual(len(session.store.getFolder("INBOX").messages()), 5)
        flags = b" (\\Seen \\Flagged \\Answered \\Draft)" + b" " * 300
        many = b"".join(b"%s {%d+}\r\n%s" % (flags, len(message), message) for _ in range(4))
        self.assertEqual(session.send(b"c APPEND INBOX" + many + b"\r\n"), b"c " + TOOBIG)
        self.assertEqual(len(session.store.getFolder("INBOX").messages()), 5)
        self.assertEqual(session.send(b"d NOOP\r\n"), b"d OK NOOP completed\r\n")


def _naive(tree: Any, flags: frozenset[str]) -> bool:
    kind = tree[0]
    if kind == "key":
        return {"ALL": True, "SEEN": "\\Seen" in flags, "FLAGGED": "\\Flagged" in flags}[tree[1]]
    if kind == "not":
        return not _naive(tree[1], flags)
    if kind == "or":
        return _naive(tree[1], flags) or _naive(tree[2], flags)
    return all(_naive(child, flags) for child in tree[1])


def _render(tree: Any) -> bytes:
    kind = tree[0]
    if kind == "key":
        return tree[1].encode()
    if kind == "not":
        return b"NOT " + _render(tree[1])
    if kind == "or":
        return b"OR " + _render(tree[1]) + b" " + _render(tree[2])
    return b"(" + b" ".join(_render(child) for child in tree[1]) + b")"


_TREES = st.recursive(
    st.sampled_from(["ALL", "SEEN", "FLAGGED"]).map(lambda k: ("key", k)),
    lambda children: st.one_of(
        children.map(lambda c: ("not", c)),
        st.tuples(children, children).map(lambda p: ("or", *p)),
        st.lists(children, min_size=1, max_size=3).map(lambda cs: ("and", cs)),
    ),
    max_leaves=12,
)


class NestingTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.session = Session(self)
        inbox = self.session.store.getFolder("INBOX")
        self.flags = [
            frozenset(),
            frozenset({"\\Seen"}),
            frozenset({"\\Flagged"}),
            frozenset({"\\Seen", "\\Flagged"}),
        ]
        for flags in self.flags:
            pending = inbox.beginMessage(flags)
            pending.write(MESSAGE)
            pending.commit()
        self.session.select()

    def search(self, keys: bytes, command: bytes = b"SEARCH") -> bytes:
        started = time.monotonic()
        reply = self.session.send(b"a " + command + b" " + keys + b"\r\n")
        self.assertLess(time.monotonic() - started, 2.0)
        self.assertEqual(self.flushLoggedErrors(), [])
        self.assertEqual(self.session.send(b"z NOOP\r\n"), b"z OK NOOP completed\r\n")
        return reply

    def test_search_deep_not_chains_answer_without_recursion(self) -> None:
        """C{NOT} 2,000 times hit Python's recursion limit (NO [SERVERBUG] and a traceback)."""
        self.assertEqual(
            self.search(b"NOT " * 2000 + b"ALL"), b"* SEARCH 1 2 3 4\r\na OK SEARCH completed\r\n"
        )
        self.assertEqual(
            self.search(b"NOT " * 2001 + b"ALL"), b"* SEARCH\r\na OK SEARCH completed\r\n"
        )
        self.assertEqual(
            self.search(b"NOT " * 2001 + b"SEEN"), b"* SEARCH 1 3\r\na OK SEARCH completed\r\n"
        )

    def test_search_long_or_chains_are_flattened(self) -> None:
        """3,000 C{OR}s, nested either way, as clients build long alternatives, just work."""
        right = b"OR SEEN " * 3000 + b"FLAGGED"
        self.assertEqual(self.search(right), b"* SEARCH 2 3 4\r\na OK SEARCH completed\r\n")
        left = b"OR " * 3000 + b"FLAGGED " * 3000 + b"SEEN"
        self.assertEqual(self.search(left), b"* SEARCH 2 3 4\r\na OK SEARCH completed\r\n")
        self.assertEqual(
            self.search(b"OR ALL " * 3000 + b"ALL"),
            b"* SEARCH 1 2 3 4\r\na OK SEARCH completed\r\n",
        )
        ids = b" ".join(b"HEADER Message-ID <%d@example.test>" % i for i in range(500))
        self.assertEqual(self.search(b"OR " * 499 + ids), b"* SEARCH\r\na OK SEARCH completed\r\n")

    def test_search_deep_parentheses_are_bad_limit(self) -> None:
        """500 nested parentheses: C{BAD [LIMIT]}; 64 (the default) still work."""
        self.assertEqual(self.search(b"(" * 500 + b"ALL" + b")" * 500), b"a " + DEEP_PARENS)
        self.assertEqual(
            self.search(b"(" * 64 + b"SEEN" + b")" * 64),
            b"* SEARCH 2 4\r\na OK SEARCH completed\r\n",
        )
        self.assertEqual(self.search(b"(" * 65 + b"ALL" + b")" * 65), b"a " + DEEP_PARENS)

    def test_search_alternating_keys_deeper_than_the_limit_are_bad_limit(self) -> None:
        self.assertEqual(
            self.search(b"OR NOT " * 32 + b"ALL " * 33),
            b"* SEARCH 1 2 3 4\r\na OK SEARCH completed\r\n",
        )
        self.assertEqual(self.search(b"OR NOT " * 33 + b"ALL " * 34), b"a " + DEEP_KEYS)
        self.assertEqual(self.search(b"NOT (OR SEEN " * 40 + b"ALL" + b")" * 40), b"a " + DEEP_KEYS)

    def test_sort_and_thread_share_the_bounds(self) -> None:
        self.assertEqual(
            self.search(b"(DATE) UTF-8 " + b"NOT " * 2000 + b"ALL", b"SORT"),
            b"* SORT 1 2 3 4\r\na OK SORT completed\r\n",
        )
        self.assertEqual(
            self.search(b"(DATE) UTF-8 " + b"OR NOT " * 33 + b"ALL " * 34, b"SORT"),
            b"a " + DEEP_KEYS,
        )
        self.assertEqual(
            self.search(b"REFERENCES UTF-8 " + b"OR ALL " * 3000 + b"ALL", b"THREAD"),
            b"* THREAD ((1)(2)(3)(4))\r\na OK THREAD completed\r\n",
        )
        self.assertEqual(
            self.search(b"REFERENCES UTF-8 " + b"(" * 500 + b"ALL" + b")" * 500, b"THREAD"),
            b"a " + DEEP_PARENS,
        )
        self.assertEqual(
            self.search(b"UID " + b"(" * 500 + b"ALL" + b")" * 500, b"UID SEARCH"),
            b"a " + DEEP_PARENS,
        )

    def test_max_nesting_is_configurable(self) -> None:
        session = Session(self, max_nesting=3)
        session.select()
        self.assertEqual(
            session.send(b"a SEARCH ((( ALL)))\r\n"), b"* SEARCH\r\na OK SEARCH completed\r\n"
        )
        self.assertEqual(session.send(b"b SEARCH (((( ALL))))\r\n"), b"b " + DEEP_PARENS)
        self.assertEqual(
            session.send(b"c SEARCH NOT OR NOT ALL ALL\r\n"),
            b"* SEARCH\r\nc OK SEARCH completed\r\n",
        )
        self.assertEqual(
            session.send(b"d SEARCH NOT OR NOT (ALL NOT ALL) ALL\r\n"), b"d " + DEEP_KEYS
        )

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(_TREES)
    def test_flattened_search_agrees_with_naive_evaluation(self, tree: Any) -> None:
        """Merging OR chains, lists and NOT NOT changes no answer."""
        reply = self.session.send(b"a SEARCH " + _render(tree) + b"\r\n")
        expected = [seq for seq, flags in enumerate(self.flags, 1) if _naive(tree, flags)]
        self.assertEqual(
            reply,
            b"%s\r\na OK SEARCH completed\r\n"
            % b" ".join([b"* SEARCH", *(b"%d" % n for n in expected)]),
        )


class LimitsNetworkTests(TestCase):
    timeout = 60

    @inlineCallbacks
    def test_hostile_searches_over_the_wire(self) -> Generator[Deferred[Any], Any, None]:
        """With imaplib: deep keys, and literals past the command size, answered promptly."""
        fixture = makeRealm(Path(self.mktemp()))
        deliver(fixture.store(ALICE).getFolder("INBOX"))
        sessions: list[Any] = []
        port = yield listenIMAP(self, fixture, sessions)

        def client() -> list[Any]:
            results: list[Any] = []
            with imaplib.IMAP4("127.0.0.1", port, timeout=30) as imap:
                imap.login(ALICE, PASSWORD)
                imap.select("INBOX")
                for keys in [
                    "NOT " * 2000 + "ALL",
                    "(" * 500 + "ALL" + ")" * 500,
                    "OR ALL " * 3000 + "ALL",
                ]:
                    started = time.monotonic()
                    try:
                        results.append(imap.search(None, keys)[0])
                    except imap.error as e:
                        results.append(str(e))
                    results.append(time.monotonic() - started)
                results.append(imap.noop()[0])
            with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
                readLine(sock)
                sock.sendall(
                    b"a LOGIN %s %s\r\nb SELECT INBOX\r\n" % (ALICE.encode(), PASSWORD.encode())
                )
                readUntil(sock, b"b OK [READ-WRITE] SELECT completed\r\n")
                started = time.monotonic()
                sock.sendall(b"c SEARCH SUBJECT {60000+}\r\n")
                for _ in range(100):
                    sock.sendall(b"x" * 60000 + b" SUBJECT {60000+}\r\n")
                sock.sendall(b"x" * 60000 + b"\r\nd NOOP\r\n")
                results.append(readUntil(sock, b"d OK NOOP completed\r\n"))
                results.append(time.monotonic() - started)
            return results

        results = yield inThread(client)
        yield eventually(
            lambda: all(session.transport.disconnected for session in sessions),
            within=5,
            failure=lambda: "the server did not notice the client hang up",
        )
        self.assertEqual(results[0], "OK")
        self.assertIn("[LIMIT] Parentheses nested too deeply", results[2])
        self.assertEqual(results[4], "OK")
        for elapsed in results[1:6:2]:
            self.assertLess(elapsed, 2.0)
        self.assertEqual(results[6], "OK")
        self.assertEqual(results[7], b"c " + TOOBIG + b"d OK NOOP completed\r\n")
        self.assertLess(results[8], 10.0)
        self.assertEqual(self.flushLoggedErrors(), [])
