"""
A POP3 session on a full disk (a small tmpfs the test fills): the messages
are listed and retrieved, and QUIT ends well and marks them C{\\Seen}: a
rename in C{cur/} needs no room, and the mod-sequences the changes take
wait in memory for the log to have some.
"""

from __future__ import annotations

import contextlib
import poplib
from pathlib import Path

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from support.disk import fill, smallDisk
from support.net import inThread, listen
from support.realm import ALICE, PASSWORD, makeRealm
from tmail.auth.throttle import AuthThrottle
from tmail.config.schema import AuthSettings, POP3Settings
from tmail.pop3.factory import POP3Factory

COUNT = 200


def message(n: int) -> bytes:
    return b"Subject: message %d\r\n\r\nbody %d\r\n" % (n, n)


class FullDiskSessionTests(TestCase):
    timeout = 60

    def setUp(self) -> None:
        root = Path(self.mktemp()).resolve()
        disk = contextlib.ExitStack()
        self.addCleanup(disk.close)
        self.disk = disk.enter_context(smallDisk(root / "data" / "mail", "2m"))
        self.fixture = makeRealm(root)
        self.inbox = self.fixture.store(ALICE).getFolder("INBOX")
        for n in range(COUNT):
            pending = self.inbox.beginMessage()
            pending.write(message(n))
            pending.commit()

    async def test_retrieving_everything_and_quitting_works_on_a_full_disk(self) -> None:
        port = await listen(
            self,
            POP3Factory(
                self.fixture.portal,
                POP3Settings(),
                tlsContextFactory=None,
                throttle=AuthThrottle(AuthSettings(failure_delay=0), reactor),
                hostname="mail.example.test",
            ),
        )

        def session() -> tuple[int, int, list[bytes], bytes]:
            pop = poplib.POP3("127.0.0.1", port, timeout=30)
            pop.user(ALICE)
            pop.pass_(PASSWORD)
            filler = fill(self.disk)
            try:
                count = pop.stat()[0]
                listed = len(pop.uidl()[1])
                bodies = [b"\r\n".join(pop.retr(n + 1)[1]) + b"\r\n" for n in range(count)]
                return count, listed, bodies, pop.quit()
            finally:
                filler.unlink()

        count, listed, bodies, quit = await inThread(session)
        self.assertEqual((count, listed), (COUNT, COUNT))
        self.assertEqual(bodies, [message(n) for n in range(COUNT)])
        self.assertTrue(quit.startswith(b"+OK"), quit)
        unseen = [info.uid for info in self.inbox.messages() if "\\Seen" not in info.flags]
        self.assertEqual(unseen, [])
