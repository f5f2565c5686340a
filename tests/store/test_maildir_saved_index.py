"""
The saved index (C{tmail-index}): a restarted process starts from it instead
of stat'ing every message, and it is only ever a cache.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import ensureDeferred

from tmail.store.blocking import resultOf, unwrap
from tmail.store.maildir import BlockingMaildirStore, MaildirFolder, indexsaving, savedindex
from tmail.store.packednames import PackedNames

COUNT = 40


@pytest.fixture(autouse=True)
def _smallFoldersAreSaved(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(indexsaving, "_SAVED_INDEX_MIN", 10)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "Maildir"


def deliver(folder: MaildirFolder, n: int, flags: tuple[str, ...] = ()) -> int:
    pending = folder.beginMessage(flags)
    pending.write(b"Subject: %d\r\n\r\nbody %d\r\n" % (n, n))
    return pending.commit()


def view(folder: MaildirFolder) -> list[tuple[int, frozenset[str], int, float, str]]:
    folder.refresh()
    return [(m.uid, m.flags, m.size, m.internaldate, m.key) for m in folder.messages()]


def filled(root: Path) -> MaildirFolder:
    inbox = BlockingMaildirStore(root).getFolder("INBOX")
    for n in range(COUNT):
        deliver(inbox, n, ("\\Seen", "$Work") if n % 3 else ())
    inbox.refresh()
    inbox.messages()
    return inbox


class StatCounter:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        real = os.stat

        def counting(*args: Any, **kwargs: Any) -> os.stat_result:
            self.calls += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(os, "stat", counting)


def test_a_restarted_process_lists_the_same_messages_without_a_stat_per_message(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = view(filled(root))
    assert (root / "tmail-index").exists()
    stats = StatCounter(monkeypatch)
    assert view(BlockingMaildirStore(root).getFolder("INBOX")) == before
    assert stats.calls < COUNT // 2


def test_changes_made_while_no_process_ran_are_found_over_a_saved_index(root: Path) -> None:
    inbox = filled(root)
    uids = [m.uid for m in inbox.messages()]
    other = BlockingMaildirStore(root).getFolder("INBOX")
    other.messages()
    other.expunge(uids[:2])
    other.setFlags(uids[5], {"\\Flagged"})
    newUid = deliver(other, 99)
    keys = {m.uid: m.key for m in inbox.messages()}
    # An external agent: a flag rename and a delivery straight into new/.
    cur = root / "cur"
    name = next(n for n in os.listdir(cur) if n.startswith(keys[uids[7]] + ":"))
    os.rename(cur / name, cur / (keys[uids[7]] + ":2,D"))
    (root / "tmp" / "external.1").write_bytes(b"Subject: dropped\r\n\r\nx\r\n")
    os.rename(root / "tmp" / "external.1", root / "new" / "external.1")

    reopened = BlockingMaildirStore(root).getFolder("INBOX")
    listed = {m.uid: m for m in reopened.messages()}
    assert uids[0] not in listed and uids[1] not in listed
    assert listed[uids[5]].flags == {"\\Flagged"}
    assert listed[uids[7]].flags == {"\\Draft"}
    assert newUid in listed
    assert max(listed) == newUid + 1
    assert listed[newUid + 1].key == "external.1"
    with reopened.openMessage(newUid + 1) as f:
        assert f.read() == b"Subject: dropped\r\n\r\nx\r\n"


@pytest.mark.parametrize(
    "damage",
    [
        lambda raw: b"garbage",
        lambda raw: raw[: len(raw) // 2],
        lambda raw: raw[:14] + b"\x00" * (len(raw) - 14),
        lambda raw: b"",
    ],
    ids=["garbage", "truncated", "zeroed", "empty"],
)
def test_a_damaged_saved_index_is_ignored(root: Path, damage: Any) -> None:
    before = view(filled(root))
    path = root / "tmail-index"
    path.write_bytes(damage(path.read_bytes()))
    assert view(BlockingMaildirStore(root).getFolder("INBOX")) == before


def test_a_saved_index_of_another_uidvalidity_is_ignored(root: Path) -> None:
    filled(root)
    (root / "dovecot-uidlist").unlink()
    reopened = BlockingMaildirStore(root).getFolder("INBOX")
    listed = reopened.messages()
    assert [m.uid for m in listed] == list(range(1, COUNT + 1))
    for message in listed:
        with reopened.openMessage(message.uid) as f:
            assert f.read().startswith(b"Subject: ")


def test_small_folders_leave_no_saved_index(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(indexsaving, "_SAVED_INDEX_MIN", 1000)
    filled(root)
    assert not (root / "tmail-index").exists()


def settle(root: Path) -> None:
    """Date C{cur/} and C{new/} back, as in a folder nothing changed in for a while."""
    for sub in ("cur", "new"):
        os.utime(root / sub, ns=(1_600_000_000_000_000_000,) * 2)


def saveIndex(folder: MaildirFolder) -> None:
    """Save the folder's index now, as it does itself once enough changed."""
    resultOf(ensureDeferred(unwrap(folder)._saveIndex()))


