"""
The many-client state-tracking soak (L{support.imapsoak}), short: six
clients for a few seconds on real sockets, sharing three mailboxes; every
reply each got is checked against its own model of the mailbox.  The long
run (50 clients, 5 minutes) is C{benchmarks/soak.py}.
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial.unittest import TestCase

from support.imaploop import listenIMAP
from support.imapsoak import SoakReport, runSoak
from support.net import inThread
from support.realm import ALICE, PASSWORD, makeRealm

CLIENTS = 6
SECONDS = 6.0


class SoakTests(TestCase):
    timeout = 120

    @inlineCallbacks
    def test_six_clients_sharing_mailboxes_find_no_model_error(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        fixture = makeRealm(Path(self.mktemp()))
        port = yield listenIMAP(self, fixture)
        report: SoakReport = yield inThread(
            lambda: runSoak("127.0.0.1", port, ALICE, PASSWORD, CLIENTS, SECONDS, seed=7)
        )
        self.assertEqual(report.errorCount, 0, report.summary())
        self.assertEqual(report.disconnects, 0, report.summary())
        self.assertGreater(report.commands, CLIENTS * 20, report.summary())
