"""The C{subscriptions} file in Dovecot's version 1 and version 2 forms."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tmail.errors import InvalidFolderName
from tmail.store.naming import normalizeName
from tmail.store.subscriptions import parse, serialize


def _valid(name: str) -> bool:
    try:
        return normalizeName(name) == name
    except InvalidFolderName:
        return False


LEVEL = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="/."), min_size=1, max_size=8
).filter(lambda s: s.strip() == s and s.upper() != "INBOX")


def test_written_as_dovecot_version_2_with_tab_separated_modified_utf7_levels() -> None:
    assert serialize(["INBOX", "Archive/2025", "Entwürfe"]) == (
        b"V\t2\n\nINBOX\nArchive\t2025\nEntw&APw-rfe\n"
    )


def test_reads_dovecot_version_1_storage_names_and_older_tmail_lines() -> None:
    assert parse("INBOX\nArchive.2025\nEntw&APw-rfe\nOld/Style\n") == [
        "INBOX",
        "Archive/2025",
        "Entwürfe",
        "Old/Style",
    ]


def test_tab_escapes_of_version_2_are_undone_and_control_characters_refused() -> None:
    assert parse("V\t2\n\nWe\x01tird\tName\nSent\n") == ["Sent"]


def test_duplicates_and_invalid_names_are_dropped() -> None:
    assert parse("V\t2\n\nSent\nSent\n\n\x00bad\n") == ["Sent"]


@given(st.lists(st.lists(LEVEL, min_size=1, max_size=3).map("/".join).filter(_valid), unique=True))
def test_what_is_written_reads_back_the_same(names: list[str]) -> None:
    assert parse(serialize(names).decode("utf-8")) == names
