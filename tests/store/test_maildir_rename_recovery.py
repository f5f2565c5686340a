"""A folder rename interrupted half-way is finished by the next process to open the Maildir."""

from __future__ import annotations

import os
from pathlib import Path

from tmail.store.maildir import BlockingMaildirStore, MaildirStore


def deliver(store: MaildirStore, name: str, body: bytes) -> None:
    pending = store.getFolder(name).beginMessage()
    pending.write(body)
    pending.commit()


def test_a_journalled_rename_left_half_done_is_finished_on_open(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    store = BlockingMaildirStore(root)
    for name in ("Work", "Work/A", "Work/B"):
        store.createFolder(name)
        deliver(store, name, f"Subject: {name}\r\n\r\n".encode())
    # What a process killed after renaming the parent and one child leaves.
    (root / "tmail-rename.1.M1P1Q1.host").write_text(
        ".Work\t.Done\n.Work.A\t.Done.A\n.Work.B\t.Done.B\n"
    )
    os.rename(root / ".Work", root / ".Done")
    os.rename(root / ".Work.A", root / ".Done.A")

    reopened = BlockingMaildirStore(root)
    assert reopened.listFolders() == ["INBOX", "Done", "Done/A", "Done/B"]
    for name in ("Done", "Done/A", "Done/B"):
        [info] = reopened.getFolder(name).messages()
        with reopened.getFolder(name).openMessage(info.uid) as f:
            assert f.read() == f"Subject: Work{name[4:]}\r\n\r\n".encode()
    assert not [p for p in os.listdir(root) if p.startswith("tmail-rename")]


def test_a_finished_rename_leaves_no_journal(tmp_path: Path) -> None:
    store = BlockingMaildirStore(tmp_path / "Maildir")
    store.createFolder("Work/A")
    store.renameFolder("Work", "Done")
    assert store.listFolders() == ["INBOX", "Done", "Done/A"]
    assert not [p for p in os.listdir(tmp_path / "Maildir") if p.startswith("tmail-rename")]
