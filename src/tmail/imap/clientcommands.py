# -*- test-case-name: tests.imap.test_imap_enable -*-
"""
What a client says of itself and turns on: ID (RFC 2971), logged and
answered with tmail's name and version, within RFC 2971 3.3's limits; and
ENABLE (RFC 5161) of CONDSTORE, QRESYNC, IMAP4rev2 and UTF8=ACCEPT, which
change how the session speaks (mailbox names as UTF-8, VANISHED, MODSEQ).
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger
from twisted.mail import imap4

from tmail import __version__
from tmail.imap.mutf7 import decodePattern, decodeUTF8Name, encodeName
from tmail.imap.parse import parseQuoted, splitAtom, wholeLiteral
from tmail.imap.session import IMAPSession
from tmail.imap.structure import quoted

__all__ = ["ID_MAX_FIELD", "ID_MAX_PAIRS", "ID_MAX_VALUE", "ClientCommands"]

_log = Logger()
_S = imap4.IMAP4Server
_VERSION = __version__.encode("ascii")

#: RFC 2971 3.3: limits on the client's ID parameters.
ID_MAX_FIELD = 30
ID_MAX_VALUE = 1024
ID_MAX_PAIRS = 30


def _printable(value: bytes) -> str:
    """A client-given string for the log, with no control characters."""
    return "".join(c if c.isprintable() else "?" for c in value.decode("utf-8", "replace"))


class ClientCommands(IMAPSession):
    """ID and ENABLE for an L{tmail.imap.server.IMAPServer}."""

    # ID (RFC 2971)

    def do_ID(self, tag: bytes, params: list[tuple[bytes, bytes | None]] | None) -> None:
        if params:
            shown = ", ".join(
                f"{_printable(field)}={'NIL' if value is None else _printable(value[:100])}"
                for field, value in params
            )
            _log.info("IMAP client {host} identifies as {params}", host=self._host, params=shown)
        fields = b" ".join(quoted(item) for item in (b"name", b"tmail", b"version", _VERSION))
        self.sendUntaggedResponse(b"ID (%s)" % fields)
        self.sendPositiveResponse(tag, b"ID completed")

    def arg_idparams(self, line: bytes) -> Any:
        """
        C{NIL} or a list of field and value strings (RFC 2971 4), within
        the limits of RFC 2971 3.3; fields and values may be literals.
        """
        line = line.lstrip(b" ")
        word = line.split(b" ", 1)[0]
        if word.upper() == b"NIL":
            return None, line[3:]
        if line[:1] != b"(":
            raise imap4.IllegalClientResponse("ID takes NIL or a parenthesized list")
        return self._idItems(line[1:], [])

    def _idItems(self, line: bytes, items: list[bytes | None]) -> Any:
        while True:
            line = line.lstrip(b" ")
            isValue = len(items) % 2 == 1
            if line[:1] == b")":
                if isValue:
                    raise imap4.IllegalClientResponse("ID field without a value")
                if not items:
                    raise imap4.IllegalClientResponse("Empty ID list; send NIL")
                pairs = [(items[i], items[i + 1]) for i in range(0, len(items), 2)]
                return pairs, line[1:]
            if isValue and line[:3].upper() == b"NIL" and line[3:4] in (b" ", b")"):
                items.append(None)
                line = line[3:]
                continue
            if line[:1] == b'"':
                value, end = parseQuoted(line)
                self._addIdItem(items, value)
                line = line[end:]
                self._idSeparator(line)
                continue
            marker = wholeLiteral(line)
            if marker is not None:
                if marker[0] > ID_MAX_VALUE:
                    raise imap4.IllegalClientResponse("ID value too long")

                def literal(parsed: tuple[bytes, bytes]) -> Any:
                    self._addIdItem(items, parsed[0])
                    self._idSeparator(parsed[1])
                    return self._idItems(parsed[1], items)

                return self._stringLiteral(*marker).addCallback(literal)
            if not line:
                raise imap4.IllegalClientResponse("Unbalanced parenthesis in ID list")
            raise imap4.IllegalClientResponse("ID fields and values must be strings")

    def _idSeparator(self, rest: bytes) -> None:
        if not rest:
            raise imap4.IllegalClientResponse("Unbalanced parenthesis in ID list")
        if rest[:1] not in (b" ", b")"):
            raise imap4.IllegalClientResponse("Missing space in ID list")

    def _addIdItem(self, items: list[bytes | None], value: bytes) -> None:
        if len(items) % 2 == 0:
            if len(value) > ID_MAX_FIELD:
                raise imap4.IllegalClientResponse("ID field name too long")
            if len(items) >= 2 * ID_MAX_PAIRS:
                raise imap4.IllegalClientResponse("Too many ID fields")
        elif len(value) > ID_MAX_VALUE:
            raise imap4.IllegalClientResponse("ID value too long")
        items.append(value)

    unauth_ID = auth_ID = select_ID = (do_ID, arg_idparams)

    # ENABLE (RFC 5161)

    #: Extensions a client may turn on with ENABLE (upper case).
    ENABLEABLE: frozenset[bytes] = frozenset(
        {b"CONDSTORE", b"QRESYNC", b"IMAP4REV2", b"UTF8=ACCEPT"}
    )
    #: How ENABLED spells them, when not in upper case.
    _SPELLING = {b"IMAP4REV2": b"IMAP4rev2"}
    #: The extensions this session's client turned on (upper case).
    enabled: frozenset[bytes] = frozenset()

    @property
    def rev2(self) -> bool:
        """
        Whether the client enabled IMAP4rev2 (RFC 9051): no C{RECENT}, SEARCH
        answered with ESEARCH, a LIST response in SELECT, UTF-8 names.
        """
        return b"IMAP4REV2" in self.enabled

    @property
    def utf8Names(self) -> bool:
        """Whether mailbox names travel as UTF-8 (IMAP4rev2 or UTF8=ACCEPT, RFC 6855)."""
        return bool(self.enabled & {b"IMAP4REV2", b"UTF8=ACCEPT"})

    def decodeMailbox(self, raw: bytes) -> str:
        return decodeUTF8Name(raw) if self.utf8Names else super().decodeMailbox(raw)

    def decodeListPattern(self, raw: bytes) -> str:
        return decodePattern(raw, self.utf8Names)

    def encodeMailbox(self, name: str) -> bytes:
        """A mailbox name as this client reads it, quoted."""
        return quoted(name.encode("utf-8") if self.utf8Names else encodeName(name))

    @property
    def condstore(self) -> bool:
        """Whether CONDSTORE is on: FETCH responses for flag changes carry MODSEQ."""
        return b"CONDSTORE" in self.enabled

    @property
    def qresync(self) -> bool:
        """Whether QRESYNC is on: VANISHED instead of EXPUNGE."""
        return b"QRESYNC" in self.enabled

    def _enableCondstore(self) -> None:
        """
        A CONDSTORE-enabling command (RFC 7162 3.1) was used: the first
        one with a mailbox selected brings its HIGHESTMODSEQ, in an
        untagged OK before the command's tagged reply, as Dovecot sends it.
        """
        if b"CONDSTORE" in self.enabled:
            return
        self.enabled = self.enabled | {b"CONDSTORE"}
        mbox = self.mbox
        if mbox is not None and self.state == "select" and mbox.modSeqs:
            self.sendUntaggedResponse(b"OK [HIGHESTMODSEQ %d] Highest" % mbox.toldModSeq())

    def do_ENABLE(self, tag: bytes, line: bytes) -> None:
        names: list[bytes] = []
        rest = line.strip(b" ")
        if not rest:
            raise imap4.IllegalClientResponse("ENABLE needs a capability name")
        while rest:
            name, rest = splitAtom(rest)
            names.append(name.upper())
        turnedOn = [name for name in dict.fromkeys(names) if name in self.ENABLEABLE - self.enabled]
        self.enabled = self.enabled | frozenset(turnedOn)
        if b"QRESYNC" in turnedOn:
            self._enableCondstore()
        spelled = [self._SPELLING.get(name, name) for name in turnedOn]
        self.sendUntaggedResponse(b" ".join([b"ENABLED", *spelled]))
        self.sendPositiveResponse(tag, b"ENABLE completed")

    auth_ENABLE = (do_ENABLE, _S.arg_line)
