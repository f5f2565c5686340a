"""
Object IDs (RFC 8474) and save dates (RFC 8514) of Maildir messages, kept
where Dovecot keeps them, so nothing new is written per message.

  - A folder's MAILBOXID is the GUID in its C{dovecot-uidlist} header
    (C{G<guid>}): it moves with the folder on a rename and outlives
    restarts.
  - A message's GUID is, as Dovecot has it, the C{G<guid>} extension field
    of its uidlist line, or else the file's base name; its EMAILID is the
    GUID when that is a valid object ID (Dovecot's are 32 hex digits), else
    one derived from it.  A copy, and so a MOVE, gets the original's GUID
    as its C{G} field, as Dovecot records a copy made by a hard link.
  - A message's save date is the time in its base name
    (C{<secs>.M<usec>...}, the Maildir naming convention, which Dovecot's
    deliveries follow too): the name is made when the file is saved into
    the folder, by a delivery, APPEND, COPY or MOVE alike.
"""

from __future__ import annotations

import hashlib
import re

#: RFC 8474 section 4: C{objectid = 1*255(ALPHA / DIGIT / "_" / "-")}.
_OBJECTID = re.compile(r"[A-Za-z0-9_-]{1,255}\Z")
#: The time a Maildir base name starts with.
_SAVED_AT = re.compile(r"(\d{1,12})(?:\.M(\d{1,6})(?!\d))?")


def objectId(value: str, prefix: str) -> str:
    """C{value} when it is a valid object ID, else one derived from it."""
    if _OBJECTID.match(value):
        return value
    return prefix + hashlib.sha256(value.encode("utf-8", "surrogateescape")).hexdigest()[:31]


def guidField(fields: str | None) -> str | None:
    """The C{G} extension field of a uidlist line's fields, if it has one."""
    if not fields:
        return None
    for token in fields.split():
        if token[:1] == "G" and len(token) > 1:
            return token[1:]
    return None


def withGuid(fields: str | None, guid: str) -> str:
    """A uidlist line's C{fields} with its C{G} field set to C{guid}."""
    kept = [token for token in (fields or "").split() if token[:1] != "G"]
    return " ".join([*kept, "G" + guid])


def messageGuid(base: str, fields: str | None) -> str:
    """The GUID of the message with Maildir base name C{base} and uidlist C{fields}."""
    return guidField(fields) or base


def copyGuid(guid: str) -> str:
    """What a copy records in its C{G} field for an original with GUID C{guid}."""
    return (
        guid if guid.isprintable() and not any(c.isspace() for c in guid) else objectId(guid, "M")
    )


def emailId(guid: str) -> str:
    """The EMAILID of the message with GUID C{guid}."""
    return objectId(guid, "M")


def saveDate(base: str) -> float | None:
    """When the file named C{base} was saved, from its name; C{None} for a name without a time."""
    match = _SAVED_AT.match(base)
    if match is None:
        return None
    seconds, micros = match.groups()
    return int(seconds) + (int(micros) / 1_000_000 if micros else 0.0)
