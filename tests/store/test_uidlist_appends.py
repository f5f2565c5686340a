"""
A uidlist another process appended to is read from where the last read
ended, and always ends up as a whole read of the file would.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tmail.store import uidlist
from tmail.store.uidlist import UidListData, UidListFile

HEADER = "3 V1700000000 N1 Gabcdef\n"


def line(uid: int, extra: str = "") -> str:
    return f"{uid} {extra} :{uid}.M{uid}P1.host\n" if extra else f"{uid} :{uid}.M{uid}P1.host\n"


def appendText(path: Path, text: str) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(text)


def wholeRead(path: Path) -> UidListData:
    return uidlist.parse(path.read_text())


def test_lines_another_writer_appended_are_read_without_reading_the_file_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "dovecot-uidlist"
    path.write_text(HEADER + "".join(line(uid) for uid in range(1, 1001)))
    reader = UidListFile(path)
    assert reader.refresh()
    parses: list[str] = []
    original = uidlist.parse

    def counting(text: str) -> UidListData:
        parses.append(text)
        return original(text)

    monkeypatch.setattr(uidlist, "parse", counting)
    appendText(path, line(1001, "W4096") + line(1002))
    assert reader.refresh()
    monkeypatch.undo()
    assert parses == []
    assert reader.data is not None
    assert reader.data.uids == wholeRead(path).uids
    assert reader.data.fields == {"1001.M1001P1.host": "W4096"}
    assert reader.data.nextUid == 1003


def test_a_line_still_being_written_is_read_once_it_is_complete(tmp_path: Path) -> None:
    path = tmp_path / "dovecot-uidlist"
    path.write_text(HEADER + line(1))
    reader = UidListFile(path)
    reader.refresh()
    appendText(path, line(2)[:5])
    reader.refresh()
    assert reader.data is not None and list(reader.data.uids.values()) == [1]
    appendText(path, line(2)[5:] + line(3))
    reader.refresh()
    assert list(reader.data.uids.values()) == [1, 2, 3]


def test_a_rewritten_file_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "dovecot-uidlist"
    path.write_text(HEADER + line(1) + line(2))
    reader = UidListFile(path)
    reader.refresh()
    replacement = tmp_path / "new"
    replacement.write_text(HEADER + line(2) + line(3) + line(4) + line(5))
    os.replace(replacement, path)
    reader.refresh()
    assert reader.data is not None
    assert list(reader.data.uids.values()) == [2, 3, 4, 5]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("append"), st.integers(1, 5), st.booleans()),
            st.tuples(st.just("partial"), st.integers(1, 12), st.booleans()),
            st.tuples(st.just("rewrite"), st.integers(0, 3), st.booleans()),
            st.tuples(st.just("lower"), st.integers(1, 3), st.booleans()),
        ),
        max_size=12,
    )
)
def test_any_appends_and_rewrites_read_as_the_whole_file(
    steps: list[tuple[str, int, bool]],
) -> None:
    """
    Lines appended (with fields or not), half lines, rewrites and lines
    with a UID lower than the last (which a whole read sorts): the reader
    always holds what a whole read of the file gives.
    """
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "dovecot-uidlist"
        path.write_text(HEADER + line(1))
        reader = UidListFile(path)
        reader.refresh()
        nextUid, tail = 2, ""
        for kind, count, extra in steps:
            if kind == "append":
                added = (line(nextUid + i, "W10" if extra else "") for i in range(count))
                text = tail + "".join(added)
                tail = ""
                nextUid += count
                appendText(path, text)
            elif kind == "partial":
                whole = line(nextUid)
                cut = min(count, len(whole) - 1)
                appendText(path, whole[:cut])
                tail = whole[cut:]
                nextUid += 1
            elif kind == "rewrite":
                data = wholeRead(path) if not tail else None
                if data is None:
                    continue
                kept = dict(list(data.uids.items())[count:])
                data.uids = kept
                replacement = Path(folder) / "new"
                replacement.write_bytes(uidlist.serialize(data))
                os.replace(replacement, path)
            elif kind == "lower" and not tail:
                appendText(path, f"{count} :lower{nextUid}.host\n")
            reader.refresh()
            expected = wholeRead(path)
            assert reader.data is not None
            assert reader.data.uids == expected.uids
            assert list(reader.data.uids.values()) == sorted(reader.data.uids.values())
            assert reader.data.fields == expected.fields
            assert reader.data.nextUid == expected.nextUid


def test_two_processes_delivering_in_turn_do_not_read_each_others_uidlist_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    Two store objects (as two worker processes) deliver into one folder in
    turn: each reads only the lines the other appended, not the whole
    uidlist of the folder again on every delivery.
    """
    from tmail.store.maildir import BlockingMaildirStore

    stores = [BlockingMaildirStore(tmp_path), BlockingMaildirStore(tmp_path)]
    parses: list[int] = []
    original = uidlist.parse

    def counting(text: str) -> UidListData:
        parses.append(len(text))
        return original(text)

    monkeypatch.setattr(uidlist, "parse", counting)
    for i in range(200):
        pending = stores[i % 2].getFolder("INBOX").beginMessage()
        pending.write(b"Subject: %d\r\n\r\nbody\r\n" % i)
        pending.commit()
    assert len(parses) <= 2
    listings = [[m.uid for m in store.getFolder("INBOX").messages()] for store in stores]
    assert listings[0] == listings[1] == list(range(1, 201))
