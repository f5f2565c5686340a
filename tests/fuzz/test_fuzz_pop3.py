"""
Fuzzed POP3 input in every session state (authorization, after USER,
after STLS, transaction): commands with mutated arguments, and raw bytes.
See L{support.fuzzing.replay} for what must hold after each input.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from support.fuzzing import replay
from support.fuzzinputs import pop3Programs, rawPrograms
from support.fuzzprofile import fuzzSettings
from support.fuzzsessions import POP3Session
from support.mailworld import MailWorld

STATES = st.sampled_from(POP3Session.states)


@fuzzSettings(1.5)
@given(state=STATES, chunks=pop3Programs())
def test_pop3_commands_in_every_state_within_budget(
    world: MailWorld, state: str, chunks: list[bytes]
) -> None:
    replay(world, "pop3", state, chunks)


@fuzzSettings(0.5)
@given(state=STATES, chunks=rawPrograms())
def test_pop3_random_bytes_in_every_state_within_budget(
    world: MailWorld, state: str, chunks: list[bytes]
) -> None:
    replay(world, "pop3", state, chunks)
