"""
A Maildir on a full disk (a small tmpfs the test fills).  Listing, indexing
and opening messages need no space: UIDs that cannot be written to
C{dovecot-uidlist}, a UIDVALIDITY that cannot be recorded and a
mod-sequence log that cannot be started are kept in memory, and written,
unchanged, once space returns.  Deleting frees space, so it works too:
C{\\Deleted} is a rename and an expunge unlinks the files, whatever the
mod-sequence log can take; what it cannot is kept in memory, written once
space returns, and found again on disk by a process started before that.
Writes that need space (deliveries, new keywords) are still refused.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.disk import fill, smallDisk
from tmail.errors import StoreFull
from tmail.store import modseq, uidlist
from tmail.store.maildir import BlockingMaildirStore, MaildirFolder, uidnumbering
from tmail.store.quota import QuotaLimits, scanUsage


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    with smallDisk(tmp_path / "mail", "1m") as mountPoint:
        yield mountPoint


@pytest.fixture(autouse=True)
def _retryAtOnce(monkeypatch: pytest.MonkeyPatch) -> None:
    """Try the deferred writes at every look rather than once a second."""
    monkeypatch.setattr(uidnumbering, "_RETRY_UNWRITTEN", 0.0)


def deliver(folder: MaildirFolder, subject: str) -> int:
    pending = folder.beginMessage()
    pending.write(f"Subject: {subject}\r\n\r\n{subject}\r\n".encode())
    return pending.commit()


def dropInNew(root: Path, count: int) -> list[str]:
    """Messages another delivery agent put straight into C{new/}, as Postfix's virtual does."""
    bases = []
    for n in range(count):
        base = f"{1_700_000_000 + n}.M{n}P4242.another-delivery-agent.example.test"
        (root / "new" / base).write_bytes(b"Subject: dropped %d\r\n\r\nbody\r\n" % n)
        bases.append(base)
    return bases


def onDisk(root: Path) -> dict[str, int]:
    """Base name -> UID as the uidlist file says."""
    return uidlist.parse((root / uidlist.FILENAME).read_text()).uids


def uids(folder: MaildirFolder) -> dict[str, int]:
    folder.refresh()
    return {info.key: info.uid for info in folder.messages()}


def test_messages_found_on_a_full_disk_keep_their_uids_until_written(disk: Path) -> None:
    root = disk / "alice"
    inbox = BlockingMaildirStore(root).getFolder("INBOX")
    delivered = [deliver(inbox, f"delivered {n}") for n in range(3)]
    inbox.refresh()
    assert [info.uid for info in inbox.messages()] == delivered == [1, 2, 3]
    dropped = dropInNew(root, 150)
    filler = fill(disk)

    seen = uids(inbox)
    assert sorted(seen.values()) == list(range(1, 154))
    assert [seen[base] for base in dropped] == list(range(4, 154))
    inbox.refresh()
    assert inbox.uidNext() == 154
    for uid in seen.values():
        with inbox.openMessage(uid) as f:
            assert f.read().startswith(b"Subject: ")
    assert len(onDisk(root)) == 3, "the uidlist had room for the new lines: the test proves nothing"

    with pytest.raises(StoreFull):
        deliver(inbox, "refused")
    assert uids(inbox) == seen
    inbox.refresh()
    assert inbox.uidNext() == 154

    filler.unlink()
    assert uids(inbox) == seen
    assert onDisk(root) == seen
    assert uids(BlockingMaildirStore(root).getFolder("INBOX")) == seen
    assert deliver(inbox, "after") == 154


def test_a_folder_without_a_uidlist_is_read_on_a_full_disk_and_keeps_its_uidvalidity(
    disk: Path,
) -> None:
    root = disk / "bob"
    for sub in ("cur", "new", "tmp"):
        (root / sub).mkdir(parents=True)
    dropped = dropInNew(root, 20)
    filler = fill(disk)

    inbox = BlockingMaildirStore(root).getFolder("INBOX")
    uidValidity = inbox.uidValidity()
    seen = uids(inbox)
    assert [seen[base] for base in dropped] == list(range(1, 21))
    inbox.refresh()
    assert inbox.highestModSeq() > 0
    assert not (root / uidlist.FILENAME).exists()

    filler.unlink()
    assert uids(inbox) == seen
    assert inbox.uidValidity() == uidValidity
    reopened = BlockingMaildirStore(root).getFolder("INBOX")
    assert reopened.uidValidity() == uidValidity
    assert uids(reopened) == seen
    assert onDisk(root) == seen


