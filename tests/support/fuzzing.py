"""
Replay one fuzzed input against one protocol in one state, within a budget:
the core of the fuzzing tests (C{tests/fuzz}) and of C{make fuzz}.

An input fails when the server logged an unhandled error, said anything
outside its protocol's grammar or gave its internals away in a reply, did
not answer a NOOP afterwards (nor close with a goodbye), or went over the
per-input L{Budget} of time and memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from twisted.logger import ILogObserver, LogEvent, LogLevel, formatEvent, globalLogPublisher
from zope.interface import provider

from support.budget import Budget, measured
from support.fuzzsessions import SESSIONS, Outcome
from support.mailworld import MailWorld


@contextmanager
def loggedErrors() -> Iterator[list[str]]:
    """Collect what is logged as an error (with or without a traceback) while the block runs."""
    found: list[str] = []

    @provider(ILogObserver)
    def observe(event: LogEvent) -> None:
        failure = event.get("log_failure")
        level = event.get("log_level")
        if failure is None and level not in (LogLevel.error, LogLevel.critical):
            return
        text = formatEvent(event)
        if failure is not None:
            text += "\n" + failure.getTraceback()
        found.append(text)

    globalLogPublisher.addObserver(observe)
    try:
        yield found
    finally:
        globalLogPublisher.removeObserver(observe)


def replay(
    world: MailWorld, kind: str, state: str, chunks: list[bytes], budget: Budget | None = None
) -> Outcome:
    """
    Run C{chunks} (written one after the other) through a fresh C{kind}
    session in C{state}; raise C{AssertionError} describing every problem.
    """
    budget = budget or Budget()
    what = f"{kind} in state {state}"
    with world.copy() as fixture, loggedErrors() as errors:
        with measured(budget, what):
            session = SESSIONS[kind](fixture, state)
            try:
                session.feed(chunks)
                outcome = session.finish()
            finally:
                session.close()
    problems = outcome.problems + [f"logged: {error}" for error in errors]
    if problems:
        raise AssertionError(
            f"{what}, input {chunks!r}:\n  " + "\n  ".join(problems) + f"\noutput tail: {outcome.tail!r}"
        )
    return outcome