class ListCounter:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.listed: list[str] = []
        real = os.listdir

        def counting(path: Any = ".") -> list[str]:
            self.listed.append(os.path.basename(str(path)))
            return real(path)

        monkeypatch.setattr(os, "listdir", counting)


def test_a_folder_unchanged_since_its_index_was_saved_is_not_listed(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox = BlockingMaildirStore(root).getFolder("INBOX")
    for n in range(COUNT):
        deliver(inbox, n, ("\\Seen",) if n % 3 else ())
    inbox.refresh()
    inbox.messages()
    settle(root)
    before = view(inbox)
    saveIndex(inbox)
    counter = ListCounter(monkeypatch)
    assert view(BlockingMaildirStore(root).getFolder("INBOX")) == before
    assert "cur" not in counter.listed and "new" not in counter.listed


def test_a_folder_changed_in_the_same_second_its_index_was_saved_is_listed_again(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An index saved while the directories could still change unseen is checked by a listing."""
    before = view(filled(root))
    counter = ListCounter(monkeypatch)
    assert view(BlockingMaildirStore(root).getFolder("INBOX")) == before
    assert "cur" in counter.listed


def test_a_saved_index_changed_where_it_would_still_parse_is_ignored(root: Path) -> None:
    """A flipped bit in a column (a size, a date) is caught by the checksum, not served."""
    inbox = BlockingMaildirStore(root).getFolder("INBOX")
    for n in range(COUNT):
        deliver(inbox, n)
    inbox.refresh()
    inbox.messages()
    settle(root)
    before = view(inbox)
    saveIndex(inbox)
    path = root / "tmail-index"
    raw = bytearray(path.read_bytes())
    sizes = raw.index(b"\n") + 1 + 8 * COUNT
    raw[sizes] ^= 0x40
    path.write_bytes(bytes(raw))
    assert view(BlockingMaildirStore(root).getFolder("INBOX")) == before


def test_a_saved_index_is_written_whole_or_not_at_all(root: Path) -> None:
    """A process killed while it saves the index leaves the previous one, never a torn one."""
    inbox = filled(root)
    before = view(inbox)
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from twisted.internet.defer import ensureDeferred\n"
        "from tmail.store.blocking import resultOf\n"
        "from tmail.store.maildir import MaildirStore\n"
        "folder = MaildirStore(Path(sys.argv[1])).getFolder('INBOX')\n"
        "print('ready', flush=True)\n"
        "while True:\n"
        "    resultOf(ensureDeferred(folder._saveIndex()))\n"
    )
    for delay in (0.0, 0.01, 0.03, 0.05, 0.1):
        process = subprocess.Popen(
            [sys.executable, "-c", script, str(root)], stdout=subprocess.PIPE
        )
        assert process.stdout is not None
        assert process.stdout.readline() == b"ready\n"
        time.sleep(delay)
        process.kill()
        process.wait()
        process.stdout.close()
        raw = (root / "tmail-index").read_bytes()
        assert savedindex.parseSavedIndex(raw, inbox.uidValidity()) is not None
        assert view(BlockingMaildirStore(root).getFolder("INBOX")) == before


def modseqState(folder: MaildirFolder, since: int = 0) -> tuple[dict[int, int], int, list[int]]:
    """What a QRESYNC client is told: each message's mod-sequence, HIGHESTMODSEQ, the expunges."""
    folder.refresh()
    listed = {m.uid: m.modseq for m in folder.messages()}
    return listed, folder.highestModSeq(), folder.expungedSince(since)[0]


def test_a_restart_reads_only_what_the_log_gained_since_the_index_was_saved(root: Path) -> None:
    inbox = filled(root)
    uids = [m.uid for m in inbox.messages()]
    inbox.expunge(uids[:3])
    inbox.setFlags(uids[4], {"\\Answered"})
    saveIndex(inbox)
    before = modseqState(inbox)
    # Lines before where the saved index left the log are not read again:
    # made unreadable in place (same file, same length), a whole read
    # would start the log over and give every message a new mod-sequence.
    log = root / "tmail-modseq"
    raw = log.read_bytes()
    header = raw.index(b"\n") + 1
    log.write_bytes(raw[:header] + b"x" * 5 + raw[header + 5 :])
    assert modseqState(BlockingMaildirStore(root).getFolder("INBOX")) == before


def test_changes_logged_after_the_index_was_saved_are_taken_in(root: Path) -> None:
    inbox = filled(root)
    uids = [m.uid for m in inbox.messages()]
    saveIndex(inbox)
    highest = inbox.highestModSeq()
    # Another process changes flags and expunges after the save.
    other = BlockingMaildirStore(root).getFolder("INBOX")
    other.messages()
    flagged = other.setFlags(uids[6], {"\\Flagged"})
    other.expunge([uids[2]])
    after = modseqState(other, highest)

    restarted = modseqState(BlockingMaildirStore(root).getFolder("INBOX"), highest)
    assert restarted == after
    assert restarted[0][uids[6]] == flagged.modseq
    assert restarted[2] == [uids[2]]


def test_a_log_compacted_after_the_index_was_saved_is_read_whole(root: Path) -> None:
    inbox = filled(root)
    uids = [m.uid for m in inbox.messages()]
    saveIndex(inbox)
    other = BlockingMaildirStore(root).getFolder("INBOX")
    other.messages()
    other.setFlags(uids[1], {"\\Draft"})
    unwrap(other)._log.compact(
        [(m.uid, m.modseq, "D" if m.uid == uids[1] else "") for m in other.messages()]
    )
    restarted = BlockingMaildirStore(root).getFolder("INBOX")
    listed = {m.uid: m for m in (restarted.refresh() or restarted.messages())}
    assert listed[uids[1]].flags == {"\\Draft"}
    assert listed[uids[1]].modseq >= other.info(uids[1]).modseq
    assert restarted.highestModSeq() >= other.highestModSeq()


def uidsByKey(folder: MaildirFolder) -> dict[str, int]:
    folder.refresh()
    return {m.key: m.uid for m in folder.messages()}


def test_a_restart_does_not_read_an_unchanged_uidlist_again(root: Path) -> None:
    inbox = filled(root)
    saveIndex(inbox)
    before = uidsByKey(inbox)
    # Scrambled in place with its size, inode and mtime kept: a process
    # that read it again would find other UIDs.
    uidlist = root / "dovecot-uidlist"
    status = uidlist.stat()
    header, _, lines = uidlist.read_bytes().partition(b"\n")
    with uidlist.open("r+b") as f:
        f.seek(len(header) + 1)
        f.write(lines.replace(b"1", b"7").replace(b"2", b"8"))
    os.utime(uidlist, ns=(status.st_atime_ns, status.st_mtime_ns))
    restarted = BlockingMaildirStore(root).getFolder("INBOX")
    assert uidsByKey(restarted) == before
    assert deliver(restarted, 999) == max(before.values()) + 1


def test_lines_appended_to_the_uidlist_after_the_save_are_read(root: Path) -> None:
    inbox = filled(root)
    saveIndex(inbox)
    other = BlockingMaildirStore(root).getFolder("INBOX")
    other.messages()
    added = [deliver(other, 100 + n) for n in range(3)]
    expected = uidsByKey(other)
    restarted = BlockingMaildirStore(root).getFolder("INBOX")
    assert uidsByKey(restarted) == expected
    assert deliver(restarted, 200) == max(added) + 1


def test_a_uidlist_rewritten_after_the_save_is_read_whole(root: Path) -> None:
    inbox = filled(root)
    saveIndex(inbox)
    before = uidsByKey(inbox)
    uidlist = root / "dovecot-uidlist"
    # Replaced by another program (a new file), lines in the same order.
    (root / "uidlist.new").write_bytes(uidlist.read_bytes())
    os.rename(root / "uidlist.new", uidlist)
    assert uidsByKey(BlockingMaildirStore(root).getFolder("INBOX")) == before


def test_expunged_uids_stay_used_after_a_restart_from_a_saved_index(root: Path) -> None:
    inbox = filled(root)
    uids = [m.uid for m in inbox.messages()]
    inbox.expunge(uids[-3:])
    saveIndex(inbox)
    restarted = BlockingMaildirStore(root).getFolder("INBOX")
    restarted.messages()
    assert deliver(restarted, 300) == uids[-1] + 1
    assert max(uidsByKey(BlockingMaildirStore(root).getFolder("INBOX")).values()) == uids[-1] + 1


def body(n: int) -> bytes:
    return b"Subject: %d\r\n\r\nbody %d\r\n" % (n, n)


def contents(folder: MaildirFolder) -> dict[int, bytes]:
    """Every message of the folder, by UID, as read from its file."""
    folder.refresh()
    found = {}
    for message in folder.messages():
        with folder.openMessage(message.uid) as f:
            found[message.uid] = f.read()
    return found


def test_an_index_kept_compact_after_its_save_still_takes_every_change(root: Path) -> None:
    """
    Once saved, the index keeps its base names packed (as after a
    restart): new mail, expunges, flag changes and another process's
    delivery are all taken in, and every message still opens.
    """
    inbox = filled(root)
    saveIndex(inbox)
    assert isinstance(unwrap(inbox)._index.bases, PackedNames)
    uids = [m.uid for m in inbox.messages()]
    inbox.expunge([uids[3], uids[10]])
    mine = deliver(inbox, 500)
    inbox.setFlags(uids[5], {"\\Flagged"})
    other = BlockingMaildirStore(root).getFolder("INBOX")
    theirs = deliver(other, 600)
    expected = {uid: body(n) for n, uid in enumerate(uids) if n not in (3, 10)}
    expected |= {mine: body(500), theirs: body(600)}
    assert contents(inbox) == expected
    assert inbox.info(uids[5]).flags == {"\\Flagged"}
    saveIndex(inbox)
    assert contents(BlockingMaildirStore(root).getFolder("INBOX")) == expected
    assert deliver(inbox, 700) == theirs + 1


def test_expunged_uids_stay_used_over_a_folder_unchanged_since_the_save(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    The uidlist's lines of expunged messages (not compacted away yet) are
    taken up from the saved index even when nothing is listed.
    """
    inbox = filled(root)
    uids = [m.uid for m in inbox.messages()]
    inbox.expunge(uids[-3:])
    settle(root)
    before = view(inbox)
    saveIndex(inbox)
    counter = ListCounter(monkeypatch)
    restarted = BlockingMaildirStore(root).getFolder("INBOX")
    assert view(restarted) == before
    assert "cur" not in counter.listed and "new" not in counter.listed
    assert deliver(restarted, 301) == uids[-1] + 1
    expected = {uid: body(n) for n, uid in enumerate(uids[:-3])} | {uids[-1] + 1: body(301)}
    assert contents(restarted) == expected


def test_mail_another_process_delivers_after_a_restart_over_an_unchanged_folder(
    root: Path,
) -> None:
    inbox = filled(root)
    uids = [m.uid for m in inbox.messages()]
    settle(root)
    view(inbox)
    saveIndex(inbox)
    restarted = BlockingMaildirStore(root).getFolder("INBOX")
    restarted.messages()
    theirs = deliver(BlockingMaildirStore(root).getFolder("INBOX"), 800)
    assert theirs == uids[-1] + 1
    assert contents(restarted) == {uid: body(n) for n, uid in enumerate(uids)} | {theirs: body(800)}
