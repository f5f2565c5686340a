"""
A folder checked against a model by Hypothesis' stateful testing: random
sequences of deliveries, aborted deliveries, flag changes, expunges and
copies, after each of which the folder must list what a plain dictionary
says it holds.

Mix L{FolderModelTestsMixin} into a L{twisted.trial.unittest.TestCase} and
define C{makeStore}, as for L{tmail.testing.MailFolderTestsMixin}.  This
module needs C{hypothesis} (a test dependency, not one of tmail's).

The state machine runs in a worker thread and makes every store call in
the reactor thread, waiting for its result (L{blockingCallFromThread}), so
a store whose calls answer with Deferreds is driven exactly like one that
answers at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast, overload

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.threads import blockingCallFromThread, deferToThread

from tmail.errors import FolderExists, NoSuchFolder
from tmail.interfaces import (
    IFlagChangingFolder,
    IIncrementalFolder,
    IMailFolder,
    IMailStore,
    IModSeqFolder,
    IPendingMessage,
    MessageInfo,
)
from tmail.testing.calls import TestCaseBase, call

__all__ = [
    "FolderModelTestsMixin",
    "FolderStateMachine",
    "StoreModelTestsMixin",
    "StoreStateMachine",
]

T = TypeVar("T")

#: The flags the machine sets: every system flag and a few keywords.
FLAGS = ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft", "$Junk", "work")

_flagSets = st.frozensets(st.sampled_from(FLAGS))
#: Through which process's store a rule acts (0: this one).
_via = st.integers(min_value=0, max_value=1)
_bodies = st.builds(
    lambda subject, body: b"Subject: %s\r\n\r\n%s\r\n" % (subject, body),
    st.binary(min_size=0, max_size=20).map(lambda b: b.hex().encode()),
    st.binary(min_size=0, max_size=200).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
)


@dataclass(frozen=True)
class _Modelled:
    body: bytes
    flags: frozenset[str]


class ReactorStateMachine(RuleBasedStateMachine):
    """A state machine, run in a worker thread, that calls stores in the reactor thread."""

    @overload
    def run(self, function: Callable[..., Deferred[T]], *args: Any) -> T: ...

    @overload
    def run(self, function: Callable[..., T | Deferred[T]], *args: Any) -> T: ...

    def run(self, function: Callable[..., Any], *args: Any) -> Any:
        """Call C{function} in the reactor thread and wait for its result."""
        fromThreads = cast(IReactorFromThreads, reactor)

        def inReactor() -> Deferred[Any]:
            return call(function, *args)

        return blockingCallFromThread(fromThreads, inReactor)

    def outcome(self, function: Callable[..., object], *args: Any) -> BaseException | None:
        """The exception C{function} raised (or failed with), or C{None}."""
        try:
            self.run(function, *args)
        except Exception as e:
            return e
        return None


class FolderStateMachine(ReactorStateMachine):
    """
    Drives INBOX and one other folder of a new store against a model:
    UID to bytes and flags, and the highest UID ever given.
    """

    #: Set before the machine runs: makes the store (called in the reactor thread).
    makeStore: Callable[[], IMailStore]
    #: Set when stores share storage: another process's store over the same.
    reopenStore: Callable[[IMailStore], IMailStore] | None = None

    def __init__(self) -> None:
        super().__init__()
        store: IMailStore = self.run(self.makeStore)
        self.inbox: IMailFolder = self.run(store.getFolder, "INBOX")
        self.other: IMailFolder = self.run(store.createFolder, "Other")
        self.views: dict[str, list[IMailFolder]] = {"INBOX": [self.inbox], "Other": [self.other]}
        if self.reopenStore is not None:
            elsewhere: IMailStore = self.run(self.reopenStore, store)
            for name, views in self.views.items():
                views.append(self.run(elsewhere.getFolder, name))
        self.models: dict[str, dict[int, _Modelled]] = {"INBOX": {}, "Other": {}}
        self.highest: dict[str, int] = {"INBOX": 0, "Other": 0}
        self.validity = self.run(self.inbox.uidValidity)
        self.highestModSeq = 0
        self.serial: int | None = None
        self.snapshot: dict[int, MessageInfo] = {}

    def folderNamed(self, name: str, via: int = 0) -> IMailFolder:
        """Folder C{name} as this process (C{via} 0) or another one sees it."""
        views = self.views[name]
        return views[via % len(views)]

    def listing(self, folder: IMailFolder) -> list[MessageInfo]:
        """The folder's messages, once it picked up other processes' changes."""
        self.refreshed(folder)
        return list(self.run(folder.messages, False))

    def refreshed(self, folder: IMailFolder) -> None:
        """Let C{folder} pick up other processes' changes, where it has to be told."""
        if IIncrementalFolder.providedBy(folder):
            self.run(folder.refresh)

    # Rules

    @initialize(messages=st.lists(st.tuples(_bodies, _flagSets), max_size=6))
    def fill(self, messages: list[tuple[bytes, frozenset[str]]]) -> None:
        for body, flags in messages:
            self.deliver("INBOX", body, flags, 0)

    @rule(where=st.sampled_from(("INBOX", "Other")), body=_bodies, flags=_flagSets, via=_via)
    def deliver(self, where: str, body: bytes, flags: frozenset[str], via: int) -> None:
        folder = self.folderNamed(where, via)
        self.refreshed(folder)
        expected = self.run(folder.uidNext)
        pending: IPendingMessage = self.run(folder.beginMessage, flags)
        self.run(pending.write, body)
        uid: int = self.run(pending.commit)
        assert uid == expected, f"UID {uid} given where UIDNEXT was {expected}"
        assert uid > self.highest[where], f"UID {uid} given again"
        self.highest[where] = uid
        self.models[where][uid] = _Modelled(body, flags)

    @rule(body=_bodies)
    def abort(self, body: bytes) -> None:
        pending: IPendingMessage = self.run(self.inbox.beginMessage, ())
        self.run(pending.write, body)
        self.run(pending.abort)

    @precondition(lambda self: self.models["INBOX"])
    @rule(data=st.data(), flags=_flagSets, via=_via)
    def setFlags(self, data: st.DataObject, flags: frozenset[str], via: int) -> None:
        uid = data.draw(st.sampled_from(sorted(self.models["INBOX"])))
        before = self.models["INBOX"][uid]
        info: MessageInfo = self.run(self.folderNamed("INBOX", via).setFlags, uid, flags)
        assert info.flags == flags, (info.flags, flags)
        self.models["INBOX"][uid] = _Modelled(before.body, flags)
        if IModSeqFolder.providedBy(self.inbox) and flags != before.flags:
            assert info.modseq > self.highestModSeq, (info.modseq, self.highestModSeq)

    @precondition(lambda self: self.models["INBOX"])
    @rule(data=st.data(), add=_flagSets, remove=_flagSets, via=_via)
    def changeFlags(
        self, data: st.DataObject, add: frozenset[str], remove: frozenset[str], via: int
    ) -> None:
        folder = self.folderNamed("INBOX", via)
        if not IFlagChangingFolder.providedBy(folder):
            return
        uid = data.draw(st.sampled_from(sorted(self.models["INBOX"])))
        before = self.models["INBOX"][uid]
        info: MessageInfo = self.run(folder.changeFlags, uid, add, remove)
        expected = (before.flags | add) - remove
        assert info.flags == expected, (info.flags, expected)
        self.models["INBOX"][uid] = _Modelled(before.body, expected)

    @rule(data=st.data(), where=st.sampled_from(("INBOX", "Other")), via=_via)
    def expunge(self, data: st.DataObject, where: str, via: int) -> None:
        model = self.models[where]
        known = [*sorted(model), self.highest[where] + 1]
        chosen = data.draw(st.lists(st.sampled_from(known), min_size=1, max_size=4))
        removed = list(self.run(self.folderNamed(where, via).expunge, chosen))
        expected = sorted(set(chosen) & set(model))
        assert sorted(removed) == expected, (removed, expected)
        for uid in removed:
            del model[uid]

    @precondition(lambda self: self.models["INBOX"])
    @rule(data=st.data(), via=_via)
    def copy(self, data: st.DataObject, via: int) -> None:
        uid = data.draw(st.sampled_from(sorted(self.models["INBOX"])))
        source, target = self.folderNamed("INBOX", via), self.folderNamed("Other", via)
        copied: int = self.run(source.copyMessage, uid, target)
        assert copied > self.highest["Other"], f"UID {copied} given again"
        self.highest["Other"] = copied
        self.models["Other"][copied] = self.models["INBOX"][uid]

    @precondition(lambda self: self.models["INBOX"] or self.models["Other"])
    @rule(data=st.data(), via=_via)
    def read(self, data: st.DataObject, via: int) -> None:
        target = "INBOX" if self.models["INBOX"] else "Other"
        uid = data.draw(st.sampled_from(sorted(self.models[target])))
        opened = self.run(self.folderNamed(target, via).openMessage, uid)
        with opened:
            body = opened.read()
        assert body == self.models[target][uid].body

    # Invariants

    @invariant()
    def listingsMatchTheModel(self) -> None:
        for name, model in self.models.items():
            for folder in self.views[name]:
                listed = self.listing(folder)
                assert [info.uid for info in listed] == sorted(model), (folder, listed, model)
                for info in listed:
                    assert info.flags == model[info.uid].flags, (folder, info, model[info.uid])
                    assert info.size == len(model[info.uid].body), (folder, info)
                self.refreshed(folder)
                assert self.run(folder.uidNext) > self.highest[name], folder
        for folder in self.views["INBOX"]:
            assert self.run(folder.uidValidity) == self.validity, folder

    @invariant()
    def modSeqsNeverGoDown(self) -> None:
        if not IModSeqFolder.providedBy(self.inbox):
            return
        listed = self.listing(self.inbox)
        highest: int = self.run(self.inbox.highestModSeq)
        assert highest >= self.highestModSeq, (highest, self.highestModSeq)
        assert all(1 <= info.modseq <= highest for info in listed), (highest, listed)
        self.highestModSeq = highest

    @invariant()
    def changesCatchUpWithTheListing(self) -> None:
        if not IIncrementalFolder.providedBy(self.inbox):
            return
        folder: Any = self.inbox
        if self.serial is None:
            self.snapshot = {info.uid: info for info in self.listing(folder)}
            self.serial = self.run(folder.changeSerial)
            return
        self.refreshed(folder)
        serial, changes = self.run(folder.changesSince, self.serial, False)
        if changes is None:
            self.snapshot = {info.uid: info for info in self.listing(folder)}
        else:
            for change in changes:
                if isinstance(change, int):
                    self.snapshot.pop(change, None)
                else:
                    self.snapshot[change.uid] = change
        listed = self.listing(folder)
        caughtUp = [(i.uid, i.flags, i.modseq) for _, i in sorted(self.snapshot.items())]
        assert caughtUp == [(i.uid, i.flags, i.modseq) for i in listed], (caughtUp, listed)
        self.serial = serial


