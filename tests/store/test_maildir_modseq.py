"""
Mod-sequences of Maildir folders (RFC 7162 CONDSTORE and QRESYNC), as the
store keeps them in C{tmail-modseq}: every change takes a mod-sequence above
all earlier ones, they survive a restart (with or without a saved index),
changes by other Maildir programs are found and numbered, the crash windows
of the write-ahead log never show a change at an old mod-sequence, several
processes never share or lose one, and compaction forgets nothing a client
may still ask for.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import itertools
import multiprocessing
import os
import time
import tracemalloc
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from support.modseqworkers import FlagReport, flagChanger
from tmail.store import modseq
from tmail.store.maildir import BlockingMaildirStore, MaildirFolder, indexsaving, uidnumbering
from tmail.store.modseq import ModSeqLog

LOG = "tmail-modseq"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "Maildir"


@pytest.fixture(autouse=True)
def _noStrayLogs(root: Path) -> Iterator[None]:
    """No test leaves the temporary file of a compaction behind."""
    yield
    if root.exists():
        assert not list(root.glob(".tmail-modseq.*")), "a compaction left its temporary"


@pytest.fixture(params=[False, True], ids=["listed", "saved-index"])
def savedIndex(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Run the test both from a fresh listing and from a saved index (as a large folder)."""
    if request.param:
        monkeypatch.setattr(indexsaving, "_SAVED_INDEX_MIN", 1)
    return bool(request.param)


def inbox(root: Path) -> MaildirFolder:
    """INBOX as a newly started process sees it."""
    return BlockingMaildirStore(root).getFolder("INBOX")


def deliver(folder: MaildirFolder, flags: tuple[str, ...] = ()) -> int:
    pending = folder.beginMessage(flags)
    pending.write(b"Subject: m\r\n\r\nbody\r\n")
    return pending.commit()


def filled(root: Path, count: int = 6) -> MaildirFolder:
    folder = inbox(root)
    for n in range(count):
        deliver(folder, ("\\Seen",) if n % 2 else ())
    folder.refresh()
    folder.messages()
    return folder


def modseqs(folder: MaildirFolder) -> dict[int, int]:
    folder.refresh()
    return {m.uid: m.modseq for m in folder.messages()}


def flagsOf(folder: MaildirFolder) -> dict[int, frozenset[str]]:
    folder.refresh()
    return {m.uid: m.flags for m in folder.messages()}


def highestOf(folder: MaildirFolder) -> int:
    """HIGHESTMODSEQ as a client selecting the folder is told it: after a listing."""
    folder.refresh()
    folder.messages()
    folder.refresh()
    return folder.highestModSeq()


def vanished(folder: MaildirFolder, since: int) -> tuple[list[int], bool]:
    """The UIDs expunged since C{since}, as QRESYNC reports them: after a listing."""
    folder.refresh()
    folder.messages()
    folder.refresh()
    return folder.expungedSince(since)


def everything(folder: MaildirFolder, since: int) -> tuple[dict[int, int], int, list[int], bool]:
    """What a QRESYNC client resynchronising from C{since} is told."""
    uids, complete = vanished(folder, since)
    return modseqs(folder), highestOf(folder), uids, complete


def rename(root: Path, folder: MaildirFolder, uid: int, letters: str) -> None:
    """Change a message's flag letters as another Maildir program does: a rename in cur/."""
    key = next(m.key for m in folder.messages() if m.uid == uid)
    [name] = [n for n in os.listdir(root / "cur") if n.split(":")[0] == key]
    os.rename(root / "cur" / name, root / "cur" / f"{key}:2,{letters}")


def remove(root: Path, folder: MaildirFolder, uid: int) -> None:
    """Delete a message file as another Maildir program does."""
    key = next(m.key for m in folder.messages() if m.uid == uid)
    [name] = [n for n in os.listdir(root / "cur") if n.split(":")[0] == key]
    os.unlink(root / "cur" / name)


def drop(root: Path, name: str) -> None:
    """Deliver a file into new/ the Maildir way, without tmail."""
    (root / "tmp" / name).write_bytes(b"Subject: dropped\r\n\r\nx\r\n")
    os.rename(root / "tmp" / name, root / "new" / name)


