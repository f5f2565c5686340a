# -*- test-case-name: tests.imap.test_imap_urlauth -*-
"""
URLAUTH (RFC 4467): URLs that carry their own authorization, so that a
message part can be handed to another party (the submission server, BURL
of RFC 4468, or another user) without a password.

The one mechanism is C{INTERNAL}: the token is the HMAC-SHA256 (the
standard library's C{hmac}) of the rump URL (everything up to and
including C{;URLAUTH=<access>}) under the mailbox access key of the URL's
mailbox, a random key per user per mailbox kept by the store
(L{tmail.interfaces.IMailboxKeys}); tokens are compared in constant time.
RESETKEY replaces keys, which makes every URL issued with them invalid.

Access identifiers (RFC 4467 3): C{anonymous} (anyone), C{authuser} (any
user logged in to this server), C{user+<name>} (that user over IMAP) and
C{submit+<name>} (the submission server sending for that user: BURL).
A URL is valid only for this server (its host is the configured URL host)
and, past C{;EXPIRE=}, not at all.
"""

from __future__ import annotations

import bisect
import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import BinaryIO, cast

from twisted.cred.credentials import IUsernamePassword
from twisted.cred.portal import Portal
from twisted.internet.defer import ensureDeferred, maybeDeferred
from twisted.python.failure import Failure

from tmail.errors import InvalidFolderName, NoSuchFolder
from tmail.imap.imapurl import IMAPURL, BadURL, decodeComponent
from tmail.imap.waiting import answered
from tmail.interfaces import (
    IMailboxKeys,
    IMailFolder,
    IMailRealm,
    IMailStore,
    IURLAuthStore,
)
from tmail.store.urlauthkeys import KEY_BYTES

__all__ = [
    "INTERNAL",
    "Accessor",
    "URLAuthority",
    "URLError",
    "URLGone",
    "computeToken",
    "userAddressRule",
]

#: The mechanism name as URLs carry it (RFC 4467's examples spell it so).
INTERNAL = "internal"


class URLError(Exception):
    """A URL that cannot be used: invalid, not ours, unauthorized or gone."""


class URLGone(URLError):
    """An authorized URL whose message or body part is not there (any more)."""


@dataclass(frozen=True)
class Accessor:
    """
    Who wants a URL's data: C{user} (canonical address) logged in over
    IMAP (C{submit=False}) or the submission server sending for C{user}
    (C{submit=True}).
    """

    user: str
    submit: bool = False


def userAddressRule(portal: Portal) -> Callable[[str], str]:
    """
    How user names in URLs become canonical addresses: as the portal's
    password checker turns login names into them (a default domain
    added), else lower-cased.
    """
    checker = portal.checkers.get(IUsernamePassword)
    rule = getattr(checker, "loginAddress", None)
    if callable(rule):
        return lambda name: str(rule(name))
    return str.lower


def hasMessage(folder: IMailFolder, uid: int) -> bool:
    """Whether the folder holds message C{uid} (from its index, without reading it)."""
    infos = folder.messages()
    index = bisect.bisect_left(infos, uid, key=lambda info: info.uid)
    return index < len(infos) and infos[index].uid == uid


def computeToken(key: bytes, rump: str) -> str:
    """The INTERNAL token of a rump URL: HMAC-SHA256 in lower-case hex."""
    return hmac.new(key, rump.encode("ascii"), hashlib.sha256).hexdigest()


