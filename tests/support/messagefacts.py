"""L{MessageFacts} over in-memory headers, for SORT and THREAD algorithm tests."""

from __future__ import annotations

from typing import Any

from tmail.imap.sort import MessageFacts
from tmail.interfaces import MessageInfo


class FakeMessage:
    """What L{MessageFacts} reads of a message: its info and its header."""

    def __init__(self, info: MessageInfo, header: bytes) -> None:
        self.info = info
        self._header = header
        self.headerReads = 0

    def header(self) -> bytes:
        self.headerReads += 1
        return self._header


def facts(
    seq: int,
    header: bytes = b"",
    *,
    uid: int | None = None,
    size: int = 100,
    internaldate: float = 1_700_000_000.0,
    **fields: Any,
) -> MessageFacts:
    """
    Facts of message C{seq} (UID C{uid}, default C{seq}) whose header is
    C{header} plus one line per keyword: C{message_id="<a@b>"} gives
    C{Message-Id: <a@b>}.
    """
    lines = b"".join(
        b"%s: %s\r\n" % (name.replace("_", "-").title().encode(), str(value).encode())
        for name, value in fields.items()
    )
    info = MessageInfo(uid if uid is not None else seq, frozenset(), size, internaldate, str(seq))
    return MessageFacts(seq, FakeMessage(info, header + lines + b"\r\n"))  # type: ignore[arg-type]
