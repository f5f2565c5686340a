"""
The threads password checks run in, apart from the reactor's own pool.

Hashing is slow by design (argon2id takes tens of milliseconds and several
cores).  Run in the reactor's thread pool, a burst of wrong passwords from
one client filled every thread, and the fsync of an SMTP delivery waited
behind them; with no bound of their own, the checks also took every core
from the reactor thread.  A small pool of their own keeps both: at most
C{threads} checks hash at once, and the rest wait their turn in it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

T = TypeVar("T")


class CheckerThreads(Service):
    """A thread pool for password checks, started and stopped as a service."""

    def __init__(self, reactor: IReactorFromThreads, threads: int) -> None:
        self.reactor = reactor
        self.pool = ThreadPool(minthreads=0, maxthreads=threads, name="tmail-auth")

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        self.pool.start()

    def stopService(self) -> Deferred[None] | None:
        super().stopService()  # type: ignore[no-untyped-call]
        self.pool.stop()
        return None

    def run(self, function: Callable[[], T]) -> Deferred[T]:
        """Call C{function} in one of the pool's threads."""
        return deferToThreadPool(self.reactor, self.pool, function)
