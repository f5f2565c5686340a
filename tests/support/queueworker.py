"""
A process that works on a queue until it is killed: it enqueues messages
(written in pieces), records attempts, marks notices sent, holds, releases
and deletes entries, announcing each operation before it starts and
acknowledging it once it returned.  An acknowledgement is what an SMTP
client (for an enqueue: the C{250}) or an operator would have been told.

Run as C{python -m support.queueworker QUEUE --run N} with C{tests} on
C{PYTHONPATH}.  Every line on stdout is one JSON object: C{{"ready": true}}
once the store is open, C{{"begin": {...}}} before an operation and
C{{"ack": {...}}} after it.  A C{begin} carries what the entry will look
like if the operation completes (L{snapshot}, C{None} once removed); an
enqueue's carries the message's digest instead, as its ID is not known yet.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from tmail.queue.entry import Diagnostic, Envelope, Notice, Outcome, QueueEntry, Recipient
from tmail.queue.store import QueueStore

ADDRESSES = ("bob@example.net", "carol@example.org", "dan@example.net")
NOTIFY = (None, ("NEVER",), ("SUCCESS", "FAILURE"))
OPERATIONS = ("enqueue",) * 5 + ("record",) * 4 + ("notice", "hold", "delete")


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def snapshot(entry: QueueEntry | None) -> dict[str, Any] | None:
    """What the test compares: the held flag and each recipient's state."""
    if entry is None:
        return None
    return {
        "held": entry.held,
        "recipients": {
            r.address: [r.state.value, r.attempts, r.noticeSent] for r in entry.recipients
        },
    }


def say(line: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


def message(rng: random.Random, run: int, number: int) -> bytes:
    head = f"From: alice@example.com\r\nSubject: run {run} message {number}\r\n\r\n".encode()
    size = rng.choice((0, 100, 5000, 70_000, 300_000))
    line = f"run {run} message {number} ".encode() * 3 + b"\r\n"
    return head + (line * (size // len(line) + 1))[:size]


def enqueue(store: QueueStore, rng: random.Random, run: int, number: int) -> None:
    data = message(rng, run, number)
    chosen = rng.sample(ADDRESSES, rng.randint(1, 3))
    envelope = Envelope(
        rng.choice(("", "alice@example.com")),
        tuple(Recipient(a, rng.choice(NOTIFY)) for a in chosen),
    )
    say({"begin": {"op": "enqueue", "sha": digest(data)}})
    pending = store.begin(envelope)
    at = 0
    while at < len(data):
        step = rng.randint(1, 100_000)
        pending.write(data[at : at + step])
        at += step
    entry = pending.commit()
    say({"ack": {"op": "enqueue", "id": entry.id, "sha": digest(data), "after": snapshot(entry)}})


def change(store: QueueStore, rng: random.Random, op: str) -> None:
    entries = store.entries()
    if op == "record":
        entries = [e for e in entries if e.active()]
    elif op == "notice":
        entries = [e for e in entries if e.noticesOwed()]
    if not entries:
        return
    entry = rng.choice(entries)
    if op == "record":
        address = rng.choice(entry.active()).address
        outcome = rng.choice(
            (
                Outcome.delivered(Diagnostic("2.0.0", "OK", 250)),
                Outcome.deferred(Diagnostic("4.4.1", "refused"), 1e10),
                Outcome.failed(Diagnostic("5.1.1", "no such user", 550)),
            )
        )
        after: QueueEntry | None = entry.recorded({address: outcome}, 1.0)
        action = lambda: store.record(entry.id, {address: outcome}, 1.0)  # noqa: E731
    elif op == "notice":
        notice, owed = next(iter(entry.noticesOwed().items()))
        addresses = [r.address for r in owed]
        after = entry.noticeSent(addresses, notice)
        action = lambda: store.markNoticeSent(entry.id, addresses, Notice(notice))  # noqa: E731
    elif op == "hold":
        held = not entry.held
        after = replace(entry, held=held)
        action = (lambda: store.hold(entry.id)) if held else (lambda: store.release(entry.id))
    else:
        after = None
        action = lambda: store.delete(entry.id)  # noqa: E731
    if after is not None and after.isDone():
        after = None
    say({"begin": {"op": op, "id": entry.id, "before": snapshot(entry), "after": snapshot(after)}})
    result = action()
    told = None if op == "delete" else result
    say({"ack": {"op": op, "id": entry.id, "after": snapshot(told)}})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("queue", type=Path)
    parser.add_argument("--run", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.run)
    store = QueueStore(args.queue)
    store.create()
    say({"ready": True})
    number = 0
    while True:
        op = rng.choice(OPERATIONS)
        if op == "enqueue":
            number += 1
            enqueue(store, rng, args.run, number)
        else:
            change(store, rng, op)


if __name__ == "__main__":
    main()