def logLines(root: Path) -> list[bytes]:
    """The lines of the INBOX log after its header."""
    return (root / LOG).read_bytes().split(b"\n")[1:-1]


# Every change takes a new mod-sequence


def test_every_message_has_a_modseq_of_at_least_one(root: Path) -> None:
    folder = inbox(root)
    deliver(folder)
    deliver(folder, ("\\Seen", "$Work"))
    folder.messages()
    deliver(folder)
    assert all(m.modseq >= 1 for m in folder.messages())
    assert len(folder.messages()) == 3


def test_a_new_message_takes_a_modseq_above_every_earlier_one(root: Path) -> None:
    folder = filled(root)
    highest = highestOf(folder)
    uid = deliver(folder)
    assert modseqs(folder)[uid] > highest
    assert highestOf(folder) == modseqs(folder)[uid]

    highest = highestOf(folder)
    other = inbox(root)
    fromElsewhere = deliver(other)
    assert modseqs(folder)[fromElsewhere] > highest
    assert highestOf(folder) >= modseqs(folder)[fromElsewhere]


def test_a_copy_takes_a_modseq_above_every_earlier_one_in_its_folder(root: Path) -> None:
    source = filled(root)
    target = BlockingMaildirStore(root).createFolder("Archive")
    deliver(target)
    highest = highestOf(target)
    uid = source.copyMessage(1, target)
    assert {m.uid: m.modseq for m in target.messages()}[uid] > highest


def test_a_flag_change_takes_a_modseq_above_every_earlier_one(root: Path) -> None:
    folder = filled(root)
    before = modseqs(folder)
    highest = highestOf(folder)
    changed = folder.setFlags(3, {"\\Flagged"})
    assert changed.modseq > highest
    assert highestOf(folder) == changed.modseq
    after = modseqs(folder)
    assert after[3] == changed.modseq
    assert {u: m for u, m in after.items() if u != 3} == {u: m for u, m in before.items() if u != 3}

    again = folder.setFlags(1, {"$Work"})
    assert again.modseq > changed.modseq
    assert highestOf(folder) == again.modseq


def test_setting_the_same_flags_again_takes_no_new_modseq(root: Path) -> None:
    folder = filled(root)
    folder.setFlags(2, {"\\Seen", "\\Flagged", "$Work"})
    before, highest = modseqs(folder), highestOf(folder)
    info = folder.setFlags(2, {"\\Flagged", "$Work", "\\seen"})
    assert info.modseq == before[2]
    assert folder.setFlags(1, ()).modseq == before[1]
    assert modseqs(folder) == before
    assert highestOf(folder) == highest


def test_an_expunge_takes_a_modseq_above_every_earlier_one(root: Path) -> None:
    folder = filled(root)
    highest = highestOf(folder)
    assert folder.expunge([2]) == [2]
    assert highestOf(folder) > highest
    assert vanished(folder, highest) == ([2], True)
    assert vanished(folder, highestOf(folder)) == ([], True)


def test_expunged_since_lists_exactly_the_uids_expunged_after_the_modseq(root: Path) -> None:
    folder = filled(root, 8)
    marks = [highestOf(folder)]
    for uids in ([2], [4, 5], [7]):
        folder.expunge(uids)
        folder.setFlags(1, {"\\Seen"} if len(marks) % 2 else ())
        marks.append(highestOf(folder))
    assert marks == sorted(set(marks))
    assert vanished(folder, marks[0]) == ([2, 4, 5, 7], True)
    assert vanished(folder, marks[1]) == ([4, 5, 7], True)
    assert vanished(folder, marks[2]) == ([7], True)
    assert vanished(folder, marks[3]) == ([], True)


def test_expunged_since_is_complete_from_the_start_of_the_log_only(root: Path) -> None:
    folder = inbox(root)
    start = highestOf(folder)
    assert start >= 1
    deliver(folder)
    deliver(folder)
    folder.messages()
    folder.expunge([1])
    assert min(modseqs(folder).values()) > start
    assert vanished(folder, start) == ([1], True)
    uids, complete = vanished(folder, start - 1)
    assert uids == [1]
    assert not complete
    assert vanished(folder, 0)[1] is False


