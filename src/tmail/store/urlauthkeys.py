# -*- test-case-name: tests.imap.test_imap_urlauth -*-
"""
The mailbox access keys of IMAP URLAUTH (RFC 4467 3): one random key per
user per mailbox, from which the URLs' tokens are computed.  Resetting a
key (RESETKEY) makes every URL issued with it invalid.

A key is kept with the mailbox's UIDVALIDITY: a mailbox deleted and made
again (a new UIDVALIDITY) has a new key, so URLs to the old one never open
the new one.  Maildir keeps them in the small C{tmail-urlauth-keys} file in
the Maildir's root, mode 0600, replaced whole under a dot-lock (as
L{tmail.store.specialuse} does): a header line, then per mailbox its name
(UTF-8), its UIDVALIDITY and its key in hex, separated by tabs.
"""

from __future__ import annotations

import secrets
import threading
from pathlib import Path

from zope.interface import implementer

from tmail.fsutil import fsyncDirectory
from tmail.interfaces import IMailboxKeys
from tmail.store.dotlock import DotLock

__all__ = ["FILENAME", "KEY_BYTES", "MailboxKeyFile", "MemoryMailboxKeys"]

FILENAME = "tmail-urlauth-keys"
_HEADER = "tmail-urlauth-keys 1\n"
#: 256-bit keys, as long as HMAC-SHA256's output.
KEY_BYTES = 32

Keys = dict[str, tuple[int, bytes]]


def parse(text: str) -> Keys:
    """The keys by mailbox name; lines that make no sense are skipped."""
    found: Keys = {}
    for line in text.split("\n")[1:]:
        parts = line.split("\t")
        if len(parts) != 3 or not parts[1].isdigit():
            continue
        try:
            key = bytes.fromhex(parts[2])
        except ValueError:
            continue
        if len(key) == KEY_BYTES:
            found[parts[0]] = (int(parts[1]), key)
    return found


def serialize(keys: Keys) -> bytes:
    lines = (f"{name}\t{validity}\t{key.hex()}\n" for name, (validity, key) in sorted(keys.items()))
    return (_HEADER + "".join(lines)).encode("utf-8", "surrogateescape")


class _Keys:
    """What both key stores share: reading, choosing and resetting keys."""

    def _read(self) -> Keys:
        raise NotImplementedError

    def _change(self, mailbox: str | None, uidValidity: int, create: bool) -> bytes | None:
        raise NotImplementedError

    def key(self, mailbox: str, uidValidity: int) -> bytes | None:
        """The mailbox's key, or C{None} when it has none (for this UIDVALIDITY)."""
        found = self._read().get(mailbox)
        if found is None or found[0] != uidValidity:
            return None
        return found[1]

    def keyFor(self, mailbox: str, uidValidity: int) -> bytes:
        """The mailbox's key, made (and kept durably) when it has none yet."""
        key = self.key(mailbox, uidValidity)
        if key is not None:
            return key
        made = self._change(mailbox, uidValidity, True)
        assert made is not None
        return made

    def reset(self, mailbox: str | None = None) -> None:
        """Forget the key of C{mailbox}, or of every mailbox: their URLs stop working."""
        self._change(mailbox, 0, False)

    @staticmethod
    def _apply(keys: Keys, mailbox: str | None, uidValidity: int, create: bool) -> bytes | None:
        if not create:
            if mailbox is None:
                keys.clear()
            else:
                keys.pop(mailbox, None)
            return None
        assert mailbox is not None
        found = keys.get(mailbox)
        if found is not None and found[0] == uidValidity:
            return found[1]
        key = secrets.token_bytes(KEY_BYTES)
        keys[mailbox] = (uidValidity, key)
        return key


@implementer(IMailboxKeys)
class MailboxKeyFile(_Keys):
    """The keys of one Maildir, in its C{tmail-urlauth-keys} file."""

    def __init__(self, root: Path) -> None:
        self.path = Path(root) / FILENAME

    def _read(self) -> Keys:
        try:
            return parse(self.path.read_bytes().decode("utf-8", "surrogateescape"))
        except FileNotFoundError:
            return {}

    def _change(self, mailbox: str | None, uidValidity: int, create: bool) -> bytes | None:
        if not create and not self.path.exists():
            return None
        with DotLock(self.path) as lock:
            keys = self._read()
            before = dict(keys)
            result = self._apply(keys, mailbox, uidValidity, create)
            if keys != before:
                lock.replace(serialize(keys))
                fsyncDirectory(self.path.parent)
        return result


@implementer(IMailboxKeys)
class MemoryMailboxKeys(_Keys):
    """Keys kept in memory, for stores that keep no files."""

    def __init__(self) -> None:
        self._keys: Keys = {}
        self._lock = threading.Lock()

    def _read(self) -> Keys:
        with self._lock:
            return dict(self._keys)

    def _change(self, mailbox: str | None, uidValidity: int, create: bool) -> bytes | None:
        with self._lock:
            return self._apply(self._keys, mailbox, uidValidity, create)
