# -*- test-case-name: tests.imap.test_imap_long_changes -*-
"""
Messages expunged from a folder a slice at a time (L{Expunge}).  Apart
from the session's view (L{tmail.imap.mailbox}): it works on the folder
alone, and the view takes its result in afterwards.
"""

from __future__ import annotations

from collections.abc import Callable

from tmail.imap.waiting import Steps, finish, waitFor
from tmail.interfaces import IMailFolder


class Expunge:
    """
    Messages expunged from a folder a slice at a time: by EXPUNGE, UID
    EXPUNGE and CLOSE (with C{pick}, which keeps those of each slice still
    marked C{\\Deleted} when the slice runs: a message another session
    undeleted meanwhile stays), by MOVE (the originals) or by a COPY
    undoing its copies.

    A session's view changes only once the last step is done
    (L{tmail.imap.mailbox.IMAPMailbox.expunged}), so sequence numbers
    hold while it runs.

    @ivar uids: the messages to expunge.
    @ivar removed: the UIDs expunged so far.
    """

    #: Messages expunged in one call to the store.
    SLICE = 256

    def __init__(
        self,
        folder: IMailFolder,
        uids: list[int],
        pick: Callable[[list[int]], Steps[list[int]]] | None = None,
    ) -> None:
        self.folder = folder
        self.uids = uids
        self.removed: set[int] = set()
        self._pick = pick

    @property
    def picking(self) -> bool:
        """Whether only some of L{uids} are expunged (those C{pick} keeps)."""
        return self._pick is not None

    def steps(self) -> Steps[None]:
        """Expunge, yielding after each slice."""
        for start in range(0, len(self.uids), self.SLICE):
            batch = self.uids[start : start + self.SLICE]
            if self._pick is not None:
                batch = yield from self._pick(batch)
            if batch:
                removed = yield from waitFor(self.folder.expunge, batch)
                self.removed.update(removed)
            yield None

    def finish(self) -> Expunge:
        """Run all the steps now (the folder must answer at once)."""
        finish(self.steps())
        return self
