"""
A store used from plain, synchronous code: command-line tools, scripts and
tests that have no reactor running.

The store seam answers disk work with Deferreds.  A store whose file work
is L{tmail.store.filework.InlineFileWork} has done that work by the time
it returns, so every Deferred it gives has already fired;
L{blocking} wraps such a store so that its operations (and those of its
folders and pending messages) return the results themselves, as before
there was a seam.  A server must not use it from its reactor thread: the
file work would stall every session.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from zope.interface import directlyProvides, providedBy

from tmail.interfaces import IMailFolder, IPendingMessage


class AnsweredLater(RuntimeError):
    """A store wrapped by L{blocking} answered with a Deferred that had not fired."""


def resultOf(value: Any) -> Any:
    """
    C{value}, or the result of C{value} when it is a L{Deferred} that has
    fired (its failure raised); L{AnsweredLater} when it has not.
    """
    if not isinstance(value, Deferred):
        return value
    outcome: list[Any] = []
    value.addBoth(outcome.append)
    if not outcome:
        raise AnsweredLater("the store answered later: give it file work done inline")
    result = outcome[0]
    if isinstance(result, Failure):
        result.raiseException()
    value.addErrback(lambda _: None)
    return result


class _Blocking:
    """
    Provides what C{inner} provides, with every answer unwrapped by
    L{resultOf}; listeners hear of the facade of a folder, not the folder.
    """

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._told: dict[Any, Any] = {}
        directlyProvides(self, providedBy(inner))

    def __repr__(self) -> str:
        return repr(self._inner)

    def __setattr__(self, name: str, value: Any) -> None:
        """Set C{name} on what is wrapped (a test replacing a method), but its own."""
        if name in ("_inner", "_told") or name.startswith("__"):
            object.__setattr__(self, name, value)
        else:
            setattr(self._inner, name, value)

    def __eq__(self, other: object) -> bool:
        return bool(unwrap(other) is self._inner)

    def __hash__(self) -> int:
        return hash(id(self._inner))

    def addListener(self, listener: Any) -> None:
        def told(folder: Any) -> None:
            listener(blocking(folder))

        self._told[listener] = told
        self._inner.addListener(told)

    def removeListener(self, listener: Any) -> None:
        told = self._told.pop(listener, None)
        if told is not None:
            self._inner.removeListener(told)

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._inner, name)
        if not callable(value) or isinstance(value, type):
            return value

        def method(*args: Any, **kwargs: Any) -> Any:
            args = tuple(unwrap(arg) for arg in args)
            kwargs = {key: unwrap(arg) for key, arg in kwargs.items()}
            return _wrapped(resultOf(value(*args, **kwargs)))

        return method


def _wrapped(result: Any) -> Any:
    if IMailFolder.providedBy(result):
        return blocking(result)
    if IPendingMessage.providedBy(result):
        return _Blocking(result)
    return result


def blocking(inner: Any) -> Any:
    """
    C{inner} (a store, folder or pending message) answering synchronously;
    the same facade each time for the same object, so identity holds.
    """
    if isinstance(inner, _Blocking):
        return inner
    facade = _facades.get(id(inner))
    if facade is None or facade._inner is not inner:
        facade = _facades[id(inner)] = _Blocking(inner)
    return facade


#: The facade of each object wrapped (pending messages are wrapped anew).
_facades: dict[int, _Blocking] = {}


def unwrap(value: Any) -> Any:
    """What L{blocking} wrapped, or C{value} itself."""
    return value._inner if isinstance(value, _Blocking) else value
