"""
What one delivery costs the reactor besides its own work: the transport is
not paused and resumed around every pending answer, and sessions that ask
for the free space at the same moment share one measurement in a thread.
"""

from __future__ import annotations

from typing import Any

from test_smtp_session import FakeRealm, Session, SessionTestCase, makeFactory
from twisted.internet.defer import Deferred
from zope.interface import implementer

from tmail.interfaces import IFreeSpace

OK_MAIL = b"250 2.1.0 Ok"


@implementer(IFreeSpace)
class MeasuredRealm(FakeRealm):
    """A realm that tells its free space (L{tmail.interfaces.IFreeSpace})."""

    def freeSpace(self) -> int:
        return 10**12


class ThreadCalls:
    """A C{runInThread} that holds every call until the test releases it."""

    def __init__(self) -> None:
        self.calls: list[tuple[Deferred[Any], Any, tuple[Any, ...]]] = []

    def __call__(self, function: Any, *args: Any) -> Deferred[Any]:
        waiting: Deferred[Any] = Deferred()
        self.calls.append((waiting, function, args))
        return waiting

    def release(self) -> None:
        calls, self.calls = self.calls, []
        for waiting, function, args in calls:
            waiting.callback(function(*args))


class PendingAnswerTests(SessionTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.realm = MeasuredRealm()
        self.factory = makeFactory(self.realm, self.clock, junk_command_limit=10_000)
        self.threads = ThreadCalls()
        self.factory.runInThread = self.threads  # type: ignore[method-assign, assignment]
        self.session = self.connect()
        self.ehlo()

    def test_waiting_for_an_answer_leaves_the_transport_reading(self) -> None:
        """
        A client that waits for its reply costs no pause and resume of the
        transport (two reactor registration changes per command).
        """
        self.assertEqual(self.session.send(b"MAIL FROM:<s@remote.example>\r\n"), [])
        self.assertEqual(self.session.transport.producerState, "producing")
        self.threads.release()
        self.assertEqual(self.session.take(), [OK_MAIL])
        self.assertEqual(self.session.transport.producerState, "producing")

    def test_waiting_for_a_large_message_to_be_stored_leaves_the_transport_reading(self) -> None:
        """
        The content of a message read in one piece is not input held behind
        the answer its commit waits for.
        """
        self.session.send(b"MAIL FROM:<s@remote.example>\r\n")
        self.threads.release()
        self.session.take()
        self.assertEqual(self.session.command(b"RCPT TO:<alice@example.test>"), b"250 2.1.5 Ok")
        self.assertEqual(self.session.command(b"DATA")[:3], b"354")
        body = b"x" * 70 + b"\r\n"
        content = b"Subject: big\r\n\r\n" + body * (4 * self.factory.settings.max_line_length // 72)
        self.assertEqual(self.session.send(content + b".\r\n"), [])
        self.assertEqual(self.session.transport.producerState, "producing")
        self.threads.release()
        self.assertEqual(self.session.take()[0][:3], b"250")
        self.assertEqual(len(self.realm.inbox("alice").stored), 1)

    def test_input_piling_up_while_an_answer_is_pending_pauses_the_transport(self) -> None:
        """
        More than a line's worth of input behind a pending answer stops the
        reading; once the answer is given, the input is served in order and
        reading resumes.
        """
        self.session.send(b"MAIL FROM:<s@remote.example>\r\n")
        self.session.send(b"NOOP\r\n" * 10)
        self.assertEqual(self.session.transport.producerState, "producing")
        limit = self.factory.settings.max_line_length
        self.session.send(b"NOOP\r\n" * (limit // 6))
        self.assertEqual(self.session.transport.producerState, "paused")
        self.threads.release()
        replies = self.session.take()
        self.assertEqual(replies[0], OK_MAIL)
        self.assertEqual(replies[1:], [b"250 2.0.0 Ok"] * (10 + limit // 6))
        self.assertEqual(self.session.transport.producerState, "producing")

    def test_sessions_asking_together_share_one_free_space_measurement(self) -> None:
        """
        MAILs that arrive while a measurement runs wait for that one: one
        thread round trip, every session answered.
        """
        others = [Session(self.factory, self.clock) for _ in range(3)]
        for session in [self.session, *others]:
            self.addCleanup(session.protocol.connectionLost, None)
        for session in others:
            session.send(b"EHLO client.example.org\r\n")
        for session in [self.session, *others]:
            self.assertEqual(session.send(b"MAIL FROM:<s@remote.example>\r\n"), [])
        self.assertEqual(len(self.threads.calls), 1)
        self.threads.release()
        for session in [self.session, *others]:
            self.assertEqual(session.take(), [OK_MAIL])
        self.assertEqual(self.session.command(b"RSET"), b"250 2.0.0 Ok")
        self.session.send(b"MAIL FROM:<s@remote.example>\r\n")
        self.assertEqual(len(self.threads.calls), 1, "a later MAIL measures again")
        self.threads.release()
        self.assertEqual(self.session.take(), [OK_MAIL])
