"""Concurrent-connection limits of a listener: per client and in all."""

from __future__ import annotations

import contextlib
import enum
from collections import Counter

from tmail.clientaddress import IPV6_PREFIX_LENGTH, clientKey


class Refusal(enum.Enum):
    """Why a connection was not admitted."""

    #: The client (an address, an IPv6 prefix) has as many as it may.
    CLIENT = "client"
    #: The listener has as many as it may, from all clients together.
    SERVER = "server"


class ConnectionCounter:
    """
    Counts open sessions per client and in all.  A protocol calls L{admit}
    when a connection is made and refuses the session (with its protocol's
    own "too many connections" or "busy" answer) when that returns a
    L{Refusal}; it calls L{release} when the connection is lost, only if
    L{admit} admitted it.

    @ivar limit: sessions per client; 0: no limit.
    @ivar total: sessions in all; 0: no limit.
    @ivar ipv6Prefix: the addresses of one IPv6 prefix of this length
        count as one client (L{tmail.clientaddress.clientKey}).
    """

    def __init__(self, limit: int, total: int = 0, ipv6Prefix: int = IPV6_PREFIX_LENGTH) -> None:
        self.limit = limit
        self.total = total
        self.ipv6Prefix = ipv6Prefix
        self._open: Counter[str] = Counter()
        self._all = 0

    def admit(self, host: str) -> Refusal | None:
        """Count a session from C{host}, or say why it may not be opened."""
        if self.total > 0 and self._all >= self.total:
            return Refusal.SERVER
        key = clientKey(host, self.ipv6Prefix)
        if self.limit > 0 and self._open[key] >= self.limit:
            return Refusal.CLIENT
        self.add(host)
        return None

    def add(self, host: str) -> None:
        """Count a session from C{host} admitted elsewhere (by a supervisor that counts for all)."""
        self._open[clientKey(host, self.ipv6Prefix)] += 1
        self._all += 1

    def release(self, host: str) -> None:
        key = clientKey(host, self.ipv6Prefix)
        self._all -= 1
        self._open[key] -= 1
        if self._open[key] <= 0:
            del self._open[key]

    def count(self, host: str) -> int:
        """Sessions open from C{host}'s client."""
        return self._open[clientKey(host, self.ipv6Prefix)]

    def __len__(self) -> int:
        """Sessions open in all."""
        return self._all


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
