"""
LIST and LSUB patterns: the automaton agrees with a regular expression on
small inputs, and hostile patterns (which made the regular expression
backtrack for minutes) answer at once, in-process and over the wire.
"""

from __future__ import annotations

import imaplib
import re
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase, TestCase

from support.net import inThread, listen
from support.realm import ALICE, PASSWORD, makeRealm
from tmail.auth.throttle import AuthThrottle
from tmail.config.schema import AuthSettings, IMAPSettings
from tmail.imap.account import wildcardPattern
from tmail.imap.factory import IMAPFactory
from tmail.imap.wildcard import MailboxPattern

#: A name 200 characters long, as the hostile patterns were tried against.
LONG_NAME = "a" * 200
#: Patterns that took exponential time as regular expressions.
HOSTILE = ["*%" * 25 + "Z", "*a*a*a*a*a*a*b", "%a%a%a%a%a%a%a%a%a%a%b", "*a" * 500 + "b"]


def regexModel(pattern: str, delimiter: str = "/") -> re.Pattern[str]:
    """The old translation of a pattern into a regular expression: right, but backtracking."""
    if pattern[:5].upper() == "INBOX" and pattern[5:6] in ("", delimiter, "*", "%"):
        pattern = "INBOX" + pattern[5:]
    pieces = []
    for piece in re.split(r"([*%])", pattern):
        if piece == "*":
            pieces.append(".*")
        elif piece == "%":
            pieces.append(f"[^{re.escape(delimiter)}]*")
        else:
            pieces.append(re.escape(piece))
    return re.compile("".join(pieces), re.DOTALL)


_PATTERNS = st.builds(
    lambda prefix, rest: prefix + rest,
    st.sampled_from(["", "inbox", "INBOX", "Inbox/", "inbox*", "INBOXa"]),
    st.text(alphabet="ab/*%.", max_size=8),
)
_NAMES = st.builds(
    lambda prefix, rest: prefix + rest,
    st.sampled_from(["", "INBOX", "INBOX/", "inbox"]),
    st.text(alphabet="ab/.", max_size=8),
)


class PatternModelTests(SynchronousTestCase):
    @settings(max_examples=2000)
    @given(_PATTERNS, _NAMES)
    def test_matchesLikeTheRegularExpression(self, pattern: str, name: str) -> None:
        """C{*}, C{%}, the delimiter and INBOX's case behave as the regular expression did."""
        self.assertEqual(
            wildcardPattern(pattern).fullmatch(name),
            regexModel(pattern).fullmatch(name) is not None,
        )

    @given(st.lists(_PATTERNS, max_size=4), _NAMES)
    def test_severalPatternsMatchWhenAnyDoes(self, patterns: list[str], name: str) -> None:
        self.assertEqual(
            MailboxPattern(patterns).fullmatch(name),
            any(regexModel(p).fullmatch(name) for p in patterns),
        )

    @given(st.text(alphabet="ab.*%", max_size=8), st.text(alphabet="ab.", max_size=8))
    def test_otherDelimiter(self, pattern: str, name: str) -> None:
        self.assertEqual(
            wildcardPattern(pattern, ".").fullmatch(name),
            regexModel(pattern, ".").fullmatch(name) is not None,
        )

    def test_examples(self) -> None:
        self.assertTrue(wildcardPattern("*%*%").fullmatch("a/b"))
        self.assertFalse(wildcardPattern("%%%").fullmatch("a/b"))
        self.assertTrue(wildcardPattern("%/%").fullmatch("a/b"))
        self.assertTrue(wildcardPattern("inbox/%").fullmatch("INBOX/Sub"))
        self.assertFalse(wildcardPattern("i*").fullmatch("INBOX"))
        self.assertFalse(MailboxPattern([]).fullmatch("INBOX"))
        self.assertTrue(MailboxPattern(["", ""]).fullmatch(""))


class HostilePatternTests(SynchronousTestCase):
    def test_list_pattern_with_many_wildcards_answers_quickly(self) -> None:
        """
        C{*%*%...Z} (25 pairs) and C{*a*a*a*a*a*a*b} against a 200-character
        name took 31 s and over 60 s as regular expressions.
        """
        names = [LONG_NAME, LONG_NAME + "/" + LONG_NAME, "a/" * 100 + "Z"]
        started = time.monotonic()
        for pattern in HOSTILE:
            for name in names:
                wildcardPattern(pattern).fullmatch(name)
        self.assertLess(time.monotonic() - started, 2.0)

    @settings(max_examples=200, deadline=500)
    @given(
        st.text(alphabet="a*%", min_size=1, max_size=60),
        st.text(alphabet="ab/", min_size=150, max_size=250),
    )
    def test_anyPatternMatchesInLinearTime(self, pattern: str, name: str) -> None:
        """Whatever mix of wildcards, one name costs one pass (the deadline shows it)."""
        matcher = wildcardPattern(pattern + "b")
        for _ in range(20):
            matcher.fullmatch(name)


class HostilePatternNetworkTests(TestCase):
    timeout = 30

    @inlineCallbacks
    def test_hostile_list_patterns_over_the_wire(self) -> Generator[Deferred[Any], Any, None]:
        """LIST and LSUB with backtracking-bait patterns answer promptly with imaplib."""
        fixture = makeRealm(Path(self.mktemp()))
        store = fixture.store(ALICE)
        store.createFolder(LONG_NAME)
        store.subscribe(LONG_NAME)
        factory = IMAPFactory(
            fixture.portal,
            IMAPSettings(),
            tlsContextFactory=None,
            throttle=AuthThrottle(AuthSettings(failure_delay=0), reactor),
            hostname="mail.example.test",
        )
        port = yield listen(self, factory)

        def client() -> list[tuple[str, float, Any]]:
            results = []
            with imaplib.IMAP4("127.0.0.1", port, timeout=20) as imap:
                imap.login(ALICE, PASSWORD)
                for pattern in HOSTILE:
                    for command in (imap.list, imap.lsub):
                        started = time.monotonic()
                        typ, data = command('""', f'"{pattern}"')
                        results.append((typ, time.monotonic() - started, data))
                started = time.monotonic()
                typ, data = imap.list('""', '"*a*a*a*a*a*a"')
                results.append((typ, time.monotonic() - started, data))
            return results

        results = yield inThread(client)
        for typ, elapsed, _ in results[:-1]:
            self.assertEqual(typ, "OK")
            self.assertLess(elapsed, 2.0)
        typ, elapsed, data = results[-1]
        self.assertEqual(typ, "OK")
        self.assertLess(elapsed, 2.0)
        self.assertEqual(data, [f'(\\HasNoChildren) "/" "{LONG_NAME}"'.encode()])
