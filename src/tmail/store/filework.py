"""
Where a store's file work runs, and in what order.

The store seam (L{tmail.interfaces}) makes every operation that touches
disk return a L{Deferred}.  A store written once as coroutines awaits
L{FileWork.run} for each piece of file work (a listing, a rename, an fsync,
a dot-lock wait) and updates its in-memory index between awaits:

    - L{ThreadedFileWork} runs the pieces in a thread pool; the coroutine
      resumes in the reactor thread, so the index is only ever changed
      there, and a slow disk or a lock held by another process delays
      only the operations waiting on that folder;
    - L{InlineFileWork} runs them at once in the caller's thread, so every
      Deferred has fired when it is returned: what command-line tools and
      tests use, through L{tmail.store.blocking}.

L{Serial} keeps the operations of one folder (or of a store's folder tree)
in order: one runs at a time, the next when its Deferred fires.  An
operation never waits for another of the same L{Serial} from inside it
(that would wait forever); it calls the other's coroutine directly.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from threading import Thread
from typing import Any, Protocol, TypeVar

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredLock, ensureDeferred, execute
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

T = TypeVar("T")

#: Threads for file work when nothing says otherwise.
DEFAULT_THREADS = 4


class FileWork(Protocol):
    """Runs a piece of blocking file work and answers with its result."""

    def run(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> Deferred[T]:
        """C{function(*args, **kwargs)}, somewhere its blocking harms no one."""


class InlineFileWork:
    """File work done at once in the caller's thread; every answer has fired."""

    def run(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> Deferred[T]:
        return execute(function, *args, **kwargs)


#: The one L{InlineFileWork} there need be.
INLINE = InlineFileWork()


class ThreadedFileWork(Service):
    """
    File work done in a thread pool of its own, started and stopped as a
    service (or started on first use when no service parent runs it, as
    in an embedding that never starts services).
    """

    def __init__(self, reactor: IReactorFromThreads, threads: int = DEFAULT_THREADS) -> None:
        self.reactor = reactor
        self.pool = ThreadPool(minthreads=0, maxthreads=threads, name="tmail-store")

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        if not self.pool.started:
            self.pool.start()

    def stopService(self) -> Deferred[None] | None:
        super().stopService()  # type: ignore[no-untyped-call]
        if self.pool.started:
            self.pool.stop()
        return None

    def run(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> Deferred[T]:
        if not self.pool.started:
            self.pool.start()
        return deferToThreadPool(self.reactor, self.pool, function, *args, **kwargs)


class _DaemonThread(Thread):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, daemon=True, **kwargs)


def defaultFileWork() -> ThreadedFileWork:
    """
    The thread pool file work of stores made without one goes to, one per
    process, stopped when the reactor stops.  Its threads do not keep a
    process that never stops its reactor (a script, a test run) from
    exiting.
    """
    if not _default:
        from twisted.internet import reactor

        work = ThreadedFileWork(reactor)  # type: ignore[arg-type]
        work.pool.threadFactory = _DaemonThread
        reactor.addSystemEventTrigger(
            "during", "shutdown", lambda: work.pool.stop() if work.pool.started else None
        )
        _default.append(work)
    return _default[0]


_default: list[ThreadedFileWork] = []


class Serial:
    """Runs operations one at a time, in the order they were asked for."""

    def __init__(self) -> None:
        self._lock = DeferredLock()
        self._unfinished = 0

    @property
    def busy(self) -> bool:
        """
        Whether an operation is running or waiting to run (one whose caller
        is being told its result no longer counts).
        """
        return self._unfinished > 0

    def run(
        self, operation: Callable[..., Coroutine[Deferred[Any], Any, T]], *args: Any
    ) -> Deferred[T]:
        """
        Start C{operation(*args)} (a coroutine function) once those asked
        for earlier have finished; fires with its result.  With nothing
        running and L{InlineFileWork}, it runs to its end before this
        returns.
        """

        result: Deferred[T] = Deferred()

        def start() -> Deferred[None]:
            # The caller hears of the result before the next operation
            # starts, so operations also complete in the order asked.
            running = ensureDeferred(operation(*args))
            return running.addBoth(deliver)

        def deliver(outcome: T | Failure) -> None:
            self._unfinished -= 1
            if isinstance(outcome, Failure):
                result.errback(outcome)
            else:
                result.callback(outcome)

        self._unfinished += 1
        self._lock.run(start)
        return result
