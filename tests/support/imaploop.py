"""An IMAP server on a loopback port for client-library tests (imaplib, imapclient)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from imapclient import IMAPClient
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from support.net import listen
from support.realm import ALICE, PASSWORD, RealmFixture
from tmail.auth.throttle import AuthThrottle
from tmail.config.schema import AuthSettings, IMAPSettings
from tmail.imap.factory import IMAPFactory
from tmail.imap.server import IMAPServer


class _RecordingFactory(IMAPFactory):
    sessions: list[IMAPServer]

    def buildProtocol(self, addr: Any) -> IMAPServer:
        session = super().buildProtocol(addr)
        self.sessions.append(session)
        return session


def listenIMAP(
    testCase: TestCase,
    fixture: RealmFixture,
    sessions: list[IMAPServer] | None = None,
    messageThreads: Callable[..., Deferred[Any]] | None = None,
    **settings: Any,
) -> Deferred[int]:
    """
    Serve the fixture's realm with these L{IMAPSettings}; fires with the
    port.  The server side of each connection is added to C{sessions}, if
    given; work on large messages goes to C{messageThreads}, if given.
    """
    factory = _RecordingFactory(
        fixture.portal,
        IMAPSettings(**settings),
        tlsContextFactory=None,
        throttle=AuthThrottle(AuthSettings(failure_delay=0), reactor),
        hostname="mail.example.test",
        messageThreads=messageThreads,
    )
    factory.sessions = sessions if sessions is not None else []
    return listen(testCase, factory)


def imapclient(port: int, user: str = ALICE) -> IMAPClient:
    """An C{imapclient} session logged in as C{user}; close it with C{logout()}."""
    client = IMAPClient("127.0.0.1", port=port, ssl=False, timeout=10)
    client.login(user, PASSWORD)
    return client
