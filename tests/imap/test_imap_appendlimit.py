"""
APPENDLIMIT (RFC 7889): the largest message APPEND takes is
C{imap.max_literal_size}, advertised in CAPABILITY and as the APPENDLIMIT
STATUS item; a larger one is C{NO [TOOBIG]} before its bytes are sent.
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import Any

from test_imap_protocol import Session
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase, TestCase

from support.imaploop import imapclient, listenIMAP
from support.net import inThread
from support.realm import makeRealm
from tmail.config.schema import IMAPSettings


class AppendLimitTranscriptTests(SynchronousTestCase):
    def test_capability_carries_the_configured_limit(self) -> None:
        session = Session(self, max_literal_size=257890)
        self.assertIn(b" APPENDLIMIT=257890 ", session.greeting)
        default = Session(self)
        self.assertIn(b" APPENDLIMIT=%d " % IMAPSettings().max_literal_size, default.greeting)

    def test_rfc7889_status_appendlimit(self) -> None:
        session = Session(self, max_literal_size=257890)
        session.loginDirectly()
        self.assertEqual(
            session.send(b"a003 STATUS INBOX (APPENDLIMIT)\r\n"),
            b'* STATUS "INBOX" (APPENDLIMIT 257890)\r\na003 OK STATUS completed\r\n',
        )
        self.assertEqual(
            session.send(b"a004 STATUS INBOX (MESSAGES appendlimit UIDNEXT)\r\n"),
            b'* STATUS "INBOX" (MESSAGES 0 APPENDLIMIT 257890 UIDNEXT 1)\r\n'
            b"a004 OK STATUS completed\r\n",
        )

    def test_an_append_over_the_limit_is_toobig_before_the_literal_is_sent(self) -> None:
        session = Session(self, max_literal_size=100)
        session.loginDirectly()
        self.assertEqual(
            session.send(b"a APPEND INBOX {101}\r\n"), b"a NO [TOOBIG] Message too large\r\n"
        )
        self.assertEqual(session.send(b"b APPEND INBOX {100}\r\n"), b"+ Ready for literal data\r\n")
        reply = session.send(b"x" * 100 + b"\r\n")
        self.assertTrue(reply.startswith(b"b OK [APPENDUID "), reply)


class AppendLimitClientTests(TestCase):
    timeout = 20

    @inlineCallbacks
    def test_imapclient_sees_the_limit_in_capabilities_and_status(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        port = yield listenIMAP(self, makeRealm(Path(self.mktemp())), max_literal_size=4000)

        def client() -> Any:
            imap = imapclient(port)
            try:
                return imap.capabilities(), imap.folder_status("INBOX", ["APPENDLIMIT"])
            finally:
                imap.logout()

        capabilities, status = yield inThread(client)
        self.assertIn(b"APPENDLIMIT=4000", capabilities)
        self.assertEqual(status, {b"APPENDLIMIT": 4000})
