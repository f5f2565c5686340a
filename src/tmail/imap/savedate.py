# -*- test-case-name: tests.imap.test_imap_savedate -*-
"""
SAVEDATE (RFC 8514): the FETCH item and the SAVEDBEFORE, SAVEDON,
SAVEDSINCE and SAVEDATESUPPORTED SEARCH keys, from the store's save dates
(L{ISaveDateFolder}).

A message whose save date is not known is C{SAVEDATE NIL}; the date
searches then use its internal date, the nearest the store has.  Dates
compare as the other date keys do here, in the server's local time zone.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from tmail.imap.structure import internalDate, localDay
from tmail.interfaces import IMailFolder, ISaveDateFolder

if TYPE_CHECKING:
    from tmail.imap.message import IMAPMessage

Predicate = Callable[[int, "IMAPMessage"], bool]


class Cursor(Protocol):
    """What a search key reads its arguments with."""

    def date(self) -> datetime.date: ...


def saveDate(folder: IMailFolder, uid: int) -> float | None:
    """The message's save date, C{None} when unknown."""
    if ISaveDateFolder.providedBy(folder):
        value: float | None = folder.saveDate(uid)
        return value
    return None


def saveDateItem(folder: IMailFolder, uid: int) -> bytes:
    """C{SAVEDATE "date-time"} or C{SAVEDATE NIL} for a FETCH response."""
    value = saveDate(folder, uid)
    return b"SAVEDATE NIL" if value is None else b"SAVEDATE " + internalDate(value)


def searchKey(name: str, cursor: Cursor, folder: IMailFolder) -> Predicate | None:
    """The predicate of a SAVEDATE search key; C{None} for any other key."""
    if name == "SAVEDATESUPPORTED":
        supported = ISaveDateFolder.providedBy(folder)
        return lambda s, m: supported
    if name not in ("SAVEDBEFORE", "SAVEDON", "SAVEDSINCE"):
        return None
    relation = name[5:]
    date = cursor.date()

    def test(seq: int, message: IMAPMessage) -> bool:
        try:
            stamp = saveDate(folder, message.info.uid)
        except KeyError:
            return False
        if stamp is None:
            stamp = message.info.internaldate
        value = localDay(stamp)
        if relation == "BEFORE":
            return value < date
        if relation == "ON":
            return value == date
        return value >= date

    return test
