"""
The Maildir store next to other writers (another tmail process, Dovecot, an
MDA) and a full disk.
"""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path
from typing import Any

import pytest

from tmail.errors import StoreFull
from tmail.interfaces import IMailFolder
from tmail.store import dotlock, uidlist
from tmail.store.maildir import BlockingMaildirStore, MaildirFolder

MESSAGE = b"Subject: x\r\n\r\nbody\r\n"


def deliver(folder: MaildirFolder, data: bytes = MESSAGE, flags: tuple[str, ...] = ()) -> int:
    pending = folder.beginMessage(flags)
    pending.write(data)
    return pending.commit()


def settle(root: Path) -> None:
    """Age the folder directories so their mtimes are trusted again."""
    past = time.time() - 60
    for sub in ("new", "cur"):
        os.utime(root / sub, (past, past))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "Maildir"


def test_file_dropped_into_new_gets_the_next_uid(root: Path) -> None:
    inbox = BlockingMaildirStore(root).getFolder("INBOX")
    deliver(inbox)
    inbox.refresh()
    inbox.messages()
    heard: list[IMailFolder] = []
    inbox.addListener(heard.append)
    (root / "new" / "1700000000.external.host").write_bytes(b"external\r\n")
    inbox.refresh()
    infos = inbox.messages()
    assert [(m.uid, m.key, m.recent) for m in infos][1:] == [(2, "1700000000.external.host", True)]
    assert infos[1].size == len(b"external\r\n")
    assert heard == [inbox]
    assert os.listdir(root / "new") == []
    assert (root / "cur" / "1700000000.external.host:2,").exists()
    assert "2 :1700000000.external.host" in (root / "dovecot-uidlist").read_text()


def test_a_second_process_sees_the_first_ones_uids(root: Path) -> None:
    first = BlockingMaildirStore(root).getFolder("INBOX")
    second = BlockingMaildirStore(root).getFolder("INBOX")
    first.refresh()
    first.messages()
    second.refresh()
    second.messages()
    a = deliver(first)
    b = deliver(second)
    c = deliver(first)
    assert (a, b, c) == (1, 2, 3)
    first.refresh()
    assert [m.uid for m in first.messages()] == [1, 2, 3]
    second.refresh()
    assert [m.uid for m in second.messages()] == [1, 2, 3]
    first.refresh()
    second.refresh()
    assert [m.key for m in first.messages()] == [m.key for m in second.messages()]


def test_external_flag_change_keeps_the_uid(root: Path) -> None:
    inbox = BlockingMaildirStore(root).getFolder("INBOX")
    uid = deliver(inbox)
    inbox.refresh()
    [info] = inbox.messages()
    heard: list[IMailFolder] = []
    inbox.addListener(heard.append)
    os.rename(root / "cur" / (info.key + ":2,"), root / "cur" / (info.key + ":2,FS"))
    inbox.refresh()
    [after] = inbox.messages()
    assert (after.uid, after.key, after.flags) == (
        uid,
        info.key,
        frozenset({"\\Seen", "\\Flagged"}),
    )
    assert heard == [inbox]


def test_open_and_set_flags_follow_an_unseen_external_rename(root: Path) -> None:
    inbox = BlockingMaildirStore(root).getFolder("INBOX")
    uid = deliver(inbox)
    inbox.refresh()
    [info] = inbox.messages()
    os.rename(root / "cur" / (info.key + ":2,"), root / "cur" / (info.key + ":2,S"))
    with inbox.openMessage(uid) as f:
        assert f.read() == MESSAGE
    os.rename(root / "cur" / (info.key + ":2,S"), root / "cur" / (info.key + ":2,R"))
    assert inbox.setFlags(uid, ["\\Seen", "\\Answered"]).uid == uid
    assert os.listdir(root / "cur") == [info.key + ":2,RS"]


def test_change_flags_keeps_what_an_unseen_external_rename_changed(root: Path) -> None:
    """
    Adding and removing flags works on the flags the file has when it is
    renamed: another program's change the index has not seen yet stays,
    where setFlags (a replacement) would undo it.
    """
    inbox = BlockingMaildirStore(root).getFolder("INBOX")
    uid = deliver(inbox, flags=("\\Seen",))
    [info] = inbox.messages()
    os.rename(root / "cur" / (info.key + ":2,S"), root / "cur" / (info.key + ":2,FR"))
    after = inbox.changeFlags(uid, ["\\Draft"], ["\\Answered"])
    assert after.flags == {"\\Draft", "\\Flagged"}
    assert os.listdir(root / "cur") == [info.key + ":2,DF"]
    assert after.modseq > info.modseq
    assert inbox.changeFlags(uid, ["kw"], []).flags == {"\\Draft", "\\Flagged", "kw"}


