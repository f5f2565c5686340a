"""
The in-memory store serves the real front ends: mail sent with C{smtplib}
to the MX listener lands in a L{MemoryRealm}, and C{imaplib} and C{poplib}
sessions over loopback read, flag, copy, search and expunge it there.
"""

from __future__ import annotations

import imaplib
import poplib
import smtplib
from collections.abc import Generator
from pathlib import Path
from typing import Any

from imapclient import IMAPClient
from twisted.cred.portal import Portal
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.threads import blockingCallFromThread
from twisted.trial.unittest import TestCase

from support.net import inThread, listen
from tmail.auth.checker import DirectoryChecker
from tmail.auth.throttle import AuthThrottle
from tmail.config.schema import AuthSettings, IMAPSettings, POP3Settings, SMTPSettings
from tmail.imap.factory import IMAPFactory
from tmail.pop3.factory import POP3Factory
from tmail.realm.memory import MemoryRealm
from tmail.smtp.factory import SMTPFactory
from tmail.store.memory import MemoryFolder, MemoryStore
from tmail.store.quota import overrideFields
from tmail.testing import passwdFileDirectory

imaplib.Commands.setdefault("SETMETADATA", ("AUTH", "SELECTED"))
imaplib.Commands.setdefault("MOVE", ("SELECTED",))

ALICE = "alice@example.test"
BOB = "bob@example.test"
PASSWORD = "alice's password"
RAW = (
    b"From: Someone <someone@remote.example>\r\n"
    b"To: alice@example.test\r\n"
    b"Subject: kept in memory\r\n"
    b"Date: Mon, 7 Jul 2025 10:00:00 +0200\r\n"
    b"Message-ID: <memory-1@remote.example>\r\n"
    b"\r\n"
    b"Hello from memory.\r\n"
)


