"""
The contract mixins fail for stores and directories that break the
contract: each faulty implementation here is the in-memory store (or the
passwd-file directory) with one defect, and the mixin test named for that
behaviour must fail on it.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from unittest import SkipTest

from hypothesis import HealthCheck, Phase, settings
from twisted.internet.defer import Deferred, succeed
from twisted.trial.unittest import FailTest, TestCase
from zope.interface import implementer
from zope.interface.exceptions import Invalid

from tmail.interfaces import IMailFolder, IMailStore, IModSeqFolder, IUserDirectory, MessageInfo
from tmail.store.blocking import blocking
from tmail.store.memory import MemoryFolder, MemoryStore
from tmail.store.quota import QuotaLimits
from tmail.testing import (
    MailFolderTestsMixin,
    MailStoreTestsMixin,
    UserDirectoryTestsMixin,
    passwdFileDirectory,
)
from tmail.testing.stateful import FolderModelTestsMixin


class ReusesUids(MemoryFolder):
    def expunge(self, uids: Iterable[int]) -> Deferred[list[int]]:
        def reuse(removed: list[int]) -> list[int]:
            self._uidNext = max(self._messages, default=0) + 1
            return removed

        return super().expunge(uids).addCallback(reuse)


class KeepsAborted(MemoryFolder):
    def beginMessage(self, flags: Iterable[str] = (), internaldate: float | None = None) -> Any:
        pending = super().beginMessage(flags, internaldate)

        def keep() -> None:
            if not pending._done:
                pending.commit()

        pending.abort = keep  # type: ignore[method-assign]
        return pending


class SilentOnFlagChanges(MemoryFolder):
    def setFlags(self, uid: int, flags: Iterable[str]) -> Deferred[MessageInfo]:
        listeners, self._listeners = self._listeners, []
        try:
            return super().setFlags(uid, flags)
        finally:
            self._listeners = listeners


class FlagsOfGoneMessages(MemoryFolder):
    def setFlags(self, uid: int, flags: Iterable[str]) -> Deferred[MessageInfo]:
        if uid not in self._messages:
            return succeed(MessageInfo(uid, frozenset(flags), 0, 0.0, ""))
        return super().setFlags(uid, flags)


class ForgetsExpunges(MemoryFolder):
    def changesSince(
        self, serial: int, claimRecent: bool = True
    ) -> tuple[int, list[MessageInfo | int] | None]:
        current, changes = super().changesSince(serial, claimRecent)
        if changes is not None:
            changes = [change for change in changes if not isinstance(change, int)]
        return current, changes


class StaleModSeqs(MemoryFolder):
    def _nextModSeq(self) -> int:
        return self._modseq


class CopiesWithoutFlags(MemoryFolder):
    def copyMessage(self, uid: int, target: IMailFolder) -> Deferred[int]:
        pending = target.beginMessage((), self._message(uid).info.internaldate)
        pending.write(self._message(uid).body)
        return pending.commit()


class OpensAtOnce(MemoryFolder):
    def openMessage(self, uid: int) -> Any:
        return self._open(uid)


class GetsFoldersAtOnce(MemoryStore):
    def getFolder(self, name: str) -> Any:
        return self._existing(name)


@implementer(IModSeqFolder)
class ClaimsWithoutMethods:
    """Claims mod-sequences but has none of the folder's methods."""

    name = "INBOX"


def storeWith(folderClass: type[MemoryFolder], quota: QuotaLimits | None = None) -> MemoryStore:
    """A memory store whose INBOX and new folders are of C{folderClass}."""

    class Store(MemoryStore):
        def _add(self, name: str) -> MemoryFolder:
            folder = super()._add(name)
            folder.__class__ = folderClass
            return folder

    return Store(quota=quota)


class IgnoresQuota(MemoryStore):
    def _charge(self, size: int, count: int) -> None:
        self._storage += size
        self._count += count


def faultyCase(
    testName: str,
    factory: Callable[[], IMailStore],
    limited: Callable[[QuotaLimits], IMailStore] = MemoryStore,
) -> Any:
    """The mixins' test C{testName}, on the stores the factories make."""

    class Faulty(MailStoreTestsMixin, MailFolderTestsMixin, TestCase):
        def makeStore(self) -> IMailStore:
            return factory()

        def makeLimitedStore(self, limits: QuotaLimits) -> IMailStore:
            return limited(limits)

    return Faulty(testName)


