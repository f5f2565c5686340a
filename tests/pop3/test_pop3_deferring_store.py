"""
POP3 over a store whose disk operations answer in a later reactor turn
(L{tmail.testing.deferring}): the login waits for the INBOX and its
refresh, RETR and TOP wait for the message to open, QUIT's C{+OK} waits for
the flag changes and the expunge, and pipelined commands are answered in
order, exactly as over the store that answers at once.
"""

from __future__ import annotations

import poplib
import socket
from pathlib import Path

from twisted.cred.portal import Portal
from twisted.internet import reactor
from twisted.internet.threads import blockingCallFromThread
from twisted.trial.unittest import TestCase

from support.net import inThread, listen
from support.realm import ALICE, PASSWORD, makeRealm
from tmail.auth.throttle import AuthThrottle
from tmail.config.schema import AuthSettings, POP3Settings
from tmail.interfaces import IMailFolder, IMailRealm, IMailStore, MessageInfo
from tmail.pop3.factory import POP3Factory
from tmail.realm.virtual import VirtualDomainRealm
from tmail.testing import call, deliver
from tmail.testing.deferring import deferringStore

MESSAGES = [
    b"Subject: one\r\n\r\nfirst message\r\n",
    b"Subject: two\r\n\r\n.dotted\r\nsecond\r\nmessage\r\n",
    b"Subject: three\r\n\r\nthird\r\n",
]

#: Commands sent at once, and whether each answers with several lines.
SCRIPT: list[tuple[bytes, bool]] = [
    (f"USER {ALICE}".encode(), False),
    (f"PASS {PASSWORD}".encode(), False),
    (b"STAT", False),
    (b"LIST", True),
    (b"UIDL", True),
    (b"LIST 2", False),
    (b"UIDL 3", False),
    (b"RETR 1", True),
    (b"TOP 2 1", True),
    (b"RETR 3", True),
    (b"DELE 1", False),
    (b"RETR 1", True),
    (b"STAT", False),
    (b"RSET", False),
    (b"DELE 3", False),
    (b"LIST", True),
    (b"RETR 9", True),
    (b"NOOP", False),
]


async def inbox(realm: IMailRealm, user: str) -> IMailFolder:
    """C{user}'s INBOX in C{realm}, with other store objects' changes picked up."""
    folder: IMailFolder = await call(realm.storeFor(user).getFolder, "INBOX")
    await call(folder.refresh)
    return folder


async def listing(realm: IMailRealm, user: str) -> list[MessageInfo]:
    return list((await inbox(realm, user)).messages(False))


class DeferringRealm(VirtualDomainRealm):
    """The virtual-domain realm, each store behind the deferring proxy."""

    def createStore(self, user: str) -> IMailStore:
        return deferringStore(super().createStore(user))


