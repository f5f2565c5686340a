"""
Fuzzed IMAP input in every session state (L{IMAPSession.states}): commands
of the grammar with mutated arguments, and raw bytes.  See
L{support.fuzzing.replay} for what must hold after each input.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from support.fuzzing import replay
from support.fuzzinputs import imapPrograms, rawPrograms
from support.fuzzprofile import fuzzSettings
from support.fuzzsessions import IMAPSession
from support.mailworld import MailWorld

STATES = st.sampled_from(IMAPSession.states)


@fuzzSettings(3.0)
@given(state=STATES, chunks=imapPrograms())
def test_imap_commands_in_every_state_within_budget(
    world: MailWorld, state: str, chunks: list[bytes]
) -> None:
    replay(world, "imap", state, chunks)


@fuzzSettings(1.0)
@given(state=STATES, chunks=rawPrograms())
def test_imap_random_bytes_in_every_state_within_budget(
    world: MailWorld, state: str, chunks: list[bytes]
) -> None:
    replay(world, "imap", state, chunks)
