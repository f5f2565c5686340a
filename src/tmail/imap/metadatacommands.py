# -*- test-case-name: tests.imap.test_imap_protocol -*-
"""
METADATA and METADATA-SERVER (RFC 5464): GETMETADATA and SETMETADATA over
the store's entries (L{tmail.imap.metadata} parses and formats them), values
possibly literals, within the configured size limits.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred, maybeDeferred

from tmail.imap import metadata
from tmail.imap.account import checkName
from tmail.imap.session import IMAPSession, no
from tmail.interfaces import (
    IMetadataStore,
)

__all__ = ["MetadataCommands"]


class MetadataCommands(IMAPSession):
    """GETMETADATA and SETMETADATA for an L{tmail.imap.server.IMAPServer}."""

    # METADATA and METADATA-SERVER (RFC 5464, with L{tmail.imap.metadata})

    def arg_metadata(self, line: bytes) -> Any:
        """GETMETADATA or SETMETADATA arguments, values possibly literals (literal8 too)."""
        tokenizer = metadata.metadataTokenizer()

        def feed(line: bytes) -> Any:
            marker = tokenizer.feed(line)
            if marker is None:
                return tokenizer.result(), b""
            if marker[0] > self.settings.max_metadata_size:
                limit = self.settings.max_metadata_size
                raise no(b"[METADATA MAXSIZE %d] Metadata value too long" % limit)

            def literal(parsed: tuple[bytes, bytes]) -> Any:
                tokenizer.addLiteral(parsed[0])
                return feed(parsed[1])

            return self._stringLiteral(*marker).addCallback(literal)

        return feed(line)

    def _metadataTarget(self, raw: bytes) -> tuple[IMetadataStore, str | None, bytes]:
        """The store, the folder (C{None}: the server) and its name as sent back."""
        account = self._account()
        store = account.store
        if not IMetadataStore.providedBy(store):
            raise no(b"This server keeps no metadata")
        if not raw:
            return store, None, b'""'
        name = checkName(self.decodeMailbox(raw), account.delimiter)
        return store, name, self.encodeMailbox(name)

    def do_GETMETADATA(self, tag: bytes, tokens: list[Any]) -> Deferred[None]:
        return ensureDeferred(self._getMetadata(tag, tokens))

    async def _getMetadata(self, tag: bytes, tokens: list[Any]) -> None:
        request = metadata.parseGet(tokens)
        store, folder, mailbox = self._metadataTarget(request.mailbox)
        found = metadata.select(await maybeDeferred(store.metadata, folder), request)
        if found.entries:
            self.sendUntaggedResponse(metadata.response(mailbox, found.entries))
        code = b"[METADATA LONGENTRIES %d] " % found.longest if found.longest else b""
        self.sendPositiveResponse(tag, code + b"GETMETADATA completed")

    auth_GETMETADATA = select_GETMETADATA = (do_GETMETADATA, arg_metadata)

    def do_SETMETADATA(self, tag: bytes, tokens: list[Any]) -> Deferred[None]:
        raw, changes = metadata.parseSet(tokens)
        settings = self.settings
        store, folder, _ = self._metadataTarget(raw)
        metadata.checkSizes(changes, settings.max_metadata_size)
        check = metadata.limitCheck(settings.max_metadata_entries, settings.max_metadata_total)
        updated = maybeDeferred(store.updateMetadata, folder, changes, check)
        return updated.addCallback(
            lambda _: self.sendPositiveResponse(tag, b"SETMETADATA completed")
        )

    auth_SETMETADATA = select_SETMETADATA = (do_SETMETADATA, arg_metadata)
