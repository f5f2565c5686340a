"""
Long sessions for the long run only (C{make fuzz}): hundreds of pipelined
commands per input in every state of every protocol, so that state carried
from command to command (transactions, selected folders, deleted messages,
pending literals) is fuzzed too.  Each input has the time and memory budget
of any other.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from support.fuzzing import replay
from support.fuzzinputs import imapLine, pop3Line, program, smtpLine
from support.fuzzprofile import fuzzSettings
from support.fuzzsessions import SESSIONS
from support.mailworld import MailWorld

pytestmark = pytest.mark.slow

LINES = {"imap": imapLine(), "pop3": pop3Line(), "smtp": smtpLine(), "submission": smtpLine()}
LINES["lmtp"] = smtpLine()


@st.composite
def sessions(draw: st.DrawFn) -> tuple[str, str, list[bytes]]:
    kind = draw(st.sampled_from(sorted(SESSIONS)))
    state = draw(st.sampled_from(SESSIONS[kind].states))
    chunks = draw(program(st.lists(LINES[kind], min_size=50, max_size=400)))
    return kind, state, chunks


@fuzzSettings(0.05)
@given(session=sessions())
def test_long_pipelined_sessions_within_budget(
    world: MailWorld, session: tuple[str, str, list[bytes]]
) -> None:
    kind, state, chunks = session
    replay(world, kind, state, chunks)
