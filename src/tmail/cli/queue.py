# -*- test-case-name: tests.cli.test_cli_queue -*-
"""
C{tmail queue}: look at and act on the outbound queue, while the server
runs or not.

    tmail queue list [--json]
    tmail queue show ID [--message]
    tmail queue flush [ID]
    tmail queue hold|release|delete ID [ID...]

The commands work on the files in C{data_dir/queue}
(L{tmail.queue.store}): C{hold}, C{release} and C{delete} change or remove
an entry's metadata under the queue's lock, which the running queue runner
rereads before every attempt; C{flush} makes waiting recipients due now and
leaves a C{wakeup} request, which the runner looks for every second.
C{delete} removes an entry without telling its sender.
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from collections.abc import Callable

from tmail.cli.commands import IO, CommandError, configPath
from tmail.config.loader import loadSettings
from tmail.errors import StoreError
from tmail.queue.entry import NoSuchEntry, Recipient, State, entryToDict
from tmail.queue.store import QueueStore, isEntryId, queueDirectory
from tmail.store.quota import humanSize

Command = Callable[[argparse.Namespace, IO], int]

__all__ = [
    "queueDelete",
    "queueFlush",
    "queueHold",
    "queueList",
    "queueRelease",
    "queueShow",
]


def _refusals(command: Command) -> Command:
    """Turn the store's refusals (unreadable metadata, a full disk) into one line."""

    @functools.wraps(command)
    def run(args: argparse.Namespace, io: IO) -> int:
        try:
            return command(args, io)
        except NoSuchEntry as e:
            raise CommandError(f"no such queue entry: {e}") from None
        except StoreError as e:
            raise CommandError(f"the queue refused: {e}") from None

    return run


def _checkIds(*ids: str) -> None:
    for entryId in ids:
        if not isEntryId(entryId):
            raise CommandError(
                f"not a queue ID: {entryId!r} (24 hex digits, as 'queue list' shows)"
            )


def _store(args: argparse.Namespace) -> QueueStore:
    return QueueStore(queueDirectory(loadSettings(configPath(args)).data_dir))


def _when(stamp: float | None) -> str:
    if stamp is None:
        return "never"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))


def _path(address: str) -> str:
    return f"<{address}>"


def _recipientLine(r: Recipient) -> str:
    """C{<bob@example.net>  deferred, 3 attempts, next 2026-11-28 11:00:00}."""
    parts = [r.state.value]
    if r.attempts:
        parts.append(f"{r.attempts} attempt" + ("" if r.attempts == 1 else "s"))
    if r.active and r.attempts:
        parts.append(f"next {_when(r.nextAttempt)}")
    if r.state is State.FAILED and r.owedNotice() is not None:
        parts.append("sender not told yet")
    return f"{_path(r.address)}  {', '.join(parts)}"


@_refusals
def queueList(args: argparse.Namespace, io: IO) -> int:
    """C{tmail queue list}: every entry, oldest first, with its recipients."""
    store = _store(args)
    entries, unreadable = store.scan()
    for entryId, reason in sorted(unreadable.items()):
        io.stderr.write(f"tmail: warning: cannot read queue entry {entryId}: {reason}\n")
    if args.json:
        io.say(json.dumps([entryToDict(entry) for entry in entries], indent=1, ensure_ascii=False))
        return 0
    if not entries:
        io.say("queue is empty")
        return 0
    waiting = held = 0
    for entry in entries:
        flag = "  HELD" if entry.held else ""
        io.say(
            f"{entry.id}  {_when(entry.arrival)}  {humanSize(entry.size)}"
            f"  from {_path(entry.sender)}{flag}"
        )
        for r in entry.recipients:
            io.say(f"    {_recipientLine(r)}")
            if r.diagnostic is not None and r.state is not State.DELIVERED:
                io.say(f"        {r.diagnostic.describe()}")
        waiting += len(entry.active())
        held += entry.held
    count = len(entries)
    summary = f"-- {count} entr{'y' if count == 1 else 'ies'}, {waiting} recipient"
    summary += f"{'' if waiting == 1 else 's'} to deliver"
    io.say(summary + (f", {held} held" if held else ""))
    return 0


@_refusals
def queueShow(args: argparse.Namespace, io: IO) -> int:
    """C{tmail queue show ID}: an entry's envelope, state and message header."""
    _checkIds(args.id)
    store = _store(args)
    entry = store.load(args.id)
    io.say(f"id: {entry.id}")
    io.say(f"arrival: {_when(entry.arrival)}")
    io.say(f"sender: {_path(entry.sender)}")
    io.say(f"size: {entry.size} ({humanSize(entry.size)})")
    io.say(f"body: {entry.body}{', SMTPUTF8' if entry.utf8 else ''}")
    if entry.ret is not None or entry.envid is not None:
        io.say(f"dsn: ret={entry.ret or '-'} envid={entry.envid or '-'}")
    io.say(f"held: {'yes' if entry.held else 'no'}")
    for r in entry.recipients:
        io.say(f"recipient: {_recipientLine(r)}")
        if r.notify is not None:
            io.say(f"    notify: {','.join(r.notify)}")
        if r.orcpt is not None:
            io.say(f"    orcpt: {r.orcpt}")
        if r.lastAttempt is not None:
            io.say(f"    last attempt: {_when(r.lastAttempt)}")
        if r.diagnostic is not None:
            io.say(f"    result: {r.diagnostic.describe()}")
    io.say("")
    with store.openMessage(entry.id) as f:
        data = f.read() if args.message else _header(f.read(256 * 1024))
    io.stdout.write(data.decode("utf-8", "replace").replace("\r\n", "\n"))
    return 0


def _header(data: bytes) -> bytes:
    for end in (b"\r\n\r\n", b"\n\n"):
        at = data.find(end)
        if at >= 0:
            return data[: at + len(end) // 2]
    return data


@_refusals
def queueFlush(args: argparse.Namespace, io: IO) -> int:
    """C{tmail queue flush [ID]}: try waiting recipients now."""
    if args.id is not None:
        _checkIds(args.id)
    store = _store(args)
    if args.id is not None:
        entry = store.load(args.id)
        store.flush(args.id)
        note = " (held: release it to send it)" if entry.held else ""
        io.say(f"{args.id}: due now{note}")
        return 0
    if not store.ids():
        io.say("queue is empty")
        return 0
    changed = store.flush()
    io.say(f"{len(changed)} entr{'y' if len(changed) == 1 else 'ies'} made due now")
    return 0


_DONE = {"hold": "held", "release": "released", "delete": "deleted"}


def _each(args: argparse.Namespace, io: IO, act: str) -> int:
    _checkIds(*args.ids)
    store = _store(args)
    status = 0
    for entryId in args.ids:
        try:
            if act == "hold":
                store.hold(entryId)
            elif act == "release":
                store.release(entryId)
            else:
                store.delete(entryId)
        except NoSuchEntry:
            io.stderr.write(f"tmail: error: no such queue entry: {entryId}\n")
            status = 1
            continue
        io.say(f"{entryId}: {_DONE[act]}")
    return status


@_refusals
def queueHold(args: argparse.Namespace, io: IO) -> int:
    """C{tmail queue hold ID...}: no more attempts until released."""
    return _each(args, io, "hold")


@_refusals
def queueRelease(args: argparse.Namespace, io: IO) -> int:
    """C{tmail queue release ID...}: attempts resume when due."""
    return _each(args, io, "release")


@_refusals
def queueDelete(args: argparse.Namespace, io: IO) -> int:
    """C{tmail queue delete ID...}: remove entries without telling their senders."""
    return _each(args, io, "delete")
