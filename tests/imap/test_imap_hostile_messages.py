"""
Messages built to break MIME and header parsing, delivered to the MX by
anyone, then searched, fetched, sorted and threaded by their recipient over
IMAP: every command answers normally and soon, and nothing is logged.
"""

from __future__ import annotations

import imaplib
import smtplib
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase, TestCase

from imap.test_imap_protocol import Session, deliver
from imap.test_imap_thread import parseThreads
from support.hostilemail import (
    NEEDLE,
    hugeHeader,
    manyParts,
    nestedMessages,
    nestedMultipart,
    referenceChain,
)
from support.imaploop import listenIMAP
from support.net import inThread, listen
from support.realm import ALICE, PASSWORD, makeRealm
from tmail.auth.throttle import AuthThrottle
from tmail.config.schema import AuthSettings, SMTPSettings
from tmail.imap.mimeentity import MAX_MIME_PARTS
from tmail.smtp.factory import SMTPFactory

ORDINARY = b"From: friend@example.test\r\nSubject: lunch\r\n\r\nAre you free? " + NEEDLE + b"\r\n"

#: A section path far below any nesting limit.
DEEP_SECTION = ".".join(["1"] * 60)

#: What the recipient's client asks of the folder, each with its arguments.
COMMANDS: list[tuple[str, tuple[str, ...]]] = [
    ("SEARCH", ("TEXT", NEEDLE.decode())),
    ("SEARCH", ("BODY", NEEDLE.decode())),
    ("SEARCH", ("SUBJECT", "chain", "OR", "FROM", "nest", "HEADER", "X-Filler", "a")),
    ("FETCH", ("1:*", "(BODYSTRUCTURE ENVELOPE BODY)")),
    ("FETCH", ("1:*", f"(BODY.PEEK[{DEEP_SECTION}] BODY.PEEK[1.MIME] BODY.PEEK[HEADER])")),
    ("FETCH", ("1:*", "(BINARY.PEEK[1] BINARY.SIZE[1] BODY.PEEK[1.1.1.1.1.1.1.1])")),
    ("SORT", ("(SUBJECT FROM CC DATE)", "UTF-8", "ALL")),
    ("THREAD", ("REFERENCES", "UTF-8", "ALL")),
    ("THREAD", ("ORDEREDSUBJECT", "UTF-8", "ALL")),
]


