# -*- test-case-name: tests.store.test_fieldcache -*-
"""
The field cache of a Maildir folder: C{tmail-fields} in the folder's
directory, beside C{dovecot-uidlist} (Dovecot keeps its own in
C{dovecot.index.cache}; the two never meet).

A message's key is its UID, its base name, its size and its internal date
(the file's mtime).  A Maildir file's content never changes under its base
name, and the UIDVALIDITY is in the file's header, so a record found under a
message's key holds what that message's bytes give.  A file put back under
an expunged message's name may get that message's UID again (the uidlist
still lists the name until it is compacted, as Dovecot's does): it is a
new file, with a new mtime, and so misses.

One cache per folder object (the store shares those per process), found by
adapting the folder to L{IFieldCacheFolder}; it holds the folder weakly.
"""

from __future__ import annotations

import weakref
from pathlib import Path
from typing import TYPE_CHECKING

from tmail.interfaces import MessageInfo
from tmail.store.fieldcache import FieldCache, FolderGone

if TYPE_CHECKING:
    from tmail.store.maildir import MaildirFolder

FILENAME = "tmail-fields"

_caches: weakref.WeakKeyDictionary[MaildirFolder, MaildirFieldCache] = weakref.WeakKeyDictionary()


def messageKey(info: MessageInfo) -> bytes:
    """What names a Maildir message and its content in its folder's cache."""
    name = info.key.encode("utf-8", "surrogateescape")
    return b"%d/%s/%d/%s" % (info.uid, name, info.size, repr(info.internaldate).encode())


class MaildirFieldCache(FieldCache):
    """The field cache of one L{MaildirFolder}."""

    def __init__(self, folder: MaildirFolder) -> None:
        super().__init__()
        self._folder = weakref.ref(folder)

    def folder(self) -> MaildirFolder:
        folder = self._folder()
        if folder is None:
            raise FolderGone()
        return folder

    def cachePath(self) -> Path:
        return self.folder().path / FILENAME

    def currentValidity(self) -> int:
        return self.folder().uidValidity()

    def messageKey(self, info: MessageInfo) -> bytes:
        return messageKey(info)

    def liveKeys(self) -> set[bytes]:
        return {messageKey(info) for info in self.folder().messages(claimRecent=False)}

    def messageCount(self) -> int:
        return self.folder().messageCount()


def fieldCacheOf(folder: MaildirFolder) -> MaildirFieldCache:
    """The one field cache of C{folder}."""
    cache = _caches.get(folder)
    if cache is None:
        cache = _caches[folder] = MaildirFieldCache(folder)
    return cache
