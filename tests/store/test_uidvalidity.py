"""The mail root's record of handed-out UIDVALIDITY values (Dovecot's C{dovecot-uidvalidity})."""

from __future__ import annotations

import time
from pathlib import Path

from tmail.store.uidvalidity import FILENAME, nextUidValidity


def test_values_increase_even_within_one_second(tmp_path: Path) -> None:
    values = [nextUidValidity(tmp_path) for _ in range(5)]
    assert values == sorted(set(values))
    assert values[0] >= int(time.time()) - 1


def test_the_file_and_marker_are_the_ones_dovecot_keeps(tmp_path: Path) -> None:
    value = nextUidValidity(tmp_path)
    assert (tmp_path / FILENAME).read_text() == f"{value:08x}"
    markers = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(FILENAME + "."))
    assert markers == [f"{FILENAME}.{value:08x}"]


def test_a_value_recorded_by_another_server_is_continued(tmp_path: Path) -> None:
    future = int(time.time()) + 10_000
    (tmp_path / FILENAME).write_text(f"{future:08x}")
    assert nextUidValidity(tmp_path) == future + 1


def test_a_marker_alone_is_enough_to_continue(tmp_path: Path) -> None:
    future = int(time.time()) + 10_000
    (tmp_path / f"{FILENAME}.{future:08x}").touch()
    assert nextUidValidity(tmp_path) == future + 1


def test_a_damaged_file_falls_back_to_the_clock(tmp_path: Path) -> None:
    (tmp_path / FILENAME).write_text("not hex")
    assert nextUidValidity(tmp_path) >= int(time.time()) - 1


def test_not_before_is_respected(tmp_path: Path) -> None:
    floor = int(time.time()) + 50
    assert nextUidValidity(tmp_path, notBefore=floor) == floor + 1