def test_an_unreadable_uidlist_is_replaced_in_memory_once_on_a_full_disk(disk: Path) -> None:
    root = disk / "dave"
    for sub in ("cur", "new", "tmp"):
        (root / sub).mkdir(parents=True)
    (root / uidlist.FILENAME).write_text("garbage\n")
    dropInNew(root, 20)
    filler = fill(disk)

    inbox = BlockingMaildirStore(root).getFolder("INBOX")
    uidValidity = inbox.uidValidity()
    seen = uids(inbox)
    assert sorted(seen.values()) == list(range(1, 21))
    assert inbox.uidValidity() == uidValidity
    assert uids(inbox) == seen

    filler.unlink()
    assert uids(inbox) == seen
    assert onDisk(root) == seen
    assert BlockingMaildirStore(root).getFolder("INBOX").uidValidity() == uidValidity


def test_a_new_keyword_is_still_refused_on_a_full_disk(disk: Path) -> None:
    root = disk / "carol"
    inbox = BlockingMaildirStore(root).getFolder("INBOX")
    for n in range(3):
        deliver(inbox, f"delivered {n}")
    dropInNew(root, 150)
    filler = fill(disk)
    seen = uids(inbox)
    with pytest.raises(StoreFull):
        for uid in sorted(seen.values()):
            inbox.setFlags(uid, {"\\Seen", "$Important"})
    filler.unlink()
    assert uids(inbox) == seen


def test_uids_kept_in_memory_give_way_to_those_another_process_wrote(tmp_path: Path) -> None:
    path = tmp_path / uidlist.FILENAME
    path.write_text("3 V5 N3 Gabc\n1 :a\n2 :b\n")
    mine = uidlist.UidListFile(path)
    mine.refresh()
    data = mine.data
    assert data is not None
    data.uids.update({"c": 3, "d": 4, "e": 5})
    data.nextUid = 6
    mine.keep(data, [("c", 3), ("d", 4), ("e", 5)], whole=False)
    assert mine.unwritten

    with path.open("a") as other:
        other.write("3 :x\n4 :d\n")
    mine.refresh()
    assert mine.data is not None
    assert mine.data.uids == {"a": 1, "b": 2, "x": 3, "d": 4, "e": 5}
    assert mine.unwritten
    with mine.lock() as lock:
        mine.append(lock, mine.data, [("f", 6)])
    assert not mine.unwritten
    assert uidlist.parse(path.read_text()).uids == {
        "a": 1,
        "b": 2,
        "x": 3,
        "d": 4,
        "e": 5,
        "f": 6,
    }


def test_a_uidlist_kept_whole_in_memory_gives_way_to_one_another_process_created(
    tmp_path: Path,
) -> None:
    path = tmp_path / uidlist.FILENAME
    mine = uidlist.UidListFile(path)
    mine.refresh()
    assert mine.data is None
    fresh = uidlist.UidListData(7, 3, "abc", {"a": 1, "b": 2})
    mine.keep(fresh, [], whole=True)
    assert mine.mustRewrite
    assert not mine.refresh()
    assert mine.data is fresh

    path.write_text("3 V8 N2 Gdef\n1 :z\n")
    assert mine.refresh()
    assert mine.data is not None
    assert (mine.data.uidValidity, mine.data.uids) == (8, {"z": 1})
    assert not mine.unwritten


# Deleting on a full disk


def bigMessage(folder: MaildirFolder, subject: str) -> int:
    """A message of about 12 KiB: unlinking it frees blocks a test can see."""
    pending = folder.beginMessage()
    pending.write(f"Subject: {subject}\r\n\r\n".encode())
    pending.write((b"x" * 78 + b"\r\n") * 150)
    return pending.commit()


def freeBytes(disk: Path) -> int:
    status = os.statvfs(disk)
    return status.f_bavail * status.f_frsize


def logged(root: Path) -> list[bytes]:
    """The lines of INBOX's mod-sequence log file after its header."""
    return (root / modseq.FILENAME).read_bytes().split(b"\n")[1:-1]


