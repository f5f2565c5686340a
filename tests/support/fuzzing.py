"""
Replay one fuzzed input against one protocol in one state, within a budget:
the core of the fuzzing tests (C{tests/fuzz}) and of C{make fuzz}.

An input fails when the server logged an unhandled error, said anything
outside its protocol's grammar or gave its internals away in a reply, did
not answer a NOOP afterwards (nor close with a goodbye), or went over the
per-input L{Budget} of time and memory.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from twisted.logger import ILogObserver, LogEvent, LogLevel, formatEvent, globalLogPublisher
from zope.interface import provider

from support.budget import Budget, OverBudget, measured
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
    with world.copy() as fixture, loggedErrors() as errors, measured(budget, what):
        session = SESSIONS[kind](fixture, state)
        try:
            session.feed(chunks)
            outcome = session.finish()
        finally:
            session.close()
    problems = outcome.problems + [f"logged: {error}" for error in errors]
    if problems:
        raise AssertionError(
            f"{what}, input {chunks!r}:\n  "
            + "\n  ".join(problems)
            + f"\noutput tail: {outcome.tail!r}"
        )
    return outcome


def replayAlone(kind: str, state: str, chunks: list[bytes], budget: Budget | None = None) -> None:
    """
    L{replay} in a process of its own, killed once the input has run for
    twice its time budget: for inputs that may hold the interpreter for
    minutes in code no signal interrupts (a backtracking regular expression).
    """
    budget = budget or Budget()
    worker = Path(__file__).with_name("replayworker.py")
    with subprocess.Popen(
        [sys.executable, str(worker)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as process:
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(pickle.dumps((kind, state, chunks, budget.seconds, budget.memory)))
        process.stdin.close()
        ready = process.stdout.readline()
        try:
            if ready == b"ready\n":
                process.wait(timeout=2 * budget.seconds)
            else:
                process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise OverBudget(
                f"{kind} in state {state}: still running after {2 * budget.seconds} s,"
                f" input {chunks!r:.300}"
            ) from None
        output = process.stdout.read().decode("utf-8", "replace")
        if process.returncode != 0:
            assert process.stderr is not None
            raise AssertionError(output or process.stderr.read().decode()[-3000:])
