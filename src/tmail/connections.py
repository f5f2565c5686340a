"""Concurrent-connection limits per client address, for every listener."""

from __future__ import annotations

import contextlib
from collections import Counter


class ConnectionCounter:
    """
    Counts open sessions per client address.  A protocol calls L{acquire}
    when a connection is made and refuses the session (with its protocol's
    own "too many connections" answer) when that returns C{False}; it calls
    L{release} when the connection is lost, only if L{acquire} succeeded.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: Counter[str] = Counter()

    def acquire(self, host: str) -> bool:
        if self.limit > 0 and self._open[host] >= self.limit:
            return False
        self._open[host] += 1
        return True

    def release(self, host: str) -> None:
        self._open[host] -= 1
        if self._open[host] <= 0:
            del self._open[host]

    def count(self, host: str) -> int:
        return self._open[host]


def sendPromptly(transport: object) -> None:
    """
    Turn Nagle's algorithm off for a session's TCP connection (through a
    TLS wrapper too).  Mail protocols answer in several small writes (a
    status line, then data, then a terminator); with Nagle on, the last of
    them waits for the client's delayed ACK, about 40 ms per reply.
    """
    setNoDelay = getattr(transport, "setTcpNoDelay", None)
    if setNoDelay is None:
        return
    with contextlib.suppress(OSError):
        setNoDelay(True)
