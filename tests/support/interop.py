"""
A running tmail (the real C{twistd tmail}) and a private Dovecot serving the
same Maildir tree, for the tests that compare the two.
"""

from __future__ import annotations

import imaplib
import itertools
import smtplib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from support.dovecot import Dovecot, missing, scratchDirectory
from support.process import TmailServer

DOMAIN = "example.test"


@dataclass
class Servers:
    """Both servers; every user made with L{newUser} can log in to either with C{password}."""

    tmail: TmailServer
    dovecot: Dovecot
    password: str
    userPrefix: str = "user"
    _numbers: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def newUser(self) -> str:
        """A user both servers know, with a Maildir of its own."""
        address = f"{self.userPrefix}{next(self._numbers)}@{DOMAIN}"
        added = self.tmail.cli(
            "user", "add", address, "--password-stdin", stdin=self.password + "\n"
        )
        assert added.returncode == 0, added.stderr
        self.dovecot.addUser(address, self.password)
        return address

    def maildir(self, address: str) -> Path:
        local, domain = address.split("@")
        return self.dovecot.mailRoot / domain / local

    def tmailClient(self, address: str) -> imaplib.IMAP4:
        client = imaplib.IMAP4("127.0.0.1", self.tmail.ports["imap"], timeout=30)
        client.login(address, self.password)
        return client

    def dovecotClient(self, address: str) -> imaplib.IMAP4:
        return self.dovecot.connect(address)

    def deliver(self, address: str, *messages: bytes) -> None:
        """Deliver through tmail's SMTP server, the way mail arrives."""
        with smtplib.SMTP("127.0.0.1", self.tmail.ports["smtp"], timeout=30) as smtp:
            for raw in messages:
                smtp.sendmail(f"sender@{DOMAIN}", [address], raw)


@contextmanager
def runningServers(
    password: str, *, userPrefix: str = "user", imapExtra: str = "", namespaceExtra: str = ""
) -> Iterator[Servers]:
    """Start both servers (skipping the test when Dovecot cannot run here) and stop them after."""
    reason = missing()
    if reason is not None:
        pytest.skip(reason)
    with scratchDirectory() as scratch:
        tmail = TmailServer(scratch / "tmail", imapExtra=imapExtra)
        tmail.write()
        tmail.addUser(f"postmaster@{DOMAIN}", password)
        dovecot = Dovecot(
            scratch / "dovecot", tmail.folder / "data" / "mail", namespaceExtra=namespaceExtra
        )
        tmail.start()
        try:
            dovecot.start()
            yield Servers(tmail, dovecot, password, userPrefix)
        finally:
            dovecot.stop()
            tmail.stop()
