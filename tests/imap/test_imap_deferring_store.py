"""
IMAP over a store whose disk and network operations answer in a later
reactor turn (L{tmail.testing.deferring}), as a store working in a thread
pool or over a network does: every command waits for the store before it
answers and before the session's next command runs, and the client reads
the same replies, byte for byte (UIDVALIDITY, object ids, dates and tokens
aside), as from a store that answers at once.
"""

from __future__ import annotations

import re
import socket
import zlib
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

from test_imap_protocol import Session, deliver
from twisted.cred.portal import Portal
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase, TestCase

from support.imaploop import listenIMAP
from support.net import inThread, readLine
from support.realm import ALICE, BOB, DOMAIN, PASSWORD, RealmFixture
from tmail.auth.checker import DirectoryChecker
from tmail.directory.passwdfile import PasswdFileDirectory
from tmail.imap.account import IMAPAccount
from tmail.interfaces import IMailStore
from tmail.realm.virtual import VirtualDomainRealm
from tmail.store.quota import QuotaLimits
from tmail.testing.deferring import deferringStore

SIMPLE = (
    b"From: Bob <bob@example.test>\r\n"
    b"To: alice@example.test\r\n"
    b"Subject: lunch plans\r\n"
    b"Date: Mon, 7 Dec 2026 08:00:00 +0000\r\n"
    b"Message-ID: <one@example.test>\r\n"
    b"\r\n"
    b"Shall we meet at noon?\r\n"
)
REPLY = (
    b"From: Carol <carol@example.test>\r\n"
    b"To: alice@example.test\r\n"
    b"Subject: Re: lunch plans\r\n"
    b"Date: Mon, 7 Dec 2026 09:00:00 +0000\r\n"
    b"Message-ID: <two@example.test>\r\n"
    b"In-Reply-To: <one@example.test>\r\n"
    b"References: <one@example.test>\r\n"
    b"\r\n"
    b"Noon is fine; the usual place.\r\n"
)
MULTIPART = (
    b"From: Dave <dave@example.test>\r\n"
    b"To: alice@example.test\r\n"
    b"Subject: attachment\r\n"
    b"Date: Mon, 7 Dec 2026 10:00:00 +0000\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="zz"\r\n'
    b"\r\n"
    b"--zz\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n"
    b"\r\n"
    b"Gr=C3=BC=C3=9Fe, the report is attached.\r\n"
    b"--zz\r\n"
    b"Content-Type: application/octet-stream\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    b"AAECAwQFBgc=\r\n"
    b"--zz--\r\n"
)

_LITERAL_END = re.compile(rb"\{(\d+)\+?\}\r\n\Z")

#: What differs between two stores for the same commands: UIDVALIDITY,
#: object ids, arrival dates, URLAUTH tokens.
_VARYING = [
    (re.compile(rb"UIDVALIDITY \d+"), b"UIDVALIDITY V"),
    (re.compile(rb"(APPENDUID|COPYUID) \d+"), rb"\1 V"),
    (re.compile(rb"(MAILBOXID|EMAILID|THREADID) \(([^)]*)\)"), rb"\1 (X)"),
    (re.compile(rb'INTERNALDATE "[^"]*"'), b'INTERNALDATE "D"'),
    (re.compile(rb":internal:[0-9a-f]+"), b":internal:T"),
    (re.compile(rb";UIDVALIDITY=\d+"), b";UIDVALIDITY=V"),
    (re.compile(rb"MODSEQ \(\d+\)"), b"MODSEQ (M)"),
    (re.compile(rb"HIGHESTMODSEQ \d+"), b"HIGHESTMODSEQ M"),
]


def normalised(transcript: bytes) -> bytes:
    for pattern, replacement in _VARYING:
        transcript = pattern.sub(replacement, transcript)
    return transcript


class DeferringRealm(VirtualDomainRealm):
    """Users' Maildirs, each behind a store that answers in a later reactor turn."""

    def createStore(self, user: str) -> IMailStore:
        return deferringStore(super().createStore(user))


