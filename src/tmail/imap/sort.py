# -*- test-case-name: tests.imap.test_imap_sort -*-
"""
SORT (RFC 5256) and the message facts SORT and THREAD order by.

L{MessageFacts} reads what a criterion needs from a message once: the
header is read (at most once per message, and only when a criterion looks at
it) through L{IMAPMessage.header}, which the SEARCH predicate may already
have filled.  Strings compare with C{i;ascii-casemap} (ASCII letters folded
to upper case, then octet order), the RFC's default collation.  Encoded
words and addresses are read in linear time, without recursion
(L{tmail.imap.charsets}, L{tmail.imap.addressfields}).
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Callable, Generator, Sequence
from typing import Any, TypeVar, cast

from tmail.imap.addressfields import MISSING_MAILBOX, addressList
from tmail.imap.charsets import decodeWords
from tmail.imap.headerfields import fieldValue, headerFields
from tmail.imap.message import IMAPMessage
from tmail.imap.sortdisplay import displayValue
from tmail.imap.structure import MAX_ADDRESS_TEXT

T = TypeVar("T")

#: Subject text a base subject is taken from: a bound on the time a
#: hostile subject of millions of C{Re:} costs.
MAX_SUBJECT_TEXT = 64 * 1024
#: Date text parsed (a date is some thirty characters).
MAX_DATE_TEXT = 1000

#: The sort keys of RFC 5256 3, and RFC 5957's DISPLAYFROM and DISPLAYTO.
SORT_KEYS = frozenset(
    {b"ARRIVAL", b"CC", b"DATE", b"FROM", b"SIZE", b"SUBJECT", b"TO", b"DISPLAYFROM", b"DISPLAYTO"}
)

_WSP_RUN = re.compile(r"[ \t\r\n]+")
_BLOB = r"\[[^\[\]]*\][ \t]*"
_LEADER_WSP = re.compile(r"[ \t]+")
_REFWD = re.compile(r"(?:" + _BLOB + r")*(?:re|fwd?)[ \t]*(?:" + _BLOB + r")?:", re.IGNORECASE)
_BLOB_PREFIX = re.compile(_BLOB)
_NON_WSP = re.compile(r"[^ \t]")


def decodeText(raw: bytes) -> str:
    """A header value with its RFC 2047 encoded-words decoded (bad ones kept as they are)."""
    return decodeWords(raw.decode("utf-8", "replace"))


def baseSubject(subject: str) -> tuple[str, bool]:
    """
    The base subject of RFC 5256 2.1 (already decoded from RFC 2047), and
    whether the subject marked a reply or forward (a C{Re:}/C{Fwd:} leader,
    a C{(fwd)} trailer or a C{[fwd: ...]} wrapper).

    The text is narrowed by moving two indices, never copied per step, so a
    hostile subject of thousands of C{Re:} costs linear time.
    """
    text = _WSP_RUN.sub(" ", subject)
    start, end = 0, len(text)
    replyOrForward = False
    while True:
        # (2) trailers: "(fwd)" or white space
        while end > start:
            if text[end - 1] in " \t":
                end -= 1
            elif end - start >= 5 and text[end - 5 : end].lower() == "(fwd)":
                end -= 5
                replyOrForward = True
            else:
                break
        # (3) leaders, (4) a blob that leaves a base, (5) repeated.  After (4)
        # drops a blob, (3) would scan the same run of blobs and fail again.
        noLeaderAt = -1
        while True:
            wsp = _LEADER_WSP.match(text, start, end)
            if wsp is not None:
                start = wsp.end()
                continue
            refwd = _REFWD.match(text, start, end) if start != noLeaderAt else None
            if refwd is not None:
                start = refwd.end()
                replyOrForward = True
                continue
            blob = _BLOB_PREFIX.match(text, start, end)
            if blob is not None and _NON_WSP.search(text, blob.end(), end) is not None:
                start = noLeaderAt = blob.end()
                continue
            break
        # (6) "[fwd:" ... "]"
        if end - start >= 6 and text[start : start + 5].lower() == "[fwd:" and text[end - 1] == "]":
            start += 5
            end -= 1
            replyOrForward = True
            continue
        return text[start:end], replyOrForward


def sortableText(text: str) -> bytes:
    """C{text} as C{i;ascii-casemap} compares it."""
    return text.encode("utf-8", "surrogateescape").upper()


def _firstMailbox(value: bytes | None) -> bytes:
    """
    The IMAP addr-mailbox of the first address of a header (RFC 5256 3), as
    ENVELOPE gives it: the local part; a group's name when the list begins
    with a group (its start marker's mailbox); C{MISSING_MAILBOX} for an
    address without one (C{<>}); empty when the field holds no address.
    """
    if value is None:
        return b""
    text = value[:MAX_ADDRESS_TEXT].decode("utf-8", "surrogateescape")
    for entry in addressList(text, 1):
        if entry.kind == "start":
            return sortableText(entry.name or "")
        return sortableText(entry.mailbox or MISSING_MAILBOX)
    return b""


class MessageFacts:
    """
    What SORT and THREAD look at in one message, each read on first use.

    @ivar seq: the message's sequence number in the session.
    @ivar message: the message; its header is read at most once.
    """

    def __init__(self, seq: int, message: IMAPMessage) -> None:
        self.seq = seq
        self.message = message
        self._cache: dict[str, Any] = {}

    @property
    def uid(self) -> int:
        return self.message.info.uid

    def _header(self) -> bytes:
        header = self._cache.get("header")
        if header is None:
            try:
                header = self.message.header()
            except (KeyError, OSError):
                header = b""
            self._cache["header"] = header
        return header

    def headerField(self, name: bytes) -> bytes | None:
        """The unfolded value of the first header field C{name} (lower case)."""
        key = "field:" + name.decode("ascii", "replace")
        if key in self._cache:
            value: bytes | None = self._cache[key]
            return value
        fields: dict[bytes, bytes] | None = self._cache.get("fields")
        if fields is None:
            fields = {}
            for fieldName, lines in headerFields(self._header()):
                fields.setdefault(fieldName, lines)
            self._cache["fields"] = fields
        found = fields.get(name)
        value = self._cache[key] = None if found is None else fieldValue(found, name)
        return value

    def readAll(self) -> None:
        """
        Work out now every fact SORT and THREAD may ask for: for a large
        message, in a worker thread, after its header was read there.
        """
        for key in _KEYS.values():
            key(self)
        self._subject()
        for name in (b"message-id", b"references", b"in-reply-to"):
            self.headerField(name)

    def readForThreading(self) -> None:
        """Work out now what THREAD's tree work compares: the sent date and base subject."""
        for read in (_KEYS[b"DATE"], _KEYS[b"SUBJECT"]):
            read(self)

    def _cached(self, key: str, compute: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    @property
    def arrival(self) -> float:
        return self.message.info.internaldate

    @property
    def size(self) -> int:
        return self.message.info.size

    @property
    def sentDate(self) -> float:
        """The Date header in UTC seconds, else the INTERNALDATE (RFC 5256 2.2)."""

        def compute() -> float:
            value = self.headerField(b"date")
            if value is not None:
                parsed = email.utils.parsedate_tz(value[:MAX_DATE_TEXT].decode("ascii", "replace"))
                if parsed is not None:
                    if parsed[9] is None:
                        # No zone: taken as UTC, not as the server's local time.
                        parsed = (*parsed[:9], 0)
                    try:
                        return float(email.utils.mktime_tz(parsed))
                    except (OverflowError, ValueError):
                        pass
            return self.arrival

        return self._cached("date", compute)  # type: ignore[no-any-return]

    def _subject(self) -> tuple[str, bool]:
        def compute() -> tuple[str, bool]:
            raw = self.headerField(b"subject")
            return baseSubject(decodeText(raw[:MAX_SUBJECT_TEXT]) if raw is not None else "")

        return self._cached("subject", compute)  # type: ignore[no-any-return]

    @property
    def baseSubject(self) -> bytes:
        """The base subject, as C{i;ascii-casemap} compares it."""
        return self._cached("base", lambda: sortableText(self._subject()[0]))  # type: ignore[no-any-return]

    @property
    def isReplyOrForward(self) -> bool:
        return self._subject()[1]

    def mailbox(self, name: bytes) -> bytes:
        """The local part of the first address of header C{name}."""
        return self._cached(  # type: ignore[no-any-return]
            "addr:" + name.decode(), lambda: _firstMailbox(self.headerField(name))
        )

    def display(self, name: bytes) -> bytes:
        """The DISPLAY sort value of the first address of header C{name} (RFC 5957)."""
        return self._cached(  # type: ignore[no-any-return]
            "display:" + name.decode(), lambda: displayValue(self.headerField(name))
        )


_KEYS: dict[bytes, Callable[[MessageFacts], Any]] = {
    b"ARRIVAL": lambda f: f.arrival,
    b"CC": lambda f: f.mailbox(b"cc"),
    b"DATE": lambda f: f.sentDate,
    b"FROM": lambda f: f.mailbox(b"from"),
    b"SIZE": lambda f: f.size,
    b"SUBJECT": lambda f: f.baseSubject,
    b"TO": lambda f: f.mailbox(b"to"),
    b"DISPLAYFROM": lambda f: f.display(b"from"),
    b"DISPLAYTO": lambda f: f.display(b"to"),
}


def sortKey(name: bytes) -> Callable[[MessageFacts], Any]:
    """What criterion C{name} (upper case, one of L{SORT_KEYS}) compares of a message."""
    return _KEYS[name]


def parseSortCriteria(tokens: Any) -> list[tuple[bytes, bool]]:
    """
    C{(key, reversed)} pairs from a parenthesised SORT criteria list;
    raises C{ValueError} when it is not one.
    """
    if not isinstance(tokens, list) or not tokens:
        raise ValueError("SORT criteria must be a non-empty list")
    criteria: list[tuple[bytes, bool]] = []
    reverse = False
    for token in tokens:
        if not isinstance(token, bytes):
            raise ValueError("bad SORT criterion")
        word = token.upper()
        if word == b"REVERSE" and not reverse:
            reverse = True
            continue
        if word not in SORT_KEYS:
            raise ValueError("unknown SORT criterion")
        criteria.append((word, reverse))
        reverse = False
    if reverse:
        raise ValueError("REVERSE without a sort key")
    return criteria


def sortMessages(
    facts: Sequence[MessageFacts], criteria: Sequence[tuple[bytes, bool]]
) -> list[MessageFacts]:
    """
    The messages ordered by the criteria, each optionally reversed; messages
    equal under all of them keep sequence-number order (RFC 5256 3).
    """
    return runSteps(sortSteps(facts, criteria))


def runSteps(steps: Generator[None, None, T]) -> T:
    """Run a step-wise computation (L{sortSteps}, L{tmail.imap.thread.threadSteps}) now."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return cast(T, done.value)


def sortSteps(
    facts: Sequence[MessageFacts], criteria: Sequence[tuple[bytes, bool]]
) -> Generator[None, None, list[MessageFacts]]:
    """
    L{sortMessages} a slice at a time: the keys of one message (its header
    read) per step, then the sort; the generator returns the order.
    """
    keys = [_KEYS[name] for name, _ in criteria]
    for item in facts:
        for key in keys:
            key(item)
        yield None
    ordered = sorted(facts, key=lambda f: f.seq)
    # Python's sort is stable, also with reverse=True: sorting by the last
    # criterion first leaves ties of each in the order of the next.
    for name, reverse in reversed(criteria):
        ordered = sorted(ordered, key=_KEYS[name], reverse=reverse)
    return ordered
