"""
The assembled service runs the queue runner beside the listeners, wires the
SMTP listeners' outbox to it (a new entry is attempted at once; one for a
hosted domain is stored locally), and leaves nothing running once stopped.
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks, maybeDeferred
from twisted.trial.unittest import TestCase

from support.net import eventually
from tmail.config.loader import loadSettings
from tmail.directory.passwdfile import PasswdFileDirectory
from tmail.queue.entry import Envelope, Recipient
from tmail.service import makeService
from tmail.smtp.factory import SMTPFactory


class ServiceRunnerTests(TestCase):
    @inlineCallbacks
    def test_runner_starts_attempts_new_entries_at_once_and_stops_cleanly(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        folder = Path(self.mktemp()).resolve()
        folder.mkdir()
        config = folder / "tmail.toml"
        config.write_text(
            'hostname = "mx.example.test"\ndata_dir = "data"\n'
            '[submission]\nlisten = ["tcp:0:interface=127.0.0.1"]\n'
            '[relay]\nnameservers = ["127.0.0.1:1"]\n'
        )
        settings = loadSettings(config)
        PasswdFileDirectory(settings.data_dir).addDomain("example.test")
        service = makeService(settings)
        [factory] = {
            child.factory
            for child in service
            if isinstance(getattr(child, "factory", None), SMTPFactory)
        }
        self.assertIs(factory.outbox, service.outbox)
        self.assertIn(service.runner, list(service))
        service.startService()
        try:
            self.assertTrue(service.runner.running)
            attempted: list[str] = []
            service.outbox.listen(attempted.append)
            pending = service.outbox.begin(Envelope("", (Recipient("postmaster@example.test"),)))
            pending.write(b"Subject: report\r\n\r\nx\r\n")
            pending.commit()
            self.assertEqual(len(attempted), 1)
            self.assertIn(attempted[0], service.runner._busy)
            yield eventually(lambda: not service.outbox.store.ids())
            store = service.realm.storeFor("postmaster@example.test")
            inbox = yield maybeDeferred(store.getFolder, "INBOX")
            self.assertEqual(len(inbox.messages()), 1)
        finally:
            yield service.stopService()
        self.assertFalse(service.runner.running)


class ServiceNamesTests(TestCase):
    def test_every_part_of_the_service_has_a_name_for_the_log(self) -> None:
        folder = Path(self.mktemp()).resolve()
        folder.mkdir()
        config = folder / "tmail.toml"
        config.write_text(
            'hostname = "mx.example.test"\ndata_dir = "data"\n'
            '[smtp]\nlisten = ["tcp:0:interface=127.0.0.1"]\n'
            '[imap]\nlisten = ["tcp:0:interface=127.0.0.1"]\n'
        )
        service = makeService(loadSettings(config))
        self.assertEqual([child for child in service if not child.name], [])
        self.assertIn("large message threads", [child.name for child in service])
