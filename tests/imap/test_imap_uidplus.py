"""
UIDPLUS (RFC 4315): APPENDUID after APPEND, COPYUID after COPY and UID
COPY with the source and destination UID sets in matching order, UID
EXPUNGE removing only the listed deleted messages.  UIDs are sticky, so
C{[UIDNOTSTICKY]} is never sent.
"""

from __future__ import annotations

import imaplib
from collections.abc import Generator
from pathlib import Path
from typing import Any

from test_imap_protocol import MESSAGE, Session, deliver
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase, TestCase

from support.imaploop import imapclient, listenIMAP
from support.net import inThread
from support.realm import ALICE, PASSWORD, makeRealm


class UIDPlusTranscriptTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.session = Session(self)
        self.store = self.session.store
        self.inbox = self.store.getFolder("INBOX")
        self.meeting = self.store.createFolder("meeting")

    def test_rfc4315_append_reports_appenduid(self) -> None:
        self.session.select(b"meeting")
        reply = self.session.send(
            b"A003 APPEND meeting (\\Seen) {%d+}\r\n%s\r\n" % (len(MESSAGE), MESSAGE)
        )
        self.assertTrue(
            reply.endswith(
                b"A003 OK [APPENDUID %d 1] APPEND completed\r\n" % self.meeting.uidValidity()
            ),
            reply,
        )
        self.assertNotIn(b"UIDNOTSTICKY", reply)

    def test_rfc4315_copy_reports_copyuid_with_matching_sets(self) -> None:
        """Sequence numbers 2:4 are UIDs 2,5:6 here (3 and 4 were expunged)."""
        for _ in range(7):
            deliver(self.inbox)
        self.inbox.expunge([3, 4])
        deliver(self.meeting)
        self.session.select()
        self.assertEqual(
            self.session.send(b"A004 COPY 2:4 meeting\r\n"),
            b"A004 OK [COPYUID %d 2,5:6 2:4] COPY completed\r\n" % self.meeting.uidValidity(),
        )

    def test_uid_copy_lists_pairs_in_source_uid_order_whatever_the_request_order(self) -> None:
        for _ in range(6):
            deliver(self.inbox)
        self.session.select()
        self.assertEqual(
            self.session.send(b"a UID COPY 6,2,4:3 meeting\r\n"),
            b"a OK [COPYUID %d 2:4,6 1:4] COPY completed\r\n" % self.meeting.uidValidity(),
        )
        origins = [info.key for info in self.meeting.messages()]
        self.assertEqual(len(set(origins)), 4)

    def test_rfc4315_uid_copy_of_no_existing_message_copies_nothing(self) -> None:
        deliver(self.inbox)
        self.session.select()
        self.assertEqual(
            self.session.send(b"A005 UID COPY 305:310 meeting\r\n"), b"A005 OK COPY completed\r\n"
        )
        self.assertEqual(
            self.session.send(b"A006 COPY 1 funny\r\n"), b"A006 NO [TRYCREATE] No such mailbox\r\n"
        )
        self.assertEqual(self.meeting.messages(), ())

    def test_rfc4315_uid_expunge_removes_only_listed_deleted_messages(self) -> None:
        for _ in range(6):
            deliver(self.inbox)
        for uid in (3, 4, 5, 6):
            self.inbox.setFlags(uid, ["\\Deleted"])
        self.session.select()
        reply = self.session.send(b"A003 UID EXPUNGE 1:5\r\n")
        self.assertEqual(
            reply,
            b"* 5 EXPUNGE\r\n* 4 EXPUNGE\r\n* 3 EXPUNGE\r\nA003 OK UID EXPUNGE completed\r\n",
        )
        self.assertEqual([info.uid for info in self.inbox.messages()], [1, 2, 6])

    def test_uid_expunge_needs_a_uid_set_and_a_selected_mailbox(self) -> None:
        self.session.loginDirectly()
        self.assertEqual(
            self.session.send(b"a UID EXPUNGE 1\r\n"), b"a BAD Command not allowed now\r\n"
        )
        self.session.select()
        for arguments in [b"", b" x", b" 1 2", b" 0"]:
            reply = self.session.send(b"b UID EXPUNGE" + arguments + b"\r\n")
            self.assertTrue(reply.startswith(b"b BAD "), (arguments, reply))


class UIDPlusClientTests(TestCase):
    timeout = 20

    @inlineCallbacks
    def test_imapclient_append_and_imaplib_copy_get_uidplus_codes(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        fixture = makeRealm(Path(self.mktemp()))
        store = fixture.store(ALICE)
        store.createFolder("Archive")
        validity = store.getFolder("Archive").uidValidity()
        port = yield listenIMAP(self, fixture)

        def client() -> dict[str, Any]:
            imap = imapclient(port)
            try:
                appended = [imap.append("INBOX", MESSAGE) for _ in range(3)]
            finally:
                imap.logout()
            plain = imaplib.IMAP4("127.0.0.1", port, timeout=10)
            try:
                plain.login(ALICE, PASSWORD)
                plain.select("INBOX")
                copied = plain.copy("3,1", "Archive")
            finally:
                plain.logout()
            return {"appended": appended, "copied": copied}

        seen = yield inThread(client)
        inboxValidity = store.getFolder("INBOX").uidValidity()
        self.assertEqual(
            seen["appended"],
            [b"[APPENDUID %d %d] APPEND completed" % (inboxValidity, n) for n in (1, 2, 3)],
        )
        self.assertEqual(
            seen["copied"], ("OK", [b"[COPYUID %d 1,3 1:2] COPY completed" % validity])
        )
