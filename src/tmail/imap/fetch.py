# -*- test-case-name: tests.imap.test_imap_network -*-
"""
FETCH responses: the data items of one message, and a producer that streams
them to the client without holding whole messages in memory.

Fixes over Twisted's FETCH: partial fetches (C{BODY[]<0.100>}) return only
the requested octets, labelled C{BODY[]<0>} as RFC 3501 7.4.2 says; sections
are the exact stored bytes (a NUL, which no literal may hold, is sent as
0x80: L{forLiteral}); C{BODY[]} of a whole message streams from the file at
the transport's pace.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from twisted.internet import task
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer, ITransport
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from tmail.imap import pieces
from tmail.imap.binary import BinaryItem, UnknownCTE, binaryContentPieces, binaryTextPieces
from tmail.imap.binaryappend import forLiteral
from tmail.imap.fetchitems import EXTRA_TYPES, extraItem
from tmail.imap.largemessages import HEADER, INFO, WHOLE, Runner, inWorker, isLarge
from tmail.imap.mailbox import IMAPMailbox
from tmail.imap.message import IMAPMessage, openTogether
from tmail.imap.mimeentity import MimeEntity
from tmail.imap.structure import bodyStructure, envelope, internalDate, nstring
from tmail.steps import StepBudget

_log = Logger()

#: Bytes written per turn of the reactor while streaming a message.
CHUNK = 64 * 1024


@dataclass
class FileRange:
    """
    C{length} octets of an open file (or of bytes in memory, through
    C{BytesIO}) from C{offset}, sent as a literal, a L{CHUNK} per step.
    """

    file: BinaryIO
    offset: int
    length: int
    #: C{~{%d}} for a literal8 (RFC 3516 4.3).
    marker: bytes = b"{%d}"


@dataclass
class MessageRange:
    """
    The whole message, or C{length} octets of it from C{offset}: opened
    when the response is written, on the reactor thread.
    """

    message: IMAPMessage
    offset: int | None = None
    length: int = 0

    def open(self) -> FileRange:
        f = self.message.openLast()
        size = fileSize(f)
        if self.offset is None:
            return FileRange(f, 0, size)
        offset = min(self.offset, size)
        return FileRange(f, offset, min(self.length, size - offset))


Piece = bytes | FileRange | MessageRange


def fileSize(f: BinaryIO) -> int:
    """The size of an open file."""
    position = f.tell()
    size = f.seek(0, io.SEEK_END)
    f.seek(position)
    return size


def setsSeen(item: Any) -> bool:
    """Whether fetching C{item} sets C{\\Seen} (RFC 3501 6.4.5)."""
    if item.type in ("rfc822", "rfc822text"):
        return True
    if item.type == "binary":
        return not (item.peek or item.size)
    return item.type == "body" and not item.peek and hasSection(item)


def hasSection(item: Any) -> bool:
    """Whether a C{BODY} item has a C{[section]} (else it asks for the structure)."""
    return bool(item.empty or item.header or item.text or item.mime)


def _sectionName(item: Any) -> tuple[str, list[bytes]]:
    if item.header is not None:
        fields = list(item.header.fields or ())
        if not fields:
            return "HEADER", []
        return ("HEADER.FIELDS.NOT" if item.header.negate else "HEADER.FIELDS"), fields
    if item.text:
        return "TEXT", []
    if item.mime:
        return "MIME", []
    return "", []


def sectionLabel(item: Any, kind: str, fields: list[bytes]) -> bytes:
    """C{BODY[1.HEADER.FIELDS (SUBJECT)]<0>}: how a body item is named in the response."""
    part = b".".join(b"%d" % (p + 1) for p in item.part)
    name = kind.encode()
    if fields:
        name += b" (" + b" ".join(fields) + b")"
    inner = part + (b"." if part and name else b"") + name
    label = b"BODY[" + inner + b"]"
    if item.partialBegin is not None:
        label += b"<%d>" % item.partialBegin
    return label


def _literal(item: Any, data: bytes | None) -> Piece:
    """C{data} as a literal, cut to the item's partial range if it has one."""
    if data is None:
        return b"NIL"
    return _span(item, data, 0, len(data))


