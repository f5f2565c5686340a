"""
What a client keeps of a live SEARCH or SORT result (RFC 5267 4.3): the
ESEARCH sets of a response and the ADDTO and REMOVEFROM updates applied to
a result list, for tests that check the server's updates against a fresh
search.
"""

from __future__ import annotations

import re


def numbers(text: bytes) -> list[int]:
    """A set of an ESEARCH response in its order; ranges ascend (RFC 5267 3.2)."""
    found: list[int] = []
    for part in text.split(b","):
        low, _, high = part.partition(b":")
        a, b = int(low), int(high or low)
        found.extend(range(min(a, b), max(a, b) + 1))
    return found


class ClientView:
    """
    What a client keeps of a live result, from the ESEARCH updates it gets
    (RFC 5267 4.3.3, 4.3.4: each pair applied in turn; position 0 means
    mailbox order).
    """

    _ITEM = re.compile(rb"(ADDTO|REMOVEFROM) \(([^)]*)\)")

    def __init__(self, tag: bytes, results: list[int]) -> None:
        self.tag = tag
        self.results = results
        self.changes = 0

    def apply(self, output: bytes) -> None:
        head = b'* ESEARCH (TAG "%s") UID ' % self.tag
        for line in output.split(b"\r\n"):
            if not line.startswith(head):
                continue
            for kind, payload in self._ITEM.findall(line[len(head) :]):
                words = payload.split(b" ")
                for position, found in zip(words[::2], words[1::2], strict=True):
                    self._change(kind, int(position), numbers(found))

    def _change(self, kind: bytes, position: int, found: list[int]) -> None:
        self.changes += 1
        if kind == b"REMOVEFROM":
            if position == 0:
                self.results = [n for n in self.results if n not in found]
            else:
                assert self.results[position - 1 : position - 1 + len(found)] == found
                del self.results[position - 1 : position - 1 + len(found)]
        elif position == 0:
            self.results = sorted(self.results + found)
        else:
            self.results[position - 1 : position - 1] = found
