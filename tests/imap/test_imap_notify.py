"""
NOTIFY (RFC 5465): transcripts over C{StringTransport} with a fake clock
and a real Maildir store (RFC 5465's examples, the event rules, overflow,
other processes' changes found by the poll), and the argument parser under
hypothesis.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from test_imap_protocol import MESSAGE, Session, created, deliver
from twisted.internet.task import Cooperator
from twisted.mail import imap4
from twisted.trial.unittest import SynchronousTestCase

from tmail.imap.notifyparse import (
    EventGroup,
    NotifyRequest,
    parseNotify,
    quotedLiteral,
)
from tmail.imap.session import CommandError
from tmail.steps import StepBudget
from tmail.store.maildir import BlockingMaildirStore, MaildirFolder


@dataclass(frozen=True)
class FetchAtt:
    type: str
    text: bytes


BADEVENT = (
    b"NO [BADEVENT (MessageNew MessageExpunge FlagChange MailboxName SubscriptionChange)]"
    b" Unsupported event\r\n"
)
LISTS = b"From: alice@example.org\r\nTo: bob@example.org\r\nSubject: Re: good morning\r\n\r\nhi\r\n"


def notifySession(
    testCase: SynchronousTestCase,
    fixture: Any = None,
    select: bytes | None = b"INBOX",
    **options: Any,
) -> Session:
    session = Session(testCase, fixture, **options)
    if select is None:
        session.loginDirectly()
    else:
        session.select(select)
    return session


class ParserTests(SynchronousTestCase):
    """NOTIFY's arguments, as RFC 5465 8 writes them."""

    def parse(self, line: bytes) -> NotifyRequest | None:
        return parseNotify(line, lambda raw: raw.decode(), lambda text: [FetchAtt("uid", text)])

    def test_none_and_set_with_every_filter(self) -> None:
        self.assertIsNone(self.parse(b"NONE"))
        request = self.parse(
            b"SET STATUS (selected (MessageNew (uid body.peek[header.fields (from to)])"
            b' MessageExpunge)) (subtree (Lists "Other One") (MessageNew MessageExpunge))'
            b" (mailboxes INBOX NONE) (personal (MailboxName SubscriptionChange))"
            b" (inboxes (messagenew messageexpunge flagchange)) (subscribed NONE)"
        )
        assert request is not None
        self.assertTrue(request.status)
        self.assertEqual(
            request.groups,
            (
                EventGroup(
                    "SELECTED",
                    (),
                    ("MessageNew", "MessageExpunge"),
                    (FetchAtt("uid", b"uid body.peek[header.fields (from to)]"),),
                ),
                EventGroup("SUBTREE", ("Lists", "Other One"), ("MessageNew", "MessageExpunge")),
                EventGroup("MAILBOXES", ("INBOX",), ()),
                EventGroup("PERSONAL", (), ("MailboxName", "SubscriptionChange")),
                EventGroup("INBOXES", (), ("MessageNew", "MessageExpunge", "FlagChange")),
                EventGroup("SUBSCRIBED", (), ()),
            ),
        )

    def test_malformed_arguments_are_bad(self) -> None:
        for line in [
            b"",
            b"bogus",
            b"NONE ",
            b"SET",
            b"SET ",
            b"SET STATUS",
            b"SET STATUS ()",
            b"SET (UnknownFilter (MessageNew MessageExpunge))",
            b"SET (personal MessageNew)",
            b"SET (personal (MessageNew MessageExpunge) )",
            b"SET (personal (MessageNew MessageExpunge)) ",
            b"SET  (personal NONE)",
            b"SET (subtree (personal NONE)",
            b"SET (selected (MessageNew (uid MessageExpunge))",
            b"SET (selected (MessageNew)) (selected-delayed (MessageNew))",
            b"SET (selected (MessageNew))",
            b"SET (personal (FlagChange))",
            b"SET (personal (MessageExpunge FlagChange))",
            b"SET (selected (MailboxName))",
            b"SET (selected NONE) (selected-delayed NONE)",
            b"SET (personal (MessageNew (uid) MessageExpunge))",
        ]:
            with self.subTest(line=line), self.assertRaises(imap4.IllegalClientResponse):
                self.parse(line)

    def test_unsupported_events_are_no_badevent(self) -> None:
        """RFC 5465 3.1: NO (not BAD), with every supported event named."""
        for line in [
            b"SET (personal (MessageNew MessageExpunge AnnotationChange))",
            b"SET (selected (AnnotationChange))",
            b"SET (personal (MailboxMetadataChange))",
            b"SET (personal (XFutureEvent))",
        ]:
            with self.subTest(line=line), self.assertRaises(CommandError) as caught:
                self.parse(line)
            self.assertEqual(caught.exception.status, b"NO")
            self.assertTrue(caught.exception.text.startswith(b"[BADEVENT ("))

    @settings(max_examples=200, deadline=None)
    @given(st.binary(max_size=200))
    def test_any_input_is_parsed_or_refused_cleanly(self, line: bytes) -> None:
        with contextlib.suppress(imap4.IllegalClientResponse, CommandError):
            self.parse(line)

    @settings(max_examples=100, deadline=None)
    @given(
        st.booleans(),
        st.lists(
            st.tuples(
                st.sampled_from(["PERSONAL", "INBOXES", "SUBSCRIBED", "SUBTREE", "MAILBOXES"]),
                st.lists(
                    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1),
                    min_size=1,
                    max_size=3,
                ),
                st.sampled_from(
                    [
                        (),
                        ("MessageNew", "MessageExpunge"),
                        ("MessageNew", "MessageExpunge", "FlagChange"),
                        ("MailboxName",),
                        ("SubscriptionChange", "MailboxName"),
                    ]
                ),
            ),
            min_size=1,
            max_size=4,
        ),
    )
    def test_what_is_written_is_read_back(
        self, status: bool, groups: list[tuple[str, list[str], tuple[str, ...]]]
    ) -> None:
        parts = [b"SET"] + ([b"STATUS"] if status else [])
        expected = []
        for kind, names, events in groups:
            text = kind.encode()
            given_names: tuple[str, ...] = ()
            if kind in ("SUBTREE", "MAILBOXES"):
                given_names = tuple(names)
                text += b" (" + b" ".join(quotedLiteral(n.encode()) for n in names) + b")"
            text += b" " + (b"(" + " ".join(events).encode() + b")" if events else b"NONE")
            parts.append(b"(" + text + b")")
            expected.append(EventGroup(kind, given_names, events))
        self.assertEqual(self.parse(b" ".join(parts)), NotifyRequest(status, tuple(expected)))

    @settings(max_examples=10, deadline=None)
    @given(st.integers(min_value=1000, max_value=20000))
    def test_long_arguments_are_read_in_linear_time(self, count: int) -> None:
        """Many mailboxes or deep fetch brackets: read once, never backtracked."""
        names = b" ".join(b"m%d" % i for i in range(count))
        started = time.perf_counter()
        self.parse(b"SET (mailboxes (" + names + b") (MessageNew MessageExpunge))")
        with self.assertRaises(imap4.IllegalClientResponse):
            self.parse(b"SET (selected (MessageNew (" + b"[" * count + b" MessageExpunge))")
        self.assertLess(time.perf_counter() - started, 2.0)


