"""
Non-synchronizing literals (RFC 7888).  By default tmail advertises
LITERAL+: a C{{n+}} literal of any size the command allows.  With
C{imap.literal_minus} it advertises LITERAL- instead (the RFC lets a
server offer one of the two): C{{n+}} only up to 4096 octets, a larger one
is C{BAD [TOOBIG]} and its bytes are read and dropped, never run as
commands.  Synchronizing literals are unaffected.
"""

from __future__ import annotations

import socket
from collections.abc import Generator
from pathlib import Path
from typing import Any

from test_imap_protocol import MESSAGE, Session
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase, TestCase

from support.imaploop import listenIMAP
from support.net import inThread, readLine
from support.realm import ALICE, PASSWORD, makeRealm
from tmail.config.loader import loadSettings
from tmail.errors import ConfigError

TOOBIG = b"BAD [TOOBIG] Non-synchronizing literal over 4096 octets\r\n"


class LiteralPlusTests(SynchronousTestCase):
    def test_literal_plus_is_advertised_by_default_and_literal_minus_is_not(self) -> None:
        greeting = Session(self).greeting
        self.assertIn(b" LITERAL+ ", greeting)
        self.assertNotIn(b"LITERAL-", greeting)

    def test_a_large_non_synchronizing_append_is_taken(self) -> None:
        session = Session(self)
        session.loginDirectly()
        body = MESSAGE + b"y" * 10000 + b"\r\n"
        reply = session.send(b"a APPEND INBOX {%d+}\r\n%s\r\n" % (len(body), body))
        self.assertTrue(reply.startswith(b"a OK [APPENDUID "), reply)

    def test_a_non_synchronizing_append_over_max_literal_size_is_dropped_unrun(self) -> None:
        session = Session(self, max_literal_size=100)
        session.loginDirectly()
        payload = b"x CREATE Injected\r\n" + b"y" * 100
        reply = session.send(b"a APPEND INBOX {%d+}\r\n%s\r\nb NOOP\r\n" % (len(payload), payload))
        self.assertEqual(reply, b"a NO [TOOBIG] Message too large\r\nb OK NOOP completed\r\n")
        self.assertEqual(session.store.listFolders(), ["INBOX"])
        self.assertEqual(session.store.getFolder("INBOX").messages(), ())