def exhaustLog(folder: MaildirFolder, root: Path, uid: int = 1) -> None:
    """
    Toggle C{\\Flagged} on C{uid} until the mod-sequence log no longer grows
    (its last block is full: a tmpfs still takes lines into a block a file
    has), then once more, so that the message ends as the log last
    recorded it.
    """
    info = folder.info(uid)
    assert info is not None
    flagged = "\\Flagged" in info.flags
    for _ in range(1000):
        size = (root / modseq.FILENAME).stat().st_size
        flagged = not flagged
        folder.setFlags(uid, {"\\Flagged"} if flagged else set())
        if (root / modseq.FILENAME).stat().st_size == size:
            folder.setFlags(uid, set() if flagged else {"\\Flagged"})
            return
    raise AssertionError("the mod-sequence log kept growing on a full disk")


def test_deleting_on_a_full_disk_frees_space_and_logs_the_expunges(disk: Path) -> None:
    root = disk / "erin"
    store = BlockingMaildirStore(root, quota=lambda: QuotaLimits(storage=1 << 30))
    inbox = store.getFolder("INBOX")
    for n in range(8):
        bigMessage(inbox, f"big {n}")
    inbox.refresh()
    inbox.messages()
    inbox.refresh()
    start = inbox.highestModSeq()
    assert store.quota() is not None
    filler = fill(disk)
    exhaustLog(inbox, root)
    before = freeBytes(disk)

    for uid in (2, 3, 4):
        assert inbox.setFlags(uid, {"\\Deleted"}).flags == {"\\Deleted"}
    assert inbox.expunge([2, 3, 4]) == [2, 3, 4]

    assert freeBytes(disk) >= before + 2 * 12_000
    assert sorted(uids(inbox).values()) == [1, 5, 6, 7, 8]
    assert len(os.listdir(root / "cur")) == 5
    # The space the files freed took the log lines at once.
    assert {line.rpartition(b" ")[2] for line in logged(root)} >= {b"-2", b"-3", b"-4"}
    other = BlockingMaildirStore(root).getFolder("INBOX")
    assert sorted(uids(other).values()) == [1, 5, 6, 7, 8]
    other.refresh()
    assert other.expungedSince(start) == ([2, 3, 4], True)
    assert bigMessage(inbox, "after") == 9
    filler.unlink()
    assert store.quota() == store.recalculateQuota()
    assert store.quota().storage == scanUsage(root)[0]  # type: ignore[union-attr]


def keptLinks(disk: Path, root: Path) -> None:
    """Link every message file of INBOX outside the Maildir: unlinking one then frees nothing."""
    keep = disk / "kept"
    keep.mkdir(exist_ok=True)
    for sub in ("cur", "new"):
        for name in os.listdir(root / sub):
            os.link(root / sub / name, keep / name.partition(":")[0])


def test_expunges_the_full_log_cannot_take_are_kept_and_written_once_space_returns(
    disk: Path,
) -> None:
    root = disk / "frank"
    inbox = BlockingMaildirStore(root).getFolder("INBOX")
    for n in range(6):
        deliver(inbox, f"delivered {n}")
    inbox.refresh()
    inbox.messages()
    inbox.refresh()
    start = inbox.highestModSeq()
    keptLinks(disk, root)
    filler = fill(disk)
    exhaustLog(inbox, root)
    before = logged(root)

    for uid in (2, 3, 4):
        inbox.setFlags(uid, {"\\Deleted"})
    assert inbox.expunge([2, 3, 4]) == [2, 3, 4]
    assert logged(root) == before, "the log had room: the test proves nothing"
    assert sorted(uids(inbox).values()) == [1, 5, 6]
    inbox.refresh()
    assert inbox.expungedSince(start) == ([2, 3, 4], True)
    inbox.refresh()
    highest = inbox.highestModSeq()
    other = BlockingMaildirStore(root).getFolder("INBOX")
    assert sorted(uids(other).values()) == [1, 5, 6]
    other.refresh()
    assert other.expungedSince(start) == ([2, 3, 4], True)
    other.refresh()
    assert other.highestModSeq() >= highest

    filler.unlink()
    inbox.refresh()
    flags = {info.uid: info.flags for info in inbox.messages()}
    assert {line.rpartition(b" ")[2] for line in logged(root)} >= {b"-2", b"-3", b"-4"}
    restarted = BlockingMaildirStore(root).getFolder("INBOX")
    restarted.refresh()
    assert {info.uid: info.flags for info in restarted.messages()} == flags
    restarted.refresh()
    assert restarted.expungedSince(start) == ([2, 3, 4], True)
    restarted.refresh()
    assert restarted.highestModSeq() >= highest


