"""
A state machine driving the queue store against a small model: entries
enqueued, attempts recorded (delivered, deferred, failed), notices marked
sent, holds, releases, deletes, flushes, other store objects and restarts.
After every step the store, as a fresh object sees it, must list exactly
the model's entries with their recipients' states, messages and held flags,
list as due exactly what the model says is due, and keep no other file.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from tmail.queue.entry import Diagnostic, Envelope, Notice, Outcome, Recipient
from tmail.queue.store import QueueStore

ADDRESSES = ("bob@example.net", "carol@example.org", "dan@example.net")
NOTIFY = st.sampled_from(
    [None, ("NEVER",), ("SUCCESS",), ("FAILURE", "DELAY"), ("SUCCESS", "FAILURE")]
)
TEMPORARY = Diagnostic("4.4.1", "Connection refused")
PERMANENT = Diagnostic("5.1.1", "No such user", 550, "mx.example.net")
ACCEPTED = Diagnostic("2.0.0", "OK", 250, "mx.example.net")


@dataclass
class ModelRecipient:
    notify: tuple[str, ...] | None
    state: str = "pending"
    attempts: int = 0
    nextAttempt: float = 0.0
    passedOn: bool = False
    noticeSent: bool = False

    def wants(self, word: str) -> bool:
        return word in (self.notify or ("FAILURE", "DELAY"))

    def owes(self, sender: str) -> str | None:
        if not sender or self.noticeSent:
            return None
        if self.state == "failed" and self.wants("FAILURE"):
            return "failure"
        if self.state == "delivered" and not self.passedOn and self.wants("SUCCESS"):
            return "success"
        return None


@dataclass
class ModelEntry:
    sender: str
    message: bytes
    recipients: dict[str, ModelRecipient]
    held: bool = False
    dueTimes: list[float] = field(default_factory=list)

    def active(self) -> list[str]:
        return [a for a, r in self.recipients.items() if r.state in ("pending", "deferred")]

    def done(self) -> bool:
        return not self.active() and not any(r.owes(self.sender) for r in self.recipients.values())

    def due(self, now: float) -> bool:
        return not self.held and any(self.recipients[a].nextAttempt <= now for a in self.active())


class QueueMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="queue-machine-"))
        self.store = QueueStore(self.root / "queue")
        self.model: dict[str, ModelEntry] = {}
        self.now = 1000.0

    def teardown(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def _settle(self, entryId: str) -> None:
        if self.model[entryId].done():
            del self.model[entryId]

    @rule(
        sender=st.sampled_from(["", "alice@example.com"]),
        chosen=st.lists(st.tuples(st.sampled_from(ADDRESSES), NOTIFY), min_size=1, max_size=4),
        message=st.binary(max_size=300),
    )
    def enqueue(
        self, sender: str, chosen: list[tuple[str, tuple[str, ...] | None]], message: bytes
    ) -> None:
        envelope = Envelope(sender, tuple(Recipient(a, n) for a, n in chosen))
        entry = self.store.enqueue(envelope, message, now=self.now)
        recipients: dict[str, ModelRecipient] = {}
        for address, notify in chosen:
            recipients.setdefault(address, ModelRecipient(notify, nextAttempt=self.now))
        assert entry.id not in self.model
        self.model[entry.id] = ModelEntry(sender, message, recipients)

    @precondition(lambda self: any(e.active() for e in self.model.values()))
    @rule(
        data=st.data(),
        kind=st.sampled_from(
            ["delivered", "passedOn", "deferred", "deferred", "deferred", "failed"]
        ),
        wait=st.floats(0, 5000),
    )
    def record(self, data: st.DataObject, kind: str, wait: float) -> None:
        entryId = data.draw(st.sampled_from(sorted(i for i, e in self.model.items() if e.active())))
        entry = self.model[entryId]
        address = data.draw(st.sampled_from(entry.active()))
        outcome = {
            "delivered": Outcome.delivered(ACCEPTED),
            "passedOn": Outcome.delivered(ACCEPTED, dsnPassedOn=True),
            "deferred": Outcome.deferred(TEMPORARY, self.now + wait),
            "failed": Outcome.failed(PERMANENT),
        }[kind]
        result = self.store.record(entryId, {address: outcome}, self.now)
        r = entry.recipients[address]
        r.attempts += 1
        r.state = "delivered" if kind == "passedOn" else kind
        r.passedOn = kind == "passedOn"
        r.nextAttempt = self.now + wait if kind == "deferred" else 0.0
        self._settle(entryId)
        assert (result is None) == (entryId not in self.model)

    @precondition(
        lambda self: any(
            r.owes(e.sender) for e in self.model.values() for r in e.recipients.values()
        )
    )
    @rule(data=st.data())
    def markNoticeSent(self, data: st.DataObject) -> None:
        owing = sorted(
            (entryId, address, r.owes(e.sender) or "")
            for entryId, e in self.model.items()
            for address, r in e.recipients.items()
            if r.owes(e.sender)
        )
        entryId, address, kind = data.draw(st.sampled_from(owing))
        stored = self.store.load(entryId)
        assert [r.address for r in stored.noticesOwed()[Notice(kind)]].count(address) == 1
        self.store.markNoticeSent(entryId, [address], Notice(kind))
        self.model[entryId].recipients[address].noticeSent = True
        self._settle(entryId)

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data(), held=st.booleans())
    def holdOrRelease(self, data: st.DataObject, held: bool) -> None:
        entryId = data.draw(st.sampled_from(sorted(self.model)))
        other = QueueStore(self.store.path)
        (other.hold if held else other.release)(entryId)
        self.model[entryId].held = held

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        entryId = data.draw(st.sampled_from(sorted(self.model)))
        QueueStore(self.store.path).delete(entryId)
        del self.model[entryId]

    @precondition(lambda self: bool(self.model))
    @rule(one=st.booleans(), data=st.data())
    def flush(self, one: bool, data: st.DataObject) -> None:
        chosen = data.draw(st.sampled_from(sorted(self.model))) if one else None
        changed = QueueStore(self.store.path).flush(chosen, now=self.now)
        expected = []
        for entryId, entry in sorted(self.model.items()):
            if chosen not in (None, entryId):
                continue
            later = [a for a in entry.active() if entry.recipients[a].nextAttempt > self.now]
            for address in later:
                entry.recipients[address].nextAttempt = self.now
            if later:
                expected.append(entryId)
        assert changed == expected

    @rule(seconds=st.floats(0, 10000))
    def advance(self, seconds: float) -> None:
        self.now += seconds

    @rule()
    def restart(self) -> None:
        self.store = QueueStore(self.store.path)
        assert self.store.recover(grace=0).debris == []

    @invariant()
    def matchesTheModel(self) -> None:
        fresh = QueueStore(self.store.path)
        entries = fresh.entries()
        assert [e.id for e in entries] == sorted(self.model)
        for entry in entries:
            expected = self.model[entry.id]
            assert (entry.sender, entry.held) == (expected.sender, expected.held)
            seen = {
                r.address: (r.state.value, r.attempts, r.nextAttempt, r.noticeSent)
                for r in entry.recipients
            }
            assert seen == {
                a: (r.state, r.attempts, r.nextAttempt, r.noticeSent)
                for a, r in expected.recipients.items()
            }
            with fresh.openMessage(entry.id) as f:
                assert f.read() == expected.message
        due = {e.id for e in self.store.due(self.now)}
        assert due == {i for i, e in self.model.items() if e.due(self.now)}

    @invariant()
    def keepsNoOtherFile(self) -> None:
        names = {p.name for p in self.store.path.iterdir()} if self.store.path.exists() else set()
        expected = {f"{i}.{kind}" for i in self.model for kind in ("json", "msg")}
        assert names - {"tmp", "corrupt", "lock", "wakeup"} == expected
        if self.store.path.exists():
            assert not list((self.store.path / "tmp").iterdir())


QueueMachine.TestCase.settings = settings(max_examples=80, stateful_step_count=30, deadline=None)
test_queue_store_matches_its_model = QueueMachine.TestCase
