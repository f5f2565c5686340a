# -*- test-case-name: tests.imap.test_imap_large_messages -*-
"""
Large messages are read, taken apart, decoded and searched in worker
threads.

SEARCH, SORT, THREAD and FETCH walk a folder a message per step of the
session's cooperative task, so that other sessions are served between
messages.  But a message may be as large as C{imap.max_literal_size}: read,
taken apart, its 30 MB base64 part decoded, case-folded and searched in one
step, it kept every other session waiting half a second.  A message over
L{LARGE_MESSAGE} has that work done in a worker thread while its step waits
(a cooperative task is paused while the Deferred a step yields is pending),
and the work goes a bounded piece at a time (L{tmail.imap.pieces}) so that
the reactor thread gets the GIL back between pieces.

The file is opened on the reactor thread first: the folder may look for a
message another program renamed, and update its index, which belongs to
the reactor thread.  Smaller messages are worked on in the reactor thread,
as before: a thread hop per message would slow the common case down.

The threads are a small pool of their own (C{imap.message_threads}), as
password checks have theirs: in the reactor's pool, a few sessions
searching large messages would hold every thread, and the fsync of each
SMTP delivery would wait behind them.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from tmail.imap.message import IMAPMessage

T = TypeVar("T")

#: Messages larger than this (octets) are worked on in a worker thread.
#: Not a limit on clients, and answers do not depend on it: below it, the
#: work one message costs the reactor thread is a few milliseconds; above,
#: a thread hop costs little beside the work.
LARGE_MESSAGE = 1024 * 1024

#: Seconds a thread computing in Python keeps the GIL from one waiting for
#: it, while the pool runs (CPython's default is 5 ms).  The reactor thread
#: takes the GIL back after each system call (each read from and write to
#: a socket, each wait for events): behind a worker decoding a message, a
#: few milliseconds each time added up to tens per answer.
SWITCH_INTERVAL = 0.001

#: What work needs of a message: its index entry, its header, all of it.
INFO, HEADER, WHOLE = 0, 1, 2

#: Runs a function in a worker thread, giving a Deferred of its result.
Runner = Callable[..., "Deferred[Any]"]


def isLarge(message: IMAPMessage) -> bool:
    """Whether work on C{message} goes to a worker thread."""
    return message.info.size > LARGE_MESSAGE


def inWorker(run: Runner, message: IMAPMessage, need: int, work: Callable[[], T]) -> Deferred[T]:
    """
    Open C{message}'s file now (on the reactor thread), then in a worker
    thread read what C{need} says (L{HEADER} or L{WHOLE}; nothing for
    L{INFO}) and call C{work}.  Raises C{KeyError} at once when the
    message is gone.
    """
    if need != INFO:
        message.openAhead()

    def job() -> T:
        try:
            if need != INFO:
                message.load(whole=need == WHOLE)
            return work()
        finally:
            message.release()

    try:
        return run(job)
    except BaseException:
        message.release()
        raise


class MessageThreads(Service):
    """
    The worker threads large messages are worked on in, started and
    stopped as a service; while it runs, the process's GIL switch interval
    is L{SWITCH_INTERVAL}.
    """

    def __init__(self, reactor: IReactorFromThreads, threads: int) -> None:
        self.reactor = reactor
        self.pool = ThreadPool(minthreads=0, maxthreads=threads, name="tmail-imap-messages")
        self._interval: float | None = None

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        self._interval = sys.getswitchinterval()
        sys.setswitchinterval(min(self._interval, SWITCH_INTERVAL))
        self.pool.start()

    def stopService(self) -> Deferred[None] | None:
        super().stopService()  # type: ignore[no-untyped-call]
        self.pool.stop()
        if self._interval is not None:
            sys.setswitchinterval(self._interval)
        return None

    def run(self, function: Callable[..., T], *args: Any) -> Deferred[T]:
        """Call C{function} in one of the pool's threads."""
        return deferToThreadPool(self.reactor, self.pool, function, *args)
