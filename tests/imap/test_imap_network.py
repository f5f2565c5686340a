"""
IMAP over loopback TCP: the real factory, a real realm and Maildir, and
Python's C{imaplib}, C{imapclient} and raw sockets as clients.
"""

from __future__ import annotations

import imaplib
import socket
import ssl
import time
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

from imapclient import IMAPClient
from twisted.cred.portal import Portal
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.threads import blockingCallFromThread
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.trial.unittest import TestCase

from support import pki as testpki
from support.net import inThread, listen, readLine, refusalOfThirdConnection
from support.realm import ALICE, BOB, PASSWORD, makeRealm
from tmail.auth.throttle import AuthThrottle
from tmail.config.schema import AuthSettings, IMAPSettings, TLSSettings
from tmail.imap.factory import IMAPFactory
from tmail.interfaces import IMailFolder
from tmail.realm.virtual import VirtualDomainRealm
from tmail.store.filework import INLINE
from tmail.tls import serverContextFactory

MESSAGE = (
    b"From: Bob <bob@example.test>\r\n"
    b"To: alice@example.test\r\n"
    b"Subject: Greetings\r\n"
    b"Date: Mon, 7 Jul 2025 10:00:00 +0200\r\n"
    b"\r\n"
    b"Hello Alice,\r\n"
    b"8-bit: \xc3\xa4 and a trailing space \r\n"
)


def deliver(folder: IMailFolder, message: bytes, flags: tuple[str, ...] = ()) -> int:
    pending = folder.beginMessage(flags)
    pending.write(message)
    return pending.commit()


def readUntilTagged(sock: socket.socket | ssl.SSLSocket, tag: bytes) -> list[bytes]:
    """Response lines up to and including the one tagged C{tag}."""
    lines = []
    while True:
        line = readLine(sock)
        lines.append(line)
        if not line or line.startswith(tag + b" "):
            return lines


