# -*- test-case-name: tests.imap.test_imap_notify -*-
"""
The arguments of NOTIFY (RFC 5465 8), read in one pass.

C{NOTIFY NONE}, or C{NOTIFY SET [STATUS]} and event groups: a mailbox
filter (SELECTED, SELECTED-DELAYED, INBOXES, PERSONAL, SUBSCRIBED,
C{SUBTREE names}, C{MAILBOXES names}) and its events or C{NONE}.  Bad
syntax, and the combinations RFC 5465 5 and 6.1 forbid, are C{BAD};
events tmail does not send are C{NO [BADEVENT (...)]} (RFC 5465 3.1).
Mailbox names may be literals: L{collectArguments} reads them and puts
them back as quoted strings, so the parser sees one line.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred
from twisted.mail import imap4

from tmail.imap.fetch import setsSeen
from tmail.imap.parse import literalMarker, parseQuoted
from tmail.imap.session import no

MESSAGE_NEW = "MessageNew"
MESSAGE_EXPUNGE = "MessageExpunge"
FLAG_CHANGE = "FlagChange"
ANNOTATION_CHANGE = "AnnotationChange"
MAILBOX_NAME = "MailboxName"
SUBSCRIPTION_CHANGE = "SubscriptionChange"

#: Every event RFC 5465 and RFC 5464 name, by their lower-case spelling.
KNOWN_EVENTS = {
    name.lower(): name
    for name in (
        MESSAGE_NEW,
        MESSAGE_EXPUNGE,
        FLAG_CHANGE,
        ANNOTATION_CHANGE,
        MAILBOX_NAME,
        SUBSCRIPTION_CHANGE,
        "MailboxMetadataChange",
        "ServerMetadataChange",
    )
}
#: The events tmail sends, in the order C{[BADEVENT]} lists them.
SUPPORTED_EVENTS = (MESSAGE_NEW, MESSAGE_EXPUNGE, FLAG_CHANGE, MAILBOX_NAME, SUBSCRIPTION_CHANGE)
MESSAGE_EVENTS = frozenset({MESSAGE_NEW, MESSAGE_EXPUNGE, FLAG_CHANGE, ANNOTATION_CHANGE})

SELECTED = "SELECTED"
SELECTED_DELAYED = "SELECTED-DELAYED"
INBOXES = "INBOXES"
PERSONAL = "PERSONAL"
SUBSCRIBED = "SUBSCRIBED"
SUBTREE = "SUBTREE"
MAILBOXES = "MAILBOXES"
_FILTERS = frozenset(
    {SELECTED, SELECTED_DELAYED, INBOXES, PERSONAL, SUBSCRIBED, SUBTREE, MAILBOXES}
)
_BADEVENT = b"[BADEVENT (" + " ".join(SUPPORTED_EVENTS).encode() + b")] Unsupported event"

_ATOM = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\]+')


def _bad(text: str) -> imap4.IllegalClientResponse:
    return imap4.IllegalClientResponse(text)


@dataclass(frozen=True)
class EventGroup:
    """
    One C{(filter events)} of NOTIFY SET.

    @ivar filter: the mailbox filter, upper case (C{SELECTED}, C{SUBTREE}...).
    @ivar mailboxes: the names C{SUBTREE} and C{MAILBOXES} give, decoded.
    @ivar events: the events asked for, as RFC 5465 spells them; empty for
        C{NONE}.
    @ivar fetchAtts: MessageNew's fetch attributes, as the FETCH parser
        gives them, or C{None}.
    """

    filter: str
    mailboxes: tuple[str, ...] = ()
    events: tuple[str, ...] = ()
    fetchAtts: tuple[Any, ...] | None = None

    @property
    def selected(self) -> bool:
        return self.filter in (SELECTED, SELECTED_DELAYED)


@dataclass(frozen=True)
class NotifyRequest:
    """A parsed C{NOTIFY SET}: whether STATUS was asked for, and the groups in order."""

    status: bool
    groups: tuple[EventGroup, ...]


class _Reader:
    """The NOTIFY arguments, read left to right once."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def peek(self) -> bytes:
        return self.data[self.pos : self.pos + 1]

    def expect(self, text: bytes, what: str) -> None:
        if self.data[self.pos : self.pos + len(text)] != text:
            raise _bad(f"Expected {what}")
        self.pos += len(text)

    def atom(self, what: str) -> bytes:
        match = _ATOM.match(self.data, self.pos)
        if match is None:
            raise _bad(f"Expected {what}")
        self.pos = match.end()
        return match.group()

    def astring(self) -> bytes:
        if self.peek() == b'"':
            value, self.pos = parseQuoted(self.data, self.pos)
            return value
        return self.atom("a mailbox name")

    def done(self) -> bool:
        return self.pos >= len(self.data)

    def balanced(self) -> bytes:
        """The text up to the C{)} that closes the C{(} just read."""
        data, start, depth, i = self.data, self.pos, 0, self.pos
        while i < len(data):
            char = data[i]
            if char == 0x22:
                _, i = parseQuoted(data, i)
                continue
            if char in b"([":
                depth += 1
            elif char in b")]":
                if depth == 0:
                    if char != 0x29:
                        break
                    self.pos = i + 1
                    return data[start:i]
                depth -= 1
            i += 1
        raise _bad("Unbalanced fetch attributes")


