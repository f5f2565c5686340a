"""The queue store: entries written, listed, changed and cleaned up on disk."""

from __future__ import annotations

import errno
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.disk import smallDisk as mountSmallDisk
from tmail.errors import StoreFull
from tmail.queue.entry import (
    FORMAT_VERSION,
    CorruptEntry,
    Diagnostic,
    Envelope,
    NoSuchEntry,
    Notice,
    Outcome,
    QueueEntry,
    Recipient,
    State,
    entryFromJson,
)
from tmail.queue.store import QueueStore, isEntryId, newEntryId
from tmail.smtp.commands import parseMailFrom, parseRcptTo

MESSAGE = b"From: alice@example.com\r\nSubject: hello\r\n\r\nHello, Bob.\r\n"
BOB, CAROL = "bob@example.net", "carol@example.org"
TEMPORARY = Diagnostic("4.4.1", "Connection refused", None, "mx.example.net")
REFUSED = Diagnostic("5.1.1", "No such user", 550, "mx.example.net")
ACCEPTED = Diagnostic("2.0.0", "Queued as 12345", 250, "mx.example.net")


def envelope(*addresses: str, sender: str = "alice@example.com") -> Envelope:
    return Envelope(sender, tuple(Recipient(a) for a in addresses or (BOB,)))


@pytest.fixture
def store(tmp_path: Path) -> QueueStore:
    return QueueStore(tmp_path / "queue")


def files(store: QueueStore) -> list[str]:
    """Every file in the queue, by path relative to it (the lock file aside)."""
    found = [str(p.relative_to(store.path)) for p in store.path.rglob("*") if p.is_file()]
    return sorted(name for name in found if name != "lock")


def test_committed_entry_is_listed_with_its_envelope_and_message(store: QueueStore) -> None:
    pending = store.begin(
        Envelope(
            "alice@example.com",
            (Recipient(BOB, ("SUCCESS", "FAILURE"), "rfc822;bob@example.net"), Recipient(CAROL)),
            body="8BITMIME",
            ret="HDRS",
            envid="QQ+2B1",
        ),
        now=1000.0,
    )
    for n in range(0, len(MESSAGE), 7):
        pending.write(MESSAGE[n : n + 7])
    entry = pending.commit()

    [listed] = store.entries()
    assert listed == entry == store.load(entry.id)
    assert (entry.sender, entry.arrival, entry.size) == ("alice@example.com", 1000.0, len(MESSAGE))
    assert (entry.body, entry.ret, entry.envid, entry.held) == ("8BITMIME", "HDRS", "QQ+2B1", False)
    assert [(r.address, r.notify, r.orcpt, r.state) for r in entry.recipients] == [
        (BOB, ("SUCCESS", "FAILURE"), "rfc822;bob@example.net", State.PENDING),
        (CAROL, None, None, State.PENDING),
    ]
    with store.openMessage(entry.id) as f:
        assert f.read() == MESSAGE
    assert files(store) == [f"{entry.id}.json", f"{entry.id}.msg"]


def test_large_message_is_stored_exactly(store: QueueStore) -> None:
    data = b"Subject: big\r\n\r\n" + bytes(range(256)) * 4096
    entry = store.enqueue(envelope(), data)
    with store.openMessage(entry.id) as f:
        assert f.read() == data
    assert entry.size == len(data)


def test_nothing_is_listed_before_commit_and_abort_leaves_no_file(store: QueueStore) -> None:
    pending = store.begin(envelope())
    pending.write(MESSAGE * 5000)
    assert store.entries() == []
    pending.abort()
    pending.abort()
    assert store.entries() == []
    assert files(store) == []


def test_envelope_from_smtp_keeps_the_dsn_parameters(store: QueueStore) -> None:
    mailFrom = parseMailFrom(b"FROM:<alice@example.com> BODY=8BITMIME RET=FULL ENVID=abc+2Bdef")
    rcpts = [
        parseRcptTo(b"TO:<bob@example.net> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;bob+40x@example.net"),
        parseRcptTo(b"TO:<carol@example.org> NOTIFY=NEVER"),
    ]
    entry = store.enqueue(Envelope.fromSMTP(mailFrom, rcpts), MESSAGE)
    again = QueueStore(store.path).load(entry.id)
    assert (again.body, again.ret, again.envid) == ("8BITMIME", "FULL", "abc+2Bdef")
    assert [(r.address, r.notify, r.orcpt) for r in again.recipients] == [
        (BOB, ("SUCCESS", "DELAY"), "rfc822;bob+40x@example.net"),
        (CAROL, ("NEVER",), None),
    ]


