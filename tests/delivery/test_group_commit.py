"""
Group commit (L{tmail.delivery.groupcommit}): deliveries that end while a
commit thread runs are made durable together by the next, each answered
only once its own copies are published, each failure its own, and a
stalled commit does not hold up the deliveries behind it for long.  Then
over loopback with a real Maildir: concurrent sessions share thread jobs
and every message is stored, also when the Maildirs do their file work in
threads as in a server.
"""

from __future__ import annotations

import smtplib
from collections.abc import Generator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import Clock
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SynchronousTestCase, TestCase

from support.net import inThread, listen
from support.realm import ALICE, BOB, makeRealm
from tmail.auth.throttle import AuthThrottle
from tmail.config.schema import AuthSettings, SMTPSettings
from tmail.delivery.groupcommit import GroupPublisher, Outcomes
from tmail.errors import OverQuota
from tmail.realm.virtual import VirtualDomainRealm
from tmail.smtp.factory import SMTPFactory
from tmail.store.filework import ThreadedFileWork
from tmail.store.maildir import BlockingMaildirStore


class HeldJobs:
    """A C{runInThread} that runs each job only when the test says so."""

    def __init__(self) -> None:
        self.jobs: list[tuple[Deferred[Any], Any, tuple[Any, ...]]] = []

    def __call__(self, function: Any, *args: Any) -> Deferred[Any]:
        done: Deferred[Any] = Deferred()
        self.jobs.append((done, function, args))
        return done

    def runFirst(self) -> None:
        done, function, args = self.jobs.pop(0)
        done.callback(function(*args))


class Published:
    """The publishing function: records what each job published, in order."""

    def __init__(self, failing: str = "") -> None:
        self.calls: list[Sequence[str]] = []
        self.failing = failing

    def __call__(self, messages: Sequence[str]) -> Outcomes:
        self.calls.append(messages)
        if self.failing in messages:
            raise OSError("the disk went away")
        return [OverQuota("full") if message == "full" else None for message in messages]


class GroupPublisherTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.jobs = HeldJobs()

    def publisher(self, published: Published, jobs: int = 1) -> GroupPublisher:
        return GroupPublisher(published, self.jobs, self.clock, jobs=jobs, patience=0.5)

    def test_deliveries_ending_while_a_commit_runs_share_the_next_thread_job(self) -> None:
        published = Published()
        publish = self.publisher(published)
        first = publish(["a1", "a2"])
        behind = [publish(["b"]), publish(["c"]), publish(["full"])]
        self.assertEqual(len(self.jobs.jobs), 1)
        self.jobs.runFirst()
        self.assertEqual(self.successResultOf(first), [None, None])
        self.assertEqual(len(self.jobs.jobs), 1, "the waiting deliveries make one job")
        for waiting in behind:
            self.assertNoResult(waiting)
        self.jobs.runFirst()
        b, c, full = (self.successResultOf(waiting) for waiting in behind)
        self.assertEqual((b, c), ([None], [None]))
        self.assertIsInstance(full[0], OverQuota)
        self.assertEqual(published.calls, [["a1", "a2"], ["b"], ["c"], ["full"]])

    def test_each_delivery_waits_for_its_own_copies_only(self) -> None:
        """
        With two jobs allowed, a delivery is not held up by another job:
        it is answered as soon as the job that published it is done.
        """
        publish = self.publisher(Published(), jobs=2)
        first, second = publish(["a"]), publish(["b"])
        self.assertEqual(len(self.jobs.jobs), 2)
        done, function, args = self.jobs.jobs.pop(1)
        done.callback(function(*args))
        self.assertEqual(self.successResultOf(second), [None])
        self.assertNoResult(first)
        self.jobs.runFirst()
        self.assertEqual(self.successResultOf(first), [None])

    def test_one_delivery_failing_leaves_the_others_in_its_job_published(self) -> None:
        published = Published(failing="bad")
        publish = self.publisher(published)
        publish(["a"])
        good, bad, alsoGood = publish(["b"]), publish(["bad"]), publish(["c"])
        self.jobs.runFirst()
        self.jobs.runFirst()
        self.assertEqual(self.successResultOf(good), [None])
        self.assertEqual(self.successResultOf(alsoGood), [None])
        self.assertEqual(str(self.failureResultOf(bad, OSError).value), "the disk went away")

    def test_a_failing_thread_hand_over_fails_only_its_deliveries(self) -> None:
        def broken(function: Any, *args: Any) -> Deferred[Any]:
            raise RuntimeError("no threads")

        publish = GroupPublisher(Published(), broken, self.clock)
        self.failureResultOf(publish(["a"]), RuntimeError)
        self.failureResultOf(publish(["b"]), RuntimeError)

    def test_a_stalled_commit_lets_the_deliveries_behind_it_start_their_own(self) -> None:
        publish = self.publisher(Published())
        stuck = publish(["slow"])
        behind = publish(["b"])
        self.assertEqual(len(self.jobs.jobs), 1)
        self.clock.advance(0.5)
        self.assertEqual(len(self.jobs.jobs), 2)
        done, function, args = self.jobs.jobs.pop(1)
        done.callback(function(*args))
        self.assertEqual(self.successResultOf(behind), [None])
        self.assertNoResult(stuck)
        self.jobs.runFirst()
        self.assertEqual(self.successResultOf(stuck), [None])
        self.assertEqual(self.clock.getDelayedCalls(), [])


