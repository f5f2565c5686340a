# -*- test-case-name: tests.imap.test_imap_objectid -*-
"""
OBJECTID (RFC 8474): MAILBOXID in SELECT, EXAMINE, CREATE and STATUS, the
EMAILID and THREADID FETCH items and SEARCH keys.

The IDs are the store's (L{IObjectIdFolder}): Dovecot's mailbox and message
GUIDs in a Maildir.  tmail keeps no thread index, so THREADID is C{NIL}
for every message (RFC 8474 section 5.2 allows it) and SEARCH THREADID
matches nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from twisted.mail import imap4

from tmail.interfaces import IMailFolder, IObjectIdFolder

if TYPE_CHECKING:
    from tmail.imap.message import IMAPMessage

Predicate = Callable[[int, "IMAPMessage"], bool]


class Cursor(Protocol):
    """What a search key reads its arguments with."""

    def string(self) -> str: ...


def mailboxId(folder: IMailFolder) -> bytes | None:
    """The folder's MAILBOXID, or C{None} from a store that keeps none."""
    if IObjectIdFolder.providedBy(folder):
        value: str = folder.mailboxId()
        return value.encode("ascii")
    return None


def mailboxIdCode(folder: IMailFolder) -> bytes | None:
    """C{[MAILBOXID (id)]}: the response code of SELECT, EXAMINE and CREATE."""
    value = mailboxId(folder)
    return None if value is None else b"[MAILBOXID (%s)]" % value


def emailIdItem(folder: IMailFolder, uid: int) -> bytes:
    """C{EMAILID (id)} for a FETCH response."""
    if IObjectIdFolder.providedBy(folder):
        return b"EMAILID (%s)" % folder.emailId(uid).encode("ascii")
    return b"EMAILID NIL"


def threadIdItem(folder: IMailFolder, uid: int) -> bytes:
    """C{THREADID NIL}: no thread index is kept."""
    return b"THREADID NIL"


def searchKey(name: str, cursor: Cursor, folder: IMailFolder) -> Predicate | None:
    """The predicate of C{EMAILID id} or C{THREADID id}; C{None} for any other key."""
    if name not in ("EMAILID", "THREADID"):
        return None
    wanted = cursor.string()
    if not wanted:
        raise imap4.IllegalQueryError("empty object ID")
    if name == "THREADID" or not IObjectIdFolder.providedBy(folder):
        return lambda s, m: False

    def matches(seq: int, message: IMAPMessage) -> bool:
        try:
            return bool(folder.emailId(message.info.uid) == wanted)
        except KeyError:
            return False

    return matches
