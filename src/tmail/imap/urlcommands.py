# -*- test-case-name: tests.imap.test_imap_urlauth -*-
"""
The URLAUTH commands (RFC 4467): GENURLAUTH, RESETKEY and URLFETCH, the
last with URLAUTH=BINARY's fetch parameters (RFC 5524: BODYPARTSTRUCTURE,
BINARY, BODY), as a mixin of L{tmail.imap.server.IMAPServer}.

URLFETCH answers C{NIL} for a URL it cannot serve (RFC 4467 7: invalid,
another server's, unauthorized, expired, gone) and never says which;
GENURLAUTH fails as a whole (C{NO}) when any of its URLs cannot be made.
Each URL's message is read and taken apart in a worker thread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, BinaryIO

from twisted.internet.defer import Deferred, ensureDeferred, succeed
from twisted.mail import imap4
from twisted.python.failure import Failure

from tmail.errors import NoSuchFolder
from tmail.imap.imapurl import IMAPURL, BadURL, parseURL
from tmail.imap.mimeentity import MimeLimits
from tmail.imap.session import CommandError, IMAPSession, no
from tmail.imap.structure import string
from tmail.imap.urlauth import Accessor, URLAuthority, URLError
from tmail.imap.urlparts import Extracted, extract

if TYPE_CHECKING:
    from tmail.config.schema import IMAPSettings
    from tmail.imap.account import IMAPAccount

__all__ = ["URLAuthCommands", "urlFetchResponse"]

_FETCH_PARAMS = frozenset({b"BODYPARTSTRUCTURE", b"BINARY", b"BODY"})
#: RFC 4467 6: the mechanisms RESETKEY reports.
URLMECH = b"[URLMECH INTERNAL]"


def _text(token: Any) -> str:
    if not isinstance(token, bytes):
        raise imap4.IllegalClientResponse("Expected a string")
    try:
        return token.decode("ascii")
    except UnicodeDecodeError:
        return "\ufffd"


def urlFetchResponse(url: bytes, params: frozenset[bytes] | None, found: Extracted | None) -> bytes:
    """One URL's part of a C{* URLFETCH} response."""
    if found is None:
        return string(url) + b" NIL"
    if params is None:
        return string(url) + b" " + _literal(found.data, False)
    items = [string(url)]
    if b"BODYPARTSTRUCTURE" in params:
        if found.structure is None:
            return string(url) + b" NIL"
        items.append(b"(BODYPARTSTRUCTURE " + found.structure + b")")
    if b"BINARY" in params:
        binary = b"NIL" if found.binary is None else _literal(found.binary, True)
        items.append(b"(BINARY " + binary + b")")
    elif b"BODY" in params:
        items.append(b"(BODY " + _literal(found.data, False) + b")")
    return b" ".join(items)


def _literal(data: bytes, binary: bool) -> bytes:
    marker = b"~{%d}" if binary and b"\x00" in data else b"{%d}"
    return marker % len(data) + b"\r\n" + data


