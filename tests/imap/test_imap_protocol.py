"""
The IMAP session driven byte by byte over C{StringTransport}, with a fake
clock and a real Maildir store: parsing, literals, pipelining, IDLE, error
reporting, and random input.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.cred.portal import Portal
from twisted.internet.address import IPv4Address
from twisted.internet.defer import maybeDeferred
from twisted.internet.task import Clock, Cooperator
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from support.realm import ALICE, PASSWORD, makeRealm
from tmail.auth.throttle import AuthThrottle
from tmail.config.schema import AuthSettings, IMAPSettings
from tmail.imap.account import IMAPAccount
from tmail.imap.factory import IMAPFactory
from tmail.imap.server import IMAPServer
from tmail.interfaces import IMailFolder

MESSAGE = b"From: bob@example.test\r\nSubject: hello\r\n\r\nHi there\r\n"

#: Every line a server may send outside a literal.
_RESPONSE = re.compile(
    rb'^(\*|[^\x00-\x20\x7f-\xff(){%*"\\+]+) (OK|NO|BAD|BYE)( |$)|^\* (\d+ (EXISTS|RECENT))$'
)
_DATA = (
    b"* FLAGS",
    b"* LIST",
    b"* LSUB",
    b"* SEARCH",
    b"* STATUS",
    b"* CAPABILITY",
    b"* NAMESPACE",
)


def deliver(folder: IMailFolder, message: bytes = MESSAGE) -> int:
    pending = folder.beginMessage()
    pending.write(message)
    return pending.commit()


def created(reply: bytes) -> bytes:
    """A CREATE reply without its C{[MAILBOXID (...)]} code (RFC 8474), which varies."""
    return re.sub(rb" \[MAILBOXID \([A-Za-z0-9_-]+\)\]", b"", reply)


def responses(data: bytes) -> list[bytes]:
    """Split server output into responses, skipping over literals."""
    found = []
    while data:
        line, _, data = data.partition(b"\r\n")
        while (literal := re.search(rb"\{(\d+)\}$", line)) is not None:
            size = int(literal.group(1))
            rest, _, data = data[size:].partition(b"\r\n")
            line = line + b"<literal>" + rest
        found.append(line)
    return found


class Session:
    """One server protocol on a C{StringTransport}, with a clock to pump."""

    def __init__(self, testCase: SynchronousTestCase, fixture: Any = None, **options: Any) -> None:
        self.fixture = fixture or makeRealm(Path(testCase.mktemp()))
        self.clock = Clock()
        peer = options.pop("peer", "127.0.0.1")
        checker = InMemoryUsernamePasswordDatabaseDontUse(**{ALICE: PASSWORD.encode()})
        factory = IMAPFactory(
            Portal(self.fixture.realm, [checker]),
            IMAPSettings(**options),
            tlsContextFactory=None,
            throttle=AuthThrottle(AuthSettings(failure_delay=0), self.clock),
            hostname="mail.example.test",
            clock=self.clock,
        )
        factory.runInThread = maybeDeferred  # type: ignore[method-assign]
        self.server: IMAPServer = factory.buildProtocol(None)
        self.server.cooperator = Cooperator(
            scheduler=lambda call: self.clock.callLater(0, call), started=True
        )
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", peer, 40000))
        self.server.makeConnection(self.transport)
        self.greeting = self.take()

    @property
    def store(self) -> Any:
        return self.fixture.store(ALICE)

    def take(self) -> bytes:
        data = self.transport.value()
        self.transport.clear()
        return data

    def send(self, data: bytes) -> bytes:
        """Feed bytes, let every pending call run, return what the server wrote."""
        self.server.dataReceived(data)
        self.pump()
        return self.take()

    def sendEnabling(self, data: bytes) -> bytes:
        """
        L{send} of the session's first CONDSTORE-enabling command with a
        mailbox selected: what follows the C{OK [HIGHESTMODSEQ n]} that
        must come first (RFC 7162 3.1).
        """
        reply = self.send(data)
        match = re.match(rb"\* OK \[HIGHESTMODSEQ \d+\] Highest\r\n", reply)
        assert match is not None, reply
        return reply[match.end() :]

    def pump(self) -> None:
        for _ in range(1000):
            if not self.clock.getDelayedCalls():
                return
            self.clock.advance(0)

    def loginDirectly(self) -> None:
        self.server.account = IMAPAccount(self.fixture.realm.storeFor(ALICE), ALICE)
        self.server.state = "auth"

    def select(self, name: bytes = b"INBOX") -> bytes:
        self.loginDirectly()
        return self.send(b"s SELECT " + name + b"\r\n")


class ProtocolTests(SynchronousTestCase):
    def session(self, **options: Any) -> Session:
        return Session(self, **options)

    def test_greeting(self) -> None:
        session = self.session()
        self.assertRegex(
            session.greeting,
            rb"^\* OK \[CAPABILITY IMAP4rev1 [^\]]*AUTH=PLAIN[^\]]*\] tmail ready\.\r\n$",
        )
        self.assertNotIn(b"STARTTLS", session.greeting)

    def test_remotePeerWithoutTLSIsRefusedLogin(self) -> None:
        """The default policy allows plaintext logins from loopback only."""
        session = self.session(peer="192.0.2.7")
        self.assertIn(b"LOGINDISABLED", session.greeting)
        self.assertNotIn(b"AUTH=PLAIN", session.greeting)
        reply = session.send(b"a LOGIN " + ALICE.encode() + b" " + PASSWORD.encode() + b"\r\n")
        self.assertEqual(reply, b"a NO [PRIVACYREQUIRED] Use STARTTLS before logging in\r\n")
        reply = session.send(b"b AUTHENTICATE PLAIN\r\n")
        self.assertTrue(reply.startswith(b"b NO [PRIVACYREQUIRED]"), reply)
        self.assertEqual(session.send(b"c STARTTLS\r\n"), b"c NO TLS is not available\r\n")

    def test_loginAndPipelinedSelect(self) -> None:
        """A command pipelined behind LOGIN runs after the login, in order."""
        session = self.session()
        reply = session.send(
            b"a LOGIN " + ALICE.encode() + b' "' + PASSWORD.encode() + b'"\r\nb SELECT INBOX\r\n'
        )
        self.assertRegex(reply, rb"^a OK \[CAPABILITY IMAP4rev1 [^\]]*\] Logged in\r\n")
        self.assertNotRegex(reply.split(b"\r\n")[0], rb"[ []AUTH=")
        self.assertTrue(reply.endswith(b"b OK [READ-WRITE] SELECT completed\r\n"), reply)

    def test_authenticatePlain(self) -> None:
        """AUTHENTICATE PLAIN with a continuation, with SASL-IR, and cancelled."""
        import base64

        token = base64.b64encode(b"\0" + ALICE.encode() + b"\0" + PASSWORD.encode())
        session = self.session()
        self.assertEqual(session.send(b"a AUTHENTICATE PLAIN\r\n"), b"+ \r\n")
        self.assertEqual(session.send(b"*\r\n"), b"a BAD AUTHENTICATE cancelled\r\n")
        self.assertEqual(session.send(b"b AUTHENTICATE PLAIN\r\n"), b"+ \r\n")
        self.assertEqual(session.send(b"!!notbase64\r\n"), b"b BAD Invalid base64\r\n")
        other = base64.b64encode(b"bob@example.test\0" + ALICE.encode() + b"\0x")
        self.assertTrue(
            session.send(b"c AUTHENTICATE PLAIN " + other + b"\r\n").startswith(
                b"c NO [AUTHORIZATIONFAILED]"
            )
        )
        reply = session.send(b"d AUTHENTICATE PLAIN " + token + b"\r\n")
        self.assertTrue(reply.startswith(b"d OK [CAPABILITY"), reply)
        self.assertEqual(session.server.state, "auth")

    def test_wrongPassword(self) -> None:
        session = self.session()
        reply = session.send(b"a LOGIN " + ALICE.encode() + b" nope\r\n")
        self.assertEqual(reply, b"a NO [AUTHENTICATIONFAILED] Authentication failed\r\n")

    def test_commandsInTheWrongState(self) -> None:
        session = self.session()
        self.assertEqual(session.send(b"a SELECT INBOX\r\n"), b"a BAD Command not allowed now\r\n")
        self.assertEqual(session.send(b"b FROB\r\n"), b"b BAD Unknown command\r\n")
        self.assertEqual(session.send(b"\r\n"), b"* BAD Invalid tag\r\n")
        self.assertEqual(session.send(b"c\r\n"), b"c BAD Missing command\r\n")
        self.assertEqual(session.send(b"d NOOP extra\r\n"), b"d BAD Too many arguments\r\n")

    def test_selectAndExamineResponses(self) -> None:
        """
        SELECT reports what RFC 3501 requires (Twisted omitted UIDNEXT,
        UNSEEN and PERMANENTFLAGS), and HIGHESTMODSEQ (RFC 7162 3.1.2.1).
        """
        session = self.session()
        inbox = session.store.getFolder("INBOX")
        deliver(inbox)
        second = deliver(inbox)
        inbox.messages()
        inbox.setFlags(1, ["\\Seen"])
        reply = session.select()
        validity = inbox.uidValidity()
        self.assertEqual(
            reply,
            b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n"
            b"* 2 EXISTS\r\n"
            b"* 0 RECENT\r\n"
            b"* OK [UNSEEN 2] First unseen message\r\n"
            b"* OK [UIDVALIDITY %d] UIDs valid\r\n"
            b"* OK [UIDNEXT %d] Predicted next UID\r\n"
            b"* OK [MAILBOXID (%s)] Ok\r\n"
            b"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)]"
            b" Flags allowed\r\n"
            b"* OK [HIGHESTMODSEQ %d] Highest\r\n"
            b"s OK [READ-WRITE] SELECT completed\r\n"
            % (validity, second + 1, inbox.mailboxId().encode(), inbox.highestModSeq()),
        )
        reply = session.send(b"e EXAMINE INBOX\r\n")
        self.assertIn(b"* OK [PERMANENTFLAGS ()] Flags allowed\r\n", reply)
        self.assertTrue(reply.endswith(b"e OK [READ-ONLY] EXAMINE completed\r\n"))
        self.assertEqual(
            session.send(b"f STORE 2 +FLAGS (\\Seen)\r\n"), b"f NO Mailbox is read-only\r\n"
        )
        session.send(b"g FETCH 2 BODY[]\r\n")
        self.assertNotIn("\\Seen", inbox.messages()[1].flags)

    def test_fetchSyntaxErrors(self) -> None:
        session = self.session()
        deliver(session.store.getFolder("INBOX"))
        session.select()
        for command in [
            b"a FETCH 1 (FLAGS",
            b"a FETCH 0 FLAGS",
            b"a FETCH 2 FLAGS",
            b"a FETCH 1 BODY[]<5.0>",
            b"a FETCH 1 NONSENSE",
            b"a FETCH 1:x FLAGS",
            b"a STORE 1 +FLAGS (\\Recent)",
            b"a STORE 1 +FLAGS (\\Bogus)",
            b"a STORE 1 BOGUS (\\Seen)",
            b'a APPEND INBOX "31-Feb-2025 00:00:00 +0000" {1}',
            b"a SEARCH CHARSET",
            b"a UID FROB 1",
        ]:
            reply = session.send(command + b"\r\n")
            self.assertTrue(reply.startswith(b"a BAD "), (command, reply))
        self.assertEqual(session.send(b"b NOOP\r\n"), b"b OK NOOP completed\r\n")

    def test_fetchPipelinedBehindAStreamingFetch(self) -> None:
        """A command sent during a FETCH runs after it (input is paused meanwhile)."""
        session = self.session()
        deliver(session.store.getFolder("INBOX"), MESSAGE * 3000)
        session.select()
        reply = session.send(b"a FETCH 1 BODY.PEEK[]\r\nb NOOP\r\n")
        self.assertTrue(reply.startswith(b"* 1 FETCH (BODY[] {%d}\r\n" % (len(MESSAGE) * 3000)))
        self.assertTrue(reply.endswith(b")\r\na OK FETCH completed\r\nb OK NOOP completed\r\n"))
        self.assertFalse(session.server.paused)

    def test_quotedStringEscapes(self) -> None:
        """C{\\"} and C{\\\\} inside quoted strings (Twisted answered BAD)."""
        session = self.session()
        session.loginDirectly()
        self.assertEqual(
            created(session.send(b'a CREATE "we\\"ird\\\\name"\r\n')), b"a OK CREATE completed\r\n"
        )
        self.assertIn('we"ird\\name', session.store.listFolders())
        reply = session.send(b'b LIST "" we*\r\n')
        self.assertEqual(
            reply, b'* LIST (\\HasNoChildren) "/" "we\\"ird\\\\name"\r\nb OK LIST completed\r\n'
        )
        self.assertEqual(
            session.send(b'c CREATE "bad\\x"\r\n'), b"c BAD Invalid escape in quoted string\r\n"
        )

    def test_literals(self) -> None:
        """Synchronizing literals get a continuation; LITERAL+ ones do not."""
        session = self.session()
        session.loginDirectly()
        self.assertEqual(session.send(b"a CREATE {3}\r\n"), b"+ Ready for literal data\r\n")
        self.assertEqual(created(session.send(b"One\r\n")), b"a OK CREATE completed\r\n")
        self.assertEqual(
            created(session.send(b"b CREATE {3+}\r\nTwo\r\n")), b"b OK CREATE completed\r\n"
        )
        self.assertEqual(
            session.send(b"c RENAME {3+}\r\nTwo {5+}\r\nThree\r\n"), b"c OK RENAME completed\r\n"
        )
        self.assertEqual(session.store.listFolders(), ["INBOX", "One", "Three"])

    def test_nonCanonicalModifiedUTF7IsRefused(self) -> None:
        """C{&AC4ALgAv-} decodes to C{../}; it must not reach the store."""
        session = self.session()
        session.loginDirectly()
        reply = session.send(b"a CREATE &AC4ALgAv-\r\n")
        self.assertEqual(reply, b"a NO [CANNOT] mailbox name is not canonical modified UTF-7\r\n")
        self.assertEqual(session.send(b"b SELECT &AGEAYgBj-\r\n")[:6], b"b NO [")
        self.assertEqual(created(session.send(b"c CREATE &AOQ-\r\n")), b"c OK CREATE completed\r\n")
        self.assertIn("ä", session.store.listFolders())

    def test_refused_nonsync_literal_is_not_run_as_commands(self) -> None:
        """
        The payload of a refused LITERAL+ is read and dropped (Dovecot 2.2.1
        ran it as commands); an unusable size closes the session.
        """
        session = self.session()
        session.loginDirectly()
        payload = b"x LOGOUT\r\n"
        reply = session.send(
            b"a FROB {%d+}\r\n%s trailing {4+}\r\nzzzz\r\nb NOOP\r\n"
            % (
                len(payload),
                payload,
            )
        )
        self.assertEqual(reply, b"a BAD Unknown command\r\nb OK NOOP completed\r\n")
        reply = session.send(b"c CREATE {70000+}\r\n" + b"y" * 70000 + b"\r\nd NOOP\r\n")
        self.assertEqual(reply, b"c NO [TOOBIG] Literal too large\r\nd OK NOOP completed\r\n")
        reply = session.send(b"e NOOP {99999999999+}\r\n")
        self.assertEqual(reply, b"e BAD Too many arguments\r\n* BYE Invalid literal size\r\n")
        self.assertTrue(session.transport.disconnecting)

    def test_negative_literal_is_bad_not_hang(self) -> None:
        """GHSA-2qrf-pqgx-qh9v: C{SEARCH {-100}} hung Twisted's reactor."""
        session = self.session()
        deliver(session.store.getFolder("INBOX"))
        session.select()
        self.assertEqual(session.send(b"a SEARCH {-100}\r\n"), b"a BAD Invalid literal size\r\n")
        self.assertEqual(session.send(b"b SEARCH SUBJECT {5}\r\n"), b"+ Ready for literal data\r\n")
        self.assertEqual(session.send(b"hello\r\n"), b"* SEARCH 1\r\nb OK SEARCH completed\r\n")

    def test_internalErrorsDoNotLeak(self) -> None:
        """An unexpected exception is logged, answered NO [SERVERBUG], and the session goes on."""
        session = self.session()
        session.loginDirectly()

        def broken(name: str) -> None:
            raise RuntimeError("secret detail /var/mail")

        session.store.createFolder = broken
        reply = session.send(b"a CREATE Box\r\nb NOOP\r\n")
        self.assertEqual(reply, b"a NO [SERVERBUG] Internal error\r\nb OK NOOP completed\r\n")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_idleEndsOnlyOnDone(self) -> None:
        """Twisted ended IDLE on any line; only DONE (any case) ends it."""
        session = self.session()
        session.select()
        self.assertEqual(session.send(b"a IDLE\r\n"), b"+ Idling\r\n")
        self.assertEqual(session.send(b"b NOOP\r\n"), b"* BAD Expected DONE\r\n")
        self.assertEqual(session.send(b"done\r\n"), b"a OK IDLE terminated\r\n")
        self.assertEqual(session.send(b"c NOOP\r\n"), b"c OK NOOP completed\r\n")

    def test_idleSeesDeliveriesAndOtherProcesses(self) -> None:
        """
        A delivery in this process is reported at once; a message dropped
        into the Maildir by another process at the next poll.
        """
        session = self.session()
        inbox = session.store.getFolder("INBOX")
        session.select()
        session.send(b"a IDLE\r\n")
        deliver(inbox)
        self.assertEqual(session.send(b""), b"* 1 EXISTS\r\n* 1 RECENT\r\n")
        maildir = session.fixture.root / "data" / "mail"
        newDirs = [p for p in maildir.rglob("new") if p.parent.name != "tmp"]
        (newDirs[0] / "1700000000.P1.elsewhere").write_bytes(MESSAGE)
        self.assertEqual(session.send(b""), b"")
        session.clock.advance(session.server.idlePollInterval)
        self.assertEqual(session.take(), b"* 2 EXISTS\r\n* 2 RECENT\r\n")
        self.assertEqual(session.send(b"DONE\r\n"), b"a OK IDLE terminated\r\n")

    def test_expungeInAnotherSessionWaitsForNoop(self) -> None:
        """
        Other sessions' expunges are held back during FETCH, STORE and
        SEARCH (RFC 3501 7.4.1) and sent at NOOP; meanwhile the expunged
        message's body is still served.
        """
        watcher = self.session()
        inbox = watcher.store.getFolder("INBOX")
        for _ in range(3):
            deliver(inbox)
        watcher.select()
        actor = Session(self, watcher.fixture)
        actor.select()
        self.assertIn(b"* 2 EXPUNGE", actor.send(b"a STORE 2 +FLAGS (\\Deleted)\r\nb EXPUNGE\r\n"))
        reply = watcher.send(b"c FETCH 1:3 (UID)\r\n")
        self.assertNotIn(b"EXPUNGE", reply)
        self.assertIn(b"* 2 FETCH (UID 2)", reply)
        self.assertEqual(
            responses(watcher.send(b"d FETCH 2 BODY.PEEK[]\r\n")),
            [b"* 2 FETCH (BODY[] {52}<literal>)", b"d OK FETCH completed"],
        )
        self.assertEqual(
            watcher.send(b"e SEARCH ALL\r\n"), b"* SEARCH 1 2 3\r\ne OK SEARCH completed\r\n"
        )
        self.assertEqual(
            watcher.send(b"f NOOP\r\n"),
            b"* 2 EXPUNGE\r\n* 2 EXISTS\r\n* 2 RECENT\r\nf OK NOOP completed\r\n",
        )

    def test_closeExpungesSilently(self) -> None:
        session = self.session()
        inbox = session.store.getFolder("INBOX")
        deliver(inbox)
        deliver(inbox)
        session.select()
        session.send(b"a STORE 1 +FLAGS.SILENT (\\Deleted)\r\n")
        self.assertEqual(session.send(b"b CLOSE\r\n"), b"b OK CLOSE completed\r\n")
        self.assertEqual([info.uid for info in inbox.messages()], [2])
        self.assertEqual(session.server.state, "auth")

    def test_otherSelectedStateCommands(self) -> None:
        """CHECK, UNSELECT (no expunge), NAMESPACE, STATUS and LSUB answers."""
        session = self.session()
        inbox = session.store.getFolder("INBOX")
        deliver(inbox)
        session.select()
        session.send(b"a STORE 1 +FLAGS.SILENT (\\Deleted)\r\n")
        self.assertEqual(session.send(b"b CHECK\r\n"), b"b OK CHECK completed\r\n")
        self.assertEqual(session.send(b"c UNSELECT\r\n"), b"c OK UNSELECT completed\r\n")
        self.assertEqual(len(inbox.messages()), 1)
        self.assertEqual(session.send(b"d FETCH 1 FLAGS\r\n"), b"d BAD Command not allowed now\r\n")
        self.assertEqual(
            session.send(b"e NAMESPACE\r\n"),
            b'* NAMESPACE (("" "/")) NIL NIL\r\ne OK NAMESPACE completed\r\n',
        )
        self.assertEqual(
            session.send(b"f STATUS Nope (MESSAGES)\r\n"), b"f NO [NONEXISTENT] No such mailbox\r\n"
        )
        self.assertEqual(
            session.send(b"g STATUS INBOX (MESSAGES BOGUS)\r\n"), b"g BAD Invalid STATUS items\r\n"
        )
        self.assertEqual(session.send(b"h SUBSCRIBE INBOX\r\n"), b"h OK SUBSCRIBE completed\r\n")
        self.assertEqual(
            session.send(b'i LSUB "" *\r\n'), b'* LSUB () "/" "INBOX"\r\ni OK LSUB completed\r\n'
        )
        self.assertEqual(
            session.send(b'j LIST "" ""\r\n'),
            b'* LIST (\\Noselect) "/" ""\r\nj OK LIST completed\r\n',
        )
        self.assertEqual(
            session.send(b"k UNSUBSCRIBE INBOX\r\n"), b"k OK UNSUBSCRIBE completed\r\n"
        )
        self.assertEqual(
            session.send(b"l LOGOUT\r\n"), b"* BYE Logging out\r\nl OK LOGOUT completed\r\n"
        )

    def test_indexOnlyFetchAndSearchAnswerFromFlagsSizesAndDates(self) -> None:
        """
        FETCH of UID, FLAGS, INTERNALDATE and RFC822.SIZE (items in the
        client's order, UID first under UID FETCH, \\Recent for this session)
        and SEARCH on flags and sizes, the requests made of every message of
        a large folder.
        """
        session = self.session()
        inbox = session.store.getFolder("INBOX")
        stamped = []
        for body, flags in ((MESSAGE, ("\\Seen", "$Work")), (MESSAGE + b"more\r\n", ())):
            pending = inbox.beginMessage(flags, 1_700_000_000)
            pending.write(body)
            stamped.append(pending.commit())
        second = stamped[1]
        size = len(MESSAGE)
        session.select()
        self.assertEqual(
            session.send(b"a FETCH 1:* (RFC822.SIZE FLAGS INTERNALDATE)\r\n"),
            b"* 1 FETCH (RFC822.SIZE %d FLAGS ($Work \\Seen \\Recent) INTERNALDATE "
            b'"14-Nov-2023 22:13:20 +0000")\r\n'
            b"* 2 FETCH (RFC822.SIZE %d FLAGS (\\Recent) INTERNALDATE "
            b'"14-Nov-2023 22:13:20 +0000")\r\n'
            b"a OK FETCH completed\r\n" % (size, size + 6),
        )
        self.assertEqual(
            session.send(b"b UID FETCH 2:* FLAGS\r\n"),
            b"* 2 FETCH (UID %d FLAGS (\\Recent))\r\nb OK FETCH completed\r\n" % second,
        )
        self.assertEqual(
            session.send(b"c UID SEARCH UNSEEN\r\n"),
            b"* SEARCH %d\r\nc OK SEARCH completed\r\n" % second,
        )
        self.assertEqual(
            session.send(b"d SEARCH KEYWORD $Work LARGER %d\r\n" % (size - 1)),
            b"* SEARCH 1\r\nd OK SEARCH completed\r\n",
        )

    def test_appendWithNonSynchronizingLiteral(self) -> None:
        """APPEND streams a LITERAL+ message into the folder and reports APPENDUID."""
        session = self.session()
        session.select()
        reply = session.send(
            b'a APPEND INBOX (\\Seen) " 7-Jul-2025 10:00:00 +0200" {%d+}\r\n%s\r\n'
            % (len(MESSAGE), MESSAGE)
        )
        inbox = session.store.getFolder("INBOX")
        self.assertEqual(
            reply,
            b"* 1 EXISTS\r\n* 1 RECENT\r\na OK [APPENDUID %d 1] APPEND completed\r\n"
            % inbox.uidValidity(),
        )
        info = inbox.messages()[0]
        self.assertEqual(info.flags, frozenset({"\\Seen"}))
        self.assertEqual(info.internaldate, 1751875200.0)
        with inbox.openMessage(1) as f:
            self.assertEqual(f.read(), MESSAGE)
        reply = session.send(b"b APPEND INBOX {3+}\r\nabc extra\r\n")
        self.assertEqual(reply, b"b BAD Unexpected data after the message\r\n")
        self.assertEqual(len(inbox.messages()), 1)

    def test_lineTooLong(self) -> None:
        session = self.session(max_line_length=100)
        self.assertEqual(
            session.send(b"a NOOP " + b"x" * 200),
            b"* BAD Line too long\r\n* BYE Closing connection\r\n",
        )
        self.assertTrue(session.transport.disconnecting)


_COMMANDS = [
    b"",
    b"NOOP",
    b"CAPABILITY",
    b"LOGIN",
    b"SELECT",
    b"EXAMINE",
    b"CREATE",
    b"DELETE",
    b"RENAME",
    b"SUBSCRIBE",
    b"LIST",
    b"LSUB",
    b"STATUS",
    b"APPEND",
    b"CHECK",
    b"CLOSE",
    b"EXPUNGE",
    b"SEARCH",
    b"FETCH",
    b"STORE",
    b"COPY",
    b"UID",
    b"NAMESPACE",
    b"UNSELECT",
    b"UID FETCH",
    b"UID SEARCH",
    b"UID STORE",
    b"UID COPY",
    b"UID EXPUNGE",
]
_NO_CRLF = st.binary(max_size=80).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
_GARBAGE = st.one_of(
    _NO_CRLF,
    st.tuples(st.sampled_from(_COMMANDS), _NO_CRLF).map(lambda t: b"g " + t[0] + b" " + t[1]),
)


class GarbageTests(SynchronousTestCase):
    """Random lines get BAD/NO/OK answers and never break the session."""

    def setUp(self) -> None:
        self.fixture = makeRealm(Path(self.mktemp()))
        inbox = self.fixture.store(ALICE).getFolder("INBOX")
        deliver(inbox)
        deliver(inbox, b"Subject: two\r\n\r\nsecond\r\n")

    def check(self, session: Session, line: bytes) -> None:
        lowered = line.upper()
        assume(not line.rstrip().endswith(b"}"))
        assume(not any(w in lowered for w in (b"LOGOUT", b"IDLE", b"AUTHENTICATE", b"STARTTLS")))
        reply = session.send(line + b"\r\n")
        for response in responses(reply):
            if response.startswith(_DATA):
                continue
            if re.match(rb"^\* \d+ (FETCH|EXPUNGE)", response) or response.startswith(b"* OK ["):
                continue
            self.assertRegex(response, _RESPONSE)
        self.assertFalse(session.transport.disconnecting)
        self.assertTrue(session.send(b"z NOOP\r\n").endswith(b"z OK NOOP completed\r\n"))

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(_GARBAGE)
    def test_garbageBeforeLogin(self, line: bytes) -> None:
        self.check(Session(self, self.fixture), line)

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(_GARBAGE)
    def test_garbageWhileSelected(self, line: bytes) -> None:
        session = Session(self, self.fixture)
        session.select()
        self.check(session, line)
