"""
Crash safety of the queue with a real C{kill -9}: a worker process
(L{support.queueworker}) enqueues messages and changes entries until it is
killed at a random moment.  Opened fresh, the queue must then list every
entry the worker acknowledged, with its message intact and the state the
last acknowledged change gave it; the one operation in flight may have
happened or not, but not half; no half-written entry is listed; and
recovery removes whatever the kill left behind.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from support.crash import lines, waitForLine
from support.queueworker import snapshot
from tmail.queue.store import QueueStore

TESTS = Path(__file__).resolve().parents[1]
KILLS = 25

Entries = dict[str, tuple[str, dict[str, Any]]]


@contextmanager
def queueWorker(queue: Path, out: Path, run: int) -> Iterator[subprocess.Popen[bytes]]:
    """Run the queue worker with stdout in C{out}; kill it on the way out."""
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])
    )
    with out.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "support.queueworker", str(queue), "--run", str(run)],
            stdout=sink,
            env=env,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


def observe(store: QueueStore) -> Entries:
    """Every entry listed, by ID: its message's digest and its state."""
    found: Entries = {}
    for entry in store.entries():
        with store.openMessage(entry.id) as f:
            data = f.read()
        assert len(data) == entry.size, f"{entry.id}: message cut short"
        after = snapshot(entry)
        assert after is not None
        found[entry.id] = (hashlib.sha256(data).hexdigest(), after)
    return found


def replay(model: Entries, said: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Apply the acknowledgements to C{model}; return the operation in flight, if any."""
    inflight = None
    for line in said:
        if "begin" in line:
            inflight = line["begin"]
        elif "ack" in line:
            ack = line["ack"]
            if ack["op"] == "enqueue":
                assert ack["id"] not in model, "an ID given out twice"
                model[ack["id"]] = (ack["sha"], ack["after"])
            elif ack["after"] is None:
                del model[ack["id"]]
            else:
                model[ack["id"]] = (model[ack["id"]][0], ack["after"])
            inflight = None
    return inflight


def check(model: Entries, seen: Entries, inflight: dict[str, Any] | None) -> None:
    """The queue holds what was acknowledged, give or take the one operation in flight."""
    for entryId, (sha, state) in model.items():
        if entryId not in seen:
            assert inflight is not None and inflight.get("id") == entryId, f"{entryId} lost"
            assert inflight["after"] is None, f"{entryId} lost by {inflight['op']}"
            continue
        assert seen[entryId][0] == sha, f"{entryId}: another message"
        if seen[entryId][1] != state:
            assert inflight is not None and inflight.get("id") == entryId, f"{entryId} changed"
            assert seen[entryId][1] == inflight["after"], f"{entryId} half changed"
    extra = seen.keys() - model.keys()
    if extra:
        [entryId] = extra
        assert inflight is not None and inflight["op"] == "enqueue", f"{entryId} never queued"
        assert seen[entryId][0] == inflight["sha"], f"{entryId}: a half-written message"


def test_kill_9_at_random_moments_loses_no_acknowledged_entry_or_change(tmp_path: Path) -> None:
    queue = tmp_path / "queue"
    rng = random.Random(20261204)
    model: Entries = {}
    acknowledged: Counter[str] = Counter()
    interrupted: Counter[str] = Counter()
    debris = 0
    run = 0
    # At least KILLS kills; more (up to three times as many) while they have
    # not yet hit what the test is about: a busy machine shifts the timing.
    while run < KILLS or (
        run < 3 * KILLS
        and not (
            interrupted["enqueue"] > 0
            and sum(interrupted.values()) - interrupted["nothing"] >= KILLS // 3
            and debris > 0
            and set(acknowledged) >= {"enqueue", "record", "notice", "hold", "delete"}
        )
    ):
        run += 1
        out = tmp_path / f"run{run}.jsonl"
        with queueWorker(queue, out, run) as process:
            waitForLine(out, process, "ready")
            time.sleep(rng.uniform(0.0, 0.15))
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
        said = lines(out)[1:]
        acknowledged.update(line["ack"]["op"] for line in said if "ack" in line)
        inflight = replay(model, said)
        interrupted[inflight["op"] if inflight else "nothing"] += 1

        store = QueueStore(queue)
        before, unreadable = store.scan()
        assert unreadable == {}, f"half-written metadata listed: {unreadable}"
        report = store.recover(grace=0)
        assert (report.corrupt, report.unknown, report.finished) == ([], [], [])
        debris += len(report.debris)
        seen = observe(store)
        assert {e.id for e in before} == seen.keys()
        check(model, seen, inflight)
        names = {p.name for p in queue.iterdir() if p.is_file()} - {"lock", "wakeup"}
        assert names == {f"{i}.{kind}" for i in seen for kind in ("json", "msg")}
        assert not list((queue / "tmp").iterdir()), "debris left in tmp/"
        model = seen

    assert set(acknowledged) >= {"enqueue", "record", "notice", "hold", "delete"}
    assert sum(interrupted.values()) - interrupted["nothing"] >= KILLS // 3, (
        f"the kills hardly hit an operation: {interrupted}"
    )
    assert interrupted["enqueue"] > 0, f"no kill hit an enqueue: {interrupted}"
    assert debris > 0, "no kill left debris to clean up"
    print(f"acknowledged {acknowledged}, interrupted {interrupted}, {debris} files of debris")
