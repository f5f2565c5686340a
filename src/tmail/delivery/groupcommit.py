# -*- test-case-name: tests.delivery.test_group_commit -*-
"""
Group commit: the copies of deliveries that end together are made durable
by one worker-thread job instead of one job each.

Every delivery's copies are fsync'ed (file and directory entry) before
its C{250}.  One thread job per delivery, with twenty sessions delivering
at once, keeps up to ten worker threads and the reactor fighting over the
GIL: every system call a worker makes hands the GIL back and forth, about
a hundred futex calls per message, more than all the rest of a delivery.
L{GroupPublisher} runs C{jobs} jobs at a time (one by default); the
deliveries that end while they run wait, and the next job takes all of
them.  A delivery is still answered only after its own copies are durable
(its job has published them), and one delivery's failure is its own: the
others in the job are published and answered as if alone.

One thread fsyncs one message after another, though: alone it would cap
the deliveries at one per two fsyncs.  So a job that runs longer than
C{patience} (5 ms by default: a few messages on a quick disk) stops
counting against C{jobs}, and the deliveries behind it start their own
job: on a slow disk, or behind a quota recount of a large mailbox, as
many jobs overlap as it takes, and no one mailbox stalls the others.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from tmail.errors import OverQuota

__all__ = ["GroupPublisher", "Outcomes"]

#: Per copy of one delivery: C{None} (durable) or why it was refused.
Outcomes = list[OverQuota | None]


def _publishEach(
    publish: Callable[[Sequence[Any]], Outcomes], groups: list[Sequence[Any]]
) -> list[Outcomes | BaseException]:
    """In the worker thread: publish every delivery's copies, each failure kept apart."""
    results: list[Outcomes | BaseException] = []
    for group in groups:
        try:
            results.append(publish(group))
        except BaseException as e:
            results.append(e)
    return results


class GroupPublisher:
    """
    Publishes deliveries' copies with C{publish} in worker threads
    (C{inThread}), at most C{jobs} jobs at a time that have run less than
    C{patience} seconds; the deliveries that wait for a job are published
    together by the next.
    """

    def __init__(
        self,
        publish: Callable[[Sequence[Any]], Outcomes],
        inThread: Callable[..., Deferred[Any]],
        clock: IReactorTime,
        jobs: int = 1,
        patience: float = 0.005,
    ) -> None:
        self._publish = publish
        self._inThread = inThread
        self._clock = clock
        self._jobs = max(1, jobs)
        self._patience = patience
        #: Jobs running that have not yet run out of patience.
        self._counted = 0
        self._waiting: list[tuple[Sequence[Any], Deferred[Outcomes]]] = []

    def __call__(self, messages: Sequence[Any]) -> Deferred[Outcomes]:
        """Publish one delivery's copies; fires with their outcomes once they are durable."""
        published: Deferred[Outcomes] = Deferred()
        self._waiting.append((messages, published))
        if self._counted < self._jobs:
            self._start()
        return published

    def _start(self) -> None:
        batch, self._waiting = self._waiting, []
        self._counted += 1
        counted = True

        def uncount() -> None:
            nonlocal counted
            if counted:
                counted = False
                self._counted -= 1

        def stalled() -> None:
            uncount()
            if self._waiting and self._counted < self._jobs:
                self._start()

        timer = self._clock.callLater(self._patience, stalled)
        try:
            job = self._inThread(_publishEach, self._publish, [group for group, _ in batch])
        except BaseException:
            job = fail()

        def done(results: list[Outcomes | BaseException] | Failure) -> None:
            if timer.active():
                timer.cancel()
            uncount()
            if self._waiting and self._counted < self._jobs:
                self._start()
            for index, (_, published) in enumerate(batch):
                if isinstance(results, Failure):
                    published.errback(results)
                    continue
                result = results[index]
                if isinstance(result, BaseException):
                    published.errback(result)
                else:
                    published.callback(result)

        job.addBoth(done)
