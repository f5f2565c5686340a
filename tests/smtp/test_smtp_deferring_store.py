"""
SMTP and LMTP delivery into a store whose disk operations answer in a later
reactor turn (L{tmail.testing.deferring}): the recipients' INBOXes and
quotas are waited for at RCPT, each copy's commit before the reply after
DATA or the last BDAT, and pipelined commands are answered in order,
exactly as over the store that answers at once, every message stored once.
"""

from __future__ import annotations

import re
import smtplib
import socket
from collections.abc import Callable
from pathlib import Path

from twisted.internet.protocol import ServerFactory
from twisted.trial.unittest import TestCase

from support.mx import mxFactory
from support.net import inThread, listen
from support.realm import ALICE, BOB, makeRealm
from tmail.config.schema import LMTPSettings
from tmail.interfaces import IMailFolder, IMailRealm, IMailStore
from tmail.realm.virtual import VirtualDomainRealm
from tmail.smtp.lmtp import LMTPFactory
from tmail.testing import call, deliver, read
from tmail.testing.deferring import deferringStore

CAROL = "carol@example.test"
SENDER = "someone@remote.example"
SMALL = b"From: someone@remote.example\r\nSubject: small\r\n\r\nhello\r\n.dotted\r\n"
BIG = b"From: someone@remote.example\r\nSubject: big\r\n\r\n" + (b"x" * 70 + b"\r\n") * 40
FULL = b"From: someone@remote.example\r\nSubject: fills carol's mailbox\r\n\r\nhi\r\n"


async def inbox(realm: IMailRealm, user: str) -> IMailFolder:
    """C{user}'s INBOX in C{realm}, with other store objects' changes picked up."""
    folder: IMailFolder = await call(realm.storeFor(user).getFolder, "INBOX")
    await call(folder.refresh)
    return folder


async def stored(realm: IMailRealm, user: str) -> list[bytes]:
    """The raw bytes of every message in C{user}'s INBOX, oldest first."""
    folder = await inbox(realm, user)
    return [await read(folder, info.uid) for info in folder.messages(False)]


class DeferringRealm(VirtualDomainRealm):
    """The virtual-domain realm, each store behind the deferring proxy."""

    def createStore(self, user: str) -> IMailStore:
        return deferringStore(super().createStore(user))


def transactions(greeting: bytes) -> list[tuple[bytes, bytes]]:
    """
    Three pipelined transactions: DATA to a user, a user whose mailbox is
    full already, an unknown user and a user whose mailbox cannot take the
    big message; DATA to one user; BDAT in two chunks to two users.  Each
    group of commands as RFC 2920 lets a client send them, with the reply
    that ends the group's answers.
    """
    head, tail = SMALL[:20], SMALL[20:]

    def rcpt(*users: str) -> bytes:
        return b"".join(b"RCPT TO:<%s>\r\n" % user.encode() for user in users)

    mail = b"MAIL FROM:<%s>\r\n" % SENDER.encode()
    return [
        (greeting + b" client.example.org\r\n", b"250 "),
        (mail + rcpt(ALICE, CAROL, "nobody@example.test", BOB) + b"DATA\r\n", b"354 "),
        (BIG + b".\r\n" + mail + rcpt(BOB) + b"DATA\r\n", b"354 "),
        (
            SMALL
            + b".\r\n"
            + mail
            + rcpt(ALICE, BOB)
            + b"BDAT %d\r\n%s" % (len(head), head)
            + b"BDAT %d LAST\r\n%s" % (len(tail), tail)
            + b"QUIT\r\n",
            b"221 ",
        ),
    ]


def replies(first: list[bytes], second: list[bytes], third: list[bytes]) -> list[bytes]:
    """
    The replies to L{transactions} after the greeting and C{EHLO}/C{LHLO},
    given the replies that end each transaction's message: the full mailbox
    and the unknown user refused at RCPT in the first, the BDAT chunk
    acknowledged in the third.
    """
    mailOk, rcptOk, goAhead = (
        b"250 2.1.0 Ok\r\n",
        b"250 2.1.5 Ok\r\n",
        b"354 End data with <CR><LF>.<CR><LF>\r\n",
    )
    return [
        mailOk,
        rcptOk,
        b"552 5.2.2 Mailbox full: quota exceeded\r\n",
        b"550 5.1.1 Recipient address rejected: User unknown\r\n",
        rcptOk,
        goAhead,
        *first,
        mailOk,
        rcptOk,
        goAhead,
        *second,
        mailOk,
        rcptOk,
        rcptOk,
        b"250 2.0.0 20 octets received\r\n",
        *third,
        b"221 2.0.0 Bye\r\n",
    ]


def _content(message: bytes) -> bytes:
    """The message as the client sent it, without the trace fields added here."""
    return message[message.index(b"From: " + SENDER.encode()) :]