#: How many sequences, and how many steps each, Hypothesis tries by default.
MODEL_SETTINGS = settings(
    max_examples=30,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def _runMachine(case: Any, machine: type[ReactorStateMachine], chosen: settings) -> Deferred[None]:
    """
    Run C{machine} with the test case's C{makeStore} (and C{reopenStore},
    when it has one), in a thread: the machine makes each store call in the
    reactor thread.
    """
    reopenStore = getattr(case, "reopenStore", None)

    class Machine(machine):  # type: ignore[valid-type,misc]
        makeStore = staticmethod(case.makeStore)

    if reopenStore is not None:
        Machine.reopenStore = staticmethod(reopenStore)
    return deferToThread(run_state_machine_as_test, Machine, settings=chosen)


class FolderModelTestsMixin(TestCaseBase):
    """
    A folder of C{makeStore()}'s store holds what a model says after any
    sequence of deliveries, aborts, flag changes, expunges and copies.  A
    test case that defines C{reopenStore(store)} (another process's store
    over the same storage) gets them made through either store, and both
    must list what the model holds.
    """

    #: How many sequences, and how many steps each, Hypothesis tries.
    modelSettings = MODEL_SETTINGS

    def makeStore(self) -> IMailStore:
        """A new, empty store for each sequence; defined by the test case."""
        raise NotImplementedError(f"{type(self).__name__} must define makeStore")

    def test_folder_holds_what_the_model_says(self) -> Deferred[None]:
        return _runMachine(self, FolderStateMachine, self.modelSettings)


#: Folder names the store machine uses: parents, children and a name that
#: a parent's name is a prefix of.
_NAMES = ("a", "a/b", "a/b/c", "ab", "b", "b/a", "c/d")
_names = st.sampled_from(_NAMES)


class StoreStateMachine(ReactorStateMachine):
    """
    Drives the folders of a new store (and, when set, of another store over
    the same storage) against a model: folder name to the bodies it holds.
    """

    makeStore: Callable[[], IMailStore]
    reopenStore: Callable[[IMailStore], IMailStore] | None = None

    def __init__(self) -> None:
        super().__init__()
        store: IMailStore = self.run(self.makeStore)
        self.stores = [store]
        if self.reopenStore is not None:
            self.stores.append(self.run(self.reopenStore, store))
        self.model: dict[str, list[bytes]] = {"INBOX": []}
        self.serial = 0

    def storeVia(self, via: int) -> IMailStore:
        return self.stores[via % len(self.stores)]

    def body(self, name: str) -> bytes:
        self.serial += 1
        return b"Subject: %s %d\r\n\r\n" % (name.encode(), self.serial)

    @rule(name=_names, via=_via)
    def create(self, name: str, via: int) -> None:
        failure = self.outcome(self.storeVia(via).createFolder, name)
        if name in self.model:
            assert isinstance(failure, FolderExists), (name, failure)
            return
        assert failure is None, (name, failure)
        components = name.split("/")
        for depth in range(1, len(components) + 1):
            self.model.setdefault("/".join(components[:depth]), [])

    @rule(name=st.sampled_from(("INBOX", *_NAMES)), via=_via)
    def deliver(self, name: str, via: int) -> None:
        if name not in self.model:
            return
        folder: IMailFolder = self.run(self.storeVia(via).getFolder, name)
        body = self.body(name)
        pending: IPendingMessage = self.run(folder.beginMessage, ())
        self.run(pending.write, body)
        self.run(pending.commit)
        self.model[name].append(body)

    @rule(name=_names, via=_via)
    def delete(self, name: str, via: int) -> None:
        failure = self.outcome(self.storeVia(via).deleteFolder, name)
        if name not in self.model:
            assert isinstance(failure, NoSuchFolder), (name, failure)
            return
        assert failure is None, (name, failure)
        del self.model[name]

    @rule(old=st.sampled_from(("INBOX", *_NAMES)), new=_names, via=_via)
    def rename(self, old: str, new: str, via: int) -> None:
        if old not in self.model or new == old or new.startswith(old + "/"):
            return
        moving = [name for name in self.model if name == old or name.startswith(old + "/")]
        if old == "INBOX":
            moving = ["INBOX"]
        targets = [new + name[len(old) :] for name in moving]
        if new in self.model:
            failure = self.outcome(self.storeVia(via).renameFolder, old, new)
            assert isinstance(failure, FolderExists), (old, new, failure)
            return
        if any(target in self.model for target in targets):
            return
        failure = self.outcome(self.storeVia(via).renameFolder, old, new)
        assert failure is None, (old, new, failure)
        for name, target in zip(moving, targets, strict=True):
            self.model[target] = self.model.pop(name)
        if old == "INBOX":
            self.model["INBOX"] = []

    @invariant()
    def foldersHoldWhatTheModelSays(self) -> None:
        for store in self.stores:
            listed: list[str] = self.run(store.listFolders)
            assert listed[0] == "INBOX" and len(set(listed)) == len(listed), listed
            for name in listed:
                if name not in self.model:
                    ancestor = any(known.startswith(name + "/") for known in self.model)
                    assert ancestor, f"{name!r} is listed but was never made or was deleted"
                    self.model[name] = []
            for name in self.model:
                assert name in listed, f"{name!r} is not listed: {listed}"
        for name, bodies in self.model.items():
            for store in self.stores:
                folder: IMailFolder = self.run(store.getFolder, name)
                found = []
                for info in self.run(folder.messages, False):
                    opened = self.run(folder.openMessage, info.uid)
                    with opened:
                        found.append(opened.read())
                assert sorted(found) == sorted(bodies), (name, found, bodies)


class StoreModelTestsMixin(TestCaseBase):
    """
    The folders of C{makeStore()}'s store hold what a model says after any
    sequence of creations, deliveries, renames (of parents with children,
    of INBOX) and deletions; with C{reopenStore(store)} defined, made
    through either of two stores over the same storage.
    """

    #: How many sequences, and how many steps each, Hypothesis tries.
    storeModelSettings = MODEL_SETTINGS

    def makeStore(self) -> IMailStore:
        """A new, empty store for each sequence; defined by the test case."""
        raise NotImplementedError(f"{type(self).__name__} must define makeStore")

    def test_store_holds_what_the_model_says(self) -> Deferred[None]:
        return _runMachine(self, StoreStateMachine, self.storeModelSettings)