def converse(port: int, script: list[tuple[bytes, bool]]) -> list[bytes]:
    """Send every command of C{script} at once; the replies, in the order given."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        replies = sock.makefile("rb")
        transcript = [replies.readline()]
        sock.sendall(b"".join(command + b"\r\n" for command, _ in script))
        for _, multiline in script:
            reply = replies.readline()
            if multiline and reply.startswith(b"+OK"):
                while not reply.endswith(b"\r\n.\r\n"):
                    line = replies.readline()
                    if not line:
                        break
                    reply += line
            transcript.append(reply)
    return transcript


class POP3DeferringStoreTests(TestCase):
    timeout = 30

    def setUp(self) -> None:
        self.fixture = makeRealm(Path(self.mktemp()))
        self.deferring = DeferringRealm(self.fixture.directory, self.fixture.root / "data" / "mail")

    async def fill(self) -> None:
        folder = await inbox(self.deferring, ALICE)
        for message in MESSAGES:
            await deliver(folder, message)

    async def listen(self, realm: VirtualDomainRealm) -> int:
        factory = POP3Factory(
            Portal(realm, [self.fixture.checker]),
            POP3Settings(),
            tlsContextFactory=None,
            throttle=AuthThrottle(AuthSettings(failure_delay=0), reactor),
            hostname="mail.example.test",
        )
        port: int = await listen(self, factory)
        return port

    async def test_pipelined_session_answers_as_over_a_store_that_answers_at_once(self) -> None:
        """
        The same pipelined commands get the same replies, byte for byte, in
        the same order; QUIT's C{+OK} comes once the expunge and C{\\Seen}
        are stored.
        """
        await self.fill()
        plain = await self.listen(self.fixture.realm)
        expected = await inThread(converse, plain, SCRIPT)
        self.assertEqual(expected[1:3], [b"+OK Send your password\r\n", b"+OK Logged in\r\n"])
        self.assertTrue(expected[8].endswith(b"first message\r\n.\r\n"), expected[8])
        self.assertIn(b"\r\n..dotted\r\n.\r\n", expected[9])

        deferred = await self.listen(self.deferring)
        got = await inThread(converse, deferred, [*SCRIPT, (b"QUIT", False)])
        self.assertEqual(got[:-1], expected)
        self.assertEqual(got[-1], b"+OK Bye\r\n")

        infos = await listing(self.fixture.realm, ALICE)
        self.assertEqual([info.size for info in infos], [len(m) for m in MESSAGES[:2]])
        self.assertEqual([info.flags for info in infos], [{"\\Seen"}, set()])

    async def test_poplib_session(self) -> None:
        """USER/PASS, STAT, LIST, UIDL, RETR, TOP, DELE, RSET and QUIT with expunge."""
        await self.fill()
        port = await self.listen(self.deferring)

        def client() -> None:
            pop = poplib.POP3("127.0.0.1", port, timeout=10)
            pop.user(ALICE)
            pop.pass_(PASSWORD)
            self.assertEqual(pop.stat(), (3, sum(map(len, MESSAGES))))
            _, listing, _ = pop.list()
            self.assertEqual(listing, [b"%d %d" % (i + 1, len(m)) for i, m in enumerate(MESSAGES)])
            self.assertEqual(len(set(pop.uidl()[1])), 3)
            for n, message in enumerate(MESSAGES, 1):
                _, lines, _ = pop.retr(n)
                self.assertEqual(b"".join(line + b"\r\n" for line in lines), message)
            _, top, _ = pop.top(2, 1)
            self.assertEqual(top, [b"Subject: two", b"", b".dotted"])
            pop.dele(2)
            pop.rset()
            pop.dele(1)
            pop.dele(3)
            self.assertEqual(pop.stat(), (1, len(MESSAGES[1])))
            pop.quit()

        await inThread(client)
        self.assertEqual(
            [(i.size, i.flags) for i in await listing(self.fixture.realm, ALICE)],
            [(len(MESSAGES[1]), {"\\Seen"})],
        )

    async def test_login_lists_mail_delivered_by_another_store_object(self) -> None:
        """The snapshot is taken after the INBOX picked up changes made elsewhere."""
        port = await self.listen(self.deferring)
        await inThread(converse, port, SCRIPT[:3])
        await deliver(await inbox(self.fixture.realm, ALICE), MESSAGES[0])
        replies = await inThread(converse, port, SCRIPT[:3])
        self.assertEqual(replies[3], b"+OK 1 %d\r\n" % len(MESSAGES[0]))

    async def test_message_removed_by_another_session_is_told_and_skipped_at_quit(self) -> None:
        """
        RETR of a message another store object expunged meanwhile gets
        C{-ERR}; QUIT still marks the message retrieved before C{\\Seen}
        and removes the one marked deleted, though another is gone.
        """
        await self.fill()
        port = await self.listen(self.deferring)
        plain = await inbox(self.fixture.realm, ALICE)
        first, second, third = (info.uid for info in plain.messages(False))

        def client() -> list[bytes]:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                replies = sock.makefile("rb")
                transcript = [replies.readline()]
                sock.sendall(f"USER {ALICE}\r\nPASS {PASSWORD}\r\nRETR 2\r\nDELE 3\r\n".encode())
                transcript += [replies.readline() for _ in range(3)]
                while replies.readline() != b".\r\n":
                    pass
                transcript.append(replies.readline())
                blockingCallFromThread(reactor, call, plain.expunge, [first])
                sock.sendall(b"RETR 1\r\nQUIT\r\n")
                transcript += [replies.readline(), replies.readline()]
            return transcript

        transcript = await inThread(client)
        self.assertEqual(
            transcript[1:3] + transcript[4:],
            [
                b"+OK Send your password\r\n",
                b"+OK Logged in\r\n",
                b"+OK Message 3 deleted\r\n",
                b"-ERR Message 1 no longer exists\r\n",
                b"+OK Bye\r\n",
            ],
        )
        self.assertEqual(
            [(i.uid, i.flags) for i in await listing(self.fixture.realm, ALICE)],
            [(second, {"\\Seen"})],
        )
        self.assertNotIn(third, [i.uid for i in await listing(self.fixture.realm, ALICE)])
