"""
Processes that work on one Maildir at the same time: tmail deliverers, a
flag changer and an expunger (each through its own L{MaildirStore}), and an
external writer that is not tmail (plain file operations, as an MDA, Dovecot
or mutt do).  Each returns a L{Report} of what it did and saw, for the parent
to check.  Module-level functions so a "spawn" process pool can run them.
"""

from __future__ import annotations

import contextlib
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

from tmail.store.maildir import BlockingMaildirStore, MaildirFolder

#: A snapshot of a folder as one process listed it: (UID, base name) in order.
Snapshot = list[tuple[int, str]]

SYSTEM_FLAGS = ("\\Seen", "\\Answered", "\\Flagged", "\\Draft", "\\Deleted")
EXTERNAL_LETTERS = "DFRST"


@dataclass
class Report:
    """
    What one process did and saw.

    @ivar delivered: message id -> the UID its commit returned.
    @ivar dropped: message ids written into new/ without tmail.
    @ivar expunged: message ids whose expunge tmail reported done.
    @ivar snapshots: every listing of the folder, in the order they were made.
    @ivar uidValidities: UIDVALIDITY as read at the start and at the end.
    @ivar uidNexts: every UIDNEXT read, in order.
    @ivar errors: unexpected exceptions, as text.
    """

    name: str
    delivered: dict[str, int] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)
    expunged: list[str] = field(default_factory=list)
    snapshots: list[Snapshot] = field(default_factory=list)
    uidValidities: list[int] = field(default_factory=list)
    uidNexts: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    actions: int = 0


def messageBytes(ident: str, padding: int = 0) -> bytes:
    return (
        f"Message-ID: <{ident}@example.test>\r\nX-Id: {ident}\r\nSubject: {ident}\r\n\r\n"
        + "x" * padding
        + "\r\n"
    ).encode()


def identOf(data: bytes) -> str:
    """The X-Id of a message written by L{messageBytes}."""
    for line in data.split(b"\r\n"):
        if line.startswith(b"X-Id: "):
            return line[6:].decode()
    raise ValueError(f"no X-Id in {data[:80]!r}")


def observe(folder: MaildirFolder, report: Report) -> Snapshot:
    folder.refresh()
    snapshot = [(m.uid, m.key) for m in folder.messages()]
    report.snapshots.append(snapshot)
    report.uidNexts.append(folder.uidNext())
    return snapshot


#: Actions a worker does even when told to stop before it got going (a
#: spawned process may start after the deliveries are over on a busy machine).
MIN_ACTIONS = 5


def _stopped(stopFile: Path, report: Report) -> bool:
    return report.actions >= MIN_ACTIONS and stopFile.exists()


def deliverer(root: Path, name: str, count: int, seed: int) -> Report:
    """Deliver C{count} messages, some with flags (straight into cur/)."""
    rng = random.Random(seed)
    report = Report(name)
    folder = BlockingMaildirStore(root).getFolder("INBOX")
    report.uidValidities.append(folder.uidValidity())
    for i in range(count):
        ident = f"{name}-{i}"
        flags = rng.sample(SYSTEM_FLAGS, rng.randint(0, 2)) if rng.random() < 0.3 else []
        try:
            pending = folder.beginMessage(flags)
            pending.write(messageBytes(ident, rng.randint(0, 300)))
            report.delivered[ident] = pending.commit()
        except Exception as e:
            report.errors.append(f"deliver {ident}: {e!r}")
        report.actions += 1
        if rng.random() < 0.2:
            observe(folder, report)
        time.sleep(rng.uniform(0, 0.01))
    report.uidValidities.append(folder.uidValidity())
    return report


def flagger(root: Path, stopFile: Path, seed: int) -> Report:
    """Change the flags (and a keyword) of random messages until told to stop."""
    rng = random.Random(seed)
    report = Report("flagger")
    folder = BlockingMaildirStore(root).getFolder("INBOX")
    report.uidValidities.append(folder.uidValidity())
    while not _stopped(stopFile, report):
        snapshot = observe(folder, report)
        for uid, _ in rng.sample(snapshot, min(len(snapshot), 3)):
            flags = rng.sample(SYSTEM_FLAGS, rng.randint(0, 3))
            if rng.random() < 0.2:
                flags.append("$Junk")
            try:
                folder.setFlags(uid, flags)
            except KeyError:
                pass
            except Exception as e:
                report.errors.append(f"setFlags {uid}: {e!r}")
            report.actions += 1
        time.sleep(rng.uniform(0, 0.005))
    report.uidValidities.append(folder.uidValidity())
    return report


def expunger(root: Path, stopFile: Path, seed: int) -> Report:
    """
    Expunge random messages until told to stop, a moment after reading
    them, so others often rename the file in between.
    """
    rng = random.Random(seed)
    report = Report("expunger")
    folder = BlockingMaildirStore(root).getFolder("INBOX")
    report.uidValidities.append(folder.uidValidity())
    while not _stopped(stopFile, report):
        snapshot = observe(folder, report)
        if snapshot and rng.random() < 0.5:
            uid, _ = rng.choice(snapshot)
            try:
                with folder.openMessage(uid) as f:
                    ident = identOf(f.read())
            except KeyError:
                continue
            time.sleep(rng.uniform(0, 0.02))
            try:
                if folder.expunge([uid]) == [uid]:
                    report.expunged.append(ident)
            except Exception as e:
                report.errors.append(f"expunge {uid}: {e!r}")
            report.actions += 1
        time.sleep(rng.uniform(0.005, 0.03))
    report.uidValidities.append(folder.uidValidity())
    return report


def externalWriter(root: Path, stopFile: Path, drops: int, seed: int) -> Report:
    """
    Without tmail and without touching the uidlist: deliver C{drops} files
    the Maildir way (write in tmp/, rename into new/) and rename files in
    cur/ to change their C{:2,} flag letters, keeping keyword letters.
    """
    rng = random.Random(seed)
    report = Report("external")
    dropped = 0
    while not _stopped(stopFile, report) or dropped < drops:
        if dropped < drops and rng.random() < 0.3:
            ident = f"external-{dropped}"
            base = f"{int(time.time())}.E{dropped}P{os.getpid()}.external"
            tmp = root / "tmp" / base
            with open(tmp, "wb") as f:
                f.write(messageBytes(ident, rng.randint(0, 300)))
                f.flush()
                os.fsync(f.fileno())
            os.rename(tmp, root / "new" / base)
            report.dropped.append(ident)
            dropped += 1
            report.actions += 1
        names = [n for n in os.listdir(root / "cur") if ":2," in n]
        for filename in rng.sample(names, min(len(names), 2)):
            base, _, letters = filename.partition(":2,")
            keywords = "".join(c for c in letters if c.islower())
            system = "".join(rng.sample(EXTERNAL_LETTERS, rng.randint(0, 3)))
            target = f"{base}:2,{''.join(sorted(system + keywords))}"
            with contextlib.suppress(FileNotFoundError):
                os.rename(root / "cur" / filename, root / "cur" / target)
            report.actions += 1
        time.sleep(rng.uniform(0, 0.005))
    return report
