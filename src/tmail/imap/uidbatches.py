# -*- test-case-name: tests.imap.test_imap_uidbatches -*-
"""
UIDBATCHES (RFC 10022): UID ranges that split the selected mailbox into
batches of a given number of messages, newest first, so that a client can
FETCH, SEARCH or STORE a mailbox a batch at a time (with UIDONLY, where
sequence numbers are not available, this is the only way to do so).

Twisted knows no UIDBATCHES.  The batches are counted from the session's
view of the mailbox (the UIDs it knows, in order), so a batch's bounds are
looked up by position: the work is one step per batch answered, whatever
the size of the mailbox.  The ranges tile the UID space: each starts right
below the one before it and the oldest reaches down to UID 1, so a message
that arrives or goes between two commands still falls in exactly one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from twisted.mail import imap4

from tmail.imap.session import no
from tmail.imap.structure import quoted

__all__ = [
    "MIN_BATCH_SIZE",
    "BatchRequest",
    "answerUIDBatches",
    "batchRanges",
    "parseUIDBatches",
    "uidBatchesResponse",
]

#: The smallest batch a client may ask for (RFC 10022); fewer is C{NO [TOOFEW]}.
MIN_BATCH_SIZE = 500
_MAX_NUMBER = 2**32 - 1


@dataclass(frozen=True)
class BatchRequest:
    """
    The arguments of one UIDBATCHES command.

    @ivar size: messages per batch.
    @ivar first: the first batch wanted, 1 being the newest.
    @ivar last: the last batch wanted; C{None} with C{first}: every batch.
    """

    size: int
    first: int = 1
    last: int | None = None

    def messages(self) -> int | None:
        """How many messages the batches asked for hold at most (C{None}: all)."""
        if self.last is None:
            return None
        return (self.last - self.first + 1) * self.size


def _number(text: bytes) -> int:
    if not (text.isdigit() and text.isascii()) or text[:1] == b"0" or len(text) > 10:
        raise imap4.IllegalClientResponse("Expected a number above 0")
    value = int(text)
    if value > _MAX_NUMBER:
        raise imap4.IllegalClientResponse("Number out of range")
    return value


def parseUIDBatches(line: bytes) -> BatchRequest:
    """C{batch-size [SP batch-range]}; anything else is BAD."""
    words = line.strip(b" ").split(b" ")
    if not words[0] or len(words) > 2:
        raise imap4.IllegalClientResponse("Expected a batch size and an optional batch range")
    size = _number(words[0])
    if len(words) == 1:
        return BatchRequest(size)
    low, colon, high = words[1].partition(b":")
    if not colon:
        raise imap4.IllegalClientResponse("Expected a batch range first:last")
    first, last = _number(low), _number(high)
    if first > last:
        raise imap4.IllegalClientResponse("The batch range must go from lower to higher")
    return BatchRequest(size, first, last)


def batchRanges(
    count: int, uidAt: Callable[[int], int], request: BatchRequest
) -> list[tuple[int, int]]:
    """
    The C{(highest, lowest)} UID range of each batch the request names,
    newest batch first, for a mailbox of C{count} messages whose UIDs
    C{uidAt} gives by sequence number.  A batch's range goes down to its
    oldest message's UID (the oldest batch's down to 1); the next batch's
    range starts just below it.
    """
    total = -(-count // request.size)
    last = total if request.last is None else min(request.last, total)
    ranges = []
    for batch in range(request.first, last + 1):
        newest = count - (batch - 1) * request.size
        oldest = newest - request.size + 1
        high = uidAt(newest) if batch == 1 else uidAt(newest + 1) - 1
        low = 1 if oldest <= 1 else uidAt(oldest)
        ranges.append((high, low))
    return ranges


def answerUIDBatches(
    tag: bytes, request: BatchRequest, count: int, uidAt: Callable[[int], int], maxMessages: int
) -> bytes:
    """
    The UIDBATCHES response for a mailbox of C{count} messages, or
    L{CommandError}: C{NO [TOOFEW]} for batches under L{MIN_BATCH_SIZE},
    C{NO [TOOMANY]} for more than C{maxMessages} messages asked for.  A
    batch range past the last batch names nothing whatever the batch
    size, and is answered with no ranges.
    """
    wanted = request.messages()
    if (count if wanted is None else wanted) > maxMessages:
        raise no(b"[TOOMANY] At most %d messages in one UIDBATCHES" % maxMessages)
    if request.last is not None and (request.first - 1) * request.size >= count:
        return uidBatchesResponse(tag, [])
    if request.size < MIN_BATCH_SIZE:
        raise no(b"[TOOFEW] Batches hold at least %d messages" % MIN_BATCH_SIZE)
    return uidBatchesResponse(tag, batchRanges(count, uidAt, request))


def uidBatchesResponse(tag: bytes, ranges: Sequence[tuple[int, int]]) -> bytes:
    """The untagged C{UIDBATCHES (TAG "t") high:low,...} response."""
    head = b"UIDBATCHES (TAG %s)" % quoted(tag)
    if not ranges:
        return head
    return head + b" " + b",".join(b"%d:%d" % pair for pair in ranges)