# Restarts


def test_a_restart_keeps_modseqs_highestmodseq_and_expunges(root: Path, savedIndex: bool) -> None:
    folder = filled(root, 10)
    start = highestOf(folder)
    folder.setFlags(3, {"\\Flagged", "$Work"})
    middle = highestOf(folder)
    folder.setFlags(4, ())
    folder.expunge([5, 6])
    before = everything(folder, middle)
    assert before[2:] == ([5, 6], True)
    assert (root / "tmail-index").exists() == savedIndex

    restarted = inbox(root)
    assert everything(restarted, middle) == before
    assert vanished(restarted, start) == vanished(folder, start)
    assert vanished(restarted, start - 1) == vanished(folder, start - 1)
    assert flagsOf(restarted) == flagsOf(folder)
    assert everything(inbox(root), middle) == before


# Changes by other Maildir programs


def test_another_programs_flag_change_takes_a_new_modseq_while_open(root: Path) -> None:
    folder = filled(root)
    before, highest = modseqs(folder), highestOf(folder)
    rename(root, folder, 2, "FS")
    after = modseqs(folder)
    assert flagsOf(folder)[2] == {"\\Flagged", "\\Seen"}
    assert after[2] > highest
    assert highestOf(folder) >= after[2]
    assert {u: m for u, m in after.items() if u != 2} == {u: m for u, m in before.items() if u != 2}


def test_another_programs_deletion_is_an_expunge_while_open(root: Path) -> None:
    folder = filled(root)
    highest = highestOf(folder)
    remove(root, folder, 4)
    assert 4 not in modseqs(folder)
    assert highestOf(folder) > highest
    assert vanished(folder, highest) == ([4], True)


def test_another_programs_delivery_takes_a_new_modseq_while_open(root: Path) -> None:
    folder = filled(root)
    highest = highestOf(folder)
    drop(root, "1700000000.external.host")
    folder.refresh()
    [new] = [m for m in folder.messages() if m.key == "1700000000.external.host"]
    assert new.modseq > highest
    assert highestOf(folder) >= new.modseq


def test_changes_made_while_no_tmail_ran_take_new_modseqs(root: Path, savedIndex: bool) -> None:
    folder = filled(root)
    folder.expunge([1])
    before, highest = modseqs(folder), highestOf(folder)
    assert (root / "tmail-index").exists() == savedIndex
    rename(root, folder, 2, "D")
    remove(root, folder, 3)
    drop(root, "1700000000.external.host")
    del folder

    restarted = inbox(root)
    restarted.refresh()
    listed = {m.uid: m for m in restarted.messages()}
    assert listed[2].flags == {"\\Draft"}
    assert listed[2].modseq > highest
    assert 3 not in listed
    [new] = [m for m in listed.values() if m.key == "1700000000.external.host"]
    assert new.modseq > highest
    unchanged = {u: m.modseq for u, m in listed.items() if u in (4, 5, 6)}
    assert unchanged == {u: before[u] for u in (4, 5, 6)}
    assert highestOf(restarted) >= max(m.modseq for m in listed.values())
    assert vanished(restarted, highest) == ([3], True)


# Crash windows


@pytest.mark.parametrize("change", ["FS", None], ids=["flags", "expunge"])
def test_a_logged_change_that_never_happened_shows_the_same_flags_at_a_higher_modseq(
    root: Path, savedIndex: bool, change: str | None
) -> None:
    """A process died between logging a change and renaming (or removing) the file."""
    folder = filled(root)
    folder.expunge([6])
    flags, uidValidity = flagsOf(folder), folder.uidValidity()
    log = ModSeqLog(root / LOG)
    log.load(uidValidity)
    logged = log.append([(2, change)])
    log.close()
    assert logged > highestOf(folder)

    restarted = inbox(root)
    assert flagsOf(restarted) == flags
    assert modseqs(restarted)[2] > logged
    assert highestOf(restarted) >= modseqs(restarted)[2]
    assert vanished(restarted, logged - 1)[0] == []


