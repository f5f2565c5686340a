"""
SPECIAL-USE and CREATE-SPECIAL-USE (RFC 6154): configured special folders
made at the first login, attributes given with CREATE kept in the Maildir's
C{tmail-special-use} file through RENAME and DELETE; transcripts over
C{StringTransport} and real clients (C{imapclient}, C{imaplib}) over loopback.
"""

from __future__ import annotations

import imaplib
from collections.abc import Generator
from pathlib import Path
from typing import Any

import imapclient
from imapclient.imapclient import SENT, TRASH
from test_imap_protocol import Session, created
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer

from support.net import inThread, listen
from support.realm import ALICE, PASSWORD, makeRealm
from tmail.auth.throttle import AuthThrottle
from tmail.config.schema import AuthSettings, IMAPSettings
from tmail.errors import StoreFull
from tmail.imap.account import IMAPAccount
from tmail.imap.factory import IMAPFactory
from tmail.imap.specialuse import makeSpecialFolders
from tmail.interfaces import IMailFolder, IMailStore

LOGIN = b"l LOGIN " + ALICE.encode() + b" " + PASSWORD.encode() + b"\r\n"
NOTE = b"Subject: x\r\n\r\nhello\r\n"
SPECIAL = ["Archive", "Drafts", "Junk", "Sent", "Trash"]


