"""
Packed names (the base names of a folder taken up from its saved index)
read back as the names they were made from, one by one or all at once,
whatever the characters, including bytes that are not UTF-8 (kept with
surrogate escapes, as file names are).
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tmail.store.packednames import PackedNames, packNames

NAMES = st.lists(
    st.one_of(
        st.text(st.characters(blacklist_characters="\0", blacklist_categories=["Cs"]), min_size=1),
        st.binary(min_size=1)
        .filter(lambda raw: b"\0" not in raw)
        .map(lambda raw: raw.decode("utf-8", "surrogateescape")),
    ),
    max_size=30,
)


@given(NAMES)
def test_packed_names_read_back_one_by_one_and_all_at_once(names: list[str]) -> None:
    packed = packNames(names)
    assert len(packed) == len(names)
    assert [packed[i] for i in range(len(names))] == names
    assert packed.tolist() == names
    assert list(packed) == names
    assert packed[1:4] == names[1:4]
    if names:
        assert packed[-1] == names[-1]


@given(NAMES)
def test_packed_names_survive_their_bytes_being_copied(names: list[str]) -> None:
    """What a saved index stores (the block and the starts) is all it takes to read them again."""
    packed = packNames(names)
    again = PackedNames(bytes(packed.block), packed.starts[:])
    assert again.tolist() == names
    assert [again[i] for i in range(len(names))] == names


def test_lists_of_packed_names_are_each_their_own() -> None:
    packed = packNames(["a", "b"])
    first = packed.tolist()
    first.append("c")
    assert packed.tolist() == ["a", "b"]


def test_a_position_past_the_end_is_an_index_error() -> None:
    packed = packNames(["a"])
    with pytest.raises(IndexError):
        packed[1]
    with pytest.raises(IndexError):
        packed[-2]


def test_a_name_holding_a_nul_cannot_be_packed() -> None:
    with pytest.raises(ValueError):
        packNames(["a\0b"])


@given(NAMES, st.data())
def test_names_kept_are_those_marked_in_order(names: list[str], data: st.DataObject) -> None:
    keep = bytes(data.draw(st.lists(st.booleans(), min_size=len(names), max_size=len(names))))
    packed = packNames(names)
    kept = packed.kept(keep)
    expected = [name for name, marked in zip(names, keep, strict=True) if marked]
    assert kept.tolist() == expected
    assert [kept[i] for i in range(len(expected))] == expected
    assert packed.tolist() == names


@given(NAMES, NAMES)
def test_names_appended_are_read_back_and_views_keep_what_they_had(
    first: list[str], more: list[str]
) -> None:
    packed = packNames(first)
    view = packed.view()
    made = packed.tolist()
    for name in more:
        packed.append(name)
    assert packed.tolist() == first + more
    assert [packed[i] for i in range(len(first + more))] == first + more
    assert list(packed) == first + more
    assert view.tolist() == made == first
    assert list(view) == first
    assert len(view) == len(first)
    with pytest.raises(IndexError):
        view[len(first)]
    again = PackedNames(bytes(packed.block), packed.starts[:])
    assert again.tolist() == first + more


def test_a_view_is_not_appended_to() -> None:
    packed = packNames(["a"])
    view = packed.view()
    with pytest.raises(ValueError):
        view.append("c")
    packed.append("b")
    assert view.tolist() == ["a"]