def realmFixture(root: Path, realmClass: type[VirtualDomainRealm]) -> RealmFixture:
    directory = PasswdFileDirectory(root / "data")
    directory.addDomain(DOMAIN)
    for user in (ALICE, BOB):
        directory.addUser(user, PASSWORD.encode())
    realm = realmClass(directory, root / "data" / "mail")
    checker = DirectoryChecker(directory)
    return RealmFixture(directory, realm, checker, Portal(realm, [checker]), root)


class Client:
    """A raw IMAP client: what it sends, and every byte the server answers."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.log: list[bytes] = [readLine(self.sock)]

    def response(self) -> bytes:
        """One response line, with the literals it holds."""
        line = readLine(self.sock)
        while True:
            match = _LITERAL_END.search(line)
            if match is None:
                return line
            size = int(match.group(1))
            data = b""
            while len(data) < size:
                chunk = self.sock.recv(size - len(data))
                if not chunk:
                    raise ConnectionError("closed inside a literal")
                data += chunk
            line += data + readLine(self.sock)

    def until(self, *tags: bytes) -> bytes:
        """Read until the tagged replies of C{tags}, in that order."""
        got: list[bytes] = []
        for tag in tags:
            while True:
                line = self.response()
                got.append(line)
                if line.startswith(tag + b" ") and line.split(b" ", 2)[1] in (b"OK", b"NO", b"BAD"):
                    break
        answer = b"".join(got)
        self.log.append(answer)
        return answer

    def untilLine(self, pattern: bytes) -> bytes:
        """Read lines until one matches C{pattern} (untagged news)."""
        got: list[bytes] = []
        while True:
            line = self.response()
            got.append(line)
            if re.search(pattern, line):
                return b"".join(got)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def command(self, tag: bytes, text: bytes) -> bytes:
        self.send(tag + b" " + text + b"\r\n")
        return self.until(tag)

    def close(self) -> None:
        self.sock.close()


def literal(data: bytes) -> bytes:
    return b"{%d+}\r\n%s" % (len(data), data)


def login(client: Client, user: str = ALICE) -> None:
    client.command(b"l", b'LOGIN "%s" "%s"' % (user.encode(), PASSWORD.encode()))


def conversation(port: int) -> bytes:
    """Every command a client uses, in one session, against the server on C{port}."""
    c = Client(port)
    other = Client(port)
    try:
        login(c)
        login(other)
        c.command(b"a01", b"CAPABILITY")
        c.command(b"a02", b"CREATE Work")
        c.command(b"a03", b"CREATE Work/Old")
        c.command(b"a04", b"RENAME Work/Old Work/Older")
        c.command(b"a05", b"CREATE Gone")
        c.command(b"a06", b"DELETE Gone")
        c.command(b"a07", b"DELETE Gone")
        c.command(b"a08", b"CREATE Stuff (USE (\\Archive))")
        c.command(b"a09", b"SUBSCRIBE Work")
        c.command(b"a10", b"UNSUBSCRIBE Work")
        c.command(b"a11", b"SUBSCRIBE Work/Older")
        c.command(b"a12", b'LSUB "" *')
        c.command(b"a13", b'LIST "" *')
        c.command(b"a14", b'LIST (SPECIAL-USE) "" *')
        # APPEND: with LITERAL+, with a synchronizing literal, MULTIAPPEND.
        c.command(b"a15", b"APPEND INBOX (\\Seen) " + literal(SIMPLE))
        c.send(b"a16 APPEND INBOX {%d}\r\n" % len(REPLY))
        c.log.append(c.response())
        c.send(REPLY + b"\r\n")
        c.until(b"a16")
        c.command(b"a17", b"APPEND INBOX " + literal(MULTIPART) + b" " + literal(SIMPLE))
        c.command(b"a18", b"APPEND Nowhere " + literal(SIMPLE))
        c.command(b"a19", b"STATUS INBOX (MESSAGES UIDNEXT UNSEEN RECENT SIZE HIGHESTMODSEQ)")
        c.command(b"a20", b'LIST "" * RETURN (STATUS (MESSAGES UIDNEXT UNSEEN))')
        c.command(b"a21", b"EXAMINE Work")
        c.command(b"a22", b"SELECT INBOX (CONDSTORE)")
        # CATENATE, from a part of a message of the selected mailbox.
        c.command(
            b"a23",
            b'APPEND Work CATENATE (TEXT %s URL ";UID=3/;SECTION=1")'
            % literal(b"Subject: forwarded\r\n\r\n"),
        )
        c.command(b"a24", b"FETCH 1:* (UID FLAGS RFC822.SIZE INTERNALDATE)")
        c.command(b"a25", b"FETCH 1:* (ENVELOPE BODYSTRUCTURE)")
        c.command(b"a26", b"FETCH 1:* (BODY.PEEK[])")
        c.command(b"a27", b"FETCH 1:4 (BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)] BODY.PEEK[TEXT])")
        c.command(b"a28", b"FETCH 3 (BINARY.PEEK[1] BINARY.SIZE[2] BINARY.PEEK[2])")
        c.command(b"a29", b"FETCH 1:* (PREVIEW EMAILID)")
        c.command(b"a30", b"FETCH 2 (BODY[TEXT])")
        c.command(b"a31", b"FETCH 2 (ENVELOPE BODY.PEEK[])")
        c.command(b"a32", b"SEARCH SUBJECT lunch")
        c.command(b"a33", b"SEARCH BODY noon")
        c.command(b"a34", b"UID SEARCH TEXT report")
        c.command(b"a35", b"SEARCH UNSEEN")
        c.command(b"a36", b"SORT (SUBJECT DATE) UTF-8 ALL")
        c.command(b"a37", b"THREAD REFERENCES UTF-8 ALL")
        c.command(b"a38", b"STORE 1 +FLAGS (\\Flagged)")
        c.command(b"a39", b"STORE 2 +FLAGS.SILENT (\\Answered)")
        c.command(b"a40", b"STORE 1:2 (UNCHANGEDSINCE 1) +FLAGS (\\Draft)")
        c.command(b"a41", b"UID STORE 1:* -FLAGS (\\Seen)")
        # Live results (RFC 5267 CONTEXT) follow this session's flag changes.
        c.command(b"u1", b"SEARCH RETURN (UPDATE) SEEN BODY noon")
        c.command(b"u2", b"SORT RETURN (UPDATE) (SUBJECT) UTF-8 SEEN")
        c.command(b"u3", b"STORE 1:3 +FLAGS (\\Seen)")
        c.command(b"u4", b"STORE 1 -FLAGS.SILENT (\\Seen)")
        c.command(b"u5", b'CANCELUPDATE "u1" "u2"')
        c.command(b"u6", b"STORE 1:3 -FLAGS.SILENT (\\Seen)")
        c.command(b"a42", b"COPY 1:2 Work")
        c.command(b"a43", b"COPY 1 Nowhere")
        c.command(b"a44", b"MOVE 4 Work")
        c.command(b"a45", b"STORE 1 +FLAGS.SILENT (\\Deleted)")
        c.command(b"a46", b"EXPUNGE")
        c.command(b"a47", b"STORE 1 +FLAGS.SILENT (\\Deleted)")
        c.command(b"a48", b"UID EXPUNGE 1:2")
        c.command(b"a49", b"GETQUOTAROOT INBOX")
        c.command(b"a50", b'GETQUOTA "User quota"')
        c.command(b"a51", b'SETMETADATA INBOX (/private/comment "lunch")')
        c.command(b"a52", b"GETMETADATA INBOX /private/comment")
        c.command(b"a53", b"GETMETADATA INBOX /private/nothing")
        # Another session's changes reach this one.
        other.command(b"o1", b"APPEND INBOX " + literal(REPLY))
        c.command(b"a54", b"NOOP")
        other.command(b"o2", b"SELECT INBOX")
        other.command(b"o3", b"STORE 1 +FLAGS (\\Seen)")
        c.command(b"a55", b"CHECK")
        # Which session a new message is \\Recent to is a race: none but this one.
        other.command(b"o5", b"UNSELECT")
        # IDLE sees a delivery made through another session.
        c.send(b"a56 IDLE\r\n")
        c.log.append(c.response())
        other.command(b"o4", b"APPEND INBOX " + literal(SIMPLE))
        c.log.append(c.untilLine(rb"^\* \d+ EXISTS"))
        c.send(b"DONE\r\n")
        c.until(b"a56")
        # Pipelined commands are answered in order, each after the one before.
        c.send(
            b"p1 NOOP\r\n"
            b"p2 FETCH 1:* (FLAGS)\r\n"
            b"p3 STORE 1 +FLAGS (\\Seen)\r\n"
            b"p4 SEARCH SEEN\r\n"
            b'p5 LIST "" INBOX\r\n'
            b"p6 STATUS Work (MESSAGES)\r\n"
            b"p7 APPEND Work " + literal(SIMPLE) + b"\r\n"
            b"p8 STATUS Work (MESSAGES)\r\n"
            b"p9 FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])\r\n"
        )
        c.until(b"p1", b"p2", b"p3", b"p4", b"p5", b"p6", b"p7", b"p8", b"p9")
        c.command(
            b"a57",
            b"GENURLAUTH"
            b' "imap://alice%40example.test@mail.example.test/INBOX/;uid=3/;section=1;'
            b'urlauth=anonymous" INTERNAL',
        )
        urls = re.findall(rb'GENURLAUTH "([^"]+)"', c.log[-1])
        c.command(b"a58", b'URLFETCH "%s"' % (urls[0] if urls else b"none"))
        c.command(b"a59", b"RESETKEY INBOX INTERNAL")
        c.command(b"a60", b"UNSELECT")
        c.command(b"a61", b"SELECT Work")
        c.command(b"a62", b"STORE 1 +FLAGS.SILENT (\\Deleted)")
        c.command(b"a63", b"CLOSE")
        c.command(b"a64", b"RENAME INBOX Saved")
        c.command(b"a65", b"STATUS Saved (MESSAGES)")
        c.command(b"a66", b"STATUS INBOX (MESSAGES)")
        c.command(b"a67", b"DELETE Saved")
        c.command(b"a68", b'LIST "" *')
        c.command(b"a69", b"LOGOUT")
        other.command(b"o9", b"LOGOUT")
    finally:
        c.close()
        other.close()
    return b"".join(c.log)


def notification(port: int) -> bytes:
    """NOTIFY: what one session hears of another's delivery into a watched mailbox."""
    watcher = Client(port)
    actor = Client(port)
    try:
        login(watcher)
        login(actor)
        actor.command(b"x0", b"CREATE Work")
        watcher.command(b"n1", b"SELECT INBOX")
        watcher.command(
            b"n2",
            b"NOTIFY SET STATUS (selected (MessageNew (UID FLAGS) MessageExpunge))"
            b" (personal (MessageNew MessageExpunge))",
        )
        actor.command(b"x1", b"APPEND Work " + literal(SIMPLE))
        heard = watcher.untilLine(rb'^\* STATUS "Work"')
        actor.command(b"x2", b"APPEND INBOX " + literal(REPLY))
        heard += watcher.untilLine(rb"^\* \d+ FETCH \(UID")
        watcher.command(b"n3", b"NOTIFY NONE")
        watcher.command(b"n4", b"LOGOUT")
        actor.command(b"x3", b"LOGOUT")
    finally:
        watcher.close()
        actor.close()
    return heard


