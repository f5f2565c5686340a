"""The Maildir's C{tmail-special-use} file: format, RENAME and DELETE, junk lines."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from tmail.interfaces import ISpecialUseStore
from tmail.store import specialuse
from tmail.store.maildir import BlockingMaildirStore

_USES = st.frozensets(st.sampled_from(["\\Sent", "\\Drafts", "\\Trash", "\\Junk", "\\Archive"]))
_LEVEL = st.text(
    st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="./"),
    min_size=1,
    max_size=8,
)
_NAMES = (
    st.lists(_LEVEL, min_size=1, max_size=3)
    .map("/".join)
    .filter(lambda name: name.split("/")[0].upper() != "INBOX")
)


@given(st.dictionaries(_NAMES, _USES, max_size=6))
def test_file_round_trips(attributes: dict[str, frozenset[str]]) -> None:
    text = specialuse.serialize(attributes).decode("utf-8", "surrogateescape")
    assert specialuse.parse(text) == {name: uses for name, uses in attributes.items() if uses}


def test_junk_lines_are_skipped() -> None:
    text = "tmail-special-use 1\nno tab\n..\t\\Sent\nOk\t\\Sent junk \\Trash\nEmpty\t\n"
    assert specialuse.parse(text) == {"Ok": {"\\Sent", "\\Trash"}}


def test_rename_moves_children_and_replaces_stale_entries() -> None:
    before = {"A": frozenset({"\\Sent"}), "A/B": frozenset({"\\Junk"}), "C": frozenset({"\\X"})}
    assert specialuse.renamed(before, "A", "C", "/") == {
        "C": frozenset({"\\Sent"}),
        "C/B": frozenset({"\\Junk"}),
    }
    assert specialuse.renamed(before, "AB", "Z", "/") == before


def test_store_keeps_attributes_through_rename_and_delete(tmp_path: Path) -> None:
    store = BlockingMaildirStore(tmp_path / "alice")
    assert ISpecialUseStore.providedBy(store)
    assert store.specialUse() is None
    store.createFolder("Old/Sub")
    store.createFolder("Keep")
    store.deleteFolder("Keep")
    assert store.specialUse() is None, "a delete does not make the record"
    store.updateSpecialUse({"Old": frozenset({"\\Archive"}), "Old/Sub": frozenset({"\\Sent"})})
    store.renameFolder("Old", "New")
    assert store.specialUse() == {"New": {"\\Archive"}, "New/Sub": {"\\Sent"}}
    store.deleteFolder("New")
    assert store.specialUse() == {"New/Sub": {"\\Sent"}}
    store.updateSpecialUse({"New/Sub": frozenset()})
    assert store.specialUse() == {}
    assert (store.root / "tmail-special-use").read_bytes() == b"tmail-special-use 1\n"
    assert not list(store.root.glob("tmail-special-use.*")), "no lock or temporary file left"
    assert store.listFolders() == ["INBOX", "New/Sub"]
