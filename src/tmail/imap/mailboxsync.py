# -*- test-case-name: tests.imap.test_imap_mailbox -*-
"""
How a session's view of its folder catches up with the folder: what
changed since the client was last told (L{Changes}), found by comparing
the folder's listing with the view, or in time proportional to what
changed from a folder that keeps a list of its changes; and the expunged
messages the view forgets.

Apart from L{tmail.imap.mailbox}, which holds the view and answers from
it, because this is where the view changes, and only when the protocol
lets the session report it (L{tmail.imap.mailbox.IMAPMailbox.sync}).
"""

from __future__ import annotations

import array
import bisect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tmail.interfaces import MessageInfo

if TYPE_CHECKING:
    from tmail.imap.mailbox import IMAPMailbox


@dataclass
class Changes:
    """
    What a session must tell its client after L{IMAPMailbox.sync}.

    @ivar expunged: sequence numbers for C{EXPUNGE} responses, in the order
        they must be sent (highest first, so none shifts another).
    @ivar vanished: the UIDs of the same messages, ascending (QRESYNC's
        C{VANISHED}).
    @ivar exists: the new message count, or C{None} when unchanged.
    @ivar recent: the new recent count, or C{None} when unchanged.
    @ivar flags: sequence number to flags, for messages whose flags changed.
    @ivar changed: sequence number to (UID, mod-sequence) of the same messages.
    @ivar modseq: a HIGHESTMODSEQ to send after the FETCH responses when
        expunges with lower mod-sequences are still held back (RFC 7162
        3.2), else C{None}.
    @ivar added: the UIDs of new messages in the view, ascending.
    """

    expunged: list[int] = field(default_factory=list)
    vanished: list[int] = field(default_factory=list)
    exists: int | None = None
    recent: int | None = None
    flags: dict[int, list[str]] = field(default_factory=dict)
    changed: dict[int, tuple[int, int]] = field(default_factory=dict)
    modseq: int | None = None
    added: list[int] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.expunged or self.exists is not None or self.flags)


def flagList(info: MessageInfo, recent: bool = False) -> list[str]:
    """A message's flags as FETCH FLAGS lists them (with C{\\Recent})."""
    flags = sorted(info.flags)
    if recent:
        flags.append("\\Recent")
    return flags


def dropExpunged(mailbox: IMAPMailbox, removed: set[int]) -> Changes:
    """Make C{mailbox} forget expunged messages; the EXPUNGE (or VANISHED) responses for them."""
    if not removed:
        return Changes()
    pairs = [(seq, u) for seq, u in enumerate(mailbox._uids, 1) if u in removed]
    mailbox._uids = array.array("q", [u for u in mailbox._uids if u not in removed])
    for u in removed:
        mailbox._infos.pop(u, None)
    if mailbox._keeper is not None:
        mailbox._keeper.release(mailbox.holds, removed)
    mailbox._recent -= removed
    return Changes(expunged=[seq for seq, _ in pairs][::-1], vanished=[u for _, u in pairs])


def syncView(mailbox: IMAPMailbox, allowExpunge: bool) -> Changes:
    """
    L{IMAPMailbox.sync} of C{mailbox}: catch up with the folder and say
    what changed since the client was last told.
    """
    mailbox.dirty = False
    feed = mailbox._feed
    if feed is not None:
        serial, changed = feed.changesSince(mailbox._serial, claimRecent=mailbox.readWrite)
        if changed is not None:
            mailbox._serial = serial
            return _catchUp(mailbox, changed, allowExpunge)
    current = mailbox.folder.messages(claimRecent=mailbox.readWrite)
    if feed is not None:
        mailbox._serial = feed.changeSerial()
        mailbox._ghosts = set()
        mailbox._seen = None
    if current is mailbox._seen:
        return Changes()
    mailbox._seen = current
    byUid = {info.uid: info for info in current}
    gone = {u for u in mailbox._uids if u not in byUid}
    if allowExpunge:
        changes = dropExpunged(mailbox, gone)
    else:
        changes = Changes()
        if gone:
            mailbox._seen = None
    new = [info for info in current if info.uid not in mailbox._infos]
    for info in new:
        mailbox._infos[info.uid] = info
        mailbox._learnFlags(info.flags)
        if info.recent:
            mailbox._recent.add(info.uid)
    if new:
        unordered = bool(mailbox._uids) and mailbox._uids[-1] > new[0].uid
        mailbox._uids.extend(info.uid for info in new)
        if unordered:
            mailbox._uids = array.array("q", sorted(mailbox._uids))
        changes.added = sorted(info.uid for info in new)
    if new or changes.expunged:
        changes.exists = len(mailbox._uids)
        changes.recent = mailbox.getRecentCount()
    newUids = {info.uid for info in new}
    for seq, u in enumerate(mailbox._uids, 1):
        fresh = byUid.get(u)
        if fresh is None or u in newUids:
            continue
        old = mailbox._infos[u]
        if fresh.flags != old.flags or fresh.modseq != old.modseq:
            changes.flags[seq] = flagList(fresh, mailbox.showRecent and u in mailbox._recent)
            changes.changed[seq] = (u, fresh.modseq)
        mailbox._infos[u] = fresh
        mailbox._learnFlags(fresh.flags)
    held = gone - set(changes.vanished)
    if not held:
        mailbox.reportedModSeq = mailbox.highestModSeq()
    elif changes.changed:
        changes.modseq = mailbox.reportedModSeq
    mailbox._ghosts = held
    return changes


def _catchUp(mailbox: IMAPMailbox, changed: list[MessageInfo | int], allowExpunge: bool) -> Changes:
    """
    L{syncView} from the folder's list of changes: the same responses,
    in time proportional to what changed.
    """
    infos = mailbox._infos
    gone = set(mailbox._ghosts)
    new: list[MessageInfo] = []
    altered: list[MessageInfo] = []
    for item in changed:
        if isinstance(item, int):
            if item in infos:
                gone.add(item)
            continue
        old = infos.get(item.uid)
        if old is None:
            new.append(item)
            continue
        if old.flags != item.flags or old.modseq != item.modseq:
            altered.append(item)
            mailbox._learnFlags(item.flags)
        infos[item.uid] = item
    if allowExpunge:
        changes = dropExpunged(mailbox, gone)
        mailbox._ghosts = set()
    else:
        changes = Changes()
        mailbox._ghosts = gone
    if new:
        new.sort(key=lambda info: info.uid)
        unordered = bool(mailbox._uids) and mailbox._uids[-1] > new[0].uid
        for info in new:
            infos[info.uid] = info
            mailbox._learnFlags(info.flags)
            if info.recent:
                mailbox._recent.add(info.uid)
        mailbox._uids.extend(info.uid for info in new)
        if unordered:
            mailbox._uids = array.array("q", sorted(mailbox._uids))
        changes.added = [info.uid for info in new]
    if new or changes.expunged:
        changes.exists = len(mailbox._uids)
        changes.recent = mailbox.getRecentCount()
    for info in altered:
        u = info.uid
        seq = bisect.bisect_left(mailbox._uids, u) + 1
        changes.flags[seq] = flagList(info, mailbox.showRecent and u in mailbox._recent)
        changes.changed[seq] = (u, info.modseq)
    if not mailbox._ghosts:
        mailbox.reportedModSeq = mailbox.highestModSeq()
    elif changes.changed:
        changes.modseq = mailbox.reportedModSeq
    return changes
