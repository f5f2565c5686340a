"""
MULTIAPPEND (RFC 3502): one APPEND carries several messages, each with
its own flags and date; all are stored or none is.  A message refused as
it is announced (too large, over quota, empty) ends the command before its
literal is asked for, and a non-synchronizing one is read and dropped;
a failure while storing removes the messages already stored.
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_imap_protocol import Session
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase, TestCase

from support.imaploop import imapclient, listenIMAP
from support.net import inThread
from support.realm import ALICE, makeRealm
from tmail.errors import StoreFull
from tmail.store.quota import overrideFields

FIRST = (
    b"Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\r\n"
    b"From: Fred Foobar <foobar@Blurdybloop.example.COM>\r\n"
    b"Subject: afternoon meeting\r\n"
    b"To: mooch@owatagu.example.net\r\n"
    b"Message-Id: <B27397-0100000@Blurdybloop.example.COM>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n"
    b"\r\n"
    b"Hello Joe, do you think we can meet at 3:30 tomorrow?\r\n"
)
SECOND = (
    b"Date: Mon, 7 Feb 1994 22:43:04 -0800 (PST)\r\n"
    b"From: Joe Mooch <mooch@OWaTaGu.example.net>\r\n"
    b"Subject: Re: afternoon meeting\r\n"
    b"To: foobar@blurdybloop.example.com\r\n"
    b"Message-Id: <a0434793874930@OWaTaGu.example.net>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n"
    b"\r\n"
    b"3:30 is fine with me.\r\n"
)


class MultiAppendTranscriptTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.session = Session(self)
        self.store = self.session.store
        self.saved = self.store.createFolder("saved-messages")
        self.session.loginDirectly()

    def contents(self) -> list[bytes]:
        found = []
        for info in self.saved.messages():
            with self.saved.openMessage(info.uid) as f:
                found.append(f.read())
        return found

    def assertNothingStored(self) -> None:
        self.assertEqual(self.saved.messages(), ())
        self.assertEqual(list((self.saved._path / "tmp").iterdir()), [])
        self.assertEqual(self.session.send(b"z NOOP\r\n"), b"z OK NOOP completed\r\n")

    def test_rfc3502_example_with_synchronizing_literals(self) -> None:
        send = self.session.send
        ready = b"+ Ready for literal data\r\n"
        self.assertEqual(send(b"A003 APPEND saved-messages (\\Seen) {%d}\r\n" % len(FIRST)), ready)
        self.assertEqual(
            send(FIRST + b' (\\Seen) " 1-Jul-2002 22:35:00 -0700" {%d}\r\n' % len(SECOND)), ready
        )
        self.assertEqual(
            send(SECOND + b"\r\n"),
            b"A003 OK [APPENDUID %d 1:2] APPEND completed\r\n" % self.saved.uidValidity(),
        )
        self.assertEqual(self.contents(), [FIRST, SECOND])
        first, second = self.saved.messages()
        self.assertEqual((first.flags, second.flags), ({"\\Seen"}, {"\\Seen"}))
        self.assertEqual(second.internaldate, 1025588100.0)

    def test_non_synchronizing_messages_go_in_one_round_trip_with_their_own_flags(self) -> None:
        self.session.send(b"s SELECT saved-messages\r\n")
        reply = self.session.send(
            b"a APPEND saved-messages (\\Flagged) {%d+}\r\n%s {%d+}\r\n%s ($Work) {3+}\r\nabc\r\n"
            % (len(FIRST), FIRST, len(SECOND), SECOND)
        )
        self.assertEqual(
            reply,
            b"* 3 EXISTS\r\n* 3 RECENT\r\n"
            b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Work)\r\n"
            b"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Work \\*)]"
            b" Flags allowed\r\n"
            b"a OK [APPENDUID %d 1:3] APPEND completed\r\n" % self.saved.uidValidity(),
        )
        self.assertEqual(self.contents(), [FIRST, SECOND, b"abc"])
        self.assertEqual(
            [info.flags for info in self.saved.messages()],
            [{"\\Flagged"}, frozenset(), {"$Work"}],
        )

    def test_a_later_message_over_quota_is_refused_before_it_is_sent_and_none_is_stored(
        self,
    ) -> None:
        """Each message would fit alone; together they would not."""
        fixture = self.session.fixture
        fixture.directory.setUserFields(ALICE, overrideFields({}, len(FIRST) + 100, None))
        send = self.session.send
        send(b"a APPEND saved-messages {%d}\r\n" % len(FIRST))
        reply = send(FIRST + b" {%d}\r\n" % len(SECOND))
        self.assertEqual(reply, b"a NO [OVERQUOTA] Quota exceeded (mailbox for user is full)\r\n")
        self.assertNothingStored()

    def test_a_refused_non_synchronizing_message_is_read_and_dropped(self) -> None:
        fixture = self.session.fixture
        fixture.directory.setUserFields(ALICE, overrideFields({}, len(FIRST) + 100, None))
        payload = b"x DELETE saved-messages\r\n" + SECOND
        reply = self.session.send(
            b"a APPEND saved-messages {%d+}\r\n%s {%d+}\r\n%s\r\n"
            % (len(FIRST), FIRST, len(payload), payload)
        )
        self.assertEqual(reply, b"a NO [OVERQUOTA] Quota exceeded (mailbox for user is full)\r\n")
        self.assertIn("saved-messages", self.store.listFolders())
        self.assertNothingStored()

    def test_a_later_message_over_the_size_limit_is_toobig(self) -> None:
        session = Session(self, self.session.fixture, max_literal_size=10)
        session.loginDirectly()
        reply = session.send(
            b"a APPEND saved-messages {3+}\r\nabc {%d+}\r\n%s\r\n" % (len(SECOND), SECOND)
        )
        self.assertEqual(reply, b"a NO [TOOBIG] Message too large\r\n")
        self.assertNothingStored()

    def test_a_zero_length_message_cancels_the_whole_append(self) -> None:
        """An empty literal is how a MULTIAPPEND client cancels (Dovecot refuses it too)."""
        send = self.session.send
        send(b"a APPEND saved-messages {%d}\r\n" % len(FIRST))
        reply = send(FIRST + b" {0}\r\n")
        self.assertEqual(reply, b"a NO [CANNOT] Empty message; APPEND cancelled\r\n")
        self.assertNothingStored()
        reply = send(b"b APPEND saved-messages {3+}\r\nabc {0+}\r\n\r\n")
        self.assertEqual(reply, b"b NO [CANNOT] Empty message; APPEND cancelled\r\n")
        self.assertNothingStored()

    def test_syntax_errors_in_a_later_message_store_nothing(self) -> None:
        for tail in [
            b' "31-Feb-2002 22:35:00 -0700" {3+}\r\nxyz\r\n',
            b" (\\Bogus) {3+}\r\nxyz\r\n",
            b" (\\Seen {3+}\r\nxyz\r\n",
            b" trailing\r\n",
            b" {3+}\r\nxyz trailing\r\n",
        ]:
            reply = self.session.send(b"a APPEND saved-messages {3+}\r\nabc" + tail)
            self.assertTrue(reply.startswith(b"a BAD "), (tail, reply))
            self.assertNothingStored()

    def test_a_failure_while_making_the_messages_durable_stores_none(self) -> None:
        begin = self.saved.beginMessage
        made: list[Any] = []

        def failingSecond(flags: Any = (), date: Any = None) -> Any:
            pending = begin(flags, date)
            made.append(pending)
            if len(made) == 2:

                def publish() -> None:
                    raise StoreFull("disk full")

                pending.publish = publish
            return pending

        self.saved.beginMessage = failingSecond
        reply = self.session.send(b"a APPEND saved-messages {3+}\r\nabc {3+}\r\nxyz\r\n")
        self.assertEqual(reply, b"a NO [OVERQUOTA] Not enough storage\r\n")
        self.assertNothingStored()

    def test_a_failure_while_committing_removes_the_messages_already_committed(self) -> None:
        """The first message is expunged again; the failing one is its store's to clean up."""
        begin = self.saved.beginMessage
        made: list[Any] = []

        def failingSecond(flags: Any = (), date: Any = None) -> Any:
            pending = begin(flags, date)
            made.append(pending)
            if len(made) == 2:
                commit = pending.commit

                def failingCommit() -> int:
                    commit()
                    raise OSError("lost the disk")

                pending.commit = failingCommit
            return pending

        self.saved.beginMessage = failingSecond
        self.session.send(b"s SELECT saved-messages\r\n")
        reply = self.session.send(b"a APPEND saved-messages {3+}\r\nabc {3+}\r\nxyz\r\n")
        self.assertTrue(reply.endswith(b"a NO [SERVERBUG] Internal error\r\n"), reply)
        self.flushLoggedErrors(OSError)
        self.assertEqual([info.uid for info in self.saved.messages()], [2])

    def test_a_connection_lost_between_messages_leaves_nothing_behind(self) -> None:
        self.session.send(b"a APPEND saved-messages {3+}\r\nabc {30+}\r\nonly part")
        self.session.server.connectionLost(None)
        self.assertEqual(self.saved.messages(), ())
        self.assertEqual(list((self.saved._path / "tmp").iterdir()), [])

    def test_capability_lists_multiappend(self) -> None:
        self.assertIn(b" MULTIAPPEND ", self.session.greeting)


