"""Folder-name validation, modified UTF-7 and the Maildir++ name mapping."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tmail.errors import InvalidFolderName
from tmail.store.maildir import BlockingMaildirStore
from tmail.store.naming import (
    decodeMUTF7,
    diskName,
    encodeMUTF7,
    nameFromDisk,
    normalizeName,
)


@pytest.mark.parametrize(
    ("text", "encoded"),
    [
        ("INBOX", "INBOX"),
        ("Entwürfe", "Entw&APw-rfe"),
        ("a&b", "a&-b"),
        ("台北", "&U,BTFw-"),
        ("日本語", "&ZeVnLIqe-"),
        ("😀", "&2D3eAA-"),
    ],
)
def test_modified_utf7_known_values(text: str, encoded: str) -> None:
    assert encodeMUTF7(text) == encoded
    assert decodeMUTF7(encoded) == text


component = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="/."), max_size=40)


@given(component)
def test_modified_utf7_round_trips(text: str) -> None:
    encoded = encodeMUTF7(text)
    assert encoded.isascii()
    assert "/" not in encoded and "." not in encoded
    assert decodeMUTF7(encoded) == text


@pytest.mark.parametrize(
    "bad",
    ["&", "&Jjo", "&Jjo!-", "ü", "&AGE-", "&U,BTFw-&ZeVnLIqe-", "&2D3-", "&A-"],
)
def test_modified_utf7_rejects_malformed_or_non_canonical(bad: str) -> None:
    with pytest.raises(ValueError):
        decodeMUTF7(bad)


@pytest.mark.parametrize(
    "name",
    [
        "",
        "/etc",
        "/",
        "../x",
        "a/../../b",
        "a/./b",
        "..",
        ".hidden",
        "a.b",
        "a//b",
        "a/",
        "nul\x00byte",
        "tab\there",
        "del\x7f",
        "x" * 255,
        "ü" * 100,
        "a/" + "x" * 254,
    ],
)
def test_invalid_names_are_rejected(name: str) -> None:
    with pytest.raises(InvalidFolderName):
        normalizeName(name)


def test_rejected_names_do_not_touch_the_disk(tmp_path: Path) -> None:
    store = BlockingMaildirStore(tmp_path / "Maildir")
    for name in ["../escape", "a/../../b", "/etc", ".hidden", "x\x00y"]:
        with pytest.raises(InvalidFolderName):
            store.createFolder(name)
        with pytest.raises(InvalidFolderName):
            store.getFolder(name)
    assert {p.name for p in tmp_path.iterdir()} <= {"Maildir"}
    assert store.listFolders() == ["INBOX"]


def test_dot_in_a_name_gets_a_clear_message() -> None:
    with pytest.raises(InvalidFolderName, match=r"'\.' cannot be used"):
        normalizeName("v1.2")


def test_inbox_is_case_insensitive_other_names_are_not() -> None:
    assert normalizeName("inbox") == "INBOX"
    assert normalizeName("InBoX/Sub") == "INBOX/Sub"
    assert normalizeName("Sent") != normalizeName("sent")


def test_disk_names() -> None:
    assert diskName("Archive/2025") == ".Archive.2025"
    assert diskName("Entwürfe") == ".Entw&APw-rfe"
    assert nameFromDisk(".Archive.2025") == "Archive/2025"
    assert nameFromDisk(".Entw&APw-rfe") == "Entwürfe"


@pytest.mark.parametrize(
    "entry", ["cur", "..x", ".", ".a..b", ".INBOX", ".bad&", ".Entw&AGE-rfe", ".a.", ".inbox.x"]
)
def test_foreign_directory_entries_are_not_folders(entry: str) -> None:
    assert nameFromDisk(entry) is None


@given(st.lists(component.filter(bool), min_size=1, max_size=3))
def test_names_map_to_disk_and_back(components: list[str]) -> None:
    name = "/".join(components)
    try:
        canonical = normalizeName(name)
    except InvalidFolderName:
        return
    if canonical == "INBOX":
        return
    entry = diskName(canonical)
    assert entry.startswith(".") and not entry.startswith("..")
    assert "/" not in entry
    assert nameFromDisk(entry) == canonical


def test_maildir_entry_names_as_folders_stay_inside_their_own_directory(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    store = BlockingMaildirStore(root)
    for name in ["cur", "new", "tmp", "maildirfolder", "dovecot-uidlist"]:
        store.createFolder(name)
        assert (root / f".{name}" / "maildirfolder").is_file()
    assert sorted(os.listdir(root / "cur")) == []
    assert not (root / "maildirfolder").exists()
    assert store.listFolders()[1:] == sorted(
        ["cur", "new", "tmp", "maildirfolder", "dovecot-uidlist"]
    )
