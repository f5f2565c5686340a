"""
The assembled service runs the queue runner beside the listeners, wires the
SMTP listeners' outbox to it, and leaves nothing running once stopped.
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial.unittest import TestCase

from tmail.config.loader import loadSettings
from tmail.queue.entry import Envelope, Recipient
from tmail.service import makeService
from tmail.smtp.factory import SMTPFactory


class ServiceRunnerTests(TestCase):
    @inlineCallbacks
    def test_runner_starts_hears_of_new_entries_and_stops_cleanly(
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
        service = makeService(loadSettings(config))
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
            pending = service.outbox.begin(Envelope("a@example.test", (Recipient("b@x.test"),)))
            pending.write(b"Subject: x\r\n\r\nx\r\n")
            pending.commit()
            self.assertEqual(len(attempted), 1)
            self.assertIn(attempted[0], service.runner._busy)
        finally:
            yield service.stopService()
        self.assertFalse(service.runner.running)
