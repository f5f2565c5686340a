"""
IMAP response data read into Python values, so two servers' FETCH answers
compare item by item: lists for parenthesised lists, C{None} for C{NIL},
bytes for atoms, numbers, quoted strings and literals (C{{n}} and C{~{n}}).
"""

from __future__ import annotations

import re
from typing import TypeAlias

Value: TypeAlias = bytes | list["Value"] | None

_ATOM_END = b" ()\r\n"
_LITERAL = re.compile(rb"~?\{(\d+)\+?\}\r\n")


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def value(self) -> Value:
        data = self.data
        char = data[self.pos : self.pos + 1]
        if char == b"(":
            self.pos += 1
            items: list[Value] = []
            while True:
                while data[self.pos : self.pos + 1] == b" ":
                    self.pos += 1
                if data[self.pos : self.pos + 1] == b")":
                    self.pos += 1
                    return items
                items.append(self.value())
        if char == b'"':
            out = bytearray()
            self.pos += 1
            while data[self.pos] != 0x22:
                if data[self.pos] == 0x5C:
                    self.pos += 1
                out.append(data[self.pos])
                self.pos += 1
            self.pos += 1
            return bytes(out)
        literal = _LITERAL.match(data, self.pos)
        if literal is not None:
            size = int(literal.group(1))
            self.pos = literal.end() + size
            return data[literal.end() : self.pos]
        start = self.pos
        depth = 0
        while self.pos < len(data):
            byte = data[self.pos : self.pos + 1]
            if byte == b"[":
                depth += 1
            elif byte == b"]":
                depth -= 1
            elif depth == 0 and byte in _ATOM_END:
                break
            self.pos += 1
        atom = data[start : self.pos]
        return None if atom.upper() == b"NIL" else atom


def parseValue(data: bytes) -> Value:
    """One value (a list, string, literal, atom or NIL) from the start of C{data}."""
    return _Reader(data).value()


def fetchResponses(data: bytes) -> dict[int, dict[bytes, Value]]:
    """
    The C{* n FETCH (...)} responses in a server's output, by sequence
    number: each a dict of item name (upper case) to value.  Other lines
    are skipped.
    """
    found: dict[int, dict[bytes, Value]] = {}
    reader = _Reader(data)
    header = re.compile(rb"\* (\d+) FETCH ")
    while reader.pos < len(data):
        match = header.match(data, reader.pos)
        if match is None:
            end = data.find(b"\r\n", reader.pos)
            reader.pos = len(data) if end < 0 else end + 2
            continue
        reader.pos = match.end()
        items = reader.value()
        assert isinstance(items, list), items
        pairs = found.setdefault(int(match.group(1)), {})
        for name, value in zip(items[::2], items[1::2], strict=True):
            assert isinstance(name, bytes), name
            pairs[name.upper()] = value
        end = data.find(b"\r\n", reader.pos)
        reader.pos = len(data) if end < 0 else end + 2
    return found
