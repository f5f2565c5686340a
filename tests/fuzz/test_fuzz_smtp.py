"""
Fuzzed SMTP input to the MX, submission and LMTP in every session state
(greeted, after EHLO/LHLO, after STARTTLS, authenticated, in a mail
transaction, inside DATA, between BDAT chunks): commands of the grammar
with mutated arguments, message data, and raw bytes.  See
L{support.fuzzing.replay} for what must hold after each input.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from support.fuzzing import replay
from support.fuzzinputs import rawPrograms, smtpPrograms
from support.fuzzprofile import fuzzSettings
from support.fuzzsessions import LMTPSession, SMTPSession, SubmissionSession
from support.mailworld import MailWorld


@fuzzSettings(2.0)
@given(state=st.sampled_from(SMTPSession.states), chunks=smtpPrograms())
def test_mx_commands_in_every_state_within_budget(
    world: MailWorld, state: str, chunks: list[bytes]
) -> None:
    replay(world, "smtp", state, chunks)


@fuzzSettings(1.0)
@given(state=st.sampled_from(SubmissionSession.states), chunks=smtpPrograms())
def test_submission_commands_in_every_state_within_budget(
    world: MailWorld, state: str, chunks: list[bytes]
) -> None:
    replay(world, "submission", state, chunks)


@fuzzSettings(1.0)
@given(state=st.sampled_from(LMTPSession.states), chunks=smtpPrograms())
def test_lmtp_commands_in_every_state_within_budget(
    world: MailWorld, state: str, chunks: list[bytes]
) -> None:
    replay(world, "lmtp", state, chunks)


@fuzzSettings(1.0)
@given(
    kind=st.sampled_from(["smtp", "submission", "lmtp"]),
    state=st.sampled_from(["greeted", "mail", "data"]),
    chunks=rawPrograms(),
)
def test_smtp_random_bytes_within_budget(
    world: MailWorld, kind: str, state: str, chunks: list[bytes]
) -> None:
    replay(world, kind, state, chunks)
