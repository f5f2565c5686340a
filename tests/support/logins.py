"""
Many logins at once from one address, for the throttle tests of every
protocol: a gate in front of the real password checker holds the checks
while the clients pile up, and counts them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from support.net import eventually
from support.realm import PASSWORD
from tmail.auth.throttle import AuthThrottle

WRONG = "not-the-password"


@implementer(ICredentialsChecker)
class GatedChecker:
    """
    The real checker, counting the checks it is asked for; while the gate
    is closed each check waits (in the reactor, holding no thread) until
    L{open} is called.
    """

    credentialInterfaces = (IUsernamePassword,)

    def __init__(self, checker: ICredentialsChecker) -> None:
        self.checker = checker
        self.calls = 0
        self._waiting: list[Deferred[None]] | None = []

    def requestAvatarId(self, credentials: Any) -> Deferred[Any]:
        self.calls += 1
        if self._waiting is None:
            gate: Deferred[None] = succeed(None)
        else:
            gate = Deferred()
            self._waiting.append(gate)
        return gate.addCallback(lambda _: self.checker.requestAvatarId(credentials))

    def open(self) -> None:
        """Let the held checks and every later one through."""
        waiting, self._waiting = self._waiting or [], None
        for gate in waiting:
            gate.callback(None)


@dataclass
class Logins:
    """
    One protocol's logins as the scenarios below drive them, each a blocking
    client run in a thread of its own (the reactor's pool is left to the
    password checks).

    @ivar mechanisms: whole logins (LOGIN, AUTHENTICATE, ...), each taking
        a password and returning the server's answer; a batch cycles
        through them.
    @ivar hangUp: sends the credentials and closes the connection at once.
    @ivar refused: the answer to an address at its limit.
    @ivar wrong: the answer to a wrong password.
    @ivar right: the answer to the right password.
    """

    mechanisms: Sequence[Callable[[str], object]]
    hangUp: Callable[[str], None]
    refused: object
    wrong: object
    right: object


async def waitFor(futures: Sequence[Future[Any]], within: float = 30.0) -> list[Any]:
    await eventually(lambda: all(f.done() for f in futures), within)
    return [f.result() for f in futures]


async def parallelGuessesAreBounded(
    logins: Logins, gate: GatedChecker, limit: int, count: int = 45
) -> None:
    """
    C{count - 1} wrong passwords sent at once are checked C{limit} times at
    most, the rest refused at once; the right password sent last is refused
    too, while the checks run and after they failed.
    """
    pool = ThreadPoolExecutor(max_workers=count)
    try:
        mechanisms = logins.mechanisms
        guesses = [pool.submit(mechanisms[n % len(mechanisms)], WRONG) for n in range(count - 1)]
        await eventually(
            lambda: gate.calls + sum(f.done() for f in guesses) >= count - 1,
            within=30,
            failure=lambda: f"{gate.calls} checks, {sum(f.done() for f in guesses)} refused",
        )
        assert gate.calls == limit, f"{gate.calls} of {count - 1} parallel guesses were checked"
        answered = [f.result() for f in guesses if f.done()]
        assert answered == [logins.refused] * (count - 1 - limit), answered

        [last] = await waitFor([pool.submit(mechanisms[0], PASSWORD)])
        assert last == logins.refused, f"the right password while checks run: {last!r}"

        gate.open()
        answers = await waitFor(guesses)
        assert sorted(map(repr, answers)) == sorted(
            [repr(logins.wrong)] * limit + [repr(logins.refused)] * (count - 1 - limit)
        ), answers
        assert gate.calls == limit
        [after] = await waitFor([pool.submit(mechanisms[-1], PASSWORD)])
        assert after == logins.refused, f"the right password after the failures: {after!r}"
        assert gate.calls == limit
    finally:
        gate.open()
        pool.shutdown(wait=False)


async def hangUpsAreReleasedAndSuccessesDoNotCount(
    logins: Logins, gate: GatedChecker, throttle: AuthThrottle, limit: int, wrong: int = 3
) -> None:
    """
    C{limit} clients send credentials (C{wrong} of them a wrong password)
    and hang up while their checks are held: the address is at its limit
    while the checks run, and once they end only the wrong passwords count
    (hanging up does not take a guess back); then any number of successful
    logins leave the address open.
    """
    pool = ThreadPoolExecutor(max_workers=limit)
    try:
        hungUp = [
            pool.submit(logins.hangUp, WRONG if n < wrong else PASSWORD) for n in range(limit)
        ]
        await waitFor(hungUp)
        await eventually(lambda: gate.calls == limit, failure=lambda: f"{gate.calls} checks")
        [held] = await waitFor([pool.submit(logins.mechanisms[0], PASSWORD)])
        assert held == logins.refused, f"a login while {limit} checks run: {held!r}"

        gate.open()
        await eventually(
            lambda: throttle.running("127.0.0.1") == 0,
            failure=lambda: f"{throttle.running('127.0.0.1')} checks of hung-up clients stay",
        )
        assert throttle.failures("127.0.0.1") == wrong
        for n in range(limit + 2):
            mechanism = logins.mechanisms[n % len(logins.mechanisms)]
            [answer] = await waitFor([pool.submit(mechanism, PASSWORD)])
            assert answer == logins.right, f"login {n + 1} after the hang-ups: {answer!r}"
        assert throttle.failures("127.0.0.1") == wrong
    finally:
        gate.open()
        pool.shutdown(wait=False)
