"""
The cache of parsed message facts: what it answers is what the message
gives, a second FETCH reads no file, a message gone or replaced is never
answered from it, and it keeps within its bound.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_imap_protocol import Session, deliver
from twisted.internet.defer import maybeDeferred
from twisted.trial.unittest import SynchronousTestCase

from support.mimecorpus import CORPUS
from support.mimeinputs import mimeMessages
from tmail.config.loader import loadSettings
from tmail.config.schema import IMAPSettings
from tmail.imap.message import IMAPMessage
from tmail.imap.messagecache import ENTRY_OVERHEAD, MessageCache
from tmail.interfaces import MessageInfo

#: What a mail client fetches of a message list and of an opened message.
ITEMS = (
    b"(UID RFC822.SIZE ENVELOPE BODYSTRUCTURE BODY RFC822.HEADER BODY.PEEK[HEADER] "
    b"BODY.PEEK[HEADER.FIELDS (DATE FROM TO SUBJECT MESSAGE-ID)] "
    b"BODY.PEEK[HEADER.FIELDS.NOT (RECEIVED)] BODY.PEEK[1.MIME] BODY.PEEK[TEXT]<0.20>)"
)


def counted(session: Session) -> list[int]:
    """The UIDs whose files the selected folder opens from now on."""
    folder = session.server.mbox.folder  # type: ignore[union-attr]
    opened: list[int] = []
    original = folder.openMessage

    def openMessage(uid: int) -> Any:
        opened.append(uid)
        return original(uid)

    folder.openMessage = openMessage
    return opened


def answers(session: Session, raw: bytes) -> tuple[bytes, bytes]:
    """The first and second answer of one session to L{ITEMS} of C{raw}."""
    deliver(session.store.getFolder("INBOX"), raw)
    session.select()
    return session.send(b"a FETCH 1 " + ITEMS + b"\r\n"), session.send(
        b"b FETCH 1 " + ITEMS + b"\r\n"
    )


class CachedAnswersTests(SynchronousTestCase):
    def assertSameAnswers(self, raw: bytes) -> None:
        cached = Session(self)
        plain = Session(self, message_cache_size=0)
        first, second = answers(cached, raw)
        uncachedFirst, uncachedSecond = answers(plain, raw)
        self.assertEqual(first, uncachedFirst)
        self.assertEqual(second.replace(b"b OK", b"a OK"), uncachedFirst)
        self.assertEqual(uncachedSecond, second)

    def test_cached_answers_equal_uncached_ones_for_awkward_messages(self) -> None:
        for name, raw in CORPUS.items():
            with self.subTest(name):
                self.assertSameAnswers(raw)

    def test_cached_answers_equal_uncached_ones_for_lf_only_files(self) -> None:
        """A file stored with bare LFs is served with CRLF, cached or not."""
        for name in ("multipart-quoted-boundary-with-spaces", "message-rfc822-in-message-rfc822"):
            with self.subTest(name):
                self.assertSameAnswers(CORPUS[name].replace(b"\r\n", b"\n"))

    @settings(
        max_examples=40,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(mimeMessages)
    def test_cached_answers_equal_uncached_ones_for_generated_messages(self, raw: bytes) -> None:
        self.assertSameAnswers(raw)


class NoFileReadTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.session = Session(self)
        self.inbox = self.session.store.getFolder("INBOX")

    def send(self, line: bytes) -> bytes:
        return self.session.send(line + b"\r\n")

    def test_second_fetch_of_envelope_and_bodystructure_opens_no_file(self) -> None:
        deliver(self.inbox, CORPUS["message-rfc822-in-message-rfc822"])
        deliver(self.inbox, CORPUS["multipart-quoted-boundary-with-spaces"])
        self.session.select()
        opened = counted(self.session)
        items = b"(ENVELOPE BODYSTRUCTURE BODY BODY.PEEK[HEADER.FIELDS (FROM SUBJECT)])"
        first = self.send(b"a FETCH 1:2 " + items)
        self.assertEqual(sorted(opened), [1, 2])
        del opened[:]
        second = self.send(b"b FETCH 1:2 " + items)
        self.assertEqual(opened, [])
        self.assertEqual(second.replace(b"b OK", b"a OK"), first)

    def test_another_session_on_the_folder_shares_the_facts(self) -> None:
        deliver(self.inbox, CORPUS["message-rfc822-in-message-rfc822"])
        self.session.select()
        first = self.send(b"a FETCH 1 (ENVELOPE BODYSTRUCTURE)")
        other = Session(self, self.session.fixture)
        other.server.messageCache = self.session.server.messageCache
        other.select()
        opened = counted(other)
        self.assertEqual(other.send(b"a FETCH 1 (ENVELOPE BODYSTRUCTURE)\r\n"), first)
        self.assertEqual(opened, [])

    def test_disabled_cache_reads_the_file_each_time(self) -> None:
        session = Session(self, message_cache_size=0, message_cache_persistent=False)
        deliver(session.store.getFolder("INBOX"), CORPUS["message-rfc822-in-message-rfc822"])
        session.select()
        opened = counted(session)
        session.send(b"a FETCH 1 (ENVELOPE BODYSTRUCTURE)\r\n")
        session.send(b"b FETCH 1 (ENVELOPE BODYSTRUCTURE)\r\n")
        self.assertEqual(opened, [1, 1])

    def test_cached_answer_for_a_large_message_needs_no_worker(self) -> None:
        """Over 1 MiB the first FETCH is worked on in a worker; a cached one is not."""
        big = CORPUS["message-rfc822-in-message-rfc822"] + b"x" * 2_000_000 + b"\r\n"
        deliver(self.inbox, big)
        self.session.select()
        jobs: list[object] = []

        def worker(job: Any) -> Any:
            jobs.append(job)
            return maybeDeferred(job)

        self.session.server.runInWorker = worker  # type: ignore[method-assign]
        opened = counted(self.session)
        items = b"(ENVELOPE BODYSTRUCTURE BODY.PEEK[HEADER.FIELDS (FROM)])"
        first = self.send(b"a FETCH 1 " + items)
        self.assertEqual(len(jobs), 1)
        del opened[:]
        second = self.send(b"b FETCH 1 " + items)
        self.assertEqual(len(jobs), 1)
        self.assertEqual(opened, [])
        self.assertEqual(second.replace(b"b OK", b"a OK"), first)


class NeverStaleTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.session = Session(self)
        self.inbox = self.session.store.getFolder("INBOX")

    def send(self, line: bytes) -> bytes:
        return self.session.send(line + b"\r\n")

    def test_expunged_message_is_not_answered_from_the_cache(self) -> None:
        deliver(self.inbox, CORPUS["message-rfc822-in-message-rfc822"])
        self.session.select()
        self.assertIn(b"ENVELOPE", self.send(b"a UID FETCH 1 (ENVELOPE BODYSTRUCTURE)"))
        self.send(b"b STORE 1 +FLAGS.SILENT (\\Deleted)")
        self.send(b"c EXPUNGE")
        self.assertEqual(
            self.send(b"d UID FETCH 1 (ENVELOPE BODYSTRUCTURE)"), b"d OK FETCH completed\r\n"
        )

    def test_message_expunged_by_another_session_is_not_answered_once_known(self) -> None:
        deliver(self.inbox, CORPUS["message-rfc822-in-message-rfc822"])
        self.session.select()
        self.send(b"a UID FETCH 1 (ENVELOPE BODYSTRUCTURE)")
        self.inbox.expunge([1])
        self.assertIn(b"* 1 EXPUNGE", self.send(b"b NOOP"))
        self.assertEqual(
            self.send(b"c UID FETCH 1 (ENVELOPE BODYSTRUCTURE)"), b"c OK FETCH completed\r\n"
        )

    def test_message_replaced_under_the_same_uid_is_read_again(self) -> None:
        """A UID naming another file (another base name or size) misses the cache."""
        first = deliver(self.inbox, b"Subject: first\r\n\r\nbody\r\n")
        info = self.inbox.messages()[0]
        cache = MessageCache(1 << 20)
        message = IMAPMessage(self.inbox, info, facts=cache)
        self.assertIn(b"first", message.header())
        second = deliver(self.inbox, b"Subject: second one\r\n\r\nbody\r\n")
        other = self.inbox.messages()[1]
        replaced = MessageInfo(first, info.flags, other.size, info.internaldate, other.key)
        opened = [0]
        real = self.inbox.openMessage

        def openMessage(uid: int) -> Any:
            opened[0] += 1
            return real(second)

        self.inbox.openMessage = openMessage  # type: ignore[method-assign]
        again = IMAPMessage(self.inbox, replaced, facts=cache)
        self.assertIn(b"second one", again.header())
        self.assertEqual(opened[0], 1)
        sameSize = MessageInfo(first, info.flags, info.size, info.internaldate, other.key)
        self.assertIsNone(cache.get(self.inbox, sameSize, "header"))


class BoundTests(SynchronousTestCase):
    def info(self, uid: int, size: int = 100) -> MessageInfo:
        return MessageInfo(uid, frozenset(), size, 0.0, f"m{uid}")

    def test_least_recently_used_message_goes_first(self) -> None:
        cache = MessageCache(4 * (ENTRY_OVERHEAD + 100))
        folder = object()
        for uid in range(1, 5):
            cache.put(folder, self.info(uid), "envelope", b"e" * 100)
        self.assertIsNotNone(cache.get(folder, self.info(1), "envelope"))
        cache.put(folder, self.info(5), "envelope", b"e" * 100)
        self.assertIsNone(cache.get(folder, self.info(2), "envelope"))
        for uid in (1, 3, 4, 5):
            self.assertIsNotNone(cache.get(folder, self.info(uid), "envelope"))

    def test_a_fact_larger_than_an_eighth_of_the_bound_is_not_kept(self) -> None:
        cache = MessageCache(8000)
        cache.put(object(), self.info(1), "header", b"h" * 1001)
        self.assertEqual((len(cache), cache.size), (0, 0))

    def test_zero_keeps_nothing(self) -> None:
        cache = MessageCache(0)
        folder = object()
        cache.put(folder, self.info(1), "envelope", b"")
        self.assertIsNone(cache.get(folder, self.info(1), "envelope"))
        self.assertEqual(len(cache), 0)

    @settings(max_examples=200, deadline=None)
    @given(
        st.integers(0, 20_000),
        st.lists(
            st.tuples(st.integers(1, 30), st.sampled_from(["a", "b", "c"]), st.integers(0, 3000)),
            max_size=200,
        ),
    )
    def test_the_byte_bound_holds(self, bound: int, puts: list[tuple[int, str, int]]) -> None:
        cache = MessageCache(bound)
        folder = object()
        for uid, name, length in puts:
            cache.put(folder, self.info(uid), name, b"x" * length)
            self.assertLessEqual(cache.size, bound)
        kept = cache._entries.values()
        self.assertEqual(
            cache.size, sum(ENTRY_OVERHEAD + sum(map(len, facts.values())) for facts in kept)
        )


def test_message_cache_size_default_and_configurable(tmp_path: Path) -> None:
    assert IMAPSettings().message_cache_size == 64 * 1024 * 1024
    path = tmp_path / "tmail.toml"
    for value in (0, 1048576):
        path.write_text(f'[imap]\nlisten = ["tcp:143"]\nmessage_cache_size = {value}\n')
        imap = loadSettings(path).imap
        assert imap is not None
        assert imap.message_cache_size == value


def test_negative_message_cache_size_is_refused(tmp_path: Path) -> None:
    import pytest

    from tmail.errors import ConfigError

    path = tmp_path / "tmail.toml"
    path.write_text('[imap]\nlisten = ["tcp:143"]\nmessage_cache_size = -1\n')
    with pytest.raises(ConfigError) as info:
        loadSettings(path)
    assert "imap.message_cache_size" in str(info.value)