def test_a_restart_that_lost_the_kept_lines_finds_the_expunges_on_disk(disk: Path) -> None:
    root = disk / "grace"
    inbox = BlockingMaildirStore(root).getFolder("INBOX")
    for n in range(6):
        deliver(inbox, f"delivered {n}")
    inbox.messages()
    start = inbox.highestModSeq()
    keptLinks(disk, root)
    filler = fill(disk)
    exhaustLog(inbox, root)
    inbox.setFlags(5, {"\\Seen"})
    for uid in (2, 3):
        inbox.setFlags(uid, {"\\Deleted"})
    assert inbox.expunge([2, 3]) == [2, 3]
    flags = {info.uid: info.flags for info in inbox.messages()}
    highest = inbox.highestModSeq()
    fivesModSeq = inbox.info(5).modseq  # type: ignore[union-attr]
    del inbox

    restarted = BlockingMaildirStore(root).getFolder("INBOX")
    assert {info.uid: info.flags for info in restarted.messages()} == flags
    assert restarted.expungedSince(start) == ([2, 3], True)
    assert restarted.highestModSeq() >= highest
    assert restarted.info(5).modseq >= fivesModSeq  # type: ignore[union-attr]

    filler.unlink()
    assert {info.uid: info.flags for info in restarted.messages()} == flags
    again = BlockingMaildirStore(root).getFolder("INBOX")
    assert {info.uid: info.flags for info in again.messages()} == flags
    assert again.expungedSince(start) == ([2, 3], True)
    assert again.highestModSeq() >= highest
    assert again.uidValidity() == restarted.uidValidity()


def test_a_message_numbered_and_expunged_while_the_log_was_full_is_expunged_after_a_restart(
    disk: Path,
) -> None:
    """
    The log never had a line for it, only the uidlist: a restart that lost
    the kept lines takes the missing file for an expunge all the same.
    """
    root = disk / "heidi"
    inbox = BlockingMaildirStore(root).getFolder("INBOX")
    for n in range(3):
        deliver(inbox, f"delivered {n}")
    inbox.refresh()
    inbox.messages()
    inbox.refresh()
    start = inbox.highestModSeq()
    [dropped] = dropInNew(root, 1)
    keptLinks(disk, root)
    filler = fill(disk)
    exhaustLog(inbox, root)
    assert uids(inbox)[dropped] == 4
    assert onDisk(root)[dropped] == 4, "the uidlist had no room: another test's case"
    assert not any(line.split(b" ")[1] == b"4" for line in logged(root))
    inbox.setFlags(4, {"\\Deleted"})
    assert inbox.expunge([4]) == [4]
    inbox.refresh()
    assert inbox.expungedSince(start) == ([4], True)
    del inbox

    restarted = BlockingMaildirStore(root).getFolder("INBOX")
    assert sorted(uids(restarted).values()) == [1, 2, 3]
    restarted.refresh()
    assert restarted.expungedSince(start) == ([4], True)
    filler.unlink()
    restarted.refresh()
    restarted.messages()
    assert logged(root)[-1].endswith(b" -4")
    again = BlockingMaildirStore(root).getFolder("INBOX")
    assert sorted(uids(again).values()) == [1, 2, 3]
    again.refresh()
    assert again.expungedSince(start) == ([4], True)


def test_flags_changed_and_back_on_a_full_disk_leave_no_lower_highestmodseq_after_a_restart(
    disk: Path,
) -> None:
    """Nothing on disk tells a restart of those changes but the log's header, raised in place."""
    root = disk / "ivan"
    inbox = BlockingMaildirStore(root).getFolder("INBOX")
    deliver(inbox, "delivered")
    inbox.messages()
    fill(disk)
    exhaustLog(inbox, root)
    flags = {info.uid: info.flags for info in inbox.messages()}
    highest = inbox.highestModSeq()
    restarted = BlockingMaildirStore(root).getFolder("INBOX")
    assert {info.uid: info.flags for info in restarted.messages()} == flags
    assert restarted.highestModSeq() >= highest