class ContractCatchesFaultsTests(TestCase):
    async def assertCaught(
        self,
        testName: str,
        factory: Callable[[], Any],
        *errors: type[BaseException],
        limited: Callable[[QuotaLimits], Any] | None = None,
    ) -> None:
        """The mixin test C{testName} fails for the store C{factory} makes."""
        case = faultyCase(testName, factory, limited or MemoryStore)
        test: Callable[[], Coroutine[Any, Any, None]] = getattr(case, testName)
        await self.assertFailure(Deferred.fromCoroutine(test()), *(errors or (FailTest,)))

    async def test_sound_store_passes(self) -> None:
        """The harness itself: the unchanged store passes what the faulty ones fail."""
        case = faultyCase("test_uids_are_never_reused_after_expunge", MemoryStore)
        await case.test_uids_are_never_reused_after_expunge()
        await case.test_listeners_are_told_of_delivery_flag_change_and_expunge()

    async def test_reused_uids_are_caught(self) -> None:
        await self.assertCaught(
            "test_uids_are_never_reused_after_expunge", lambda: storeWith(ReusesUids)
        )

    async def test_kept_aborted_message_is_caught(self) -> None:
        await self.assertCaught("test_abort_leaves_nothing", lambda: storeWith(KeepsAborted))

    async def test_untold_listener_is_caught(self) -> None:
        await self.assertCaught(
            "test_listeners_are_told_of_delivery_flag_change_and_expunge",
            lambda: storeWith(SilentOnFlagChanges),
        )

    async def test_flags_of_a_gone_message_are_caught(self) -> None:
        await self.assertCaught(
            "test_set_flags_of_a_gone_message_raises_keyerror",
            lambda: storeWith(FlagsOfGoneMessages),
        )

    async def test_forgotten_expunges_are_caught(self) -> None:
        await self.assertCaught(
            "test_changes_since_report_additions_flag_changes_and_expunges_once",
            lambda: storeWith(ForgetsExpunges),
        )

    async def test_stale_modseqs_are_caught(self) -> None:
        await self.assertCaught(
            "test_flag_change_takes_a_modseq_higher_than_any_before",
            lambda: storeWith(StaleModSeqs),
        )

    async def test_copy_without_flags_is_caught(self) -> None:
        await self.assertCaught(
            "test_copy_keeps_bytes_flags_and_date", lambda: storeWith(CopiesWithoutFlags)
        )

    async def test_ignored_quota_is_caught(self) -> None:
        await self.assertCaught(
            "test_delivery_over_the_message_limit_is_refused_and_leaves_nothing",
            MemoryStore,
            FailTest,
            limited=lambda limits: IgnoresQuota(quota=limits),
        )

    async def test_folder_answering_a_disk_operation_at_once_is_caught(self) -> None:
        await self.assertCaught(
            "test_disk_operations_answer_with_deferreds_and_index_readers_at_once",
            lambda: storeWith(OpensAtOnce),
        )

    async def test_store_answering_a_disk_operation_at_once_is_caught(self) -> None:
        await self.assertCaught(
            "test_disk_and_network_operations_answer_with_deferreds", GetsFoldersAtOnce
        )

    async def test_seam_tests_skip_a_store_unwrapped_by_the_blocking_facade(self) -> None:
        """L{blocking} answers with plain values by design: skipped, with the reason."""
        for testName in (
            "test_disk_operations_answer_with_deferreds_and_index_readers_at_once",
            "test_disk_and_network_operations_answer_with_deferreds",
        ):
            skipped = await self.assertFailure(
                Deferred.fromCoroutine(
                    getattr(
                        faultyCase(testName, lambda: blocking(MemoryStore()), MemoryStore), testName
                    )()
                ),
                SkipTest,
            )
            self.assertIn("tmail.store.blocking", str(skipped))

    async def test_interface_claimed_without_its_methods_is_caught(self) -> None:
        def store() -> IMailStore:
            broken = MemoryStore()
            broken.folders["INBOX"] = ClaimsWithoutMethods()  # type: ignore[assignment]
            return broken

        await self.assertCaught("test_folder_provides_the_interfaces_it_claims", store, Invalid)

    def test_model_catches_forgotten_expunges(self) -> Deferred[None]:
        class Model(FolderModelTestsMixin, TestCase):
            modelSettings = settings(
                max_examples=100,
                deadline=None,
                database=None,
                phases=[Phase.generate],
                suppress_health_check=[HealthCheck.too_slow],
            )

            def makeStore(self) -> IMailStore:
                return storeWith(ForgetsExpunges)

        return self.assertFailure(
            Model("test_folder_holds_what_the_model_says").test_folder_holds_what_the_model_says(),
            AssertionError,
        )


class DirectoryContractCatchesFaultsTests(TestCase):
    async def test_accepted_wrong_password_is_caught(self) -> None:
        class WrongPasswordsAccepted(UserDirectoryTestsMixin, TestCase):
            def makeDirectory(
                self, users: Mapping[str, bytes], aliases: Mapping[str, Sequence[str]]
            ) -> IUserDirectory:
                directory = passwdFileDirectory(Path(self.mktemp()), users, aliases)
                directory.checkPassword = lambda address, password: address  # type: ignore[method-assign]
                return directory

        case = WrongPasswordsAccepted("test_wrong_password_or_unknown_user_gives_none")
        await self.assertFailure(
            Deferred.fromCoroutine(case.test_wrong_password_or_unknown_user_gives_none()),
            FailTest,
        )
