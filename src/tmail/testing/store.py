"""
The contract of L{IMailStore} and its optional parts, as a test mixin.

Mix L{MailStoreTestsMixin} into a L{twisted.trial.unittest.TestCase} and
define C{makeStore} (a fresh, empty store for each test).  Quota tests that
need limits also call C{makeLimitedStore}; define it to run them.  Tests of
an optional interface are skipped, with the reason, when the store does not
provide it.
"""

from __future__ import annotations

from typing import Any
from unittest import SkipTest

from twisted.internet.defer import Deferred

from tmail.errors import FolderExists, InvalidFolderName, NoSuchFolder, OverQuota, StoreError
from tmail.interfaces import (
    IDeliveryStore,
    ILinkingFolder,
    IMailboxKeys,
    IMailFolder,
    IMailStore,
    IMetadataStore,
    IQuotaStore,
    ISpecialUseStore,
    ISteppedStore,
    IURLAuthStore,
    QuotaUsage,
)
from tmail.store.quota import QuotaLimits
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

__all__ = ["STORE_INTERFACES", "MailStoreTestsMixin"]

#: The interfaces a store may provide, each checked with C{verifyObject}.
STORE_INTERFACES = (
    IMailStore,
    ISteppedStore,
    IQuotaStore,
    ISpecialUseStore,
    IMetadataStore,
    IURLAuthStore,
)


#: A date in the past with no fraction, that every store keeps exactly.
_PAST = 1_700_000_000.0


