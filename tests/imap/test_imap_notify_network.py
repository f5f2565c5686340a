"""
NOTIFY (RFC 5465) over loopback TCP with real clients: one session changes a
folder another is not in, the other hears of it while idling and after a
NOOP; deliveries through LMTP and by another process reach it too.
"""

from __future__ import annotations

import imaplib
import smtplib
import subprocess
import sys
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

from imapclient import IMAPClient
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial.unittest import TestCase

from support.net import inThread, listen
from support.realm import ALICE, PASSWORD, makeRealm
from tmail.auth.throttle import AuthThrottle
from tmail.config.schema import AuthSettings, IMAPSettings, LMTPSettings
from tmail.imap.factory import IMAPFactory
from tmail.smtp.lmtp import LMTPFactory

imaplib.Commands.setdefault("NOTIFY", ("AUTH", "SELECTED"))

MESSAGE = b"From: bob@example.test\r\nTo: alice@example.test\r\nSubject: hi\r\n\r\nHello\r\n"

#: Delivers one message into a Maildir folder, as another program would.
_OTHER_PROCESS = """
import sys
from pathlib import Path
from tmail.store.maildir import BlockingMaildirStore
pending = BlockingMaildirStore(Path(sys.argv[1])).getFolder(sys.argv[2]).beginMessage()
pending.write(b"Subject: from elsewhere\\r\\n\\r\\nbody\\r\\n")
pending.commit()
"""


def notify(client: IMAPClient, arguments: str) -> list[bytes]:
    """Send NOTIFY; the untagged STATUS responses before its tagged OK."""
    imap = client._imap
    imap.untagged_responses.pop("STATUS", None)
    typ, data = imap._simple_command("NOTIFY", arguments)
    assert typ == "OK", (typ, data)
    return list(imap.untagged_responses.pop("STATUS", []))


class NotifyNetworkTests(TestCase):
    timeout = 30

    def setUp(self) -> None:
        self.fixture = makeRealm(Path(self.mktemp()))
        self.store = self.fixture.store(ALICE)
        self.store.createFolder("Archive")

    def listen(self, **settings: Any) -> Deferred[int]:
        factory = IMAPFactory(
            self.fixture.portal,
            IMAPSettings(**settings),
            tlsContextFactory=None,
            throttle=AuthThrottle(AuthSettings(failure_delay=0), reactor),
            hostname="mail.example.test",
        )
        return listen(self, factory)

    def client(self, port: int) -> IMAPClient:
        client = IMAPClient("127.0.0.1", port=port, ssl=False, timeout=10)
        client.login(ALICE, PASSWORD)
        self.addCleanup(client.shutdown)
        return client

    @inlineCallbacks
    def test_change_in_another_folder_reaches_idle_and_noop(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        """
        One imap session APPENDs to Archive; the other, with INBOX selected
        and NOTIFY over PERSONAL, gets STATUS for Archive while it idles, and
        in the responses to its NOOP when the change came between commands.
        """
        port = yield self.listen()

        def clients() -> dict[str, Any]:
            watcher, actor = self.client(port), self.client(port)
            watcher.select_folder("INBOX")
            seen: dict[str, Any] = {
                "capability": watcher.has_capability("NOTIFY"),
                "set": notify(
                    watcher,
                    "SET STATUS (selected (MessageNew MessageExpunge))"
                    " (personal (MessageNew MessageExpunge))",
                ),
            }
            watcher.idle()
            actor.append("Archive", MESSAGE)
            seen["idle"] = []
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and not seen["idle"]:
                seen["idle"] += watcher.idle_check(timeout=0.2)
            watcher.idle_done()
            actor.append("Archive", MESSAGE)
            time.sleep(0.3)
            seen["noop"] = watcher.noop()[1]
            return seen

        seen = yield inThread(clients)
        self.assertTrue(seen["capability"])
        # One STATUS per folder but the selected INBOX (the special folders made at login).
        self.assertEqual(len(seen["set"]), 5)
        self.assertIn(b'"Archive" (MESSAGES 0 UIDNEXT 1 UIDVALIDITY', b" ".join(seen["set"]))
        self.assertNotIn(b"INBOX", b" ".join(seen["set"]))
        self.assertIn(b"STATUS", repr(seen["idle"]).encode())
        self.assertIn(b"Archive", repr(seen["idle"]).encode())
        self.assertIn(b"MESSAGES', 1", repr(seen["idle"]).encode())
        self.assertIn(b"MESSAGES', 2", repr(seen["noop"]).encode())

    @inlineCallbacks
    def test_lmtp_delivery_reaches_a_notify_session(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        """A message delivered over LMTP into INBOX reaches a session in Archive as STATUS."""
        port = yield self.listen()
        lmtp = yield listen(
            self,
            LMTPFactory(
                self.fixture.realm,
                LMTPSettings(),
                hostname="lmtp.example.test",
                tlsContextFactory=None,
            ),
        )

        def clients() -> list[Any]:
            watcher = self.client(port)
            watcher.select_folder("Archive")
            notify(watcher, "SET (personal (MessageNew MessageExpunge))")
            watcher.idle()
            with smtplib.LMTP("127.0.0.1", lmtp) as sender:
                sender.sendmail("bob@remote.example", [ALICE], MESSAGE)
            seen: list[Any] = []
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and b"INBOX" not in repr(seen).encode():
                seen += watcher.idle_check(timeout=0.2)
            watcher.idle_done()
            return seen

        seen = yield inThread(clients)
        self.assertIn(b"STATUS', b'INBOX', (b'MESSAGES', 1", repr(seen).encode())

    @inlineCallbacks
    def test_delivery_by_another_process_is_found_by_the_poll(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        """
        A message another process writes into Archive reaches the session
        within imap.notify_poll_interval, with no client command.
        """
        port = yield self.listen(notify_poll_interval=0.2)
        root = str(self.store.root)

        def clients() -> list[Any]:
            watcher = self.client(port)
            watcher.select_folder("INBOX")
            notify(watcher, "SET (mailboxes Archive (MessageNew MessageExpunge))")
            watcher.idle()
            subprocess.run([sys.executable, "-c", _OTHER_PROCESS, root, "Archive"], check=True)
            seen: list[Any] = []
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and b"Archive" not in repr(seen).encode():
                seen += watcher.idle_check(timeout=0.2)
            watcher.idle_done()
            return seen

        seen = yield inThread(clients)
        self.assertIn(b"STATUS', b'Archive', (b'MESSAGES', 1", repr(seen).encode())
