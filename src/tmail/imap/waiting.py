"""
Waiting for the store: its disk and network operations may answer with a
L{Deferred} that fires later (a store working in a thread pool or over a
network), or at once with a plain value (L{tmail.interfaces}).

A command's steps are generators run by a L{twisted.internet.task.Cooperator},
which pauses a task while the Deferred a step yields is pending, but never
hands its result back to the generator.  L{waitFor} does: C{value = yield
from waitFor(folder.setFlags, uid, flags)} yields only when the store has
not answered yet, and raises the store's error inside the generator, where
its C{try} clauses can undo what must not stay half done.  A store that
answers at once costs no reactor turn.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from typing import Any, TypeVar

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.python.failure import Failure

T = TypeVar("T")

#: What a generator of steps yields: nothing, or a Deferred to wait for.
Steps = Generator[object, None, T]


def waitFor(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Steps[Any]:
    """
    Call C{call}; in a generator of steps, C{yield from} this: it yields
    the call's Deferred while it is pending, then returns its result or
    raises its error.
    """
    return waitOn(maybeDeferred(call, *args, **kwargs))


def waitOn(deferred: Deferred[T]) -> Steps[T]:
    """L{waitFor}, for a Deferred already made."""
    box: list[object] = []
    settled: Deferred[None] = deferred.addBoth(box.append)
    if not box:
        yield settled
    result = box[0]
    if isinstance(result, Failure):
        result.raiseException()
    return result  # type: ignore[return-value]


def answered(deferred: Deferred[T]) -> tuple[bool, T | Failure | None]:
    """
    Whether C{deferred} has fired, and its result (a L{Failure} for an
    error, which is then handled); a pending one is left alone.
    """
    box: list[Any] = []

    def keep(result: Any) -> Any:
        box.append(result)
        return None if isinstance(result, Failure) else result

    deferred.addBoth(keep)
    if not box:
        return False, None
    return True, box[0]


def finish(steps: Iterator[object]) -> Any:
    """
    Run a generator of steps to its end now; for a store that answers at
    once (tools and tests).  A step waiting for the store is an error.
    """
    while True:
        try:
            waiting = next(steps)
        except StopIteration as stop:
            return stop.value
        if isinstance(waiting, Deferred) and not answered(waiting)[0]:
            close = getattr(steps, "close", None)
            if close is not None:
                close()
            raise RuntimeError("The store did not answer at once")


def drive(steps: Iterator[object]) -> Deferred[Any]:
    """
    Run a generator of steps at once, pausing only while the store has not
    answered; fires with what it returns.  For short work (not a
    command's, which runs among the other sessions' through the session's
    cooperator).
    """
    done: Deferred[Any] = Deferred()

    def go(_: object = None) -> None:
        while True:
            try:
                waiting = next(steps)
            except StopIteration as stop:
                done.callback(stop.value)
                return
            except BaseException:
                done.errback()
                return
            if isinstance(waiting, Deferred) and not answered(waiting)[0]:
                waiting.addBoth(go)
                return

    go()
    return done
