"""
Files of expunged messages kept while a reader still holds them.

An IMAP session is told of an expunge only when the protocol lets it be
(RFC 3501 7.4.1: not during FETCH, STORE or SEARCH); until then the message
is still in its view and a FETCH of it must be served if the bytes can be
read (RFC 2180 4.1.1; Dovecot answers from its index and cache).  A folder
therefore moves the file of a message expunged in this process aside,
instead of unlinking it, while a registered reader holds the message, and
unlinks it once every such reader has let it go (it was told of the
expunge, or it closed).

The file goes into the folder's C{tmp/} with a fresh mtime: a crash leaves
it there for the usual sweep of C{tmp/} (36 hours), and it counts for no
quota meanwhile.  On a disk that refused a write nothing is kept (and what
was kept is unlinked): deleting is what frees space.  Only messages
expunged by this process are kept: a file another program deleted is gone,
and a FETCH of it is then C{NO [EXPUNGEISSUED]}.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable

#: A reader: says whether it still holds a message (by UID).
Reader = Callable[[int], bool]

#: What the file of a retained message is named after in C{tmp/}.
SUFFIX = ".expunged"


class RetainedFiles:
    """
    The retained files of one folder and the readers that hold them.

    @ivar readers: the registered readers, in registration order.
    @ivar tmpDir: the folder's C{tmp/}, where the files are kept (it
        follows a rename of the folder).
    """

    def __init__(self, tmpDir: str) -> None:
        self.readers: list[Reader] = []
        self.tmpDir = tmpDir
        self._files: dict[int, tuple[str, set[Reader]]] = {}

    def __len__(self) -> int:
        return len(self._files)

    def holders(self, uid: int) -> set[Reader]:
        """The readers that hold C{uid} now."""
        return {reader for reader in self.readers if reader(uid)}

    def keep(self, uid: int, source: str, base: str, holders: set[Reader]) -> bool:
        """
        Move C{source} (the file of expunged C{uid}) into C{tmp/} for
        C{holders}; C{False} when the file is not there to move.
        """
        name = base + SUFFIX
        target = f"{self.tmpDir}{os.sep}{name}"
        try:
            os.rename(source, target)
        except FileNotFoundError:
            return False
        with contextlib.suppress(OSError):
            os.utime(target)
        self._files[uid] = (name, holders)
        return True

    def path(self, uid: int) -> str | None:
        """Where the retained file of C{uid} is, if it is kept."""
        kept = self._files.get(uid)
        return None if kept is None else f"{self.tmpDir}{os.sep}{kept[0]}"

    def release(self, reader: Reader, uids: Iterable[int]) -> None:
        """C{reader} lets these messages go; unlink the files no one holds."""
        files = self._files
        for uid in uids:
            kept = files.get(uid)
            if kept is None:
                continue
            kept[1].discard(reader)
            if not kept[1]:
                del files[uid]
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f"{self.tmpDir}{os.sep}{kept[0]}")

    def removeReader(self, reader: Reader) -> None:
        """C{reader} closed: it lets go of everything it held."""
        with contextlib.suppress(ValueError):
            self.readers.remove(reader)
        self.release(
            reader, [uid for uid, (_, holders) in self._files.items() if reader in holders]
        )

    def forget(self) -> None:
        """Unlink every retained file: the folder was deleted or renumbered."""
        files, self._files = self._files, {}
        for name, _ in files.values():
            with contextlib.suppress(OSError):
                os.unlink(f"{self.tmpDir}{os.sep}{name}")
