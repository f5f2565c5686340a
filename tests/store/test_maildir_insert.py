"""
Inserting into a message being delivered (L{IInsertablePendingMessage}): how
header fields known only at the end of SMTP DATA get in front of content
the Maildir store has already written.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from tmail.errors import OverQuota
from tmail.interfaces import IInsertablePendingMessage
from tmail.store.maildir import BlockingMaildirStore
from tmail.store.quota import QuotaLimits

HEAD = b"Return-Path: <a@example.org>\r\nReceived: from x\r\n"
BODY = b"Subject: hi\r\n\r\n" + b"body line\r\n" * 20_000  # 220 KB: well past one buffer
ADDED = b"Authentication-Results: mx.example.test; dkim=pass\r\n"


def stored(root: Path) -> bytes:
    [name] = os.listdir(root / "new")
    return (root / "new" / name).read_bytes()


def test_maildir_pending_messages_can_insert(tmp_path: Path) -> None:
    inbox = BlockingMaildirStore(tmp_path / "m").getFolder("INBOX")
    assert IInsertablePendingMessage.providedBy(inbox.beginMessage())


def test_insert_into_a_small_message_still_in_memory(tmp_path: Path) -> None:
    """Nothing in the file yet: the bytes land in place, no copy made."""
    root = tmp_path / "m"
    inbox = BlockingMaildirStore(root).getFolder("INBOX")
    pending = inbox.beginMessage()
    pending.write(HEAD + b"Subject: hi\r\n\r\nbody\r\n")
    assert os.listdir(root / "tmp") == []
    pending.insert(len(b"Return-Path: <a@example.org>\r\n"), ADDED)
    pending.commit()
    assert stored(root) == (
        b"Return-Path: <a@example.org>\r\n"
        + ADDED
        + b"Received: from x\r\nSubject: hi\r\n\r\nbody\r\n"
    )


def test_insert_in_front_of_content_already_in_the_file(tmp_path: Path) -> None:
    """
    A large message is in C{tmp/} before it ends; fields inserted then are
    in place in the delivered file, whose name carries the size with them,
    and no temporary file is left over.
    """
    root = tmp_path / "m"
    inbox = BlockingMaildirStore(root).getFolder("INBOX")
    pending = inbox.beginMessage()
    pending.write(HEAD)
    pending.write(BODY)
    assert os.listdir(root / "tmp") != []
    at = len(b"Return-Path: <a@example.org>\r\n")
    pending.insert(at, ADDED)
    pending.insert(at + len(ADDED), b"X-Second: yes\r\n")
    pending.write(b"last line\r\n")
    uid = pending.commit()
    expected = HEAD[:at] + ADDED + b"X-Second: yes\r\n" + HEAD[at:] + BODY + b"last line\r\n"
    assert stored(root) == expected
    assert os.listdir(root / "tmp") == []
    [info] = inbox.messages()
    assert (info.uid, info.size) == (uid, len(expected))
    with inbox.openMessage(uid) as f:
        assert f.read() == expected


def test_insert_past_the_end_is_refused(tmp_path: Path) -> None:
    pending = BlockingMaildirStore(tmp_path / "m").getFolder("INBOX").beginMessage()
    pending.write(b"abc")
    with pytest.raises(ValueError):
        pending.insert(4, b"x")
    pending.insert(3, b"d")
    pending.abort()
    with pytest.raises(ValueError):
        pending.insert(0, b"x")


def test_abort_after_an_insert_leaves_no_file(tmp_path: Path) -> None:
    root = tmp_path / "m"
    pending = BlockingMaildirStore(root).getFolder("INBOX").beginMessage()
    pending.write(HEAD + BODY)
    pending.insert(0, ADDED)
    pending.publish()
    pending.abort()
    assert os.listdir(root / "tmp") == os.listdir(root / "new") == []


def test_quota_counts_the_inserted_fields(tmp_path: Path) -> None:
    """The quota check at publish sees the message as it will be stored."""
    root = tmp_path / "m"
    size = len(HEAD + BODY)
    store = BlockingMaildirStore(root, quota=lambda: QuotaLimits(storage=size))
    pending = store.getFolder("INBOX").beginMessage()
    pending.write(HEAD + BODY)
    pending.insert(0, ADDED)
    with pytest.raises(OverQuota):
        pending.commit()
    assert os.listdir(root / "tmp") == os.listdir(root / "new") == []


def test_insert_where_the_kernel_cannot_copy_between_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Filesystems without C{copy_file_range} get the same file, copied by reads."""

    def unsupported(*args: object) -> int:
        raise OSError(errno.EXDEV, "cross-device")

    monkeypatch.setattr(os, "copy_file_range", unsupported)
    root = tmp_path / "m"
    pending = BlockingMaildirStore(root).getFolder("INBOX").beginMessage()
    pending.write(HEAD + BODY)
    pending.insert(0, ADDED)
    pending.commit()
    assert stored(root) == ADDED + HEAD + BODY


def test_linked_copies_share_the_inserted_fields(tmp_path: Path) -> None:
    """
    A message for two users is one file linked into both INBOXes: fields
    inserted into content already on disk are in both copies.
    """
    alice = BlockingMaildirStore(tmp_path / "alice").getFolder("INBOX")
    bob = BlockingMaildirStore(tmp_path / "bob").getFolder("INBOX")
    source = alice.beginMessage()
    source.write(HEAD + BODY)
    source.insert(0, ADDED)
    linked = bob.linkedCopy(source)
    for pending in (source, linked):
        pending.publish()
        pending.commit()
    assert stored(tmp_path / "alice") == stored(tmp_path / "bob") == ADDED + HEAD + BODY
    assert os.listdir(tmp_path / "alice" / "tmp") == os.listdir(tmp_path / "bob" / "tmp") == []
