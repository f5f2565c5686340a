"""
The harness of the crash tests: run L{support.storeworker} in a process,
kill it, and compare what it acknowledged with a fresh look at the Maildir.
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

from support.storeworker import RENAMED, digest
from tmail.store import dotlock, uidlist
from tmail.store.maildir import BlockingMaildirStore

TESTS = Path(__file__).resolve().parents[1]
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
    store = BlockingMaildirStore(root)
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


@dataclass
class KillReport:
    """What a series of kills did: the model and how the kills landed."""

    model: Model
    interrupted: Counter[str]
    staleLocks: int
    tmpDebris: int


def killAtRandom(root: Path, scratch: Path, kills: int, seed: int) -> KillReport:
    """
    Run the worker over C{root} C{kills} times, each time killing it after a
    random moment, and after each kill check a fresh look at the Maildir
    against everything it acknowledged.  Worker output goes to C{scratch}.
    """
    rng = random.Random(seed)
    report = KillReport(Model(), Counter(), 0, 0)
    for run in range(1, kills + 1):
        out = scratch / f"run{run}.jsonl"
        started = time.monotonic()
        with worker(root, out, "--run", str(run)) as process:
            waitForLine(out, process, "ready")
            time.sleep(rng.uniform(0.0, 0.12))
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
        report.staleLocks += len(settleDeadLocks(root))
        report.tmpDebris += sum(1 for p in root.glob("**/tmp/*") if p.is_file())
        inflight = replay(report.model, lines(out)[1:])
        report.interrupted[inflight["op"] if inflight else "nothing"] += 1
        folders, scratchExists = observe(root)
        assert time.monotonic() - started < 20, "a dead writer's lock stalled the next one"
        report.model.check(folders, scratchExists, inflight)
        report.model.adopt(folders, scratchExists)
    return report