def test_a_flag_change_found_by_following_a_rename_is_told_to_the_listeners(root: Path) -> None:
    """
    Sessions learn of changes from the listeners: one that setting flags or
    reading a message comes across (not a listing) must reach them too, also
    when setting flags then finds nothing left to rename.
    """
    inbox = BlockingMaildirStore(root).getFolder("INBOX")
    uid = deliver(inbox)
    inbox.refresh()
    [info] = inbox.messages()
    heard: list[IMailFolder] = []
    inbox.addListener(heard.append)
    os.rename(root / "cur" / (info.key + ":2,"), root / "cur" / (info.key + ":2,R"))
    after = inbox.setFlags(uid, ["\\Answered"])
    assert heard == [inbox]
    assert after.flags == {"\\Answered"} and after.modseq > info.modseq
    os.rename(root / "cur" / (info.key + ":2,R"), root / "cur" / (info.key + ":2,FR"))
    with inbox.openMessage(uid):
        pass
    assert heard == [inbox, inbox]
    assert inbox.info(uid).flags == {"\\Answered", "\\Flagged"}  # type: ignore[union-attr]


def test_readers_answer_from_the_index_until_refresh_tells_the_listeners(root: Path) -> None:
    """
    uidNext, messages and changesSince answer from the index without
    looking at the disk; another program's change is seen, and told to
    the listeners, by refresh.
    """
    inbox = BlockingMaildirStore(root).getFolder("INBOX")
    uid = deliver(inbox)
    settle(root)
    inbox.refresh()
    [info] = inbox.messages()
    serial = inbox.changeSerial()
    heard: list[IMailFolder] = []
    inbox.addListener(heard.append)
    os.rename(root / "cur" / (info.key + ":2,"), root / "cur" / (info.key + ":2,S"))
    (root / "new" / "1700000000.external.host").write_bytes(b"external\r\n")
    assert inbox.uidNext() == uid + 1
    assert [m.key for m in inbox.messages()] == [info.key]
    assert inbox.changesSince(serial) == (serial, [])
    assert heard == []
    inbox.refresh()
    assert heard == [inbox]
    assert [m.flags for m in inbox.messages()] == [{"\\Seen"}, set()]
    assert inbox.uidNext() == uid + 2


