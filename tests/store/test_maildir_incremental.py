"""
What a Maildir folder tells IMAP sessions catching up (IIncrementalFolder):
the messages added, changed and removed since a serial, each once, with a
too-old serial answered by C{None}; and that a folder's own renames and
unlinks spare the next look a directory listing without hiding what another
program changes at the same moment.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tmail.interfaces import IIncrementalFolder, MessageInfo
from tmail.store.maildir import BlockingMaildirStore, MaildirFolder, changelog, directorysync

MESSAGE = b"From: a@example.test\r\nSubject: hi\r\n\r\nbody\r\n"


def deliver(folder: MaildirFolder) -> int:
    pending = folder.beginMessage()
    pending.write(MESSAGE)
    return pending.commit()


@pytest.fixture
def inbox(tmp_path: Path) -> MaildirFolder:
    folder = BlockingMaildirStore(tmp_path).getFolder("INBOX")
    for _ in range(3):
        deliver(folder)
    folder.refresh()
    folder.messages()
    return folder


def described(changes: list[MessageInfo | int] | None) -> list[tuple[str, int]]:
    assert changes is not None
    return [("gone", item) if isinstance(item, int) else ("here", item.uid) for item in changes]


def test_maildir_folders_offer_incremental_catch_up(inbox: MaildirFolder) -> None:
    assert IIncrementalFolder.providedBy(inbox)


def test_nothing_changed_means_an_empty_list_and_the_same_serial(inbox: MaildirFolder) -> None:
    serial = inbox.changeSerial()
    assert inbox.changesSince(serial) == (serial, [])


def test_additions_flag_changes_and_expunges_are_each_reported_once(
    inbox: MaildirFolder,
) -> None:
    serial = inbox.changeSerial()
    inbox.setFlags(1, ["\\Seen"])
    inbox.setFlags(1, ["\\Seen", "\\Flagged"])
    inbox.expunge([2])
    added = deliver(inbox)
    current, changes = inbox.changesSince(serial)
    assert current > serial
    assert sorted(described(changes)) == [("gone", 2), ("here", 1), ("here", added)]
    [first] = [item for item in changes or [] if isinstance(item, MessageInfo) and item.uid == 1]
    assert first.flags == {"\\Seen", "\\Flagged"}
    assert inbox.changesSince(current) == (current, [])


def test_a_new_message_is_recent_only_for_the_first_to_be_told(inbox: MaildirFolder) -> None:
    serial = inbox.changeSerial()
    added = deliver(inbox)
    _, first = inbox.changesSince(serial)
    _, second = inbox.changesSince(serial)
    assert [item.recent for item in first or [] if isinstance(item, MessageInfo)] == [True]
    assert [item.recent for item in second or [] if isinstance(item, MessageInfo)] == [False]
    assert inbox.info(added) is not None and not inbox.info(added).recent  # type: ignore[union-attr]


def test_a_serial_older_than_the_changes_kept_is_too_old(
    inbox: MaildirFolder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(changelog, "CHANGES_KEPT", 8)
    serial = inbox.changeSerial()
    for round in range(10):
        inbox.setFlags(1 + round % 3, ["\\Seen"] if round % 2 else [])
    current, changes = inbox.changesSince(serial)
    assert changes is None
    assert inbox.changesSince(current) == (current, [])


def test_a_serial_from_before_the_index_was_rebuilt_is_too_old(tmp_path: Path) -> None:
    folder = BlockingMaildirStore(tmp_path).getFolder("INBOX")
    deliver(folder)
    folder.refresh()
    folder.messages()
    serial = folder.changeSerial()
    (tmp_path / "dovecot-uidlist").unlink()
    (tmp_path / "tmail-modseq").unlink()
    os.utime(tmp_path / "cur", ns=(0, 0))
    folder.refresh()
    _, changes = folder.changesSince(serial)
    assert changes is None


def test_info_answers_from_the_index_and_none_for_a_gone_message(inbox: MaildirFolder) -> None:
    info = inbox.info(1)
    assert info is not None and info.uid == 1
    inbox.expunge([1])
    assert inbox.info(1) is None


def test_another_programs_rename_right_after_our_own_is_seen_within_the_rescan_interval(
    inbox: MaildirFolder, tmp_path: Path
) -> None:
    """
    Our own rename leaves the directory's mtime where the index expects it,
    so the next look lists nothing; a rename by another program in the same
    mtime tick is found by the look made once the rescan interval passed.
    """
    serial = inbox.changeSerial()
    inbox.setFlags(1, ["\\Seen"])
    key = inbox.info(2).key  # type: ignore[union-attr]
    [name] = [n for n in os.listdir(tmp_path / "cur") if n.startswith(key)]
    stamp = os.stat(tmp_path / "cur").st_mtime_ns
    os.rename(tmp_path / "cur" / name, tmp_path / "cur" / f"{key}:2,F")
    os.utime(tmp_path / "cur", ns=(stamp, stamp))
    time.sleep(directorysync._RESCAN_UNSETTLED_NS / 1e9 + 0.02)
    inbox.refresh()
    _, changes = inbox.changesSince(serial)
    flagged = [item for item in changes or [] if isinstance(item, MessageInfo) and item.uid == 2]
    assert [item.flags for item in flagged] == [frozenset({"\\Flagged"})]


def test_a_change_by_another_store_object_is_reported(inbox: MaildirFolder, tmp_path: Path) -> None:
    serial = inbox.changeSerial()
    other = BlockingMaildirStore(tmp_path).getFolder("INBOX")
    other.setFlags(3, ["\\Answered"])
    other.expunge([1])
    time.sleep(directorysync._RESCAN_UNSETTLED_NS / 1e9 + 0.02)
    inbox.refresh()
    _, changes = inbox.changesSince(serial)
    assert sorted(described(changes)) == [("gone", 1), ("here", 3)]
    assert inbox.info(3).flags == {"\\Answered"}  # type: ignore[union-attr]
    # Found by this process after it may have told a client a HIGHESTMODSEQ
    # above the other's value: it takes a mod-sequence of its own.
    assert inbox.info(3).modseq > other.info(3).modseq  # type: ignore[union-attr]


def test_own_flag_changes_do_not_list_the_directories_again(
    inbox: MaildirFolder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cost that made every STORE O(folder size): gone when nothing else changed."""
    inbox.setFlags(1, ["\\Seen"])
    time.sleep(directorysync._RESCAN_UNSETTLED_NS / 1e9 + 0.02)
    inbox.messages()
    listed: list[str] = []
    real = os.listdir

    def counting(path: str | os.PathLike[str]) -> list[str]:
        listed.append(str(path))
        return real(path)

    monkeypatch.setattr(os, "listdir", counting)
    for round in range(5):
        inbox.setFlags(2, ["\\Seen"] if round % 2 else [])
        inbox.changesSince(inbox.changeSerial())
    assert listed == []
