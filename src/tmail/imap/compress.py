"""
COMPRESS=DEFLATE (RFC 4978): raw deflate (no zlib header) in both directions
once a client asks for it, over TLS or plain TCP.

Each write is flushed with C{Z_SYNC_FLUSH}, so a response is never held back
waiting for more data.  Incoming data is kept compressed until the line
parser wants more: L{Inflater} hands out one bounded piece at a time, so a
session paused behind a running command holds a few kilobytes of deflate
input, not the megabytes they may inflate to, and the input of one reactor
turn is as bounded as an uncompressed read.  A stream that inflates more
than the configured ratio is a decompression bomb, not mail
(L{InflationLimit}).
"""

from __future__ import annotations

import zlib
from collections import deque
from collections.abc import Iterable
from typing import Any

from zope.interface import directlyProvides, providedBy

#: Inflated bytes handed to the parser per step.
INFLATE_CHUNK = 16 * 1024
#: Inflated bytes parsed per reactor turn before other sessions get theirs,
#: as much as one read of an uncompressed connection.
INFLATE_PER_TURN = 64 * 1024
#: Inflated bytes a stream may produce beyond its ratio: a session starts
#: with short commands whose deflate blocks are larger than their text.
INFLATE_ALLOWANCE = 64 * 1024


class InflationLimit(Exception):
    """The client's deflate stream inflates beyond the allowed ratio."""


class DeflatingTransport:
    """A transport that deflates what is written through it; everything else is the real one's."""

    def __init__(self, transport: Any) -> None:
        self._transport = transport
        directlyProvides(self, providedBy(transport))
        self._deflater = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)

    def write(self, data: bytes) -> None:
        if data:
            self._transport.write(
                self._deflater.compress(data) + self._deflater.flush(zlib.Z_SYNC_FLUSH)
            )

    def writeSequence(self, data: Iterable[bytes]) -> None:
        self.write(b"".join(data))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class Inflater:
    """
    A client's deflate stream, inflated on demand.

    @ivar produced: inflated bytes handed out so far.
    @ivar consumed: compressed bytes inflated so far.
    """

    def __init__(self, maxRatio: int) -> None:
        """
        @param maxRatio: inflated bytes allowed per compressed byte, over the
            whole stream (plus L{INFLATE_ALLOWANCE}); 0 for no limit.
        """
        self._inflater = zlib.decompressobj(-15)
        self._queue: deque[bytes] = deque()
        self._tail = b""
        self._full = False
        self._maxRatio = maxRatio
        self.produced = 0
        self.consumed = 0

    def add(self, data: bytes) -> None:
        """Keep compressed input until it is asked for."""
        if data:
            self._queue.append(data)

    def pending(self) -> bool:
        """Whether inflated bytes may be waiting: unused input, or a piece that filled up."""
        return bool(self._tail or self._queue or self._full)

    def inflate(self, size: int) -> bytes:
        """
        At most C{size} inflated bytes; empty when all input is used up.

        @raise zlib.error: the input is not a deflate stream, or the client
            ended it (RFC 4978 has no end).
        @raise InflationLimit: the stream inflates beyond the ratio.
        """
        while True:
            if not self._tail and self._queue:
                self._tail = self._queue.popleft()
            before = len(self._tail)
            plain = self._inflater.decompress(self._tail, size)
            self._tail = self._inflater.unconsumed_tail
            self.consumed += before - len(self._tail)
            self._full = len(plain) == size
            if self._inflater.eof:
                raise zlib.error("the client ended its deflate stream")
            if plain:
                self.produced += len(plain)
                limit = self._maxRatio * self.consumed + INFLATE_ALLOWANCE
                if self._maxRatio and self.produced > limit:
                    raise InflationLimit()
                return plain
            if not (self._tail or self._queue):
                return b""
