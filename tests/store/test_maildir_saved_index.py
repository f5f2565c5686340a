"""
The saved index (C{tmail-index}): a restarted process starts from it instead
of stat'ing every message, and it is only ever a cache.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tmail.store.maildir import MaildirFolder, MaildirStore
from tmail.store.maildir import folder as maildir

COUNT = 40


@pytest.fixture(autouse=True)
def _smallFoldersAreSaved(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(maildir, "_SAVED_INDEX_MIN", 10)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "Maildir"


def deliver(folder: MaildirFolder, n: int, flags: tuple[str, ...] = ()) -> int:
    pending = folder.beginMessage(flags)
    pending.write(b"Subject: %d\r\n\r\nbody %d\r\n" % (n, n))
    return pending.commit()


def view(folder: MaildirFolder) -> list[tuple[int, frozenset[str], int, float, str]]:
    return [(m.uid, m.flags, m.size, m.internaldate, m.key) for m in folder.messages()]


def filled(root: Path) -> MaildirFolder:
    inbox = MaildirStore(root).getFolder("INBOX")
    for n in range(COUNT):
        deliver(inbox, n, ("\\Seen", "$Work") if n % 3 else ())
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
    assert view(MaildirStore(root).getFolder("INBOX")) == before
    assert stats.calls < COUNT // 2


def test_changes_made_while_no_process_ran_are_found_over_a_saved_index(root: Path) -> None:
    inbox = filled(root)
    uids = [m.uid for m in inbox.messages()]
    other = MaildirStore(root).getFolder("INBOX")
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

    reopened = MaildirStore(root).getFolder("INBOX")
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
    assert view(MaildirStore(root).getFolder("INBOX")) == before


def test_a_saved_index_of_another_uidvalidity_is_ignored(root: Path) -> None:
    filled(root)
    (root / "dovecot-uidlist").unlink()
    reopened = MaildirStore(root).getFolder("INBOX")
    listed = reopened.messages()
    assert [m.uid for m in listed] == list(range(1, COUNT + 1))
    for message in listed:
        with reopened.openMessage(message.uid) as f:
            assert f.read().startswith(b"Subject: ")


def test_small_folders_leave_no_saved_index(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(maildir, "_SAVED_INDEX_MIN", 1000)
    filled(root)
    assert not (root / "tmail-index").exists()