class HostileMessageTests(TestCase):
    @inlineCallbacks
    def setUp(self) -> Generator[Deferred[Any], Any, None]:
        self.fixture = makeRealm(Path(self.mktemp()))
        mx = SMTPFactory(
            self.fixture.realm,
            SMTPSettings(),
            hostname="mx.example.test",
            submission=False,
            portal=None,
            tlsContextFactory=None,
            throttle=AuthThrottle(AuthSettings(), reactor),
        )
        self.mxPort = yield listen(self, mx)
        self.imapPort = yield listenIMAP(self, self.fixture)
        # A BODYSTRUCTURE of ten thousand parts is one long line.
        self.patch(imaplib, "_MAXLINE", 10_000_000)

    def deliver(self, *messages: bytes) -> Deferred[None]:
        """Send each message to Alice through the MX, as anyone on the Internet can."""

        def send() -> None:
            with smtplib.SMTP("127.0.0.1", self.mxPort, timeout=60) as smtp:
                for message in messages:
                    smtp.sendmail("stranger@remote.example", [ALICE], message)

        return inThread(send)

    def ask(self) -> Deferred[dict[str, tuple[str, bytes, float]]]:
        """Run L{COMMANDS} as Alice; each one's status, response data and duration."""

        def client() -> dict[str, tuple[str, bytes, float]]:
            imap = imaplib.IMAP4("127.0.0.1", self.imapPort, timeout=60)
            answers = {}
            with imap:
                imap.login(ALICE, PASSWORD)
                imap.select("INBOX")
                for command, arguments in COMMANDS:
                    started = time.monotonic()
                    status, data = imap._simple_command(command, *arguments)
                    status, data = imap._untagged_response(status, data, command)
                    flat = b"".join(
                        b"".join(item) if isinstance(item, tuple) else item or b"" for item in data
                    )
                    answers[" ".join((command, *arguments))] = (
                        status,
                        flat,
                        time.monotonic() - started,
                    )
            return answers

        return inThread(client)

    def assertAnsweredNormally(self, answers: dict[str, tuple[str, bytes, float]]) -> None:
        self.assertEqual(len(answers), len(COMMANDS))
        for command, (status, data, seconds) in answers.items():
            self.assertEqual(status, "OK", (command, data[:300]))
            self.assertNotIn(b"SERVERBUG", data, command)
            self.assertLess(seconds, 5.0, command)
        threads = answers["THREAD REFERENCES UTF-8 ALL"][1]
        self.assertEqual(sorted(parseThreads(threads)), list(range(1, self.count + 1)))
        self.assertEqual(self.flushLoggedErrors(), [])

    def searched(self, answers: dict[str, tuple[str, bytes, float]], key: str) -> list[int]:
        return sorted(int(n) for n in answers[key][1].split())

    @inlineCallbacks
    def check(self, *hostile: bytes) -> Generator[Deferred[Any], Any, dict[str, Any]]:
        """Deliver an ordinary message and the hostile ones, then ask everything."""
        self.count = 1 + len(hostile)
        yield self.deliver(ORDINARY, *hostile)
        answers = yield self.ask()
        self.assertAnsweredNormally(answers)
        self.assertIn(1, self.searched(answers, "SEARCH TEXT " + NEEDLE.decode()))
        return answers  # type: ignore[no-any-return]

    @inlineCallbacks
    def test_nested_multiparts_break_no_search_fetch_sort_or_thread(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        """A thousand nested multiparts (70 KB) used to break SEARCH TEXT for good."""
        answers = yield self.check(nestedMultipart(1_000), nestedMultipart(10_000))
        structures = answers["FETCH 1:* (BODYSTRUCTURE ENVELOPE BODY)"][1]
        self.assertIn(b'"MIXED"', structures.upper())
        # Past the nesting limit, parts are opaque: the needle deep inside is not searched.
        self.assertEqual(self.searched(answers, "SEARCH BODY " + NEEDLE.decode()), [1])

    @inlineCallbacks
    def test_nested_messages_break_nothing(self) -> Generator[Deferred[Any], Any, None]:
        answers = yield self.check(nestedMessages(1_000), nestedMessages(10_000))
        self.assertIn(
            b'"MESSAGE" "RFC822"', answers["FETCH 1:* (BODYSTRUCTURE ENVELOPE BODY)"][1].upper()
        )

    @inlineCallbacks
    def test_countless_parts_break_nothing(self) -> Generator[Deferred[Any], Any, None]:
        answers = yield self.check(manyParts(50_000))
        self.assertEqual(self.searched(answers, "SEARCH BODY " + NEEDLE.decode()), [1, 2])
        structures = answers["FETCH 1:* (BODYSTRUCTURE ENVELOPE BODY)"][1]
        # BODYSTRUCTURE and BODY each list the first MAX_MIME_PARTS parts.
        self.assertEqual(structures.upper().count(b'("TEXT" "PLAIN"'), 2 * MAX_MIME_PARTS + 2)

    @inlineCallbacks
    def test_huge_hostile_headers_break_nothing(self) -> Generator[Deferred[Any], Any, None]:
        """Nested comments and groups, Re: by the thousand, RFC 2231 and encoded-word floods."""
        answers = yield self.check(hugeHeader(200_000))
        self.assertEqual(self.searched(answers, "SEARCH TEXT " + NEEDLE.decode()), [1, 2])

    @inlineCallbacks
    def test_deep_reference_chains_break_nothing(self) -> Generator[Deferred[Any], Any, None]:
        chains = [
            referenceChain(0, 10_000, b"<deep@example.test>"),
            referenceChain(0, 10_000, b"<r5000@example.test>"),
            *(referenceChain(k * 500, 1_000, b"<r%d@example.test>" % (k * 500)) for k in range(20)),
        ]
        answers = yield self.check(*chains)
        self.assertEqual(
            self.searched(answers, "SEARCH TEXT " + NEEDLE.decode()), list(range(1, 24))
        )


class MimeLimitTests(SynchronousTestCase):
    def test_mime_depth_and_parts_follow_the_settings(self) -> None:
        session = Session(self, max_mime_depth=3, max_mime_parts=10)
        inbox = session.store.getFolder("INBOX")
        deliver(inbox, nestedMultipart(50))
        deliver(inbox, manyParts(100))
        session.select()
        nested = session.send(b"a FETCH 1 BODYSTRUCTURE\r\n")
        self.assertEqual(nested.upper().count(b'"MIXED"'), 3)
        self.assertIn(b'("APPLICATION" "OCTET-STREAM"', nested.upper())
        parts = session.send(b"b FETCH 2 (BODYSTRUCTURE BODY.PEEK[11] BODY.PEEK[10])\r\n")
        self.assertEqual(parts.upper().count(b'("TEXT" "PLAIN"'), 10)
        self.assertIn(b"BODY[11] NIL", parts)
        self.assertIn(b"BODY[10] {1}\r\nx", parts)
