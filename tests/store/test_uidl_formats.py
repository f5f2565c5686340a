"""UIDL formats: Dovecot's pop3_uidl_format variables, and tmail's hash."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tmail.interfaces import MessageInfo
from tmail.store.uidl import DEFAULT, compileFormat

INFO = MessageInfo(26, frozenset(), 10, 0.0, "1700000000.M1P2Q3.host,S=10")


@pytest.mark.parametrize(
    ("spec", "uidl"),
    [
        (DEFAULT, b"0000001a6553f100"),
        ("%u.%v", b"26.1700000000"),
        ("%08u-%Xv", b"00000026-6553f100"),
        ("%f", b"1700000000.M1P2Q3.host,S=10"),
        ("x%%%u", b"x%26"),
    ],
)
def test_dovecot_variables(spec: str, uidl: bytes) -> None:
    assert compileFormat(spec)(INFO, 1_700_000_000) == uidl


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("", "empty"),
        ("%v", "needs %u or %f"),
        ("%m", "unknown variable"),
        ("a b%u", "printable"),
        ("%08Xf", "no width"),
        ("%u%", "unknown variable"),
    ],
)
def test_bad_formats_are_refused_with_the_reason(spec: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        compileFormat(spec)


@given(st.integers(1, 2**32 - 1), st.integers(1, 2**32 - 1))
def test_the_default_form_is_unique_per_uid_and_uidvalidity(uid: int, validity: int) -> None:
    info = MessageInfo(uid, frozenset(), 1, 0.0, "k")
    made = compileFormat(DEFAULT)(info, validity)
    assert (int(made[:8], 16), int(made[8:], 16)) == (uid, validity)
