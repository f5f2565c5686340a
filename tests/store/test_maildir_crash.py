"""
Crash safety of the Maildir store with a real C{kill -9}: a worker process
(L{support.storeworker}) delivers, flags, expunges, moves and renames until
it is killed at a random moment; the Maildir, opened fresh, must then hold
exactly what the worker had acknowledged, give out no UID twice and keep
its UIDVALIDITY.  The one operation in flight at the kill may have happened
or not, but not half.

A move is a copy and then an expunge of the source, as IMAP's COPY+EXPUNGE:
the copy is durable, with its UID, before it is acknowledged, so a kill
between the two leaves the message in both folders (the source copy keeps
its UID until the expunge).  That is what the store guarantees and what the
tests assert; a message is never in neither.

A kill can leave a uidlist lock behind.  The next writer breaks it at once
when the lock carries the dead holder's mark; on a filesystem without
extended attributes a lock is only stale after L{dotlock.STALE_AFTER}
seconds, and the tests then age it by that much rather than wait.
"""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pytest

from support.crash import (
    canMark,
    killAtRandom,
    lines,
    observe,
    settleDeadLocks,
    waitForLine,
    worker,
)
from support.storeworker import RENAMED, body, childBody, digest
from tmail.store import dotlock
from tmail.store.maildir import BlockingMaildirStore

KILLS = 30