_FLAG = st.sampled_from(["\\Seen", "\\Flagged", "\\Answered", "\\Draft", "$Work", "Junk"])
_MESSAGE = st.tuples(
    st.lists(_FLAG, max_size=3, unique=True),
    st.binary(min_size=1, max_size=200),
)


class MultiAppendPropertyTests(SynchronousTestCase):
    """Any list of messages, sent in one APPEND, arrives complete and in order."""

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(_MESSAGE, min_size=1, max_size=5), st.booleans())
    def test_every_message_is_stored_in_order_with_its_flags(
        self, messages: list[tuple[list[str], bytes]], synchronizing: bool
    ) -> None:
        session = Session(self)
        session.loginDirectly()
        inbox = session.store.getFolder("INBOX")
        plus = b"" if synchronizing else b"+"
        parts = [b"a APPEND INBOX"]
        for flags, body in messages:
            parts.append(b" (%s) {%d%s}\r\n%s" % (" ".join(flags).encode(), len(body), plus, body))
        reply = session.send(b"".join(parts) + b"\r\n")
        self.assertTrue(
            reply.endswith(
                b"a OK [APPENDUID %d 1%s] APPEND completed\r\n"
                % (inbox.uidValidity(), b":%d" % len(messages) if len(messages) > 1 else b"")
            ),
            reply,
        )
        stored = inbox.messages()
        self.assertEqual([set(info.flags) for info in stored], [set(f) for f, _ in messages])
        for info, (_, body) in zip(stored, messages, strict=True):
            with inbox.openMessage(info.uid) as f:
                data = f.read()
            self.assertEqual(data.replace(b"\r\n", b"\n"), body.replace(b"\r\n", b"\n"))


class MultiAppendClientTests(TestCase):
    timeout = 20

    @inlineCallbacks
    def test_imapclient_multiappend_stores_every_message(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        fixture = makeRealm(Path(self.mktemp()))
        inbox = fixture.store(ALICE).getFolder("INBOX")
        port = yield listenIMAP(self, fixture)

        def client() -> Any:
            imap = imapclient(port)
            try:
                return imap.multiappend(
                    "INBOX", [FIRST, {"msg": SECOND, "flags": ["\\Seen"]}, b"Subject: 3\r\n\r\n"]
                )
            finally:
                imap.logout()

        answer = yield inThread(client)
        self.assertEqual(
            answer, ("OK", [b"[APPENDUID %d 1:3] APPEND completed" % inbox.uidValidity()])
        )
        self.assertEqual(
            [info.flags for info in inbox.messages()], [frozenset(), {"\\Seen"}, frozenset()]
        )