class ConcurrentDeliveryTests(TestCase):
    @inlineCallbacks
    def setUp(self) -> Generator[Deferred[Any], Any, None]:
        self.fixture = makeRealm(Path(self.mktemp()).resolve())
        self.factory = SMTPFactory(
            self.fixture.realm,
            SMTPSettings(greet_pause=0, unauth_pipelining="allow"),
            hostname="mx.example.test",
            submission=False,
            portal=self.fixture.portal,
            tlsContextFactory=None,
            throttle=AuthThrottle(AuthSettings(), reactor),
        )
        self.publishJobs = 0

        def counting(function: Any, *args: Any) -> Deferred[Any]:
            if function.__name__ == "_publishEach":
                self.publishJobs += 1
            return deferToThread(function, *args)

        self.factory.runInThread = counting  # type: ignore[method-assign, assignment]
        self.port = yield listen(self, self.factory)

    @inlineCallbacks
    def test_concurrent_sessions_share_commit_jobs_and_every_message_is_stored(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        sessions, each = 12, 4

        def session(number: int) -> list[tuple[int, bytes]]:
            replies = []
            with smtplib.SMTP("127.0.0.1", self.port, timeout=30) as client:
                client.ehlo("client.example.org")
                for index in range(each):
                    client.mail("s@remote.example")
                    client.rcpt(ALICE if number % 2 else BOB)
                    replies.append(
                        client.data(f"Subject: {number}.{index}\r\n\r\nbody\r\n".encode())
                    )
            return replies

        def everyone() -> list[tuple[int, bytes]]:
            with ThreadPoolExecutor(sessions) as pool:
                return [
                    reply for replies in pool.map(session, range(sessions)) for reply in replies
                ]

        replies = yield inThread(everyone)
        self.assertEqual([code for code, _ in replies], [250] * sessions * each)
        stored = self.fixture.inbox(ALICE) + self.fixture.inbox(BOB)
        self.assertEqual(
            sorted(message.split(b"Subject: ", 1)[1].split(b"\r\n", 1)[0] for message in stored),
            sorted(f"{n}.{i}".encode() for n in range(sessions) for i in range(each)),
        )
        self.assertLess(self.publishJobs, sessions * each)


class ThreadedFileWorkDeliveryTests(TestCase):
    """Twenty sessions into twenty users, the Maildirs' file work in threads."""

    @inlineCallbacks
    def setUp(self) -> Generator[Deferred[Any], Any, None]:
        fixture = makeRealm(
            Path(self.mktemp()).resolve(), users=tuple(f"u{n}@example.test" for n in range(20))
        )
        self.users = [f"u{n}@example.test" for n in range(20)]
        self.mail = fixture.root / "data" / "mail"
        fileWork = ThreadedFileWork(reactor, threads=4)  # type: ignore[arg-type]
        fileWork.startService()
        self.addCleanup(fileWork.stopService)
        realm = VirtualDomainRealm(fixture.directory, self.mail, fileWork=fileWork)
        factory = SMTPFactory(
            realm,
            SMTPSettings(greet_pause=0, unauth_pipelining="allow"),
            hostname="mx.example.test",
            submission=False,
            portal=fixture.portal,
            tlsContextFactory=None,
            throttle=AuthThrottle(AuthSettings(), reactor),
        )
        self.port = yield listen(self, factory)

    @inlineCallbacks
    def test_every_message_of_concurrent_sessions_is_answered_and_stored(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        sessions, each = 20, 5

        def session(number: int) -> list[int]:
            codes = []
            with smtplib.SMTP("127.0.0.1", self.port, timeout=30) as client:
                client.ehlo("client.example.org")
                for index in range(each):
                    client.mail("s@remote.example")
                    client.rcpt(self.users[(number + index) % len(self.users)])
                    code, _ = client.data(f"Subject: {number}.{index}\r\n\r\nbody\r\n".encode())
                    codes.append(code)
            return codes

        def everyone() -> list[int]:
            with ThreadPoolExecutor(sessions) as pool:
                return [code for codes in pool.map(session, range(sessions)) for code in codes]

        codes = yield inThread(everyone)
        self.assertEqual(codes, [250] * sessions * each)
        subjects = []
        for user in self.users:
            local, domain = user.split("@")
            inbox = BlockingMaildirStore(self.mail / domain / local).getFolder("INBOX")
            for info in inbox.messages():
                with inbox.openMessage(info.uid) as f:
                    subjects.append(f.read().split(b"Subject: ", 1)[1].split(b"\r\n", 1)[0])
        self.assertEqual(
            sorted(subjects),
            sorted(f"{n}.{i}".encode() for n in range(sessions) for i in range(each)),
        )
