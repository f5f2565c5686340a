"""
Parsed facts in the folder's field cache file: after a restart (new store
and server objects), a FETCH of ENVELOPE, BODYSTRUCTURE, BODY and header
fields opens no message file and parses nothing; whatever happened to the
file (torn tail, garbage), the answers are those of a server without any
cache; a message expunged and another put under its name is never answered
with the first one's facts.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_imap_messagecache import counted
from test_imap_protocol import Session, deliver
from twisted.internet.defer import maybeDeferred
from twisted.python import threadable
from twisted.trial.unittest import SynchronousTestCase

from support.mimecorpus import CORPUS
from support.mimeinputs import mimeMessages
from support.realm import ALICE, makeRealm
from tmail.config.schema import IMAPSettings
from tmail.imap.messagecache import MessageCache
from tmail.realm.virtual import VirtualDomainRealm
from tmail.store.fieldcache import FieldCache
from tmail.store.filework import INLINE
from tmail.store.maildirfields import FILENAME

#: What a mail client fetches for a message list.
ITEMS = (
    b"(UID RFC822.SIZE ENVELOPE BODYSTRUCTURE BODY RFC822.HEADER "
    b"BODY.PEEK[HEADER.FIELDS (DATE FROM TO SUBJECT MESSAGE-ID CONTENT-TYPE)] "
    b"BODY.PEEK[HEADER.FIELDS.NOT (RECEIVED)])"
)


class RunningReactor:
    """What the message cache asks of its reactor, as one that runs, in this thread."""

    running = True

    def callFromThread(self, f: Callable[..., object], *args: object) -> None:
        f(*args)


class PersistentFactsTests(SynchronousTestCase):
    def setUp(self) -> None:
        previous = threadable.ioThread
        threadable.registerAsIOThread()
        self.addCleanup(setattr, threadable, "ioThread", previous)
        original = FieldCache.__dict__["runInThread"]
        FieldCache.runInThread = staticmethod(maybeDeferred)  # type: ignore[assignment]
        self.addCleanup(setattr, FieldCache, "runInThread", original)
        self.fixture = makeRealm(Path(self.mktemp()))

    def session(self, **options: Any) -> Session:
        """A session of a server started anew: new realm, stores and folders."""
        realm = VirtualDomainRealm(
            self.fixture.directory, self.fixture.root / "data" / "mail", fileWork=INLINE
        )
        session = Session(self, replace(self.fixture, realm=realm), **options)
        session.server.messageCache = MessageCache.fromSettings(
            IMAPSettings(**options), reactor=RunningReactor()
        )
        session.select()
        return session

    def uncached(self) -> Session:
        return self.session(message_cache_size=0, message_cache_persistent=False)

    @property
    def cacheFile(self) -> Path:
        return self.fixture.store(ALICE).getFolder("INBOX").path / FILENAME

    def deliverAll(self, messages: list[bytes]) -> None:
        inbox = self.session().store.getFolder("INBOX")
        for raw in messages:
            deliver(inbox, raw)

    def fetchAndFlush(self, what: bytes = b"1:*") -> bytes:
        session = self.session()
        answer = session.send(b"a FETCH " + what + b" " + ITEMS + b"\r\n")
        session.server.messageCache.flush()  # type: ignore[union-attr]
        return answer

    def test_facts_survive_a_restart_and_are_not_parsed_again(self) -> None:
        self.deliverAll(list(CORPUS.values())[:20])
        first = self.fetchAndFlush()
        restarted = self.session()
        opened = counted(restarted)
        second = restarted.send(b"a FETCH 1:* " + ITEMS + b"\r\n")
        self.assertEqual(second, first)
        self.assertEqual(opened, [])
        cache = restarted.server.messageCache
        assert cache is not None
        self.assertEqual(cache.made, 0)
        self.assertGreater(cache.fileHits, 0)

    def test_leaving_the_folder_writes_its_facts(self) -> None:
        self.deliverAll([CORPUS["message-rfc822-in-message-rfc822"]])
        session = self.session()
        first = session.send(b"a FETCH 1 " + ITEMS + b"\r\n")
        session.send(b"b CLOSE\r\n")
        restarted = self.session()
        opened = counted(restarted)
        self.assertEqual(restarted.send(b"a FETCH 1 " + ITEMS + b"\r\n"), first)
        self.assertEqual(opened, [])

    def test_torn_cache_file_gives_the_answers_of_no_cache(self) -> None:
        self.deliverAll(list(CORPUS.values())[:10])
        self.fetchAndFlush(b"1:5")
        whole = self.cacheFile.stat().st_size
        self.fetchAndFlush(b"6:10")
        with self.cacheFile.open("r+b") as f:
            f.truncate(whole + (self.cacheFile.stat().st_size - whole) // 2)
        expected = self.uncached().send(b"a FETCH 1:* " + ITEMS + b"\r\n")
        restarted = self.session()
        opened = counted(restarted)
        self.assertEqual(restarted.send(b"a FETCH 1:* " + ITEMS + b"\r\n"), expected)
        self.assertTrue(opened, "facts past the tear were served")
        self.assertGreater(min(opened), 5, "facts before the tear were lost")
        self.assertEqual(self.session().send(b"a FETCH 1:* " + ITEMS + b"\r\n"), expected)

    def test_garbage_cache_file_gives_the_answers_of_no_cache(self) -> None:
        self.deliverAll(list(CORPUS.values())[:10])
        self.fetchAndFlush()
        self.cacheFile.write_bytes(os.urandom(self.cacheFile.stat().st_size))
        expected = self.uncached().send(b"a FETCH 1:* " + ITEMS + b"\r\n")
        self.assertEqual(self.fetchAndFlush(), expected)
        restarted = self.session()
        opened = counted(restarted)
        self.assertEqual(restarted.send(b"a FETCH 1:* " + ITEMS + b"\r\n"), expected)
        self.assertEqual(opened, [])

    def test_expunged_message_facts_are_never_served_for_a_new_file_of_its_name(self) -> None:
        """A file put back under an expunged message's name, same size, gets its own facts."""
        self.session()
        folder = self.fixture.store(ALICE).getFolder("INBOX").path / "cur"
        name = "1700000000.M1P1Q1.example:2,"
        (folder / name).write_bytes(b"Subject: first\r\nFrom: a@example.test\r\n\r\nbody\r\n")
        session = self.session()
        self.assertIn(b'"first"', session.send(b"a FETCH 1 (ENVELOPE)\r\n"))
        session.send(b"b STORE 1 +FLAGS.SILENT (\\Deleted)\r\nc EXPUNGE\r\n")
        session.server.messageCache.flush()  # type: ignore[union-attr]
        self.assertFalse((folder / name).exists())
        (folder / name).write_bytes(b"Subject: again\r\nFrom: a@example.test\r\n\r\nbody\r\n")
        self.assertIn(b'"again"', session.send(b"d NOOP\r\ne FETCH 1 (ENVELOPE)\r\n"))
        self.assertIn(b'"again"', self.session().send(b"a FETCH 1 (ENVELOPE)\r\n"))

    def factsFoundAfterARestart(self) -> int:
        """How many facts a restarted server finds in the folder's file for FETCH 1:*."""
        restarted = self.session()
        restarted.send(b"a FETCH 1:* " + ITEMS + b"\r\n")
        cache = restarted.server.messageCache
        assert cache is not None
        return cache.fileHits

    def test_facts_are_written_once_flush_records_messages_wait(self) -> None:
        self.deliverAll(list(CORPUS.values())[:6])
        session = self.session(message_cache_flush_records=3, message_cache_flush_interval=3600)
        session.send(b"a FETCH 1:* " + ITEMS + b"\r\n")
        self.assertGreater(self.factsFoundAfterARestart(), 0)

    def test_facts_wait_in_memory_below_flush_records(self) -> None:
        self.deliverAll(list(CORPUS.values())[:6])
        session = self.session(message_cache_flush_records=1000, message_cache_flush_interval=3600)
        session.send(b"a FETCH 1:* " + ITEMS + b"\r\n")
        self.assertEqual(self.factsFoundAfterARestart(), 0)

    def test_a_fact_larger_than_file_max_fact_is_kept_out_of_the_file(self) -> None:
        self.deliverAll(list(CORPUS.values())[:6])
        session = self.session(message_cache_file_max_fact=8)
        expected = session.send(b"a FETCH 1:* " + ITEMS + b"\r\n")
        session.server.messageCache.flush()  # type: ignore[union-attr]
        restarted = self.session()
        self.assertEqual(restarted.send(b"a FETCH 1:* " + ITEMS + b"\r\n"), expected)
        cache = restarted.server.messageCache
        assert cache is not None
        self.assertEqual(cache.fileHits, 0)
        self.assertGreater(cache.made, 0)

    @settings(
        max_examples=30,
        deadline=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.function_scoped_fixture,
        ],
    )
    @given(
        st.one_of(mimeMessages, st.sampled_from(sorted(CORPUS.values()))),
        st.floats(0.0, 1.0),
    )
    def test_answers_after_a_restart_with_a_torn_file_equal_uncached_ones(
        self, raw: bytes, tear: float
    ) -> None:
        inbox = self.session().store.getFolder("INBOX")
        uid = deliver(inbox, raw)
        what = b"UID FETCH %d " % uid + ITEMS + b"\r\n"
        expected = self.uncached().send(what)
        session = self.session()
        self.assertEqual(session.send(what), expected)
        session.server.messageCache.flush()  # type: ignore[union-attr]
        size = self.cacheFile.stat().st_size
        with self.cacheFile.open("r+b") as f:
            f.truncate(int(size * tear))
        self.assertEqual(self.session().send(what), expected)
        self.assertEqual(self.session().send(what), expected)