class IMAPNetworkTests(TestCase):
    timeout = 20

    def setUp(self) -> None:
        self.fixture = makeRealm(Path(self.mktemp()))
        self.inbox = self.fixture.store(ALICE).getFolder("INBOX")
        self._pki: testpki.TestPKI | None = None

    @property
    def pki(self) -> testpki.TestPKI:
        if self._pki is None:
            self._pki = testpki.makePKI(Path(self.mktemp()))
        return self._pki

    def factory(
        self,
        tls: bool = False,
        portal: Portal | None = None,
        auth: AuthSettings | None = None,
        **settings: Any,
    ) -> IMAPFactory:
        context = (
            serverContextFactory(TLSSettings(self.pki.certificate, self.pki.key)) if tls else None
        )
        return IMAPFactory(
            portal or self.fixture.portal,
            IMAPSettings(**settings),
            tlsContextFactory=context,
            throttle=AuthThrottle(auth or AuthSettings(failure_delay=0), reactor),
            hostname="mail.example.test",
        )

    def listen(self, tls: bool = False, **settings: Any) -> Deferred[int]:
        return listen(self, self.factory(tls, **settings))

    def imap(self, port: int) -> imaplib.IMAP4:
        client = imaplib.IMAP4("127.0.0.1", port, timeout=10)
        self.addCleanup(client.shutdown)
        return client

    def onReactor(self, function: Callable[..., Any], *args: Any) -> Any:
        """Run store code on the reactor thread from a client thread."""
        return blockingCallFromThread(reactor, function, *args)

    # Greeting, capabilities, login policy

    @inlineCallbacks
    def test_greetingAndCapabilities(self) -> Generator[Deferred[Any], Any, None]:
        """The greeting carries the capabilities a loopback client may use."""
        port = yield self.listen(tls=True)

        def client() -> bytes:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                return readLine(sock)

        greeting = yield inThread(client)
        self.assertTrue(greeting.startswith(b"* OK [CAPABILITY IMAP4rev1 "), greeting)
        self.assertTrue(greeting.endswith(b"] tmail ready.\r\n"), greeting)
        caps = greeting[len(b"* OK [CAPABILITY ") : greeting.index(b"]")].split()
        for cap in (b"IDLE", b"NAMESPACE", b"UIDPLUS", b"LITERAL+", b"STARTTLS", b"AUTH=PLAIN"):
            self.assertIn(cap, caps)
        self.assertNotIn(b"LOGINDISABLED", caps)

    @inlineCallbacks
    def test_plaintextLoginRefusedWhenPolicyIsNever(self) -> Generator[Deferred[Any], Any, None]:
        """
        With C{allow_plaintext_auth = "never"} LOGIN and AUTHENTICATE get
        C{NO [PRIVACYREQUIRED]} until STARTTLS; the capabilities say so.
        """
        port = yield self.listen(tls=True, allow_plaintext_auth="never")

        def client() -> None:
            imap = self.imap(port)
            self.assertIn("LOGINDISABLED", imap.capabilities)
            self.assertNotIn("AUTH=PLAIN", imap.capabilities)
            typ, data = imap._simple_command("LOGIN", ALICE, PASSWORD)
            self.assertEqual(typ, "NO")
            self.assertIn(b"[PRIVACYREQUIRED]", data[0])
            with self.assertRaises(imaplib.IMAP4.error) as refused:
                imap.authenticate("PLAIN", lambda _: f"\0{ALICE}\0{PASSWORD}".encode())
            self.assertIn("PRIVACYREQUIRED", str(refused.exception))
            imap.starttls(ssl_context=self.pki.clientContext())
            self.assertIn("AUTH=PLAIN", imap.capabilities)
            self.assertNotIn("STARTTLS", imap.capabilities)
            self.assertNotIn("LOGINDISABLED", imap.capabilities)
            self.assertEqual(imap.login(ALICE, PASSWORD)[0], "OK")

        yield inThread(client)

    @inlineCallbacks
    def test_loginAfterTLSWithImapclient(self) -> Generator[Deferred[Any], Any, None]:
        """AUTHENTICATE PLAIN over STARTTLS; the tagged OK carries the new capabilities."""
        port = yield self.listen(tls=True, allow_plaintext_auth="never")

        def client() -> None:
            with IMAPClient("localhost", port=port, ssl=False, timeout=10) as imap:
                imap.starttls(self.pki.clientContext())
                imap.plain_login(ALICE, PASSWORD)
                caps = imap.capabilities()
                self.assertIn(b"IDLE", caps)
                self.assertNotIn(b"AUTH=PLAIN", caps)
                self.assertEqual(imap.namespace().personal, (("", "/"),))

        yield inThread(client)

    @inlineCallbacks
    def test_starttls_discards_pipelined_plaintext(self) -> Generator[Deferred[Any], Any, None]:
        """
        A command sent in the same write as STARTTLS, before TLS exists,
        never runs (CVE-2011-0411 class): after the handshake the session is
        still unauthenticated and C{b} got no answer.
        """
        port = yield self.listen(tls=True)

        def client() -> list[bytes]:
            raw = socket.create_connection(("127.0.0.1", port), timeout=10)
            readLine(raw)
            raw.sendall(b"a STARTTLS\r\nb LOGIN " + ALICE.encode() + b" secret-password\r\n")
            self.assertTrue(readLine(raw).startswith(b"a OK"))
            with self.pki.clientContext().wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(b"c CAPABILITY\r\n")
                lines = readUntilTagged(tls, b"c")
                tls.sendall(b"d SELECT INBOX\r\n")
                lines += readUntilTagged(tls, b"d")
                return lines

        lines = yield inThread(client)
        self.assertFalse([line for line in lines if line.startswith(b"b ")], lines)
        self.assertIn(b"AUTH=PLAIN", lines[0])
        self.assertNotIn(b"STARTTLS", lines[0])
        self.assertTrue(lines[-1].startswith(b"d BAD"), lines)

    @inlineCallbacks
    def test_implicitTLS(self) -> Generator[Deferred[Any], Any, None]:
        """
        Behind a TLS wrapper the session offers no STARTTLS and allows
        LOGIN even when plaintext logins are refused.
        """
        factory = self.factory(tls=True, allow_plaintext_auth="never")
        port = yield listen(self, TLSMemoryBIOFactory(factory.tlsContextFactory, False, factory))

        def client() -> None:
            imap = imaplib.IMAP4_SSL(
                "localhost", port, ssl_context=self.pki.clientContext(), timeout=10
            )
            self.addCleanup(imap.shutdown)
            self.assertNotIn("STARTTLS", imap.capabilities)
            self.assertNotIn("LOGINDISABLED", imap.capabilities)
            self.assertIn("AUTH=PLAIN", imap.capabilities)
            self.assertEqual(imap.login(ALICE, PASSWORD)[0], "OK")
            self.assertEqual(imap.select("INBOX")[0], "OK")

        yield inThread(client)

    @inlineCallbacks
    def test_badCredentialsThenThrottled(self) -> Generator[Deferred[Any], Any, None]:
        """
        A wrong password is C{NO [AUTHENTICATIONFAILED]}; once the address
        is blocked, even the right password is refused without a check.
        """
        factory = self.factory(auth=AuthSettings(failure_delay=0, max_failures=2))
        port = yield listen(self, factory)

        def client() -> list[bytes]:
            imap = self.imap(port)
            answers = []
            for password in ("wrong", "wrong", PASSWORD):
                typ, data = imap._simple_command("LOGIN", ALICE, password)
                answers.append(typ.encode() + b" " + data[0])
            return answers

        answers = yield inThread(client)
        self.assertEqual(answers[0], b"NO [AUTHENTICATIONFAILED] Authentication failed")
        self.assertEqual(answers[1], b"NO [AUTHENTICATIONFAILED] Authentication failed")
        self.assertTrue(answers[2].startswith(b"NO [UNAVAILABLE]"), answers[2])

    @inlineCallbacks
    def test_passwordWithQuotesAndBackslashes(self) -> Generator[Deferred[Any], Any, None]:
        """Quoted strings honour C{\\"} and C{\\\\} (Twisted splits on every quote)."""
        password = 'pa"ss\\word'
        self.fixture.directory.addUser("carol@example.test", password.encode())
        port = yield self.listen()

        def client() -> str:
            return self.imap(port).login("carol@example.test", password)[0]

        self.assertEqual((yield inThread(client)), "OK")

    # Folders

    @inlineCallbacks
    def test_folderLifecycle(self) -> Generator[Deferred[Any], Any, None]:
        """CREATE, LIST with child attributes, LSUB, RENAME, STATUS and DELETE."""
        port = yield self.listen(create_special_folders=False)

        def client() -> dict[str, Any]:
            imap = self.imap(port)
            imap.login(ALICE, PASSWORD)
            seen: dict[str, Any] = {}
            self.assertEqual(imap.create("Archive/2025")[0], "OK")
            self.assertEqual(imap.create("Entwürfe".encode("utf-7").decode())[0], "OK")
            seen["exists"] = imap.create("Archive")
            seen["list"] = imap.list()[1]
            imap.subscribe("Archive/2025")
            seen["lsub"] = imap.lsub('""', "%")[1]
            seen["lsubAll"] = imap.lsub()[1]
            self.assertEqual(imap.rename("Archive/2025", "Archive/Old")[0], "OK")
            self.assertEqual(imap.delete("Archive")[0], "OK")
            seen["afterDelete"] = imap.list('""', "Archive*")[1]
            seen["status"] = imap.status("INBOX", "(MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN)")
            seen["missing"] = imap.select("Nope")
            seen["deleteInbox"] = imap.delete("INBOX")
            return seen

        deliver(self.inbox, MESSAGE)
        seen = yield inThread(client)
        self.assertEqual(seen["exists"], ("NO", [b"[ALREADYEXISTS] Mailbox already exists"]))
        self.assertIn(b'(\\HasChildren \\Archive) "/" "Archive"', seen["list"])
        self.assertIn(b'(\\HasNoChildren) "/" "Archive/2025"', seen["list"])
        self.assertIn(b'(\\HasNoChildren) "/" "INBOX"', seen["list"])
        self.assertEqual(seen["lsub"], [b'(\\Noselect) "/" "Archive"'])
        self.assertEqual(seen["lsubAll"], [b'() "/" "Archive/2025"'])
        self.assertEqual(
            seen["afterDelete"],
            [b'(\\Noselect \\HasChildren) "/" "Archive"', b'(\\HasNoChildren) "/" "Archive/Old"'],
        )
        typ, data = seen["status"]
        self.assertEqual(typ, "OK")
        self.assertRegex(
            data[0],
            rb'^"INBOX" \(MESSAGES 1 RECENT [01] UIDNEXT 2 UIDVALIDITY \d+ UNSEEN 1\)$',
        )
        self.assertEqual(seen["missing"][0], "NO")
        self.assertIn(b"[NONEXISTENT]", seen["missing"][1][0])
        self.assertEqual(seen["deleteInbox"][0], "NO")

    @inlineCallbacks
    def test_folderNamesCannotEscapeTheMaildir(self) -> Generator[Deferred[Any], Any, None]:
        """
        Traversal attempts, absolute names and non-canonical modified UTF-7
        (C{&AC4ALgAv-} decodes to C{../}) are refused and create nothing.
        """
        port = yield self.listen(create_special_folders=False)
        root = self.fixture.root
        before = sorted(str(p) for p in root.rglob("*"))

        def client() -> list[tuple[str, Any]]:
            imap = self.imap(port)
            imap.login(ALICE, PASSWORD)
            answers = []
            for name in ("../x", "/etc", "a/../../b", "&AC4ALgAv-", "..", "a/./b", "a//b", "x*"):
                answers.append(imap._simple_command("CREATE", f'"{name}"'))
                answers.append(imap._simple_command("SELECT", f'"{name}"'))
                answers.append(imap._simple_command("RENAME", "INBOX", f'"{name}"'))
            return answers

        answers = yield inThread(client)
        for typ, data in answers:
            self.assertEqual(typ, "NO", data)
        self.assertTrue(any(b"canonical" in data[0] for _, data in answers))
        self.assertEqual(sorted(str(p) for p in root.rglob("*")), before)

    # Messages

    @inlineCallbacks
    def test_appendThenFetchReturnsIdenticalBytes(self) -> Generator[Deferred[Any], Any, None]:
        """
        APPEND keeps flags and date; BODY.PEEK[] and RFC822 return the exact
        bytes; only a non-peek fetch sets C{\\Seen}, and says so.
        """
        port = yield self.listen()

        def client() -> dict[str, Any]:
            imap = self.imap(port)
            imap.login(ALICE, PASSWORD)
            seen: dict[str, Any] = {}
            date = imaplib.Time2Internaldate(time.mktime((2025, 7, 7, 10, 0, 0, 0, 0, -1)))
            seen["append"] = imap.append("INBOX", "(\\Flagged $Work)", date, MESSAGE)
            imap.select("INBOX")
            seen["peek"] = imap.fetch("1", "(BODY.PEEK[] RFC822.SIZE INTERNALDATE)")[1]
            seen["flagsAfterPeek"] = imap.fetch("1", "(FLAGS)")[1]
            seen["body"] = imap.fetch("1", "(BODY[])")[1]
            seen["flagsAfterBody"] = imap.fetch("1", "FLAGS")[1]
            seen["rfc822"] = imap.fetch("1", "RFC822")[1]
            return seen

        seen = yield inThread(client)
        self.assertRegex(seen["append"][1][0], rb"^\[APPENDUID \d+ 1\] APPEND completed$")
        head, body = seen["peek"][0]
        self.assertEqual(body, MESSAGE)
        self.assertIn(b"RFC822.SIZE %d" % len(MESSAGE), head + seen["peek"][1])
        self.assertNotIn(b"\\Seen", seen["flagsAfterPeek"][0])
        self.assertIn(b"$Work", seen["flagsAfterPeek"][0])
        self.assertEqual(seen["body"][0][1], MESSAGE)
        self.assertIn(b"\\Seen", seen["body"][1])
        self.assertIn(b"\\Seen", seen["flagsAfterBody"][0])
        self.assertEqual(seen["rfc822"][0][1], MESSAGE)

    @inlineCallbacks
    def test_partialAndSectionFetch(self) -> Generator[Deferred[Any], Any, None]:
        """
        C{BODY[]<o.n>} returns n octets from o (Twisted sent everything);
        sections are the exact stored bytes.
        """
        deliver(self.inbox, MESSAGE)
        port = yield self.listen()

        def client() -> list[Any]:
            imap = self.imap(port)
            imap.login(ALICE, PASSWORD)
            imap.select("INBOX")
            return [
                imap.fetch("1", "(BODY.PEEK[]<6.3>)")[1],
                imap.fetch("1", "(BODY.PEEK[]<2000.10>)")[1],
                imap.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT DATE)])")[1],
                imap.fetch("1", "(BODY.PEEK[TEXT]<0.5>)")[1],
                imap.fetch("1", "(BODY.PEEK[1])")[1],
                imap.fetch("1", "(FLAGS)")[1],
            ]

        partial, beyond, fields, text, part, flags = yield inThread(client)
        self.assertEqual(partial[0], (b"1 (BODY[]<6> {3}", b"Bob"))
        self.assertEqual(beyond[0], (b"1 (BODY[]<2000> {0}", b""))
        self.assertEqual(
            fields[0][1], b"Subject: Greetings\r\nDate: Mon, 7 Jul 2025 10:00:00 +0200\r\n\r\n"
        )
        self.assertIn(b"BODY[HEADER.FIELDS (SUBJECT DATE)]", fields[0][0])
        self.assertEqual(text[0], (b"1 (BODY[TEXT]<0> {5}", b"Hello"))
        self.assertEqual(part[0][1], MESSAGE.split(b"\r\n\r\n", 1)[1])
        self.assertNotIn(b"\\Seen", flags[0])

    @inlineCallbacks
    def test_storePersistsAcrossANewStore(self) -> Generator[Deferred[Any], Any, None]:
        """
        Flags set by STORE live in the file names: a fresh realm over the
        same Maildir sees them, with the same UIDs and UIDVALIDITY.
        """
        for _ in range(3):
            deliver(self.inbox, MESSAGE)
        port = yield self.listen()

        def first() -> tuple[Any, Any]:
            imap = self.imap(port)
            imap.login(ALICE, PASSWORD)
            imap.select("INBOX")
            stored = imap.uid("STORE", "2:3", "+FLAGS", "(\\Answered $Label)")
            imap.uid("STORE", "3", "-FLAGS.SILENT", "(\\Answered)")
            return stored, imap.response("UIDVALIDITY")

        stored, validity = yield inThread(first)
        self.assertEqual(stored[0], "OK")
        self.assertIn(b"UID 2", stored[1][0])
        realm = VirtualDomainRealm(
            self.fixture.directory, self.fixture.root / "data" / "mail", fileWork=INLINE
        )
        portal = Portal(realm, [self.fixture.checker])
        port2 = yield listen(self, self.factory(portal=portal))

        def second() -> tuple[Any, Any]:
            imap = self.imap(port2)
            imap.login(ALICE, PASSWORD)
            imap.select("INBOX")
            return imap.fetch("1:3", "(UID FLAGS)")[1], imap.response("UIDVALIDITY")

        fetched, validity2 = yield inThread(second)
        self.assertEqual(validity, validity2)
        self.assertEqual(
            [line.replace(b" \\Recent", b"") for line in fetched],
            [
                b"1 (UID 1 FLAGS ())",
                b"2 (UID 2 FLAGS ($Label \\Answered))",
                b"3 (UID 3 FLAGS ($Label))",
            ],
        )

    @inlineCallbacks
    def test_search(self) -> Generator[Deferred[Any], Any, None]:
        """SEARCH by flags, size, headers, body, dates, UIDs and sets; UID SEARCH gives UIDs."""
        deliver(self.inbox, MESSAGE, ("\\Seen",))
        deliver(self.inbox, b"Subject: other\r\nFrom: carol@example.test\r\n\r\nshort\r\n")
        deliver(self.inbox, b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n\r\n" + b"x" * 5000 + b"\r\n")
        expunged = deliver(self.inbox, b"Subject: gone\r\n\r\n")
        self.inbox.messages()
        self.assertEqual(self.inbox.expunge([expunged]), [expunged])
        port = yield self.listen()

        def client() -> dict[str, Any]:
            imap = self.imap(port)
            imap.login(ALICE, PASSWORD)
            imap.select("INBOX")
            found = {}
            for criteria in [
                ("ALL",),
                ("UNSEEN",),
                ("SEEN",),
                ("SUBJECT", "greetings"),
                ("FROM", "carol"),
                ("LARGER", "1000"),
                ("OR", "SEEN", "LARGER", "1000"),
                ("NOT", "SEEN", "SMALLER", "1000"),
                ("BODY", "Alice"),
                ("TEXT", "carol"),
                ("HEADER", "Subject", '"other"'),
                ("SENTON", "7-Jul-2025"),
                ("SINCE", "1-Jan-2000"),
                ("2:*",),
                ("UID", "2,3"),
                ("(", "SEEN", ")"),
            ]:
                found[" ".join(criteria)] = imap.search(None, *criteria)[1][0]
            found["uid"] = imap.uid("SEARCH", "UNSEEN")[1][0]
            with self.assertRaises(imaplib.IMAP4.error) as bad:
                imap.search(None, "FROB")
            found["bad"] = str(bad.exception)
            return found

        found = yield inThread(client)
        self.assertEqual(found["ALL"], b"1 2 3")
        self.assertEqual(found["UNSEEN"], b"2 3")
        self.assertEqual(found["SEEN"], b"1")
        self.assertEqual(found["SUBJECT greetings"], b"1")
        self.assertEqual(found["FROM carol"], b"2")
        self.assertEqual(found["LARGER 1000"], b"3")
        self.assertEqual(found["OR SEEN LARGER 1000"], b"1 3")
        self.assertEqual(found["NOT SEEN SMALLER 1000"], b"2")
        self.assertEqual(found["BODY Alice"], b"1")
        self.assertEqual(found["TEXT carol"], b"2")
        self.assertEqual(found['HEADER Subject "other"'], b"2")
        self.assertEqual(found["SENTON 7-Jul-2025"], b"1")
        self.assertEqual(found["SINCE 1-Jan-2000"], b"1 2 3")
        self.assertEqual(found["2:*"], b"2 3")
        self.assertEqual(found["UID 2,3"], b"2 3")
        self.assertEqual(found["( SEEN )"], b"1")
        self.assertEqual(found["uid"], b"2 3")
        self.assertIn("BAD", found["bad"])

    @inlineCallbacks
    def test_searchWithLiteralCharset(self) -> Generator[Deferred[Any], Any, None]:
        """imapclient sends non-ASCII criteria as (LITERAL+) literals with CHARSET UTF-8."""
        deliver(self.inbox, b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n\r\nbody\r\n")
        deliver(self.inbox, MESSAGE)
        port = yield self.listen()

        def client() -> list[int]:
            with IMAPClient("127.0.0.1", port=port, ssl=False, timeout=10) as imap:
                imap.login(ALICE, PASSWORD)
                imap.select_folder("INBOX")
                return list(imap.search(["SUBJECT", "grüße"], charset="UTF-8"))

        self.assertEqual((yield inThread(client)), [1])

    @inlineCallbacks
    def test_copyExpungeAndUIDs(self) -> Generator[Deferred[Any], Any, None]:
        """
        COPY to a missing folder is C{NO [TRYCREATE]} (Twisted said BAD);
        COPY reports COPYUID; EXPUNGE and UID EXPUNGE report what they removed.
        """
        for _ in range(4):
            deliver(self.inbox, MESSAGE)
        self.fixture.store(ALICE).createFolder("Archive")
        port = yield self.listen()

        def client() -> dict[str, Any]:
            imap = self.imap(port)
            imap.login(ALICE, PASSWORD)
            imap.select("INBOX")
            seen = {
                "missing": imap.copy("1", "Nowhere"),
                "appendMissing": imap.append("Nowhere", None, None, MESSAGE),
                "copy": imap.copy("2:3", "Archive"),
            }
            imap.store("1:4", "+FLAGS.SILENT", "(\\Deleted)")
            imap.uid("EXPUNGE", "2")
            seen["uidExpunge"] = imap.response("EXPUNGE")
            seen["expunge"] = imap.expunge()
            seen["left"] = imap.search(None, "ALL")
            seen["archive"] = imap.status("Archive", "(MESSAGES)")
            return seen

        seen = yield inThread(client)
        self.assertEqual(seen["missing"], ("NO", [b"[TRYCREATE] No such mailbox"]))
        self.assertEqual(seen["appendMissing"], ("NO", [b"[TRYCREATE] No such mailbox"]))
        self.assertRegex(seen["copy"][1][0], rb"^\[COPYUID \d+ 2:3 1:2\] COPY completed$")
        self.assertEqual(seen["uidExpunge"][1], [b"2"])
        self.assertEqual(seen["expunge"][1], [b"3", b"2", b"1"])
        self.assertEqual(seen["left"][1], [b""])
        self.assertEqual(seen["archive"][1], [b'"Archive" (MESSAGES 2)'])

    # Sessions sharing a folder

    @inlineCallbacks
    def test_idleWokenByDelivery(self) -> Generator[Deferred[Any], Any, None]:
        """
        A delivery by another part of the process (as SMTP does) reaches
        an idling client as EXISTS within a second; other lines do not end
        IDLE, DONE does.
        """
        port = yield self.listen()

        def client() -> tuple[list[Any], float]:
            with IMAPClient("127.0.0.1", port=port, ssl=False, timeout=10) as imap:
                imap.login(ALICE, PASSWORD)
                imap.select_folder("INBOX")
                imap.idle()
                started = time.monotonic()
                self.onReactor(deliver, self.inbox, MESSAGE)
                responses = imap.idle_check(timeout=2)
                elapsed = time.monotonic() - started
                imap.idle_done()
                return responses, elapsed

        responses, elapsed = yield inThread(client)
        self.assertIn((1, b"EXISTS"), responses)
        self.assertLess(elapsed, 1.0)

    @inlineCallbacks
    def test_secondSessionSeesExpungeAndExistsAtNoop(self) -> Generator[Deferred[Any], Any, None]:
        """
        One session's EXPUNGE and APPEND reach another at its next NOOP,
        not during its FETCH, and its sequence numbers stay its own.
        """
        for _ in range(3):
            deliver(self.inbox, MESSAGE)
        port = yield self.listen()

        def client() -> dict[str, Any]:
            watcher, actor = self.imap(port), self.imap(port)
            for imap in (watcher, actor):
                imap.login(ALICE, PASSWORD)
                imap.select("INBOX")
            actor.store("2", "+FLAGS", "(\\Deleted)")
            actor.expunge()
            actor.append("INBOX", None, None, MESSAGE)
            seen: dict[str, Any] = {}
            seen["fetch"] = watcher.fetch("1:3", "(UID)")[1]
            seen["duringFetch"] = {k: list(v) for k, v in watcher.untagged_responses.items()}
            watcher.untagged_responses.clear()
            watcher.noop()
            seen["noop"] = dict(watcher.untagged_responses)
            seen["after"] = watcher.fetch("1:*", "(UID)")[1]
            return seen

        seen = yield inThread(client)
        self.assertEqual(seen["fetch"], [b"1 (UID 1)", b"2 (UID 2)", b"3 (UID 3)"])
        self.assertNotIn("EXPUNGE", seen["duringFetch"])
        self.assertEqual(seen["duringFetch"]["EXISTS"][-1], b"4")
        self.assertEqual(seen["noop"].get("EXPUNGE"), [b"2"])
        self.assertEqual(seen["noop"].get("EXISTS"), [b"3"])
        self.assertEqual(seen["after"], [b"1 (UID 1)", b"2 (UID 3)", b"3 (UID 4)"])

    @inlineCallbacks
    def test_flagChangesReachOtherSessions(self) -> Generator[Deferred[Any], Any, None]:
        """A STORE by one session shows up as FETCH FLAGS in another after its next command."""
        deliver(self.inbox, MESSAGE)
        port = yield self.listen()

        def client() -> Any:
            watcher, actor = self.imap(port), self.imap(port)
            for imap in (watcher, actor):
                imap.login(ALICE, PASSWORD)
                imap.select("INBOX")
            actor.store("1", "+FLAGS", "(\\Flagged)")
            watcher.noop()
            return watcher.untagged_responses.get("FETCH")

        self.assertEqual((yield inThread(client)), [b"1 (FLAGS (\\Flagged \\Recent))"])

    # Limits

    @inlineCallbacks
    def test_negative_literal_is_bad_not_hang(self) -> Generator[Deferred[Any], Any, None]:
        """
        C{{-1}} and C{{99999999999999}} are BAD at once (Twisted's C{int()}
        took C{-100} and hung); the session goes on.
        """
        port = yield self.listen()

        def client() -> list[bytes]:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                readLine(sock)
                lines = []
                for tag, command in [
                    (b"a", b"a LOGIN {-1}\r\n"),
                    (b"b", b"b LOGIN {99999999999999}\r\n"),
                    (b"c", b"c SEARCH {-100}\r\n"),
                    (b"d", b"d LOGIN {12abc}\r\n"),
                    (b"e", b"e NOOP\r\n"),
                ]:
                    sock.sendall(command)
                    lines += readUntilTagged(sock, tag)
                return lines

        lines = yield inThread(client)
        self.assertEqual(
            [line.split(b" ")[:2] for line in lines[:4]], [[bytes([t]), b"BAD"] for t in b"abcd"]
        )
        self.assertEqual(lines[4], b"e OK NOOP completed\r\n")

    @inlineCallbacks
    def test_oversized_literal_is_toobig(self) -> Generator[Deferred[Any], Any, None]:
        """
        An APPEND literal over C{max_literal_size} is C{NO [TOOBIG]} with no
        continuation; a refused non-synchronizing literal is swallowed, so
        its bytes never run as commands.
        """
        port = yield self.listen(max_literal_size=100)

        def client() -> list[bytes]:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                readLine(sock)
                sock.sendall(b"l LOGIN " + ALICE.encode() + b" " + PASSWORD.encode() + b"\r\n")
                lines = readUntilTagged(sock, b"l")
                sock.sendall(b"a APPEND INBOX {101}\r\n")
                lines += readUntilTagged(sock, b"a")
                payload = b"x CREATE Smuggled\r\n" + b"." * (150 - 19)
                sock.sendall(b"b APPEND INBOX {150+}\r\n" + payload + b"\r\nc NOOP\r\n")
                lines += readUntilTagged(sock, b"b")
                lines += readUntilTagged(sock, b"c")
                return lines

        lines = yield inThread(client)
        self.assertEqual(lines[1], b"a NO [TOOBIG] Message too large\r\n")
        self.assertEqual(lines[2], b"b NO [TOOBIG] Message too large\r\n")
        self.assertEqual(lines[3], b"c OK NOOP completed\r\n")
        self.assertNotIn("Smuggled", self.fixture.store(ALICE).listFolders())

    @inlineCallbacks
    def test_overlong_line_is_refused_and_closed(self) -> Generator[Deferred[Any], Any, None]:
        """A command line over C{max_line_length} gets BAD and the connection closes."""
        port = yield self.listen(max_line_length=1000)

        def client() -> bytes:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                readLine(sock)
                sock.sendall(b"a NOOP " + b"x" * 5000)
                data = b""
                while chunk := sock.recv(4096):
                    data += chunk
                return data

        data = yield inThread(client)
        self.assertEqual(data, b"* BAD Line too long\r\n* BYE Closing connection\r\n")

    @inlineCallbacks
    def test_connectionLimit(self) -> Generator[Deferred[Any], Any, None]:
        port = yield self.listen(max_connections_per_address=2)

        refused = yield inThread(refusalOfThirdConnection, port)
        self.assertEqual(refused, b"* BYE Too many connections from your address\r\n")

    @inlineCallbacks
    def test_idleTimeoutBeforeLogin(self) -> Generator[Deferred[Any], Any, None]:
        port = yield self.listen(timeout=0.3)

        def client() -> bytes:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                readLine(sock)
                return readLine(sock)

        self.assertEqual(
            (yield inThread(client)), b"* BYE Autologout; connection idle too long\r\n"
        )

    @inlineCallbacks
    def test_otherUsersMailIsSeparate(self) -> Generator[Deferred[Any], Any, None]:
        deliver(self.fixture.store(BOB).getFolder("INBOX"), MESSAGE)
        port = yield self.listen()

        def client() -> Any:
            imap = self.imap(port)
            imap.login(ALICE, PASSWORD)
            return imap.select("INBOX")

        self.assertEqual((yield inThread(client)), ("OK", [b"0"]))