def test_a_repeated_recipient_is_queued_once(store: QueueStore) -> None:
    entry = store.enqueue(envelope(BOB, CAROL, BOB), MESSAGE)
    assert [r.address for r in entry.recipients] == [BOB, CAROL]


def test_an_entry_needs_a_recipient(store: QueueStore) -> None:
    with pytest.raises(ValueError, match="recipient"):
        store.begin(Envelope("alice@example.com", ()))


def test_ids_sort_by_arrival_and_are_never_repeated(store: QueueStore) -> None:
    ids = [store.enqueue(envelope(), MESSAGE).id for _ in range(50)]
    ids += [newEntryId() for _ in range(5000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert all(isEntryId(entryId) for entryId in ids)
    assert store.ids() == ids[:50]


@pytest.mark.parametrize("bad", ["../../etc/passwd", "", "0" * 23, "g" * 24, "0" * 24 + ".json"])
def test_a_name_that_is_no_queue_id_is_no_such_entry(store: QueueStore, bad: str) -> None:
    store.enqueue(envelope(), MESSAGE)
    for action in (store.load, store.openMessage, store.hold, store.delete):
        with pytest.raises(NoSuchEntry):
            action(bad)


def test_new_recipients_are_due_at_arrival_and_held_entries_never(store: QueueStore) -> None:
    first = store.enqueue(envelope(), MESSAGE, now=100.0)
    second = store.enqueue(envelope(), MESSAGE, now=50.0)
    assert store.due(49.0) == []
    assert [e.id for e in store.due(100.0)] == [second.id, first.id]
    assert store.nextWakeup() == 50.0
    store.hold(second.id)
    assert [e.id for e in store.due(100.0)] == [first.id]
    assert store.nextWakeup() == 100.0
    store.release(second.id)
    assert [e.id for e in store.due(100.0)] == [second.id, first.id]


def test_deferred_recipient_counts_the_attempt_and_waits_for_its_next_time(
    store: QueueStore,
) -> None:
    entry = store.enqueue(envelope(), MESSAGE, now=0.0)
    after = store.record(entry.id, {BOB: Outcome.deferred(TEMPORARY, 400.0)}, now=100.0)
    assert after is not None
    r = after.recipient(BOB)
    assert (r.state, r.attempts, r.lastAttempt, r.nextAttempt) == (State.DEFERRED, 1, 100.0, 400.0)
    assert r.diagnostic == TEMPORARY
    assert store.due(399.0) == []
    assert [e.id for e in store.due(400.0)] == [entry.id]
    assert QueueStore(store.path).load(entry.id) == after


def test_a_failure_for_one_recipient_does_not_hold_back_the_others(store: QueueStore) -> None:
    entry = store.enqueue(envelope(BOB, CAROL), MESSAGE, now=0.0)
    after = store.record(
        entry.id, {BOB: Outcome.deferred(TEMPORARY, 3600.0), CAROL: Outcome.failed(REFUSED)}, 10.0
    )
    assert after is not None
    assert after.noticesOwed() == {Notice.FAILURE: (after.recipient(CAROL),)}
    assert [r.address for r in after.active()] == [BOB]
    assert [e.id for e in store.due(3600.0)] == [entry.id]
    assert after.dueRecipients(3600.0) == (after.recipient(BOB),)


def test_entry_is_removed_once_every_recipient_is_delivered(store: QueueStore) -> None:
    entry = store.enqueue(envelope(BOB, CAROL), MESSAGE)
    assert store.record(entry.id, {BOB: Outcome.delivered(ACCEPTED)}) is not None
    assert store.record(entry.id, {CAROL: Outcome.delivered(ACCEPTED)}) is None
    assert store.entries() == []
    assert files(store) == []
    with pytest.raises(NoSuchEntry):
        store.load(entry.id)


def test_failed_entry_stays_until_its_notice_is_queued(store: QueueStore) -> None:
    entry = store.enqueue(envelope(), MESSAGE)
    failed = store.record(entry.id, {BOB: Outcome.failed(REFUSED)})
    assert failed is not None
    assert store.due(time.time() + 10**6) == []
    with store.openMessage(entry.id) as f:
        assert f.read() == MESSAGE
    assert store.markNoticeSent(entry.id, [BOB], Notice.FAILURE) is None
    assert files(store) == []


@pytest.mark.parametrize(
    ("sender", "notify", "outcome"),
    [
        ("", None, Outcome.failed(REFUSED)),
        ("alice@example.com", ("NEVER",), Outcome.failed(REFUSED)),
        ("alice@example.com", ("SUCCESS",), Outcome.failed(REFUSED)),
        ("alice@example.com", ("SUCCESS",), Outcome.delivered(ACCEPTED, dsnPassedOn=True)),
        ("alice@example.com", None, Outcome.delivered(ACCEPTED)),
        ("", ("SUCCESS",), Outcome.delivered(ACCEPTED)),
    ],
    ids=[
        "null-sender",
        "notify-never",
        "failure-not-asked",
        "success-passed-on",
        "success-not-asked",
        "success-to-null-sender",
    ],
)
def test_entry_owing_no_notice_is_removed_at_once(
    store: QueueStore, sender: str, notify: tuple[str, ...] | None, outcome: Outcome
) -> None:
    entry = store.enqueue(Envelope(sender, (Recipient(BOB, notify),)), MESSAGE)
    assert store.record(entry.id, {BOB: outcome}) is None
    assert files(store) == []


def test_success_notice_is_owed_when_asked_and_not_passed_on(store: QueueStore) -> None:
    entry = store.enqueue(Envelope("alice@example.com", (Recipient(BOB, ("SUCCESS",)),)), MESSAGE)
    after = store.record(entry.id, {BOB: Outcome.delivered(ACCEPTED)})
    assert after is not None
    assert after.noticesOwed() == {Notice.SUCCESS: (after.recipient(BOB),)}


def test_delay_notice_candidates_are_deferred_recipients_that_want_one(store: QueueStore) -> None:
    entry = store.enqueue(
        Envelope(
            "alice@example.com",
            (Recipient(BOB), Recipient(CAROL, ("FAILURE",)), Recipient("dan@example.net")),
        ),
        MESSAGE,
        now=0.0,
    )
    after = store.record(
        entry.id,
        {BOB: Outcome.deferred(TEMPORARY, 600.0), CAROL: Outcome.deferred(TEMPORARY, 600.0)},
        300.0,
    )
    assert after is not None
    assert [r.address for r in after.delayNoticeCandidates()] == [BOB]
    after = store.markNoticeSent(entry.id, [BOB], Notice.DELAY)
    assert after is not None
    assert after.delayNoticeCandidates() == ()
    assert after.recipient(BOB).state is State.DEFERRED


def test_recording_a_final_recipient_again_is_refused(store: QueueStore) -> None:
    entry = store.enqueue(envelope(BOB, CAROL), MESSAGE)
    store.record(entry.id, {BOB: Outcome.delivered(ACCEPTED)})
    with pytest.raises(ValueError, match="already delivered"):
        store.record(entry.id, {BOB: Outcome.failed(REFUSED)})
    with pytest.raises(KeyError):
        store.record(entry.id, {"nobody@example.net": Outcome.failed(REFUSED)})


def test_an_operators_hold_during_an_attempt_survives_its_outcome(store: QueueStore) -> None:
    runner = QueueStore(store.path)
    entry = store.enqueue(envelope(BOB, CAROL), MESSAGE, now=0.0)
    attempt = runner.load(entry.id)
    assert attempt.isDue(0.0)
    QueueStore(store.path).hold(entry.id)
    after = runner.record(entry.id, {BOB: Outcome.delivered(ACCEPTED)}, 1.0)
    assert after is not None
    assert after.held
    assert runner.load(entry.id).held
    assert runner.due(10.0) == []


def test_an_entry_deleted_during_an_attempt_is_gone_for_the_runner(store: QueueStore) -> None:
    runner = QueueStore(store.path)
    entry = store.enqueue(envelope(), MESSAGE)
    with runner.openMessage(entry.id) as f:
        QueueStore(store.path).delete(entry.id)
        assert f.read() == MESSAGE
    with pytest.raises(NoSuchEntry):
        runner.record(entry.id, {BOB: Outcome.delivered(ACCEPTED)})
    with pytest.raises(NoSuchEntry):
        runner.delete(entry.id)
    assert runner.entries() == []
    assert files(store) == []


def test_flush_makes_waiting_recipients_due_now_and_wakes_the_runner(store: QueueStore) -> None:
    first = store.enqueue(envelope(), MESSAGE, now=0.0)
    second = store.enqueue(envelope(), MESSAGE, now=0.0)
    for entry in (first, second):
        store.record(entry.id, {BOB: Outcome.deferred(TEMPORARY, 5000.0)}, 10.0)
    store.hold(second.id)
    assert not store.takeWakeup()

    assert store.flush(now=20.0) == [first.id, second.id]
    assert [e.id for e in store.due(20.0)] == [first.id]
    assert store.load(second.id).held
    assert store.load(second.id).recipient(BOB).nextAttempt == 20.0
    assert store.takeWakeup()
    assert not store.takeWakeup()
    assert store.flush(first.id, now=30.0) == []
    with pytest.raises(NoSuchEntry):
        store.flush("F" * 24)


def test_changes_replace_the_metadata_whole_and_leave_no_temporary_file(
    store: QueueStore,
) -> None:
    entry = store.enqueue(envelope(BOB, CAROL), MESSAGE, now=0.0)
    for n in range(1, 20):
        store.record(entry.id, {BOB: Outcome.deferred(TEMPORARY, n * 100.0)}, n * 10.0)
        store.hold(entry.id)
        store.release(entry.id)
    metadata = json.loads((store.path / f"{entry.id}.json").read_text())
    assert metadata["version"] == FORMAT_VERSION
    assert metadata["recipients"][0]["attempts"] == 19
    assert metadata["recipients"][0]["diagnostic"] == {
        "status": "4.4.1",
        "text": "Connection refused",
        "code": None,
        "remoteMta": "mx.example.net",
    }
    assert files(store) == [f"{entry.id}.json", f"{entry.id}.msg", "wakeup"]


def test_a_second_store_sees_every_change_the_first_makes(store: QueueStore) -> None:
    other = QueueStore(store.path)
    entry = store.enqueue(envelope(BOB, CAROL), MESSAGE, now=0.0)
    assert [e.id for e in other.entries()] == [entry.id]
    store.record(entry.id, {BOB: Outcome.deferred(TEMPORARY, 99.0)}, 1.0)
    assert other.load(entry.id).recipient(BOB).nextAttempt == 99.0
    store.hold(entry.id)
    assert other.entries()[0].held
    store.delete(entry.id)
    assert other.entries() == []


def write(path: Path, data: bytes, age: float = 0.0) -> None:
    path.write_bytes(data)
    if age:
        stamp = time.time() - age
        os.utime(path, (stamp, stamp))


def test_recover_removes_what_a_crash_left_and_keeps_every_entry(store: QueueStore) -> None:
    kept = store.enqueue(envelope(), MESSAGE)
    store.create()
    orphan = newEntryId()
    write(store.path / f"{orphan}.msg", MESSAGE)
    write(store.path / "tmp" / "123.4.5.msg", b"half a messa")
    write(store.path / "tmp" / "123.4.6.json", b'{"version": 1, "id": ')

    report = store.recover(grace=0)
    assert sorted(report.debris) == [f"{orphan}.msg", "tmp/123.4.5.msg", "tmp/123.4.6.json"]
    assert (report.corrupt, report.unknown, report.finished) == ([], [], [])
    assert [e.id for e in store.entries()] == [kept.id]
    assert files(store) == [f"{kept.id}.json", f"{kept.id}.msg"]


def test_recover_spares_young_files_and_those_a_writer_still_holds(store: QueueStore) -> None:
    store.create()
    young = store.path / "tmp" / "young.msg"
    write(young, b"just created")
    writing = store.begin(envelope())
    writing.write(MESSAGE * 20000)
    assert len(list((store.path / "tmp").iterdir())) == 2

    report = store.recover()
    assert report.debris == []
    assert young.exists()
    report = store.recover(grace=0)
    assert report.debris == ["tmp/young.msg"]
    entry = writing.commit()
    with store.openMessage(entry.id) as f:
        assert f.read() == MESSAGE * 20000


def test_recover_sets_aside_metadata_it_cannot_read_or_whose_message_is_missing(
    store: QueueStore,
) -> None:
    good = store.enqueue(envelope(), MESSAGE)
    garbled = store.enqueue(envelope(), MESSAGE)
    (store.path / f"{garbled.id}.json").write_bytes(b"\x00\x00 not json")
    lost = store.enqueue(envelope(), MESSAGE)
    (store.path / f"{lost.id}.msg").unlink()
    later = store.enqueue(envelope(), MESSAGE)
    metadata = json.loads((store.path / f"{later.id}.json").read_text())
    metadata["version"] = FORMAT_VERSION + 1
    (store.path / f"{later.id}.json").write_text(json.dumps(metadata))

    entries, unreadable = store.scan()
    assert [e.id for e in entries] == [good.id, lost.id]
    assert sorted(unreadable) == [garbled.id, later.id]

    report = store.recover(grace=0)
    assert report.corrupt == [garbled.id, lost.id]
    assert report.unknown == [later.id]
    assert [e.id for e in store.entries()] == [good.id]
    assert sorted(p.name for p in (store.path / "corrupt").iterdir()) == [
        f"{garbled.id}.json",
        f"{garbled.id}.msg",
        f"{lost.id}.json",
    ]
    assert (store.path / f"{later.id}.json").exists()


def test_recover_removes_an_entry_with_nothing_left_to_do(store: QueueStore) -> None:
    entry = store.enqueue(envelope(), MESSAGE)
    done = QueueEntry(
        entry.id, "", entry.arrival, (Recipient(BOB, state=State.DELIVERED),), entry.size
    )
    from tmail.queue.entry import entryToJson

    (store.path / f"{entry.id}.json").write_bytes(entryToJson(done))
    assert store.recover(grace=0).finished == [entry.id]
    assert files(store) == []


@pytest.mark.parametrize(
    "data",
    [
        b"[]",
        b'{"version": 1}',
        b'{"version": "1"}',
        b'{"version": 1, "id": "X", "sender": "", "arrival": 1, "size": 1, "body": "7BIT",'
        b' "recipients": []}',
        b'{"version": 1, "id": "X", "sender": "", "arrival": 1, "size": true, "body": "7BIT",'
        b' "recipients": [{"address": "a@b", "state": "pending", "attempts": 0,'
        b' "nextAttempt": 0}]}',
        b'{"version": 1, "id": "X", "sender": "", "arrival": 1, "size": 1, "body": "7BIT",'
        b' "recipients": [{"address": "a@b", "state": "lost", "attempts": 0, "nextAttempt": 0}]}',
        b'{"version": 1, "id": "X", "sender": "", "arrival": NaN, "size": 1, "body": "7BIT",'
        b' "recipients": [{"address": "a@b", "state": "pending", "attempts": 0,'
        b' "nextAttempt": 0}]}',
    ],
)
def test_metadata_that_is_not_an_entry_is_refused_as_corrupt(data: bytes) -> None:
    with pytest.raises(CorruptEntry):
        entryFromJson(data)


def test_a_refused_fsync_refuses_the_entry_and_leaves_nothing(
    store: QueueStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    pending = store.begin(envelope())
    pending.write(MESSAGE)

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(os, "fsync", full)
        with pytest.raises(StoreFull):
            pending.commit()
    assert store.entries() == []
    assert files(store) == []


@pytest.fixture
def smallDisk(tmp_path: Path) -> Iterator[Path]:
    """A 512 KiB tmpfs mounted for the test, unmounted afterwards."""
    with mountSmallDisk(tmp_path / "queue", "512k") as mountPoint:
        yield mountPoint


def test_a_full_disk_refuses_the_entry_keeps_the_others_and_takes_more_once_freed(
    smallDisk: Path,
) -> None:
    store = QueueStore(smallDisk)
    data = b"Subject: big\r\n\r\n" + b"x" * 100_000 + b"\r\n"
    queued: list[str] = []
    with pytest.raises(StoreFull):
        for _ in range(10):
            queued.append(store.enqueue(envelope(), data).id)
    assert 2 <= len(queued) < 6
    assert store.ids() == queued
    assert files(store) == sorted(f"{i}.{kind}" for i in queued for kind in ("json", "msg"))
    for entryId in queued:
        with store.openMessage(entryId) as f:
            assert f.read() == data

    with pytest.raises(StoreFull):
        while True:
            queued.append(store.enqueue(envelope(), b"x" * 4096).id)
    before = store.load(queued[0])
    with pytest.raises(StoreFull):
        store.record(queued[0], {BOB: Outcome.deferred(TEMPORARY, 1.0)}, 0.0)
    assert QueueStore(smallDisk).load(queued[0]) == before
    store.delete(queued[1])
    assert store.enqueue(envelope(), data).id in store.ids()
    assert store.recover(grace=0).debris == []