def test_a_change_logged_by_a_process_that_died_leaves_an_open_folder_unchanged(
    root: Path,
) -> None:
    folder = filled(root)
    before = modseqs(folder)
    log = ModSeqLog(root / LOG)
    log.load(folder.uidValidity())
    logged = log.append([(2, "FS")])
    log.close()
    assert modseqs(folder) == before
    later = folder.setFlags(3, {"\\Answered"})
    assert later.modseq > logged


def test_a_half_written_last_line_is_cut_off(root: Path, savedIndex: bool) -> None:
    folder = filled(root)
    before = everything(folder, 0)
    fragment = b"%d 2 F" % (before[1] + 1)
    with open(root / LOG, "ab") as f:
        f.write(fragment)

    restarted = inbox(root)
    assert everything(restarted, 0) == before
    changed = restarted.setFlags(4, {"\\Answered"})
    assert changed.modseq > before[1]
    assert fragment not in (root / LOG).read_bytes()


def test_a_change_after_a_cut_off_line_keeps_its_modseq_across_a_restart(root: Path) -> None:
    folder = filled(root)
    with open(root / LOG, "ab") as f:
        f.write(b"%d 2 F" % (highestOf(folder) + 1))
    changed = inbox(root).setFlags(4, {"\\Answered"})
    assert modseqs(inbox(root))[4] == changed.modseq
    assert flagsOf(inbox(root))[2] == flagsOf(folder)[2]


def otherValidity(raw: bytes) -> bytes:
    header, _, rest = raw.partition(b"\n")
    fields = [b"V%d" % (int(f[1:]) + 1) if f.startswith(b"V") else f for f in header.split()]
    return b" ".join(fields) + b"\n" + rest


DAMAGES: dict[str, Callable[[bytes], bytes] | None] = {
    "garbage": lambda raw: b"\x00\xffnot a log\n" * 3,
    "empty": lambda raw: b"",
    "bad-line": lambda raw: raw + b"12 x y z\n",
    "other-uidvalidity": otherValidity,
    "missing": None,
}


def damage(path: Path, kind: str) -> None:
    change = DAMAGES[kind]
    if change is None:
        path.unlink()
    else:
        path.write_bytes(change(path.read_bytes()))


@pytest.mark.parametrize("kind", list(DAMAGES))
def test_a_lost_or_damaged_log_is_replaced_above_every_modseq_given(
    root: Path, savedIndex: bool, kind: str
) -> None:
    folder = filled(root)
    folder.expunge([1])
    folder.setFlags(2, {"\\Flagged"})
    flags, highest = flagsOf(folder), highestOf(folder)
    damage(root / LOG, kind)

    restarted = inbox(root)
    assert flagsOf(restarted) == flags
    assert highestOf(restarted) > highest
    assert min(modseqs(restarted).values()) > highest
    assert vanished(restarted, highest)[1] is False
    assert (root / LOG).read_bytes().startswith(b"tmail-modseq 1 V%d " % folder.uidValidity())
    assert restarted.setFlags(3, {"\\Draft"}).modseq > highest


@pytest.mark.parametrize("kind", list(DAMAGES))
def test_a_replaced_log_keeps_the_changes_made_after_it(root: Path, kind: str) -> None:
    folder = filled(root)
    damage(root / LOG, kind)
    restarted = inbox(root)
    changed = restarted.setFlags(3, {"\\Draft"})
    expunged = highestOf(restarted)
    restarted.expunge([4])
    again = inbox(root)
    assert modseqs(again)[3] == changed.modseq
    assert vanished(again, expunged) == ([4], True)
    assert flagsOf(again)[5] == flagsOf(folder)[5]


@pytest.mark.parametrize("how", ["emptied", "overwritten", "replaced"])
def test_a_log_damaged_while_open_is_replaced_and_keeps_logging(root: Path, how: str) -> None:
    folder = filled(root)
    highest = highestOf(folder)
    path = root / LOG
    if how == "emptied":
        with open(path, "r+b") as f:
            f.truncate(0)
    elif how == "overwritten":
        path.write_bytes(b"garbage\n")
    else:
        path.unlink()
        path.write_bytes(b"garbage\n")

    changed = folder.setFlags(2, {"\\Flagged"})
    assert changed.modseq > highest
    assert highestOf(folder) >= changed.modseq
    restarted = inbox(root)
    assert modseqs(restarted)[2] == changed.modseq
    assert highestOf(restarted) >= changed.modseq