class SpecialUseTranscriptTests(SynchronousTestCase):
    def session(self, **options: Any) -> Session:
        session = Session(self, **options)
        reply = session.send(LOGIN)
        self.assertTrue(reply.startswith(b"l OK "), reply)
        return session

    def test_firstLoginMakesAndSubscribesTheSpecialFolders(self) -> None:
        session = self.session()
        self.assertEqual(session.store.listFolders(), ["INBOX", *SPECIAL])
        self.assertEqual(sorted(session.store.subscriptions()), SPECIAL)
        self.assertEqual(
            session.send(b'a LIST "" %\r\n'),
            b'* LIST (\\HasNoChildren) "/" "INBOX"\r\n'
            b'* LIST (\\HasNoChildren \\Archive) "/" "Archive"\r\n'
            b'* LIST (\\HasNoChildren \\Drafts) "/" "Drafts"\r\n'
            b'* LIST (\\HasNoChildren \\Junk) "/" "Junk"\r\n'
            b'* LIST (\\HasNoChildren \\Sent) "/" "Sent"\r\n'
            b'* LIST (\\HasNoChildren \\Trash) "/" "Trash"\r\n'
            b"a OK LIST completed\r\n",
        )

    def test_deletedSpecialFolderIsNotMadeAgainAtTheNextLogin(self) -> None:
        session = self.session()
        self.assertEqual(session.send(b"d DELETE Junk\r\n"), b"d OK DELETE completed\r\n")
        self.session(fixture=session.fixture)
        self.assertNotIn("Junk", session.store.listFolders())

    def test_loginSucceedsWhenTheFoldersCannotBeMade(self) -> None:
        """
        A full disk at the first login is a warning, not a logged error; the
        login and the next one still work.
        """
        session = Session(self)
        store = session.store
        makeFolder, diskFull = store.createFolder, [True]

        def createFolder(name: str) -> IMailFolder:
            if diskFull:
                raise StoreFull("disk full")
            return makeFolder(name)

        self.patch(store, "createFolder", createFolder)
        self.assertTrue(session.send(LOGIN).startswith(b"l OK "))
        self.assertEqual(self.flushLoggedErrors(StoreFull), [])
        self.assertIsNone(store.specialUse(), "not recorded, so the next login tries again")
        diskFull.clear()
        self.session(fixture=session.fixture)
        self.assertEqual(store.listFolders(), ["INBOX", *SPECIAL])

    def test_configuredNamesAndNoCreation(self) -> None:
        """Names come from [imap]; with creation off nothing is made, but attributes apply."""
        session = self.session(special_use_sent="Gesendet", create_special_folders=False)
        self.assertEqual(session.store.listFolders(), ["INBOX"])
        session.store.createFolder("Gesendet")
        session.store.createFolder("Sent")
        self.assertEqual(
            session.send(b'a LIST "" "%e%"\r\n'),
            b'* LIST (\\HasNoChildren \\Sent) "/" "Gesendet"\r\n'
            b'* LIST (\\HasNoChildren) "/" "Sent"\r\n'
            b"a OK LIST completed\r\n",
        )

    def test_rfc6154ListExamples(self) -> None:
        """RFC 6154 section 5.1 and 5.2: RETURN (SPECIAL-USE) and the SPECIAL-USE selection."""
        session = self.session(
            special_use_sent="SentMail", special_use_drafts="MyDrafts", special_use_junk="Spam"
        )
        session.store.createFolder("ToDo")
        session.store.createFolder("Projects/Foo")
        self.assertEqual(
            session.send(b't1 LIST "" "%" RETURN (SPECIAL-USE)\r\n'),
            b'* LIST (\\HasNoChildren) "/" "INBOX"\r\n'
            b'* LIST (\\HasNoChildren \\Archive) "/" "Archive"\r\n'
            b'* LIST (\\HasNoChildren \\Drafts) "/" "MyDrafts"\r\n'
            b'* LIST (\\HasChildren) "/" "Projects"\r\n'
            b'* LIST (\\HasNoChildren \\Sent) "/" "SentMail"\r\n'
            b'* LIST (\\HasNoChildren \\Junk) "/" "Spam"\r\n'
            b'* LIST (\\HasNoChildren) "/" "ToDo"\r\n'
            b'* LIST (\\HasNoChildren \\Trash) "/" "Trash"\r\n'
            b"t1 OK LIST completed\r\n",
        )
        self.assertEqual(
            session.send(b't3 LIST (SPECIAL-USE) "" "*"\r\n'),
            b'* LIST (\\HasNoChildren \\Archive) "/" "Archive"\r\n'
            b'* LIST (\\HasNoChildren \\Drafts) "/" "MyDrafts"\r\n'
            b'* LIST (\\HasNoChildren \\Sent) "/" "SentMail"\r\n'
            b'* LIST (\\HasNoChildren \\Junk) "/" "Spam"\r\n'
            b'* LIST (\\HasNoChildren \\Trash) "/" "Trash"\r\n'
            b"t3 OK LIST completed\r\n",
        )

    def test_createWithUseKeepsTheAttributes(self) -> None:
        """RFC 6154 section 5.3: CREATE ... (USE (...)), several attributes at once."""
        session = self.session(create_special_folders=False)
        self.assertEqual(
            created(session.send(b"t1 CREATE MySpecial (USE (\\drafts \\Sent))\r\n")),
            b"t1 OK CREATE completed\r\n",
        )
        self.assertEqual(
            session.send(b'a LIST (SPECIAL-USE) "" *\r\n'),
            b'* LIST (\\HasNoChildren \\Drafts \\Sent) "/" "MySpecial"\r\na OK LIST completed\r\n',
        )
        text = (session.store.root / "tmail-special-use").read_text()
        self.assertEqual(text, "tmail-special-use 1\nMySpecial\t\\Drafts \\Sent\n")
        self.assertEqual(
            created(session.send(b"t2 CREATE Plain (USE ())\r\n")), b"t2 OK CREATE completed\r\n"
        )

    def test_createWithUnsupportedUseCreatesNothing(self) -> None:
        """\\All, \\Flagged and unknown attributes: NO [USEATTR]; malformed parameters: BAD."""
        session = self.session(create_special_folders=False)
        for use in (b"\\All", b"\\Flagged", b"\\Important", b"\\Sent \\All"):
            reply = session.send(b"t1 CREATE Everything (USE (" + use + b"))\r\n")
            self.assertTrue(reply.startswith(b"t1 NO [USEATTR] "), reply)
        for params in (
            b"(USE (Sent))",
            b"(USE)",
            b"(USE \\Sent)",
            b"(FOO (\\Sent))",
            b"()",
            b"USE (\\Sent)",
            b"(USE (\\Sent)",
            b"(USE ({1}))",
            b"(USE ((\\Sent)))",
        ):
            reply = session.send(b"t2 CREATE Everything " + params + b"\r\n")
            self.assertTrue(reply.startswith(b"t2 BAD "), (params, reply))
        self.assertEqual(session.store.listFolders(), ["INBOX"])
        reply = session.send(b"t3 CREATE INBOX (USE (\\Sent))\r\n")
        self.assertTrue(reply.startswith(b"t3 NO [ALREADYEXISTS]"), reply)
        self.assertFalse((session.store.root / "tmail-special-use").exists())

    def test_renameMovesAndDeleteDropsTheAttributes(self) -> None:
        session = self.session(create_special_folders=False)
        session.send(b"a CREATE Old (USE (\\Archive))\r\n")
        session.send(b"b CREATE Old/Sub (USE (\\Junk))\r\n")
        session.send(b"c CREATE Other (USE (\\Trash))\r\n")
        self.assertEqual(session.send(b"d RENAME Old New\r\n"), b"d OK RENAME completed\r\n")
        self.assertEqual(
            session.send(b'e LIST "" *\r\n'),
            b'* LIST (\\HasNoChildren) "/" "INBOX"\r\n'
            b'* LIST (\\HasChildren \\Archive) "/" "New"\r\n'
            b'* LIST (\\HasNoChildren \\Junk) "/" "New/Sub"\r\n'
            b'* LIST (\\HasNoChildren \\Trash) "/" "Other"\r\n'
            b"e OK LIST completed\r\n",
        )
        session.send(b"f DELETE New\r\n")
        session.send(b"g CREATE New\r\n")
        self.assertEqual(
            session.send(b'h LIST "" New*\r\n'),
            b'* LIST (\\HasChildren) "/" "New"\r\n'
            b'* LIST (\\HasNoChildren \\Junk) "/" "New/Sub"\r\n'
            b"h OK LIST completed\r\n",
        )
        self.assertEqual(session.store.specialUse(), {"New/Sub": {"\\Junk"}, "Other": {"\\Trash"}})


