"""
A state machine driving the Maildir store against a dict model: UIDs,
flags, contents, \\Recent, UIDNEXT, UIDVALIDITY and the folder list must
match the model after every step (append, flag changes, expunge, copy, move, folder
create/delete/rename, deliveries and flag changes by other processes, and a
restart).  Mod-sequences (RFC 7162) are checked against what earlier steps
saw: they never go back, every flag change and new message takes one above
the HIGHESTMODSEQ seen before, and expungedSince lists every UID the model
expunged since an earlier HIGHESTMODSEQ (and no UID never expunged).
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from tmail.errors import FolderExists, InvalidFolderName
from tmail.interfaces import MessageInfo
from tmail.store.maildir import BlockingMaildirStore, MaildirFolder, indexsaving
from tmail.store.naming import diskName

INBOX = "INBOX"
#: Folder names the machine creates and renames to: nested, and one needing
#: modified UTF-7.  Renames of parents make deeper names from these.
NAMES = (
    "Archive",
    "Archive/2024",
    "Work",
    "Work/Projects",
    "Work/Projects/Deep",
    "Lists",
    "Lists/Work",
    "Entwürfe & Co",
)
FLAGS = st.frozensets(
    st.sampled_from(["\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft", "$Junk", "Work"])
)
BODIES = st.binary(max_size=200).map(lambda b: b"Subject: t\r\n\r\n" + b)

LETTERS = {"\\Draft": "D", "\\Flagged": "F", "\\Answered": "R", "\\Seen": "S", "\\Deleted": "T"}

_external = itertools.count(1)


#: HIGHESTMODSEQ values a folder's model asks expungedSince about: the first
#: one it saw and the latest.
MARKS = 4


@dataclass
class FolderModel:
    """
    @ivar seen: UID -> (flags, mod-sequence) as the last check listed them.
    @ivar highest: HIGHESTMODSEQ at the last check.
    @ivar marks: (HIGHESTMODSEQ at an earlier check, UIDs expunged since).
    @ivar expunged: every UID expunged from the folder.
    """

    messages: dict[int, tuple[bytes, frozenset[str]]] = field(default_factory=dict)
    nextUid: int = 1
    recent: set[int] = field(default_factory=set)
    recentUnknown: set[int] = field(default_factory=set)
    uidValidity: int | None = None
    seen: dict[int, tuple[frozenset[str], int]] = field(default_factory=dict)
    highest: int = 0
    marks: list[tuple[int, set[int]]] = field(default_factory=list)
    expunged: set[int] = field(default_factory=set)

    def add(self, body: bytes, flags: frozenset[str]) -> int:
        uid = self.nextUid
        self.nextUid += 1
        self.messages[uid] = (body, flags)
        self.recent.add(uid)
        return uid

    def remove(self, uid: int) -> None:
        del self.messages[uid]
        self.recent.discard(uid)
        self.recentUnknown.discard(uid)
        self.expunged.add(uid)
        for _, expunged in self.marks:
            expunged.add(uid)


def parents(name: str) -> list[str]:
    parts = name.split("/")
    return ["/".join(parts[:depth]) for depth in range(1, len(parts))]


class MaildirMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="tmail-maildir-"))
        self.root = self.tmp / "Maildir"
        self.store = BlockingMaildirStore(self.root)
        self.store.createFolder("Archive")
        self.other = BlockingMaildirStore(self.root)
        self.model = {INBOX: FolderModel(), "Archive": FolderModel()}
        self.pastValidities: dict[str, set[int]] = {}

    def teardown(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    def path(self, name: str) -> Path:
        return self.root if name == INBOX else self.root / diskName(name)

    def pick(self, data: st.DataObject, name: str) -> int:
        return data.draw(st.sampled_from(sorted(self.model[name].messages)))

    def withMessages(self) -> list[str]:
        return sorted(name for name, model in self.model.items() if model.messages)

    def folders(self, data: st.DataObject, inbox: bool = True) -> str:
        names = sorted(n for n in self.model if inbox or n != INBOX)
        return data.draw(st.sampled_from(names))

    def forget(self, name: str) -> FolderModel:
        """Take a folder out of the model, remembering its UIDVALIDITY under its name."""
        model = self.model.pop(name)
        if model.uidValidity is not None:
            self.pastValidities.setdefault(name, set()).add(model.uidValidity)
        return model

    def renameInModel(self, old: str, new: str) -> list[tuple[str, str]]:
        moves = [(old, new)] + [
            (child, new + child[len(old) :]) for child in self.model if child.startswith(old + "/")
        ]
        moved = [(self.forget(source), target) for source, target in moves]
        for parent in parents(new):
            self.model.setdefault(parent, FolderModel())
        for model, target in moved:
            self.model[target] = model
        return moves

    def renameRefusal(self, old: str, new: str) -> type[Exception] | None:
        if new.startswith(old + "/"):
            return InvalidFolderName
        targets = [new] + [new + c[len(old) :] for c in self.model if c.startswith(old + "/")]
        if any(target in self.model for target in targets):
            return FolderExists
        return None

    @rule(data=st.data(), body=BODIES, flags=FLAGS)
    def append(self, data: st.DataObject, body: bytes, flags: frozenset[str]) -> None:
        name = self.folders(data)
        pending = self.store.getFolder(name).beginMessage(flags)
        pending.write(body)
        assert pending.commit() == self.model[name].add(body, flags)

    @rule(data=st.data(), body=BODIES)
    def abortedAppend(self, data: st.DataObject, body: bytes) -> None:
        pending = self.store.getFolder(self.folders(data)).beginMessage()
        pending.write(body)
        pending.abort()

    @rule(data=st.data(), body=BODIES, flags=FLAGS)
    def otherProcessAppend(self, data: st.DataObject, body: bytes, flags: frozenset[str]) -> None:
        name = self.folders(data)
        pending = self.other.getFolder(name).beginMessage(flags)
        pending.write(body)
        uid = pending.commit()
        assert uid == self.model[name].add(body, flags)
        self.model[name].recentUnknown.add(uid)

    @precondition(lambda self: self.withMessages())
    @rule(data=st.data(), flags=FLAGS)
    def externalFlagChange(self, data: st.DataObject, flags: frozenset[str]) -> None:
        name = data.draw(st.sampled_from(self.withMessages()))
        uid = self.pick(data, name)
        path = self.path(name)
        key = next(m.key for m in self.store.getFolder(name).messages() if m.uid == uid)
        [filename] = [f for f in os.listdir(path / "cur") if f.split(":")[0] == key]
        keywordLetters = "".join(c for c in filename.split(":2,")[1] if c.islower())
        letters = "".join(LETTERS[f] for f in flags if f in LETTERS) + keywordLetters
        os.rename(path / "cur" / filename, path / "cur" / f"{key}:2,{''.join(sorted(letters))}")
        body, old = self.model[name].messages[uid]
        keywords = frozenset(f for f in old if not f.startswith("\\"))
        self.model[name].messages[uid] = (body, frozenset(flags & LETTERS.keys()) | keywords)

    @rule(data=st.data(), body=BODIES, viaTmp=st.booleans())
    def externalDelivery(self, data: st.DataObject, body: bytes, viaTmp: bool) -> None:
        name = self.folders(data)
        path = self.path(name)
        base = f"1700000000.X{next(_external)}.other"
        if viaTmp:
            (path / "tmp" / base).write_bytes(body)
            os.rename(path / "tmp" / base, path / "new" / base)
        else:
            (path / "new" / base).write_bytes(body)
        self.model[name].add(body, frozenset())

    @precondition(lambda self: self.withMessages())
    @rule(data=st.data(), flags=FLAGS)
    def setFlags(self, data: st.DataObject, flags: frozenset[str]) -> None:
        name = data.draw(st.sampled_from(self.withMessages()))
        uid = self.pick(data, name)
        info = self.store.getFolder(name).setFlags(uid, flags)
        assert (info.uid, info.flags) == (uid, flags)
        body, _ = self.model[name].messages[uid]
        self.model[name].messages[uid] = (body, flags)

    @precondition(lambda self: self.withMessages())
    @rule(data=st.data(), add=FLAGS, remove=FLAGS)
    def changeFlags(self, data: st.DataObject, add: frozenset[str], remove: frozenset[str]) -> None:
        name = data.draw(st.sampled_from(self.withMessages()))
        uid = self.pick(data, name)
        body, flags = self.model[name].messages[uid]
        wanted = (flags | add) - remove
        info = self.store.getFolder(name).changeFlags(uid, add, remove)
        assert (info.uid, info.flags) == (uid, wanted)
        self.model[name].messages[uid] = (body, wanted)

    @precondition(lambda self: self.withMessages())
    @rule(data=st.data())
    def expunge(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(self.withMessages()))
        model = self.model[name]
        chosen = data.draw(st.lists(st.sampled_from(sorted(model.messages)), max_size=3))
        removed = self.store.getFolder(name).expunge([*chosen, 10_000])
        assert removed == sorted(set(chosen))
        for uid in removed:
            model.remove(uid)

    @precondition(lambda self: self.withMessages())
    @rule(data=st.data())
    def copy(self, data: st.DataObject) -> None:
        source = data.draw(st.sampled_from(self.withMessages()))
        destination = self.folders(data)
        uid = self.pick(data, source)
        newUid = self.store.getFolder(source).copyMessage(uid, self.store.getFolder(destination))
        body, flags = self.model[source].messages[uid]
        assert newUid == self.model[destination].add(body, flags)

    @precondition(lambda self: self.withMessages())
    @rule(data=st.data())
    def move(self, data: st.DataObject) -> None:
        """IMAP MOVE: copy, then expunge the original."""
        source = data.draw(st.sampled_from(self.withMessages()))
        destination = self.folders(data)
        uid = self.pick(data, source)
        folder = self.store.getFolder(source)
        newUid = folder.copyMessage(uid, self.store.getFolder(destination))
        assert folder.expunge([uid]) == [uid]
        body, flags = self.model[source].messages[uid]
        self.model[source].remove(uid)
        assert newUid == self.model[destination].add(body, flags)

    @rule(name=st.sampled_from(NAMES))
    def createFolder(self, name: str) -> None:
        if name in self.model:
            with pytest.raises(FolderExists):
                self.store.createFolder(name)
            return
        assert self.store.createFolder(name).name == name
        for folder in [*parents(name), name]:
            self.model.setdefault(folder, FolderModel())

    @precondition(lambda self: len(self.model) > 1)
    @rule(data=st.data())
    def deleteFolder(self, data: st.DataObject) -> None:
        """Deleting a folder keeps its sub-folders (a Maildir++ parent is only a prefix)."""
        name = self.folders(data, inbox=False)
        self.store.deleteFolder(name)
        self.forget(name)

    @precondition(lambda self: len(self.model) > 1)
    @rule(data=st.data(), new=st.sampled_from(NAMES))
    def renameFolder(self, data: st.DataObject, new: str) -> None:
        old = self.folders(data, inbox=False)
        refusal = self.renameRefusal(old, new)
        if refusal is not None:
            with pytest.raises(refusal):
                self.store.renameFolder(old, new)
            return
        self.store.renameFolder(old, new)
        self.renameInModel(old, new)

    @precondition(lambda self: len(self.model) > 1)
    @rule(data=st.data(), new=st.sampled_from(["Moved", "Moved/Away", "Archive/Moved", "Ünï"]))
    def renameAwayAndBack(self, data: st.DataObject, new: str) -> None:
        old = self.folders(data, inbox=False)
        if self.renameRefusal(old, new) is not None:
            return
        self.store.renameFolder(old, new)
        self.renameInModel(old, new)
        self.matchesModel()
        self.store.renameFolder(new, old)
        self.renameInModel(new, old)

    @precondition(lambda self: "Old INBOX" not in self.model)
    @rule()
    def renameInbox(self) -> None:
        """Renaming INBOX moves its messages, with their flags, to a new folder (RFC 3501 6.3.5)."""
        inbox = self.model[INBOX]
        before = {m.key: inbox.messages[m.uid] for m in self.store.getFolder(INBOX).messages()}
        self.store.renameFolder(INBOX, "Old INBOX")
        moved = self.model["Old INBOX"] = FolderModel()
        infos = self.store.getFolder("Old INBOX").messages()
        assert [m.uid for m in infos] == list(range(1, len(before) + 1))
        for info in infos:
            moved.messages[info.uid] = before[info.key]
        moved.nextUid = len(before) + 1
        for uid in list(inbox.messages):
            inbox.remove(uid)

    @rule()
    def reopen(self) -> None:
        self.store = BlockingMaildirStore(self.root)
        for model in self.model.values():
            model.recent.clear()

    @invariant()
    def matchesModel(self) -> None:
        assert self.store.listFolders() == [INBOX, *sorted(n for n in self.model if n != INBOX)]
        for name, model in self.model.items():
            folder = self.store.getFolder(name)
            assert folder.name == name
            infos = folder.messages()
            assert [m.uid for m in infos] == sorted(model.messages)
            recent = {m.uid for m in infos if m.recent}
            assert recent - model.recentUnknown == model.recent - model.recentUnknown
            model.recent.clear()
            model.recentUnknown.clear()
            for info in infos:
                body, flags = model.messages[info.uid]
                assert info.flags == flags
                assert info.size == len(body)
                with folder.openMessage(info.uid) as f:
                    assert f.read() == body
            assert folder.uidNext() == model.nextUid
            uidValidity = folder.uidValidity()
            if model.uidValidity is None:
                assert uidValidity not in self.pastValidities.get(name, set()), (
                    f"{name} reuses the UIDVALIDITY of an earlier folder of that name"
                )
                model.uidValidity = uidValidity
            assert uidValidity == model.uidValidity
            self.modSeqsMatchModel(folder, infos, model)
            path = self.path(name)
            assert os.listdir(path / "tmp") == []
            assert os.listdir(path / "new") == []

    def modSeqsMatchModel(
        self, folder: MaildirFolder, infos: Sequence[MessageInfo], model: FolderModel
    ) -> None:
        """Mod-sequences and expunges against what the last checks saw, after a listing."""
        highest = folder.highestModSeq()
        assert highest >= model.highest, "HIGHESTMODSEQ went back"
        for info in infos:
            assert 1 <= info.modseq <= highest
            previous = model.seen.get(info.uid)
            if previous is None:
                assert info.modseq > model.highest, f"new UID {info.uid} at an old modseq"
                continue
            flags, modseq = previous
            assert info.modseq >= modseq, f"the modseq of UID {info.uid} went back"
            if info.flags != flags:
                assert info.modseq > modseq, f"UID {info.uid} changed flags at its old modseq"
        for mark, expunged in model.marks:
            uids, complete = folder.expungedSince(mark)
            assert complete
            assert expunged <= set(uids) <= model.expunged, f"expunged since {mark}"
            assert uids == sorted(uids)
        model.seen = {info.uid: (info.flags, info.modseq) for info in infos}
        model.highest = highest
        marks = [*model.marks, (highest, set[int]())]
        model.marks = marks[:1] + marks[1:][1 - MARKS :]


MaildirMachine.TestCase.settings = settings(max_examples=30, stateful_step_count=25, deadline=None)
test_maildir_store_matches_model = MaildirMachine.TestCase


class SavedIndexMachine(MaildirMachine):
    """
    The same model with every folder saving its index as a large folder
    does, so each restart starts from a saved index that the changes made
    since (by this store, another one or a non-tmail writer) must correct.
    """

    def __init__(self) -> None:
        self.savedMinimum = indexsaving._SAVED_INDEX_MIN
        indexsaving._SAVED_INDEX_MIN = 1
        super().__init__()

    def teardown(self) -> None:
        indexsaving._SAVED_INDEX_MIN = self.savedMinimum
        super().teardown()


SavedIndexMachine.TestCase.settings = settings(
    max_examples=15, stateful_step_count=25, deadline=None
)
test_maildir_store_restarted_from_a_saved_index_matches_model = SavedIndexMachine.TestCase


def withinOneSecond(action: Callable[[], tuple[int, int]]) -> tuple[int, int]:
    """Run C{action} until one run starts and ends within the same wall-clock second."""
    for _ in range(5):
        second = int(time.time())
        result = action()
        if int(time.time()) == second:
            return result
    raise AssertionError("the clock kept crossing a second boundary")


@pytest.mark.parametrize("removal", ["delete", "rename"])
def test_a_folder_made_again_under_an_old_name_gets_a_new_uidvalidity(
    tmp_path: Path, removal: str
) -> None:
    store = BlockingMaildirStore(tmp_path / "Maildir")
    names = itertools.count()

    def makeRemoveAndMakeAgain() -> tuple[int, int]:
        name = f"Work{next(names)}"
        folder = store.createFolder(name)
        pending = folder.beginMessage()
        pending.write(b"Subject: old\r\n\r\n")
        pending.commit()
        before = folder.uidValidity()
        if removal == "delete":
            store.deleteFolder(name)
        else:
            store.renameFolder(name, f"{name}-old")
        return before, store.createFolder(name).uidValidity()

    before, after = withinOneSecond(makeRemoveAndMakeAgain)
    assert after != before


def test_a_refused_create_does_not_bring_back_a_deleted_parent(tmp_path: Path) -> None:
    store = BlockingMaildirStore(tmp_path / "Maildir")
    store.createFolder("Work/Projects")
    store.deleteFolder("Work")
    assert store.listFolders() == ["INBOX", "Work/Projects"]
    with pytest.raises(FolderExists):
        store.createFolder("Work/Projects")
    assert store.listFolders() == ["INBOX", "Work/Projects"]
