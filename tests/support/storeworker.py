"""
A process that works on a Maildir until it is killed, announcing each
operation before it starts and acknowledging it once it returned: the
acknowledgement is exactly what a client would have been told.

Run as C{python -m support.storeworker ROOT --run N [--ops ...]} with
C{tests} on C{PYTHONPATH}.  Every line on stdout is one JSON object:
C{{"begin": {...}}} before an operation and C{{"ack": {...}}} after it;
C{{"ready": true}} once the store is open.  Message bodies follow from the
run number and a counter (L{body}), so their contents can be checked.

Folders: C{INBOX} and C{Target} (moves go there) always exist; the
C{RenA}/C{RenB} pair is renamed back and forth (one of the two names holds
its messages); C{Scratch} is created and deleted.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import sys
from pathlib import Path
from typing import Any

from tmail.errors import FolderExists, NoSuchFolder
from tmail.interfaces import IMailFolder
from tmail.store.dotlock import DotLock
from tmail.store.maildir import BlockingMaildirStore

OPERATIONS = ("deliver", "flags", "expunge", "move", "rename", "scratch")
RENAMED = ("RenA", "RenB")
MAIL_FOLDERS = ("INBOX", "Target", "Ren")
FLAG_CHOICES = ("\\Seen", "\\Flagged", "\\Answered", "\\Draft", "$Label1", "$Work")


def body(run: int, number: int) -> bytes:
    """The deterministic message C{number} of run C{run}, a few hundred bytes to a few KiB."""
    size = random.Random(run * 1_000_003 + number).randrange(100, 6000)
    head = (
        f"From: worker@example.test\r\nTo: alice@example.test\r\n"
        f"Subject: run {run} message {number}\r\n"
        f"Message-ID: <{run}.{number}@example.test>\r\n\r\n"
    ).encode()
    line = f"run {run} message {number} ".encode() * 4 + b"\r\n"
    return head + (line * (size // len(line) + 1))[:size] + b"\r\n"


def childBody(number: int) -> bytes:
    """The one message of sub-folder C{Child<number>} of the renamed folder."""
    return f"Subject: child {number}\r\n\r\nThe message of Child{number}.\r\n".encode()


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def say(**line: Any) -> None:
    sys.stdout.write(json.dumps(line, sort_keys=True) + "\n")
    sys.stdout.flush()


def renamedName(store: Any) -> str:
    """Whichever of C{RenA}/C{RenB} exists now (creating C{RenA} if neither)."""
    names = store.listFolders()
    for name in RENAMED:
        if name in names:
            return name
    store.createFolder(RENAMED[0])
    return RENAMED[0]


def folderFor(store: Any, logical: str) -> tuple[str, IMailFolder]:
    name = renamedName(store) if logical == "Ren" else logical
    return name, store.getFolder(name)


class Worker:
    def __init__(self, root: Path, run: int, operations: list[str], children: int = 0) -> None:
        self.store = BlockingMaildirStore(root)
        self.run = run
        self.random = random.Random(run)
        self.operations = operations
        self.number = 0
        if "Target" not in self.store.listFolders():
            with contextlib.suppress(FolderExists):
                self.store.createFolder("Target")
        names = self.store.listFolders()
        if not any(name.startswith(RENAMED) for name in names):
            for n in range(children):
                child = self.store.createFolder(f"{RENAMED[0]}/Child{n}")
                pending = child.beginMessage()
                pending.write(childBody(n))
                pending.commit()
        renamedName(self.store)

    def step(self) -> None:
        operation = self.random.choice(self.operations)
        getattr(self, "do_" + operation)()

    def pickMessage(self, logical: str) -> tuple[str, IMailFolder, Any] | None:
        name, folder = folderFor(self.store, logical)
        messages = folder.messages()
        if not messages:
            return None
        return name, folder, self.random.choice(list(messages))

    def do_deliver(self) -> None:
        logical = self.random.choice(MAIL_FOLDERS)
        _, folder = folderFor(self.store, logical)
        self.number += 1
        data = body(self.run, self.number)
        flags = sorted(self.random.sample(FLAG_CHOICES, self.random.randrange(0, 3)))
        say(begin={"op": "deliver", "folder": logical, "sha": digest(data), "flags": flags})
        pending = folder.beginMessage(flags)
        for start in range(0, len(data), 1000):
            pending.write(data[start : start + 1000])
        uid = pending.commit()
        say(
            ack={
                "op": "deliver",
                "folder": logical,
                "uid": uid,
                "sha": digest(data),
                "flags": flags,
                "validity": folder.uidValidity(),
            }
        )

    def do_flags(self) -> None:
        picked = self.pickMessage(self.random.choice(MAIL_FOLDERS))
        if picked is None:
            return
        name, folder, info = picked
        logical = "Ren" if name in RENAMED else name
        flags = sorted(self.random.sample(FLAG_CHOICES, self.random.randrange(0, 4)))
        say(begin={"op": "flags", "folder": logical, "uid": info.uid, "flags": flags})
        result = folder.setFlags(info.uid, flags)
        say(ack={"op": "flags", "folder": logical, "uid": info.uid, "flags": sorted(result.flags)})

    def do_expunge(self) -> None:
        picked = self.pickMessage(self.random.choice(MAIL_FOLDERS))
        if picked is None:
            return
        name, folder, info = picked
        logical = "Ren" if name in RENAMED else name
        say(begin={"op": "expunge", "folder": logical, "uid": info.uid})
        removed = folder.expunge([info.uid])
        say(ack={"op": "expunge", "folder": logical, "uid": info.uid, "removed": removed})

    def do_move(self) -> None:
        picked = self.pickMessage(self.random.choice(("INBOX", "Ren")))
        if picked is None:
            return
        name, folder, info = picked
        logical = "Ren" if name in RENAMED else name
        target = self.store.getFolder("Target")
        say(begin={"op": "move", "folder": logical, "uid": info.uid, "target": "Target"})
        newUid = folder.copyMessage(info.uid, target)
        say(
            ack={
                "op": "copy",
                "folder": logical,
                "uid": info.uid,
                "target": "Target",
                "newUid": newUid,
                "validity": target.uidValidity(),
            }
        )
        folder.expunge([info.uid])
        say(
            ack={
                "op": "move",
                "folder": logical,
                "uid": info.uid,
                "target": "Target",
                "newUid": newUid,
            }
        )

    def do_rename(self) -> None:
        old = renamedName(self.store)
        new = RENAMED[1 - RENAMED.index(old)]
        say(begin={"op": "rename", "old": old, "new": new})
        self.store.renameFolder(old, new)
        say(ack={"op": "rename", "old": old, "new": new})

    def do_scratch(self) -> None:
        if "Scratch" in self.store.listFolders():
            say(begin={"op": "delete", "folder": "Scratch"})
            self.store.deleteFolder("Scratch")
            say(ack={"op": "delete", "folder": "Scratch"})
        else:
            say(begin={"op": "create", "folder": "Scratch"})
            folder = self.store.createFolder("Scratch")
            pending = folder.beginMessage()
            pending.write(b"Subject: scratch\r\n\r\nscratch\r\n")
            pending.commit()
            say(ack={"op": "create", "folder": "Scratch"})


def holdLock(root: Path, partial: bool) -> None:
    """
    Take INBOX's uidlist lock the way a writer does and wait to be killed,
    after writing half a uidlist into the lock file when C{partial}.
    """
    lock = DotLock(root / "dovecot-uidlist")
    lock.acquire()
    if partial:
        assert lock._fd is not None
        os.write(lock._fd, b"3 V1 N99")
    say(ready=True, locked=True)
    sys.stdin.read()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("root", type=Path)
    parser.add_argument("--run", type=int, default=1)
    parser.add_argument(
        "--ops",
        default=",".join(("deliver", *OPERATIONS)),
        help="operations to pick from at random (repeat one to pick it more often)",
    )
    parser.add_argument(
        "--children", type=int, default=0, help="sub-folders the renamed folder starts with"
    )
    parser.add_argument("--count", type=int, default=0, help="stop after this many steps")
    parser.add_argument("--hold-lock", choices=("empty", "partial"))
    args = parser.parse_args(argv)
    if args.hold_lock:
        holdLock(args.root, args.hold_lock == "partial")
        return
    worker = Worker(args.root, args.run, args.ops.split(","), args.children)
    say(ready=True)
    steps = 0
    while not args.count or steps < args.count:
        try:
            worker.step()
        except (KeyError, NoSuchFolder) as e:
            say(failed=repr(e))
        steps += 1


if __name__ == "__main__":
    main()
