# -*- test-case-name: tests.smtp.test_smtp_headerblock -*-
"""
A message's header section (RFC 5322 2.1: header fields up to the first
empty line, then the body), read as the message streams into the store.

SMTP needs it for three things, none of which may hold the whole message:
policies see the header fields at the end of DATA (a DKIM verifier or
signer works on some of them), submission checks the addresses in C{From}
and C{Sender}, and submission adds C{Message-ID} and C{Date} when the client
left them out.

L{HeaderScanner} sits between the DATA/BDAT reader and the copies.  While
the header section lasts it keeps back at most one incomplete line (so a
field split across reads, or a header section larger than one read, is
seen whole), and it writes the missing fields just before the line that
ends the section: the empty line, or a line that cannot be a header field
(where a parser starts the body too).  After that, content passes through
untouched: the body is never examined or held.  A header section longer
than L{HEADER_LIMIT} is cut off there: what comes after it is passed on
as content and L{HeaderScanner.complete} is false.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from tmail.smtp.headers import isHeaderField

__all__ = ["HEADER_LIMIT", "HeaderScanner", "Missing", "fieldValues"]

#: Octets of header section kept and examined; Postfix's
#: C{header_size_limit} is 100 KiB.
HEADER_LIMIT = 256 * 1024

#: Given the watched field names (lower case) the header section held,
#: the fields (name, value) to add at its end.
Missing = Callable[[frozenset[str]], Sequence[tuple[str, str]]]


def fieldValues(fields: Iterable[tuple[str, bytes]], name: str) -> list[str]:
    """
    The values of the fields called C{name} (any case), unfolded, as text
    (UTF-8, RFC 6532; undecodable octets replaced), without surrounding
    white space.
    """
    wanted = name.lower()
    return [
        value.replace(b"\r\n", b"").decode("utf-8", "replace").strip()
        for field, value in fields
        if field.lower() == wanted
    ]


class HeaderScanner:
    """
    Passes a message's content on, keeping its header fields and adding
    missing ones at the end of its header section.

    Feed it the content as stored (CRLF line ends, dot-unstuffed) and store
    what it returns instead.

    @ivar fields: the header fields so far: the name as written and the
        raw value after the colon (folding CRLFs kept, the last CRLF not),
        added fields included.
    @ivar complete: false when the header section was cut off at
        L{HEADER_LIMIT}, so L{fields} may lack some.
    """

    def __init__(
        self,
        missing: Missing | None = None,
        watch: Iterable[str] = (),
        limit: int = HEADER_LIMIT,
    ) -> None:
        """
        @param missing: called once, at the end of the header section, with
            the names in C{watch} that it held; returns the fields to add.
        @param watch: field names (any case) whose presence C{missing} is told.
        """
        self._missing = missing
        self._watch = frozenset(name.lower() for name in watch)
        self._limit = limit
        self._seen: set[str] = set()
        self._held = b""
        self._ended = False
        self._size = 0
        self._name: str | None = None
        self._value: list[bytes] = []
        self.fields: list[tuple[str, bytes]] = []
        self.complete = True

    @property
    def ended(self) -> bool:
        """Whether the header section is over (content passes through as it is)."""
        return self._ended

    def feed(self, data: bytes) -> bytes:
        """The next content; returns what to store for it (possibly less, or more)."""
        if self._ended:
            return data
        buffer = self._held + data if self._held else data
        self._held = b""
        start = 0
        while (end := buffer.find(b"\r\n", start)) >= 0:
            line = buffer[start:end]
            if self._endsHeader(line):
                return buffer[:start] + self._end() + buffer[start:]
            self._take(line)
            start = end + 2
            if self._size > self._limit:
                self.complete = False
                return buffer[:start] + self._end() + buffer[start:]
        rest = buffer[start:]
        if self._size + len(rest) > self._limit:
            # A "line" this long is no header field: the body has begun.
            self.complete = False
            return buffer[:start] + self._end() + rest
        self._held = rest
        return buffer[:start]

    def finish(self) -> bytes:
        """The content is over: what to store after everything fed."""
        if self._ended:
            return b""
        held, self._held = self._held, b""
        if not held:
            return self._end()
        if self._endsHeader(held):
            return self._end() + held
        # A last header line without CRLF (BDAT): end it before adding fields.
        self._take(held)
        added = self._end()
        return held + (b"\r\n" + added if added else b"")

    def _endsHeader(self, line: bytes) -> bool:
        """Whether C{line} is the empty line or one that cannot be in a header section."""
        if not line:
            return True
        return line[:1] not in (b" ", b"\t") and not isHeaderField(line)

    def _take(self, line: bytes) -> None:
        """One line of the header section: a field, or the continuation of one."""
        self._size += len(line) + 2
        if line[:1] in (b" ", b"\t"):
            if self._name is not None:
                self._value.append(line)
            return
        self._close()
        name, _, value = line.partition(b":")
        self._name = name.decode("ascii")
        self._value = [value]
        lower = self._name.lower()
        if lower in self._watch:
            self._seen.add(lower)

    def _close(self) -> None:
        """Keep the field being read, if any."""
        if self._name is not None:
            self.fields.append((self._name, b"\r\n".join(self._value)))
            self._name = None
            self._value = []

    def _end(self) -> bytes:
        """The header section is over: return the fields to add there."""
        self._close()
        self._ended = True
        if self._missing is None:
            return b""
        added = []
        for name, value in self._missing(frozenset(self._seen)):
            encoded = value.encode("utf-8")
            self.fields.append((name, b" " + encoded))
            added.append(name.encode("ascii") + b": " + encoded + b"\r\n")
        return b"".join(added)
