"""
The MIME parser the IMAP server uses (L{MimeEntity}, L{bodyStructure},
L{envelope}, FETCH sections and BINARY decoding) on fuzzed messages, alone
and through the server (APPEND, then FETCH and SEARCH), within the per-input
budget.
"""

from __future__ import annotations

import contextlib

from hypothesis import given
from hypothesis import strategies as st

from support.budget import Budget, measured
from support.fuzzing import replay
from support.fuzzprofile import fuzzSettings
from support.mailworld import MailWorld
from support.mimeinputs import FIELDS, KINDS, PATHS, allMessages
from tmail.imap.binary import UnknownCTE, binaryContentPieces
from tmail.imap.mimeentity import MimeEntity
from tmail.imap.structure import bodyStructure, envelope


@fuzzSettings(2.0)
@given(
    raw=allMessages,
    path=PATHS,
    kind=KINDS,
    fields=FIELDS,
)
def test_mime_parser_within_budget(
    raw: bytes, path: tuple[int, ...], kind: str, fields: list[bytes]
) -> None:
    """Every structure, envelope and section of any message is computed within the budget."""
    with measured(Budget(), "MIME parsing"):
        entity = MimeEntity(raw)
        bodyStructure(entity)
        bodyStructure(MimeEntity(raw), extended=False)
        envelope(entity.header)
        entity.section(path, kind, fields)
        with contextlib.suppress(UnknownCTE):
            found = binaryContentPieces(entity, tuple(p for p in path if p >= 0))
            b"".join(found or ())


_ITEMS = st.sampled_from(
    [
        b"BODYSTRUCTURE",
        b"(ENVELOPE BODY)",
        b"BODY.PEEK[1.2.3.MIME]",
        b"BODY.PEEK[2.1.HEADER.FIELDS (SUBJECT)]",
        b"BINARY.PEEK[1.1]",
        b"BINARY.SIZE[2]",
        b"(BODY.PEEK[TEXT]<0.100> RFC822.SIZE)",
    ]
)
_SEARCHES = st.sampled_from([b"TEXT deep", b"BODY text", b"HEADER Subject in", b"OR TEXT a BODY b"])


@fuzzSettings(0.6)
@given(raw=allMessages, item=_ITEMS, search=_SEARCHES)
def test_fetch_and_search_of_any_message_within_budget(
    world: MailWorld, raw: bytes, item: bytes, search: bytes
) -> None:
    """A stored message, however built, never breaks FETCH or SEARCH of its folder."""
    program = (
        b"a APPEND INBOX {%d+}\r\n" % len(raw)
        + raw
        + b"\r\nb FETCH * "
        + item
        + b"\r\nc SEARCH "
        + search
        + b"\r\nd UID SORT (SUBJECT) UTF-8 "
        + search
        + b"\r\n"
    )
    replay(world, "imap", "select", [program])
