# -*- test-case-name: tests.imap.test_imap_message -*-
"""
Stored messages as Twisted's IMAP server sees them (L{imap4.IMessage}),
and the opening of their files.

An L{IMAPMessage} reads its folder's file only when a header or body is
asked for, and may be given it ahead, in the reactor thread, by a store
that answers later (L{openTogether}); what it reads it takes apart as a
L{MimeEntity} (L{tmail.imap.mimeentity}).
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Callable, Iterable
from io import SEEK_END, BytesIO
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from twisted.internet.defer import Deferred, gatherResults, maybeDeferred
from twisted.mail import imap4
from twisted.python.failure import Failure
from zope.interface import implementer

from tmail.imap import pieces
from tmail.imap.headerfields import headerFields, readHeader
from tmail.imap.mimeentity import MimeEntity, MimeLimits
from tmail.imap.waiting import answered
from tmail.interfaces import IMailFolder, MessageInfo

if TYPE_CHECKING:
    from tmail.imap.messagecache import IMessageFacts

_BARE_LF = re.compile(rb"(?<!\r)\n")


def crlfLines(data: bytes) -> bytes:
    """
    C{data} with every bare LF turned into CRLF, the line end IMAP sends;
    a large C{data} a piece at a time.
    """
    if len(data) <= pieces.PIECE:
        return _BARE_LF.sub(b"\r\n", data)
    converted = []
    for low, high in pieces.windows(0, len(data)):
        piece = _BARE_LF.sub(b"\r\n", data[low:high])
        if data[low] == 0x0A and low and data[low - 1] == 0x0D:
            # The CR ending the previous piece makes this LF no bare one.
            piece = piece[1:]
        converted.append(piece)
    return b"".join(converted)


@implementer(imap4.IMessagePart)
class IMAPPart:
    """Twisted's L{imap4.IMessagePart} over a L{MimeEntity}."""

    def __init__(self, entity: MimeEntity) -> None:
        self.entity = entity

    def getHeaders(self, negate: bool, *names: str) -> dict[str, str]:
        wanted = {name.lower() for name in names}
        headers: dict[str, str] = {}
        for name, lines in headerFields(self.entity.header):
            key = name.decode("ascii", "replace")
            if (key in wanted) != negate and key not in headers:
                value = lines.split(b":", 1)[1]
                headers[key] = (
                    re.sub(rb"\r?\n(?=[ \t])", b"", value).strip().decode("utf-8", "replace")
                )
        return headers

    def getBodyFile(self) -> BinaryIO:
        return BytesIO(self.entity.body)

    def getSize(self) -> int:
        return len(self.entity.body)

    def isMultipart(self) -> bool:
        return self.entity.isMultipart

    def getSubPart(self, part: int) -> IMAPPart:
        children = self.entity.children
        if part < 0 or part >= len(children):
            raise IndexError(part)
        return IMAPPart(children[part])