def test_kill_9_at_random_moments_loses_no_acknowledged_change(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    report = killAtRandom(root, tmp_path, KILLS, seed=20261128)
    acknowledged, interrupted = report.model.acknowledged, report.interrupted
    assert set(acknowledged) >= {"deliver", "flags", "expunge", "copy", "move", "rename"}
    assert interrupted["nothing"] < KILLS // 2, f"the kills hardly hit an operation: {interrupted}"
    assert not list(root.glob("tmp/*.deleted")), "a deleted folder's remains were not swept"

    for stale in root.glob("**/tmp/*"):
        os.utime(stale, (time.time() - 37 * 3600,) * 2)
    observe(root)
    assert not [p for p in root.glob("**/tmp/*") if p.is_file()], "crash debris in tmp/ kept"
    print(f"acknowledged {acknowledged}, interrupted {interrupted}")
    print(f"{report.staleLocks} stale locks, {report.tmpDebris} files left in tmp/")


def test_message_delivered_right_after_a_kill_gets_a_new_uid_and_the_old_ones_keep_theirs(
    tmp_path: Path,
) -> None:
    root = tmp_path / "Maildir"
    out = tmp_path / "first.jsonl"
    with worker(root, out, "--run", "1", "--ops", "deliver") as process:
        waitForLine(out, process, "ack")
        time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
    said = lines(out)
    acks = [line["ack"] for line in said if "ack" in line and line["ack"]["folder"] == "INBOX"]
    settleDeadLocks(root)
    inbox = BlockingMaildirStore(root).getFolder("INBOX")
    byUid = {info.uid: info for info in inbox.messages()}
    for ack in acks:
        with inbox.openMessage(ack["uid"]) as f:
            assert digest(f.read()) == ack["sha"]
    pending = inbox.beginMessage()
    pending.write(body(99, 1))
    uid = pending.commit()
    assert uid > max(byUid)
    assert uid not in byUid


def fresh(root: Path) -> list[tuple[int, str]]:
    inbox = BlockingMaildirStore(root).getFolder("INBOX")
    result = []
    for info in inbox.messages():
        with inbox.openMessage(info.uid) as f:
            result.append((info.uid, digest(f.read())))
    return result


@pytest.mark.parametrize("leftover", ["empty", "partial"])
def test_uidlist_lock_of_a_killed_writer_is_broken_and_no_uid_is_lost(
    tmp_path: Path, leftover: str
) -> None:
    root = tmp_path / "Maildir"
    inbox = BlockingMaildirStore(root).getFolder("INBOX")
    before = []
    for n in range(3):
        pending = inbox.beginMessage()
        pending.write(body(1, n))
        before.append((pending.commit(), digest(body(1, n))))
    uidlistBefore = (root / "dovecot-uidlist").read_bytes()
    out = tmp_path / "holder.jsonl"
    lock = root / "dovecot-uidlist.lock"
    with worker(root, out, "--hold-lock", leftover) as holder:
        waitForLine(out, holder, "locked")
        holder.send_signal(signal.SIGSTOP)
        start = time.monotonic()
        with pytest.raises(Exception, match="held by another process"):
            dotlock.DotLock(root / "dovecot-uidlist", timeout=0.3).acquire()
        assert time.monotonic() - start >= 0.3, "a live writer's lock was not waited for"
        os.kill(holder.pid, signal.SIGKILL)
    assert lock.exists()
    assert (root / "dovecot-uidlist").read_bytes() == uidlistBefore, "half a uidlist published"
    assert fresh(root) == before

    settleDeadLocks(root)
    store = BlockingMaildirStore(root)
    pending = store.getFolder("INBOX").beginMessage()
    pending.write(body(2, 1))
    start = time.monotonic()
    uid = pending.commit()
    assert time.monotonic() - start < 5, "the dead writer's lock stalled the delivery"
    assert uid == before[-1][0] + 1
    assert not lock.exists()
    assert fresh(root) == [*before, (uid, digest(body(2, 1)))]


def lockLike(root: Path, holder: bytes | None) -> Path:
    """A fresh uidlist lock file as another program would leave it."""
    BlockingMaildirStore(root).getFolder("INBOX").messages()
    lock = root / "dovecot-uidlist.lock"
    lock.write_bytes(b"")
    if holder is not None:
        if not canMark(root):
            pytest.skip("the filesystem has no extended attributes")
        os.setxattr(lock, dotlock.HOLDER_ATTRIBUTE, holder)
    return lock


@pytest.mark.parametrize(
    "holder",
    [None, b"otherhost 0-0 pid:[1] 99999999", b"garbage"],
    ids=["unmarked-like-dovecot", "other-machine", "unreadable-mark"],
)
def test_young_lock_not_provably_of_a_dead_local_process_is_waited_for(
    tmp_path: Path, holder: bytes | None
) -> None:
    lock = lockLike(tmp_path / "Maildir", holder)
    with pytest.raises(Exception, match="held by another process"):
        dotlock.DotLock(tmp_path / "Maildir" / "dovecot-uidlist", timeout=0.2).acquire()
    assert lock.exists()


def test_half_a_uidlist_line_left_by_a_killed_appender_costs_no_message_its_uid(
    tmp_path: Path,
) -> None:
    root = tmp_path / "Maildir"
    inbox = BlockingMaildirStore(root).getFolder("INBOX")
    for n in range(2):
        pending = inbox.beginMessage()
        pending.write(body(1, n))
        pending.commit()
    orphan = "1764370000.M1P1Q1.host,S=31"
    (root / "new" / orphan).write_bytes(b"Subject: orphan\r\n\r\nkilled.\r\n")
    with (root / "dovecot-uidlist").open("ab") as f:
        f.write(f"3 :{orphan}"[:-6].encode())

    writer = BlockingMaildirStore(root).getFolder("INBOX")
    for n in range(2, 5):
        pending = writer.beginMessage()
        pending.write(body(1, n))
        pending.commit()
    told = [(info.uid, info.key) for info in writer.messages()]
    assert orphan in dict((key, uid) for uid, key in told)
    again = BlockingMaildirStore(root).getFolder("INBOX")
    assert [(info.uid, info.key) for info in again.messages()] == told


def test_writer_stopped_while_holding_the_uidlist_lock_is_waited_for_and_once_killed_broken(
    tmp_path: Path,
) -> None:
    root = tmp_path / "Maildir"
    out = tmp_path / "writer.jsonl"
    lock = root / "dovecot-uidlist.lock"
    rng = random.Random(3)
    with worker(root, out, "--run", "1", "--ops", "deliver") as process:
        waitForLine(out, process, "ack")
        deadline = time.monotonic() + 10
        while True:
            process.send_signal(signal.SIGSTOP)
            if lock.exists():
                break
            assert time.monotonic() < deadline, "never caught the writer holding the lock"
            process.send_signal(signal.SIGCONT)
            time.sleep(rng.uniform(0, 0.002))
        with pytest.raises(Exception, match="held by another process"):
            dotlock.DotLock(root / "dovecot-uidlist", timeout=0.3).acquire()
        assert lock.exists(), "a live writer's lock was broken"
        os.kill(process.pid, signal.SIGKILL)
    acks = [line["ack"] for line in lines(out) if "ack" in line]
    told = {ack["uid"]: ack["sha"] for ack in acks if ack["folder"] == "INBOX"}

    settleDeadLocks(root)
    inbox = BlockingMaildirStore(root).getFolder("INBOX")
    pending = inbox.beginMessage()
    pending.write(body(2, 1))
    uid = pending.commit()
    assert not lock.exists()
    stored = dict(fresh(root))
    assert {u: stored.get(u) for u in told} == told
    assert uid > max(told, default=0)
    assert len(set(stored.values())) == len(stored)


CHILDREN = 100


def killMidTreeRename(tmp_path: Path) -> Path:
    """
    Rename a folder with many sub-folders back and forth in a worker and
    kill it when the directories show the rename half done.
    """
    root = tmp_path / "Maildir"
    out = tmp_path / "renamer.jsonl"
    with worker(root, out, "--ops", "rename", "--children", str(CHILDREN)) as process:
        waitForLine(out, process, "ack")
        deadline = time.monotonic() + 10
        while True:
            process.send_signal(signal.SIGSTOP)
            prefixes = {name.split(".")[1] for name in os.listdir(root) if name.startswith(".Ren")}
            if len(prefixes) == 2:
                break
            assert time.monotonic() < deadline, "never caught the rename half done"
            process.send_signal(signal.SIGCONT)
            time.sleep(0.001)
        os.kill(process.pid, signal.SIGKILL)
    settleDeadLocks(root)
    return root


def test_kill_mid_rename_of_a_folder_tree_leaves_each_folder_under_one_name_intact(
    tmp_path: Path,
) -> None:
    root = killMidTreeRename(tmp_path)
    store = BlockingMaildirStore(root)
    names = set(store.listFolders())
    for n in range(CHILDREN):
        homes = [f"{parent}/Child{n}" for parent in RENAMED if f"{parent}/Child{n}" in names]
        assert len(homes) == 1, f"Child{n} is under {homes}"
        folder = store.getFolder(homes[0])
        [info] = folder.messages()
        with folder.openMessage(info.uid) as f:
            assert f.read() == childBody(n)
    assert len([name for name in names if name in RENAMED]) == 1


def test_kill_mid_rename_of_a_folder_tree_leaves_the_whole_tree_under_one_name(
    tmp_path: Path,
) -> None:
    root = killMidTreeRename(tmp_path)
    store = BlockingMaildirStore(root)
    parents = {name.split("/")[0] for name in store.listFolders() if name.startswith(RENAMED)}
    assert len(parents) == 1, f"the tree is split between {sorted(parents)}"


def test_kill_9_of_one_of_two_concurrent_writers_costs_neither_its_acknowledged_uids(
    tmp_path: Path,
) -> None:
    root = tmp_path / "Maildir"
    rng = random.Random(11)
    outs = []
    survivorOut = tmp_path / "survivor.jsonl"
    with worker(root, survivorOut, "--run", "1000", "--ops", "deliver") as survivor:
        waitForLine(survivorOut, survivor, "ready")
        for run in range(1, 13):
            out = tmp_path / f"victim{run}.jsonl"
            outs.append(out)
            with worker(root, out, "--run", str(run), "--ops", "deliver") as victim:
                waitForLine(out, victim, "ready")
                time.sleep(rng.uniform(0.0, 0.1))
                survivor.send_signal(signal.SIGSTOP)
                os.kill(victim.pid, signal.SIGKILL)
                victim.wait()
            settleDeadLocks(root, alive=(survivor.pid,))
            survivor.send_signal(signal.SIGCONT)
        os.kill(survivor.pid, signal.SIGKILL)
    outs.append(survivorOut)
    settleDeadLocks(root)

    told: dict[tuple[str, int], str] = {}
    for out in outs:
        said = lines(out)
        assert not [line for line in said if "failed" in line]
        for line in said:
            if "ack" in line:
                ack = line["ack"]
                key = (ack["folder"], ack["uid"])
                assert told.setdefault(key, ack["sha"]) == ack["sha"], f"{key} given out twice"
    assert len(told) > 100
    folders, _ = observe(root)
    for (logical, uid), sha in told.items():
        assert folders[logical].messages.get(uid, ("missing",))[0] == sha, (logical, uid)


def test_locking_leaves_no_scratch_file_and_no_holder_mark_on_the_uidlist(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    store = BlockingMaildirStore(root)
    inbox = store.getFolder("INBOX")
    for n in range(3):
        pending = inbox.beginMessage(["$Label1"] if n else [])
        pending.write(body(1, n))
        pending.commit()
    inbox.expunge([1])
    store.subscribe("INBOX")
    assert sorted(p.name for p in root.rglob("*lock*")) == []
    for name in ("dovecot-uidlist", "dovecot-keywords", "subscriptions"):
        assert dotlock.HOLDER_ATTRIBUTE not in os.listxattr(root / name)