def converse(port: int, script: list[tuple[bytes, bytes]]) -> list[bytes]:
    """
    Send each group of C{script} in one write, and read the replies up to
    the one that ends it; every final reply line, queue IDs made alike.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        replies = sock.makefile("rb")
        finals = [replies.readline()]
        for group, last in script:
            sock.sendall(group)
            while line := replies.readline():
                if re.match(rb"\d{3} ", line):
                    finals.append(re.sub(rb"queued as [0-9A-F]+", b"queued as ID", line))
                if line.startswith(last):
                    break
    return finals


class DeliveryDeferringStoreTests(TestCase):
    timeout = 30

    def setUp(self) -> None:
        self.fixture = makeRealm(Path(self.mktemp()), (ALICE, BOB, CAROL))
        self.fixture.setLimits(BOB, storage=2000)
        self.fixture.setLimits(CAROL, messages=1)
        self.deferring = DeferringRealm(self.fixture.directory, self.fixture.root / "data" / "mail")

    def smtp(self, realm: VirtualDomainRealm) -> ServerFactory:
        return mxFactory(realm, self.fixture.portal)

    def lmtp(self, realm: VirtualDomainRealm) -> ServerFactory:
        return LMTPFactory(realm, LMTPSettings(), hostname="lmtp.example.test")

    async def fillCarol(self) -> None:
        await deliver(await inbox(self.fixture.realm, CAROL), FULL)

    async def counts(self) -> dict[str, list[bytes]]:
        return {user: await stored(self.fixture.realm, user) for user in (ALICE, BOB, CAROL)}

    async def compare(
        self, plain: ServerFactory, deferring: ServerFactory, script: list[tuple[bytes, bytes]]
    ) -> list[bytes]:
        """
        Run C{script} over the store that answers at once, then over the
        deferring one: the same replies, and each run stores the same
        messages once.
        """
        await self.fillCarol()
        before = await self.counts()
        expected = await inThread(converse, await listen(self, plain), script)
        once = await self.counts()
        got = await inThread(converse, await listen(self, deferring), script)
        twice = await self.counts()
        self.assertEqual(got, expected)
        for user in (ALICE, BOB, CAROL):
            added = [_content(m) for m in once[user][len(before[user]) :]]
            again = [_content(m) for m in twice[user][len(once[user]) :]]
            self.assertEqual(again, added, user)
        return got

    async def pipelined(
        self, serve: Callable[[VirtualDomainRealm], ServerFactory], greeting: bytes
    ) -> list[bytes]:
        """
        L{compare} the L{transactions} served by C{serve} over each realm;
        each run stores the three messages to alice and bob and none to the
        full mailbox.  The replies after the greeting and C{greeting}.
        """
        got = await self.compare(
            serve(self.fixture.realm), serve(self.deferring), transactions(greeting)
        )
        inboxes = await self.counts()
        self.assertEqual([len(inboxes[user]) for user in (ALICE, BOB, CAROL)], [4, 4, 1])
        return got[2:]

    async def test_pipelined_smtp_transactions_answer_as_over_a_store_that_answers_at_once(
        self,
    ) -> None:
        """
        A full mailbox is refused at RCPT, a mailbox the message does not
        fit at the end of DATA; the 250s come once the copies are committed.
        """
        self.assertEqual(
            await self.pipelined(self.smtp, b"EHLO"),
            replies(
                [b"552 5.2.2 Mailbox full for 1 of 2 recipients; the others have the message\r\n"],
                [b"250 2.0.0 Ok: queued as ID\r\n"],
                [b"250 2.0.0 Ok: queued as ID\r\n"],
            ),
        )

    async def test_pipelined_lmtp_transactions_answer_each_recipient_after_its_commit(
        self,
    ) -> None:
        """As over SMTP, with a reply per recipient after DATA and after the last BDAT."""
        self.assertEqual(
            await self.pipelined(self.lmtp, b"LHLO"),
            replies(
                [
                    b"250 2.0.0 <alice@example.test> Ok: queued as ID\r\n",
                    b"552 5.2.2 <bob@example.test> Mailbox full: quota exceeded\r\n",
                ],
                [b"250 2.0.0 <bob@example.test> Ok: queued as ID\r\n"],
                [
                    b"250 2.0.0 <alice@example.test> Ok: queued as ID\r\n",
                    b"250 2.0.0 <bob@example.test> Ok: queued as ID\r\n",
                ],
            ),
        )

    async def test_smtplib_delivers_once_to_several_recipients(self) -> None:
        """smtplib's sendmail: the full mailbox refused at RCPT, the others stored once."""
        await self.fillCarol()
        port = await listen(self, self.smtp(self.deferring))

        def send() -> dict[str, tuple[int, bytes]]:
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
                return client.sendmail(SENDER, [ALICE, CAROL, BOB], SMALL)

        refused = await inThread(send)
        self.assertEqual(list(refused), [CAROL])
        self.assertEqual(refused[CAROL][0], 552)
        inboxes = await self.counts()
        self.assertEqual([len(inboxes[user]) for user in (ALICE, BOB, CAROL)], [1, 1, 1])
        for user in (ALICE, BOB):
            self.assertTrue(inboxes[user][0].endswith(SMALL), user)
