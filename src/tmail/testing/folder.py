"""
The contract of L{IMailFolder} and its optional parts, as test mixins.

Mix L{MailFolderTestsMixin} into a L{twisted.trial.unittest.TestCase} and
define C{makeStore} (a fresh, empty L{IMailStore} for each test); the folder
tests run on its C{INBOX} and on folders they create in it.  Tests of an
optional interface (L{IModSeqFolder}, L{IIncrementalFolder}, ...) are
skipped, with the reason, when the folder does not provide it.
"""

from __future__ import annotations

import io
import re
import time
from typing import Any, TypeVar
from unittest import SkipTest

from twisted.internet.defer import Deferred

from tmail.interfaces import (
    IFlagChangingFolder,
    IIncrementalFolder,
    IInsertablePendingMessage,
    ILinkingFolder,
    IMailFolder,
    IMailStore,
    IModSeqFolder,
    IObjectIdFolder,
    IPendingMessage,
    IRetainingFolder,
    ISaveDateFolder,
    MessageInfo,
)
from tmail.testing.calls import (
    MESSAGE,
    TestCaseBase,
    call,
    deliver,
    read,
    requireDeferredAnswers,
    requireProvider,
    verifyProvided,
)

__all__ = ["FOLDER_INTERFACES", "MailFolderTestsMixin"]

T = TypeVar("T")

#: The interfaces a folder may provide, each checked with C{verifyObject}.
FOLDER_INTERFACES = (
    IMailFolder,
    IModSeqFolder,
    IObjectIdFolder,
    ISaveDateFolder,
    IIncrementalFolder,
    IRetainingFolder,
    ILinkingFolder,
    IFlagChangingFolder,
)

#: RFC 8474's object IDs.
_OBJECT_ID = re.compile(r"[A-Za-z0-9_-]{1,255}\Z")

#: A date in the past with no fraction, that every store keeps exactly.
_PAST = 1_700_000_000.0


def _withoutRecent(info: MessageInfo) -> tuple[int, frozenset[str], int, float, str]:
    return (info.uid, info.flags, info.size, info.internaldate, info.key)


