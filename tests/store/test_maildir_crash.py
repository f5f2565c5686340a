"""
Crash safety of the Maildir store with a real C{kill -9}: a worker process
(L{support.storeworker}) delivers, flags, expunges, moves and renames until
it is killed at a random moment; the Maildir, opened fresh, must then hold
exactly what the worker had acknowledged, give out no UID twice and keep
its UIDVALIDITY.  The one operation in flight at the kill may have happened
or not, but not half.

A kill can leave a uidlist lock behind.  The next writer breaks it at once
when the lock carries the dead holder's mark; on a filesystem without
extended attributes a lock is only stale after L{dotlock.STALE_AFTER}
seconds, and the tests then age it by that much rather than wait.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from support.storeworker import RENAMED, body, childBody, digest
from tmail.store import dotlock, uidlist
from tmail.store.maildir import MaildirStore

TESTS = Path(__file__).resolve().parents[1]
KILLS = 30
Messages = dict[int, tuple[str, frozenset[str]]]


@contextmanager
def worker(root: Path, out: Path, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """Run the store worker with stdout in C{out}; kill it on the way out."""
    path = os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])
    env = dict(os.environ, PYTHONPATH=path)
    with out.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "support.storeworker", str(root), *args],
            stdout=sink,
            stdin=subprocess.PIPE,
            env=env,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        assert process.stdin is not None
        process.stdin.close()


def waitForLine(out: Path, process: subprocess.Popen[bytes], key: str) -> None:
    deadline = time.monotonic() + 20
    while not any(key in line for line in lines(out)):
        assert process.poll() is None, f"worker exited with {process.returncode}"
        assert time.monotonic() < deadline, "worker did not start"
        time.sleep(0.005)


def lines(out: Path) -> list[dict[str, Any]]:
    """The complete lines the worker wrote (a line cut by the kill was never said)."""
    text = out.read_text()
    return [json.loads(line) for line in text.split("\n")[:-1]]


def canMark(directory: Path) -> bool:
    """Whether files in C{directory} take the extended attribute a lock holder marks."""
    probe = directory / ".xattr-probe"
    probe.touch()
    try:
        os.setxattr(probe, dotlock.HOLDER_ATTRIBUTE, b"probe")
    except OSError:
        return False
    finally:
        probe.unlink()
    return True


def settleDeadLocks(root: Path, alive: tuple[int, ...] = ()) -> list[Path]:
    """
    The lock files dead writers left.  Where the filesystem cannot carry the
    holder mark, such a lock is only stale after L{dotlock.STALE_AFTER}
    seconds, so it is aged by that much, as the clock would; elsewhere the
    next writer breaks it at once.
    """
    found = [
        lock for lock in sorted(root.glob("**/*.lock")) if not any(holds(p, lock) for p in alive)
    ]
    if not canMark(root):
        old = time.time() - dotlock.STALE_AFTER - 1
        for lock in found:
            os.utime(lock, (old, old))
    return found


def holds(pid: int, path: Path) -> bool:
    """Whether process C{pid} has C{path} open (a DotLock holder keeps its lock file open)."""
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(FileNotFoundError):
            if os.readlink(fd) == str(path):
                return True
    return False


@dataclass
class Folder:
    name: str
    validity: int
    uidNext: int
    messages: Messages


def observe(root: Path) -> tuple[dict[str, Folder], bool]:
    """
    Open the Maildir fresh and read every message; check on the way that
    each folder's uidlist parses and gives each message file its own UID.
    Returns the folders by logical name (C{Ren} for C{RenA}/C{RenB}) and
    whether C{Scratch} exists.
    """
    store = MaildirStore(root)
    names = store.listFolders()
    renamed = [name for name in RENAMED if name in names]
    assert len(renamed) == 1, f"renamed folder under both or neither name: {names}"
    result = {}
    for logical, name in (("INBOX", "INBOX"), ("Target", "Target"), ("Ren", renamed[0])):
        folder = store.getFolder(name)
        infos = folder.messages()
        messages: Messages = {}
        for info in infos:
            with folder.openMessage(info.uid) as f:
                messages[info.uid] = (digest(f.read()), frozenset(info.flags))
        path = root if name == "INBOX" else root / f".{name}"
        data = uidlist.parse((path / uidlist.FILENAME).read_text())
        assert len(set(data.uids.values())) == len(data.uids), "a UID is in the uidlist twice"
        for info in infos:
            assert data.uids.get(info.key) == info.uid, f"{name} {info} not in the uidlist"
        result[logical] = Folder(name, folder.uidValidity(), folder.uidNext(), messages)
    if "Scratch" in names:
        store.getFolder("Scratch").messages()
    return result, "Scratch" in names


@dataclass
class Model:
    """What the acknowledgements so far say the Maildir holds."""

    folders: dict[str, Messages] = field(
        default_factory=lambda: {"INBOX": {}, "Target": {}, "Ren": {}}
    )
    validity: dict[str, int] = field(default_factory=dict)
    maxUid: dict[str, int] = field(default_factory=lambda: {"INBOX": 0, "Target": 0, "Ren": 0})
    renamedTo: str | None = None
    scratch: bool | None = None
    acknowledged: Counter[str] = field(default_factory=Counter)

    def apply(self, ack: dict[str, Any]) -> None:
        op, folder = ack["op"], ack.get("folder")
        self.acknowledged[op] += 1
        if op == "deliver":
            assert ack["uid"] > self.maxUid[folder], f"UID given out again: {ack}"
            assert self.validity.setdefault(folder, ack["validity"]) == ack["validity"]
            self.folders[folder][ack["uid"]] = (ack["sha"], frozenset(ack["flags"]))
            self.maxUid[folder] = ack["uid"]
        elif op == "flags":
            sha, _ = self.folders[folder][ack["uid"]]
            self.folders[folder][ack["uid"]] = (sha, frozenset(ack["flags"]))
        elif op == "expunge":
            assert ack["removed"] == [ack["uid"]], ack
            del self.folders[folder][ack["uid"]]
        elif op == "copy":
            assert ack["newUid"] > self.maxUid["Target"], f"UID given out again: {ack}"
            assert self.validity.setdefault("Target", ack["validity"]) == ack["validity"]
            self.folders["Target"][ack["newUid"]] = self.folders[folder][ack["uid"]]
            self.maxUid["Target"] = ack["newUid"]
        elif op == "move":
            del self.folders[folder][ack["uid"]]
        elif op == "rename":
            self.renamedTo = ack["new"]
        elif op in ("create", "delete"):
            self.scratch = op == "create"

    def check(
        self, folders: dict[str, Folder], scratch: bool, inflight: dict[str, Any] | None
    ) -> None:
        """
        Compare a fresh look at the Maildir with the model: equal except for
        what the operation in flight at the kill (C{inflight}) may have done.
        """
        op = inflight["op"] if inflight else None
        for logical, seen in folders.items():
            assert self.validity.setdefault(logical, seen.validity) == seen.validity, (
                f"UIDVALIDITY of {logical} changed"
            )
            expected = self.folders[logical]
            extra = seen.messages.keys() - expected.keys()
            missing = expected.keys() - seen.messages.keys()
            mayAppear: set[str] = set()
            mayGo: set[int] = set()
            if op == "deliver" and inflight and inflight["folder"] == logical:
                mayAppear.add(inflight["sha"])
            if op == "move" and inflight and not inflight.get("copied") and logical == "Target":
                mayAppear.add(self.folders[inflight["folder"]][inflight["uid"]][0])
            if op in ("expunge", "move") and inflight and inflight["folder"] == logical:
                mayGo.add(inflight["uid"])
            assert missing <= mayGo, f"acknowledged messages of {logical} lost: {missing}"
            assert len(extra) <= len(mayAppear), f"unexpected messages in {logical}: {extra}"
            for uid in extra:
                assert seen.messages[uid][0] in mayAppear, f"unknown message {uid} in {logical}"
                assert uid > self.maxUid[logical], f"{logical} UID {uid} given out again"
            for uid in expected.keys() & seen.messages.keys():
                sha, flags = seen.messages[uid]
                assert sha == expected[uid][0], f"{logical} UID {uid} has other contents"
                if flags != expected[uid][1]:
                    flagging = op == "flags" and inflight
                    assert flagging and (inflight["folder"], inflight["uid"]) == (logical, uid), (
                        f"{logical} UID {uid}: flags {set(flags)}, acknowledged {expected[uid][1]}"
                    )
                    assert flags == frozenset(inflight["flags"])
            if op == "deliver" and extra:
                assert seen.messages[min(extra)][1] == frozenset(inflight["flags"])  # type: ignore[index]
            seen_max = max(seen.messages, default=0)
            assert seen.uidNext > max(seen_max, self.maxUid[logical])
        if self.renamedTo is not None and op != "rename":
            assert folders["Ren"].name == self.renamedTo
        if self.scratch is not None and op not in ("create", "delete"):
            assert scratch == self.scratch

    def adopt(self, folders: dict[str, Folder], scratch: bool) -> None:
        """After a successful check: the fresh look becomes the model."""
        for logical, seen in folders.items():
            self.folders[logical] = dict(seen.messages)
            self.maxUid[logical] = max(self.maxUid[logical], seen.uidNext - 1)
        self.renamedTo = folders["Ren"].name
        self.scratch = scratch


def replay(model: Model, said: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Apply the acknowledgements; return the operation still in flight, if any."""
    inflight = None
    for line in said:
        assert "failed" not in line, line
        if "begin" in line:
            inflight = dict(line["begin"])
        elif "ack" in line:
            ack = line["ack"]
            model.apply(ack)
            if ack["op"] == "copy":
                assert inflight is not None
                inflight["copied"] = True
            else:
                inflight = None
    return inflight


