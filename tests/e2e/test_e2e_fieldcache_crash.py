"""
End to end: the real C{twistd -n tmail} killed with SIGKILL while it writes
parsed facts to a folder's field cache (new messages delivered and fetched
as fast as it goes, facts written every 50 ms).  After each restart the
FETCH answers are byte for byte those of a server with no cache at all,
and the cache file is used again or started anew, never an error; a torn
record at its end (what a kill in the middle of a write leaves) is cut off.
"""

from __future__ import annotations

import imaplib
import os
import random
import smtplib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.mimecorpus import CORPUS
from support.process import TmailServer
from tmail.store import fieldcachefile

pytestmark = pytest.mark.e2e

ALICE = "alice@example.test"
PASSWORD = "correct horse battery"
KILLS = 3
ITEMS = (
    "(UID RFC822.SIZE ENVELOPE BODYSTRUCTURE BODY "
    "BODY.PEEK[HEADER.FIELDS (DATE FROM TO SUBJECT MESSAGE-ID CONTENT-TYPE)])"
)
MESSAGES = [raw for raw in CORPUS.values() if len(raw) < 100_000]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[TmailServer]:
    instance = TmailServer(tmp_path / "tmail")
    instance.imapExtra = "message_cache_flush_interval = 0.05\n"
    instance.write()
    instance.addUser(ALICE, PASSWORD)
    yield instance
    instance.stop()


def fetchAll(server: TmailServer) -> list[bytes]:
    with imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=60) as imap:
        imap.login(ALICE, PASSWORD)
        typ, data = imap.select("INBOX", readonly=True)
        assert typ == "OK", data
        typ, data = imap.uid("FETCH", "1:*", ITEMS)
        assert typ == "OK", data
        imap.logout()
    return [b"* " + b"".join(part) if isinstance(part, tuple) else part for part in data]


def deliverAndFetch(server: TmailServer, seed: int, stop: threading.Event) -> None:
    """Deliver a message, fetch what is new, again and again until the server is gone."""
    rng = random.Random(seed)
    try:
        imap = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=10)
        imap.login(ALICE, PASSWORD)
        imap.select("INBOX")
        with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as smtp:
            while not stop.is_set():
                smtp.sendmail("sender@example.org", [ALICE], rng.choice(MESSAGES))
                imap.noop()
                imap.fetch(f"{rng.randrange(1, 5)}:*", ITEMS)
    except (OSError, imaplib.IMAP4.abort, imaplib.IMAP4.error, smtplib.SMTPException):
        return


def cacheFiles(server: TmailServer) -> list[Path]:
    return list(server.folder.glob("data/**/tmail-fields"))


def test_kill_9_while_writing_facts_leaves_a_cache_used_or_rebuilt(
    server: TmailServer,
) -> None:
    rng = random.Random(20261207)
    for kill in range(KILLS):
        server.start()
        if kill:
            fetchAll(server)
        stop = threading.Event()
        worker = threading.Thread(target=deliverAndFetch, args=(server, kill, stop))
        worker.start()
        time.sleep(rng.uniform(1.0, 2.5))
        server.kill()
        stop.set()
        worker.join(30)
        assert not worker.is_alive()
    (cache,) = cacheFiles(server)
    written = cache.stat().st_size
    assert written > 1000, "no facts were written before the kills"
    with cache.open("ab") as f:
        f.write(fieldcachefile.encode(b"1/torn/1/0.0", {"envelope": b"x" * 100})[:50])

    server.start()
    afterKills = fetchAll(server)
    again = fetchAll(server)
    server.stop()
    fd, found = fieldcachefile.load(cache, _uidValidity(cache))
    os.close(fd)
    messages = sum(1 for part in afterKills if part.startswith(b"* "))
    assert len(found.index) >= messages // 2, "the cache was not written again"

    server.imapExtra = "message_cache_size = 0\nmessage_cache_persistent = false\n"
    server.write()
    server.start()
    uncached = fetchAll(server)
    assert messages > 10
    assert afterKills == uncached
    assert again == uncached


def _uidValidity(cache: Path) -> int:
    """The UIDVALIDITY of the folder a cache file is in."""
    header = (cache.parent / "dovecot-uidlist").read_text().split("\n", 1)[0]
    (field,) = [word for word in header.split() if word.startswith("V")]
    return int(field[1:])
