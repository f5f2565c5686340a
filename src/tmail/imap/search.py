# -*- test-case-name: tests.imap.test_imap_network -*-
"""
SEARCH (RFC 3501 6.4.4) over what a folder already knows, with OLDER and
YOUNGER (WITHIN, RFC 5032) and C{$}, the saved result (SEARCHRES, RFC 5182).

The criteria are compiled once into a predicate; flag, size, date, UID and
sequence-number keys read only the L{MessageInfo}, header keys read only the
header, and only BODY/TEXT read and decode whole messages.  Terms of an AND
are tried cheapest first.  Twisted's own SEARCH copies the query for every
message and walks the mailbox five messages per reactor turn (quadratic).

The criteria are read without recursion, chains of C{OR}, lists in lists
and C{NOT NOT} merged as they are read, so thousands of C{OR}s from a client
cost no stack; what is still deeper than C{imap.max_nesting} is
C{BAD [LIMIT]} rather than Python's recursion limit (C{NO [SERVERBUG]}).
BODY and TEXT read the text parts found by L{MimeEntity.walk}, not the
stdlib's parser, whose recursion a message of a thousand nested parts
exhausts; encoded words and charsets are decoded in linear time
(L{tmail.imap.charsets}).  A header or text part larger than a piece
(L{tmail.imap.pieces}) is decoded, case-folded and searched a piece at a
time.
"""

from __future__ import annotations

import datetime
import email.utils
import functools
import re
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from twisted.mail import imap4

from tmail.imap import pieces
from tmail.imap.addressfields import MAX_SEARCH_TEXT, searchText
from tmail.imap.binary import UnknownCTE, contentPieces
from tmail.imap.charsets import decodeTextPieces, decodeWords, decodeWordsPieces
from tmail.imap.condstore import parseModSeq
from tmail.imap.headerfields import fieldValue, headerFields, headerFieldSpans, unfoldedPieces
from tmail.imap.largemessages import HEADER, INFO, WHOLE
from tmail.imap.message import IMAPMessage
from tmail.imap.mimeentity import MimeEntity
from tmail.imap.objectid import searchKey as objectIdKey
from tmail.imap.parse import LimitExceeded, parseDate
from tmail.imap.savedate import searchKey as saveDateKey
from tmail.imap.seqset import parseSequenceSet
from tmail.imap.sort import MAX_DATE_TEXT
from tmail.imap.structure import localDay

if TYPE_CHECKING:
    from tmail.imap.mailbox import IMAPMailbox

Predicate = Callable[[int, IMAPMessage], bool]

_INFO, _HEADER, _BODY = INFO, HEADER, WHOLE

_FLAG_KEYS = {
    "ANSWERED": ("\\Answered", True),
    "DELETED": ("\\Deleted", True),
    "DRAFT": ("\\Draft", True),
    "FLAGGED": ("\\Flagged", True),
    "SEEN": ("\\Seen", True),
    "UNANSWERED": ("\\Answered", False),
    "UNDELETED": ("\\Deleted", False),
    "UNDRAFT": ("\\Draft", False),
    "UNFLAGGED": ("\\Flagged", False),
    "UNSEEN": ("\\Seen", False),
}

_ADDRESS_KEYS = {"BCC", "CC", "FROM", "SUBJECT", "TO"}
_ADDRESS_FIELDS = {"BCC", "CC", "FROM", "TO"}
_ENTRY_TYPES = (b"priv", b"shared", b"all")


class _Cursor:
    """Reads search keys from the token list."""

    def __init__(self, tokens: list[Any]) -> None:
        self.tokens = tokens
        self.position = 0

    def more(self) -> bool:
        return self.position < len(self.tokens)

    def peek(self) -> Any:
        if not self.more():
            raise imap4.IllegalQueryError("missing search argument")
        return self.tokens[self.position]

    def next(self) -> Any:
        token = self.peek()
        self.position += 1
        return token

    def string(self) -> str:
        token = self.next()
        if not isinstance(token, bytes):
            raise imap4.IllegalQueryError("expected a string")
        return token.decode("utf-8", "replace")

    def number(self) -> int:
        token = self.next()
        if not isinstance(token, bytes) or not token.isdigit() or len(token) > 10:
            raise imap4.IllegalQueryError("expected a number")
        return int(token)

    def date(self) -> datetime.date:
        token = self.next()
        if not isinstance(token, bytes):
            raise imap4.IllegalQueryError("expected a date")
        try:
            return parseDate(token)
        except ValueError:
            raise imap4.IllegalQueryError("bad date") from None


def _decodeHeader(raw: bytes) -> str:
    return decodeWords(raw.decode("utf-8", "replace"))


