"""
QUOTA (RFC 9208) with the STORAGE and MESSAGE resources: one quota root,
C{"User quota"} as Dovecot names it, over the store's C{maildirsize}
usage and the user's limits.  SETQUOTA is refused (limits are the
operator's); the DELETED and DELETED-STORAGE STATUS items the resources
call for are answered.  A store that keeps no quota has no root.
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import Any

from imapclient.imapclient import Quota
from test_imap_protocol import MESSAGE, Session, deliver
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase, TestCase

from support.imaploop import imapclient, listenIMAP
from support.net import inThread
from support.realm import ALICE, makeRealm
from tmail.imap.account import IMAPAccount
from tmail.store.filework import INLINE
from tmail.store.maildir import MaildirStore
from tmail.store.quota import overrideFields

KIB = 1024
BODY = MESSAGE + b"x" * (5 * KIB - len(MESSAGE))


class QuotaTranscriptTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.session = Session(self)
        self.session.fixture.directory.setUserFields(ALICE, overrideFields({}, 512 * KIB, 1000))
        self.inbox = self.session.store.getFolder("INBOX")
        deliver(self.inbox, BODY)
        deliver(self.inbox, BODY)
        self.session.loginDirectly()

    def test_rfc9208_getquotaroot_names_the_root_and_its_usage(self) -> None:
        self.assertEqual(
            self.session.send(b"A003 GETQUOTAROOT INBOX\r\n"),
            b'* QUOTAROOT "INBOX" "User quota"\r\n'
            b'* QUOTA "User quota" (STORAGE 10 512 MESSAGE 2 1000)\r\n'
            b"A003 OK GETQUOTAROOT completed\r\n",
        )

    def test_rfc9208_getquota_of_the_root_and_of_an_unknown_root(self) -> None:
        self.assertEqual(
            self.session.send(b'G1 GETQUOTA "User quota"\r\n'),
            b'* QUOTA "User quota" (STORAGE 10 512 MESSAGE 2 1000)\r\nG1 OK GETQUOTA completed\r\n',
        )
        self.assertEqual(
            self.session.send(b'G2 GETQUOTA ""\r\n'), b"G2 NO [NONEXISTENT] No such quota root\r\n"
        )

    def test_usage_follows_appends_and_expunges(self) -> None:
        self.session.select()
        self.session.send(b"a APPEND INBOX {%d+}\r\n%s\r\n" % (len(BODY), BODY))
        reply = self.session.send(b'b GETQUOTA "User quota"\r\n')
        self.assertIn(b"(STORAGE 15 512 MESSAGE 3 1000)", reply)
        self.session.send(b"c STORE 1:3 +FLAGS.SILENT (\\Deleted)\r\nd EXPUNGE\r\n")
        reply = self.session.send(b'e GETQUOTA "User quota"\r\n')
        self.assertIn(b"(STORAGE 0 512 MESSAGE 0 1000)", reply)

    def test_only_limited_resources_are_listed(self) -> None:
        fixture = self.session.fixture
        fields = fixture.directory.userFields(ALICE)
        fixture.directory.setUserFields(ALICE, overrideFields(fields, None, 50))
        self.assertEqual(
            self.session.send(b'a GETQUOTA "User quota"\r\n'),
            b'* QUOTA "User quota" (MESSAGE 2 50)\r\na OK GETQUOTA completed\r\n',
        )
        fields = fixture.directory.userFields(ALICE)
        fixture.directory.setUserFields(ALICE, overrideFields(fields, None, None))
        self.assertEqual(
            self.session.send(b'b GETQUOTA "User quota"\r\n'),
            b'* QUOTA "User quota" ()\r\nb OK GETQUOTA completed\r\n',
        )

    def test_getquotaroot_of_a_missing_mailbox_is_nonexistent(self) -> None:
        self.assertEqual(
            self.session.send(b"a GETQUOTAROOT Nope\r\n"), b"a NO [NONEXISTENT] No such mailbox\r\n"
        )

    def test_setquota_is_refused_and_changes_nothing(self) -> None:
        """RFC 9208 4.1.1's example request, refused: only the operator sets limits."""
        self.assertEqual(
            self.session.send(b'A001 SETQUOTA "User quota" (STORAGE 1024 MESSAGE 5)\r\n'),
            b"A001 NO [NOPERM] Quota limits are set by the administrator\r\n",
        )
        self.assertIn(
            b"(STORAGE 10 512 MESSAGE 2 1000)", self.session.send(b'b GETQUOTA "User quota"\r\n')
        )

    def test_malformed_quota_commands_are_bad(self) -> None:
        for command in [
            b"GETQUOTA",
            b"GETQUOTAROOT",
            b'GETQUOTA "User quota" extra',
            b"SETQUOTA",
            b'SETQUOTA "User quota"',
            b'SETQUOTA "User quota" STORAGE 5',
            b'SETQUOTA "User quota" (STORAGE)',
            b'SETQUOTA "User quota" (STORAGE x)',
            b'SETQUOTA "User quota" (5 STORAGE)',
            b'SETQUOTA "User quota" ((STORAGE) 5)',
        ]:
            reply = self.session.send(b"a " + command + b"\r\n")
            self.assertTrue(reply.startswith(b"a BAD "), (command, reply))
        self.assertEqual(self.session.send(b"b NOOP\r\n"), b"b OK NOOP completed\r\n")

    def test_quota_commands_need_a_login(self) -> None:
        session = Session(self, self.session.fixture)
        self.assertEqual(
            session.send(b"a GETQUOTAROOT INBOX\r\n"), b"a BAD Command not allowed now\r\n"
        )

    def test_status_deleted_and_deleted_storage(self) -> None:
        """What an EXPUNGE would free: a count and units of 1024 octets, rounded up."""
        self.inbox.setFlags(1, ["\\Deleted"])
        deliver(self.inbox, b"Subject: small\r\n\r\nhi\r\n")
        self.inbox.setFlags(3, ["\\Deleted", "\\Seen"])
        self.assertEqual(
            self.session.send(b"a STATUS INBOX (DELETED DELETED-STORAGE MESSAGES)\r\n"),
            b'* STATUS "INBOX" (DELETED 2 DELETED-STORAGE 6 MESSAGES 3)\r\n'
            b"a OK STATUS completed\r\n",
        )

    def test_capability_lists_quota_and_both_resources(self) -> None:
        for name in (b" QUOTA ", b" QUOTA=RES-STORAGE ", b" QUOTA=RES-MESSAGE "):
            self.assertIn(name, self.session.greeting)