def parseNotify(
    line: bytes,
    decode: Callable[[bytes], str],
    fetchAtts: Callable[[bytes], list[Any]],
) -> NotifyRequest | None:
    """
    NOTIFY's arguments (RFC 5465 8): C{None} for C{NONE}, else the
    request.  Bad syntax and the combinations RFC 5465 5 and 6.1 forbid
    raise L{imap4.IllegalClientResponse} (C{BAD}); events tmail does not
    send raise C{NO [BADEVENT (...)]}.

    @param decode: turns a mailbox name as sent into a name.
    @param fetchAtts: parses the text inside MessageNew's parentheses.
    """
    reader = _Reader(line)
    word = reader.atom("SET or NONE").upper()
    if word == b"NONE":
        if not reader.done():
            raise _bad("NOTIFY NONE takes no arguments")
        return None
    if word != b"SET":
        raise _bad("Expected SET or NONE")
    reader.expect(b" ", "a space")
    status = False
    if reader.peek() != b"(":
        if reader.atom("STATUS or an event group").upper() != b"STATUS":
            raise _bad("Expected STATUS or an event group")
        status = True
        reader.expect(b" ", "a space")
    groups: list[tuple[str, tuple[str, ...], list[bytes], bytes | None]] = []
    while True:
        groups.append(_group(reader, decode))
        if reader.done():
            break
        reader.expect(b" ", "a space")
    return NotifyRequest(status, _checked(groups, fetchAtts))


def _group(
    reader: _Reader, decode: Callable[[bytes], str]
) -> tuple[str, tuple[str, ...], list[bytes], bytes | None]:
    """One C{(filter events)}: the filter, its names, the event words, the fetch-att text."""
    reader.expect(b"(", "an event group")
    kind = reader.atom("a mailbox filter").upper().decode("ascii")
    if kind not in _FILTERS:
        raise _bad("Unknown mailbox filter")
    names: list[str] = []
    if kind in (SUBTREE, MAILBOXES):
        reader.expect(b" ", "a space")
        if reader.peek() == b"(":
            reader.pos += 1
            while True:
                names.append(decode(reader.astring()))
                if reader.peek() == b")":
                    reader.pos += 1
                    break
                reader.expect(b" ", "a space")
        else:
            names.append(decode(reader.astring()))
    reader.expect(b" ", "a space")
    words: list[bytes] = []
    fetchText: bytes | None = None
    if reader.peek() == b"(":
        reader.pos += 1
        while True:
            word = reader.atom("an event")
            words.append(word)
            if word.lower() == b"messagenew" and reader.data.startswith(b" (", reader.pos):
                reader.pos += 2
                if fetchText is not None:
                    raise _bad("MessageNew given twice")
                fetchText = reader.balanced()
            if reader.peek() == b")":
                reader.pos += 1
                break
            reader.expect(b" ", "a space")
    elif reader.atom("an event list or NONE").upper() != b"NONE":
        raise _bad("Expected an event list or NONE")
    reader.expect(b")", "the end of the event group")
    return kind, tuple(names), words, fetchText


def _checked(
    groups: list[tuple[str, tuple[str, ...], list[bytes], bytes | None]],
    fetchAtts: Callable[[bytes], list[Any]],
) -> tuple[EventGroup, ...]:
    """The groups, after RFC 5465's rules on which events go together."""
    for _, _, words, _ in groups:
        for word in words:
            if KNOWN_EVENTS.get(word.lower().decode("ascii")) not in SUPPORTED_EVENTS:
                raise no(_BADEVENT)
    result: list[EventGroup] = []
    selected = 0
    for kind, names, words, fetchText in groups:
        events = tuple(dict.fromkeys(KNOWN_EVENTS[w.lower().decode("ascii")] for w in words))
        present = set(events)
        if (MESSAGE_NEW in present) != (MESSAGE_EXPUNGE in present):
            raise _bad("MessageNew and MessageExpunge go together")
        if FLAG_CHANGE in present and MESSAGE_NEW not in present:
            raise _bad("FlagChange needs MessageNew and MessageExpunge")
        group = EventGroup(kind, names, events)
        if group.selected:
            selected += 1
            if selected > 1:
                raise _bad("Only one of SELECTED and SELECTED-DELAYED may be given")
            if present - MESSAGE_EVENTS:
                raise _bad("Only message events apply to the selected mailbox")
        if fetchText is not None:
            if not group.selected:
                raise _bad("Fetch attributes are for the selected mailbox only")
            query = fetchAtts(fetchText)
            if any(setsSeen(item) for item in query):
                raise _bad("MessageNew fetch attributes must not set the Seen flag")
            group = EventGroup(kind, names, events, tuple(query))
        result.append(group)
    return tuple(result)


def quotedLiteral(value: bytes) -> bytes:
    """A literal's bytes as a quoted string, to stand in its place in the argument line."""
    if any(c in value for c in b"\r\n\x00"):
        raise _bad("Mailbox names cannot hold CR, LF or NUL")
    return b'"' + value.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def collectArguments(
    line: bytes, readLiteral: Callable[[int, bool], Deferred[tuple[bytes, bytes]]]
) -> tuple[bytes, bytes] | Deferred[tuple[bytes, bytes]]:
    """
    NOTIFY's whole argument line: each literal (a mailbox name) read and
    put back as a quoted string.
    """
    marker = literalMarker(line)
    if marker is None:
        return line, b""
    head = line[: line.rindex(b"{")]

    def read(parsed: tuple[bytes, bytes]) -> Any:
        value, rest = parsed
        return collectArguments(head + quotedLiteral(value) + rest, readLiteral)

    return readLiteral(*marker).addCallback(read)