def _span(item: Any, data: bytes, start: int, end: int) -> Piece:
    """
    C{data[start:end]} as a literal, cut to the item's partial range if it
    has one; a large one is streamed from C{data} without a copy.
    """
    begin = getattr(item, "partialBegin", None)
    if begin is not None:
        start, end = min(start + begin, end), min(start + begin + item.partialLength, end)
    if end - start <= CHUNK:
        return b"{%d}\r\n%s" % (end - start, forLiteral(data[start:end]))
    return FileRange(io.BytesIO(data), start, end - start)


def _wholeMessage(item: Any, message: IMAPMessage) -> Piece:
    if getattr(item, "partialBegin", None) is not None:
        return MessageRange(message, item.partialBegin, item.partialLength)
    return MessageRange(message)


def _body(item: Any, message: IMAPMessage) -> list[Piece]:
    if not hasSection(item):
        name = _structureFact(message, extended=False)
        structure = message.fact(name, lambda: bodyStructure(message.entity, extended=False))
        return [b"BODY " + structure]
    kind, fields = _sectionName(item)
    label = sectionLabel(item, kind, fields)
    if kind == "" and not item.part:
        return [label + b" ", _wholeMessage(item, message)]
    if kind in ("HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT") and not item.part:
        header = MimeEntity(message.header())
        return [label + b" ", _literal(item, header.section((), kind, fields))]
    entity = message.entity
    found = entity.sectionSpan(tuple(item.part), kind, fields)
    if isinstance(found, tuple):
        return [label + b" ", _span(item, entity.data, *found)]
    return [label + b" ", _literal(item, found)]


def _structureFact(message: IMAPMessage, extended: bool) -> str:
    """The name a message's structure is kept under: it depends on the limits."""
    limits = message.limits
    kind = "bodystructure" if extended else "body"
    return f"{kind} {limits.depth} {limits.parts}"


def _factName(item: Any, message: IMAPMessage) -> str | None:
    """The fact that answers C{item}, if one does (C{None}: it reads the message)."""
    kind = item.type
    if kind == "envelope":
        return "envelope"
    if kind == "bodystructure":
        return _structureFact(message, extended=True)
    if kind == "body" and not hasSection(item):
        return _structureFact(message, extended=False)
    if kind == "rfc822header" or (
        kind == "body"
        and not item.part
        and _sectionName(item)[0] in ("HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT")
    ):
        return "header"
    return None


def answeredFromFacts(query: list[Any], message: IMAPMessage) -> bool:
    """
    Whether every item of C{query} is answered from the index and the facts
    kept of C{message}, so that nothing reads its file.
    """
    for item in query:
        if item.type in _METADATA:
            continue
        name = _factName(item, message)
        if name is None or message.cachedFact(name) is None:
            return False
    return True


#: FETCH items of RFC 8474 and 8514, answered from the index.
_INDEX_EXTRAS = frozenset({"emailid", "threadid", "savedate"})


def readsFile(query: list[Any], message: IMAPMessage) -> bool:
    """
    Whether answering C{query} for C{message} reads its file: not when the
    index and the facts kept of it (or its header, for ENVELOPE) answer.
    """
    for item in query:
        kind = item.type
        if kind in _METADATA or kind in _INDEX_EXTRAS:
            continue
        name = _factName(item, message)
        if name is None:
            return True
        if message.cachedFact(name) is not None:
            continue
        if name != "header" and kind != "envelope":
            return True
        if message.cachedFact("header") is None:
            return True
    return False


class OpenedAhead:
    """
    The message objects of a FETCH, made a slice at a time with the files
    their items read opened together: a store that answers later costs a
    wait per slice, not per message, and a message the facts answer waits
    for nothing.
    """

    #: Messages whose files are opened together, at most.
    SLICE = 32

    def __init__(self, mailbox: IMAPMailbox, query: list[Any]) -> None:
        self.mailbox = mailbox
        self.query = query
        self._messages: dict[int, IMAPMessage] = {}

    def prepare(self, uids: list[int]) -> Deferred[None] | None:
        """Make the messages of C{uids} and open their files; C{None} when done at once."""
        reading: list[IMAPMessage] = []
        for uid in uids:
            if uid in self._messages:
                continue
            try:
                message = self.mailbox.message(uid)
            except KeyError:
                continue
            self._messages[uid] = message
            if readsFile(self.query, message):
                reading.append(message)
        return openTogether(reading)

    def message(self, uid: int) -> IMAPMessage:
        """The message object prepared for C{uid} (a new one if none was)."""
        message = self._messages.get(uid)
        return message if message is not None else self.mailbox.message(uid)

    def done(self, uid: int) -> None:
        """The response for C{uid} is written: its file is closed."""
        message = self._messages.pop(uid, None)
        if message is not None:
            message.drop()

    def clear(self) -> None:
        """Close every file still open."""
        for uid in list(self._messages):
            self.done(uid)


