"""
FETCH on a full disk (a small tmpfs the test fills): BODY[] serves the
messages and sets C{\\Seen}, a rename in C{cur/} that needs no room (the
mod-sequences the changes take wait in memory for the log to have some).
"""

from __future__ import annotations

import contextlib
import imaplib
import re
from pathlib import Path

from twisted.trial.unittest import TestCase

from support.disk import fill, smallDisk
from support.imaploop import listenIMAP
from support.net import inThread
from support.realm import ALICE, PASSWORD, makeRealm

COUNT = 200


def message(n: int) -> bytes:
    return b"Subject: message %d\r\n\r\nbody %d\r\n" % (n, n)


class FullDiskFetchTests(TestCase):
    timeout = 60

    def setUp(self) -> None:
        root = Path(self.mktemp()).resolve()
        disk = contextlib.ExitStack()
        self.addCleanup(disk.close)
        self.disk = disk.enter_context(smallDisk(root / "data" / "mail", "2m"))
        self.fixture = makeRealm(root)
        inbox = self.fixture.store(ALICE).getFolder("INBOX")
        for n in range(COUNT):
            pending = inbox.beginMessage()
            pending.write(message(n))
            pending.commit()

    async def test_fetch_on_a_full_disk_serves_the_messages_and_sets_seen(self) -> None:
        port = await listenIMAP(self, self.fixture)

        def session() -> tuple[str, list[bytes], list[bytes]]:
            with imaplib.IMAP4("127.0.0.1", port, timeout=30) as client:
                client.login(ALICE, PASSWORD)
                client.select("INBOX")
                filler = fill(self.disk)
                try:
                    typ, data = client.fetch("1:*", "(BODY[])")
                    bodies = [item[1] for item in data if isinstance(item, tuple)]
                    flags = client.fetch("1:*", "(FLAGS)")[1]
                finally:
                    filler.unlink()
                return typ, bodies, flags

        typ, bodies, flags = await inThread(session)
        self.assertEqual(typ, "OK")
        self.assertEqual(bodies, [message(n) for n in range(COUNT)])
        unseen = [line for line in flags if not re.search(rb"\\Seen", line)]
        self.assertEqual(unseen, [])