class LiteralMinusTests(SynchronousTestCase):
    def session(self) -> Session:
        session = Session(self, literal_minus=True)
        session.loginDirectly()
        return session

    def test_literal_minus_replaces_literal_plus_in_capability(self) -> None:
        session = self.session()
        self.assertIn(b" LITERAL- ", session.greeting)
        self.assertNotIn(b"LITERAL+", session.greeting)
        self.assertIn(b" LITERAL- ", session.send(b"a CAPABILITY\r\n"))

    def test_non_synchronizing_literals_up_to_4096_octets_are_taken(self) -> None:
        session = self.session()
        session.send(b"s SELECT INBOX\r\n")
        reply = session.send(b"a SEARCH SUBJECT {4096+}\r\n%s\r\n" % (b"n" * 4096))
        self.assertEqual(reply, b"* SEARCH\r\na OK SEARCH completed\r\n")
        body = b"Subject: x\r\n\r\n" + b"z" * (4096 - 15) + b"\r"
        reply = session.send(b"b APPEND INBOX {4096+}\r\n%s\r\n" % body)
        self.assertRegex(reply, rb"\r\nb OK \[APPENDUID \d+ 1\] APPEND completed\r\n$")

    def test_a_larger_non_synchronizing_literal_is_bad_toobig_and_never_run(self) -> None:
        session = self.session()
        payload = b"x CREATE Injected\r\n" + b"y" * 4096
        reply = session.send(b"a CREATE {%d+}\r\n%s\r\nb NOOP\r\n" % (len(payload), payload))
        self.assertEqual(reply, b"a " + TOOBIG + b"b OK NOOP completed\r\n")
        reply = session.send(b"c APPEND INBOX {%d+}\r\n%s\r\nd NOOP\r\n" % (len(payload), payload))
        self.assertEqual(reply, b"c " + TOOBIG + b"d OK NOOP completed\r\n")
        self.assertEqual(session.store.listFolders(), ["INBOX"])
        self.assertEqual(session.store.getFolder("INBOX").messages(), ())
        self.assertFalse(session.transport.disconnecting)

    def test_a_large_literal_later_in_a_command_is_refused_the_same_way(self) -> None:
        """In SEARCH criteria and in the second message of a MULTIAPPEND."""
        session = self.session()
        session.send(b"s SELECT INBOX\r\n")
        payload = b"x LOGOUT\r\n" + b"y" * 4096
        reply = session.send(
            b"a SEARCH SUBJECT {2+}\r\nhi BODY {%d+}\r\n%s\r\nb NOOP\r\n" % (len(payload), payload)
        )
        self.assertEqual(reply, b"a " + TOOBIG + b"b OK NOOP completed\r\n")
        reply = session.send(
            b"c APPEND INBOX {3+}\r\nabc {%d+}\r\n%s\r\nd NOOP\r\n" % (len(payload), payload)
        )
        self.assertEqual(reply, b"c " + TOOBIG + b"d OK NOOP completed\r\n")
        self.assertEqual(session.store.getFolder("INBOX").messages(), ())

    def test_synchronizing_literals_of_any_size_still_work(self) -> None:
        session = self.session()
        body = MESSAGE + b"y" * 10000 + b"\r\n"
        self.assertEqual(
            session.send(b"a APPEND INBOX {%d}\r\n" % len(body)), b"+ Ready for literal data\r\n"
        )
        self.assertTrue(session.send(body + b"\r\n").startswith(b"a OK [APPENDUID "))


class LiteralMinusConfigTests(SynchronousTestCase):
    def write(self, text: str) -> Path:
        folder = Path(self.mktemp())
        folder.mkdir()
        path = folder / "tmail.toml"
        path.write_text('hostname = "mail.example.test"\n[imap]\nlisten = ["tcp:0"]\n' + text)
        return path

    def test_literal_minus_is_a_boolean_setting_off_by_default(self) -> None:
        settings = loadSettings(self.write(""))
        assert settings.imap is not None
        self.assertFalse(settings.imap.literal_minus)
        settings = loadSettings(self.write("literal_minus = true\n"))
        assert settings.imap is not None
        self.assertTrue(settings.imap.literal_minus)

    def test_a_non_boolean_value_is_one_clear_line(self) -> None:
        path = self.write('literal_minus = "yes"\n')
        error = self.assertRaises(ConfigError, loadSettings, path)
        self.assertEqual(
            str(error), f'{path}: imap.literal_minus: expected true or false, got string "yes"'
        )


class LiteralMinusNetworkTests(TestCase):
    timeout = 20

    @inlineCallbacks
    def test_a_raw_client_gets_bad_toobig_and_the_session_goes_on(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        fixture = makeRealm(Path(self.mktemp()))
        port = yield listenIMAP(self, fixture, literal_minus=True)
        payload = b"c LOGOUT\r\n" + b"y" * 5000

        def client() -> list[bytes]:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                greeting = readLine(sock)
                sock.sendall(b'a LOGIN "%s" "%s"\r\n' % (ALICE.encode(), PASSWORD.encode()))
                readLine(sock)
                sock.sendall(b"b APPEND INBOX {%d+}\r\n%s\r\nd NOOP\r\n" % (len(payload), payload))
                return [greeting, readLine(sock), readLine(sock)]

        greeting, refused, after = yield inThread(client)
        self.assertIn(b" LITERAL- ", greeting)
        self.assertEqual((refused, after), (b"b " + TOOBIG, b"d OK NOOP completed\r\n"))
        self.assertEqual(fixture.store(ALICE).getFolder("INBOX").messages(), ())