def _binary(item: BinaryItem, message: IMAPMessage) -> list[Piece]:
    """
    The response to one BINARY item: C{BINARY.SIZE[1] 42}, or
    C{BINARY[1]<0> ...} with the content as a literal, a C{~{n}} literal8
    when it holds NUL (RFC 3516 4.3), or NIL for a part that does not
    exist.  The content is decoded a piece at a time into memory, and a
    large one streamed from there; a C{HEADER} or C{MIME} section is the
    bytes C{BODY} would serve.
    """
    section = b".".join(b"%d" % (p + 1) for p in item.part)
    found: Iterator[bytes] | None
    if item.text:
        section += (b"." if section else b"") + item.text.encode()
        if item.fields:
            section += b" (" + b" ".join(item.fields) + b")"
        if item.text == "TEXT":
            found = binaryTextPieces(message.entity, tuple(item.part))
        else:
            stored = message.entity.section(tuple(item.part), item.text, item.fields)
            found = None if stored is None else iter([stored])
    else:
        found = binaryContentPieces(message.entity, tuple(item.part))
    if item.size:
        size = 0 if found is None else sum(len(piece) for piece in found)
        return [b"BINARY.SIZE[%s] %d" % (section, size)]
    label = b"BINARY[%s]" % section
    if item.partialBegin is not None:
        label += b"<%d>" % item.partialBegin
    if found is None:
        return [label + b" NIL"]
    content = io.BytesIO()
    for piece in found:
        content.write(piece)
    data = content.getvalue()
    start, end = 0, len(data)
    if item.partialBegin is not None:
        start, end = min(item.partialBegin, end), min(item.partialBegin + item.partialLength, end)
    marker = b"~{%d}" if pieces.find(data, b"\x00", start, end) >= 0 else b"{%d}"
    if end - start <= CHUNK:
        return [label + b" " + marker % (end - start) + b"\r\n" + data[start:end]]
    return [label + b" ", FileRange(io.BytesIO(data), start, end - start, marker)]


#: FETCH items answered from the index alone, without opening the message.
_METADATA = frozenset({"uid", "flags", "internaldate", "rfc822size", "modseq"})


