"""
The field cache of a Maildir folder (C{tmail-fields}): fields outlive the
store objects that wrote them, a torn or damaged tail is cut off and the
records before it kept, a damaged or foreign file is started anew, two
store objects on one Maildir (two processes) share the file, and
compaction drops the records of messages gone and fields no client uses.
"""

from __future__ import annotations

import gc
import os
import shutil
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.defer import maybeDeferred
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from tmail.interfaces import IFieldCacheFolder, MessageInfo
from tmail.store import fieldcache, fieldcachefile
from tmail.store.maildir import BlockingMaildirStore, MaildirFolder
from tmail.store.maildirfields import FILENAME, MaildirFieldCache

NOW = 1_800_000_000.0


def deliver(folder: MaildirFolder, body: bytes) -> MessageInfo:
    pending = folder.beginMessage()
    pending.write(body)
    uid = pending.commit()
    folder.messages()
    info = folder.info(uid)
    assert info is not None
    return info


def cacheOf(folder: MaildirFolder) -> MaildirFieldCache:
    """The folder's field cache, its file work run inline."""
    cache = IFieldCacheFolder(folder)
    assert isinstance(cache, MaildirFieldCache)
    cache.runInThread = maybeDeferred  # type: ignore[assignment]
    cache.catchUpEvery = 0.0
    return cache


def flushed(cache: IFieldCacheFolder, dropUnusedBefore: float = 0.0, share: float = 0.3) -> None:
    result: list[Any] = []
    cache.flushFields(dropUnusedBefore, share).addBoth(result.append)
    assert result == [None], result


class FieldCacheTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.root = Path(self.mktemp())
        self.inbox = BlockingMaildirStore(self.root).getFolder("INBOX")
        self.path = self.root / FILENAME
        self.folders: list[MaildirFolder] = []

    def reopened(self) -> MaildirFieldCache:
        """The cache of INBOX as a new process sees it."""
        folder = BlockingMaildirStore(self.root).getFolder("INBOX")
        folder.messages()
        self.folders.append(folder)
        return cacheOf(folder)

    def keep(self, info: MessageInfo, **fields: bytes) -> None:
        cache = cacheOf(self.inbox)
        for name in fields:
            cache.useField(name, NOW)
        cache.cacheFields(info, fields)

    def test_maildir_folder_provides_the_field_cache(self) -> None:
        self.assertTrue(verifyObject(IFieldCacheFolder, IFieldCacheFolder(self.inbox)))
        self.assertIs(IFieldCacheFolder(self.inbox), IFieldCacheFolder(self.inbox))

    def test_fields_survive_new_store_objects(self) -> None:
        one = deliver(self.inbox, b"Subject: one\r\n\r\nbody\r\n")
        two = deliver(self.inbox, b"Subject: two\r\n\r\nbody\r\n")
        self.keep(one, envelope=b"E1", header=b"H1")
        self.keep(two, envelope=b"E2")
        kept = cacheOf(self.inbox).cachedFields(one)
        self.assertEqual(kept, {"envelope": b"E1", "header": b"H1"})
        flushed(cacheOf(self.inbox))
        self.keep(one, structure=b"S1")
        flushed(cacheOf(self.inbox))
        cache = self.reopened()
        self.assertEqual(
            cache.cachedFields(one), {"envelope": b"E1", "header": b"H1", "structure": b"S1"}
        )
        self.assertEqual(cache.cachedFields(two), {"envelope": b"E2"})
        self.assertEqual(set(cache.fieldUses()), {"envelope", "header", "structure"})

    def test_fields_wait_in_memory_until_flushed(self) -> None:
        one = deliver(self.inbox, b"Subject: one\r\n\r\nbody\r\n")
        self.keep(one, envelope=b"E1")
        self.assertEqual(cacheOf(self.inbox).pendingFields(), 1)
        self.assertIsNone(self.reopened().cachedFields(one))
        flushed(cacheOf(self.inbox))
        self.assertEqual(cacheOf(self.inbox).pendingFields(), 0)
        self.assertEqual(self.reopened().cachedFields(one), {"envelope": b"E1"})

    def test_a_message_of_another_content_under_the_same_uid_misses(self) -> None:
        one = deliver(self.inbox, b"Subject: one\r\n\r\nbody\r\n")
        self.keep(one, envelope=b"E1")
        flushed(cacheOf(self.inbox))
        cache = self.reopened()
        other = MessageInfo(one.uid, one.flags, one.size + 1, one.internaldate, one.key)
        self.assertIsNone(cache.cachedFields(other))
        renamed = MessageInfo(one.uid, one.flags, one.size, one.internaldate, one.key + "x")
        self.assertIsNone(cache.cachedFields(renamed))

    def test_torn_tail_is_cut_off_and_earlier_records_kept(self) -> None:
        """A process killed mid-write leaves part of a record: it is cut off."""
        one = deliver(self.inbox, b"Subject: one\r\n\r\nbody\r\n")
        two = deliver(self.inbox, b"Subject: two\r\n\r\nbody\r\n")
        self.keep(one, envelope=b"E1")
        flushed(cacheOf(self.inbox))
        whole = self.path.stat().st_size
        self.keep(two, envelope=b"E2" * 100)
        flushed(cacheOf(self.inbox))
        torn = self.path.read_bytes()[: whole + 40]
        self.path.write_bytes(torn)
        cache = self.reopened()
        self.assertEqual(cache.cachedFields(one), {"envelope": b"E1"})
        self.assertIsNone(cache.cachedFields(two))
        self.assertEqual(self.path.stat().st_size, whole)
        cache.cacheFields(two, {"envelope": b"again"})
        flushed(cache)
        self.assertEqual(self.reopened().cachedFields(two), {"envelope": b"again"})
        self.assertEqual(self.reopened().cachedFields(one), {"envelope": b"E1"})

    def test_tail_appended_by_a_killed_process_is_cut_before_the_next_append(self) -> None:
        """Another process's torn record must not hide the records written after it."""
        one = deliver(self.inbox, b"Subject: one\r\n\r\nbody\r\n")
        two = deliver(self.inbox, b"Subject: two\r\n\r\nbody\r\n")
        self.keep(one, envelope=b"E1")
        flushed(cacheOf(self.inbox))
        with self.path.open("ab") as f:
            f.write(fieldcachefile.encode(b"9/x/1", {"envelope": b"lost"})[:-3])
        self.keep(two, envelope=b"E2")
        flushed(cacheOf(self.inbox))
        cache = self.reopened()
        self.assertEqual(cache.cachedFields(one), {"envelope": b"E1"})
        self.assertEqual(cache.cachedFields(two), {"envelope": b"E2"})

    def test_garbage_file_is_started_anew(self) -> None:
        one = deliver(self.inbox, b"Subject: one\r\n\r\nbody\r\n")
        self.path.write_bytes(os.urandom(5000))
        cache = self.reopened()
        self.assertIsNone(cache.cachedFields(one))
        self.assertEqual(self.path.stat().st_size, len(fieldcachefile.header(1)))
        cache.cacheFields(one, {"envelope": b"E1"})
        flushed(cache)
        self.assertEqual(self.reopened().cachedFields(one), {"envelope": b"E1"})

    def test_damaged_record_is_not_served(self) -> None:
        """A record whose bytes changed after it was read is a miss, never other bytes."""
        one = deliver(self.inbox, b"Subject: one\r\n\r\nbody\r\n")
        self.keep(one, envelope=b"E1" * 10)
        flushed(cacheOf(self.inbox))
        cache = self.reopened()
        self.assertIsNotNone(cache.cachedFields(one))
        raw = bytearray(self.path.read_bytes())
        raw[raw.index(b"E1E1") + 3] ^= 0xFF
        with self.path.open("r+b") as f:
            f.write(raw)
        self.assertIsNone(cache.cachedFields(one))

    def test_file_of_another_uidvalidity_is_not_used(self) -> None:
        one = deliver(self.inbox, b"Subject: one\r\n\r\nbody\r\n")
        self.keep(one, envelope=b"E1")
        flushed(cacheOf(self.inbox))
        raw = bytearray(self.path.read_bytes())
        validity = self.inbox.uidValidity()
        raw[: len(fieldcachefile.header(1))] = fieldcachefile.header(validity + 1)
        self.path.write_bytes(bytes(raw))
        self.assertIsNone(self.reopened().cachedFields(one))

    def test_two_store_objects_share_the_file(self) -> None:
        """Two processes append in turn; neither loses what the other wrote."""
        one = deliver(self.inbox, b"Subject: one\r\n\r\nbody\r\n")
        two = deliver(self.inbox, b"Subject: two\r\n\r\nbody\r\n")
        first = cacheOf(self.inbox)
        second = self.reopened()
        first.cachedFields(one)
        second.cachedFields(one)
        first.cacheFields(one, {"envelope": b"E1"})
        flushed(first)
        second.cacheFields(two, {"envelope": b"E2"})
        second.cacheFields(one, {"header": b"H1"})
        flushed(second)
        first.cacheFields(two, {"header": b"H2"})
        flushed(first)
        third = self.reopened()
        self.assertEqual(third.cachedFields(one), {"envelope": b"E1", "header": b"H1"})
        self.assertEqual(third.cachedFields(two), {"envelope": b"E2", "header": b"H2"})
        self.assertEqual(first.cachedFields(one), {"envelope": b"E1", "header": b"H1"})

    def test_facts_another_process_wrote_are_found_without_a_write_here(self) -> None:
        one = deliver(self.inbox, b"Subject: one\r\n\r\nbody\r\n")
        two = deliver(self.inbox, b"Subject: two\r\n\r\nbody\r\n")
        reader = self.reopened()
        self.assertIsNone(reader.cachedFields(one))
        self.keep(one, envelope=b"E1")
        flushed(cacheOf(self.inbox))
        self.assertEqual(reader.cachedFields(one), {"envelope": b"E1"})
        writer = cacheOf(self.inbox)
        inode = self.path.stat().st_ino
        for n in range(60):
            writer.cacheFields(two, {"envelope": b"%d" % n + b"e" * 3000})
            flushed(writer, share=0.01)
        self.assertNotEqual(self.path.stat().st_ino, inode, "the file was not compacted")
        self.assertEqual(reader.cachedFields(two), {"envelope": b"59" + b"e" * 3000})
        self.assertEqual(reader.cachedFields(one), {"envelope": b"E1"})

    def test_compaction_drops_messages_gone_and_fields_not_used(self) -> None:
        infos = [deliver(self.inbox, b"Subject: %d\r\n\r\nbody\r\n" % n) for n in range(40)]
        cache = cacheOf(self.inbox)
        cache.useField("envelope", NOW)
        cache.useField("old", NOW - 90 * 86400)
        for info in infos:
            cache.cacheFields(info, {"envelope": b"e" * 3000, "old": b"o" * 10})
        flushed(cache, NOW - 100 * 86400)
        before = self.path.stat().st_size
        self.assertGreater(before, fieldcache.COMPACT_MIN)
        self.inbox.expunge([info.uid for info in infos[:30]])
        cache.cacheFields(infos[35], {"envelope": b"E"})
        flushed(cache, NOW - 30 * 86400)
        self.assertLess(self.path.stat().st_size, before // 3)
        again = self.reopened()
        self.assertEqual(again.cachedFields(infos[35]), {"envelope": b"E"})
        self.assertEqual(again.cachedFields(infos[36]), {"envelope": b"e" * 3000})
        self.assertIsNone(again.cachedFields(infos[0]))
        self.assertEqual(set(again.fieldUses()), {"envelope"})
        self.assertFalse(list(self.root.glob(FILENAME + ".*")), "temporary file left")

    def test_flush_after_the_folder_object_is_gone_does_nothing(self) -> None:
        """A flush still running when its folder is collected ends quietly."""
        folder = BlockingMaildirStore(self.root).getFolder("INBOX")
        one = deliver(folder, b"Subject: one\r\n\r\nbody\r\n")
        cache = cacheOf(folder)
        cache.cacheFields(one, {"envelope": b"E1"})
        del folder
        gc.collect()
        flushed(cache)
        self.assertEqual(cache.pendingFields(), 0)

    def test_flush_after_the_folder_was_deleted_does_nothing(self) -> None:
        store = BlockingMaildirStore(self.root)
        folder = store.createFolder("Old")
        one = deliver(folder, b"Subject: one\r\n\r\nbody\r\n")
        cache = cacheOf(folder)
        cache.cacheFields(one, {"envelope": b"E1"})
        flushed(cache)
        cache.cacheFields(one, {"header": b"H1"})
        shutil.rmtree(folder.path)
        flushed(cache)
        self.assertEqual(cache.pendingFields(), 0)
        other = store.createFolder("Other")
        two = deliver(other, b"Subject: two\r\n\r\nbody\r\n")
        cache = cacheOf(other)
        cache.cacheFields(two, {"envelope": b"E2"})
        store.deleteFolder("Other")
        flushed(cache)
        self.assertEqual(cache.pendingFields(), 0)

    def test_write_failure_leaves_answers_from_memory_only(self) -> None:
        """A cache that cannot write is a cache that misses, never an error."""
        one = deliver(self.inbox, b"Subject: one\r\n\r\nbody\r\n")
        self.path.mkdir()
        cache = cacheOf(self.inbox)
        self.assertIsNone(cache.cachedFields(one))
        cache.cacheFields(one, {"envelope": b"E1"})
        flushed(cache)
        self.assertIsNone(cache.cachedFields(one))
        self.flushLoggedErrors()


class DamageTests(SynchronousTestCase):
    @settings(
        max_examples=60,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(
        st.lists(st.binary(max_size=300), min_size=1, max_size=12),
        st.data(),
    )
    def test_any_cut_or_flipped_byte_yields_a_prefix_of_what_was_written(
        self, values: list[bytes], data: st.DataObject
    ) -> None:
        """Whatever a crash or a disk does to the file, what loads was written so."""
        root = Path(self.mktemp())
        root.mkdir()
        path = root / FILENAME
        fd, _ = fieldcachefile.load(path, 7)
        records = {b"%d" % n: {"f": value} for n, value in enumerate(values)}
        for key, fields in records.items():
            fieldcachefile.append(fd, path, os.fstat(fd).st_size, {key: fields}, {}, None)
        os.close(fd)
        raw = bytearray(path.read_bytes())
        cut = data.draw(st.integers(0, len(raw)))
        del raw[cut:]
        if raw and data.draw(st.booleans()):
            at = data.draw(st.integers(0, len(raw) - 1))
            raw[at] ^= data.draw(st.integers(1, 255))
        path.write_bytes(bytes(raw))
        fd, found = fieldcachefile.load(path, 7)
        try:
            keys = list(found.index)
            self.assertEqual(keys, list(records)[: len(keys)])
            for key, span in found.index.items():
                self.assertEqual(fieldcachefile.readRecord(fd, span), (key, records[key]))
            self.assertEqual(os.fstat(fd).st_size, found.end)
        finally:
            os.close(fd)