def _headerValues(message: IMAPMessage, name: str) -> list[str]:
    lower = name.lower().encode("ascii", "replace")
    values = []
    for fieldName, lines in headerFields(message.header()):
        if fieldName == lower:
            value = re.sub(rb"\r?\n(?=[ \t])", b"", lines.split(b":", 1)[1]).strip()
            values.append(_decodeHeader(value).casefold())
    return values


def _addressContains(message: IMAPMessage, name: str, needle: str) -> bool:
    """
    Whether case-folded C{needle} is in a field C{name} (From, To, Cc or
    Bcc): as it is (L{_headerContains}), or with its addresses written out
    (L{searchText}), so that a needle may be any part of a display name or
    of an address, whatever quoting, comments or folding the header used.
    """
    if _headerContains(message, name, needle):
        return True
    lower = name.lower().encode("ascii")
    for fieldName, lines in headerFields(message.header()):
        if fieldName == lower:
            text = lines.split(b":", 1)[1][:MAX_SEARCH_TEXT].decode("utf-8", "replace")
            if needle in searchText(text).casefold():
                return True
    return False


def _headerContains(message: IMAPMessage, name: str, needle: str) -> bool:
    """
    Whether case-folded C{needle} is in a field C{name} of the header,
    unfolded and decoded (RFC 2047); in a large header, a piece at a time.
    """
    header = message.header()
    if len(header) <= pieces.PIECE:
        return any(needle in value for value in _headerValues(message, name))
    lower = name.lower().encode("ascii", "replace")
    for fieldName, _, valueStart, end in headerFieldSpans(header):
        if fieldName == lower:
            value = functools.partial(unfoldedPieces, header, valueStart, end)
            if _textContains(_decodeHeaderPieces(value), needle):
                return True
    return False


def _headerTextContains(message: IMAPMessage, needle: str) -> bool:
    """Whether case-folded C{needle} is in the whole header, decoded, as TEXT searches it."""
    header = message.header()
    if len(header) <= pieces.PIECE:
        return needle in _decodeHeader(header).casefold()

    def raw() -> Iterator[bytes]:
        return (header[low:high] for low, high in pieces.windows(0, len(header)))

    return _textContains(_decodeHeaderPieces(raw), needle)


def _partHeadersContain(message: IMAPMessage, needle: str) -> bool:
    """
    Whether case-folded C{needle} is in the header of a part below the top
    one, decoded: a body part's MIME header, or the header of a message
    inside a message/rfc822 part.  Those are in the message's body, so
    TEXT finds them (RFC 3501 6.4.4) though BODY, which reads text parts'
    content, does not.
    """
    parts = message.entity.walk()
    next(parts)
    for part in parts:
        data, start, end = part.data, part.start, part.bodyStart

        def raw(data: bytes = data, start: int = start, end: int = end) -> Iterator[bytes]:
            return (data[low:high] for low, high in pieces.windows(start, end))

        if start < end and _textContains(_decodeHeaderPieces(raw), needle):
            return True
    return False


def _decodeHeaderPieces(raw: Callable[[], Iterable[bytes]]) -> Iterator[str]:
    """L{_decodeHeader} of a long header (or field), in pieces."""
    return decodeWordsPieces("".join(decodeTextPieces(raw, "utf-8")))


def _textContains(texts: Iterable[str], needle: str) -> bool:
    finder = _Finder(needle)
    return not needle or any(finder.feed(text) for text in texts)


class _Finder:
    """
    Whether case-folded C{needle} occurs in text fed a piece at a time:
    each piece is folded and searched with the end of the text before it
    (one character short of the needle), so no piece is searched twice
    and a match across a piece edge is found.
    """

    def __init__(self, needle: str) -> None:
        self.needle = needle
        self.keep = len(needle) - 1
        self.tail = ""

    def feed(self, text: str) -> bool:
        window = self.tail + text.casefold()
        if self.needle in window:
            return True
        self.tail = window[-self.keep :] if self.keep else ""
        return False


def _bodyContains(message: IMAPMessage, needle: str) -> bool:
    """
    Whether C{needle} (case-folded) is in the text parts of a message,
    decoded and case-folded, one after another with a line break between
    them: as BODY searches them, a piece at a time.
    """
    if not needle:
        return True
    finder = _Finder(needle)
    first = True
    for part in message.entity.walk():
        if part.isMultipart or part.contentType[0] != "text":
            continue
        if not first and finder.feed("\n"):
            return True
        first = False
        for text in _partText(part):
            if finder.feed(text):
                return True
    return False


