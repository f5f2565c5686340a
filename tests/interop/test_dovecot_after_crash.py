"""
A Maildir that tmail processes were killed in (C{kill -9}, at random moments
of deliveries, flag changes, expunges, moves and renames) is read by the real
Dovecot exactly as tmail reads it: same UIDVALIDITY, UIDNEXT, UIDs, contents
and flags in every folder.  Half-done work a kill left (files placed without
a uidlist line, lines appended without updating the header) must not make
the two disagree.  Dovecot looks first after the last kill, so it is the one
that finds whatever the kill left half done.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.crash import Folder, killAtRandom, lines, replay, waitForLine, worker
from support.dovecot import Dovecot, missing, scratchDirectory
from support.storeworker import RENAMED, digest
from tmail.store.maildir import BlockingMaildirStore

pytestmark = pytest.mark.e2e

ADDRESS = "alice@example.test"
PASSWORD = "after the crash"


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    reason = missing()
    if reason is not None:
        pytest.skip(reason)
    with scratchDirectory() as scratch:
        server = Dovecot(scratch / "dovecot", scratch / "mail")
        server.addUser(ADDRESS, PASSWORD)
        server.start()
        try:
            yield server
        finally:
            server.stop()


def tmailView(root: Path, name: str) -> tuple[int, int, dict[int, tuple[str, frozenset[str]]]]:
    folder = BlockingMaildirStore(root).getFolder(name)
    messages = {}
    for info in folder.messages():
        with folder.openMessage(info.uid) as f:
            messages[info.uid] = (digest(f.read()), frozenset(info.flags))
    return folder.uidValidity(), folder.uidNext(), messages


def dovecotView(
    server: Dovecot, name: str
) -> tuple[int, int, dict[int, tuple[str, frozenset[str]]]]:
    client = server.connect(ADDRESS)
    try:
        typ, data = client.select(f'"{name}"')
        assert typ == "OK", data
        validity = int(client.untagged_responses["UIDVALIDITY"][0])
        uidNext = int(client.untagged_responses["UIDNEXT"][0])
        messages = {}
        if int(data[0]) > 0:
            typ, data = client.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[])")
            assert typ == "OK", data
            for item in data:
                if not isinstance(item, tuple):
                    continue
                uid = int(re.search(rb"UID (\d+)", item[0])[1])  # type: ignore[index]
                flags = re.search(rb"FLAGS \(([^)]*)\)", item[0])[1].decode().split()  # type: ignore[index]
                messages[uid] = (digest(item[1]), frozenset(flags) - {"\\Recent"})
        return validity, uidNext, messages
    finally:
        client.logout()


def test_dovecot_reads_a_maildir_tmail_was_killed_in_as_tmail_does(
    dovecot: Dovecot, tmp_path: Path
) -> None:
    root = dovecot.mailRoot / "example.test" / "alice"
    report = killAtRandom(root, tmp_path, kills=8, seed=5)
    out = tmp_path / "last.jsonl"
    with worker(root, out, "--run", "100") as process:
        waitForLine(out, process, "ready")
        time.sleep(0.08)
        os.kill(process.pid, signal.SIGKILL)
    inflight = replay(report.model, lines(out)[1:])
    for lock in root.glob("**/*.lock"):
        # Dovecot does not read tmail's holder mark: it overrides (unlinks)
        # a lock a killed tmail left once neither the lock nor the file it
        # guards changed for two minutes, counted from their ctime, which a
        # test cannot set back.  Unlinking is that override, done now.
        lock.unlink()

    names = BlockingMaildirStore(root).listFolders()
    [renamed] = [name for name in RENAMED if name in names]
    logical = {"INBOX": "INBOX", "Target": "Target", "Ren": renamed}
    seenByDovecot = {
        key: Folder(name, *dovecotView(dovecot, name)) for key, name in logical.items()
    }
    report.model.check(seenByDovecot, "Scratch" in names, inflight)
    assert sum(len(folder.messages) for folder in seenByDovecot.values()) > 10
    for key, name in logical.items():
        seen = seenByDovecot[key]
        assert tmailView(root, name) == (seen.validity, seen.uidNext, seen.messages), (
            f"tmail disagrees with Dovecot about {name}"
        )
