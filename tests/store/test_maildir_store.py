"""Delivery, UIDs, flags and folders of the Maildir store."""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import pytest

from tmail.errors import FolderExists, InvalidFolderName, NoSuchFolder
from tmail.interfaces import IMailFolder, IMailStore, IPendingMessage
from tmail.store.blocking import unwrap
from tmail.store.maildir import BlockingMaildirStore, MaildirFolder, MaildirStore
from tmail.store.maildir.folder import _DELETED_SUFFIX

MESSAGE = b"From: a@example.org\r\nSubject: hi\r\n\r\nbody\r\n"


def deliver(
    folder: MaildirFolder,
    data: bytes = MESSAGE,
    flags: tuple[str, ...] = (),
    internaldate: float | None = None,
) -> int:
    pending = folder.beginMessage(flags, internaldate)
    pending.write(data)
    return pending.commit()


def files(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "Maildir"


@pytest.fixture
def store(root: Path) -> MaildirStore:
    return BlockingMaildirStore(root)


def test_store_and_folder_provide_the_interfaces(store: MaildirStore) -> None:
    inbox = store.getFolder("INBOX")
    assert IMailStore.providedBy(store)
    assert IMailFolder.providedBy(inbox)
    assert IPendingMessage.providedBy(inbox.beginMessage())
    assert store.delimiter == "/"


def test_root_is_created_private_on_first_use(store: MaildirStore, root: Path) -> None:
    assert not root.exists()
    store.getFolder("INBOX")
    assert (root.stat().st_mode & 0o777) == 0o700
    assert {"cur", "new", "tmp"} <= set(os.listdir(root))


def test_nothing_is_visible_before_commit(store: MaildirStore, root: Path) -> None:
    inbox = store.getFolder("INBOX")
    pending = inbox.beginMessage()
    pending.write(MESSAGE)
    assert files(root / "new") == []
    assert inbox.messages() == ()
    assert files(root / "cur") == []


def test_commit_puts_exact_bytes_in_new(store: MaildirStore, root: Path) -> None:
    inbox = store.getFolder("INBOX")
    uid = deliver(inbox)
    assert uid == 1
    [name] = files(root / "new")
    assert (root / "new" / name).read_bytes() == MESSAGE
    assert name.endswith(f",S={len(MESSAGE)}")
    assert files(root / "tmp") == []


def test_abort_leaves_nothing(store: MaildirStore, root: Path) -> None:
    inbox = store.getFolder("INBOX")
    pending = inbox.beginMessage()
    pending.write(MESSAGE)
    pending.abort()
    pending.abort()
    assert files(root / "tmp") == files(root / "new") == files(root / "cur") == []
    with pytest.raises(ValueError):
        pending.commit()


def test_committed_message_is_listed_recent_once(store: MaildirStore, root: Path) -> None:
    inbox = store.getFolder("INBOX")
    uid = deliver(inbox, internaldate=1_000_000_000.5)
    inbox.refresh()
    [info] = inbox.messages()
    assert (info.uid, info.size, info.recent) == (uid, len(MESSAGE), True)
    assert info.internaldate == pytest.approx(1_000_000_000.5)
    assert info.flags == frozenset()
    assert not inbox.messages()[0].recent
    [name] = files(root / "cur")
    assert name == info.key + ":2,"
    with inbox.openMessage(uid) as f:
        assert f.read() == MESSAGE


def test_delivery_with_flags_goes_to_cur_with_letters_in_order(
    store: MaildirStore, root: Path
) -> None:
    inbox = store.getFolder("INBOX")
    deliver(inbox, flags=("\\Seen", "\\Draft", "\\Flagged", "\\Answered", "\\Deleted"))
    assert files(root / "new") == []
    [name] = files(root / "cur")
    assert name.endswith(":2,DFRST")


def test_uids_increase_and_survive_a_new_store_object(root: Path) -> None:
    store = BlockingMaildirStore(root)
    inbox = store.getFolder("INBOX")
    uids = [deliver(inbox) for _ in range(3)]
    assert uids == [1, 2, 3]
    keys = [m.key for m in inbox.messages()]
    again = BlockingMaildirStore(root).getFolder("INBOX")
    assert [(m.uid, m.key) for m in again.messages()] == list(zip(uids, keys, strict=True))
    assert again.uidValidity() == inbox.uidValidity()
    assert again.uidNext() == 4


def test_uidlist_is_dovecot_version_3(store: MaildirStore, root: Path) -> None:
    inbox = store.getFolder("INBOX")
    deliver(inbox)
    [key] = [m.key for m in inbox.messages()]
    header, line = (root / "dovecot-uidlist").read_text().splitlines()
    version, validity, nextUid, guid = header.split()
    # Written when the folder was first opened; the delivery's line is appended.
    assert (version, nextUid) == ("3", "N1")
    assert validity == f"V{inbox.uidValidity()}"
    assert guid.startswith("G") and len(guid) == 33
    assert line == f"1 :{key}"


def test_set_flags_renames_the_file_and_persists(root: Path) -> None:
    inbox = BlockingMaildirStore(root).getFolder("INBOX")
    uid = deliver(inbox)
    inbox.messages()
    info = inbox.setFlags(uid, ["\\Seen", "\\Flagged", "$Junk", "\\Recent"])
    assert info.flags == {"\\Seen", "\\Flagged", "$Junk"}
    [name] = files(root / "cur")
    assert name.endswith(":2,FSa")
    assert (root / "dovecot-keywords").read_text() == "0 $Junk\n"
    again = BlockingMaildirStore(root).getFolder("INBOX")
    assert again.messages()[0].flags == {"\\Seen", "\\Flagged", "$Junk"}
    assert inbox.setFlags(uid, []).flags == frozenset()
    assert files(root / "cur") == [info.key + ":2,"]


def test_set_flags_keeps_the_passed_letter(store: MaildirStore, root: Path) -> None:
    inbox = store.getFolder("INBOX")
    uid = deliver(inbox)
    inbox.refresh()
    [info] = inbox.messages()
    os.rename(root / "cur" / (info.key + ":2,"), root / "cur" / (info.key + ":2,P"))
    assert inbox.setFlags(uid, ["\\Seen"]).flags == {"\\Seen"}
    assert files(root / "cur") == [info.key + ":2,PS"]


def test_set_flags_on_unknown_uid_raises_key_error(store: MaildirStore) -> None:
    with pytest.raises(KeyError):
        store.getFolder("INBOX").setFlags(42, ["\\Seen"])


def test_listeners_hear_about_delivery_flags_and_expunge(store: MaildirStore) -> None:
    inbox = store.getFolder("INBOX")
    heard: list[IMailFolder] = []
    inbox.addListener(heard.append)
    uid = deliver(inbox)
    inbox.messages()
    inbox.setFlags(uid, ["\\Seen"])
    inbox.expunge([uid])
    assert heard == [inbox, inbox, inbox]
    inbox.removeListener(heard.append)
    deliver(inbox)
    assert len(heard) == 3


def test_expunged_uids_are_never_reused(root: Path) -> None:
    inbox = BlockingMaildirStore(root).getFolder("INBOX")
    first, second = deliver(inbox), deliver(inbox)
    inbox.messages()
    assert inbox.expunge([second, 99]) == [second]
    assert [m.uid for m in inbox.messages()] == [first]
    again = BlockingMaildirStore(root).getFolder("INBOX")
    assert deliver(again) == 3
    assert [m.uid for m in again.messages()] == [first, 3]


def test_repeated_get_folder_returns_the_same_object(store: MaildirStore) -> None:
    assert unwrap(store.getFolder("INBOX")) is unwrap(store.getFolder("inbox"))
    store.createFolder("Sent")
    assert unwrap(store.getFolder("Sent")) is unwrap(store.getFolder("Sent"))


def test_folder_create_list_and_layout(store: MaildirStore, root: Path) -> None:
    store.createFolder("Archive/2025")
    store.createFolder("Entwürfe")
    assert store.listFolders() == ["INBOX", "Archive", "Archive/2025", "Entwürfe"]
    assert (root / ".Archive.2025" / "maildirfolder").is_file()
    assert (root / ".Entw&APw-rfe" / "cur").is_dir()
    with pytest.raises(FolderExists):
        store.createFolder("Archive")
    with pytest.raises(FolderExists):
        store.createFolder("inbox")


def test_missing_folder_raises_no_such_folder(store: MaildirStore) -> None:
    with pytest.raises(NoSuchFolder):
        store.getFolder("Nope")


def test_delete_folder_keeps_children_and_refuses_inbox(store: MaildirStore) -> None:
    archive = store.createFolder("Archive")
    store.createFolder("Archive/2025")
    deliver(archive)
    heard: list[IMailFolder] = []
    archive.messages()
    archive.addListener(heard.append)
    store.deleteFolder("Archive")
    assert store.listFolders() == ["INBOX", "Archive/2025"]
    assert heard == [archive]
    with pytest.raises(NoSuchFolder):
        store.getFolder("Archive")
    with pytest.raises(NoSuchFolder):
        store.deleteFolder("Archive")
    with pytest.raises(InvalidFolderName):
        store.deleteFolder("INBOX")


def test_rename_folder_moves_children_and_keeps_uids(store: MaildirStore) -> None:
    work = store.createFolder("Work")
    store.createFolder("Work/2024")
    uid = deliver(work)
    validity = work.uidValidity()
    store.renameFolder("Work", "Old/Work")
    assert store.listFolders() == ["INBOX", "Old", "Old/Work", "Old/Work/2024"]
    moved = store.getFolder("Old/Work")
    assert unwrap(moved) is unwrap(work)
    assert moved.name == "Old/Work"
    assert [m.uid for m in moved.messages()] == [uid]
    assert moved.uidValidity() == validity


def test_rename_folder_refusals(store: MaildirStore) -> None:
    store.createFolder("A")
    store.createFolder("B")
    with pytest.raises(FolderExists):
        store.renameFolder("A", "B")
    with pytest.raises(NoSuchFolder):
        store.renameFolder("C", "D")
    with pytest.raises(InvalidFolderName):
        store.renameFolder("A", "A/child")
    with pytest.raises(FolderExists):
        store.renameFolder("A", "INBOX")


def test_rename_inbox_moves_messages_and_leaves_it_empty(store: MaildirStore) -> None:
    inbox = store.getFolder("INBOX")
    deliver(inbox, b"one\r\n")
    deliver(inbox, b"two\r\n", flags=("\\Seen", "Work"))
    inbox.messages()
    store.renameFolder("INBOX", "Old")
    assert inbox.messages() == ()
    old = store.getFolder("Old")
    contents = []
    for info in old.messages():
        with old.openMessage(info.uid) as f:
            contents.append((f.read(), info.flags))
    assert contents == [(b"one\r\n", frozenset()), (b"two\r\n", {"\\Seen", "Work"})]
    assert deliver(inbox) == 3


def test_a_delete_stopped_half_way_is_swept_from_tmp(store: MaildirStore, root: Path) -> None:
    """A deleted folder moved to C{tmp/} whose files a stop left there is swept."""
    store.getFolder("INBOX")
    debris = root / "tmp" / f"Big{_DELETED_SUFFIX}"
    (debris / "cur").mkdir(parents=True)
    (debris / "cur" / "1.M1P1.host:2,").write_bytes(b"left behind\r\n")
    BlockingMaildirStore(root).getFolder("INBOX").messages()
    assert [path for path in (root / "tmp").iterdir() if path.is_dir()] == []


def test_subscriptions_round_trip(store: MaildirStore, root: Path) -> None:
    assert store.subscriptions() == []
    store.subscribe("Entwürfe")
    store.subscribe("Archive/2025")
    store.subscribe("Entwürfe")
    assert store.subscriptions() == ["Entwürfe", "Archive/2025"]
    assert (root / "subscriptions").read_text() == "V\t2\n\nEntw&APw-rfe\nArchive\t2025\n"
    store.unsubscribe("Entwürfe")
    assert BlockingMaildirStore(root).subscriptions() == ["Archive/2025"]


def test_copy_keeps_bytes_flags_and_date(store: MaildirStore) -> None:
    inbox = store.getFolder("INBOX")
    uid = deliver(inbox, flags=("\\Seen", "$Label1"), internaldate=1_500_000_000)
    inbox.messages()
    archive = store.createFolder("Archive")
    newUid = inbox.copyMessage(uid, archive)
    [info] = archive.messages()
    assert (info.uid, info.flags, info.recent) == (newUid, frozenset({"\\Seen", "$Label1"}), True)
    assert info.internaldate == pytest.approx(1_500_000_000)
    with archive.openMessage(newUid) as f:
        assert f.read() == MESSAGE
    inbox.setFlags(uid, [])
    assert archive.messages()[0].flags == {"\\Seen", "$Label1"}


def test_stale_tmp_files_are_swept_when_a_folder_opens(root: Path) -> None:
    BlockingMaildirStore(root).getFolder("INBOX").messages()
    old, fresh = root / "tmp" / "old", root / "tmp" / "fresh"
    old.write_bytes(b"x")
    fresh.write_bytes(b"x")
    long_ago = time.time() - 37 * 3600
    os.utime(old, (long_ago, long_ago))
    BlockingMaildirStore(root).getFolder("INBOX").messages()
    assert files(root / "tmp") == ["fresh"]


def test_a_folder_kept_open_sweeps_stale_tmp_files_again_hours_later(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox = BlockingMaildirStore(root).getFolder("INBOX")
    inbox.messages()
    debris = root / "tmp" / "debris"
    debris.write_bytes(b"x")
    long_ago = time.time() - 37 * 3600
    os.utime(debris, (long_ago, long_ago))
    inbox.refresh()
    assert files(root / "tmp") == ["debris"]
    later = time.monotonic() + 9 * 3600
    monkeypatch.setattr(time, "monotonic", lambda: later)
    inbox.refresh()
    assert files(root / "tmp") == []


def test_copy_falls_back_to_bytes_when_hard_links_are_refused(
    store: MaildirStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox = store.getFolder("INBOX")
    uid = deliver(inbox, flags=("\\Flagged",), internaldate=1_400_000_000)
    inbox.messages()
    archive = store.createFolder("Archive")

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EXDEV, "cross-device link")

    monkeypatch.setattr(os, "link", refuse)
    newUid = inbox.copyMessage(uid, archive)
    [info] = archive.messages()
    assert (info.uid, info.flags) == (newUid, frozenset({"\\Flagged"}))
    assert info.internaldate == pytest.approx(1_400_000_000)
    with archive.openMessage(newUid) as f:
        assert f.read() == MESSAGE


def test_message_delivered_before_anyone_looked_is_recent(root: Path) -> None:
    inbox = BlockingMaildirStore(root).getFolder("INBOX")
    deliver(inbox, flags=("\\Seen",))
    [info] = inbox.messages()
    assert info.recent
    assert not inbox.messages()[0].recent
    assert not BlockingMaildirStore(root).getFolder("INBOX").messages()[0].recent


def test_deleted_folder_object_reads_as_empty(store: MaildirStore) -> None:
    trash = store.createFolder("Trash")
    deliver(trash)
    trash.messages()
    store.deleteFolder("Trash")
    assert trash.messages() == ()
    with pytest.raises(NoSuchFolder):
        trash.beginMessage()
    recreated = store.createFolder("Trash")
    assert recreated is not trash
    assert recreated.messages() == ()


def test_messages_delivered_before_any_listing_can_be_flagged_and_expunged(
    tmp_path: Path,
) -> None:
    folder = BlockingMaildirStore(tmp_path / "m").getFolder("INBOX")
    first = folder.beginMessage()
    first.write(b"Subject: a\r\n\r\nx\r\n")
    uid = first.commit()
    second = folder.beginMessage()
    second.write(b"Subject: b\r\n\r\ny\r\n")
    other = second.commit()
    assert "\\Seen" in folder.setFlags(uid, {"\\Seen"}).flags
    fresh = BlockingMaildirStore(tmp_path / "m").getFolder("INBOX")
    assert fresh.expunge([other]) == [other]
    assert [m.uid for m in fresh.messages()] == [uid]


def test_published_message_is_durable_and_keeps_one_uid_when_a_scan_sees_it_first(
    tmp_path: Path,
) -> None:
    folder = BlockingMaildirStore(tmp_path / "m").getFolder("INBOX")
    folder.messages()
    pending = folder.beginMessage()
    pending.write(b"Subject: published\r\n\r\nbody\r\n")
    pending.publish()
    assert len(os.listdir(tmp_path / "m" / "new")) == 1
    assert os.listdir(tmp_path / "m" / "tmp") == []
    folder.refresh()
    [seen] = folder.messages()
    assert pending.commit() == seen.uid
    assert [m.uid for m in folder.messages()] == [seen.uid]


def test_abort_after_publish_removes_the_placed_file(tmp_path: Path) -> None:
    folder = BlockingMaildirStore(tmp_path / "m").getFolder("INBOX")
    pending = folder.beginMessage()
    pending.write(b"Subject: gone\r\n\r\nbody\r\n")
    pending.publish()
    pending.abort()
    assert os.listdir(tmp_path / "m" / "new") == []
    assert folder.messages() == ()


def test_large_message_is_written_to_tmp_while_it_arrives(store: MaildirStore, root: Path) -> None:
    inbox = store.getFolder("INBOX")
    pending = inbox.beginMessage()
    pending.write(b"x" * (1024 * 1024))
    [name] = files(root / "tmp")
    assert (root / "tmp" / name).stat().st_size == 1024 * 1024
    pending.abort()
    assert files(root / "tmp") == []
