"""An IMAP server on a loopback port for client-library tests (imaplib, imapclient)."""

from __future__ import annotations

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


def listenIMAP(testCase: TestCase, fixture: RealmFixture, **settings: Any) -> Deferred[int]:
    """Serve the fixture's realm with these L{IMAPSettings}; fires with the port."""
    factory = IMAPFactory(
        fixture.portal,
        IMAPSettings(**settings),
        tlsContextFactory=None,
        throttle=AuthThrottle(AuthSettings(failure_delay=0), reactor),
        hostname="mail.example.test",
    )
    return listen(testCase, factory)


def imapclient(port: int, user: str = ALICE) -> IMAPClient:
    """An C{imapclient} session logged in as C{user}; close it with C{logout()}."""
    client = IMAPClient("127.0.0.1", port=port, ssl=False, timeout=10)
    client.login(user, PASSWORD)
    return client
