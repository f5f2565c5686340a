"""
The Maildir++ C{subscriptions} file, in the two forms Dovecot reads and
writes.

Version 2 (written): a C{V<tab>2} header line and an empty line, then one
subscribed folder per line, its hierarchy levels separated by tabs, each
level tab-escaped (C{\\x01} followed by C{1}, C{t}, C{r} or C{n}) and in
modified UTF-7.  Version 1 (read): one Maildir++ storage name per line,
levels separated by C{.} (or by C{/}, as older tmail releases wrote them).
"""

from __future__ import annotations

from tmail.errors import InvalidFolderName
from tmail.store.naming import DELIMITER, decodeMUTF7, encodeMUTF7, normalizeName

FILENAME = "subscriptions"
_HEADER = "V\t2\n\n"

_ESCAPES = {"\x01": "\x011", "\t": "\x01t", "\r": "\x01r", "\n": "\x01n"}
_UNESCAPES = {"1": "\x01", "t": "\t", "r": "\r", "n": "\n"}


def _escape(level: str) -> str:
    return "".join(_ESCAPES.get(c, c) for c in level)


def _unescape(level: str) -> str:
    if "\x01" not in level:
        return level
    out = []
    chars = iter(level)
    for c in chars:
        out.append(_UNESCAPES.get(next(chars, ""), "") if c == "\x01" else c)
    return "".join(out)


def parse(text: str) -> list[str]:
    """The canonical folder names a subscriptions file lists, in file order, once each."""
    if text.startswith("V\t"):
        _, _, body = text.partition("\n")
        levelLists = [[_unescape(p) for p in line.split("\t")] for line in body.split("\n")]
    else:
        levelLists = [
            line.split("/") if "/" in line else line.split(".") for line in text.split("\n")
        ]
    names: dict[str, None] = {}
    for levels in levelLists:
        if levels == [""]:
            continue
        try:
            decoded = DELIMITER.join(decodeMUTF7(level) for level in levels)
        except ValueError:
            decoded = DELIMITER.join(levels)
        try:
            names[normalizeName(decoded)] = None
        except InvalidFolderName:
            continue
    return list(names)


def serialize(names: list[str]) -> bytes:
    """A version 2 subscriptions file listing C{names}."""
    lines = (
        "\t".join(_escape(encodeMUTF7(level)) for level in name.split(DELIMITER)) + "\n"
        for name in names
    )
    return (_HEADER + "".join(lines)).encode("utf-8")
