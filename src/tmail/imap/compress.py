"""
COMPRESS=DEFLATE (RFC 4978): raw deflate (no zlib header) in both directions
once a client asks for it, over TLS or plain TCP.

Each write is flushed with C{Z_SYNC_FLUSH}, so a response is never held back
waiting for more data.  Incoming data is inflated in bounded pieces, so a
small packet that inflates to gigabytes is fed to the line parser (and its
line and literal limits) piece by piece instead of all at once.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable
from typing import Any

from zope.interface import directlyProvides, providedBy

#: Inflated bytes handed to the parser per step.
INFLATE_CHUNK = 64 * 1024


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
    """Inflates what a client sends and hands it on in pieces of at most L{INFLATE_CHUNK}."""

    def __init__(self, deliver: Callable[[bytes], None]) -> None:
        self._inflater = zlib.decompressobj(-15)
        self._deliver = deliver

    def feed(self, data: bytes) -> None:
        """Raises C{zlib.error} when C{data} is not a deflate stream."""
        while data:
            plain = self._inflater.decompress(data, INFLATE_CHUNK)
            data = self._inflater.unconsumed_tail
            if plain:
                self._deliver(plain)