# Several processes


WORKERS = 3
CHANGES = 200
MESSAGES = 12


def runFlagChangers(root: Path, slack: int) -> list[FlagReport]:
    """Run the flag changers, all starting at once once every process is up."""
    start = root.parent / "start"
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=WORKERS, mp_context=context) as pool:
        futures = [
            pool.submit(flagChanger, root, start, CHANGES, seed, slack) for seed in range(WORKERS)
        ]
        deadline = time.monotonic() + 30
        while not all(start.with_name(f"ready-{seed}").exists() for seed in range(WORKERS)):
            assert time.monotonic() < deadline, "the workers did not start"
            assert not any(future.done() for future in futures), futures[0].result()
            time.sleep(0.005)
        start.touch()
        return [future.result(timeout=60) for future in futures]


def parsedLog(root: Path) -> list[tuple[int, int, str | None]]:
    """(mod-sequence, UID, letters or None for an expunge) of each line, in file order."""
    result: list[tuple[int, int, str | None]] = []
    for line in logLines(root):
        value, uid, *rest = line.decode("ascii").split(" ")
        if uid.startswith("-"):
            result.append((int(value), int(uid[1:]), None))
        else:
            result.append((int(value), int(uid), rest[0] if rest else ""))
    return result


def reportedMaxima(reports: list[FlagReport]) -> dict[int, int]:
    """Per UID, the highest mod-sequence any process reported for it."""
    maxima: dict[int, int] = {}
    for report in reports:
        for uid, value, _ in report.changes:
            maxima[uid] = max(maxima.get(uid, 0), value)
    return maxima


def checkAfterConcurrentChanges(root: Path, reports: list[FlagReport]) -> MaildirFolder:
    """What every run must end with, compacted or not; returns a fresh INBOX."""
    spans = sorted((r.changes[0][1], r.changes[-1][1]) for r in reports)
    assert any(b[0] < a[1] for a, b in itertools.pairwise(spans)), "no two processes overlapped"
    for report in reports:
        assert report.errors == []
        assert len(report.changes) == CHANGES
        values = [value for _, value, _ in report.changes]
        assert values == sorted(values), "a process saw its mod-sequences go back"
    changes = [(value, uid) for report in reports for uid, value, _ in report.changes]
    byValue: dict[int, set[int]] = {}
    for value, uid in changes:
        byValue.setdefault(value, set()).add(uid)
    assert all(len(uids) == 1 for uids in byValue.values()), "two changes share a mod-sequence"

    fresh = inbox(root)
    listed = modseqs(fresh)
    highest = highestOf(fresh)
    assert highest >= max(report.highest for report in reports)
    assert highest >= max(value for value, _ in changes)
    for uid, value in reportedMaxima(reports).items():
        assert listed[uid] >= value, f"UID {uid} went back from {value} to {listed[uid]}"
    return fresh


def test_processes_changing_flags_at_once_never_share_or_lose_a_modseq(root: Path) -> None:
    filled(root, MESSAGES)
    reports = runFlagChangers(root, 1_000_000)
    assert sum(report.compactions for report in reports) == 0
    checkAfterConcurrentChanges(root, reports)
    lines = parsedLog(root)
    values = [value for value, _, _ in lines]
    assert values == sorted(values), "the log's mod-sequences go back"
    states = {(value, uid, letters) for value, uid, letters in lines}
    assert len(states) == len(lines), "a line was written twice"
    perValue: dict[int, set[int]] = {}
    for value, uid, _ in lines:
        assert uid not in perValue.setdefault(value, set()), "one UID twice at one modseq"
        perValue[value].add(uid)
    for report in reports:
        for uid, value, letters in report.changes:
            assert (value, uid, letters) in states, "a reported change is not in the log"