def overQuota(port: int) -> bytes:
    """APPEND, MULTIAPPEND, CATENATE and COPY up to and past a quota of three messages."""
    c = Client(port)
    try:
        login(c)
        c.command(b"q1", b"APPEND INBOX " + literal(SIMPLE) + b" " + literal(REPLY))
        c.command(b"q2", b"APPEND INBOX " + literal(SIMPLE) + b" " + literal(REPLY))
        c.command(b"q3", b"SELECT INBOX")
        c.command(b"q4", b'APPEND INBOX CATENATE (URL ";UID=1" URL ";UID=2")')
        c.command(b"q5", b'APPEND INBOX CATENATE (URL ";UID=1")')
        c.command(b"q6", b"COPY 1:2 Archive")
        c.command(b"q7", b'GETQUOTA "User quota"')
        c.command(b"q8", b"STATUS Archive (MESSAGES)")
        c.command(b"q9", b"LOGOUT")
    finally:
        c.close()
    return b"".join(c.log)


class DeferringStoreTests(TestCase):
    """Real sessions over loopback, on a deferring store and on the plain one."""

    quota = QuotaLimits()

    def serve(self, realmClass: type[VirtualDomainRealm], name: str) -> Deferred[int]:
        fixture = realmFixture(Path(self.mktemp()) / name, realmClass)
        fixture.realm.defaultQuota = self.quota
        fixture.root.mkdir(parents=True, exist_ok=True)
        return listenIMAP(self, fixture, url_host="mail.example.test")

    def both(
        self, script: Callable[[int], bytes]
    ) -> Generator[Deferred[Any], Any, tuple[bytes, bytes]]:
        plainPort = yield self.serve(VirtualDomainRealm, "plain")
        deferringPort = yield self.serve(DeferringRealm, "deferring")
        plain = yield inThread(script, plainPort)
        later = yield inThread(script, deferringPort)
        return plain, later

    def assertClean(self, transcript: bytes) -> None:
        for sign in (b"Deferred", b"Traceback", b"SERVERBUG", b"Internal error", b" object at 0x"):
            self.assertNotIn(sign, transcript)

    @inlineCallbacks
    def test_every_command_answers_as_on_a_store_that_answers_at_once(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        plain, later = yield from self.both(conversation)
        self.assertClean(later)
        self.assertEqual(normalised(later), normalised(plain))
        # The replies are the commands' own, not failures alike on both.
        for expected in (
            b"a04 OK RENAME completed",
            b"a07 NO [NONEXISTENT]",
            b"a15 OK [APPENDUID",
            b"+ Ready for literal data\r\na16 OK [APPENDUID",
            b"a17 OK [APPENDUID V 3:4]",
            b"a18 NO [TRYCREATE]",
            b'* STATUS "INBOX" (MESSAGES 4 UIDNEXT 5 UNSEEN 3 RECENT 4 ',
            b'* STATUS "Work/Older" (MESSAGES 0 UIDNEXT 1 UNSEEN 0)',
            b"a22 OK [READ-WRITE]",
            b"a23 OK [APPENDUID V 1]",
            b"Gr=C3=BC=C3=9Fe, the report is attached.",
            b"BINARY[2] ~{8}\r\n\x00\x01\x02\x03\x04\x05\x06\x07",
            b'PREVIEW "Shall we meet at noon?"',
            b"* SEARCH 1 2 4\r\na33 OK",
            b"* SEARCH 3\r\na34 OK",
            b"* SORT 3 1 4 2\r\n",
            b"* THREAD ((1 2)(4))(3)\r\n",
            b"* 2 FETCH (MODSEQ (M))\r\na39 OK",
            b"a40 OK [MODIFIED 1:2]",
            b'* ESEARCH (TAG "u1") ADDTO (0 1:2)',
            b'* ESEARCH (TAG "u2") ADDTO (1 3,1:2)',
            b'* ESEARCH (TAG "u1") REMOVEFROM (0 1)',
            b'* ESEARCH (TAG "u2") REMOVEFROM (2 1)',
            b"a42 OK [COPYUID V 1:2 2:3]",
            b"a43 NO [TRYCREATE]",
            b"* OK [COPYUID V 4 4] Moved\r\n* 4 EXPUNGE\r\na44 OK",
            b"* 1 EXPUNGE\r\na46 OK",
            b"* 1 EXPUNGE\r\na48 OK UID EXPUNGE completed",
            b'* QUOTAROOT "INBOX" "User quota"',
            b'/private/comment "lunch"',
            b"* 2 EXISTS\r\n* 2 RECENT\r\na54 OK NOOP",
            b"* 1 FETCH (FLAGS (\\Seen \\Recent) MODSEQ (M))\r\na55 OK CHECK",
            b"+ Idling\r\n* 3 EXISTS",
            b'* STATUS "Work" (MESSAGES 4)\r\np6 OK',
            b'* STATUS "Work" (MESSAGES 5)\r\np8 OK',
            b"a57 OK GENURLAUTH completed",
            b'* URLFETCH "imap://alice%40example.test@mail.example.test/INBOX/;uid=3/;section=1;',
            b"a63 OK CLOSE completed",
            b"a64 OK RENAME completed",
            b'* STATUS "Saved" (MESSAGES 3)',
            b"a69 OK LOGOUT completed",
        ):
            self.assertIn(expected, normalised(later))
        tags = re.findall(rb"^(p\d) (?:OK|NO|BAD)", later, re.MULTILINE)
        self.assertEqual(tags, [b"p%d" % i for i in range(1, 10)])

    @inlineCallbacks
    def test_quota_is_waited_for(self) -> Generator[Deferred[Any], Any, None]:
        self.quota = QuotaLimits(messages=3)
        plain, later = yield from self.both(overQuota)
        self.assertClean(later)
        self.assertEqual(normalised(later), normalised(plain))
        for expected in (
            b"q1 OK [APPENDUID V 1:2]",
            b"q2 NO [OVERQUOTA]",
            b"q4 OK [APPENDUID V 3]",
            b"q5 NO [OVERQUOTA]",
            b"q6 NO [OVERQUOTA]",
            b'* QUOTA "User quota" (MESSAGE 3 3)',
            b'* STATUS "Archive" (MESSAGES 0)',
        ):
            self.assertIn(expected, normalised(later))

    @inlineCallbacks
    def test_notify_hears_another_sessions_delivery(self) -> Generator[Deferred[Any], Any, None]:
        plain, later = yield from self.both(notification)
        self.assertClean(later)
        self.assertRegex(later, rb'\* STATUS "Work" \(MESSAGES 1 UIDNEXT 2 UIDVALIDITY \d+\)')
        self.assertRegex(later, rb"\* 1 FETCH \(UID 1 FLAGS \(\\Recent\)\)")
        self.assertEqual(normalised(later), normalised(plain))


class _Later:
    """A call the store makes later, run when the test says."""

    def __init__(self, function: Callable[..., object], args: Any, kwargs: Any) -> None:
        self.function, self.args, self.kwargs = function, args, kwargs
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True

    def active(self) -> bool:
        return not self.cancelled


class StoreTurns:
    """
    The clock of a deferring store: what the store answers later is
    answered at the next L{turn}, all of it together, as a thread pool or a
    network answers what was asked together.
    """

    def __init__(self) -> None:
        self.queued: list[_Later] = []

    def callLater(
        self, delay: float, function: Callable[..., object], *a: Any, **kw: Any
    ) -> _Later:
        call = _Later(function, a, kw)
        self.queued.append(call)
        return call

    def seconds(self) -> float:
        return 0.0

    def getDelayedCalls(self) -> list[_Later]:
        return list(self.queued)

    def turn(self) -> None:
        calls, self.queued = self.queued, []
        for call in calls:
            if not call.cancelled:
                call.function(*call.args, **call.kwargs)


class StoreWaitTests(SynchronousTestCase):
    """
    A command over many messages waits for the store a slice of messages
    at a time, never once per message; what the message cache answers
    waits for nothing.
    """

    COUNT = 100

    def setUp(self) -> None:
        self.session = Session(self)
        inbox = self.session.store.getFolder("INBOX")
        for i in range(self.COUNT):
            deliver(inbox, (SIMPLE, REPLY, MULTIPART)[i % 3])
        self.store = StoreTurns()
        self.session.server.account = IMAPAccount(
            deferringStore(self.session.store, self.store), ALICE
        )
        self.session.server.state = "auth"
        self.session.server.dataReceived(b"s SELECT INBOX\r\n")
        self.waits(b"")

    def waits(self, line: bytes) -> tuple[bytes, int]:
        """Send C{line}; its reply and how many times it waited for the store."""
        self.session.server.dataReceived(line)
        waits = 0
        while True:
            self.session.pump()
            if not self.store.queued:
                return self.session.take(), waits
            self.store.turn()
            waits += 1
            self.assertLess(waits, 1000, "the command never ends")

    def test_fetch_of_many_bodies_waits_per_slice_not_per_message(self) -> None:
        reply, waits = self.waits(b"f FETCH 1:* (BODY.PEEK[] ENVELOPE)\r\n")
        self.assertEqual(reply.count(b" FETCH (BODY[] {"), self.COUNT)
        self.assertTrue(reply.endswith(b"f OK FETCH completed\r\n"), reply[-200:])
        self.assertLessEqual(waits, 2 * (self.COUNT // 32 + 1))

    def test_fetch_answered_by_the_message_cache_waits_for_nothing(self) -> None:
        first, _ = self.waits(b"a FETCH 1:* (ENVELOPE BODYSTRUCTURE)\r\n")
        second, waits = self.waits(b"b FETCH 1:* (ENVELOPE BODYSTRUCTURE)\r\n")
        self.assertEqual(waits, 0)
        self.assertEqual(second.replace(b"b OK", b"a OK"), first)

    def test_body_search_and_sort_wait_per_slice(self) -> None:
        reply, waits = self.waits(b"s SEARCH BODY noon\r\n")
        self.assertEqual(len(reply.split(b"\r\n")[0].split()) - 2, 2 * self.COUNT // 3 + 1)
        self.assertLessEqual(waits, 2 * (self.COUNT // 32 + 1))
        reply, waits = self.waits(b"t SORT (SUBJECT) UTF-8 ALL\r\n")
        self.assertTrue(reply.startswith(b"* SORT "), reply[:100])
        self.assertLessEqual(waits, 2 * (self.COUNT // 32 + 1))

    def test_store_and_copy_wait_per_slice(self) -> None:
        reply, waits = self.waits(b"a STORE 1:* +FLAGS (\\Flagged)\r\n")
        self.assertEqual(reply.count(b"\\Flagged"), self.COUNT)
        # Slices end after a few milliseconds too: a loaded machine makes more.
        self.assertLess(waits, self.COUNT // 2)
        self.session.store.createFolder("Copies")
        reply, waits = self.waits(b"b COPY 1:* Copies\r\n")
        self.assertIn(b"b OK [COPYUID ", reply)
        self.assertLess(waits, self.COUNT // 2)

    def test_list_status_of_many_folders_waits_per_slice(self) -> None:
        for i in range(60):
            self.session.store.createFolder(f"Folder{i:02}")
        reply, waits = self.waits(b'l LIST "" * RETURN (STATUS (MESSAGES))\r\n')
        self.assertEqual(reply.count(b"* STATUS "), 60 + 1)
        self.assertLess(waits, 61)

    def test_compress_answers_in_the_clear_after_waiting_for_the_store(self) -> None:
        """
        COMPRESS with changes to report waits for the store before its
        tagged reply, which goes out uncompressed, the news before it.
        """
        deliver(self.session.store.getFolder("INBOX"), SIMPLE)
        reply, waits = self.waits(b"c COMPRESS DEFLATE\r\n")
        self.assertGreaterEqual(waits, 1)
        self.assertEqual(
            reply,
            b"* %d EXISTS\r\n* %d RECENT\r\nc OK DEFLATE active\r\n" % ((self.COUNT + 1,) * 2),
        )
        deflater = zlib.compressobj(wbits=-15)
        sent = deflater.compress(b"n NOOP\r\n") + deflater.flush(zlib.Z_SYNC_FLUSH)
        answer, _ = self.waits(sent)
        self.assertEqual(
            zlib.decompressobj(wbits=-15).decompress(answer), b"n OK NOOP completed\r\n"
        )
