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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from twisted.internet import task
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer, ITransport
from twisted.logger import Logger
from zope.interface import implementer

from tmail.imap.binary import UnknownCTE, binaryPieces
from tmail.imap.binaryappend import forLiteral
from tmail.imap.mailbox import IMAPMailbox, flagList
from tmail.imap.message import IMAPMessage, MimeEntity
from tmail.imap.structure import bodyStructure, envelope, internalDate, nstring
from tmail.steps import StepBudget

_log = Logger()

#: Bytes written per turn of the reactor while streaming a message.
CHUNK = 64 * 1024


@dataclass
class FileRange:
    """C{length} octets of an open file from C{offset}, sent as a literal."""

    file: BinaryIO
    offset: int
    length: int


Piece = bytes | FileRange


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
    begin = getattr(item, "partialBegin", None)
    if begin is not None:
        data = data[begin : begin + item.partialLength]
    return b"{%d}\r\n%s" % (len(data), forLiteral(data))


def _wholeMessage(item: Any, message: IMAPMessage) -> Piece:
    f = message.open()
    size = fileSize(f)
    if getattr(item, "partialBegin", None) is not None:
        offset = min(item.partialBegin, size)
        return FileRange(f, offset, min(item.partialLength, size - offset))
    return FileRange(f, 0, size)


def _body(item: Any, message: IMAPMessage) -> list[Piece]:
    if not hasSection(item):
        return [b"BODY " + bodyStructure(message.entity, extended=False)]
    kind, fields = _sectionName(item)
    label = sectionLabel(item, kind, fields)
    if kind == "" and not item.part:
        return [label + b" ", _wholeMessage(item, message)]
    if kind in ("HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT") and not item.part:
        data = MimeEntity(message.header()).section((), kind, fields)
    else:
        data = message.entity.section(tuple(item.part), kind, fields)
    return [label + b" ", _literal(item, data)]


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

    def build(seq: int, uid: int) -> list[Piece]:
        info = mailbox.info(uid)
        values: list[Any] = [seq]
        for kind in kinds:
            if kind == "uid":
                values.append(uid)
            elif kind == "flags":
                key = (info.flags, mailbox.showRecent and mailbox.isRecent(uid))
                text = flagTexts.get(key)
                if text is None:
                    text = flagTexts[key] = " ".join(flagList(info, key[1])).encode()
                values.append(text)
            elif kind == "internaldate":
                values.append(internalDate(info.internaldate))
            elif kind == "modseq":
                values.append(info.modseq)
            else:
                values.append(info.size)
        return [template % tuple(values)]

    return build


def messageItems(
    seq: int, mailbox: IMAPMailbox, uid: int, query: list[Any], withUID: bool
) -> list[Piece]:
    """
    The pieces of one C{* n FETCH (...)} response line.  Raises C{KeyError}
    when the message is gone from the folder.
    """
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
            items.append([b"ENVELOPE " + envelope(message.header())])
        elif kind == "bodystructure":
            items.append([b"BODYSTRUCTURE " + bodyStructure(message.entity)])
        elif kind == "rfc822":
            items.append([b"RFC822 ", _wholeMessage(None, message)])
        elif kind == "rfc822header":
            items.append([b"RFC822.HEADER " + nstring(forLiteral(message.header()))])
        elif kind == "rfc822text":
            items.append([b"RFC822.TEXT ", _literal(item, message.entity.body)])
        elif kind == "binary":
            items.append([binaryPieces(item, message.entity)])
        else:
            items.append(_body(item, message))
    pieces: list[Piece] = [b"* %d FETCH (" % seq]
    for i, item in enumerate(items):
        if i:
            pieces.append(b" ")
        pieces.extend(item)
    pieces.append(b")\r\n")
    return pieces


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
    pausing while the transport's buffer is full.
    """

    def __init__(
        self,
        transport: ITransport,
        work: list[tuple[int, int]],
        build: Callable[[int, int], list[Piece]],
        cooperator: task.Cooperator,
    ) -> None:
        self.transport = transport
        self.work = work
        self.build = build
        self.cooperator = cooperator
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

    def _steps(self) -> Iterator[None]:
        pending: list[bytes] = []
        size = 0
        budget = StepBudget()
        for seq, uid in self.work:
            try:
                pieces = self.build(seq, uid)
            except KeyError:
                self.outcome.expunged += 1
                continue
            except UnknownCTE:
                self.outcome.unknownCTE += 1
                continue
            except Exception:
                _log.failure("Cannot build FETCH response for UID {uid}", uid=uid)
                self.outcome.failed += 1
                continue
            for piece in pieces:
                if isinstance(piece, bytes):
                    pending.append(piece)
                    size += len(piece)
                    continue
                with piece.file as f:
                    pending.append(b"{%d}\r\n" % piece.length)
                    f.seek(piece.offset)
                    remaining = piece.length
                    while remaining:
                        chunk = f.read(min(CHUNK, remaining))
                        if not chunk:
                            raise OSError("message file shorter than its size")
                        pending.append(forLiteral(chunk))
                        remaining -= len(chunk)
                        self.transport.writeSequence(pending)
                        pending, size = [], 0
                        yield None
            if size >= CHUNK or budget.spent():
                self.transport.writeSequence(pending)
                pending, size = [], 0
                yield None
        if pending:
            self.transport.writeSequence(pending)
