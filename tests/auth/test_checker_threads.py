"""
Password checks run in threads of their own, at most C{auth.check_threads}
at once: a burst of logins (a client guessing in parallel) must not take
the threads that deliveries fsync in, nor more cores than that.
"""

from __future__ import annotations

import threading
import time

from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import reactor, threads
from twisted.internet.defer import DeferredList, inlineCallbacks
from twisted.trial.unittest import TestCase

from support.net import eventually
from tmail.auth.checker import DirectoryChecker
from tmail.auth.workers import CheckerThreads


class SlowDirectory:
    """A directory whose password check takes a while and records how many run at once."""

    def __init__(self) -> None:
        self.running = 0
        self.most = 0
        self.lock = threading.Lock()
        self.release = threading.Event()

    def checkPassword(self, address: str, password: bytes | str) -> str | None:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        self.release.wait(10)
        with self.lock:
            self.running -= 1
        return address if password == b"right" else None


class CheckerThreadsTests(TestCase):
    def checker(self, threadCount: int) -> tuple[DirectoryChecker, SlowDirectory]:
        pool = CheckerThreads(reactor, threadCount)
        pool.startService()
        self.addCleanup(pool.stopService)
        directory = SlowDirectory()
        self.addCleanup(directory.release.set)
        return DirectoryChecker(directory, runInThread=pool.run), directory  # type: ignore[arg-type]

    @inlineCallbacks
    def test_checks_beyond_the_pool_wait_their_turn(self) -> None:
        checker, directory = self.checker(2)
        checks = [
            checker.requestAvatarId(UsernamePassword(b"u%d@example.test" % i, b"wrong"))
            for i in range(12)
        ]
        yield eventually(lambda: directory.running == 2)
        time.sleep(0.1)
        self.assertEqual(directory.most, 2)
        directory.release.set()
        results = yield DeferredList(checks, consumeErrors=True)
        self.assertTrue(all(not ok and r.check(UnauthorizedLogin) for ok, r in results))
        self.assertEqual(directory.most, 2)

    @inlineCallbacks
    def test_reactor_threads_stay_free_while_checks_wait(self) -> None:
        """What deliveries run in the reactor's pool is not queued behind password checks."""
        checker, directory = self.checker(1)
        checks = [
            checker.requestAvatarId(UsernamePassword(b"u@example.test", b"right"))
            for _ in range(30)
        ]
        yield eventually(lambda: directory.running == 1)
        started = time.monotonic()
        yield DeferredList([threads.deferToThread(lambda: None) for _ in range(20)])
        self.assertLess(time.monotonic() - started, 1.0)
        directory.release.set()
        results = yield DeferredList(checks)
        self.assertEqual({r for _, r in results}, {b"u@example.test"})
