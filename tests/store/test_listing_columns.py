"""
A folder's listing keeps its messages as columns and makes each
L{MessageInfo} when asked: whatever the messages, it reads back as they
were, and what it counts (unseen, first unseen, recent, deleted, sizes, the
positions of each set of flags, look-ups by UID) is what counting the
messages one by one gives.
"""

from __future__ import annotations

import array

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tmail.interfaces import MessageInfo
from tmail.store import listing
from tmail.store.listing import Listing

FLAGS = st.frozensets(st.sampled_from(["\\Seen", "\\Deleted", "\\Flagged", "$Junk"]))
#: More distinct sets of flags than are grouped in one C pass each.
MANY_FLAGS = st.frozensets(st.sampled_from(["\\Seen", "\\Deleted", *(f"$k{n}" for n in range(10))]))


@st.composite
def messages(
    draw: st.DrawFn, flags: st.SearchStrategy[frozenset[str]] = FLAGS
) -> list[MessageInfo]:
    uids = sorted(draw(st.sets(st.integers(1, 10_000), max_size=40)))
    return [
        MessageInfo(
            uid=uid,
            flags=draw(flags),
            size=draw(st.integers(0, 1 << 40)),
            internaldate=draw(st.floats(0, 2e9)),
            key=f"key{uid}",
            recent=draw(st.booleans()),
            modseq=draw(st.integers(0, 1 << 62)),
        )
        for uid in uids
    ]


@given(messages())
def test_a_listing_reads_back_its_messages(infos: list[MessageInfo]) -> None:
    listing = Listing(infos)
    assert len(listing) == len(infos)
    assert list(listing) == infos
    assert [listing[i] for i in range(len(infos))] == infos
    assert listing[1:3] == infos[1:3]
    if infos:
        assert listing[-1] == infos[-1]
    assert listing == infos


@given(messages(), st.integers(0, 10_001))
def test_a_listing_looks_messages_up_by_uid(infos: list[MessageInfo], uid: int) -> None:
    listing = Listing(infos)
    byUid = {info.uid: info for info in infos}
    assert listing.byUid().get(uid) == byUid.get(uid)
    assert (uid in listing.byUid()) == (uid in byUid)
    assert listing.flagsOf(uid) == (byUid[uid].flags if uid in byUid else None)


@given(st.one_of(messages(), messages(MANY_FLAGS)))
def test_a_listing_counts_as_its_messages_one_by_one(infos: list[MessageInfo]) -> None:
    assertCountedOneByOne(infos)


def assertCountedOneByOne(infos: list[MessageInfo]) -> None:
    facts = Listing(infos).facts()
    unseen = [i for i, info in enumerate(infos) if "\\Seen" not in info.flags]
    deleted = [info.size for info in infos if "\\Deleted" in info.flags]
    assert list(facts.uids) == [info.uid for info in infos]
    assert facts.unseen == len(unseen)
    assert facts.firstUnseen == (unseen[0] if unseen else -1)
    assert facts.recent == {info.uid for info in infos if info.recent}
    assert (facts.deleted, facts.deletedSize) == (len(deleted), sum(deleted))
    assert facts.size == sum(info.size for info in infos)
    assert facts.flagSets == {info.flags for info in infos}


@given(st.one_of(messages(), messages(MANY_FLAGS)))
def test_a_listing_knows_where_each_set_of_flags_is(infos: list[MessageInfo]) -> None:
    assertPositionsOneByOne(infos)


def assertPositionsOneByOne(infos: list[MessageInfo]) -> None:
    positions = Listing(infos).positionsByFlags()
    expected: dict[frozenset[str], list[int]] = {}
    for position, info in enumerate(infos):
        expected.setdefault(info.flags, []).append(position)
    assert {flags: list(found) for flags, found in positions.items()} == expected


def test_a_listing_with_more_sets_of_flags_than_a_byte_counts_them_all() -> None:
    """Past 256 distinct sets, the numbers no longer fit one byte each: counted another way."""
    infos = [
        MessageInfo(
            uid,
            frozenset({f"$k{uid % 300}", *(["\\Seen"] if uid % 7 else [])}),
            uid,
            1.0,
            f"k{uid}",
            False,
            uid,
        )
        for uid in range(1, 1001)
    ]
    assertCountedOneByOne(infos)
    assertPositionsOneByOne(infos)


def test_a_listing_made_from_columns_merges_equal_sets_of_flags() -> None:
    seen = frozenset({"\\Seen"})
    listing = Listing.fromColumns(
        array.array("q", [1, 2, 3]),
        array.array("I", [0, 1, 0]),
        [seen, frozenset({"\\Seen"})],
        array.array("q", [10, 20, 30]),
        array.array("d", [1.0, 2.0, 3.0]),
        ["a", "b", "c"],
        array.array("q", [5, 6, 7]),
        frozenset({3}),
    )
    assert list(listing.positionsByFlags()[seen]) == [0, 1, 2]
    assert listing.facts().unseen == 0
    assert listing[2] == MessageInfo(3, seen, 30, 3.0, "c", True, 7)


def test_look_ups_past_the_messages_kept_still_answer_each_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(listing, "_MADE_KEPT", 2)
    infos = [MessageInfo(uid, frozenset(), uid, 1.0, f"k{uid}", False, uid) for uid in range(1, 8)]
    byUid = Listing(infos).byUid()
    for _ in range(2):
        assert [byUid[info.uid] for info in infos] == infos
    assert byUid.get(8) is None
    with pytest.raises(KeyError):
        byUid[8]
