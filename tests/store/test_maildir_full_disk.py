"""
Reading a Maildir on a full disk (a small tmpfs the test fills): listing,
indexing and opening messages need no space.  UIDs that cannot be written
to C{dovecot-uidlist}, a UIDVALIDITY that cannot be recorded and a
mod-sequence log that cannot be started are kept in memory, and written,
unchanged, once space returns; writes a user asks for are still refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support.disk import fill, smallDisk
from tmail.errors import StoreFull
from tmail.store import maildir, uidlist
from tmail.store.maildir import MaildirFolder, MaildirStore


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    with smallDisk(tmp_path / "mail", "1m") as mountPoint:
        yield mountPoint


@pytest.fixture(autouse=True)
def _retryAtOnce(monkeypatch: pytest.MonkeyPatch) -> None:
    """Try the deferred writes at every look rather than once a second."""
    monkeypatch.setattr(maildir, "_RETRY_UNWRITTEN", 0.0, raising=False)


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
    return {info.key: info.uid for info in folder.messages()}


def test_messages_found_on_a_full_disk_keep_their_uids_until_written(disk: Path) -> None:
    root = disk / "alice"
    inbox = MaildirStore(root).getFolder("INBOX")
    delivered = [deliver(inbox, f"delivered {n}") for n in range(3)]
    assert [info.uid for info in inbox.messages()] == delivered == [1, 2, 3]
    dropped = dropInNew(root, 150)
    filler = fill(disk)

    seen = uids(inbox)
    assert sorted(seen.values()) == list(range(1, 154))
    assert [seen[base] for base in dropped] == list(range(4, 154))
    assert inbox.uidNext() == 154
    for uid in seen.values():
        with inbox.openMessage(uid) as f:
            assert f.read().startswith(b"Subject: ")
    assert len(onDisk(root)) == 3, "the uidlist had room for the new lines: the test proves nothing"

    with pytest.raises(StoreFull):
        deliver(inbox, "refused")
    assert uids(inbox) == seen
    assert inbox.uidNext() == 154

    filler.unlink()
    assert uids(inbox) == seen
    assert onDisk(root) == seen
    assert uids(MaildirStore(root).getFolder("INBOX")) == seen
    assert deliver(inbox, "after") == 154


def test_a_folder_without_a_uidlist_is_read_on_a_full_disk_and_keeps_its_uidvalidity(
    disk: Path,
) -> None:
    root = disk / "bob"
    for sub in ("cur", "new", "tmp"):
        (root / sub).mkdir(parents=True)
    dropped = dropInNew(root, 20)
    filler = fill(disk)

    inbox = MaildirStore(root).getFolder("INBOX")
    uidValidity = inbox.uidValidity()
    seen = uids(inbox)
    assert [seen[base] for base in dropped] == list(range(1, 21))
    assert inbox.highestModSeq() > 0
    assert not (root / uidlist.FILENAME).exists()

    filler.unlink()
    assert uids(inbox) == seen
    assert inbox.uidValidity() == uidValidity
    reopened = MaildirStore(root).getFolder("INBOX")
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

    inbox = MaildirStore(root).getFolder("INBOX")
    uidValidity = inbox.uidValidity()
    seen = uids(inbox)
    assert sorted(seen.values()) == list(range(1, 21))
    assert inbox.uidValidity() == uidValidity
    assert uids(inbox) == seen

    filler.unlink()
    assert uids(inbox) == seen
    assert onDisk(root) == seen
    assert MaildirStore(root).getFolder("INBOX").uidValidity() == uidValidity


def test_flag_changes_and_expunges_are_still_refused_on_a_full_disk(disk: Path) -> None:
    root = disk / "carol"
    inbox = MaildirStore(root).getFolder("INBOX")
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
