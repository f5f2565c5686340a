"""
The METADATA file of L{tmail.store.metadata}: any octets round-trip, a
refused change leaves the file as it was, a damaged file reads as empty.
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tmail.store import metadata

_NAMES = st.text(
    st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="\t"), min_size=1
).map(lambda name: "/private/" + name)


class MetadataFileTests(SynchronousTestCase):
    @given(st.dictionaries(_NAMES, st.binary()))
    def test_any_values_round_trip(self, entries: dict[str, bytes]) -> None:
        self.assertEqual(metadata.parse(metadata.serialize(entries)), entries)

    def test_a_refused_change_leaves_the_file_as_it_was(self) -> None:
        path = Path(self.mktemp())
        path.parent.mkdir(parents=True, exist_ok=True)
        metadata.update(path, {"/private/a": b"1\n2\x00"})
        before = path.read_bytes()

        def refuse(entries: dict[str, bytes]) -> None:
            raise ValueError("no")

        self.assertRaises(ValueError, metadata.update, path, {"/private/b": b"x"}, refuse)
        self.assertEqual(path.read_bytes(), before)
        self.assertFalse(path.with_name(path.name + ".lock").exists())
        self.assertEqual(metadata.read(path), {"/private/a": b"1\n2\x00"})

    def test_a_damaged_file_reads_as_empty(self) -> None:
        path = Path(self.mktemp())
        path.write_bytes(b"tmail-metadata 1\n/private/a\t100\nshort\n")
        self.assertEqual(metadata.read(path), {})
        path.write_bytes(b"something else")
        self.assertEqual(metadata.read(path), {})