def test_index_readers_and_begin_message_never_touch_the_disk(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the seam answers at once comes from memory: no stat, listing or open."""
    inbox = BlockingMaildirStore(root).getFolder("INBOX")
    uid = deliver(inbox)
    inbox.refresh()
    serial = inbox.changeSerial()

    touched: list[tuple[str, object]] = []

    def watched(name: str, real: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            touched.append((name, args[0] if args else None))
            return real(*args, **kwargs)

        return call

    for name in ("stat", "lstat", "listdir", "scandir", "open", "rename", "unlink", "mkdir"):
        monkeypatch.setattr(os, name, watched(name, getattr(os, name)))
    monkeypatch.setattr("builtins.open", watched("open", open))
    listed = inbox.messages(claimRecent=False)
    found = inbox.info(uid)
    counts = (inbox.messageCount(), inbox.uidNext(), inbox.uidValidity())
    changes = inbox.changesSince(serial)
    highest = inbox.highestModSeq()
    expunged = inbox.expungedSince(inbox.highestModSeq())
    ids = (inbox.mailboxId(), inbox.emailId(uid), inbox.saveDate(uid))
    pending = inbox.beginMessage(["\\Seen"])
    pending.write(MESSAGE)
    monkeypatch.undo()
    assert touched == []
    [info] = listed
    assert found == info
    assert counts[:2] == (1, 2) and counts[2] > 0
    assert changes == (serial, [])
    assert highest >= info.modseq
    assert expunged == ([], True)
    assert all(ids)
    assert pending.commit() == uid + 1


def test_externally_removed_message_raises_key_error_and_vanishes(root: Path) -> None:
    inbox = BlockingMaildirStore(root).getFolder("INBOX")
    uid = deliver(inbox)
    inbox.refresh()
    [info] = inbox.messages()
    os.unlink(root / "cur" / (info.key + ":2,"))
    with pytest.raises(KeyError):
        inbox.openMessage(uid)
    with pytest.raises(KeyError):
        inbox.setFlags(uid, ["\\Seen"])
    inbox.refresh()
    assert inbox.messages() == ()
    assert deliver(inbox) == 2


def test_messages_does_not_rescan_when_nothing_changed(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox = BlockingMaildirStore(root).getFolder("INBOX")
    for _ in range(3):
        deliver(inbox)
    inbox.refresh()
    first = inbox.messages()
    inbox.refresh()
    inbox.messages()
    settle(root)
    inbox.refresh()
    inbox.messages()
    calls: list[str | os.PathLike[str]] = []
    real = os.listdir

    def counting(path: str | os.PathLike[str]) -> list[str]:
        calls.append(path)
        return real(path)

    monkeypatch.setattr(os, "listdir", counting)
    inbox.refresh()
    again = inbox.messages()
    assert calls == []
    assert [m.uid for m in again] == [m.uid for m in first]
    inbox.refresh()
    assert inbox.messages() is again
    (root / "new" / "1700000000.late.host").write_bytes(b"late\r\n")
    inbox.refresh()
    assert [m.uid for m in inbox.messages()] == [1, 2, 3, 4]
    assert calls


def test_keywords_are_per_folder_letters_and_persist(root: Path) -> None:
    store = BlockingMaildirStore(root)
    inbox = store.getFolder("INBOX")
    uid = deliver(inbox, flags=("$Junk", "Work"))
    inbox.messages()
    inbox.setFlags(uid, ["Work", "Later"])
    assert (root / "dovecot-keywords").read_text() == "0 $Junk\n1 Work\n2 Later\n"
    [name] = os.listdir(root / "cur")
    assert name.endswith(":2,bc")
    assert BlockingMaildirStore(root).getFolder("INBOX").messages()[0].flags == {"Work", "Later"}


def test_keywords_beyond_26_are_kept_in_memory(root: Path) -> None:
    inbox = BlockingMaildirStore(root).getFolder("INBOX")
    uid = deliver(inbox)
    inbox.messages()
    many = [f"k{i}" for i in range(30)]
    assert inbox.setFlags(uid, many).flags == set(many)
    assert inbox.messages()[0].flags == set(many)
    assert len((root / "dovecot-keywords").read_text().splitlines()) == 26
    reopened = BlockingMaildirStore(root).getFolder("INBOX").messages()[0].flags
    assert reopened == set(sorted(many)[:26])


def test_invalid_keyword_is_refused(root: Path) -> None:
    inbox = BlockingMaildirStore(root).getFolder("INBOX")
    uid = deliver(inbox)
    inbox.messages()
    with pytest.raises(ValueError):
        inbox.setFlags(uid, ["two words"])


@pytest.mark.parametrize("failing", ["write", "fsync"])
@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_full_disk_raises_store_full_and_leaves_no_file(
    root: Path, monkeypatch: pytest.MonkeyPatch, failing: str, code: int
) -> None:
    inbox = BlockingMaildirStore(root).getFolder("INBOX")
    inbox.messages()
    pending = inbox.beginMessage()
    pending.write(MESSAGE)

    def refuse(*args: object) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, failing, refuse)
    with pytest.raises(StoreFull):
        pending.commit()
    monkeypatch.undo()
    for sub in ("tmp", "new", "cur"):
        assert os.listdir(root / sub) == []
    assert inbox.messages() == ()
    assert deliver(inbox) == 1


def test_full_disk_while_writing_the_uidlist_undoes_the_delivery(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox = BlockingMaildirStore(root).getFolder("INBOX")
    inbox.messages()
    uidlistBefore = (root / "dovecot-uidlist").read_bytes()

    def refuse(lock: dotlock.DotLock, data: bytes) -> os.stat_result:
        raise StoreFull("disk full")

    def refuseAppend(fd: int, data: bytes) -> None:
        os.write(fd, data[:3])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(dotlock.DotLock, "replace", refuse)
    monkeypatch.setattr(uidlist, "writeAll", refuseAppend)
    with pytest.raises(StoreFull):
        deliver(inbox)
    monkeypatch.undo()
    for sub in ("tmp", "new", "cur"):
        assert os.listdir(root / sub) == []
    assert not (root / "dovecot-uidlist.lock").exists()
    assert (root / "dovecot-uidlist").read_bytes() == uidlistBefore


def test_lost_uidlist_gives_a_new_uidvalidity(root: Path) -> None:
    inbox = BlockingMaildirStore(root).getFolder("INBOX")
    deliver(inbox)
    inbox.refresh()
    inbox.messages()
    validity = inbox.uidValidity()
    os.unlink(root / "dovecot-uidlist")
    heard: list[IMailFolder] = []
    inbox.addListener(heard.append)
    inbox.refresh()
    [info] = inbox.messages()
    assert inbox.uidValidity() > validity
    assert info.uid == 1
    assert heard == [inbox]


def test_stale_lock_is_broken_and_live_lock_waited_for(root: Path) -> None:
    inbox = BlockingMaildirStore(root).getFolder("INBOX")
    inbox.messages()
    lock = root / "dovecot-uidlist.lock"
    lock.write_bytes(b"")
    old = time.time() - dotlock.STALE_AFTER - 10
    os.utime(lock, (old, old))
    assert deliver(inbox) == 1
    assert not lock.exists()
    held = dotlock.DotLock(root / "dovecot-uidlist", timeout=0.05)
    held.acquire()
    with pytest.raises(Exception, match="held by another process"):
        dotlock.DotLock(root / "dovecot-uidlist", timeout=0.05).acquire()
    held.release()
    assert not lock.exists()


def test_uidlist_reads_dovecot_lines_with_fields_and_flags() -> None:
    data = uidlist.parse(
        "3 V1275660208 N25 G3085f01b7f11094c501100008c4a11c1\n"
        "7 W2062 S2000 :1.M1P1.host,S=2000:2,S\n"
        "30 :2.M2P2.host\n"
        "31 :3.partial"
    )
    assert data.uidValidity == 1275660208
    assert data.nextUid == 31
    assert data.uids == {"1.M1P1.host,S=2000": 7, "2.M2P2.host": 30}
    text = uidlist.serialize(data).decode()
    assert "7 W2062 S2000 :1.M1P1.host,S=2000\n" in text


def test_uidlist_reads_version_1() -> None:
    data = uidlist.parse("1 1000 5\n3 1.M1.host:2,S\n")
    assert (data.uidValidity, data.nextUid, data.uids) == (1000, 5, {"1.M1.host": 3})


def test_existing_dovecot_maildir_keeps_its_uids(root: Path) -> None:
    for sub in ("cur", "new", "tmp"):
        (root / sub).mkdir(parents=True)
    (root / "cur" / "1.M1P1.host,S=4:2,Sa").write_bytes(b"one\n")
    (root / "cur" / "2.M2P2.host,S=4:2,").write_bytes(b"two\n")
    (root / "dovecot-uidlist").write_text(
        "3 V1234 N40 G3085f01b7f11094c501100008c4a11c1\n"
        "17 :1.M1P1.host,S=4:2,S\n"
        "23 :2.M2P2.host,S=4\n"
    )
    (root / "dovecot-keywords").write_text("0 $Forwarded\n")
    inbox = BlockingMaildirStore(root).getFolder("INBOX")
    assert inbox.uidValidity() == 1234
    assert [(m.uid, m.flags) for m in inbox.messages()] == [
        (17, {"\\Seen", "$Forwarded"}),
        (23, frozenset()),
    ]
    assert deliver(inbox) == 40


def test_deliveries_append_to_the_uidlist_and_expunges_leave_lines_until_compaction(
    root: Path,
) -> None:
    inbox = BlockingMaildirStore(root).getFolder("INBOX")
    inbox.messages()
    header = (root / "dovecot-uidlist").read_text().splitlines()[0]
    uids = [deliver(inbox) for _ in range(3)]
    lines = (root / "dovecot-uidlist").read_text().splitlines()
    assert lines[0] == header
    assert [int(line.split()[0]) for line in lines[1:]] == uids
    assert inbox.expunge(uids[:1]) == uids[:1]
    assert (root / "dovecot-uidlist").read_text().splitlines() == lines
    reopened = BlockingMaildirStore(root).getFolder("INBOX")
    assert [m.uid for m in reopened.messages()] == uids[1:]
    assert reopened.uidNext() == uids[-1] + 1


def test_many_expunges_compact_the_uidlist_keeping_the_next_uid(root: Path) -> None:
    inbox = BlockingMaildirStore(root).getFolder("INBOX")
    uids = [deliver(inbox) for _ in range(80)]
    inbox.messages()
    inbox.expunge(uids[:-1])
    lines = (root / "dovecot-uidlist").read_text().splitlines()
    assert f"N{uids[-1] + 1}" in lines[0].split()
    assert [int(line.split()[0]) for line in lines[1:]] == uids[-1:]
    inbox.expunge(uids[-1:])
    reopened = BlockingMaildirStore(root).getFolder("INBOX")
    assert reopened.messages() == ()
    assert deliver(reopened) == uids[-1] + 1