def _partText(part: MimeEntity) -> list[str]:
    """A text part's content, decoded from its transfer encoding and charset, in pieces."""
    encoding = (fieldValue(part.header, b"content-transfer-encoding") or b"").decode(
        "ascii", "replace"
    )
    data, start, end = part.data, part.bodyStart, part.end
    try:
        contentPieces(data, start, end, encoding)
    except UnknownCTE:
        encoding = ""
    return decodeTextPieces(
        lambda: contentPieces(data, start, end, encoding), part.parameter("charset")
    )


def _sentDate(message: IMAPMessage) -> datetime.date | None:
    value = fieldValue(message.header(), b"date")
    if value is None:
        return None
    parsed = email.utils.parsedate_tz(value[:MAX_DATE_TEXT].decode("ascii", "replace"))
    if parsed is None:
        return None
    try:
        return datetime.date(parsed[0], parsed[1], parsed[2])
    except ValueError:
        return None


def _internalDate(message: IMAPMessage) -> datetime.date:
    return localDay(message.info.internaldate)


def _safe(predicate: Predicate) -> Predicate:
    def check(seq: int, message: IMAPMessage) -> bool:
        try:
            return predicate(seq, message)
        except KeyError:
            return False

    return check


class _Node:
    """
    A search key, or C{AND} (a list), C{OR} or C{NOT} of keys, with the
    depth of the keys below it.  A node's children of its own kind are
    merged into it: C{OR a OR b c} is one C{OR} of three keys.
    """

    __slots__ = ("children", "depth", "key", "kind")

    def __init__(
        self, kind: str, children: list[_Node], key: tuple[int, Predicate] | None = None
    ) -> None:
        self.kind = kind
        self.children = children
        self.key = key
        self.depth = 0


class _Frame:
    """A list, C{OR} or C{NOT} being read: its keys so far, and how many it takes."""

    __slots__ = ("children", "cursor", "kind", "needs")

    def __init__(self, kind: str, cursor: _Cursor, needs: int | None) -> None:
        self.kind = kind
        self.cursor = cursor
        self.needs = needs
        self.children: list[_Node] = []

    def complete(self) -> bool:
        if self.needs is None:
            return not self.cursor.more()
        return len(self.children) == self.needs


