"""
The file of a message expunged while a reader still holds it is kept aside
in the folder's C{tmp/} (and readable) until every such reader lets it go.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from support.disk import fill as fillDisk
from support.disk import smallDisk
from tmail.store import modseq
from tmail.store.blocking import unwrap
from tmail.store.maildir import BlockingMaildirStore, MaildirFolder, MaildirStore

MESSAGE = b"Subject: kept\r\n\r\nstill here\r\n"


class Reader:
    """A reader holding a set of UIDs, as an IMAP session's view does."""

    def __init__(self, *uids: int) -> None:
        self.uids = set(uids)

    def __call__(self, uid: int) -> bool:
        return uid in self.uids


def fill(folder: MaildirFolder, count: int) -> None:
    for _ in range(count):
        pending = folder.beginMessage()
        pending.write(MESSAGE)
        pending.commit()
    folder.messages()


@pytest.fixture
def store(tmp_path: Path) -> MaildirStore:
    return BlockingMaildirStore(tmp_path / "mail")


def tmpFiles(folder: MaildirFolder) -> list[str]:
    return sorted(p.name for p in (folder._path / "tmp").iterdir())


def test_a_message_no_reader_holds_is_unlinked_at_once(store: MaildirStore) -> None:
    inbox = store.getFolder("INBOX")
    fill(inbox, 2)
    inbox.addReader(Reader(2))
    assert inbox.expunge([1]) == [1]
    assert tmpFiles(inbox) == []
    with pytest.raises(KeyError):
        inbox.openMessage(1)


def test_a_held_message_stays_readable_until_every_holder_lets_go(store: MaildirStore) -> None:
    inbox = store.getFolder("INBOX")
    fill(inbox, 1)
    first, second = Reader(1), Reader(1)
    inbox.addReader(first)
    inbox.addReader(second)
    inbox.expunge([1])
    assert [m.uid for m in inbox.messages()] == []
    with inbox.openMessage(1) as f:
        assert f.read() == MESSAGE
    inbox.release(first, [1])
    assert len(tmpFiles(inbox)) == 1
    inbox.removeReader(second)
    assert tmpFiles(inbox) == []
    with pytest.raises(KeyError):
        inbox.openMessage(1)


def test_a_kept_file_follows_a_rename_of_its_folder(store: MaildirStore) -> None:
    folder = store.createFolder("Old")
    fill(folder, 1)
    reader = Reader(1)
    folder.addReader(reader)
    folder.expunge([1])
    store.renameFolder("Old", "New")
    renamed = store.getFolder("New")
    assert unwrap(renamed) is unwrap(folder)
    with folder.openMessage(1) as f:
        assert f.read() == MESSAGE
    folder.release(reader, [1])
    assert tmpFiles(renamed) == []


def test_a_file_deleted_by_another_program_is_gone(store: MaildirStore) -> None:
    inbox = store.getFolder("INBOX")
    fill(inbox, 1)
    inbox.addReader(Reader(1))
    inbox.expunge([1])
    for name in tmpFiles(inbox):
        (inbox._path / "tmp" / name).unlink()
    with pytest.raises(KeyError):
        inbox.openMessage(1)


def test_on_a_full_disk_nothing_is_kept_and_what_was_kept_goes(tmp_path: Path) -> None:
    """Deleting is what frees space: a held message's file is unlinked all the same."""
    with smallDisk(tmp_path / "mail", "1m") as disk:
        inbox = BlockingMaildirStore(disk / "erin").getFolder("INBOX")
        for _ in range(4):
            pending = inbox.beginMessage()
            pending.write(MESSAGE + (b"x" * 78 + b"\r\n") * 150)
            pending.commit()
        inbox.messages()
        reader = Reader(1, 2, 3, 4)
        inbox.addReader(reader)
        inbox.expunge([1])
        assert len(tmpFiles(inbox)) == 1
        filler = fillDisk(disk)
        log = disk / "erin" / modseq.FILENAME
        for n in range(1000):
            size = log.stat().st_size
            inbox.setFlags(2, {"\\Flagged"} if n % 2 == 0 else set())
            if log.stat().st_size == size:
                break
        before = os.statvfs(disk).f_bavail
        assert inbox.expunge([3, 4]) == [3, 4]
        assert tmpFiles(inbox) == []
        assert os.statvfs(disk).f_bavail > before
        filler.unlink()
