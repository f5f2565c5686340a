"""
Quotas over IMAP: the real factory on a loopback port, a realm whose user has
a storage limit in the passwd file, and C{imaplib} or a raw socket as client.
APPEND and COPY over quota answer C{NO [OVERQUOTA]} (RFC 5530) and store
nothing; expunging makes room again.
"""

from __future__ import annotations

import imaplib
import socket
from collections.abc import Generator
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial.unittest import TestCase

from support.net import inThread, listen, readLine
from support.realm import ALICE, PASSWORD, makeRealm
from tmail.auth.throttle import AuthThrottle
from tmail.config.schema import AuthSettings, IMAPSettings
from tmail.imap.factory import IMAPFactory
from tmail.store.quota import overrideFields

MESSAGE = b"From: bob@example.test\r\nSubject: hello\r\n\r\n" + b"x" * 400 + b"\r\n"
LIMIT = 2 * len(MESSAGE) + 100


class IMAPQuotaTests(TestCase):
    timeout = 20

    def setUp(self) -> None:
        self.fixture = makeRealm(Path(self.mktemp()))
        self.fixture.directory.setUserFields(ALICE, overrideFields({}, LIMIT, None))
        self.store = self.fixture.store(ALICE)

    def listen(self) -> Deferred[int]:
        factory = IMAPFactory(
            self.fixture.portal,
            IMAPSettings(),
            tlsContextFactory=None,
            throttle=AuthThrottle(AuthSettings(failure_delay=0), reactor),
            hostname="mail.example.test",
        )
        return listen(self, factory)

    def login(self, port: int) -> imaplib.IMAP4:
        client = imaplib.IMAP4("127.0.0.1", port, timeout=10)
        self.addCleanup(client.shutdown)
        client.login(ALICE, PASSWORD)
        return client

    @inlineCallbacks
    def test_append_over_quota_is_no_overquota_and_expunge_makes_room(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        port = yield self.listen()

        def client() -> list[tuple[str, list[Any]]]:
            imap = self.login(port)
            results = [imap.append("INBOX", "", None, MESSAGE) for _ in range(3)]
            imap.select("INBOX")
            imap.store("1", "+FLAGS", "\\Deleted")
            imap.expunge()
            results.append(imap.append("INBOX", "", None, MESSAGE))
            return results

        first, second, third, afterExpunge = yield inThread(client)
        self.assertEqual((first[0], second[0]), ("OK", "OK"))
        self.assertEqual(third, ("NO", [b"[OVERQUOTA] Quota exceeded (mailbox for user is full)"]))
        self.assertEqual(afterExpunge[0], "OK")
        usage = self.store.quota()  # type: ignore[attr-defined]
        self.assertEqual((usage.storage, usage.messages), (2 * len(MESSAGE), 2))

    @inlineCallbacks
    def test_copy_over_quota_copies_nothing(self) -> Generator[Deferred[Any], Any, None]:
        """The first message would fit, the second not: neither stays copied."""
        small = b"Subject: small\r\n\r\nhi\r\n"
        limit = 2 * len(MESSAGE) + len(small) + 10
        self.fixture.directory.setUserFields(ALICE, overrideFields({}, limit, None))
        port = yield self.listen()
        self.store.createFolder("Archive")

        def client() -> tuple[Any, Any, Any]:
            imap = self.login(port)
            imap.append("INBOX", "", None, MESSAGE)
            imap.append("INBOX", "", None, small)
            imap.select("INBOX")
            copied = imap.copy("1:2", "Archive")
            status = imap.status("Archive", "(MESSAGES)")
            return copied, status, None

        copied, status, _ = yield inThread(client)
        self.assertEqual(copied, ("NO", [b"[OVERQUOTA] Quota exceeded (mailbox for user is full)"]))
        self.assertEqual(status, ("OK", [b'"Archive" (MESSAGES 0)']))
        usage = self.store.quota()  # type: ignore[attr-defined]
        self.assertEqual(usage.messages, 2)

    @inlineCallbacks
    def test_refused_nonsynchronizing_append_is_read_and_dropped(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        """A LITERAL+ message that cannot fit is refused; its bytes never run as commands."""
        port = yield self.listen()
        payload = b"c LOGOUT\r\n" + b"y" * LIMIT

        def client() -> list[bytes]:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                readLine(sock)
                login = b'a LOGIN "%s" "%s"\r\n' % (ALICE.encode(), PASSWORD.encode())
                sock.sendall(login)
                readLine(sock)
                sock.sendall(b"b APPEND INBOX {%d+}\r\n%s\r\nd NOOP\r\n" % (len(payload), payload))
                return [readLine(sock), readLine(sock)]

        lines = yield inThread(client)
        self.assertEqual(
            lines,
            [
                b"b NO [OVERQUOTA] Quota exceeded (mailbox for user is full)\r\n",
                b"d OK NOOP completed\r\n",
            ],
        )
        self.assertEqual(self.store.getFolder("INBOX").messages(), ())