class _Compiler:
    """
    Reads the criteria into a tree without recursion, merging chains of
    C{OR}, lists in lists and C{NOT NOT} as it goes, so that thousands of
    C{OR}s from a client are one flat node; a tree still deeper than
    C{maxDepth} is L{LimitExceeded}.  The predicates are then built, and
    run, with recursion no deeper than that.
    """

    def __init__(self, mailbox: IMAPMailbox, now: float) -> None:
        self.mailbox = mailbox
        self.now = now
        self.usesModSeq = False
        self.maxDepth = mailbox.maxNesting
        #: What makes the result change with no change to a message:
        #: C{"sequence"} numbers, C{"time"} (OLDER, YOUNGER).
        self.notes: set[str] = set()
        #: Whether every key read only the message's flags.
        self.flagsOnly = True

    def all(self, cursor: _Cursor) -> tuple[int, Predicate]:
        return self.build(self.tree(cursor))

    def tree(self, cursor: _Cursor) -> _Node:
        stack = [_Frame("AND", cursor, None)]
        done: _Node | None = None
        while True:
            frame = stack[-1]
            if done is not None:
                frame.children.append(done)
                done = None
            if frame.complete():
                stack.pop()
                done = self.finish(frame)
                if not stack:
                    return done
                continue
            token = frame.cursor.peek()
            word = token.upper() if isinstance(token, bytes) else None
            if isinstance(token, list):
                frame.cursor.next()
                stack.append(_Frame("AND", _Cursor(token), None))
            elif word in (b"NOT", b"OR"):
                frame.cursor.next()
                stack.append(_Frame(word.decode(), frame.cursor, 1 if word == b"NOT" else 2))
            else:
                done = _Node("KEY", [], self.key(frame.cursor))

    def finish(self, frame: _Frame) -> _Node:
        """The node for a list, C{OR} or C{NOT} read whole."""
        kind, children = frame.kind, frame.children
        if not children:
            raise imap4.IllegalQueryError("empty search")
        if kind == "NOT" and children[0].kind == "NOT":
            return children[0].children[0]
        if kind == "AND" and len(children) == 1:
            return children[0]
        same = [child for child in children if child.kind == kind]
        base = max(same, key=lambda child: len(child.children), default=None)
        node = _Node(kind, base.children if base is not None else [])
        depth = base.depth if base is not None else 0
        for child in children:
            if child is base:
                continue
            if child.kind == kind:
                node.children.extend(child.children)
                depth = max(depth, child.depth)
            else:
                node.children.append(child)
                depth = max(depth, child.depth + 1)
        node.depth = depth
        if depth > self.maxDepth:
            raise LimitExceeded("Search keys nested too deeply")
        return node

    def build(self, node: _Node) -> tuple[int, Predicate]:
        """The cost and predicate of a node, recursing as deep as the tree is."""
        if node.key is not None:
            return node.key
        keys = [self.build(child) for child in node.children]
        if node.kind == "AND":
            return self.conjunction(keys)
        cost = max(cost for cost, _ in keys)
        if node.kind == "NOT":
            inner = keys[0][1]
            return cost, lambda s, m: not inner(s, m)
        ordered = [predicate for _, predicate in sorted(keys, key=lambda k: k[0])]
        if len(ordered) == 2:
            first, second = ordered
            return cost, lambda s, m: first(s, m) or second(s, m)
        return cost, lambda s, m: any(p(s, m) for p in ordered)

    def conjunction(self, keys: list[tuple[int, Predicate]]) -> tuple[int, Predicate]:
        if len(keys) == 1:
            return keys[0]
        ordered = [predicate for _, predicate in sorted(keys, key=lambda k: k[0])]
        return max(cost for cost, _ in keys), lambda s, m: all(p(s, m) for p in ordered)

    def key(self, cursor: _Cursor) -> tuple[int, Predicate]:
        """One search key other than a list, C{NOT} or C{OR}, with its arguments."""
        token = cursor.next()
        if not isinstance(token, bytes):
            raise imap4.IllegalQueryError("bad search key")
        name = token.upper().decode("ascii", "replace")
        if name in _FLAG_KEYS:
            flag, present = _FLAG_KEYS[name]
            return _INFO, lambda s, m: (flag in m.info.flags) == present
        if name not in ("ALL", "KEYWORD", "UNKEYWORD"):
            self.flagsOnly = False
        simple = self.simple(name)
        if simple is not None:
            return simple
        if name in ("KEYWORD", "UNKEYWORD"):
            keyword = cursor.string().casefold()
            present = name == "KEYWORD"
            return _INFO, lambda s, m: any(f.casefold() == keyword for f in m.info.flags) == present
        if name in ("LARGER", "SMALLER"):
            size = cursor.number()
            if name == "LARGER":
                return _INFO, lambda s, m: m.info.size > size
            return _INFO, lambda s, m: m.info.size < size
        if name in ("OLDER", "YOUNGER"):
            return _INFO, self.withinTest(name, cursor.number())
        if name in ("BEFORE", "ON", "SINCE"):
            return _INFO, self.dateTest(name, cursor.date(), _internalDate)
        if name in ("SENTBEFORE", "SENTON", "SENTSINCE"):
            return _HEADER, _safe(self.dateTest(name[4:], cursor.date(), _sentDate))
        if name == "UID":
            return _INFO, self.uidTest(cursor.next())
        if name == "MODSEQ":
            return _INFO, self.modSeqTest(cursor)
        if name in _ADDRESS_FIELDS:
            needle = cursor.string().casefold()
            return _HEADER, _safe(lambda s, m: _addressContains(m, name, needle))
        if name in _ADDRESS_KEYS:
            return _HEADER, self.headerTest(name, cursor.string())
        if name == "HEADER":
            fieldName = cursor.string()
            return _HEADER, self.headerTest(fieldName, cursor.string())
        if name == "BODY":
            needle = cursor.string().casefold()
            return _BODY, _safe(lambda s, m: _bodyContains(m, needle))
        if name == "TEXT":
            needle = cursor.string().casefold()
            return _BODY, _safe(
                lambda s, m: (
                    _headerTextContains(m, needle)
                    or _bodyContains(m, needle)
                    or _partHeadersContain(m, needle)
                )
            )
        folder = self.mailbox.folder
        extra = objectIdKey(name, cursor, folder) or saveDateKey(name, cursor, folder)
        if extra is not None:
            return _INFO, extra
        return _INFO, self.sequenceTest(token)

    def simple(self, name: str) -> tuple[int, Predicate] | None:
        if name == "ALL":
            return _INFO, lambda s, m: True
        recent = self.mailbox.isRecent
        if name == "RECENT":
            return _INFO, lambda s, m: recent(m.info.uid)
        if name == "OLD":
            return _INFO, lambda s, m: not recent(m.info.uid)
        if name == "NEW":
            return _INFO, lambda s, m: recent(m.info.uid) and "\\Seen" not in m.info.flags
        return None

    def dateTest(
        self,
        relation: str,
        date: datetime.date,
        getDate: Callable[[IMAPMessage], datetime.date | None],
    ) -> Predicate:
        def test(seq: int, message: IMAPMessage) -> bool:
            value = getDate(message)
            if value is None:
                return False
            if relation == "BEFORE":
                return value < date
            if relation == "ON":
                return value == date
            return value >= date

        return test

    def withinTest(self, name: str, interval: int) -> Predicate:
        """WITHIN (RFC 5032): OLDER/YOUNGER than C{interval} seconds, by INTERNALDATE."""
        if interval <= 0:
            raise imap4.IllegalQueryError("interval must be positive")
        self.notes.add("time")
        cutoff = self.now - interval
        if name == "OLDER":
            return lambda s, m: m.info.internaldate < cutoff
        return lambda s, m: m.info.internaldate >= cutoff

    def modSeqTest(self, cursor: _Cursor) -> Predicate:
        """
        C{MODSEQ [entry-name entry-type] value} (RFC 7162 3.1.5): messages
        changed at or after C{value}.  tmail keeps one mod-sequence per
        message, so an entry name (one flag's) is checked against it too,
        as the RFC allows.
        """
        token = cursor.next()
        if not (isinstance(token, bytes) and token.isdigit()):
            entryType = cursor.next()
            if not isinstance(entryType, bytes) or entryType.lower() not in _ENTRY_TYPES:
                raise imap4.IllegalQueryError("bad MODSEQ entry type")
            token = cursor.next()
        try:
            value = parseModSeq(token)
        except imap4.IllegalClientResponse:
            raise imap4.IllegalQueryError("bad mod-sequence") from None
        self.usesModSeq = True
        return lambda s, m: m.info.modseq >= value

    def savedTest(self) -> Predicate:
        """C{$} (RFC 5182): the messages the last SEARCH ... SAVE kept."""
        saved = self.mailbox.saved
        return lambda s, m: m.info.uid in saved

    def headerTest(self, name: str, needle: str) -> Predicate:
        folded = needle.casefold()
        return _safe(lambda s, m: _headerContains(m, name, folded))

    def uidTest(self, token: Any) -> Predicate:
        if not isinstance(token, bytes):
            raise imap4.IllegalQueryError("bad UID set")
        if token == b"$":
            return self.savedTest()
        uids = parseSequenceSet(token, self.mailbox.maxSequenceRanges)
        within = uids.resolve(self.mailbox.lastUID())
        return lambda s, m: m.info.uid in within

    def sequenceTest(self, token: bytes) -> Predicate:
        if token == b"$":
            return self.savedTest()
        try:
            seqs = parseSequenceSet(token, self.mailbox.maxSequenceRanges)
        except LimitExceeded:
            raise
        except imap4.IllegalClientResponse:
            raise imap4.IllegalQueryError("unknown search key") from None
        self.notes.add("sequence")
        within = seqs.resolve(self.mailbox.getMessageCount())
        return lambda s, m: s in within