class NoQuotaTests(SynchronousTestCase):
    def test_a_store_without_quotas_has_no_quota_root(self) -> None:
        session = Session(self)
        session.server.account = IMAPAccount(
            MaildirStore(Path(self.mktemp()), fileWork=INLINE), ALICE
        )
        session.server.state = "auth"
        self.assertEqual(
            session.send(b"a GETQUOTAROOT INBOX\r\n"),
            b'* QUOTAROOT "INBOX"\r\na OK GETQUOTAROOT completed\r\n',
        )
        self.assertEqual(
            session.send(b'b GETQUOTA "User quota"\r\n'),
            b"b NO [NONEXISTENT] No such quota root\r\n",
        )


class QuotaClientTests(TestCase):
    timeout = 20

    @inlineCallbacks
    def test_imapclient_reads_the_quota_root_and_usage(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        fixture = makeRealm(Path(self.mktemp()))
        fixture.directory.setUserFields(ALICE, overrideFields({}, 100 * KIB, 10))
        port = yield listenIMAP(self, fixture)

        def client() -> Any:
            imap = imapclient(port)
            try:
                imap.append("INBOX", BODY)
                return imap.get_quota_root("INBOX"), imap.get_quota()
            finally:
                imap.logout()

        (roots, quotas), ofInbox = yield inThread(client)
        self.assertEqual(roots.mailbox, "INBOX")
        self.assertEqual(roots.quota_roots, ["User quota"])
        expected = [
            Quota("User quota", "STORAGE", 5, 100),
            Quota("User quota", "MESSAGE", 1, 10),
        ]
        self.assertEqual((quotas, ofInbox), (expected, expected))