class URLAuthCommands:
    """GENURLAUTH, RESETKEY and URLFETCH for an L{IMAPServer}."""

    if TYPE_CHECKING:
        settings: IMAPSettings
        factory: Any
        runInThread: Callable[..., Deferred[Any]]

        def _account(self) -> IMAPAccount: ...
        def sendUntaggedResponse(self, message: bytes, isAsync: Any = None) -> None: ...
        def sendPositiveResponse(self, tag: bytes | None = None, message: bytes = b"") -> None: ...
        def decodeMailbox(self, raw: bytes) -> str: ...

    def urlAuthority(self) -> URLAuthority | None:
        """What opens IMAP URLs for this session, C{None} when nothing does."""
        authority: URLAuthority | None = getattr(getattr(self, "factory", None), "urls", None)
        return authority

    def urlCapabilities(self) -> dict[bytes, list[bytes] | None]:
        """CATENATE, URLAUTH and URLAUTH=BINARY, when they work here."""
        if self.urlAuthority() is None:
            return {}
        caps: dict[bytes, list[bytes] | None] = {b"CATENATE": None}
        if self.settings.urlauth:
            caps[b"URLAUTH"] = None
            caps[b"URLAUTH=BINARY"] = None
        return caps

    def _authority(self) -> URLAuthority:
        authority = self.urlAuthority()
        if authority is None or not self.settings.urlauth:
            raise CommandError(b"BAD", b"Unknown command")
        return authority

    def _mimeLimits(self) -> MimeLimits:
        return MimeLimits(self.settings.max_mime_depth, self.settings.max_mime_parts)

    # GENURLAUTH

    def do_GENURLAUTH(self, tag: bytes, tokens: list[Any]) -> Deferred[None]:
        authority = self._authority()
        if not tokens or len(tokens) % 2:
            raise imap4.IllegalClientResponse("Expected URL and mechanism pairs")
        return ensureDeferred(self._genURLAuth(tag, tokens, authority))

    async def _genURLAuth(self, tag: bytes, tokens: list[Any], authority: URLAuthority) -> None:
        user = self._account().user
        made = []
        for raw, mechanism in zip(tokens[::2], tokens[1::2], strict=True):
            text, mech = _text(raw), _text(mechanism)
            try:
                made.append(await authority.generate(parseURL(text), user, mech))
            except (BadURL, URLError, NoSuchFolder) as e:
                reason = str(e) if isinstance(e, URLError) else "Invalid URL"
                raise no(b"GENURLAUTH failed: " + reason.encode("ascii")) from None
        self.sendUntaggedResponse(
            b"GENURLAUTH " + b" ".join(string(url.encode("ascii")) for url in made)
        )
        self.sendPositiveResponse(tag, b"GENURLAUTH completed")

    auth_GENURLAUTH = select_GENURLAUTH = (do_GENURLAUTH, IMAPSession.arg_searchkeys)

    # RESETKEY

    def do_RESETKEY(self, tag: bytes, tokens: list[Any]) -> Deferred[None]:
        return ensureDeferred(self._resetKey(tag, tokens))

    async def _resetKey(self, tag: bytes, tokens: list[Any]) -> None:
        authority = self._authority()
        user = self._account().user
        if not tokens:
            await authority.reset(user, None)
            self.sendPositiveResponse(tag, b"All keys removed")
            return
        name = tokens[0]
        if not isinstance(name, bytes):
            raise imap4.IllegalClientResponse("Expected a mailbox name")
        for mechanism in tokens[1:]:
            if _text(mechanism).upper() != "INTERNAL":
                raise no(b"Unknown URLAUTH mechanism")
        mailbox = self.decodeMailbox(name)
        await authority.reset(user, mailbox)
        self.sendPositiveResponse(tag, URLMECH + b" Key reset")

    auth_RESETKEY = select_RESETKEY = (do_RESETKEY, IMAPSession.arg_searchkeys)

    # URLFETCH

    def do_URLFETCH(self, tag: bytes, tokens: list[Any]) -> Deferred[None]:
        authority = self._authority()
        if not tokens:
            raise imap4.IllegalClientResponse("Expected URLs")
        requests: list[tuple[bytes, frozenset[bytes] | None]] = []
        for token in tokens:
            if isinstance(token, list):
                if not token or not isinstance(token[0], bytes):
                    raise imap4.IllegalClientResponse("Expected a URL")
                params = frozenset(_text(p).upper().encode() for p in token[1:])
                if not params <= _FETCH_PARAMS or len(params) != len(token) - 1:
                    raise imap4.IllegalClientResponse("Unknown URLFETCH parameter")
                if {b"BINARY", b"BODY"} <= params:
                    raise imap4.IllegalClientResponse("BINARY and BODY exclude each other")
                requests.append((token[0], params))
            else:
                requests.append((token, None))
        who = Accessor(self._account().user)
        parts: list[bytes] = []

        def fetchOne(index: int) -> Deferred[None]:
            if index == len(requests):
                self.sendUntaggedResponse(b"URLFETCH " + b" ".join(parts))
                self.sendPositiveResponse(tag, b"URLFETCH completed")
                return succeed(None)
            raw, params = requests[index]

            def got(found: Extracted | None) -> Deferred[None]:
                parts.append(urlFetchResponse(raw, params, found))
                return fetchOne(index + 1)

            return self._fetchURL(authority, raw, params, who).addCallback(got)

        return fetchOne(0)

    auth_URLFETCH = select_URLFETCH = (do_URLFETCH, IMAPSession.arg_searchkeys)

    def _fetchURL(
        self,
        authority: URLAuthority,
        raw: bytes,
        params: frozenset[bytes] | None,
        who: Accessor,
    ) -> Deferred[Extracted | None]:
        """What one URL names, or C{None} when it cannot be served."""
        try:
            url: IMAPURL = parseURL(_text(raw))
            if url.token is None:
                raise URLError("Not a URLAUTH URL")
        except (BadURL, URLError):
            return succeed(None)
        wanted = params or frozenset()

        def opened(source: BinaryIO) -> Deferred[Extracted | None]:
            found: Deferred[Extracted | None] = self.runInThread(
                extract,
                source,
                url,
                self._mimeLimits(),
                binary=b"BINARY" in wanted,
                structure=b"BODYPARTSTRUCTURE" in wanted,
            )
            return found

        def failed(failure: Failure) -> None:
            if not isinstance(failure.value, URLError):
                raise failure.value  # type: ignore[misc]

        opening = ensureDeferred(authority.opening(url, who))
        return opening.addCallback(opened).addErrback(failed)