def compileSearch(
    query: list[Any], mailbox: IMAPMailbox, now: float | None = None, notes: set[str] | None = None
) -> tuple[int, Predicate, bool]:
    """
    Compile SEARCH criteria (tokens from L{tmail.imap.parse.Tokenizer}) for
    one mailbox; raises L{imap4.IllegalQueryError} for malformed criteria.
    C{now} (POSIX time, default the current time) is what OLDER and
    YOUNGER count back from.

    @return: what the predicate reads of a message (L{INFO}: nothing but
        its C{info}, flags, size, UID, internal date; L{HEADER}; or
        L{WHOLE}), the predicate, and whether the criteria used C{MODSEQ}.
    @param notes: if given, gets C{"sequence"} and C{"time"} when the
        criteria use sequence numbers or OLDER/YOUNGER (a live result,
        RFC 5267 4.3, cannot follow them).
    """
    moment = time.time() if now is None else now
    compiler = _Compiler(mailbox, moment)
    cost, predicate = compiler.all(_Cursor(query))
    if notes is not None:
        notes |= compiler.notes
    if compiler.flagsOnly:
        predicate = FlagsOnly(predicate)
    return cost, predicate, compiler.usesModSeq


class FlagsOnly:
    """
    A predicate that reads nothing of a message but its flags: a search
    may test each distinct set of flags once (a large folder has a handful)
    and keep the messages whose set passed.
    """

    __slots__ = ("predicate",)

    def __init__(self, predicate: Predicate) -> None:
        self.predicate = predicate

    def __call__(self, seq: int, message: Any) -> bool:
        return self.predicate(seq, message)