@implementer(IMailStore)
class _PlainStore:
    """A store that keeps no special-use attributes (only L{IMailStore})."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.delimiter = store.delimiter

    def listFolders(self) -> list[str]:
        return self._store.listFolders()

    def getFolder(self, name: str) -> IMailFolder:
        return self._store.getFolder(name)

    def createFolder(self, name: str) -> IMailFolder:
        return self._store.createFolder(name)

    def deleteFolder(self, name: str) -> None:
        self._store.deleteFolder(name)

    def renameFolder(self, old: str, new: str) -> None:
        self._store.renameFolder(old, new)

    def subscriptions(self) -> list[str]:
        return self._store.subscriptions()

    def subscribe(self, name: str) -> None:
        self._store.subscribe(name)

    def unsubscribe(self, name: str) -> None:
        self._store.unsubscribe(name)


class OtherStoreTests(SynchronousTestCase):
    def test_storeWithoutSpecialUseRecord(self) -> None:
        """Missing special folders are made at every login; CREATE (USE) is NO [USEATTR]."""
        session = Session(self)
        plain = _PlainStore(session.store)
        server = session.server
        server.account, server.state = IMAPAccount(plain, ALICE), "auth"
        makeSpecialFolders(server.settings, plain)
        self.assertEqual(plain.listFolders(), ["INBOX", *SPECIAL])
        plain.deleteFolder("Trash")
        makeSpecialFolders(server.settings, plain)
        self.assertIn("Trash", plain.listFolders())
        reply = session.send(b"a CREATE X (USE (\\Sent))\r\n")
        self.assertTrue(reply.startswith(b"a NO [USEATTR] "), reply)
        self.assertNotIn("X", plain.listFolders())
        self.assertIn(b'"Sent"', session.send(b'b LIST (SPECIAL-USE) "" *\r\n'))


class SpecialUseClientTests(TestCase):
    """Real clients over loopback."""

    timeout = 20

    def setUp(self) -> None:
        self.fixture = makeRealm(Path(self.mktemp()))

    def listen(self, **settings: Any) -> Deferred[int]:
        factory = IMAPFactory(
            self.fixture.portal,
            IMAPSettings(**settings),
            tlsContextFactory=None,
            throttle=AuthThrottle(AuthSettings(failure_delay=0), reactor),
            hostname="mail.example.test",
        )
        return listen(self, factory)

    @inlineCallbacks
    def test_imapclientFindsSpecialFoldersByAttribute(self) -> Generator[Deferred[Any], Any, None]:
        port = yield self.listen(special_use_sent="Gesendet", special_use_trash="Papierkorb")

        def client() -> dict[str, Any]:
            with imapclient.IMAPClient("127.0.0.1", port=port, ssl=False, timeout=10) as c:
                c.login(ALICE, PASSWORD)
                seen = {
                    "caps": c.capabilities(),
                    "sent": c.find_special_folder(SENT),
                    "trash": c.find_special_folder(TRASH),
                    "subscribed": [name for _, _, name in c.list_sub_folders()],
                }
                c.append("Gesendet", NOTE)
                seen["status"] = c.folder_status("Gesendet", ["MESSAGES", "SIZE"])
                c.logout()
                return seen

        seen = yield inThread(client)
        for cap in (b"SPECIAL-USE", b"CREATE-SPECIAL-USE", b"LIST-EXTENDED", b"STATUS=SIZE"):
            self.assertIn(cap, seen["caps"])
        self.assertEqual((seen["sent"], seen["trash"]), ("Gesendet", "Papierkorb"))
        self.assertEqual(
            sorted(seen["subscribed"]), ["Archive", "Drafts", "Gesendet", "Junk", "Papierkorb"]
        )
        self.assertEqual(seen["status"], {b"MESSAGES": 1, b"SIZE": len(NOTE)})

    @inlineCallbacks
    def test_imaplibCreateUseAndListStatus(self) -> Generator[Deferred[Any], Any, None]:
        port = yield self.listen(create_special_folders=False)

        def client() -> dict[str, Any]:
            imap = imaplib.IMAP4("127.0.0.1", port, timeout=10)
            self.addCleanup(imap.shutdown)
            imap.login(ALICE, PASSWORD)
            seen = {"create": imap._simple_command("CREATE", "Stuff", "(USE (\\Archive))")}
            seen["all"] = imap._simple_command("CREATE", "All", "(USE (\\All))")
            imap.subscribe("Stuff")
            typ, _ = imap._simple_command(
                "LIST", "(SUBSCRIBED)", '""', "*", "RETURN", "(SPECIAL-USE STATUS (MESSAGES SIZE))"
            )
            seen["list"] = (typ, imap.untagged_responses.pop("LIST", []))
            seen["status"] = imap.untagged_responses.pop("STATUS", [])
            return seen

        seen = yield inThread(client)
        self.assertEqual(seen["create"][0], "OK")
        self.assertEqual(seen["all"][0], "NO")
        self.assertEqual(
            seen["list"], ("OK", [b'(\\HasNoChildren \\Subscribed \\Archive) "/" "Stuff"'])
        )
        self.assertEqual(seen["status"], [b'"Stuff" (MESSAGES 0 SIZE 0)'])
