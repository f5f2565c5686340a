"""
Responses several IMAP command groups send: the FLAGS and PERMANENTFLAGS of
a mailbox, a UID set in its shortest form, and Dovecot's wording of an
expunged message that can no longer be read.
"""

from __future__ import annotations

from tmail.imap.mailbox import IMAPMailbox

__all__ = ["EXPUNGE_ISSUED", "flagsResponses", "uidSet"]


#: The answer to a FETCH, COPY or MOVE of a message another session
#: expunged that can no longer be read, worded as Dovecot words it: client
#: code looks for it.
EXPUNGE_ISSUED = b"[EXPUNGEISSUED] Some of the requested messages no longer exist"


def flagsResponses(mbox: IMAPMailbox) -> tuple[bytes, bytes]:
    """
    The FLAGS and C{OK [PERMANENTFLAGS]} responses for a selected mailbox,
    both with its keywords (as Dovecot lists them; PERMANENTFLAGS is empty
    when the mailbox is read-only); the keywords they list count as
    announced.
    """
    names = mbox.getFlags()
    flags = b"FLAGS (" + " ".join(names).encode() + b")"
    permanent = " ".join([*names, "\\*"]).encode() if mbox.isWriteable() else b""
    return flags, b"OK [PERMANENTFLAGS (%s)] Flags allowed" % permanent


def uidSet(uids: list[int]) -> bytes:
    """C{1:3,7} for the UIDs 1, 2, 3, 7 (in the given order)."""
    ranges: list[list[int]] = []
    for uid in uids:
        if ranges and uid == ranges[-1][1] + 1:
            ranges[-1][1] = uid
        else:
            ranges.append([uid, uid])
    return b",".join(b"%d" % a if a == b else b"%d:%d" % (a, b) for a, b in ranges)