def metadataBuilder(
    mailbox: IMAPMailbox, query: list[Any], withUID: bool
) -> Callable[[int, int], list[Piece]] | None:
    """
    A builder of whole response lines for a FETCH of index data only (UID,
    FLAGS, INTERNALDATE, RFC822.SIZE), the request a client makes of every
    message of a large folder; C{None} for any other FETCH.  It formats
    each line in one step and each distinct flag list once.
    """
    kinds = [item.type for item in query]
    if not all(kind in _METADATA for kind in kinds):
        return None
    if withUID and "uid" not in kinds:
        kinds.insert(0, "uid")
    formats = {
        "uid": b"UID %d",
        "flags": b"FLAGS (%s)",
        "internaldate": b"INTERNALDATE %s",
        "rfc822size": b"RFC822.SIZE %d",
        "modseq": b"MODSEQ (%d)",
    }
    template = b"* %d FETCH (" + b" ".join(formats[kind] for kind in kinds) + b")\r\n"
    flagTexts: dict[tuple[frozenset[str], bool], bytes] = {}

    # UID and FLAGS alone come from the listing's columns, without a
    # MessageInfo made per message.
    needsInfo = not set(kinds) <= {"uid", "flags"}

    def line(seq: int, uid: int) -> bytes:
        info = mailbox.info(uid) if needsInfo else None
        values: list[Any] = [seq]
        for kind in kinds:
            if kind == "uid":
                values.append(uid)
            elif kind == "flags":
                flags = mailbox.flagSet(uid) if info is None else info.flags
                key = (flags, mailbox.showRecent and mailbox.isRecent(uid))
                text = flagTexts.get(key)
                if text is None:
                    names = sorted(flags) + (["\\Recent"] if key[1] else [])
                    text = flagTexts[key] = " ".join(names).encode()
                values.append(text)
            elif kind == "internaldate":
                assert info is not None
                values.append(internalDate(info.internaldate))
            elif kind == "modseq":
                assert info is not None
                values.append(info.modseq)
            else:
                assert info is not None
                values.append(info.size)
        return template % tuple(values)

    def build(seq: int, uid: int) -> list[Piece]:
        return [line(seq, uid)]

    if kinds == ["uid", "flags"] and not mailbox.showRecent:

        def uidFlags(seq: int, uid: int) -> bytes:
            flags = mailbox.flagSet(uid)
            text = flagTexts.get((flags, False))
            if text is None:
                return line(seq, uid)
            return template % (seq, uid, text)

        line = uidFlags

    def flagsText(flags: frozenset[str], recent: bool) -> bytes:
        key = (flags, recent)
        text = flagTexts.get(key)
        if text is None:
            names = sorted(flags) + (["\\Recent"] if recent else [])
            text = flagTexts[key] = " ".join(names).encode()
        return text

    #: For UID and FLAGS alone: the values of a line from its sequence
    #: number, UID and flags text.
    values: Callable[[int, int, bytes], tuple[Any, ...]] | None = {
        ("uid", "flags"): lambda seq, uid, text: (seq, uid, text),
        ("flags", "uid"): lambda seq, uid, text: (seq, text, uid),
        ("flags",): lambda seq, uid, text: (seq, text),
    }.get(tuple(kinds))

    def lines(work: list[tuple[int, int]]) -> bytes:
        flagSets = None if values is None else mailbox.flagSetsAt(work)
        if values is None or flagSets is None:
            return b"".join([line(seq, uid) for seq, uid in work])
        # The session's view is the listing: each message's flags by
        # position, in one C loop.
        recent = mailbox.recentUids if mailbox.showRecent else frozenset()
        return b"".join(
            [
                template % values(seq, uid, flagsText(flags, uid in recent))
                for (seq, uid), flags in zip(work, flagSets, strict=True)
            ]
        )

    build.lines = lines  # type: ignore[attr-defined]
    return build


def fetchNeeds(query: list[Any]) -> tuple[int, bool]:
    """
    What a FETCH's items read of each message: its index entry alone
    (L{INFO}), its header (L{HEADER}) or all of it taken apart (L{WHOLE});
    and whether they send the whole message as stored (C{BODY[]},
    C{RFC822}), streamed from its file.
    """
    need, streams = INFO, False
    for item in query:
        kind = item.type
        if kind in _METADATA:
            continue
        if kind in ("envelope", "rfc822header"):
            need = max(need, HEADER)
        elif kind == "rfc822":
            streams = True
        elif kind == "body" and hasSection(item) and not item.part:
            section = _sectionName(item)[0]
            if section == "":
                streams = True
            elif section in ("HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT"):
                need = max(need, HEADER)
            else:
                need = WHOLE
        else:
            need = WHOLE
    return need, streams


