"""
C{MAIL} on a small, really filling disk (a 1 MiB tmpfs holding the
Maildirs): a declared size the disk cannot hold, or a disk with nothing
left, is refused at once with C{452 4.3.1}, before any content is sent;
C{min_free_space} is kept free.  The submission side (the queue's disk) is
in C{test_smtp_relay}.
"""

from __future__ import annotations

import contextlib
import os
import smtplib
import subprocess
from collections.abc import Generator
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial.unittest import TestCase

from support.disk import smallDisk
from support.net import inThread, listen
from support.realm import ALICE, makeRealm
from tmail.auth.throttle import AuthThrottle
from tmail.config.schema import AuthSettings, LMTPSettings, SMTPSettings
from tmail.fsutil import freeSpace
from tmail.smtp.factory import SMTPFactory
from tmail.smtp.lmtp import LMTPFactory

FULL = (452, b"4.3.1 Insufficient system storage")
KiB = 1024


def fill(disk: Path, leave: int = 0) -> None:
    """Fill the disk with one file, leaving about C{leave} bytes free."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0" * 4096)
        os.ftruncate(fd, max(0, os.fstat(fd).st_size - leave))
    finally:
        os.close(fd)


class FreeSpaceTests(TestCase):
    @inlineCallbacks
    def setUp(self) -> Generator[Deferred[Any], Any, None]:
        root = Path(self.mktemp()).resolve()
        mounted = contextlib.ExitStack()
        self.addCleanup(mounted.close)
        self.disk = mounted.enter_context(smallDisk(root / "data" / "mail", "1m"))
        self.fixture = makeRealm(root)
        self.port = yield self.listen()

    def listen(self, **settings: Any) -> Deferred[int]:
        factory = SMTPFactory(
            self.fixture.realm,
            SMTPSettings(greet_pause=0, **settings),
            hostname="mx.example.test",
            submission=False,
            portal=self.fixture.portal,
            tlsContextFactory=None,
            throttle=AuthThrottle(AuthSettings(), reactor),
        )
        return listen(self, factory)

    def mail(self, *options: str, port: int | None = None) -> tuple[int, bytes]:
        with smtplib.SMTP("127.0.0.1", port or self.port, timeout=10) as client:
            client.ehlo("client.example.org")
            return client.mail("s@remote.example", list(options))

    @inlineCallbacks
    def test_a_declared_size_larger_than_the_free_space_is_refused_at_mail(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        fill(self.disk, leave=64 * KiB)
        reply = yield inThread(self.mail, f"SIZE={200 * KiB}")
        self.assertEqual(reply, FULL)
        reply = yield inThread(self.mail, f"SIZE={16 * KiB}")
        self.assertEqual(reply, (250, b"2.1.0 Ok"))

    @inlineCallbacks
    def test_smtplib_sending_a_message_too_big_for_the_disk_hears_it_at_mail(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        """smtplib declares the size; the refusal comes before the content is sent."""
        fill(self.disk, leave=64 * KiB)

        def send() -> None:
            with smtplib.SMTP("127.0.0.1", self.port, timeout=10) as client:
                client.sendmail(
                    "s@remote.example", [ALICE], b"Subject: big\r\n\r\n" + b"x" * 76 * KiB
                )

        with self.assertRaises(smtplib.SMTPSenderRefused) as refused:
            yield inThread(send)
        self.assertEqual((refused.exception.smtp_code, refused.exception.smtp_error), FULL)
        self.assertEqual(self.fixture.inbox(ALICE), [])

    @inlineCallbacks
    def test_a_full_disk_refuses_mail_without_a_size_at_mail(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        fill(self.disk)
        self.assertEqual(freeSpace(self.disk), 0)
        reply = yield inThread(self.mail)
        self.assertEqual(reply, FULL)

    @inlineCallbacks
    def test_plenty_of_space_accepts_mail(self) -> Generator[Deferred[Any], Any, None]:
        replies = yield inThread(lambda: [self.mail(), self.mail(f"SIZE={512 * KiB}")])
        self.assertEqual(replies, [(250, b"2.1.0 Ok")] * 2)

    @inlineCallbacks
    def test_min_free_space_is_kept_free(self) -> Generator[Deferred[Any], Any, None]:
        """
        With C{min_free_space = 512 KiB} on a 1 MiB disk, 600 KiB do not fit
        though the disk has room for them, 100 KiB do; with 256 KiB left,
        no message does, declared or not.
        """
        port = yield self.listen(min_free_space=512 * KiB)
        replies = yield inThread(
            lambda: [
                self.mail(f"SIZE={600 * KiB}", port=port),
                self.mail(f"SIZE={100 * KiB}", port=port),
                self.mail(port=port),
            ]
        )
        self.assertEqual(replies, [FULL, (250, b"2.1.0 Ok"), (250, b"2.1.0 Ok")])
        fill(self.disk, leave=256 * KiB)
        replies = yield inThread(
            lambda: [self.mail(f"SIZE={KiB}", port=port), self.mail(port=port)]
        )
        self.assertEqual(replies, [FULL, FULL])

    @inlineCallbacks
    def test_lmtp_refuses_at_mail_too(self) -> Generator[Deferred[Any], Any, None]:
        port = yield listen(
            self,
            LMTPFactory(self.fixture.realm, LMTPSettings(), hostname="mx.example.test"),
        )
        fill(self.disk, leave=64 * KiB)

        def mail() -> tuple[int, bytes]:
            with smtplib.LMTP("127.0.0.1", port, timeout=10) as client:
                client.ehlo("mta.example.org")
                return client.mail("s@remote.example", [f"SIZE={200 * KiB}"])

        reply = yield inThread(mail)
        self.assertEqual(reply, FULL)


class FreeSpaceMeasureTests(TestCase):
    def test_a_missing_folder_is_measured_on_its_nearest_parent(self) -> None:
        root = Path(self.mktemp()).resolve()
        root.mkdir()
        self.assertEqual(freeSpace(root / "not" / "yet"), freeSpace(root))
        self.assertGreater(freeSpace(root), 0)

    def test_no_inodes_left_is_no_space(self) -> None:
        """Bytes are free, but no file can be made: nothing is free."""
        with smallDisk(Path(self.mktemp()).resolve(), "1m") as disk:
            subprocess.run(["mount", "-o", "remount,nr_inodes=4", str(disk)], check=True)
            with contextlib.suppress(OSError):
                for number in range(10):
                    (disk / str(number)).touch()
            self.assertEqual(freeSpace(disk), 0)