class MailStoreTestsMixin(TestCaseBase):
    """
    Tests for an L{IMailStore} implementation: folders, subscriptions and
    the optional quota, special-use, METADATA, URLAUTH and stepped parts.
    """

    #: Set by a test case whose store answers its disk and network
    #: operations with plain values (as a store written before the seam
    #: may): the test that they answer with Deferreds is then skipped.
    answersAtOnce = False

    def makeStore(self) -> IMailStore:
        """A new, empty store for one test; defined by the test case."""
        raise NotImplementedError(f"{type(self).__name__} must define makeStore")

    def makeLimitedStore(self, limits: QuotaLimits) -> IMailStore:
        """
        A new, empty store that keeps C{limits} (0: no limit of that kind);
        defined by a test case whose store keeps quotas.
        """
        raise SkipTest(f"{type(self).__name__} does not define makeLimitedStore")

    async def contractStore(self) -> IMailStore:
        """The store of this test, made on first use."""
        store: IMailStore | None = getattr(self, "_contractStore", None)
        if store is None:
            store = self._contractStore = await call(self.makeStore)
        return store

    async def folderNames(self, store: IMailStore) -> list[str]:
        names: list[str] = await call(store.listFolders)
        return list(names)

    async def contents(self, folder: IMailFolder) -> list[tuple[bytes, frozenset[str]]]:
        """Bytes and flags of each message, in UID order."""
        return [
            (await read(folder, info.uid), info.flags)
            for info in await call(folder.messages, False)
        ]

    # Interfaces

    async def test_store_provides_the_interfaces_it_claims(self) -> None:
        """C{verifyObject} passes for L{IMailStore} and every optional store interface."""
        store = await self.contractStore()
        self.assertIn("IMailStore", verifyProvided(store, STORE_INTERFACES))

    async def test_delimiter_is_one_character(self) -> None:
        store = await self.contractStore()
        self.assertIsInstance(store.delimiter, str)
        self.assertEqual(len(store.delimiter), 1)

    # The store seam

    async def test_disk_and_network_operations_answer_with_deferreds(self) -> None:
        """
        Each store operation that may touch disk or network, of L{IMailStore}
        and of the optional interfaces the store provides, answers with a
        L{Deferred} (fired or not), and a failure is the Deferred's, not
        raised.
        """
        store = await self.contractStore()
        requireDeferredAnswers(self, store)

        async def answer(name: str, answered: Any) -> Any:
            self.assertIsInstance(answered, Deferred, name)
            return await answered

        await answer("listFolders", store.listFolders())
        await answer("getFolder", store.getFolder("INBOX"))
        await answer("createFolder", store.createFolder("Archive"))
        await answer("subscribe", store.subscribe("Archive"))
        await answer("subscriptions", store.subscriptions())
        await answer("unsubscribe", store.unsubscribe("Archive"))
        if IDeliveryStore.providedBy(store):
            await answer("deliveryFolder", store.deliveryFolder("INBOX"))
        if ISpecialUseStore.providedBy(store):
            await answer("specialUse", store.specialUse())
            changes = {"Archive": frozenset({"\\Archive"})}
            await answer("updateSpecialUse", store.updateSpecialUse(changes))
        if IMetadataStore.providedBy(store):
            await answer("metadata", store.metadata(None))
            await answer("updateMetadata", store.updateMetadata(None, {"/private/comment": b"x"}))
        if IQuotaStore.providedBy(store):
            await answer("quota", store.quota())
            await answer("checkQuota", store.checkQuota(1))
            await answer("recalculateQuota", store.recalculateQuota())
        await answer("renameFolder", store.renameFolder("Archive", "Old"))
        await answer("deleteFolder", store.deleteFolder("Old"))
        missing = store.getFolder("Missing")
        self.assertIsInstance(missing, Deferred, "getFolder of a missing folder")
        await self.assertFailure(missing, NoSuchFolder)
        self.assertEqual(await self.folderNames(store), ["INBOX"])

    # Folders

    async def test_inbox_always_exists(self) -> None:
        store = await self.contractStore()
        self.assertIn("INBOX", await self.folderNames(store))
        inbox = await call(store.getFolder, "INBOX")
        self.assertEqual(inbox.name, "INBOX")

    async def test_inbox_is_found_in_any_case(self) -> None:
        store = await self.contractStore()
        inbox = await call(store.getFolder, "INBOX")
        self.assertIs(await call(store.getFolder, "inbox"), inbox)
        self.assertIs(await call(store.getFolder, "InBox"), inbox)

    async def test_get_folder_returns_the_same_object(self) -> None:
        store = await self.contractStore()
        await call(store.createFolder, "Work")
        first = await call(store.getFolder, "Work")
        self.assertIs(await call(store.getFolder, "Work"), first)

    async def test_get_of_a_missing_folder_raises_no_such_folder(self) -> None:
        store = await self.contractStore()
        await self.assertFailure(call(store.getFolder, "Missing"), NoSuchFolder)

    async def test_invalid_folder_names_are_refused(self) -> None:
        store = await self.contractStore()
        for name in ("", "a//b", "../escape", "Work/../../escape"):
            await self.assertFailure(call(store.createFolder, name), InvalidFolderName)
            await self.assertFailure(call(store.getFolder, name), InvalidFolderName)

    async def test_created_folder_is_listed_and_empty(self) -> None:
        store = await self.contractStore()
        created = await call(store.createFolder, "Work")
        self.assertEqual(created.name, "Work")
        self.assertIn("Work", await self.folderNames(store))
        self.assertEqual(list(await call(created.messages, False)), [])
        self.assertIs(await call(store.getFolder, "Work"), created)

    async def test_create_makes_missing_parents(self) -> None:
        store = await self.contractStore()
        await call(store.createFolder, "a/b/c")
        names = await self.folderNames(store)
        for name in ("a", "a/b", "a/b/c"):
            self.assertIn(name, names)
            await call(store.getFolder, name)

    async def test_create_of_an_existing_folder_raises_folder_exists(self) -> None:
        store = await self.contractStore()
        await call(store.createFolder, "Work")
        await self.assertFailure(call(store.createFolder, "Work"), FolderExists)
        await self.assertFailure(call(store.createFolder, "INBOX"), FolderExists)

    async def test_folders_keep_their_own_messages(self) -> None:
        store = await self.contractStore()
        inbox = await call(store.getFolder, "INBOX")
        work = await call(store.createFolder, "Work")
        await deliver(inbox, b"Subject: inbox\r\n\r\n")
        await deliver(work, b"Subject: work\r\n\r\n")
        self.assertEqual(await self.contents(inbox), [(b"Subject: inbox\r\n\r\n", frozenset())])
        self.assertEqual(await self.contents(work), [(b"Subject: work\r\n\r\n", frozenset())])

    async def test_delete_removes_the_folder_and_its_messages(self) -> None:
        store = await self.contractStore()
        work = await call(store.createFolder, "Work")
        await deliver(work)
        await call(store.deleteFolder, "Work")
        self.assertNotIn("Work", await self.folderNames(store))
        await self.assertFailure(call(store.getFolder, "Work"), NoSuchFolder)
        again = await call(store.createFolder, "Work")
        self.assertEqual(list(await call(again.messages, False)), [])

    async def test_delete_leaves_sub_folders_and_their_messages(self) -> None:
        """IMAP DELETE of a parent keeps its children (RFC 3501 6.3.4)."""
        store = await self.contractStore()
        await call(store.createFolder, "Parent/Child")
        child = await call(store.getFolder, "Parent/Child")
        await deliver(child)
        await call(store.deleteFolder, "Parent")
        self.assertIn("Parent/Child", await self.folderNames(store))
        child = await call(store.getFolder, "Parent/Child")
        self.assertEqual(await self.contents(child), [(MESSAGE, frozenset())])

    async def test_delete_of_inbox_is_refused(self) -> None:
        store = await self.contractStore()
        await self.assertFailure(call(store.deleteFolder, "INBOX"), StoreError)
        self.assertIn("INBOX", await self.folderNames(store))

    async def test_delete_of_a_missing_folder_raises_no_such_folder(self) -> None:
        store = await self.contractStore()
        await self.assertFailure(call(store.deleteFolder, "Missing"), NoSuchFolder)

    async def test_rename_moves_the_folder_and_its_messages(self) -> None:
        store = await self.contractStore()
        old = await call(store.createFolder, "Old")
        await deliver(old, flags=["\\Seen", "$Label"])
        await call(store.renameFolder, "Old", "New")
        names = await self.folderNames(store)
        self.assertNotIn("Old", names)
        self.assertIn("New", names)
        await self.assertFailure(call(store.getFolder, "Old"), NoSuchFolder)
        new = await call(store.getFolder, "New")
        self.assertEqual(new.name, "New")
        self.assertEqual(await self.contents(new), [(MESSAGE, frozenset({"\\Seen", "$Label"}))])

    async def test_rename_takes_the_children_along(self) -> None:
        """The children keep their place under the new name, whatever its length."""
        for old, new in (("Old", "New"), ("Old", "Renamed/Deeper"), ("Longer", "S")):
            store = await call(self.makeStore)
            await call(store.createFolder, f"{old}/Child/Grandchild")
            child = await call(store.getFolder, f"{old}/Child")
            await deliver(child)
            await call(store.renameFolder, old, new)
            names = await self.folderNames(store)
            for name in (new, f"{new}/Child", f"{new}/Child/Grandchild"):
                self.assertIn(name, names)
            for name in (old, f"{old}/Child", f"{old}/Child/Grandchild"):
                self.assertNotIn(name, names)
            moved = await call(store.getFolder, f"{new}/Child")
            self.assertEqual(await self.contents(moved), [(MESSAGE, frozenset())])

    async def test_rename_leaves_folders_its_name_is_a_prefix_of(self) -> None:
        store = await self.contractStore()
        await call(store.createFolder, "a/b")
        await call(store.createFolder, "ab")
        await call(store.renameFolder, "a", "c")
        names = await self.folderNames(store)
        for name in ("c", "c/b", "ab"):
            self.assertIn(name, names)

    async def test_rename_of_inbox_moves_its_messages_and_leaves_it_empty(self) -> None:
        store = await self.contractStore()
        inbox = await call(store.getFolder, "INBOX")
        await deliver(inbox, b"Subject: one\r\n\r\n", ["\\Seen"], _PAST)
        await deliver(inbox, b"Subject: two\r\n\r\n")
        await call(store.renameFolder, "INBOX", "Old Mail")
        names = await self.folderNames(store)
        self.assertIn("INBOX", names)
        self.assertIn("Old Mail", names)
        inbox = await call(store.getFolder, "INBOX")
        self.assertEqual(list(await call(inbox.messages, False)), [])
        moved = await call(store.getFolder, "Old Mail")
        self.assertEqual(
            sorted(await self.contents(moved)),
            [
                (b"Subject: one\r\n\r\n", frozenset({"\\Seen"})),
                (b"Subject: two\r\n\r\n", frozenset()),
            ],
        )
        dates = sorted(info.internaldate for info in await call(moved.messages, False))
        self.assertAlmostEqual(dates[0], _PAST, delta=1)
        uid = await deliver(inbox)
        self.assertEqual([info.uid for info in await call(inbox.messages, False)], [uid])

    async def test_rename_of_inbox_keeps_the_order_of_its_messages(self) -> None:
        """The moved messages keep their order: the oldest still comes first."""
        store = await self.contractStore()
        inbox = await call(store.getFolder, "INBOX")
        bodies = [b"Subject: %d\r\n\r\n" % i for i in range(6)]
        for i, body in enumerate(bodies):
            await deliver(inbox, body, ["\\Seen"] if i % 2 else [])
        await call(store.renameFolder, "INBOX", "Old Mail")
        moved = await call(store.getFolder, "Old Mail")
        self.assertEqual([body for body, _ in await self.contents(moved)], bodies)

    async def test_rename_onto_an_existing_folder_raises_folder_exists(self) -> None:
        store = await self.contractStore()
        await call(store.createFolder, "One")
        await call(store.createFolder, "Two")
        await self.assertFailure(call(store.renameFolder, "One", "Two"), FolderExists)
        await self.assertFailure(call(store.renameFolder, "One", "INBOX"), FolderExists)
        self.assertIn("One", await self.folderNames(store))

    async def test_rename_of_a_missing_folder_raises_no_such_folder(self) -> None:
        store = await self.contractStore()
        await self.assertFailure(call(store.renameFolder, "Missing", "Found"), NoSuchFolder)

    async def uidsAndValidity(self, folder: IMailFolder) -> tuple[int, set[int]]:
        """The folder's UIDVALIDITY and the UIDs it lists."""
        listed = await call(folder.messages, False)
        return await call(folder.uidValidity), {info.uid for info in listed}

    async def assertNoUidReused(
        self, before: tuple[int, set[int]], folder: IMailFolder, fresh: int
    ) -> None:
        """
        A folder that took the name of one whose messages were C{before}
        must not give a UID of those under the same UIDVALIDITY (RFC 3501
        2.3.1.1), or a client would take message C{fresh} for an old one.
        """
        validity, uids = before
        if await call(folder.uidValidity) == validity:
            self.assertNotIn(fresh, uids, "a UID was given again under the same UIDVALIDITY")
            self.assertGreater(fresh, max(uids))

    async def test_recreated_folder_does_not_reuse_uids_under_the_same_uidvalidity(self) -> None:
        store = await self.contractStore()
        work = await call(store.createFolder, "Work")
        await deliver(work)
        before = await self.uidsAndValidity(work)
        await call(store.deleteFolder, "Work")
        again = await call(store.createFolder, "Work")
        await self.assertNoUidReused(before, again, await deliver(again))

    async def test_folder_created_under_a_renamed_folders_name_does_not_reuse_uids(self) -> None:
        store = await self.contractStore()
        work = await call(store.createFolder, "Work")
        await deliver(work)
        before = await self.uidsAndValidity(work)
        await call(store.renameFolder, "Work", "Old Work")
        again = await call(store.createFolder, "Work")
        await self.assertNoUidReused(before, again, await deliver(again))

    async def test_inbox_after_its_rename_does_not_reuse_uids(self) -> None:
        store = await self.contractStore()
        inbox = await call(store.getFolder, "INBOX")
        await deliver(inbox)
        await deliver(inbox)
        before = await self.uidsAndValidity(inbox)
        await call(store.renameFolder, "INBOX", "Old Mail")
        inbox = await call(store.getFolder, "INBOX")
        await self.assertNoUidReused(before, inbox, await deliver(inbox))

    # Subscriptions

    async def test_subscriptions_start_empty(self) -> None:
        store = await self.contractStore()
        self.assertEqual(list(await call(store.subscriptions)), [])

    async def test_subscribe_and_unsubscribe(self) -> None:
        store = await self.contractStore()
        await call(store.createFolder, "Work")
        await call(store.subscribe, "Work")
        await call(store.subscribe, "INBOX")
        await call(store.subscribe, "Work")
        self.assertEqual(sorted(await call(store.subscriptions)), ["INBOX", "Work"])
        await call(store.unsubscribe, "Work")
        await call(store.unsubscribe, "Work")
        self.assertEqual(list(await call(store.subscriptions)), ["INBOX"])

    # ISteppedStore

    async def test_rename_steps_rename_when_exhausted(self) -> None:
        store = await self.contractStore()
        store = requireProvider(store, ISteppedStore)
        inbox = await call(store.getFolder, "INBOX")
        for _ in range(3):
            await deliver(inbox)
        for _ in await call(store.renameFolderSteps, "INBOX", "Moved"):
            pass
        moved = await call(store.getFolder, "Moved")
        self.assertEqual(len(await call(moved.messages, False)), 3)
        self.assertEqual(list(await call(inbox.messages, False)), [])

    async def test_delete_steps_remove_the_folder_at_the_first_step(self) -> None:
        store = await self.contractStore()
        store = requireProvider(store, ISteppedStore)
        work = await call(store.createFolder, "Work")
        await deliver(work)
        steps = iter(await call(store.deleteFolderSteps, "Work"))
        next(steps, None)
        self.assertNotIn("Work", await self.folderNames(store))
        for _ in steps:
            pass
        self.assertNotIn("Work", await self.folderNames(store))

    async def test_step_errors_come_from_the_first_step(self) -> None:
        store = await self.contractStore()
        store = requireProvider(store, ISteppedStore)
        with self.assertRaises(NoSuchFolder):
            next(iter(await call(store.deleteFolderSteps, "Missing")))
        with self.assertRaises(NoSuchFolder):
            next(iter(await call(store.renameFolderSteps, "Missing", "Found")))

    # IQuotaStore

    async def limitedStore(self, storage: int = 0, messages: int = 0) -> IMailStore:
        """A store with these limits, from C{makeLimitedStore}."""
        store: IMailStore = await call(self.makeLimitedStore, QuotaLimits(storage, messages))
        requireProvider(store, IQuotaStore)
        return store

    async def usage(self, store: IMailStore) -> QuotaUsage:
        """The quota of a store made by L{limitedStore}."""
        usage: QuotaUsage | None = await call(requireProvider(store, IQuotaStore).quota)
        self.assertIsNotNone(usage, "a store with limits reports no quota")
        assert usage is not None
        return usage

    async def test_quota_usage_counts_every_folder(self) -> None:
        store = await self.contractStore()
        quotas = requireProvider(store, IQuotaStore)
        inbox = await call(store.getFolder, "INBOX")
        work = await call(store.createFolder, "Work")
        await deliver(inbox)
        await deliver(work, MESSAGE * 2)
        recalculated = await call(quotas.recalculateQuota)
        usage = await call(quotas.quota)
        if usage is None:
            self.assertIsNone(recalculated)
            await call(quotas.checkQuota, 10**12, 10**9)
            return
        for each in (usage, recalculated):
            assert isinstance(each, QuotaUsage)
            self.assertEqual((each.storage, each.messages), (3 * len(MESSAGE), 2))

    async def test_quota_usage_goes_down_on_expunge_and_delete(self) -> None:
        store = await self.limitedStore(storage=10**9)
        inbox = await call(store.getFolder, "INBOX")
        work = await call(store.createFolder, "Work")
        uid = await deliver(inbox)
        await deliver(work)
        await call(inbox.expunge, [uid])
        usage = await self.usage(store)
        self.assertEqual((usage.storage, usage.messages), (len(MESSAGE), 1))
        await call(store.deleteFolder, "Work")
        usage = await self.usage(store)
        self.assertEqual((usage.storage, usage.messages), (0, 0))

    async def test_quota_usage_is_unchanged_by_renames(self) -> None:
        store = await self.limitedStore(storage=10**9)
        inbox = await call(store.getFolder, "INBOX")
        work = await call(store.createFolder, "Work")
        await deliver(inbox)
        await deliver(work, MESSAGE * 3)
        await call(store.renameFolder, "Work", "Archive")
        await call(store.renameFolder, "INBOX", "Old Mail")
        usage = await self.usage(store)
        self.assertEqual((usage.storage, usage.messages), (4 * len(MESSAGE), 2))
        recalculated = await call(requireProvider(store, IQuotaStore).recalculateQuota)
        self.assertEqual(recalculated, usage)

    async def test_quota_reports_its_limits(self) -> None:
        store = await self.limitedStore(storage=5000, messages=7)
        usage = await self.usage(store)
        self.assertEqual((usage.storageLimit, usage.messagesLimit), (5000, 7))

    async def test_delivery_over_the_message_limit_is_refused_and_leaves_nothing(self) -> None:
        store = await self.limitedStore(messages=2)
        inbox = await call(store.getFolder, "INBOX")
        await deliver(inbox)
        await deliver(inbox)
        refused = await self.assertFailure(call(deliver, inbox), OverQuota)
        self.assertEqual(refused.resource, "messages")
        self.assertEqual(len(await call(inbox.messages, False)), 2)
        usage = await self.usage(store)
        self.assertEqual(usage.messages, 2)

    async def test_delivery_over_the_storage_limit_is_refused(self) -> None:
        store = await self.limitedStore(storage=len(MESSAGE) * 2)
        inbox = await call(store.getFolder, "INBOX")
        await deliver(inbox, MESSAGE * 2)
        refused = await self.assertFailure(call(deliver, inbox), OverQuota)
        self.assertEqual(refused.resource, "storage")
        self.assertEqual(len(await call(inbox.messages, False)), 1)

    async def test_reaching_a_limit_exactly_is_allowed(self) -> None:
        store = await self.limitedStore(storage=len(MESSAGE) * 2, messages=2)
        inbox = await call(store.getFolder, "INBOX")
        await call(requireProvider(store, IQuotaStore).checkQuota, len(MESSAGE) * 2, 2)
        await deliver(inbox)
        await deliver(inbox)
        self.assertEqual(len(await call(inbox.messages, False)), 2)

    async def test_delivery_that_publishes_first_is_refused_over_quota(self) -> None:
        """SMTP publishes in a worker thread, then commits: one of them refuses."""
        store = await self.limitedStore(messages=1)
        inbox = await call(store.getFolder, "INBOX")
        await deliver(inbox)
        pending = await call(inbox.beginMessage)
        await call(pending.write, MESSAGE)

        async def publishAndCommit() -> int:
            await call(pending.publish)
            uid: int = await call(pending.commit)
            return uid

        await self.assertFailure(call(publishAndCommit), OverQuota)
        await call(pending.abort)
        self.assertEqual(len(await call(inbox.messages, False)), 1)

    async def test_linked_copy_over_quota_is_refused_alone(self) -> None:
        """One recipient over quota does not stop the others of the same message."""
        full = await self.limitedStore(messages=1)
        fullInbox = requireProvider(await call(full.getFolder, "INBOX"), ILinkingFolder)
        await deliver(fullInbox)
        source = await call((await self.contractStore()).getFolder, "INBOX")
        pending = await call(source.beginMessage)
        await call(pending.write, MESSAGE)
        linked = await call(fullInbox.linkedCopy, pending)

        async def publishAndCommit() -> int:
            await call(linked.publish)
            uid: int = await call(linked.commit)
            return uid

        await self.assertFailure(call(publishAndCommit), OverQuota)
        await call(linked.abort)
        await call(pending.publish)
        uid = await call(pending.commit)
        self.assertEqual(await read(source, uid), MESSAGE)
        self.assertEqual(len(await call(fullInbox.messages, False)), 1)

    async def test_check_quota_refuses_what_would_not_fit(self) -> None:
        store = requireProvider(await self.limitedStore(storage=1000, messages=3), IQuotaStore)
        await call(store.checkQuota, 1000, 3)
        refused = await self.assertFailure(call(store.checkQuota, 1001), OverQuota)
        self.assertEqual(refused.resource, "storage")
        refused = await self.assertFailure(call(store.checkQuota, 10, 4), OverQuota)
        self.assertEqual(refused.resource, "messages")

    async def test_copy_over_quota_is_refused(self) -> None:
        store = await self.limitedStore(messages=1)
        inbox = await call(store.getFolder, "INBOX")
        work = await call(store.createFolder, "Work")
        uid = await deliver(inbox)
        await self.assertFailure(call(inbox.copyMessage, uid, work), OverQuota)
        self.assertEqual(list(await call(work.messages, False)), [])

    async def test_expunge_makes_room_again(self) -> None:
        store = await self.limitedStore(messages=1)
        inbox = await call(store.getFolder, "INBOX")
        uid = await deliver(inbox)
        await self.assertFailure(call(deliver, inbox), OverQuota)
        await call(inbox.expunge, [uid])
        await deliver(inbox)
        self.assertEqual(len(await call(inbox.messages, False)), 1)

    # ISpecialUseStore

    async def test_special_use_is_unrecorded_in_a_new_store(self) -> None:
        store = await self.contractStore()
        special = requireProvider(store, ISpecialUseStore)
        self.assertIsNone(await call(special.specialUse))
        await call(special.updateSpecialUse, {})
        self.assertEqual(await call(special.specialUse), {})

    async def test_special_use_attributes_are_set_and_cleared(self) -> None:
        store = await self.contractStore()
        special = requireProvider(store, ISpecialUseStore)
        await call(store.createFolder, "Sent")
        await call(store.createFolder, "Bin")
        await call(
            special.updateSpecialUse,
            {"Sent": frozenset({"\\Sent"}), "Bin": frozenset({"\\Trash"})},
        )
        self.assertEqual(
            await call(special.specialUse),
            {"Sent": frozenset({"\\Sent"}), "Bin": frozenset({"\\Trash"})},
        )
        await call(special.updateSpecialUse, {"Bin": frozenset()})
        self.assertEqual(await call(special.specialUse), {"Sent": frozenset({"\\Sent"})})

    async def test_special_use_follows_rename_and_goes_with_delete(self) -> None:
        store = await self.contractStore()
        special = requireProvider(store, ISpecialUseStore)
        await call(store.createFolder, "Old/Archive")
        await call(store.createFolder, "Junk")
        await call(
            special.updateSpecialUse,
            {
                "Old": frozenset({"\\Drafts"}),
                "Old/Archive": frozenset({"\\Archive"}),
                "Junk": frozenset({"\\Junk"}),
            },
        )
        await call(store.renameFolder, "Old", "New")
        await call(store.deleteFolder, "Junk")
        self.assertEqual(
            await call(special.specialUse),
            {"New": frozenset({"\\Drafts"}), "New/Archive": frozenset({"\\Archive"})},
        )

    # IMetadataStore

    async def test_server_metadata_round_trips_any_octets(self) -> None:
        store = await self.contractStore()
        meta = requireProvider(store, IMetadataStore)
        self.assertEqual(await call(meta.metadata, None), {})
        value = b"\x00\xff\r\nany octets"
        await call(meta.updateMetadata, None, {"/shared/comment": value})
        self.assertEqual(await call(meta.metadata, None), {"/shared/comment": value})

    async def test_folder_metadata_is_set_replaced_and_removed(self) -> None:
        store = await self.contractStore()
        meta = requireProvider(store, IMetadataStore)
        await call(store.createFolder, "Work")
        await call(meta.updateMetadata, "Work", {"/private/comment": b"one", "/private/x": b"x"})
        await call(meta.updateMetadata, "Work", {"/PRIVATE/Comment": b"two", "/private/x": None})
        entries = await call(meta.metadata, "Work")
        self.assertEqual(list(entries.values()), [b"two"])
        self.assertEqual([name.lower() for name in entries], ["/private/comment"])
        self.assertEqual(await call(meta.metadata, "INBOX"), {})
        self.assertEqual(await call(meta.metadata, None), {})

    async def test_refused_metadata_check_changes_nothing(self) -> None:
        store = await self.contractStore()
        meta = requireProvider(store, IMetadataStore)
        await call(meta.updateMetadata, None, {"/private/a": b"1"})
        seen: list[dict[str, bytes]] = []

        def refuse(entries: dict[str, bytes]) -> None:
            seen.append(dict(entries))
            raise ValueError("too many")

        await self.assertFailure(
            call(meta.updateMetadata, None, {"/private/b": b"2"}, refuse), ValueError
        )
        self.assertEqual(seen, [{"/private/a": b"1", "/private/b": b"2"}])
        self.assertEqual(await call(meta.metadata, None), {"/private/a": b"1"})

    async def test_metadata_of_a_missing_folder_raises_no_such_folder(self) -> None:
        store = await self.contractStore()
        meta = requireProvider(store, IMetadataStore)
        await self.assertFailure(call(meta.metadata, "Missing"), NoSuchFolder)

    async def test_metadata_follows_rename_and_goes_with_delete(self) -> None:
        store = await self.contractStore()
        meta = requireProvider(store, IMetadataStore)
        await call(store.createFolder, "Old/Child")
        await call(meta.updateMetadata, "Old", {"/private/comment": b"kept"})
        await call(meta.updateMetadata, "Old/Child", {"/private/comment": b"child"})
        await call(store.renameFolder, "Old", "New")
        self.assertEqual(await call(meta.metadata, "New"), {"/private/comment": b"kept"})
        self.assertEqual(await call(meta.metadata, "New/Child"), {"/private/comment": b"child"})
        await call(store.deleteFolder, "New")
        await call(store.createFolder, "New")
        self.assertEqual(await call(meta.metadata, "New"), {})

    # IURLAuthStore

    async def test_mailbox_keys_are_made_once_and_kept(self) -> None:
        store = await self.contractStore()
        urlauth = requireProvider(store, IURLAuthStore)
        keys = await call(urlauth.mailboxKeys)
        verifyProvided(keys, (IMailboxKeys,))
        self.assertIsNone(await call(keys.key, "INBOX", 17))
        made = await call(keys.keyFor, "INBOX", 17)
        self.assertIsInstance(made, bytes)
        self.assertTrue(made)
        self.assertEqual(await call(keys.keyFor, "INBOX", 17), made)
        self.assertEqual(await call(keys.key, "INBOX", 17), made)
        again = await call(urlauth.mailboxKeys)
        self.assertEqual(await call(again.key, "INBOX", 17), made)

    async def test_mailbox_key_is_tied_to_its_uidvalidity(self) -> None:
        store = await self.contractStore()
        urlauth = requireProvider(store, IURLAuthStore)
        keys = await call(urlauth.mailboxKeys)
        await call(keys.keyFor, "INBOX", 17)
        self.assertIsNone(await call(keys.key, "INBOX", 18))

    async def test_reset_forgets_mailbox_keys(self) -> None:
        store = await self.contractStore()
        urlauth = requireProvider(store, IURLAuthStore)
        keys = await call(urlauth.mailboxKeys)
        await call(keys.keyFor, "INBOX", 1)
        await call(keys.keyFor, "Work", 2)
        await call(keys.reset, "INBOX")
        self.assertIsNone(await call(keys.key, "INBOX", 1))
        self.assertIsNotNone(await call(keys.key, "Work", 2))
        await call(keys.reset)
        self.assertIsNone(await call(keys.key, "Work", 2))