def test_kill_9_at_random_moments_loses_no_acknowledged_change(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    rng = random.Random(20261128)
    model = Model()
    staleLocks = 0
    tmpDebris = 0
    interrupted: Counter[str] = Counter()
    for run in range(1, KILLS + 1):
        out = tmp_path / f"run{run}.jsonl"
        started = time.monotonic()
        with worker(root, out, "--run", str(run)) as process:
            waitForLine(out, process, "ready")
            time.sleep(rng.uniform(0.0, 0.12))
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
        staleLocks += len(settleDeadLocks(root))
        tmpDebris += sum(1 for p in root.glob("**/tmp/*") if p.is_file())
        inflight = replay(model, lines(out)[1:])
        interrupted[inflight["op"] if inflight else "nothing"] += 1
        folders, scratch = observe(root)
        assert time.monotonic() - started < 20, "a dead writer's lock stalled the next one"
        model.check(folders, scratch, inflight)
        model.adopt(folders, scratch)
    assert set(model.acknowledged) >= {"deliver", "flags", "expunge", "copy", "move", "rename"}
    assert interrupted["nothing"] < KILLS // 2, f"the kills hardly hit an operation: {interrupted}"
    assert not list(root.glob("tmp/*.deleted")), "a deleted folder's remains were not swept"

    for stale in root.glob("**/tmp/*"):
        os.utime(stale, (time.time() - 37 * 3600,) * 2)
    folders, _ = observe(root)
    assert not [p for p in root.glob("**/tmp/*") if p.is_file()], "crash debris in tmp/ kept"
    print(f"acknowledged {model.acknowledged}, interrupted {interrupted}")
    print(f"{staleLocks} stale locks, {tmpDebris} files left in tmp/")


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
    inbox = MaildirStore(root).getFolder("INBOX")
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
    inbox = MaildirStore(root).getFolder("INBOX")
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
    inbox = MaildirStore(root).getFolder("INBOX")
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
    store = MaildirStore(root)
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
    MaildirStore(root).getFolder("INBOX").messages()
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
    inbox = MaildirStore(root).getFolder("INBOX")
    for n in range(2):
        pending = inbox.beginMessage()
        pending.write(body(1, n))
        pending.commit()
    orphan = "1764370000.M1P1Q1.host,S=31"
    (root / "new" / orphan).write_bytes(b"Subject: orphan\r\n\r\nkilled.\r\n")
    with (root / "dovecot-uidlist").open("ab") as f:
        f.write(f"3 :{orphan}"[:-6].encode())

    writer = MaildirStore(root).getFolder("INBOX")
    for n in range(2, 5):
        pending = writer.beginMessage()
        pending.write(body(1, n))
        pending.commit()
    told = [(info.uid, info.key) for info in writer.messages()]
    assert orphan in dict((key, uid) for uid, key in told)
    again = MaildirStore(root).getFolder("INBOX")
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
    inbox = MaildirStore(root).getFolder("INBOX")
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
    store = MaildirStore(root)
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
    store = MaildirStore(root)
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
    store = MaildirStore(root)
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