@implementer(imap4.IMessage, imap4.IMessageFile)
class IMAPMessage:
    """
    One stored message: flags and dates from its L{MessageInfo}, bytes read
    from the folder only when a header or body is asked for.

    The folder is only ever asked for the file on the reactor thread (it
    may look for a file another program renamed, and update its index):
    work that reads a large message in a worker thread opens it first
    (L{openAhead}), then reads it there (L{load}).

    With C{facts}, the header and what L{fact} makes come from there when
    they are kept, and are kept there once made.

    A store may give the file in a later reactor turn: work that reads
    messages asks for the files of a slice of them first (L{opening},
    L{openTogether}), each then serving every read of its message (header,
    structure, body) until L{drop}.  Reading a message whose file was not
    asked for first works only with a store that answers at once.
    """

    def __init__(
        self,
        folder: IMailFolder,
        info: MessageInfo,
        limits: MimeLimits = MimeLimits(),
        facts: IMessageFacts | None = None,
    ) -> None:
        self.folder = folder
        self.info = info
        self.limits = limits
        self.facts = facts
        self._facts: dict[str, bytes] = {}
        self._header: bytes | None = None
        self._entity: MimeEntity | None = None
        self._ahead: BinaryIO | None = None
        self._held: BinaryIO | None = None
        self._heldError: BaseException | None = None

    @property
    def entity(self) -> MimeEntity:
        """The whole message, read on first use."""
        if self._entity is None:
            with self.open() as f:
                self._entity = MimeEntity(f.read(), limits=self.limits)
            self.keepFact("header", self._entity.header)
        return self._entity

    def header(self) -> bytes:
        """The header alone, without reading a large body."""
        if self._entity is not None:
            return self._entity.header
        if self._header is None:
            self._header = self.cachedFact("header")
        if self._header is None:
            with self.open() as f:
                self._header = readHeader(f)
            self.keepFact("header", self._header)
        return self._header

    def hasHeader(self) -> bool:
        """Whether the header is read already."""
        return self._entity is not None or self._header is not None

    def cachedFact(self, name: str) -> bytes | None:
        """
        The fact C{name} kept of this message, if any; once found, this
        object holds it, whatever the cache drops meanwhile.
        """
        value = self._facts.get(name)
        if value is None and self.facts is not None:
            value = self.facts.get(self.folder, self.info, name)
            if value is not None:
                self._facts[name] = value
        return value

    def keepFact(self, name: str, value: bytes) -> None:
        """Keep the fact C{name} of this message for the next to ask."""
        if self.facts is not None:
            self.facts.put(self.folder, self.info, name, value)

    def fact(self, name: str, make: Callable[[], bytes]) -> bytes:
        """The fact C{name}: kept, or made by C{make} and kept."""
        value = self.cachedFact(name)
        if value is None:
            value = make()
            self.keepFact(name, value)
        return value

    def openAhead(self) -> BinaryIO:
        """
        Open the message's file now, on the reactor thread, for L{load} in
        a worker thread (or for L{open}).  Raises C{KeyError} when the
        message is gone.
        """
        if self._ahead is None:
            self._ahead = self._file()
        return self._ahead

    def opening(self) -> Deferred[None] | None:
        """
        Ask the folder for the message's file and keep it (L{hold}), or
        its error, for every L{open} until L{drop}: the store may answer
        in a later turn, the work that reads the message does not wait.
        C{None} when the folder answered at once (the common case costs
        no Deferred); else a Deferred that fires once it has.
        """
        try:
            result: object = self.folder.openMessage(self.info.uid)
        except Exception as e:
            self.drop()
            self._heldError = e
            return None
        if isinstance(result, Deferred):
            return result.addCallbacks(self.hold, self._holdError)
        self.hold(cast(BinaryIO, result))
        return None

    def needsOpening(self) -> bool:
        """Whether reading the message's bytes would ask the folder for its file."""
        return self._entity is None and self._held is None and self._heldError is None

    def hold(self, f: BinaryIO) -> None:
        """Keep C{f}, the message's open file, for every L{open} until L{drop}."""
        self.drop()
        self._held, self._heldError = f, None

    def _holdError(self, failure: Failure) -> None:
        self.drop()
        self._heldError = failure.value

    def drop(self) -> None:
        """
        Close the file L{hold} kept; the next read asks the folder again
        (a message found gone stays gone).
        """
        held, self._held = self._held, None
        if held is not None:
            held.close()

    def _file(self) -> BinaryIO:
        """The message's file: the one held, or the folder's answer if it answers at once."""
        if self._heldError is not None:
            raise self._heldError
        if self._held is not None:
            return _borrowed(self._held)
        return openAtOnce(self.folder, self.info.uid)

    def load(self, whole: bool) -> None:
        """
        Read the header, or with C{whole} the whole message, from the file
        L{openAhead} opened, and close it: safe in a worker thread.
        """
        f, self._ahead = self._ahead, None
        assert f is not None, "load() needs openAhead() first"
        with self._readable(f) as source:
            if whole:
                self._entity = MimeEntity(source.read(), limits=self.limits)
                self.keepFact("header", self._entity.header)
            else:
                self._header = readHeader(source)
                self.keepFact("header", self._header)

    def release(self) -> None:
        """Close a file L{openAhead} opened that nothing read."""
        f, self._ahead = self._ahead, None
        if f is not None:
            f.close()

    def keepHeaderOnly(self) -> None:
        """Forget the body read for a search; the header stays (SORT, THREAD)."""
        if self._entity is not None:
            self._header = self._entity.header
            self._entity = None

    def getHeaders(self, negate: bool, *names: str) -> dict[str, str]:
        return IMAPPart(MimeEntity(self.header())).getHeaders(negate, *names)

    def getBodyFile(self) -> BinaryIO:
        return BytesIO(self.entity.body)

    def getSize(self) -> int:
        return self.info.size

    def isMultipart(self) -> bool:
        return self.entity.isMultipart

    def getSubPart(self, part: int) -> IMAPPart:
        return IMAPPart(self.entity).getSubPart(part)

    def getUID(self) -> int:
        return self.info.uid

    def getFlags(self) -> list[str]:
        return sorted(self.info.flags)

    def getInternalDate(self) -> str:
        return email.utils.formatdate(self.info.internaldate, usegmt=True)

    def open(self) -> BinaryIO:
        """
        The message's bytes with CRLF line ends.  A file whose length is not
        the recorded size (Dovecot's LF-only files, named with their CRLF
        size in C{,W=}) is read whole and converted, so the bytes served
        match RFC822.SIZE; any other file is returned as stored.  Once the
        whole message is read, its bytes are served from memory.
        """
        if self._entity is not None:
            return BytesIO(self._entity.data)
        f, self._ahead = self._ahead, None
        return self._readable(f if f is not None else self._file())

    def openLast(self) -> BinaryIO:
        """
        L{open}, for the last read of the message in the work at hand (a
        FETCH response's streamed literal): a held file is handed over as
        it is, the caller closing it.
        """
        held = self._held
        if self._entity is not None or held is None or self._ahead is not None:
            return self.open()
        self._held = None
        held.seek(0)
        return self._readable(held)

    def _readable(self, f: BinaryIO) -> BinaryIO:
        if f.seek(0, SEEK_END) == self.info.size:
            f.seek(0)
            return f
        with f:
            f.seek(0)
            return BytesIO(crlfLines(f.read()))