class MemoryRealmFrontEndTests(TestCase):
    timeout = 30

    def setUp(self) -> None:
        directory = passwdFileDirectory(
            Path(self.mktemp()),
            {ALICE: PASSWORD.encode(), BOB: b"bob's password"},
            {"team@example.test": [ALICE, BOB]},
        )
        self.directory = directory
        self.realm = MemoryRealm(directory)
        self.portal = Portal(self.realm, [DirectoryChecker(directory)])

    def throttle(self) -> AuthThrottle:
        return AuthThrottle(AuthSettings(failure_delay=0), reactor)

    def listenSMTP(self) -> Deferred[int]:
        factory = SMTPFactory(
            self.realm,
            SMTPSettings(greet_pause=0),
            hostname="mx.example.test",
            submission=False,
            portal=self.portal,
            tlsContextFactory=None,
            throttle=self.throttle(),
        )
        return listen(self, factory)

    def listenIMAP(self) -> Deferred[int]:
        factory = IMAPFactory(
            self.portal,
            IMAPSettings(),
            tlsContextFactory=None,
            throttle=self.throttle(),
            hostname="mail.example.test",
        )
        return listen(self, factory)

    def listenPOP3(self) -> Deferred[int]:
        factory = POP3Factory(
            self.portal,
            POP3Settings(),
            tlsContextFactory=None,
            throttle=self.throttle(),
            hostname="mail.example.test",
        )
        return listen(self, factory)

    @inlineCallbacks
    def test_smtp_delivers_into_memory_stores_and_imap_reads_them(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        """
        One message to an alias of two users is stored for both; an IMAP
        session lists, fetches, flags, searches, copies and expunges it.
        """
        smtpPort = yield self.listenSMTP()
        imapPort = yield self.listenIMAP()

        def send() -> dict[str, Any]:
            with smtplib.SMTP("127.0.0.1", smtpPort, timeout=10) as client:
                return client.sendmail("someone@remote.example", ["team@example.test"], RAW)

        refused = yield inThread(send)
        self.assertEqual(refused, {})
        for user in (ALICE, BOB):
            store = self.realm.storeFor(user)
            assert isinstance(store, MemoryStore)
            [info] = store.folders["INBOX"].messages(claimRecent=False)
            with self.successResultOf(store.folders["INBOX"].openMessage(info.uid)) as f:
                self.assertTrue(f.read().endswith(RAW))

        def session() -> dict[str, Any]:
            seen: dict[str, Any] = {}
            imap = imaplib.IMAP4("127.0.0.1", imapPort, timeout=10)
            try:
                imap.login(ALICE, PASSWORD)
                imap.create("Archive")
                seen["select"] = imap.select("INBOX")
                seen["body"] = imap.uid("FETCH", "1", "(BODY.PEEK[] FLAGS)")
                seen["envelope"] = imap.uid("FETCH", "1", "(ENVELOPE)")
                imap.uid("STORE", "1", "+FLAGS", r"(\Flagged $Work)")
                seen["search"] = imap.uid("SEARCH", "FLAGGED", "SUBJECT", "memory")
                seen["copy"] = imap.uid("COPY", "1", "Archive")
                imap.uid("STORE", "1", "+FLAGS", r"(\Deleted)")
                seen["expunge"] = imap.expunge()
                seen["status"] = imap.status("Archive", "(MESSAGES UIDNEXT)")
                seen["list"] = imap.list()
                imap.logout()
            finally:
                if imap.state != "LOGOUT":
                    imap.shutdown()
            return seen

        seen = yield inThread(session)
        self.assertEqual(seen["select"], ("OK", [b"1"]))
        body = seen["body"][1][0]
        self.assertTrue(body[1].endswith(RAW), body)
        self.assertIn(b"kept in memory", seen["envelope"][1][0])
        self.assertEqual(seen["search"], ("OK", [b"1"]))
        self.assertEqual(seen["copy"][0], "OK")
        self.assertEqual(seen["expunge"], ("OK", [b"1"]))
        self.assertIn(b"MESSAGES 1", seen["status"][1][0])
        self.assertTrue(any(b"Archive" in line for line in seen["list"][1]))

        self.assertEqual(list(self.inbox(ALICE).messages(claimRecent=False)), [])
        [archived] = self.memoryStore(ALICE).folders["Archive"].messages(claimRecent=False)
        self.assertTrue({"\\Flagged", "$Work"} <= archived.flags, archived.flags)
        self.assertEqual(len(self.inbox(BOB).messages(False)), 1)

    @inlineCallbacks
    def test_pop3_retrieves_and_deletes_from_a_memory_store(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        self.deliverTo(ALICE)
        inbox = self.inbox(ALICE)
        port = yield self.listenPOP3()

        def session() -> tuple[Any, ...]:
            pop = poplib.POP3("127.0.0.1", port, timeout=10)
            pop.user(ALICE)
            pop.pass_(PASSWORD)
            stat = pop.stat()
            uidl = pop.uidl()
            lines = pop.retr(1)[1]
            pop.dele(1)
            pop.quit()
            return stat, uidl, lines

        stat, uidl, lines = yield inThread(session)
        self.assertEqual(stat, (1, len(RAW)))
        self.assertEqual(len(uidl[1]), 1)
        self.assertEqual(b"\r\n".join(lines) + b"\r\n", RAW)
        self.assertEqual(list(inbox.messages(claimRecent=False)), [])

    @inlineCallbacks
    def test_quota_from_the_directory_refuses_smtp_delivery(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        """A user's C{quota_rule} reaches the memory store: a full mailbox gets 552."""
        fields = self.directory.userFields(ALICE)
        self.directory.setUserFields(ALICE, overrideFields(fields, len(RAW) // 2, None))
        port = yield self.listenSMTP()

        def send() -> dict[str, Any]:
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
                return client.sendmail("someone@remote.example", [ALICE, BOB], RAW)

        refused = yield inThread(send)
        self.assertEqual(list(refused), [ALICE])
        self.assertEqual(refused[ALICE][0], 552)
        self.assertEqual(list(self.inbox(ALICE).messages(False)), [])
        self.assertEqual(len(self.inbox(BOB).messages(False)), 1)

    @inlineCallbacks
    def test_imap_extensions_work_on_a_memory_store(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        """
        CONDSTORE and QRESYNC, MOVE, special-use folders, METADATA, object
        IDs and IDLE use the memory store's optional interfaces.
        """
        for _ in range(3):
            self.deliverTo(ALICE)
        port = yield self.listenIMAP()

        def client() -> dict[str, Any]:
            seen: dict[str, Any] = {}
            imap = imaplib.IMAP4("127.0.0.1", port, timeout=10)
            try:
                imap.login(ALICE, PASSWORD)
                seen["caps"] = imap.capabilities
                imap.enable("QRESYNC")
                imap.select("INBOX")
                highest = imap.response("HIGHESTMODSEQ")[1][0]
                seen["highest"] = int(highest)
                since = f"(UNCHANGEDSINCE {int(highest)})"
                seen["store"] = imap.uid("STORE", "1", since, "+FLAGS", "($First)")
                seen["conflict"] = imap.uid("STORE", "1", since, "+FLAGS", "($Again)")
                seen["modified"] = imap.response("MODIFIED")
                seen["fetch"] = imap.uid("FETCH", "1:2", "(MODSEQ EMAILID)")
                seen["create"] = imap._simple_command("CREATE", "Bin", "(USE (\\Trash))")
                seen["list"] = imap.list()
                seen["move"] = imap.uid("MOVE", "2", "Bin")
                seen["status"] = imap.status("Bin", "(MESSAGES HIGHESTMODSEQ)")
                seen["setmetadata"] = imap._simple_command(
                    "SETMETADATA", "INBOX", '(/private/comment "hello")'
                )
                imap.logout()
            finally:
                if imap.state != "LOGOUT":
                    imap.shutdown()
            with IMAPClient("127.0.0.1", port=port, ssl=False, timeout=10) as idler:
                idler.login(ALICE, PASSWORD)
                idler.select_folder("INBOX")
                idler.idle()
                blockingCallFromThread(reactor, self.deliverTo, ALICE)
                seen["idle"] = idler.idle_check(timeout=5)
                idler.idle_done()
            return seen

        seen = yield inThread(client)
        for capability in ("CONDSTORE", "QRESYNC", "MOVE", "METADATA", "OBJECTID"):
            self.assertIn(capability, seen["caps"])
        self.assertGreater(seen["highest"], 0)
        self.assertEqual(seen["store"][0], "OK")
        self.assertIn(b"MODSEQ", b" ".join(seen["store"][1]))
        self.assertEqual(seen["conflict"][0], "OK")
        self.assertEqual(seen["modified"], ("MODIFIED", [b"1"]))
        fetched = b" ".join(part for part in seen["fetch"][1] if isinstance(part, bytes))
        self.assertEqual(fetched.count(b"EMAILID ("), 2, fetched)
        self.assertEqual(seen["create"][0], "OK")
        self.assertTrue(any(b"\\Trash" in line and b"Bin" in line for line in seen["list"][1]))
        self.assertEqual(seen["move"][0], "OK")
        self.assertIn(b"MESSAGES 1", seen["status"][1][0])
        self.assertEqual(seen["setmetadata"][0], "OK")
        store = self.memoryStore(ALICE)
        self.assertEqual(
            self.successResultOf(store.metadata("INBOX")), {"/private/comment": b"hello"}
        )
        self.assertEqual(
            (self.successResultOf(store.specialUse()) or {}).get("Bin"), frozenset({"\\Trash"})
        )
        self.assertIn((3, b"EXISTS"), seen["idle"])

    def memoryStore(self, user: str) -> MemoryStore:
        store = self.realm.storeFor(user)
        assert isinstance(store, MemoryStore)
        return store

    def inbox(self, user: str) -> MemoryFolder:
        return self.memoryStore(user).folders["INBOX"]

    def deliverTo(self, user: str) -> int:
        pending = self.inbox(user).beginMessage()
        pending.write(RAW)
        uid: int = self.successResultOf(pending.commit())
        return uid