class URLAuthority:
    """
    Decides what IMAP URLs naming this server may open, and opens them
    through the store.  Shared by an IMAP listener (CATENATE, URLFETCH,
    GENURLAUTH) and the submission listener (BURL).

    @param storeFor: the store of a user (canonical address): the realm's.
    @param host: the host (optionally C{host:port}) IMAP URLs name this
        server by; a URL naming another host is never opened.
    @param userAddress: the canonical address of a user name as a URL
        gives it (the login name rules: a default domain may be added).
    @param knownUser: whether a canonical address is a user of the
        directory: a URL's user name is the client's, and only a known
        user's store is ever looked up (or made).
    """

    def __init__(
        self,
        storeFor: Callable[[str], IMailStore],
        host: str,
        userAddress: Callable[[str], str] = str.lower,
        *,
        knownUser: Callable[[str], bool],
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.storeFor = storeFor
        self.host = host.lower()
        self.userAddress = userAddress
        self.knownUser = knownUser
        self.now = now

    @classmethod
    def forRealm(cls, realm: IMailRealm, host: str, portal: Portal | None) -> URLAuthority:
        """An authority over the stores and directory of C{realm}."""
        rule = userAddressRule(portal) if portal is not None else str.lower
        return cls(realm.storeFor, host, rule, knownUser=realm.directory.hasUser)

    def isLocal(self, url: IMAPURL) -> bool:
        """Whether C{url} names this server (a relative URL always does)."""
        if url.host is None:
            return True
        if url.host == self.host:
            return True
        name, _, port = url.host.rpartition(":")
        return ":" not in self.host and bool(name) and port.isdigit() and name == self.host

    def owner(self, url: IMAPURL) -> str:
        """The canonical address of the user whose mailbox C{url} names."""
        if url.user is None or not url.user:
            raise URLError("The URL names no user")
        address = self.userAddress(url.user)
        if not self.knownUser(address):
            raise URLError("No such user")
        return address

    def keys(self, user: str) -> IMailboxKeys:
        store = self.storeFor(user)
        if not IURLAuthStore.providedBy(store):
            raise URLError("This store keeps no URLAUTH keys")
        keys: IMailboxKeys = store.mailboxKeys()
        return keys

    async def folder(self, user: str, url: IMAPURL) -> IMailFolder:
        """The folder C{url} names, of C{user}, with its UIDVALIDITY checked."""
        try:
            folder: IMailFolder = await maybeDeferred(self.storeFor(user).getFolder, url.mailbox)
        except (NoSuchFolder, InvalidFolderName):
            raise URLError("No such mailbox") from None
        if url.uidvalidity is not None and url.uidvalidity != folder.uidValidity():
            raise URLError("The mailbox's UIDVALIDITY changed")
        return folder

    async def generate(self, url: IMAPURL, user: str, mechanism: str) -> str:
        """
        GENURLAUTH: the full URL for a rump URL C{url} of C{user}'s own
        mailbox.  Raises L{URLError} when it cannot be made.
        """
        if mechanism.upper() != INTERNAL.upper():
            raise URLError("Unknown URLAUTH mechanism")
        if not url.absolute or url.rump is None or url.rump != url.text:
            raise URLError("Not a rump URLAUTH URL")
        if not self.isLocal(url):
            raise URLError("The URL names another server")
        if self.owner(url) != user:
            raise URLError("The URL names another user")
        self._checkAccess(url)
        if url.expire is not None and url.expire <= self.now():
            raise URLError("The URL has expired")
        folder = await self.folder(user, url)
        if not hasMessage(folder, url.uid):
            raise URLError("No such message")
        key = self.keys(user).keyFor(folder.name, folder.uidValidity())
        return f"{url.rump}:{INTERNAL}:{computeToken(key, url.rump)}"

    async def reset(self, user: str, mailbox: str | None) -> None:
        """RESETKEY: new keys for one of C{user}'s mailboxes or all of them."""
        if mailbox is not None:
            try:
                folder: IMailFolder = await maybeDeferred(self.storeFor(user).getFolder, mailbox)
                mailbox = folder.name
            except InvalidFolderName:
                raise NoSuchFolder(mailbox) from None
        self.keys(user).reset(mailbox)

    def _checkAccess(self, url: IMAPURL) -> None:
        access = (url.access or "").lower()
        if access.startswith(("submit+", "user+")):
            name = access.partition("+")[2]
            try:
                self.userAddress(_decoded(name))
            except BadURL:
                raise URLError("Invalid access identifier") from None
        elif access not in ("authuser", "anonymous"):
            raise URLError("Invalid access identifier")

    def mayAccess(self, url: IMAPURL, who: Accessor | None) -> bool:
        """Whether the access identifier of C{url} lets C{who} use it."""
        access = (url.access or "").lower()
        if access == "anonymous":
            return True
        if who is None:
            return False
        if access == "authuser":
            return not who.submit
        kind, _, name = access.partition("+")
        if kind not in ("submit", "user") or (kind == "submit") != who.submit:
            return False
        try:
            return self.userAddress(_decoded(name)) == who.user
        except BadURL:
            return False

    async def authorize(self, url: IMAPURL, who: Accessor | None) -> tuple[str, IMailFolder]:
        """
        Check a full URLAUTH URL for C{who}: ours, within its time, allowed
        to C{who}, its token right.  Returns the owner and folder.
        """
        if not url.absolute or url.rump is None or url.token is None:
            raise URLError("Not a URLAUTH URL")
        if (url.mechanism or "").upper() != INTERNAL.upper():
            raise URLError("Unknown URLAUTH mechanism")
        if not self.isLocal(url):
            raise URLError("The URL names another server")
        if url.expire is not None and url.expire <= self.now():
            raise URLError("The URL has expired")
        if not self.mayAccess(url, who):
            raise URLError("The URL is not for this user")
        owner = self.owner(url)
        folder: IMailFolder | None = None
        key: bytes | None = None
        try:
            folder = await self.folder(owner, url)
            key = self.keys(owner).key(folder.name, folder.uidValidity())
        except URLError:
            pass
        # RFC 4467 7: with no mailbox (or key) a token is still computed, from
        # a random key, so the time taken tells nothing of mailbox names.
        expected = computeToken(key or secrets.token_bytes(KEY_BYTES), url.rump)
        if not hmac.compare_digest(expected, url.token) or folder is None or key is None:
            raise URLError("Invalid URLAUTH token")
        return owner, folder

    async def opening(self, url: IMAPURL, who: Accessor | None, own: bool = False) -> BinaryIO:
        """
        Open the message C{url} names for C{who}: a URLAUTH URL that
        L{authorize} accepts, or, with C{own} (CATENATE), a URL naming
        C{who}'s own mailbox.  Cheap (the store opens the file); reading
        the bytes is L{tmail.imap.urlparts.extract}'s, in a thread.
        """
        if not self.isLocal(url):
            raise URLError("The URL names another server")
        if url.token is not None:
            _, folder = await self.authorize(url, who)
        elif own and who is not None and (url.user is None or self.owner(url) == who.user):
            folder = await self.folder(who.user, url)
        else:
            raise URLError("The URL is not for this user")
        try:
            opened: BinaryIO = await maybeDeferred(folder.openMessage, url.uid)
        except KeyError:
            raise URLGone("No such message") from None
        return opened

    def locate(self, url: IMAPURL, who: Accessor | None, own: bool = False) -> BinaryIO:
        """
        L{opening}, for a store that answers at once: a store that answers
        later is L{URLError} here (use L{opening}).
        """
        done, result = answered(ensureDeferred(self.opening(url, who, own)))
        if not done:
            raise URLError("The message cannot be opened now")
        if isinstance(result, Failure):
            result.raiseException()
        return cast(BinaryIO, result)


def _decoded(name: str) -> str:
    return decodeComponent(name, "user")
