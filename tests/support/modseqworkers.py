"""
A process that changes the flags of INBOX messages through its own
L{MaildirStore} while others do the same, and reports the mod-sequence each
change was given.  A module-level function, so a "spawn" process pool can
run it.
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

from tmail.errors import StoreError
from tmail.store import modseq
from tmail.store.maildir import BlockingMaildirStore

FLAGS = {"\\Seen": "S", "\\Flagged": "F", "\\Answered": "R", "\\Draft": "D"}


@dataclass
class FlagReport:
    """
    What one process did.

    @ivar changes: (UID, mod-sequence, flag letters) of every change, in order.
    @ivar highest: the HIGHESTMODSEQ the process saw last.
    @ivar compactions: how often the log was replaced while the process ran.
    @ivar gaveUp: changes refused because others kept renaming the file.
    """

    changes: list[tuple[int, int, str]] = field(default_factory=list)
    highest: int = 0
    compactions: int = 0
    gaveUp: int = 0
    errors: list[str] = field(default_factory=list)


def flagChanger(
    root: Path, start: Path, count: int, seed: int, slack: int | None = None
) -> FlagReport:
    """
    Create C{ready-<seed>} next to C{start}; once C{start} exists, make
    C{count} flag changes to random
    messages, each to flags other than the ones this process sees, looking
    at the folder now and then.  With C{slack}, the log is compacted as soon
    as it holds that many lines more than it needs.
    """
    if slack is not None:
        modseq._SLACK = slack
    rng = random.Random(seed)
    report = FlagReport()
    folder = BlockingMaildirStore(root).getFolder("INBOX")
    log = root / modseq.FILENAME
    view = {m.uid: m.flags for m in folder.messages()}
    start.with_name(f"ready-{seed}").touch()
    deadline = time.monotonic() + 30
    while not start.exists() and time.monotonic() < deadline:
        time.sleep(0.001)
    inode = os.stat(log).st_ino
    while len(report.changes) < count:
        if rng.random() < 0.2:
            folder.refresh()
            view = {m.uid: m.flags for m in folder.messages()}
        uid = rng.choice(sorted(view))
        wanted = frozenset(rng.sample(sorted(FLAGS), rng.randint(0, 3)))
        if wanted == view[uid]:
            continue
        known = folder.info(uid)
        try:
            info = folder.setFlags(uid, wanted)
        except StoreError:
            # Renamed by the others on every attempt: the change was not made.
            report.gaveUp += 1
            continue
        except Exception as e:
            report.errors.append(f"setFlags {uid}: {e!r}")
            continue
        view[uid] = info.flags
        if known is not None and info.modseq == known.modseq:
            # Another process had made the same change: nothing was changed
            # (and no new mod-sequence given) here.
            continue
        letters = "".join(sorted(FLAGS[flag] for flag in wanted))
        report.changes.append((uid, info.modseq, letters))
        now = os.stat(log).st_ino
        report.compactions += now != inode
        inode = now
    report.highest = folder.highestModSeq()
    return report