class TranscriptTests(SynchronousTestCase):
    """RFC 5465's examples and rules, byte for byte."""

    def test_notify_is_advertised_after_login(self) -> None:
        session = notifySession(self)
        self.assertIn(b" NOTIFY", session.send(b"c CAPABILITY\r\n"))

    def test_rfc_example_status_then_new_message_fetch_and_status_of_other_mailbox(
        self,
    ) -> None:
        """
        RFC 5465 3.1's first example (with the events in parentheses, as
        section 8's grammar writes them): STATUS for the watched subtree
        before the tagged OK; a delivery to the selected mailbox comes as
        EXISTS and the FETCH asked for, one to Lists/Lemonade as STATUS.
        """
        session = notifySession(self)
        store = session.store
        store.createFolder("Lists")
        store.createFolder("Lists/Lemonade")
        deliver(store.getFolder("Lists/Lemonade"))
        reply = session.send(
            b"a notify set status (selected (MessageNew (uid"
            b" body.peek[header.fields (from to subject)]) MessageExpunge))"
            b" (subtree Lists (MessageNew MessageExpunge))\r\n"
        )
        validity = store.getFolder("Lists").uidValidity()
        lemonade = store.getFolder("Lists/Lemonade").uidValidity()
        self.assertEqual(
            reply,
            b'* STATUS "Lists" (MESSAGES 0 UIDNEXT 1 UIDVALIDITY %d)\r\n'
            b'* STATUS "Lists/Lemonade" (MESSAGES 1 UIDNEXT 2 UIDVALIDITY %d)\r\n'
            b"a OK NOTIFY completed\r\n" % (validity, lemonade),
        )
        deliver(store.getFolder("INBOX"), LISTS)
        header = (
            b"From: alice@example.org\r\nTo: bob@example.org\r\nSubject: Re: good morning\r\n\r\n"
        )
        self.assertEqual(
            session.send(b""),
            b"* 1 EXISTS\r\n* 1 RECENT\r\n* 1 FETCH (UID 1 BODY[HEADER.FIELDS (FROM TO SUBJECT)]"
            b" {%d}\r\n%s)\r\n" % (len(header), header),
        )
        deliver(store.getFolder("Lists/Lemonade"))
        self.assertEqual(
            session.send(b""),
            b'* STATUS "Lists/Lemonade" (MESSAGES 2 UIDNEXT 3 UIDVALIDITY %d)\r\n' % lemonade,
        )

    def test_rfc_example_notify_none_then_badevent(self) -> None:
        """
        RFC 5465 3.1's later examples: NONE stops every event; asking for
        AnnotationChange is NO [BADEVENT].
        """
        session = notifySession(self)
        store = session.store
        store.createFolder("Lists")
        self.assertEqual(
            session.send(b"b NOTIFY SET (personal (MessageNew MessageExpunge))\r\n"),
            b"b OK NOTIFY completed\r\n",
        )
        self.assertEqual(session.send(b"c notify none\r\n"), b"c OK NOTIFY completed\r\n")
        deliver(store.getFolder("Lists"))
        session.clock.advance(10)
        self.assertEqual(session.send(b""), b"")
        self.assertEqual(
            session.send(
                b"e NOTIFY SET (personal (MessageNew MessageExpunge FlagChange"
                b" AnnotationChange))\r\n"
            ),
            b"e " + BADEVENT,
        )

    def test_syntax_errors_are_bad_without_echo(self) -> None:
        session = notifySession(self)
        self.assertEqual(
            session.send(b"a NOTIFY SET (selected (MessageNew))\r\n"),
            b"a BAD MessageNew and MessageExpunge go together\r\n",
        )
        self.assertEqual(
            session.send(b"b NOTIFY SET (personal (MessageNew (uid) MessageExpunge))\r\n"),
            b"b BAD Fetch attributes are for the selected mailbox only\r\n",
        )
        self.assertEqual(
            session.send(b"c NOTIFY SET (selected (MessageNew (body[]) MessageExpunge))\r\n"),
            b"c BAD MessageNew fetch attributes must not set the Seen flag\r\n",
        )
        self.assertEqual(
            session.send(b"d NOTIFY SET (selected (MessageNew (uid ((( MessageExpunge))\r\n"),
            b"d BAD Unbalanced fetch attributes\r\n",
        )

    def test_notify_needs_login(self) -> None:
        session = Session(self)
        self.assertEqual(session.send(b"a NOTIFY NONE\r\n"), b"a BAD Command not allowed now\r\n")

    def test_mailbox_names_may_be_literals(self) -> None:
        session = notifySession(self)
        session.store.createFolder("Lists")
        reply = session.send(b"a NOTIFY SET STATUS (mailboxes {5}\r\n")
        self.assertEqual(reply, b"+ Ready for literal data\r\n")
        reply = session.send(b"Lists (MessageNew MessageExpunge))\r\n")
        self.assertTrue(reply.startswith(b'* STATUS "Lists" (MESSAGES 0 '), reply)
        self.assertTrue(reply.endswith(b"a OK NOTIFY completed\r\n"))

    def test_status_carries_highestmodseq_under_condstore_and_flag_changes(self) -> None:
        session = notifySession(self)
        store = session.store
        store.createFolder("Archive")
        archive = store.getFolder("Archive")
        uid = deliver(archive)
        session.send(b"a ENABLE CONDSTORE\r\n")
        session.send(b"b NOTIFY SET (personal (MessageNew MessageExpunge FlagChange))\r\n")
        archive.setFlags(uid, ["\\Seen"])
        self.assertEqual(
            session.send(b""),
            b'* STATUS "Archive" (MESSAGES 1 UIDNEXT 2 UIDVALIDITY %d HIGHESTMODSEQ %d)\r\n'
            % (archive.uidValidity(), archive.highestModSeq()),
        )

    def test_flag_change_needs_flagchange(self) -> None:
        """Without FlagChange, a flag change elsewhere is no event; a new message is."""
        session = notifySession(self)
        store = session.store
        store.createFolder("Archive")
        archive = store.getFolder("Archive")
        uid = deliver(archive)
        session.send(b"b NOTIFY SET (personal (MessageNew MessageExpunge))\r\n")
        archive.setFlags(uid, ["\\Seen"])
        self.assertEqual(session.send(b""), b"")
        archive.expunge([uid])
        self.assertRegex(session.send(b""), rb'^\* STATUS "Archive" \(MESSAGES 0 UIDNEXT 2 ')

    def test_selected_mailbox_gets_no_status_and_its_expunge_at_once(self) -> None:
        """
        SELECTED: another session's EXPUNGE reaches the client while no
        command runs (RFC 5465 5.3); the selected mailbox never gets STATUS.
        """
        watcher = notifySession(self)
        inbox = watcher.store.getFolder("INBOX")
        uid = deliver(inbox)
        deliver(inbox)
        watcher.send(b"n NOOP\r\n")
        watcher.send(
            b"a NOTIFY SET (selected (MessageNew MessageExpunge FlagChange))"
            b" (personal (MessageNew MessageExpunge))\r\n"
        )
        inbox.expunge([uid])
        self.assertEqual(watcher.send(b""), b"* 1 EXPUNGE\r\n* 1 EXISTS\r\n* 1 RECENT\r\n")

    def test_selected_flag_change_comes_at_once_with_the_uid(self) -> None:
        """RFC 5465 5.1: the FETCH for a flag change includes UID and FLAGS."""
        watcher = notifySession(self)
        inbox = watcher.store.getFolder("INBOX")
        uid = deliver(inbox)
        watcher.send(b"n NOOP\r\n")
        watcher.send(b"a NOTIFY SET (selected (MessageNew MessageExpunge FlagChange))\r\n")
        inbox.setFlags(uid, ["\\Flagged"])
        self.assertEqual(watcher.send(b""), b"* 1 FETCH (UID 1 FLAGS (\\Flagged \\Recent))\r\n")
        watcher.send(b"b NOTIFY NONE\r\n")
        inbox.setFlags(uid, [])
        self.assertEqual(watcher.send(b""), b"")
        self.assertEqual(
            watcher.send(b"c NOOP\r\n"), b"* 1 FETCH (FLAGS (\\Recent))\r\nc OK NOOP completed\r\n"
        )

    def test_idle_sends_only_the_events_notify_asks_for(self) -> None:
        """
        RFC 5465 4: under NOTIFY without SELECTED, IDLE reports no change of
        the selected mailbox (the next command does, RFC 3501 7.3.1), but
        the other mailboxes' events.
        """
        watcher = notifySession(self)
        store = watcher.store
        store.createFolder("Archive")
        watcher.send(b"a NOTIFY SET (personal (MessageNew MessageExpunge))\r\n")
        self.assertEqual(watcher.send(b"b IDLE\r\n"), b"+ Idling\r\n")
        deliver(store.getFolder("INBOX"))
        watcher.clock.advance(watcher.server.idlePollInterval)
        self.assertEqual(watcher.send(b""), b"")
        deliver(store.getFolder("Archive"))
        self.assertRegex(watcher.send(b""), rb'^\* STATUS "Archive" \(MESSAGES 1 [^)]*\)\r\n$')
        self.assertEqual(
            watcher.send(b"DONE\r\n"),
            b"* 1 EXISTS\r\n* 1 RECENT\r\nb OK IDLE terminated\r\n",
        )

    def test_selected_delayed_keeps_the_expunge_for_the_next_command(self) -> None:
        watcher = notifySession(self)
        inbox = watcher.store.getFolder("INBOX")
        uid = deliver(inbox)
        watcher.send(b"n NOOP\r\n")
        watcher.send(b"a NOTIFY SET (selected-delayed (MessageNew MessageExpunge))\r\n")
        inbox.expunge([uid])
        self.assertEqual(watcher.send(b""), b"")
        self.assertEqual(
            watcher.send(b"b NOOP\r\n"),
            b"* 1 EXPUNGE\r\n* 0 EXISTS\r\n* 0 RECENT\r\nb OK NOOP completed\r\n",
        )

    def test_events_wait_while_a_command_runs(self) -> None:
        """A STATUS does not cut into a command: it comes before the tagged reply."""
        session = notifySession(self)
        store = session.store
        store.createFolder("Archive")
        store.createFolder("Drafts")
        session.send(b"a NOTIFY SET (personal (MessageNew MessageExpunge))\r\n")
        self.assertEqual(
            session.send(b"b APPEND Drafts {%d}\r\n" % len(MESSAGE)),
            b"+ Ready for literal data\r\n",
        )
        deliver(store.getFolder("Archive"))
        self.assertEqual(session.send(b""), b"")
        reply = session.send(MESSAGE + b"\r\n")
        self.assertRegex(
            reply,
            rb'^\* STATUS "Archive" \(MESSAGES 1 [^)]*\)\r\n'
            rb'\* STATUS "Drafts" \(MESSAGES 1 [^)]*\)\r\n'
            rb"b OK \[APPENDUID \d+ 1\] APPEND completed\r\n$",
        )

    def test_other_process_changes_arrive_at_the_poll(self) -> None:
        """A message another process drops into a watched folder is found by the poll."""
        session = notifySession(self, notify_poll_interval=2.0)
        store = session.store
        store.createFolder("Archive")
        session.send(b"a NOTIFY SET (personal (MessageNew MessageExpunge))\r\n")
        elsewhere = BlockingMaildirStore(store.root)
        deliver(elsewhere.getFolder("Archive"))
        self.assertEqual(session.send(b""), b"")
        session.clock.advance(2.0)
        session.pump()
        self.assertRegex(session.take(), rb'^\* STATUS "Archive" \(MESSAGES 1 UIDNEXT 2 ')

    def test_overflow_turns_notify_off(self) -> None:
        """
        More mailboxes with waiting events than imap.notify_queue_limit:
        OK [NOTIFICATIONOVERFLOW], then no events, as after NOTIFY NONE.
        """
        session = notifySession(self, notify_queue_limit=2)
        store = session.store
        for name in ("A", "B", "C", "Drafts"):
            store.createFolder(name)
        session.send(b"a NOTIFY SET (personal (MessageNew MessageExpunge))\r\n")
        session.send(b"b APPEND Drafts {%d}\r\n" % len(MESSAGE))
        for name in ("A", "B", "C"):
            deliver(store.getFolder(name))
        reply = session.send(MESSAGE + b"\r\n")
        self.assertRegex(
            reply,
            rb"^\* OK \[NOTIFICATIONOVERFLOW\] Too many notifications; NOTIFY is off\r\n"
            rb"b OK \[APPENDUID \d+ 1\] APPEND completed\r\n$",
        )
        deliver(store.getFolder("A"))
        session.clock.advance(10)
        self.assertEqual(session.send(b""), b"")

    def test_mailbox_name_and_subscription_events_of_other_sessions(self) -> None:
        """
        RFC 5465 5.4 and 5.5: LIST for a new, renamed (OLDNAME), deleted
        (\\NonExistent) and (un)subscribed mailbox; the session that made
        the change hears nothing of its own.
        """
        watcher = notifySession(self, select=None)
        actor = Session(self, watcher.fixture)
        actor.loginDirectly()
        self.assertEqual(
            watcher.send(b"a NOTIFY SET (personal (MailboxName SubscriptionChange))\r\n"),
            b"a OK NOTIFY completed\r\n",
        )
        self.assertEqual(created(actor.send(b"b CREATE Lists\r\n")), b"b OK CREATE completed\r\n")
        self.assertEqual(watcher.send(b""), b'* LIST (\\HasNoChildren) "/" "Lists"\r\n')
        actor.send(b"c RENAME Lists Groups\r\n")
        self.assertEqual(
            watcher.send(b""), b'* LIST (\\HasNoChildren) "/" "Groups" ("OLDNAME" ("Lists"))\r\n'
        )
        actor.send(b"d SUBSCRIBE Groups\r\n")
        self.assertEqual(
            watcher.send(b""), b'* LIST (\\HasNoChildren \\Subscribed) "/" "Groups"\r\n'
        )
        actor.send(b"e DELETE Groups\r\n")
        self.assertEqual(watcher.send(b""), b'* LIST (\\NonExistent) "/" "Groups"\r\n')
        self.assertEqual(created(watcher.send(b"f CREATE Mine\r\n")), b"f OK CREATE completed\r\n")

    def test_status_of_many_folders_and_the_poll_go_a_slice_at_a_time(self) -> None:
        """
        NOTIFY SET STATUS over PERSONAL with many folders, and each poll of
        them, are cooperative steps of a bounded number of folders.
        """
        self.patch(StepBudget, "ITEMS", 10)
        session = notifySession(self, notify_poll_interval=1.0)
        store = session.store
        for i in range(60):
            store.createFolder(f"F{i:02d}")
        steps: list[int] = []
        session.server.cooperator = Cooperator(
            scheduler=lambda call: session.clock.callLater(0, call),
            terminationPredicateFactory=lambda: lambda: steps.append(1) is None,
            started=True,
        )
        reply = session.send(b"a NOTIFY SET STATUS (personal (MessageNew MessageExpunge))\r\n")
        self.assertEqual(reply.count(b"* STATUS "), 60)
        self.assertGreaterEqual(len(steps), 6)
        del steps[:]
        session.clock.advance(1.0)
        session.pump()
        self.assertGreaterEqual(len(steps), 6)
        self.assertEqual(session.take(), b"")

    def test_sessions_watching_the_same_folders_share_the_poll(self) -> None:
        """Two sessions watching 40 folders: one poll's worth of looks, not two."""
        first = notifySession(self, notify_poll_interval=1.0)
        second = notifySession(self, first.fixture, notify_poll_interval=1.0)
        second.clock = second.server.clock = first.clock
        store = first.store
        for i in range(40):
            store.createFolder(f"F{i:02d}")
        for session in (first, second):
            session.send(b"a NOTIFY SET (personal (MessageNew MessageExpunge))\r\n")
        looks: list[str] = []
        refresh = MaildirFolder.refresh

        def counted(folder: MaildirFolder) -> None:
            looks.append(folder.name)
            refresh(folder)

        self.patch(MaildirFolder, "refresh", counted)
        first.clock.advance(1.0)
        first.pump()
        self.assertEqual(sorted(looks), sorted({*looks}))
        self.assertGreaterEqual(len(looks), 40)

    def test_many_new_messages_are_fetched_a_slice_at_a_time(self) -> None:
        """MessageNew's FETCHes for a burst of messages go out over several turns, all of them."""
        self.patch(StepBudget, "ITEMS", 2)
        watcher = notifySession(self)
        inbox = watcher.store.getFolder("INBOX")
        watcher.send(b"a NOTIFY SET (selected (MessageNew (UID FLAGS) MessageExpunge))\r\n")
        for _ in range(5):
            deliver(inbox)
        self.assertEqual(
            watcher.send(b""),
            b"* 5 EXISTS\r\n* 5 RECENT\r\n"
            + b"".join(b"* %d FETCH (UID %d FLAGS (\\Recent))\r\n" % (n, n) for n in range(1, 6)),
        )

    def test_selected_delayed_fetches_new_messages_at_the_next_command(self) -> None:
        watcher = notifySession(self)
        inbox = watcher.store.getFolder("INBOX")
        watcher.send(b"a NOTIFY SET (selected-delayed (MessageNew (UID) MessageExpunge))\r\n")
        deliver(inbox)
        self.assertEqual(watcher.send(b""), b"")
        self.assertEqual(
            watcher.send(b"b NOOP\r\n"),
            b"* 1 EXISTS\r\n* 1 RECENT\r\n* 1 FETCH (UID 1)\r\nb OK NOOP completed\r\n",
        )

    def test_the_most_specific_filter_decides(self) -> None:
        """MAILBOXES ... NONE silences a mailbox PERSONAL would watch (RFC 5465 6)."""
        session = notifySession(self)
        store = session.store
        for name in ("Archive", "Junk"):
            store.createFolder(name)
        session.send(
            b"a NOTIFY SET (personal (MessageNew MessageExpunge)) (mailboxes Junk NONE)\r\n"
        )
        deliver(store.getFolder("Junk"))
        self.assertEqual(session.send(b""), b"")
        deliver(store.getFolder("Archive"))
        self.assertRegex(session.send(b""), rb'^\* STATUS "Archive" ')

    def test_subscribed_follows_subscriptions_made_meanwhile(self) -> None:
        """SUBSCRIBED is evaluated again when the subscriptions change (RFC 5465 6.4)."""
        watcher = notifySession(self)
        store = watcher.store
        for name in ("Archive", "Junk"):
            store.createFolder(name)
        actor = Session(self, watcher.fixture)
        actor.loginDirectly()
        watcher.send(b"a NOTIFY SET (subscribed (MessageNew MessageExpunge))\r\n")
        deliver(store.getFolder("Archive"))
        self.assertEqual(watcher.send(b""), b"")
        actor.send(b"b SUBSCRIBE Archive\r\n")
        deliver(store.getFolder("Archive"))
        deliver(store.getFolder("Junk"))
        self.assertRegex(
            watcher.send(b""), rb'^\* STATUS "Archive" \(MESSAGES 2 UIDNEXT 3 [^)]*\)\r\n$'
        )

    def test_a_renamed_folder_is_watched_under_its_new_name(self) -> None:
        watcher = notifySession(self)
        store = watcher.store
        store.createFolder("Lists")
        actor = Session(self, watcher.fixture)
        actor.loginDirectly()
        watcher.send(b"a NOTIFY SET (subtree Lists (MessageNew MessageExpunge))\r\n")
        actor.send(b"b RENAME Lists Lists2\r\n")
        deliver(store.getFolder("Lists2"))
        self.assertEqual(watcher.send(b""), b"")
        actor.send(b"c RENAME Lists2 Lists/Sub\r\n")
        deliver(store.getFolder("Lists/Sub"))
        self.assertRegex(watcher.send(b""), rb'^\* STATUS "Lists/Sub" \(MESSAGES 2 ')
