"""
What the contract mixins share: calling a store or folder method whether
it answers at once or with a L{Deferred}, and a few steps every test takes.

Every call goes through L{maybeDeferred}, so the same tests hold for a
store that answers synchronously and for one whose disk or network work
returns Deferreds (the store seam's target).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any, TypeVar, cast, overload
from unittest import SkipTest

from twisted.internet.defer import Deferred, maybeDeferred
from zope.interface.interface import InterfaceClass
from zope.interface.verify import verifyObject

from tmail.interfaces import IMailFolder, IPendingMessage
from tmail.store.blocking import unwrap

T = TypeVar("T")
E = TypeVar("E", bound=BaseException)

if TYPE_CHECKING:
    import unittest

    class TestCaseBase(unittest.TestCase):
        """
        What the mixins are mixed into (a trial C{TestCase}), for the type
        checker only, so that a mixin adds no test case class of its own.
        """

        def assertFailure(self, deferred: Deferred[Any], *expected: type[E]) -> Deferred[E]: ...

        def mktemp(self) -> str: ...

else:
    TestCaseBase = object

__all__ = [
    "MESSAGE",
    "TestCaseBase",
    "call",
    "deliver",
    "read",
    "requireDeferredAnswers",
    "requireProvider",
    "verifyProvided",
]

#: A small message with CRLF line ends, as front ends hand them over.
MESSAGE = (
    b"From: Contract Tests <contract@example.org>\r\n"
    b"To: user@example.test\r\n"
    b"Subject: a message for the store contract\r\n"
    b"\r\n"
    b"The body.\r\n"
)


@overload
def call(function: Callable[..., Deferred[T]], *args: Any, **kwargs: Any) -> Deferred[T]: ...


@overload
def call(
    function: Callable[..., Coroutine[Any, Any, T]], *args: Any, **kwargs: Any
) -> Deferred[T]: ...


@overload
def call(function: Callable[..., T | Deferred[T]], *args: Any, **kwargs: Any) -> Deferred[T]: ...


def call(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred[Any]:
    """
    Call C{function} and answer with a L{Deferred} of its result, whether it
    returned a value, a L{Deferred} or a coroutine, or raised.
    """
    return maybeDeferred(function, *args, **kwargs)


async def deliver(
    folder: IMailFolder,
    body: bytes = MESSAGE,
    flags: Iterable[str] = (),
    internaldate: float | None = None,
) -> int:
    """Write C{body} into C{folder} through a pending message; the new UID."""
    pending: IPendingMessage = await call(folder.beginMessage, tuple(flags), internaldate)
    await call(pending.write, body)
    uid: int = await call(pending.commit)
    return uid


async def read(folder: IMailFolder, uid: int) -> bytes:
    """The raw bytes of message C{uid}."""
    opened = await call(folder.openMessage, uid)
    with opened:
        data: bytes = opened.read()
    return data


def requireDeferredAnswers(testCase: object, candidate: object) -> None:
    """
    Skip a test of the store seam's Deferreds when C{candidate} answers its
    disk and network operations with plain values, as the interfaces allow
    a store written before the seam: one wrapped by
    L{tmail.store.blocking.blocking}, or one whose test case sets
    C{answersAtOnce}.
    """
    if unwrap(candidate) is not candidate:
        raise SkipTest(
            "tmail.store.blocking answers with the results of the store's Deferreds, by design"
        )
    if getattr(testCase, "answersAtOnce", False):
        raise SkipTest(f"{type(testCase).__name__} declares a store that answers at once")


def requireProvider(candidate: object, interface: type[T]) -> T:
    """
    C{candidate} as a provider of the optional C{interface}; skip the test
    when it does not provide it.
    """
    zopeInterface = cast(InterfaceClass, interface)
    provided: bool = zopeInterface.providedBy(candidate)
    if not provided:
        raise SkipTest(f"{type(candidate).__name__} does not provide {zopeInterface.__name__}")
    return cast(T, candidate)


def verifyProvided(candidate: object, interfaces: Iterable[InterfaceClass]) -> list[str]:
    """
    Verify C{candidate} against each of C{interfaces} it claims to provide
    (L{verifyObject}: every method and attribute present, with compatible
    signatures); the names of those it provides.
    """
    provided: list[str] = []
    for interface in interfaces:
        claimed: bool = interface.providedBy(candidate)
        if claimed:
            verifyObject(interface, candidate)
            provided.append(interface.__name__)
    return provided