class MailFolderTestsMixin(TestCaseBase):
    """
    Tests for an L{IMailFolder} implementation: what the IMAP, POP3 and
    SMTP front ends rely on.
    """

    #: Set by a test case whose store answers its disk and network
    #: operations with plain values (as a store written before the seam
    #: may): the test that they answer with Deferreds is then skipped.
    answersAtOnce = False

    def makeStore(self) -> IMailStore:
        """A new, empty store for one test; defined by the test case."""
        raise NotImplementedError(f"{type(self).__name__} must define makeStore")

    def reopenStore(self, store: IMailStore) -> IMailStore:
        """
        Another store object over the same storage as C{store}, as another
        process (or worker) opens it; defined by a test case whose stores
        share storage, to run the tests of changes seen across processes.
        """
        raise SkipTest(f"{type(self).__name__} does not define reopenStore")

    async def twoViews(self, name: str = "INBOX") -> tuple[IMailFolder, IMailFolder]:
        """Folder C{name} as this test's store and as a reopened store see it."""
        mine = await self.folder(name)
        other = await call(self.reopenStore, await self.contractStore())
        theirs: IMailFolder = await call(other.getFolder, name)
        return mine, theirs

    async def contractStore(self) -> IMailStore:
        """The store of this test, made on first use."""
        store: IMailStore | None = getattr(self, "_contractStore", None)
        if store is None:
            store = self._contractStore = await call(self.makeStore)
        return store

    async def folder(self, name: str = "INBOX") -> IMailFolder:
        """Folder C{name} of this test's store, created when missing."""
        store = await self.contractStore()
        if name == "INBOX" or name in await call(store.listFolders):
            folder: IMailFolder = await call(store.getFolder, name)
        else:
            folder = await call(store.createFolder, name)
        return folder

    async def folderProviding(self, interface: type[T], name: str = "INBOX") -> T:
        """Folder C{name} as a provider of the optional C{interface}; skips the test otherwise."""
        return requireProvider(await self.folder(name), interface)

    async def listed(self, folder: IMailFolder, claimRecent: bool = False) -> list[MessageInfo]:
        """The folder's messages, once it picked up other processes' changes."""
        if IIncrementalFolder.providedBy(folder):
            await call(folder.refresh)
        messages = await call(folder.messages, claimRecent)
        return list(messages)

    async def uids(self, folder: IMailFolder) -> list[int]:
        return [info.uid for info in await self.listed(folder)]

    async def infoOf(self, folder: IMailFolder, uid: int) -> MessageInfo:
        [info] = [info for info in await self.listed(folder) if info.uid == uid]
        return info

    # Interfaces

    async def test_folder_provides_the_interfaces_it_claims(self) -> None:
        """C{verifyObject} passes for L{IMailFolder} and every optional folder interface."""
        folder = await self.folder()
        self.assertIn("IMailFolder", verifyProvided(folder, FOLDER_INTERFACES))

    async def test_pending_message_provides_the_interfaces_it_claims(self) -> None:
        folder = await self.folder()
        pending = await call(folder.beginMessage)
        try:
            provided = verifyProvided(pending, (IPendingMessage, IInsertablePendingMessage))
            self.assertIn("IPendingMessage", provided)
        finally:
            await call(pending.abort)

    async def test_folder_name_is_its_imap_name(self) -> None:
        self.assertEqual((await self.folder()).name, "INBOX")
        self.assertEqual((await self.folder("Archive/2025")).name, "Archive/2025")

    # The store seam

    async def test_disk_operations_answer_with_deferreds_and_index_readers_at_once(
        self,
    ) -> None:
        """
        C{commit}, C{refresh}, C{openMessage}, C{setFlags}, C{changeFlags},
        C{copyMessage} and C{expunge} answer with a L{Deferred} (fired or
        not), a failure as the Deferred's; C{beginMessage} and what the
        index knows answer at once.
        """
        folder = await self.folder()
        archive = await self.folder("Archive")
        requireDeferredAnswers(self, folder)
        seam: Any = folder

        async def answer(name: str, answered: Any) -> Any:
            self.assertIsInstance(answered, Deferred, name)
            return await answered

        pending = folder.beginMessage()
        self.assertNotIsInstance(pending, Deferred)
        await call(pending.write, MESSAGE)
        uid = await answer("commit", pending.commit())
        if IIncrementalFolder.providedBy(folder):
            await answer("refresh", seam.refresh())
        listed = folder.messages(False)
        self.assertNotIsInstance(listed, Deferred)
        self.assertEqual([info.uid for info in listed], [uid])
        for reader in (folder.uidValidity, folder.uidNext):
            self.assertIsInstance(reader(), int, reader.__name__)
        with await answer("openMessage", seam.openMessage(uid)) as opened:
            self.assertEqual(opened.read(), MESSAGE)
        await answer("setFlags", seam.setFlags(uid, {"\\Seen"}))
        if IFlagChangingFolder.providedBy(folder):
            await answer("changeFlags", seam.changeFlags(uid, {"\\Flagged"}, ()))
        await answer("copyMessage", seam.copyMessage(uid, archive))
        self.assertEqual(await answer("expunge", seam.expunge([uid])), [uid])
        never = uid + 1000
        for name, failed in (
            ("openMessage", seam.openMessage(never)),
            ("setFlags", seam.setFlags(never, ())),
        ):
            self.assertIsInstance(failed, Deferred, f"{name} of a message never delivered")
            await self.assertFailure(failed, KeyError)

    # Delivery

    async def test_new_folder_is_empty(self) -> None:
        folder = await self.folder("Empty")
        self.assertEqual(await self.listed(folder), [])
        self.assertGreaterEqual(await call(folder.uidNext), 1)
        self.assertGreater(await call(folder.uidValidity), 0)

    async def test_commit_returns_the_uid_of_the_listed_message(self) -> None:
        folder = await self.folder()
        uid = await deliver(folder)
        [info] = await self.listed(folder)
        self.assertEqual(info.uid, uid)
        self.assertGreaterEqual(uid, 1)
        self.assertEqual(info.size, len(MESSAGE))
        self.assertIsInstance(info.key, str)
        self.assertTrue(info.key)

    async def test_nothing_is_visible_before_commit(self) -> None:
        folder = await self.folder()
        pending = await call(folder.beginMessage)
        await call(pending.write, MESSAGE)
        self.assertEqual(await self.listed(folder), [])
        uid = await call(pending.commit)
        self.assertEqual(await self.uids(folder), [uid])

    async def test_abort_leaves_nothing(self) -> None:
        folder = await self.folder()
        pending = await call(folder.beginMessage, ("\\Seen",))
        await call(pending.write, MESSAGE)
        await call(pending.abort)
        await call(pending.abort)
        self.assertEqual(await self.listed(folder), [])
        uid = await deliver(folder)
        self.assertEqual(await self.uids(folder), [uid])

    async def test_publish_then_commit_delivers(self) -> None:
        folder = await self.folder()
        pending = await call(folder.beginMessage)
        await call(pending.write, MESSAGE)
        await call(pending.publish)
        uid = await call(pending.commit)
        self.assertEqual(await read(folder, uid), MESSAGE)

    async def test_message_bytes_round_trip(self) -> None:
        """The bytes of several writes are read back as one message, unchanged."""
        folder = await self.folder()
        pending = await call(folder.beginMessage)
        parts = [b"Subject: parts\r\n", b"\r\n", b"\x00\xff binary \xc3\xa4\r\n", b"end\r\n"]
        for part in parts:
            await call(pending.write, part)
        uid = await call(pending.commit)
        self.assertEqual(await read(folder, uid), b"".join(parts))
        self.assertEqual((await self.infoOf(folder, uid)).size, len(b"".join(parts)))

    async def test_empty_message_round_trips(self) -> None:
        folder = await self.folder()
        uid = await deliver(folder, b"")
        self.assertEqual(await read(folder, uid), b"")
        self.assertEqual((await self.infoOf(folder, uid)).size, 0)

    async def test_large_message_written_in_pieces_round_trips(self) -> None:
        folder = await self.folder()
        line = b"0123456789" * 7 + b"\r\n"
        body = b"Subject: large\r\n\r\n" + line * (3 * 2**20 // len(line))
        pending = await call(folder.beginMessage)
        for start in range(0, len(body), 65536):
            await call(pending.write, body[start : start + 65536])
        uid = await call(pending.commit)
        self.assertEqual((await self.infoOf(folder, uid)).size, len(body))
        self.assertEqual(await read(folder, uid), body)

    async def test_uids_increase_and_messages_are_in_uid_order(self) -> None:
        folder = await self.folder()
        delivered = [await deliver(folder, MESSAGE + b"%d\r\n" % i) for i in range(5)]
        self.assertEqual(delivered, sorted(set(delivered)))
        self.assertEqual(await self.uids(folder), delivered)
        for i, uid in enumerate(delivered):
            self.assertEqual(await read(folder, uid), MESSAGE + b"%d\r\n" % i)

    async def test_uid_next_is_the_uid_the_next_message_gets(self) -> None:
        folder = await self.folder()
        for _ in range(3):
            expected = await call(folder.uidNext)
            uid = await deliver(folder)
            self.assertEqual(uid, expected)
            self.assertGreater(await call(folder.uidNext), uid)

    async def test_uids_are_never_reused_after_expunge(self) -> None:
        folder = await self.folder()
        first = await deliver(folder)
        last = await deliver(folder)
        await call(folder.expunge, [last])
        again = await deliver(folder)
        self.assertGreater(again, last)
        self.assertEqual(await self.uids(folder), [first, again])

    async def test_uid_validity_stays_while_messages_come_and_go(self) -> None:
        folder = await self.folder()
        validity = await call(folder.uidValidity)
        uid = await deliver(folder)
        await call(folder.setFlags, uid, ["\\Seen"])
        await call(folder.expunge, [uid])
        await deliver(folder)
        self.assertEqual(await call(folder.uidValidity), validity)

    async def test_folders_count_uids_on_their_own(self) -> None:
        """A delivery into one folder does not use up UIDs of another."""
        inbox = await self.folder()
        other = await self.folder("Other")
        before = await call(other.uidNext)
        await deliver(inbox)
        self.assertEqual(await call(other.uidNext), before)

    async def test_internaldate_is_kept(self) -> None:
        folder = await self.folder()
        uid = await deliver(folder, internaldate=_PAST)
        self.assertAlmostEqual((await self.infoOf(folder, uid)).internaldate, _PAST, delta=1)

    async def test_internaldate_defaults_to_now(self) -> None:
        folder = await self.folder()
        before = time.time()
        uid = await deliver(folder)
        date = (await self.infoOf(folder, uid)).internaldate
        self.assertTrue(before - 2 <= date <= time.time() + 2, date)

    # Flags

    async def test_flags_and_keywords_given_at_delivery_are_kept(self) -> None:
        folder = await self.folder()
        flags = frozenset({"\\Seen", "\\Flagged", "\\Answered", "\\Draft", "$Junk", "work"})
        uid = await deliver(folder, flags=flags)
        self.assertEqual((await self.infoOf(folder, uid)).flags, flags)

    async def test_many_keywords_round_trip_and_are_copied(self) -> None:
        """More keywords than Maildir has letters for are kept as well."""
        source = await self.folder()
        target = await self.folder("Copies")
        keywords = frozenset(f"$Label{i}" for i in range(40))
        uid = await deliver(source, flags=keywords | {"\\Seen"})
        self.assertEqual((await self.infoOf(source, uid)).flags, keywords | {"\\Seen"})
        copied = await call(source.copyMessage, uid, target)
        self.assertEqual((await self.infoOf(target, copied)).flags, keywords | {"\\Seen"})

    async def test_set_flags_replaces_flags_and_keywords(self) -> None:
        folder = await self.folder()
        uid = await deliver(folder, flags=["\\Seen", "old"])
        returned = await call(folder.setFlags, uid, ["\\Flagged", "\\Deleted", "new"])
        expected = frozenset({"\\Flagged", "\\Deleted", "new"})
        self.assertEqual(returned.uid, uid)
        self.assertEqual(returned.flags, expected)
        self.assertEqual((await self.infoOf(folder, uid)).flags, expected)
        await call(folder.setFlags, uid, [])
        self.assertEqual((await self.infoOf(folder, uid)).flags, frozenset())

    async def test_set_flags_of_one_message_leaves_the_others(self) -> None:
        folder = await self.folder()
        one = await deliver(folder, flags=["\\Seen"])
        two = await deliver(folder, flags=["\\Answered"])
        await call(folder.setFlags, one, ["\\Flagged"])
        self.assertEqual((await self.infoOf(folder, two)).flags, frozenset({"\\Answered"}))

    async def test_set_flags_of_a_gone_message_raises_keyerror(self) -> None:
        folder = await self.folder()
        uid = await deliver(folder)
        await call(folder.expunge, [uid])
        await self.assertFailure(call(folder.setFlags, uid, ["\\Seen"]), KeyError)
        await self.assertFailure(call(folder.setFlags, uid + 100, ["\\Seen"]), KeyError)

    async def test_key_is_unique_and_stays_across_flag_changes(self) -> None:
        """POP3 UIDL is the key: it must not change when a message is read."""
        folder = await self.folder()
        one, two = await deliver(folder), await deliver(folder)
        keys = {info.uid: info.key for info in await self.listed(folder)}
        self.assertNotEqual(keys[one], keys[two])
        await call(folder.setFlags, one, ["\\Seen", "$Read"])
        await call(folder.expunge, [two])
        self.assertEqual((await self.infoOf(folder, one)).key, keys[one])

    async def test_flag_change_keeps_the_bytes(self) -> None:
        folder = await self.folder()
        uid = await deliver(folder)
        await call(folder.setFlags, uid, ["\\Seen", "$Important"])
        self.assertEqual(await read(folder, uid), MESSAGE)

    # Reading and expunging

    async def test_opened_message_is_seekable_and_as_long_as_its_size(self) -> None:
        """IMAP seeks in the file it is given and serves C{size} octets of it."""
        folder = await self.folder()
        uid = await deliver(folder)
        size = (await self.infoOf(folder, uid)).size
        opened = await call(folder.openMessage, uid)
        with opened:
            self.assertEqual(opened.seek(0, io.SEEK_END), size)
            opened.seek(0)
            self.assertEqual(opened.read(), MESSAGE)
            opened.seek(6)
            self.assertEqual(opened.read(4), MESSAGE[6:10])

    async def test_open_of_an_unknown_message_raises_keyerror(self) -> None:
        folder = await self.folder()
        await self.assertFailure(call(folder.openMessage, 4711), KeyError)

    async def test_expunge_removes_the_messages_and_returns_their_uids(self) -> None:
        folder = await self.folder()
        one, two, three = [await deliver(folder) for _ in range(3)]
        removed = await call(folder.expunge, [three, one, three + 100])
        self.assertEqual(sorted(removed), [one, three])
        self.assertEqual(await self.uids(folder), [two])
        await self.assertFailure(call(folder.openMessage, one), KeyError)

    async def test_expunge_of_nothing_removes_nothing(self) -> None:
        folder = await self.folder()
        uid = await deliver(folder)
        self.assertEqual(list(await call(folder.expunge, [])), [])
        self.assertEqual(list(await call(folder.expunge, [uid + 1])), [])
        self.assertEqual(await self.uids(folder), [uid])

    async def test_expunge_twice_removes_once(self) -> None:
        folder = await self.folder()
        uid = await deliver(folder)
        self.assertEqual(list(await call(folder.expunge, [uid])), [uid])
        self.assertEqual(list(await call(folder.expunge, [uid])), [])

    # Copy

    async def test_copy_keeps_bytes_flags_and_date(self) -> None:
        source = await self.folder()
        target = await self.folder("Copies")
        uid = await deliver(source, flags=["\\Seen", "$Label1"], internaldate=_PAST)
        copied = await call(source.copyMessage, uid, target)
        info = await self.infoOf(target, copied)
        self.assertEqual(info.flags, frozenset({"\\Seen", "$Label1"}))
        self.assertAlmostEqual(info.internaldate, _PAST, delta=1)
        self.assertEqual(await read(target, copied), MESSAGE)
        self.assertEqual(await self.uids(source), [uid])

    async def test_copy_into_its_own_folder_adds_a_message(self) -> None:
        folder = await self.folder()
        uid = await deliver(folder, flags=["\\Answered"])
        copied = await call(folder.copyMessage, uid, folder)
        self.assertGreater(copied, uid)
        self.assertEqual(await self.uids(folder), [uid, copied])
        self.assertEqual(await read(folder, copied), MESSAGE)
        self.assertEqual((await self.infoOf(folder, copied)).flags, frozenset({"\\Answered"}))

    async def test_copy_gets_the_target_folders_next_uid(self) -> None:
        source = await self.folder()
        target = await self.folder("Copies")
        await deliver(target)
        expected = await call(target.uidNext)
        uid = await deliver(source)
        self.assertEqual(await call(source.copyMessage, uid, target), expected)

    async def test_copy_of_a_gone_message_raises_keyerror(self) -> None:
        source = await self.folder()
        target = await self.folder("Copies")
        await self.assertFailure(call(source.copyMessage, 4711, target), KeyError)
        self.assertEqual(await self.listed(target), [])

    # Recent

    async def test_claiming_listing_takes_recent_away(self) -> None:
        folder = await self.folder()
        await deliver(folder)
        await call(folder.messages, True)
        self.assertFalse(any(info.recent for info in await self.listed(folder)))

    async def test_listing_without_claim_leaves_recent(self) -> None:
        folder = await self.folder()
        await deliver(folder)
        first = [info.recent for info in await call(folder.messages, False)]
        second = [info.recent for info in await call(folder.messages, False)]
        self.assertEqual(first, second)

    # Listeners

    async def test_listeners_are_told_of_delivery_flag_change_and_expunge(self) -> None:
        folder = await self.folder()
        calls: list[IMailFolder] = []
        await call(folder.addListener, calls.append)
        uid = await deliver(folder)
        self.assertTrue(calls, "no call after a delivery")
        self.assertIs(calls[-1], folder)
        calls.clear()
        await call(folder.setFlags, uid, ["\\Seen"])
        self.assertTrue(calls, "no call after a flag change")
        calls.clear()
        await call(folder.expunge, [uid])
        self.assertTrue(calls, "no call after an expunge")

    async def test_listener_is_told_of_a_copy_into_its_folder(self) -> None:
        source = await self.folder()
        target = await self.folder("Copies")
        calls: list[IMailFolder] = []
        await call(target.addListener, calls.append)
        await call(source.copyMessage, await deliver(source), target)
        self.assertTrue(calls)

    async def test_removed_listener_is_not_called(self) -> None:
        folder = await self.folder()
        calls: list[IMailFolder] = []
        await call(folder.addListener, calls.append)
        await call(folder.removeListener, calls.append)
        await deliver(folder)
        self.assertEqual(calls, [])

    # IInsertablePendingMessage

    async def test_insert_puts_bytes_in_front_of_what_was_written(self) -> None:
        folder = await self.folder()
        pending = await call(folder.beginMessage)
        pending = requireProvider(pending, IInsertablePendingMessage)
        await call(pending.write, b"Subject: x\r\n\r\nbody\r\n")
        await call(pending.insert, 0, b"X-First: 1\r\n")
        await call(pending.insert, 12, b"X-Second: 2\r\n")
        uid = await call(pending.commit)
        self.assertEqual(
            await read(folder, uid), b"X-First: 1\r\nX-Second: 2\r\nSubject: x\r\n\r\nbody\r\n"
        )

    async def test_insert_far_back_in_a_large_message(self) -> None:
        """Inserting in front of bytes the store already wrote away still works."""
        folder = await self.folder()
        pending = await call(folder.beginMessage)
        pending = requireProvider(pending, IInsertablePendingMessage)
        line = b"x" * 78 + b"\r\n"
        body = b"Subject: large\r\n\r\n" + line * (2 * 2**20 // len(line))
        for start in range(0, len(body), 65536):
            await call(pending.write, body[start : start + 65536])
        await call(pending.insert, 0, b"X-Verdict: clean\r\n")
        await call(pending.insert, 18 + 16, b"X-Late: 1\r\n")
        await call(pending.publish)
        uid = await call(pending.commit)
        expected = b"X-Verdict: clean\r\nSubject: large\r\nX-Late: 1\r\n\r\n" + body[18:]
        self.assertEqual(await read(folder, uid), expected)
        self.assertEqual((await self.infoOf(folder, uid)).size, len(expected))

    async def test_insert_past_the_end_raises_valueerror(self) -> None:
        folder = await self.folder()
        pending = await call(folder.beginMessage)
        pending = requireProvider(pending, IInsertablePendingMessage)
        await call(pending.write, b"abc")
        try:
            await self.assertFailure(call(pending.insert, 4, b"x"), ValueError)
        finally:
            await call(pending.abort)

    # IModSeqFolder

    async def test_every_listed_message_has_a_modseq(self) -> None:
        folder = await self.folderProviding(IModSeqFolder)
        await deliver(folder)
        await deliver(folder, flags=["\\Seen"])
        listed = await self.listed(folder)
        self.assertTrue(all(info.modseq >= 1 for info in listed), listed)
        highest = await call(folder.highestModSeq)
        self.assertTrue(all(info.modseq <= highest for info in listed), (highest, listed))

    async def test_flag_change_takes_a_modseq_higher_than_any_before(self) -> None:
        folder = await self.folderProviding(IModSeqFolder)
        one = await deliver(folder)
        await deliver(folder)
        for flags in (["\\Seen"], ["\\Seen", "$A"], []):
            await self.listed(folder)
            before = await call(folder.highestModSeq)
            changed = await call(folder.setFlags, one, flags)
            self.assertGreater(changed.modseq, before)
            self.assertEqual((await self.infoOf(folder, one)).modseq, changed.modseq)
            self.assertGreaterEqual(await call(folder.highestModSeq), changed.modseq)

    async def test_delivery_raises_highest_modseq(self) -> None:
        folder = await self.folderProviding(IModSeqFolder)
        await self.listed(folder)
        before = await call(folder.highestModSeq)
        uid = await deliver(folder)
        await self.listed(folder)
        self.assertGreater(await call(folder.highestModSeq), before)
        self.assertGreater((await self.infoOf(folder, uid)).modseq, before)

    async def test_expunge_takes_a_higher_modseq_and_is_remembered(self) -> None:
        folder = await self.folderProviding(IModSeqFolder)
        one, two = await deliver(folder), await deliver(folder)
        await self.listed(folder)
        before = await call(folder.highestModSeq)
        await call(folder.expunge, [one])
        await self.listed(folder)
        after = await call(folder.highestModSeq)
        self.assertGreater(after, before)
        expunged, complete = await call(folder.expungedSince, before)
        self.assertEqual(list(expunged), [one])
        self.assertTrue(complete)
        self.assertEqual(list((await call(folder.expungedSince, after))[0]), [])
        self.assertNotIn(two, (await call(folder.expungedSince, 0))[0])

    async def test_expunged_since_is_ascending(self) -> None:
        folder = await self.folderProviding(IModSeqFolder)
        uids = [await deliver(folder) for _ in range(4)]
        await self.listed(folder)
        before = await call(folder.highestModSeq)
        await call(folder.expunge, [uids[3]])
        await call(folder.expunge, [uids[0], uids[2]])
        await self.listed(folder)
        expunged, _ = await call(folder.expungedSince, before)
        self.assertEqual(list(expunged), [uids[0], uids[2], uids[3]])

    # IObjectIdFolder

    async def test_object_ids_are_rfc8474_ids(self) -> None:
        folder = await self.folderProviding(IObjectIdFolder)
        uid = await deliver(folder)
        self.assertRegex(await call(folder.mailboxId), _OBJECT_ID)
        self.assertRegex(await call(folder.emailId, uid), _OBJECT_ID)

    async def test_folders_have_distinct_mailbox_ids(self) -> None:
        inbox = await self.folderProviding(IObjectIdFolder)
        other = await self.folderProviding(IObjectIdFolder, "Other")
        self.assertNotEqual(await call(inbox.mailboxId), await call(other.mailboxId))

    async def test_mailbox_id_stays_across_rename(self) -> None:
        folder = await self.folderProviding(IObjectIdFolder, "Before")
        mailboxId = await call(folder.mailboxId)
        store = await self.contractStore()
        await call(store.renameFolder, "Before", "After")
        renamed = requireProvider(await call(store.getFolder, "After"), IObjectIdFolder)
        self.assertEqual(await call(renamed.mailboxId), mailboxId)

    async def test_messages_have_distinct_email_ids_and_a_copy_shares_its_own(self) -> None:
        source = await self.folderProviding(IObjectIdFolder)
        target = await self.folderProviding(IObjectIdFolder, "Copies")
        one, two = await deliver(source), await deliver(source)
        self.assertNotEqual(await call(source.emailId, one), await call(source.emailId, two))
        copied = await call(source.copyMessage, one, target)
        self.assertEqual(await call(target.emailId, copied), await call(source.emailId, one))

    async def test_email_id_of_a_gone_message_raises_keyerror(self) -> None:
        folder = await self.folderProviding(IObjectIdFolder)
        await self.assertFailure(call(folder.emailId, 4711), KeyError)

    # ISaveDateFolder

    async def test_save_date_is_when_the_message_came_in(self) -> None:
        source = await self.folderProviding(ISaveDateFolder)
        target = await self.folderProviding(ISaveDateFolder, "Copies")
        before = time.time()
        uid = await deliver(source, internaldate=_PAST)
        copied = await call(source.copyMessage, uid, target)
        for folder, each in ((source, uid), (target, copied)):
            saved = await call(folder.saveDate, each)
            if saved is not None:
                self.assertTrue(before - 2 <= saved <= time.time() + 2, saved)

    async def test_save_date_of_a_gone_message_raises_keyerror(self) -> None:
        folder = await self.folderProviding(ISaveDateFolder)
        await self.assertFailure(call(folder.saveDate, 4711), KeyError)

    # IIncrementalFolder

    async def test_no_changes_since_the_current_serial(self) -> None:
        folder = await self.folderProviding(IIncrementalFolder)
        await deliver(folder)
        await self.listed(folder)
        serial = await call(folder.changeSerial)
        self.assertEqual(await call(folder.changesSince, serial, False), (serial, []))

    async def test_changes_since_report_additions_flag_changes_and_expunges_once(self) -> None:
        folder = await self.folderProviding(IIncrementalFolder)
        kept = await deliver(folder)
        gone = await deliver(folder)
        await self.listed(folder)
        serial = await call(folder.changeSerial)
        added = await deliver(folder)
        await call(folder.setFlags, kept, ["\\Seen"])
        await call(folder.setFlags, kept, ["\\Seen", "\\Flagged"])
        await call(folder.expunge, [gone])
        current, changes = await call(folder.changesSince, serial, False)
        self.assertIsNotNone(changes)
        assert changes is not None
        removed = [change for change in changes if isinstance(change, int)]
        infos = {c.uid: c for c in changes if isinstance(c, MessageInfo)}
        self.assertEqual(removed, [gone])
        self.assertEqual(sorted(infos), [kept, added])
        self.assertEqual(len(changes), 3, changes)
        self.assertEqual(infos[kept].flags, frozenset({"\\Seen", "\\Flagged"}))
        self.assertEqual(await call(folder.changeSerial), current)

    async def test_changes_applied_to_a_listing_give_the_listing_now(self) -> None:
        folder = await self.folderProviding(IIncrementalFolder)
        uids = [await deliver(folder) for _ in range(4)]
        snapshot = {info.uid: info for info in await self.listed(folder)}
        serial = await call(folder.changeSerial)
        await call(folder.expunge, [uids[1]])
        await call(folder.setFlags, uids[2], ["$Done"])
        await deliver(folder, flags=["\\Draft"])
        _, changes = await call(folder.changesSince, serial, False)
        assert changes is not None
        for change in changes:
            if isinstance(change, int):
                snapshot.pop(change, None)
            else:
                snapshot[change.uid] = change
        now = await self.listed(folder)
        self.assertEqual(
            [_withoutRecent(info) for _, info in sorted(snapshot.items())],
            [_withoutRecent(info) for info in now],
        )

    async def test_claiming_changes_take_recent_away(self) -> None:
        folder = await self.folderProviding(IIncrementalFolder)
        await self.listed(folder, claimRecent=True)
        serial = await call(folder.changeSerial)
        await deliver(folder)
        await call(folder.changesSince, serial, True)
        self.assertFalse(any(info.recent for info in await self.listed(folder)))

    async def test_info_and_message_count_agree_with_the_listing(self) -> None:
        folder = await self.folderProviding(IIncrementalFolder)
        one = await deliver(folder, flags=["\\Seen"])
        two = await deliver(folder)
        await call(folder.expunge, [two])
        await call(folder.refresh)
        listed = await self.listed(folder)
        self.assertEqual(await call(folder.messageCount), len(listed))
        info = await call(folder.info, one)
        assert info is not None
        self.assertEqual(_withoutRecent(info), _withoutRecent(listed[0]))
        self.assertIsNone(await call(folder.info, two))

    async def test_message_count_takes_no_recent(self) -> None:
        folder = await self.folderProviding(IIncrementalFolder)
        await deliver(folder)
        before = [info.recent for info in await self.listed(folder)]
        await call(folder.messageCount)
        self.assertEqual([info.recent for info in await self.listed(folder)], before)

    # IFlagChangingFolder

    async def test_change_flags_adds_and_removes_and_keeps_the_others(self) -> None:
        folder = await self.folderProviding(IFlagChangingFolder)
        uid = await deliver(folder, flags=["\\Seen", "$Keep", "$Drop"])
        changed = await call(folder.changeFlags, uid, ["\\Flagged", "$New"], ["$Drop", "\\Draft"])
        expected = frozenset({"\\Seen", "$Keep", "\\Flagged", "$New"})
        self.assertEqual(changed.flags, expected)
        self.assertEqual((await self.infoOf(folder, uid)).flags, expected)

    async def test_change_flags_of_a_gone_message_raises_keyerror(self) -> None:
        folder = await self.folderProviding(IFlagChangingFolder)
        await self.assertFailure(call(folder.changeFlags, 4711, ["\\Seen"], []), KeyError)

    # IRetainingFolder

    async def test_a_reader_still_opens_a_message_expunged_meanwhile(self) -> None:
        folder = await self.folderProviding(IRetainingFolder)
        uid = await deliver(folder)
        held = {uid}
        await call(folder.addReader, held.__contains__)
        await call(folder.expunge, [uid])
        self.assertEqual(await read(folder, uid), MESSAGE)
        await call(folder.release, held.__contains__, [uid])
        held.clear()
        await call(folder.removeReader, held.__contains__)
        await self.assertFailure(call(folder.openMessage, uid), KeyError)

    async def test_expunged_message_is_kept_until_every_reader_lets_go(self) -> None:
        folder = await self.folderProviding(IRetainingFolder)
        uid = await deliver(folder)
        first, second = {uid}, {uid}
        await call(folder.addReader, first.__contains__)
        await call(folder.addReader, second.__contains__)
        await call(folder.expunge, [uid])
        self.assertEqual(await self.uids(folder), [])
        first.clear()
        await call(folder.release, first.__contains__, [uid])
        self.assertEqual(await read(folder, uid), MESSAGE)
        second.clear()
        await call(folder.release, second.__contains__, [uid])
        await self.assertFailure(call(folder.openMessage, uid), KeyError)

    async def test_removed_reader_lets_go_of_what_it_held(self) -> None:
        folder = await self.folderProviding(IRetainingFolder)
        uid = await deliver(folder)
        held = {uid}
        await call(folder.addReader, held.__contains__)
        await call(folder.expunge, [uid])
        await call(folder.removeReader, held.__contains__)
        await self.assertFailure(call(folder.openMessage, uid), KeyError)

    async def test_expunge_without_readers_keeps_nothing(self) -> None:
        folder = await self.folderProviding(IRetainingFolder)
        uid = await deliver(folder)
        await call(folder.expunge, [uid])
        await self.assertFailure(call(folder.openMessage, uid), KeyError)

    # ILinkingFolder

    async def test_linked_copy_delivers_the_same_bytes_on_its_own(self) -> None:
        source = await self.folder()
        target = await self.folderProviding(ILinkingFolder, "Shared")
        pending = await call(source.beginMessage, ("\\Seen",))
        await call(pending.write, MESSAGE)
        linked = await call(target.linkedCopy, pending)
        await call(pending.publish)
        uid = await call(pending.commit)
        await call(linked.publish)
        copied = await call(linked.commit)
        self.assertEqual(await read(source, uid), MESSAGE)
        self.assertEqual(await read(target, copied), MESSAGE)
        self.assertEqual(await self.uids(target), [copied])

    async def test_linked_copy_of_a_large_message(self) -> None:
        source = await self.folder()
        target = await self.folderProviding(ILinkingFolder, "Shared")
        body = b"Subject: large\r\n\r\n" + (b"y" * 998 + b"\r\n") * 2048
        pending = await call(source.beginMessage)
        for start in range(0, len(body), 65536):
            await call(pending.write, body[start : start + 65536])
        linked = await call(target.linkedCopy, pending)
        await call(pending.publish)
        uid = await call(pending.commit)
        await call(linked.publish)
        copied = await call(linked.commit)
        self.assertEqual(await read(source, uid), body)
        self.assertEqual(await read(target, copied), body)

    async def test_aborted_linked_copy_leaves_the_original(self) -> None:
        source = await self.folder()
        target = await self.folderProviding(ILinkingFolder, "Shared")
        pending = await call(source.beginMessage)
        await call(pending.write, MESSAGE)
        linked = await call(target.linkedCopy, pending)
        await call(linked.abort)
        uid = await call(pending.commit)
        self.assertEqual(await read(source, uid), MESSAGE)
        self.assertEqual(await self.listed(target), [])

    # Another process's view of the same storage

    async def test_delivery_is_seen_by_another_process(self) -> None:
        mine, theirs = await self.twoViews()
        self.assertEqual(await call(theirs.uidValidity), await call(mine.uidValidity))
        uid = await deliver(mine, flags=["\\Flagged"])
        [info] = await self.listed(theirs)
        self.assertEqual((info.uid, info.flags), (uid, frozenset({"\\Flagged"})))
        self.assertEqual(await read(theirs, uid), MESSAGE)

    async def test_flag_change_and_expunge_are_seen_by_another_process(self) -> None:
        mine, theirs = await self.twoViews()
        one, two = await deliver(mine), await deliver(mine)
        await self.listed(theirs)
        await call(mine.setFlags, one, ["\\Seen", "$Done"])
        await call(mine.expunge, [two])
        listed = await self.listed(theirs)
        self.assertEqual([(i.uid, i.flags) for i in listed], [(one, {"\\Seen", "$Done"})])
        await self.assertFailure(call(theirs.openMessage, two), KeyError)

    async def test_processes_delivering_in_turn_never_share_a_uid(self) -> None:
        mine, theirs = await self.twoViews()
        given = []
        for i in range(6):
            given.append(await deliver(mine if i % 2 else theirs, MESSAGE + b"%d\r\n" % i))
        self.assertEqual(len(set(given)), 6)
        self.assertEqual(given, sorted(given))
        for view in (mine, theirs):
            self.assertEqual(await self.uids(view), given)
            for i, uid in enumerate(given):
                self.assertEqual(await read(view, uid), MESSAGE + b"%d\r\n" % i)

    async def test_folder_created_by_another_process_is_found(self) -> None:
        store = await self.contractStore()
        other = await call(self.reopenStore, store)
        await call(other.createFolder, "Made Elsewhere")
        self.assertIn("Made Elsewhere", await call(store.listFolders))
        folder = await call(store.getFolder, "Made Elsewhere")
        self.assertEqual(await self.listed(folder), [])

    async def test_changes_since_report_another_processes_changes(self) -> None:
        mine, theirs = await self.twoViews()
        theirs = requireProvider(theirs, IIncrementalFolder)
        kept, gone = await deliver(mine), await deliver(mine)
        await self.listed(theirs)
        serial = await call(theirs.changeSerial)
        await call(mine.setFlags, kept, ["\\Answered"])
        await call(mine.expunge, [gone])
        added = await deliver(mine)
        await call(theirs.refresh)
        _, changes = await call(theirs.changesSince, serial, False)
        assert changes is not None
        removed = [change for change in changes if isinstance(change, int)]
        infos = {c.uid: c.flags for c in changes if isinstance(c, MessageInfo)}
        self.assertEqual(removed, [gone])
        self.assertEqual(infos, {kept: frozenset({"\\Answered"}), added: frozenset()})

    async def test_another_processes_flag_change_takes_a_higher_modseq(self) -> None:
        mine, theirs = await self.twoViews()
        theirs = requireProvider(theirs, IModSeqFolder)
        uid = await deliver(mine)
        await self.listed(theirs)
        before = await call(theirs.highestModSeq)
        await call(mine.setFlags, uid, ["\\Seen"])
        info = await self.infoOf(theirs, uid)
        self.assertGreater(info.modseq, before)
        self.assertGreaterEqual(await call(theirs.highestModSeq), info.modseq)

    async def test_another_processes_expunge_is_remembered(self) -> None:
        mine, theirs = await self.twoViews()
        theirs = requireProvider(theirs, IModSeqFolder)
        uid = await deliver(mine)
        await self.listed(theirs)
        before = await call(theirs.highestModSeq)
        await call(mine.expunge, [uid])
        await self.listed(theirs)
        expunged, _ = await call(theirs.expungedSince, before)
        self.assertEqual(list(expunged), [uid])
        self.assertGreater(await call(theirs.highestModSeq), before)
