"""
Where one copy of an accepted message goes: a hosted user's INBOX, or the
outbound queue (for the recipients elsewhere, relayed from there).

Each copy a transaction writes has one destination; the replies at the end
of DATA are decided per destination (a user over quota refuses only its
copy), and the outbound queue is one destination among the users', so a
C{250} means its copy is as durable as theirs.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["OUTBOUND_QUEUE", "Destination", "LocalUser", "OutboundQueue"]


@dataclass(frozen=True, slots=True)
class LocalUser:
    """The INBOX of the hosted user C{address} (its canonical address, as the realm names it)."""

    address: str

    def __str__(self) -> str:
        return self.address


@dataclass(frozen=True, slots=True)
class OutboundQueue:
    """The outbound queue: one copy for all of a message's recipients elsewhere."""

    def __str__(self) -> str:
        return "the outbound queue"


#: The outbound queue, as a destination.
OUTBOUND_QUEUE = OutboundQueue()

Destination = LocalUser | OutboundQueue
