"""
Several OS processes on one Maildir at once: tmail deliverers, a flag changer
and an expunger (each with its own L{MaildirStore}), and an external writer
that is not tmail.  No message may be lost or duplicated, no message may get
two UIDs, no UID may be given to two messages or go backwards, UIDVALIDITY
never changes, and files dropped into new/ from outside get UIDs.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections import Counter, defaultdict
from concurrent.futures import Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from support.maildirworkers import (
    Report,
    Snapshot,
    deliverer,
    expunger,
    externalWriter,
    flagger,
    identOf,
    messageBytes,
    observe,
)
from tmail.store import uidlist
from tmail.store.maildir import BlockingMaildirStore, MaildirFolder

DELIVERERS = 3
PER_DELIVERER = 40
DROPS = 15
TIME_LIMIT = 15.0


def newUidsOnlyIncrease(name: str, snapshots: list[Snapshot]) -> None:
    """Each listing is in UID order and shows no new UID below one seen before."""
    highest = 0
    seen: set[int] = set()
    for number, snapshot in enumerate(snapshots):
        uids = [uid for uid, _ in snapshot]
        assert uids == sorted(set(uids)), f"{name} listing {number} out of order: {uids}"
        fresh = [uid for uid in uids if uid not in seen]
        assert all(uid > highest for uid in fresh), (
            f"{name} listing {number} shows new UIDs {fresh} below {highest} seen earlier"
        )
        seen.update(uids)
        highest = max(seen, default=0)


def checkNoDuplicates(
    folder: MaildirFolder, snapshot: Snapshot, identities: dict[int, str], report: Report
) -> None:
    """While the others work: no message is listed under two UIDs at once."""
    for uid, _ in snapshot:
        if uid not in identities:
            try:
                with folder.openMessage(uid) as f:
                    identities[uid] = identOf(f.read())
            except KeyError:
                continue
    listed = Counter(identities[uid] for uid, _ in snapshot if uid in identities)
    twice = [ident for ident, count in listed.items() if count > 1]
    if twice:
        report.errors.append(f"listed twice at once: {twice}")


@dataclass
class Run:
    """The outcome of one concurrent run: every process's report and the folder after it."""

    root: Path
    uidValidity: int
    reports: list[Report]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    folder = tmp_path_factory.mktemp("concurrency")
    root = folder / "Maildir"
    stopFile = folder / "stop"
    inbox = BlockingMaildirStore(root).getFolder("INBOX")
    uidValidity = inbox.uidValidity()
    parent = Report("parent")
    started = time.monotonic()
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=DELIVERERS + 3, mp_context=context) as pool:
        deliveries = [
            pool.submit(deliverer, root, f"d{n}", PER_DELIVERER, n) for n in range(DELIVERERS)
        ]
        others: list[Future[Report]] = [
            pool.submit(flagger, root, stopFile, 100),
            pool.submit(expunger, root, stopFile, 200),
            pool.submit(externalWriter, root, stopFile, DROPS, 300),
        ]
        identities: dict[int, str] = {}
        while not all(f.done() for f in deliveries):
            assert time.monotonic() - started < TIME_LIMIT, "deliveries did not finish in time"
            checkNoDuplicates(inbox, observe(inbox, parent), identities, parent)
            time.sleep(0.01)
        stopFile.touch()
        _, pending = wait(others, timeout=TIME_LIMIT - (time.monotonic() - started))
        assert not pending, "workers did not stop in time"
        reports = [f.result() for f in deliveries + others]
    observe(inbox, parent)
    return Run(root, uidValidity, [*reports, parent])


def test_concurrent_processes_never_lose_duplicate_or_renumber_messages(run: Run) -> None:
    root, uidValidity, reports = run.root, run.uidValidity, run.reports
    for report in reports:
        assert report.errors == [], report.name
        assert set(report.uidValidities) <= {uidValidity}, report.name
        assert report.uidNexts == sorted(report.uidNexts), f"{report.name}: UIDNEXT went back"
        for snapshot in report.snapshots:
            uids = [uid for uid, _ in snapshot]
            assert uids == sorted(set(uids)), f"{report.name} listed {uids}"
    assert all(r.actions > 0 for r in reports if r.name != "parent")

    uidsOfBase: dict[str, set[int]] = defaultdict(set)
    basesOfUid: dict[int, set[str]] = defaultdict(set)
    for report in reports:
        for snapshot in report.snapshots:
            for uid, base in snapshot:
                uidsOfBase[base].add(uid)
                basesOfUid[uid].add(base)
    assert {b: u for b, u in uidsOfBase.items() if len(u) > 1} == {}
    assert {u: b for u, b in basesOfUid.items() if len(b) > 1} == {}

    delivered = {ident: uid for r in reports for ident, uid in r.delivered.items()}
    dropped = {ident for r in reports for ident in r.dropped}
    expunged = Counter(ident for r in reports for ident in r.expunged)
    assert len(delivered) == DELIVERERS * PER_DELIVERER
    assert len(dropped) == DROPS
    assert len(set(delivered.values())) == len(delivered), "two deliveries got one UID"
    assert max(expunged.values(), default=1) == 1
    assert expunged, "the expunger never removed anything"

    fresh = BlockingMaildirStore(root).getFolder("INBOX")
    assert fresh.uidValidity() == uidValidity
    final = fresh.messages()
    identities: dict[str, int] = {}
    for info in final:
        with fresh.openMessage(info.uid) as f:
            ident = identOf(f.read())
        assert ident not in identities, f"{ident} is there twice"
        identities[ident] = info.uid
        assert info.uid in uidsOfBase.get(info.key, {info.uid})
    assert set(identities) == (set(delivered) | dropped) - set(expunged)
    for ident, uid in identities.items():
        if ident in delivered:
            assert uid == delivered[ident], f"{ident} was committed as {delivered[ident]}"
    assert {identities[i] for i in dropped if i in identities} <= {m.uid for m in final}

    data = uidlist.parse((root / "dovecot-uidlist").read_text())
    assert data.uidValidity == uidValidity
    assert len(set(data.uids.values())) == len(data.uids)
    assert {m.key: m.uid for m in final}.items() <= data.uids.items()
    assert fresh.uidNext() > max(basesOfUid, default=0)


def test_concurrent_listings_never_show_a_new_uid_below_one_already_listed(run: Run) -> None:
    for report in run.reports:
        newUidsOnlyIncrease(report.name, report.snapshots)


def test_message_renamed_while_being_indexed_is_not_listed_after_newer_uids(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "Maildir"
    reader = BlockingMaildirStore(root).getFolder("INBOX")
    writer = BlockingMaildirStore(root).getFolder("INBOX")
    reader.refresh()
    reader.messages()
    for n in range(2):
        pending = writer.beginMessage(["\\Seen"])
        pending.write(messageBytes(f"m{n}"))
        pending.commit()
    writer.refresh()
    first = next(m.key for m in writer.messages() if m.uid == 1)
    realStat = os.stat
    renamed: list[str] = []

    def renameFirstBeforeStat(path: str | os.PathLike[str], *args: Any, **kwargs: Any) -> Any:
        if not renamed and os.path.basename(path) == f"{first}:2,S":
            renamed.append(os.fspath(path))
            os.rename(path, root / "cur" / f"{first}:2,FS")
        return realStat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", renameFirstBeforeStat)
    reader.refresh()
    listed = [m.uid for m in reader.messages()]
    monkeypatch.undo()
    assert renamed, "the external rename never happened"
    assert listed == [1, 2]
