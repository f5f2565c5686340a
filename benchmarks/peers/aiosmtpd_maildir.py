"""
An aiosmtpd SMTP server that stores each message in its recipient's Maildir
as durably as tmail does before answering C{250}: write to C{tmp/}, fsync
the file, rename it into C{new/}, fsync C{new/}.

    python aiosmtpd_maildir.py --port 2525 --root MAILDIRS --users USERS_FILE

C{USERS_FILE} lists one address a line; C{user@domain} is stored in
C{MAILDIRS/domain/user/}.  Other recipients are refused.  Stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import signal
import socket
import time
from email.utils import formatdate
from pathlib import Path

from aiosmtpd.smtp import SMTP, Envelope, Session

HOSTNAME = "bench.test"


def makeMaildir(path: Path) -> None:
    for sub in ("tmp", "new", "cur"):
        (path / sub).mkdir(parents=True, exist_ok=True)


class MaildirHandler:
    """
    Accepts the known users and stores a copy per recipient before C{250},
    inside the event loop as aiosmtpd's own C{Mailbox} handler does.
    """

    def __init__(self, maildirs: dict[str, Path]) -> None:
        self.maildirs = maildirs
        self.counter = itertools.count()
        self.host = socket.gethostname().replace("/", "_").replace(":", "_")

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if address.lower() not in self.maildirs:
            return "550 5.1.1 No such user"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        try:
            for recipient in envelope.rcpt_tos:
                trace = (
                    f"Return-Path: <{envelope.mail_from}>\r\nDelivered-To: {recipient}\r\n"
                    f"Received: from {session.host_name} ([{session.peer[0]}])\r\n"
                    f"\tby {HOSTNAME} (aiosmtpd) with ESMTP for <{recipient}>; "
                    f"{formatdate()}\r\n"
                ).encode()
                self.store(self.maildirs[recipient.lower()], trace + content)
        except OSError:
            return "451 4.3.0 Could not store the message"
        return "250 2.0.0 Ok"

    def uniqueName(self) -> str:
        now = time.time()
        return f"{int(now)}.M{int(now % 1 * 1e6)}P{os.getpid()}Q{next(self.counter)}.{self.host}"

    def store(self, maildir: Path, data: bytes) -> None:
        """Write, fsync, rename into C{new/} and fsync C{new/}."""
        name = self.uniqueName()
        tmp = maildir / "tmp" / name
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except OSError:
            os.unlink(tmp)
            raise
        finally:
            os.close(fd)
        os.rename(tmp, maildir / "new" / name)
        directory = os.open(maildir / "new", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


async def serve(port: int, maildirs: dict[str, Path]) -> None:
    loop = asyncio.get_running_loop()
    handler = MaildirHandler(maildirs)
    server = await loop.create_server(
        lambda: SMTP(handler, hostname=HOSTNAME, decode_data=False), "127.0.0.1", port
    )
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--users", type=Path, required=True)
    args = parser.parse_args()
    maildirs = {}
    for address in args.users.read_text().split():
        local, domain = address.lower().split("@", 1)
        maildirs[address.lower()] = args.root / domain / local
        makeMaildir(maildirs[address.lower()])
    asyncio.run(serve(args.port, maildirs))


if __name__ == "__main__":
    main()
