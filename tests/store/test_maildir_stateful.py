"""
A state machine driving the Maildir store against a dict model: UIDs,
flags, contents and \\Recent must match the model after every step.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from tmail.store.maildir import MaildirStore

FOLDERS = ("INBOX", "Archive")
FLAGS = st.frozensets(
    st.sampled_from(["\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft", "$Junk", "Work"])
)
BODIES = st.binary(max_size=200).map(lambda b: b"Subject: t\r\n\r\n" + b)

LETTERS = {"\\Draft": "D", "\\Flagged": "F", "\\Answered": "R", "\\Seen": "S", "\\Deleted": "T"}

_external = itertools.count(1)


@dataclass
class FolderModel:
    messages: dict[int, tuple[bytes, frozenset[str]]] = field(default_factory=dict)
    nextUid: int = 1
    recent: set[int] = field(default_factory=set)
    recentUnknown: set[int] = field(default_factory=set)

    def add(self, body: bytes, flags: frozenset[str]) -> int:
        uid = self.nextUid
        self.nextUid += 1
        self.messages[uid] = (body, flags)
        self.recent.add(uid)
        return uid


class MaildirMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="tmail-maildir-"))
        self.root = self.tmp / "Maildir"
        self.store = MaildirStore(self.root)
        self.store.createFolder("Archive")
        self.other = MaildirStore(self.root)
        self.model = {name: FolderModel() for name in FOLDERS}

    def teardown(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    def pick(self, data: st.DataObject, name: str) -> int:
        return data.draw(st.sampled_from(sorted(self.model[name].messages)))

    def has(self, name: str) -> bool:
        return bool(self.model[name].messages)

    @rule(name=st.sampled_from(FOLDERS), body=BODIES, flags=FLAGS)
    def append(self, name: str, body: bytes, flags: frozenset[str]) -> None:
        pending = self.store.getFolder(name).beginMessage(flags)
        pending.write(body)
        assert pending.commit() == self.model[name].add(body, flags)

    @rule(name=st.sampled_from(FOLDERS), body=BODIES)
    def abortedAppend(self, name: str, body: bytes) -> None:
        pending = self.store.getFolder(name).beginMessage()
        pending.write(body)
        pending.abort()

    @rule(name=st.sampled_from(FOLDERS), body=BODIES, flags=FLAGS)
    def otherProcessAppend(self, name: str, body: bytes, flags: frozenset[str]) -> None:
        pending = self.other.getFolder(name).beginMessage(flags)
        pending.write(body)
        uid = pending.commit()
        assert uid == self.model[name].add(body, flags)
        self.model[name].recentUnknown.add(uid)

    @precondition(lambda self: self.has("INBOX") or self.has("Archive"))
    @rule(data=st.data(), flags=FLAGS)
    def externalFlagChange(self, data: st.DataObject, flags: frozenset[str]) -> None:
        name = data.draw(st.sampled_from([n for n in FOLDERS if self.has(n)]))
        uid = self.pick(data, name)
        path = self.root if name == "INBOX" else self.root / f".{name}"
        key = next(m.key for m in self.store.getFolder(name).messages() if m.uid == uid)
        [filename] = [f for f in os.listdir(path / "cur") if f.split(":")[0] == key]
        keywordLetters = "".join(c for c in filename.split(":2,")[1] if c.islower())
        letters = "".join(LETTERS[f] for f in flags if f in LETTERS) + keywordLetters
        os.rename(path / "cur" / filename, path / "cur" / f"{key}:2,{''.join(sorted(letters))}")
        body, old = self.model[name].messages[uid]
        keywords = frozenset(f for f in old if not f.startswith("\\"))
        self.model[name].messages[uid] = (body, frozenset(flags & LETTERS.keys()) | keywords)

    @rule(name=st.sampled_from(FOLDERS), body=BODIES)
    def externalDelivery(self, name: str, body: bytes) -> None:
        path = self.root if name == "INBOX" else self.root / f".{name}"
        (path / "new" / f"1700000000.X{next(_external)}.other").write_bytes(body)
        self.model[name].add(body, frozenset())

    @precondition(lambda self: self.has("INBOX") or self.has("Archive"))
    @rule(data=st.data(), flags=FLAGS)
    def setFlags(self, data: st.DataObject, flags: frozenset[str]) -> None:
        name = data.draw(st.sampled_from([n for n in FOLDERS if self.has(n)]))
        uid = self.pick(data, name)
        info = self.store.getFolder(name).setFlags(uid, flags)
        assert (info.uid, info.flags) == (uid, flags)
        body, _ = self.model[name].messages[uid]
        self.model[name].messages[uid] = (body, flags)

    @precondition(lambda self: self.has("INBOX") or self.has("Archive"))
    @rule(data=st.data())
    def expunge(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from([n for n in FOLDERS if self.has(n)]))
        model = self.model[name]
        chosen = data.draw(st.lists(st.sampled_from(sorted(model.messages)), max_size=3))
        removed = self.store.getFolder(name).expunge([*chosen, 10_000])
        assert removed == sorted(set(chosen))
        for uid in removed:
            del model.messages[uid]
            model.recent.discard(uid)
            model.recentUnknown.discard(uid)

    @precondition(lambda self: self.has("INBOX") or self.has("Archive"))
    @rule(data=st.data(), destination=st.sampled_from(FOLDERS))
    def copy(self, data: st.DataObject, destination: str) -> None:
        source = data.draw(st.sampled_from([n for n in FOLDERS if self.has(n)]))
        uid = self.pick(data, source)
        newUid = self.store.getFolder(source).copyMessage(uid, self.store.getFolder(destination))
        body, flags = self.model[source].messages[uid]
        assert newUid == self.model[destination].add(body, flags)

    @rule()
    def reopen(self) -> None:
        self.store = MaildirStore(self.root)
        for model in self.model.values():
            model.recent.clear()

    @invariant()
    def matchesModel(self) -> None:
        for name, model in self.model.items():
            folder = self.store.getFolder(name)
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
            path = self.root if name == "INBOX" else self.root / f".{name}"
            assert os.listdir(path / "tmp") == []


MaildirMachine.TestCase.settings = settings(max_examples=30, stateful_step_count=20, deadline=None)
test_maildir_store_matches_model = MaildirMachine.TestCase
