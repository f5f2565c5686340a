# -*- test-case-name: tests.imap.test_imap_long_changes -*-
"""
One STORE (or FETCH setting C{\\Seen}) over a session's view, a slice of
messages at a time (L{FlagStore}): the changes of a slice are asked of
the folder together, and taken into the view as they are answered.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from twisted.internet import defer

from tmail.imap.waiting import Steps, finish, waitOn
from tmail.interfaces import MessageInfo
from tmail.steps import StepBudget

if TYPE_CHECKING:
    from tmail.imap.mailbox import IMAPMailbox


class FlagStore:
    """
    One STORE (or FETCH setting C{\\Seen}) over a session's view, a slice
    of messages at a time.

    Each slice starts from what the folder knows of its messages then, so
    a flag another session (or program) changed meanwhile is kept as the
    same change made in one go keeps it, and a message expunged meanwhile
    is left out.  A client that goes away stops the work: the changes made
    so far stay made, as after a crash.

    @ivar result: the new flags of each message changed or left alone (not
        those expunged or skipped by C{unchangedSince}), by sequence number.
    @ivar met: the sequence numbers of messages whose change met another
        program's (a silent STORE leaves their news to the next report).
    """

    #: Messages whose changes are asked of the folder together, at most.
    SLICE = 256

    def __init__(
        self,
        mailbox: IMAPMailbox,
        pairs: list[tuple[int, int]],
        flags: Iterable[str],
        mode: int,
        unchangedSince: int | None = None,
        modified: list[tuple[int, int]] | None = None,
        changed: set[int] | None = None,
        silent: bool = False,
    ) -> None:
        self.mailbox = mailbox
        self._silent = silent
        self.result: dict[int, list[str]] = {}
        self.met: set[int] = set()
        self._pairs = pairs
        self._change = frozenset(flags) - {"\\Recent"}
        self._mode = mode
        self._unchangedSince = unchangedSince
        self._modified = modified
        self._changed = changed

    def steps(self) -> Steps[None]:
        """
        Change the flags, yielding after each slice of messages; the
        changes of a slice are asked of the folder together, and waited
        for together.
        """
        budget = StepBudget()
        known = yield from self.mailbox._knowledge()
        started: list[_Started] = []
        for seq, u in self._pairs:
            begun = self._begin(seq, u, known(u))
            if begun is not None:
                started.append(begun)
            if budget.spent() or len(started) >= self.SLICE:
                yield from self._finishing(started)
                started = []
                yield None
                known = yield from self.mailbox._knowledge()
        yield from self._finishing(started)

    def finish(self) -> FlagStore:
        """Run all the steps now (the folder must answer at once)."""
        finish(self.steps())
        return self

    def _begin(self, seq: int, u: int, info: MessageInfo | None) -> _Started | None:
        """Ask the folder for one message's change, if it needs one."""
        if info is None:
            # Expunged meanwhile (by another session, not yet reported):
            # nothing to change and, unlike Dovecot, no FETCH for it: a
            # MODSEQ there could not be higher than the one told before.
            return None
        unchangedSince = self._unchangedSince
        if unchangedSince is not None and info.modseq > unchangedSince:
            if self._modified is not None:
                self._modified.append((seq, u))
            return None
        mailbox, mode, change = self.mailbox, self._mode, self._change
        if mode > 0:
            wanted = info.flags | change
        elif mode < 0:
            wanted = info.flags - change
        else:
            wanted = change
        call: defer.Deferred[MessageInfo] | None = None
        if wanted != info.flags:
            if mode and mailbox._flagChanger is not None:
                call = defer.maybeDeferred(
                    mailbox._flagChanger.changeFlags,
                    u,
                    change if mode > 0 else (),
                    change if mode < 0 else (),
                )
            else:
                call = defer.maybeDeferred(mailbox.folder.setFlags, u, wanted)
        return _Started(seq, u, info, wanted, call)

    def _finishing(self, started: list[_Started]) -> Steps[None]:
        """Wait for the changes of a slice, in order; take each into the view."""
        for i, begun in enumerate(started):
            info = begun.before
            if begun.call is not None:
                try:
                    info = yield from waitOn(begun.call)
                except KeyError:
                    continue
                except BaseException:
                    for rest in started[i + 1 :]:
                        if rest.call is not None:
                            rest.call.addErrback(lambda _: None)
                    raise
                if self._changed is not None:
                    self._changed.add(begun.seq)
            self._apply(begun, info)

    def _apply(self, begun: _Started, info: MessageInfo) -> None:
        mailbox, u, before = self.mailbox, begun.uid, begun.before
        told = mailbox._infos.get(u)
        if (
            told is None
            or not self._silent
            or (told.flags == before.flags and info.flags == begun.wanted)
        ):
            # The response names the flags as they are now, another
            # session's change included; a silent one leaves the client
            # with exactly the flags it asked for.
            mailbox._infos[u] = info
            mailbox._learnFlags(info.flags)
        else:
            self.met.add(begun.seq)
        # Otherwise another session (or program, its rename come across
        # while storing) changed the flags first and the client is told
        # nothing now: keeping what it was told lets the next sync report
        # the whole change.
        self.result[begun.seq] = mailbox.flagsOf(u)


@dataclass
class _Started:
    """A message's flag change asked of the folder (C{call}: C{None} when none is needed)."""

    seq: int
    uid: int
    before: MessageInfo
    wanted: frozenset[str]
    call: defer.Deferred[MessageInfo] | None