def test_processes_compacting_the_log_at_once_never_lose_a_modseq(root: Path) -> None:
    filled(root, MESSAGES)
    reports = runFlagChangers(root, 0)
    assert sum(report.compactions for report in reports) > 0, "no process compacted the log"
    checkAfterConcurrentChanges(root, reports)


# Compaction


def test_many_flag_changes_compact_the_log_and_a_restart_keeps_everything(
    root: Path, savedIndex: bool
) -> None:
    folder = filled(root, 20)
    start = highestOf(folder)
    folder.expunge([3, 4])
    path = root / LOG
    sizes = [path.stat().st_size]
    for n in range(1_100):
        folder.setFlags(5 + n % 10, {"\\Seen"} if n // 10 % 2 else {"\\Flagged"})
        sizes.append(path.stat().st_size)
    assert any(b < a for a, b in itertools.pairwise(sizes)), "the log was never compacted"
    assert sizes[-1] < max(sizes)
    folder.expunge([20])
    before = everything(folder, start)
    assert before[2:] == ([3, 4, 20], True)

    restarted = inbox(root)
    assert everything(restarted, start) == before
    assert flagsOf(restarted) == flagsOf(folder)


def test_only_the_latest_expunges_are_kept_and_older_ones_raise_the_floor(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(modseq, "KEEP_EXPUNGED", 4)
    monkeypatch.setattr(modseq, "_SLACK", 0)
    folder = filled(root, 14)
    marks = [highestOf(folder)]
    for uid in range(1, 11):
        folder.expunge([uid])
        marks.append(highestOf(folder))
    for n in range(30):
        folder.setFlags(11 + n % 4, {"\\Seen"} if n // 4 % 2 else ())
    kept = [line for line in logLines(root) if b" -" in line]
    assert 0 < len(kept) <= 4

    for check in (folder, inbox(root)):
        found = [vanished(check, mark) for mark in marks]
        complete = [done for _, done in found]
        assert complete[0] is False
        assert complete[-1] is True
        assert complete == sorted(complete), "complete again below an incomplete mod-sequence"
        for number, (uids, done) in enumerate(found):
            expectedSince = list(range(number + 1, 11))
            if done:
                assert uids == expectedSince
            else:
                assert set(uids) <= set(expectedSince)


def test_compaction_by_a_process_with_an_old_view_does_not_take_a_modseq_back(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    One process compacts the log, again and again, without having looked at
    the folder since another changed a message twice: that message must not
    go back to its older mod-sequence, or a client that saw the first change
    would miss the second one.
    """
    monkeypatch.setattr(modseq, "_SLACK", 0)
    stale = filled(root, 3)
    other = inbox(root)
    other.refresh()
    other.messages()
    flagged = other.setFlags(3, {"\\Flagged"}).modseq
    seen = other.setFlags(2, ()).modseq
    last = other.setFlags(2, {"\\Seen"}).modseq
    assert last > seen
    sizes = [(root / LOG).stat().st_size]
    for n in range(10):
        stale.setFlags(1, {"\\Flagged"} if n % 2 else ())
        sizes.append((root / LOG).stat().st_size)
    compactions = sum(b < a for a, b in itertools.pairwise(sizes))
    assert compactions >= 2, "the log was not compacted twice"

    fresh = inbox(root)
    assert modseqs(fresh)[2] >= last
    assert modseqs(fresh)[3] >= flagged
    assert flagsOf(fresh) == flagsOf(other)


def test_a_change_waiting_while_others_compact_the_log_again_and_again_is_logged(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    Another process compacts the log, replacing the file, each time this one
    is about to take its lock: the change still gets a mod-sequence of its
    own in the log.
    """
    monkeypatch.setattr(modseq, "_SLACK", -10_000)
    folder = filled(root)
    other = inbox(root)
    other.messages()
    realFlock = fcntl.flock
    others: list[int] = []
    inside: list[bool] = []

    def othersCompactFirst(fd: int, operation: int) -> None:
        if operation == fcntl.LOCK_EX and not inside and len(others) < 8:
            inside.append(True)
            others.append(other.setFlags(1, () if len(others) % 2 else {"\\Seen"}).modseq)
            inside.clear()
        realFlock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", othersCompactFirst)
    changed = folder.setFlags(2, {"\\Flagged"})
    monkeypatch.setattr(fcntl, "flock", realFlock)
    assert len(others) == 8
    assert changed.modseq > max(others)
    fresh = modseqs(inbox(root))
    assert fresh[2] == changed.modseq
    assert fresh[1] == others[-1]


def test_a_restart_over_a_saved_index_keeps_the_modseq_of_a_flag_change_made_after_the_save(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(indexsaving, "_SAVED_INDEX_MIN", 1)
    root = tmp_path / "Maildir"
    folder = filled(root, 3)
    assert (root / "tmail-index").exists()
    changed = folder.setFlags(1, {"\\Seen"})
    folder.refresh()
    folder.messages()
    folder.refresh()
    highest = folder.highestModSeq()
    restarted = inbox(root)
    restarted.refresh()
    assert {m.uid: m.modseq for m in restarted.messages()}[1] == changed.modseq
    restarted.refresh()
    assert restarted.highestModSeq() == highest


def test_a_flag_change_that_races_another_process_reports_the_latest_modseq(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "Maildir"
    folder = filled(root, 1)
    other = inbox(root)
    other.messages()
    real = os.rename
    reported: list[int] = []

    def otherProcessFirst(source: Any, target: Any, *args: Any, **kwargs: Any) -> None:
        if not reported and str(target).endswith(":2,F"):
            reported.append(0)
            reported[0] = other.setFlags(1, {"\\Flagged"}).modseq
        real(source, target, *args, **kwargs)

    monkeypatch.setattr(os, "rename", otherProcessFirst)
    info = folder.setFlags(1, {"\\Flagged"})
    monkeypatch.undo()
    assert info.modseq >= reported[0]
    fresh = {m.uid: m.modseq for m in inbox(root).messages()}
    assert info.modseq == fresh[1]


def test_a_log_that_lost_its_last_lines_never_goes_below_a_modseq_given(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    folder = filled(root, 3)
    folder.setFlags(1, {"\\Seen"})
    folder.setFlags(2, {"\\Seen"})
    folder.messages()
    highest = folder.highestModSeq()
    path = root / "tmail-modseq"
    path.write_bytes(path.read_bytes().partition(b"\n")[0] + b"\n")
    restarted = inbox(root)
    restarted.messages()
    assert restarted.highestModSeq() >= highest
    assert restarted.setFlags(3, {"\\Flagged"}).modseq > highest


def logTakesNothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """The log takes no line, as on a full disk; the rest of the Maildir still works."""

    def full(fd: int, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(modseq, "writeAll", full)


def test_a_flag_change_or_expunge_the_log_cannot_take_is_made_and_logged_once_it_can(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    Deleting must work on a full disk: the change is made, its mod-sequence
    given in memory (sessions and QRESYNC see it at once), and its line
    written with that mod-sequence once the log takes it.
    """
    monkeypatch.setattr(uidnumbering, "_RETRY_UNWRITTEN", 0.0)
    folder = filled(root, 3)
    start = highestOf(folder)
    before = logLines(root)
    with monkeypatch.context() as full:
        logTakesNothing(full)
        flagged = folder.setFlags(1, {"\\Deleted"})
        assert flagged.flags == {"\\Deleted"}
        assert flagged.modseq > start
        assert folder.expunge([1]) == [1]
        folder.refresh()
        assert [m.uid for m in folder.messages()] == [2, 3]
        assert vanished(folder, start) == ([1], True)
        highest = highestOf(folder)
        assert highest > flagged.modseq
        assert logLines(root) == before
    folder.refresh()
    folder.messages()
    assert logLines(root)[len(before) :] == [b"%d -1" % highest]
    assert everything(inbox(root), start) == everything(folder, start)


def test_lines_kept_in_memory_go_above_what_another_process_logged_meanwhile(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The log stays in order and never gives one mod-sequence to two changes."""
    monkeypatch.setattr(uidnumbering, "_RETRY_UNWRITTEN", 0.0)
    folder = filled(root, 3)
    with monkeypatch.context() as full:
        logTakesNothing(full)
        kept = folder.setFlags(1, {"\\Flagged"}).modseq
    other = inbox(root)
    other.setFlags(2, {"\\Answered"})
    logged = highestOf(other)
    assert logged > kept
    folder.refresh()
    folder.messages()
    values = [int(line.split(b" ")[0]) for line in logLines(root)]
    assert values == sorted(values)
    assert kept not in values
    written = [int(line.split(b" ")[0]) for line in logLines(root) if line.endswith(b" 1 F")]
    assert written[-1] > logged
    assert flagsOf(inbox(root)) == flagsOf(folder) == flagsOf(other)


def test_a_restart_reports_no_lower_highestmodseq_than_one_given_from_memory(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    Flags changed and changed back while the log took nothing leave nothing
    for a restarted process to find; the header it reads still covers the
    mod-sequences given.
    """
    folder = filled(root, 3)
    flags = flagsOf(folder)
    with monkeypatch.context() as full:
        logTakesNothing(full)
        folder.setFlags(1, {"\\Flagged"})
        folder.setFlags(1, flags[1])
        highest = highestOf(folder)
        restarted = inbox(root)
        assert flagsOf(restarted) == flags
        assert highestOf(restarted) >= highest
    assert highestOf(inbox(root)) >= highest


# Open files


def openLogFiles() -> int:
    """How many C{tmail-modseq} files this process has open."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            count += os.readlink(f"/proc/self/fd/{fd}").endswith("/" + LOG)
    return count


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc to count open files")
def test_many_folders_in_use_keep_a_bounded_number_of_log_files_open(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(modseq, "MAX_OPEN_LOGS", 8)
    store = BlockingMaildirStore(root)
    before = openLogFiles()
    folders = []
    for n in range(40):
        store.createFolder(f"F{n}")
        folder = store.getFolder(f"F{n}")
        deliver(folder)
        folder.messages()
        folders.append(folder)
    assert openLogFiles() - before <= 8
    assert all(folder.highestModSeq() > 0 for folder in folders)


def test_a_log_closed_for_others_still_sees_what_another_process_did(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(modseq, "MAX_OPEN_LOGS", 1)
    folder = filled(root)
    before, highest = modseqs(folder), highestOf(folder)
    other = BlockingMaildirStore(root / ".Other")
    otherInbox = other.getFolder("INBOX")
    deliver(otherInbox)
    [otherUid] = modseqs(otherInbox)
    otherInbox.setFlags(otherUid, {"\\Seen"})
    rename(root, folder, 2, "FS")
    after = modseqs(folder)
    assert flagsOf(folder)[2] == {"\\Flagged", "\\Seen"}
    assert after[2] > highest
    assert {u: m for u, m in after.items() if u != 2} == {u: m for u, m in before.items() if u != 2}
    otherInbox.setFlags(otherUid, set())
    changed = folder.setFlags(4, {"\\Answered"})
    assert changed.modseq > after[2]
    assert modseqs(inbox(root)) == modseqs(folder)


def test_the_log_keeps_no_copy_of_the_lines_its_own_process_wrote(root: Path) -> None:
    """
    Indexing a folder logs a line per message; the log's memory does not
    grow with them (the folder's index already has each state), before or
    after a compaction.  (Python keeps up to 2,000 freed tuples of each
    size for reuse: what they hold is well below the bound.)
    """
    count = 5000
    (root / "cur").mkdir(parents=True)
    for n in range(count):
        (root / "cur" / f"{n}.M1P1.host:2,S").write_bytes(b"Subject: x\r\n\r\nx\r\n")
    tracemalloc.start()
    try:
        folder = inbox(root)
        before = tracemalloc.take_snapshot()
        assert len(folder.messages()) == count
        folder._log.compact((m.uid, m.modseq, "S") for m in folder.messages())
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    kept = sum(
        stat.size_diff
        for stat in after.compare_to(before, "filename")
        if stat.traceback[0].filename == modseq.__file__
    )
    assert kept < count * 60