def messageItems(
    seq: int,
    mailbox: IMAPMailbox,
    uid: int,
    query: list[Any],
    withUID: bool,
    message: IMAPMessage | None = None,
) -> list[Piece]:
    """
    The pieces of one C{* n FETCH (...)} response line (of C{message},
    when given, else of a message object made for it).  Raises C{KeyError}
    when the message is gone from the folder.
    """
    if message is None:
        message = mailbox.message(uid)
    items: list[list[Piece]] = []
    if withUID and not any(item.type == "uid" for item in query):
        items.append([b"UID %d" % uid])
    for item in query:
        kind = item.type
        if kind == "uid":
            items.append([b"UID %d" % uid])
        elif kind == "flags":
            items.append([b"FLAGS (" + " ".join(mailbox.flagsOf(uid)).encode() + b")"])
        elif kind == "internaldate":
            items.append([b"INTERNALDATE " + internalDate(message.info.internaldate)])
        elif kind == "rfc822size":
            items.append([b"RFC822.SIZE %d" % message.getSize()])
        elif kind == "modseq":
            items.append([b"MODSEQ (%d)" % message.info.modseq])
        elif kind == "envelope":
            items.append(
                [b"ENVELOPE " + message.fact("envelope", lambda: envelope(message.header()))]
            )
        elif kind == "bodystructure":
            name = _structureFact(message, extended=True)
            structure = message.fact(name, lambda: bodyStructure(message.entity))
            items.append([b"BODYSTRUCTURE " + structure])
        elif kind == "rfc822":
            items.append([b"RFC822 ", _wholeMessage(None, message)])
        elif kind == "rfc822header":
            header = message.header()
            if len(header) <= CHUNK:
                items.append([b"RFC822.HEADER " + nstring(forLiteral(header))])
            else:
                items.append([b"RFC822.HEADER ", _literal(None, header)])
        elif kind == "rfc822text":
            entity = message.entity
            items.append([b"RFC822.TEXT ", _span(item, entity.data, entity.bodyStart, entity.end)])
        elif kind == "binary":
            items.append(_binary(item, message))
        elif kind in EXTRA_TYPES:
            limits = mailbox.mimeLimits
            items.append([extraItem(item, message, mailbox.previewScanBytes, limits)])
        else:
            items.append(_body(item, message))
    response: list[Piece] = [b"* %d FETCH (" % seq]
    for i, item in enumerate(items):
        if i:
            response.append(b" ")
        response.extend(item)
    response.append(b")\r\n")
    return response


def largeMessageItems(
    seq: int,
    mailbox: IMAPMailbox,
    uid: int,
    query: list[Any],
    withUID: bool,
    needs: tuple[int, bool],
    runInWorker: Runner,
    message: IMAPMessage | None = None,
) -> list[Piece] | Deferred[list[Piece]]:
    """
    L{messageItems}, for a large message in a worker thread when the items
    read it (C{needs} from L{fetchNeeds}).  A message sent as stored is
    streamed from its file as before; one whose file is not stored as
    served (Dovecot's LF-only files) is read whole, and converted, in the
    worker.
    """
    if message is None:
        message = mailbox.message(uid)
    need, streams = needs
    if not isLarge(message) or (need == INFO and not streams):
        return messageItems(seq, mailbox, uid, query, withUID, message)
    if not streams and answeredFromFacts(query, message):
        return messageItems(seq, mailbox, uid, query, withUID, message)
    if streams:
        f = message.openAhead()
        if fileSize(f) != message.info.size:
            need = WHOLE
        elif need == INFO:
            return messageItems(seq, mailbox, uid, query, withUID, message)
    return inWorker(
        runInWorker, message, need, lambda: messageItems(seq, mailbox, uid, query, withUID, message)
    )


@implementer(IPushProducer)
class _TaskProducer:
    """Lets the transport pause a cooperative task when its buffer is full."""

    def __init__(self, work: task.CooperativeTask[Any]) -> None:
        self._work = work
        self._paused = False

    def pauseProducing(self) -> None:
        if not self._paused:
            self._paused = True
            self._work.pause()

    def resumeProducing(self) -> None:
        if self._paused:
            self._paused = False
            self._work.resume()

    def stopProducing(self) -> None:
        with contextlib.suppress(task.TaskDone, task.TaskFinished, task.TaskStopped):
            self._work.stop()


@dataclass
class FetchOutcome:
    """
    How a FETCH went: messages skipped because they vanished, failed, or
    had a BINARY part in an encoding tmail cannot decode.
    """

    expunged: int = 0
    failed: int = 0
    unknownCTE: int = 0