def openTogether(messages: Iterable[IMAPMessage]) -> Deferred[None] | None:
    """
    Open the files of C{messages} that are not open yet, all at once (see
    L{IMAPMessage.opening}); a Deferred that fires when the last is open,
    or C{None} when the folder answered at once.
    """
    waiting: list[Deferred[None]] = []
    for message in messages:
        if message.needsOpening():
            opening = message.opening()
            if opening is not None and not answered(opening)[0]:
                waiting.append(opening)
    if not waiting:
        return None
    return gatherResults(waiting).addCallback(lambda _: None)


class NotOpened(Exception):
    """A message's file was read before the store, answering later, gave it."""


def openAtOnce(folder: IMailFolder, uid: int) -> BinaryIO:
    """
    The file of a message, when the folder answers at once (a file it
    gives later is closed); raises the folder's error, or L{NotOpened}.
    """
    box: list[Any] = []
    opened: Deferred[Any] = maybeDeferred(folder.openMessage, uid)
    opened.addBoth(box.append)
    if not box:
        opened.addCallback(lambda _: _closeLate(box[0]))
        raise NotOpened("The message was not opened ahead")
    result = box[0]
    if isinstance(result, Failure):
        result.raiseException()
    return cast(BinaryIO, result)


def _closeLate(result: object) -> None:
    if not isinstance(result, Failure):
        cast(BinaryIO, result).close()


class _Borrowed:
    """A held file lent to one reader: closing it leaves the file open."""

    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        # Bound to the file's own methods: no Python call in between.
        self.read = f.read
        self.seek = f.seek
        self.tell = f.tell
        f.seek(0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)

    def close(self) -> None:
        pass

    def __enter__(self) -> _Borrowed:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def _borrowed(f: BinaryIO) -> BinaryIO:
    return cast(BinaryIO, _Borrowed(f))
