"""
A small asyncio IMAP4rev1 client for load generation.

One command at a time per connection: tagged commands, server literals in
responses, synchronising literals for APPEND, IDLE.  It keeps just enough
state (the selected folder's EXISTS count) for the scenarios' scripts, and
parses little so the harness spends its CPU sending load, not reading it.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field

from harness.model import PASSWORD

#: A server literal announced at the end of a response line.
_LITERAL = re.compile(rb"\{(\d+)\}\r\n$")
_EXISTS = re.compile(rb"^\* (\d+) EXISTS\r\n$")

#: Big enough for one response line listing 100,000 UIDs.
STREAM_LIMIT = 16 * 1024 * 1024


class ProtocolError(Exception):
    """The server refused a command, or broke the protocol or the connection."""


@dataclass
class Reply:
    """A command's tagged status and its untagged responses (literals inline)."""

    status: bytes
    untagged: list[bytes] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == b"OK"


def quoted(text: str) -> bytes:
    return b'"' + text.replace("\\", "\\\\").replace('"', '\\"').encode() + b'"'


class ImapClient:
    """A connection to an IMAP server; use L{connect}."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.exists = 0
        self._tags = 0

    @classmethod
    async def connect(cls, port: int, host: str = "127.0.0.1") -> ImapClient:
        reader, writer = await asyncio.open_connection(host, port, limit=STREAM_LIMIT)
        client = cls(reader, writer)
        greeting = await client._response()
        if not greeting.startswith(b"* OK"):
            client.close()
            raise ProtocolError(f"greeting: {greeting[:80]!r}")
        return client

    def _tag(self) -> bytes:
        self._tags += 1
        return b"a%d" % self._tags

    async def _response(self) -> bytes:
        """One response, with any literals it carries."""
        line = await self.reader.readuntil(b"\r\n")
        match = _LITERAL.search(line)
        if match is None:
            return line
        parts = [line]
        while match is not None:
            parts.append(await self.reader.readexactly(int(match.group(1))))
            line = await self.reader.readuntil(b"\r\n")
            parts.append(line)
            match = _LITERAL.search(line)
        return b"".join(parts)

    async def _finish(self, tag: bytes) -> Reply:
        untagged = []
        prefix = tag + b" "
        while True:
            response = await self._response()
            if response.startswith(prefix):
                return Reply(response[len(prefix) :].split(b" ", 1)[0].rstrip(b"\r\n"), untagged)
            if response.startswith(b"* "):
                self._track(response)
            untagged.append(response)

    def _track(self, response: bytes) -> None:
        if response.endswith(b" EXPUNGE\r\n"):
            self.exists -= 1
        elif (match := _EXISTS.match(response)) is not None:
            self.exists = int(match.group(1))

    async def command(self, text: bytes, literal: bytes | None = None) -> Reply:
        """Send C{tag text} (then C{literal} once the server asks for it) and read the reply."""
        tag = self._tag()
        if literal is None:
            self.writer.write(tag + b" " + text + b"\r\n")
        else:
            self.writer.write(b"%s %s {%d}\r\n" % (tag, text, len(literal)))
            line = await self.reader.readuntil(b"\r\n")
            while line.startswith(b"* "):
                self._track(line)
                line = await self.reader.readuntil(b"\r\n")
            if not line.startswith(b"+"):
                return Reply(line[len(tag) + 1 :].split(b" ", 1)[0])
            self.writer.write(literal + b"\r\n")
        return await self._finish(tag)

    async def login(self, user: str, password: str = PASSWORD) -> Reply:
        return await self.command(b"LOGIN " + quoted(user) + b" " + quoted(password))

    async def bulk(self, text: bytes, marker: bytes) -> tuple[bytes, int]:
        """
        Send a command with a long, literal-free answer and read it in large
        chunks: its status and how often C{marker} occurs in the answer.
        """
        tag = self._tag()
        self.writer.write(tag + b" " + text + b"\r\n")
        chunks: list[bytes] = []
        tail = b"\r\n"
        while True:
            chunk = await self.reader.read(1 << 20)
            if not chunk:
                raise ProtocolError("connection closed")
            chunks.append(chunk)
            tail = (tail + chunk)[-256:]
            if tail.endswith(b"\r\n"):
                start = tail.rfind(b"\r\n", 0, len(tail) - 2) + 2
                if start > 1 and tail[start:].startswith(tag + b" "):
                    break
        data = b"".join(chunks)
        status = data[data.rfind(tag + b" ") + len(tag) + 1 :].split(b" ", 1)[0]
        return status, data.count(marker)

    async def idle(self) -> None:
        """Enter IDLE; returns once the server has said it is idling."""
        self.writer.write(self._tag() + b" IDLE\r\n")
        while True:
            line = await self.reader.readuntil(b"\r\n")
            if line.startswith(b"+"):
                return
            if not line.startswith(b"* "):
                raise ProtocolError(f"IDLE refused: {line[:80]!r}")

    async def untilExists(self, above: int) -> None:
        """Wait (in IDLE) for an EXISTS count greater than C{above}."""
        while True:
            line = await self.reader.readuntil(b"\r\n")
            match = _EXISTS.match(line)
            if match is not None and int(match.group(1)) > above:
                self.exists = int(match.group(1))
                return

    def close(self) -> None:
        self.writer.close()