class FetchStream:
    """
    Writes the responses for a list of messages a step of a cooperative
    task at a time: up to L{CHUNK} bytes of them, or as many as a
    L{StepBudget} allows (a large literal goes a L{CHUNK} per step),
    pausing while the transport's buffer is full.  A response built in a
    worker thread (a large message's) is waited for: the step yields its
    Deferred.
    """

    def __init__(
        self,
        transport: ITransport,
        work: list[tuple[int, int]],
        build: Callable[[int, int], list[Piece] | Deferred[list[Piece]]],
        cooperator: task.Cooperator,
        ahead: OpenedAhead | None = None,
    ) -> None:
        self.transport = transport
        self.work = work
        self.build = build
        self.cooperator = cooperator
        self.ahead = ahead
        self.outcome = FetchOutcome()

    def start(self) -> Deferred[FetchOutcome]:
        """Start streaming; fires when done."""
        running = self.cooperator.cooperate(self._steps())
        producer = _TaskProducer(running)
        self.transport.registerProducer(producer, True)  # type: ignore[attr-defined]

        def finished(result: object) -> object:
            self.transport.unregisterProducer()  # type: ignore[attr-defined]
            return result

        whenDone: Deferred[Any] = running.whenDone()
        whenDone.addBoth(finished)
        return whenDone.addCallback(lambda _: self.outcome)

    def _failed(self, failure: Failure, uid: int) -> None:
        """Count a message whose response could not be built."""
        if failure.check(KeyError):  # type: ignore[no-untyped-call]
            self.outcome.expunged += 1
        elif failure.check(UnknownCTE):  # type: ignore[no-untyped-call]
            self.outcome.unknownCTE += 1
        else:
            _log.failure("Cannot build FETCH response for UID {uid}", failure, uid=uid)
            self.outcome.failed += 1

    def _steps(self) -> Iterator[object]:
        try:
            yield from self._written()
        finally:
            if self.ahead is not None:
                self.ahead.clear()

    def _written(self) -> Iterator[object]:
        pending: list[bytes] = []
        size = 0
        budget = StepBudget()
        ahead = self.ahead
        lines = getattr(self.build, "lines", None)
        if lines is not None:
            # Index data only: whole slices of lines at once, each message
            # again on its own only when a slice meets one that is gone.
            step = StepBudget.ITEMS
            for start in range(0, len(self.work), step):
                part = self.work[start : start + step]
                try:
                    self.transport.write(lines(part))
                except KeyError:
                    for seq, uid in part:
                        size = yield from self._one(seq, uid, pending, size)
                    self.transport.writeSequence(pending)
                    pending.clear()
                    size = 0
                yield None
            return
        for index, (seq, uid) in enumerate(self.work):
            if ahead is not None and index % ahead.SLICE == 0:
                coming = self.work[index : index + ahead.SLICE]
                waiting = ahead.prepare([u for _, u in coming])
                if waiting is not None:
                    yield waiting
            try:
                size = yield from self._one(seq, uid, pending, size)
            finally:
                if ahead is not None:
                    ahead.done(uid)
            if size >= CHUNK or budget.spent():
                self.transport.writeSequence(pending)
                pending.clear()
                size = 0
                yield None
        if pending:
            self.transport.writeSequence(pending)

    def _one(
        self, seq: int, uid: int, pending: list[bytes], size: int
    ) -> Generator[object, None, int]:
        """Build and write one message's response; returns the bytes now pending."""
        built: list[Any] = []
        try:
            result = self.build(seq, uid)
        except Exception:
            self._failed(Failure(), uid)  # type: ignore[no-untyped-call]
            return size
        if isinstance(result, Deferred):
            # The task waits for the worker; a failure is counted, not raised.
            yield result.addCallbacks(built.extend, built.append)
        else:
            built.extend(result)
        if built and isinstance(built[0], Failure):
            self._failed(built[0], uid)
            return size
        try:
            response = [p.open() if isinstance(p, MessageRange) else p for p in built]
        except Exception:
            self._failed(Failure(), uid)  # type: ignore[no-untyped-call]
            return size
        for piece in response:
            if isinstance(piece, bytes):
                pending.append(piece)
                size += len(piece)
                continue
            with piece.file as f:
                pending.append(piece.marker % piece.length + b"\r\n")
                f.seek(piece.offset)
                remaining = piece.length
                while remaining:
                    chunk = f.read(min(CHUNK, remaining))
                    if not chunk:
                        raise OSError("message file shorter than its size")
                    # Only a literal8 may carry NUL (RFC 3516 4.3).
                    plain = piece.marker == b"{%d}"
                    pending.append(forLiteral(chunk) if plain else chunk)
                    remaining -= len(chunk)
                    self.transport.writeSequence(pending)
                    pending.clear()
                    size = 0
                    yield None
        return size
