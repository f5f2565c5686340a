"""
The realm: the one place that maps a user or a recipient address to storage.

L{MailRealm} hands out one avatar for every front end, an L{IMailUser}
(who the user is and its L{IMailStore}: each front end makes an IMAP
account or a POP3 mailbox of it), and resolves recipient addresses
(sub-addresses, aliases, catch-alls) for SMTP and the queue.  Subclasses decide
where a user's mail lives by overriding L{MailRealm.mailboxPath}, or keep it
somewhere else entirely by overriding L{MailRealm.createStore}.

The realm also decides each user's quota: the configured default
(C{[quota]}), overridden by the user's Dovecot-style C{quota_rule} fields in
the directory (see L{MailRealm.quotaLimits}).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from zope.interface import implementer

from tmail.directory.addresses import normalizeDomain
from tmail.errors import DirectoryError, NotHostedDomain, RecipientError, UnknownRecipient
from tmail.interfaces import (
    Destinations,
    IForwardingRealm,
    IMailStore,
    IMailUser,
    IUserDirectory,
    IUserFields,
)
from tmail.store.filework import FileWork
from tmail.store.maildir import MaildirStore
from tmail.store.quota import QuotaLimits, limitsFromFields

#: How deep alias chains may go before delivery gives up on a loop.
MAX_ALIAS_DEPTH = 10


#: The reserved mailbox every mail domain has (RFC 5321 4.5.1).
POSTMASTER = "postmaster"


def splitAddress(address: str) -> tuple[str, str]:
    """
    Split C{local@domain}, the domain in its canonical form (lower case, an
    internationalized name as its C{xn--} spelling, as the directory keeps
    it); C{ValueError} if malformed.
    """
    local, at, domain = address.strip().rpartition("@")
    if not at or not local or not domain:
        raise ValueError(f"not an address: {address!r}")
    try:
        return local, normalizeDomain(domain)
    except DirectoryError:
        return local, domain.lower()


@implementer(IMailUser)
class MailUser:
    """A user who logged in, and its store (the L{IMailUser} a realm hands out)."""

    def __init__(self, name: str, store: IMailStore) -> None:
        self.name = name
        self.store = store

    def __repr__(self) -> str:
        return f"MailUser({self.name!r})"


@implementer(IForwardingRealm)
class MailRealm:
    """
    Base realm over an L{IUserDirectory}.

    @ivar recipientDelimiter: separates a user from a sub-address tag
        (C{user+tag@domain} delivers to C{user@domain}); empty to disable.
    @ivar defaultQuota: every user's limits unless the directory gives the
        user their own (no limits by default).
    @ivar fileWork: where the Maildir stores L{createStore} makes do their
        file work: the server's thread pool, L{tmail.store.filework.INLINE}
        for command-line tools; C{None}: the process's default pool
        (L{tmail.store.filework.defaultFileWork}).
    """

    recipientDelimiter = "+"

    def __init__(
        self,
        directory: IUserDirectory,
        *,
        quota: QuotaLimits | None = None,
        fileWork: FileWork | None = None,
    ) -> None:
        self.directory = directory
        self.defaultQuota = quota or QuotaLimits()
        self.fileWork = fileWork
        self._stores: dict[str, IMailStore] = {}

    def mailboxPath(self, user: str) -> Path:
        """Where the Maildir of C{user} lives; subclasses define it."""
        raise NotImplementedError

    def createStore(self, user: str) -> IMailStore:
        """
        Make the store of C{user}: a Maildir at L{mailboxPath} that keeps
        the quota L{quotaLimits} gives (asked again at every delivery, so a
        changed setting applies at once), doing its file work with
        L{fileWork}.
        """
        return MaildirStore(
            self.mailboxPath(user),
            quota=lambda: self.quotaLimits(user),
            fileWork=self.fileWork,
        )

    def quotaLimits(self, user: str) -> QuotaLimits:
        """
        The limits of C{user}: L{defaultQuota}, with what the user's
        C{quota_rule} fields (C{quota_rule=*:storage=100M},
        C{quota_rule2=*:messages=1000}, as Dovecot reads them from a userdb)
        override, when the directory provides L{IUserFields}.
        """
        if not IUserFields.providedBy(self.directory):
            return self.defaultQuota
        return limitsFromFields(self.directory.userFields(user), self.defaultQuota)

    def storeFor(self, user: str) -> IMailStore:
        key = user.lower()
        store = self._stores.get(key)
        if store is None:
            store = self._stores[key] = self.createStore(key)
        return store

    def requestAvatar(
        self, avatarId: bytes | tuple[()], mind: object, *interfaces: Any
    ) -> tuple[Any, Any, Callable[[], None]]:
        """An L{IMailUser} over the user's store; no other avatar."""
        if not isinstance(avatarId, bytes):
            raise NotImplementedError("anonymous access has no mailbox")
        if IMailUser not in interfaces:
            raise NotImplementedError(f"no avatar for {interfaces!r}: a realm hands out IMailUser")
        user = avatarId.decode("utf-8")
        return IMailUser, MailUser(user, self.storeFor(user)), lambda: None

    def _local(self, address: str) -> str | None:
        """The canonical user an address names directly (with or without a tag)."""
        local, domain = splitAddress(address)
        if self.directory.hasUser(f"{local}@{domain}"):
            return f"{local}@{domain}".lower()
        if self.recipientDelimiter and self.recipientDelimiter in local:
            base = local.split(self.recipientDelimiter, 1)[0]
            if base and self.directory.hasUser(f"{base}@{domain}"):
                return f"{base}@{domain}".lower()
        return None

    def hostsDomain(self, domain: str) -> bool:
        """Whether mail for C{domain} (canonical form) is stored here."""
        return self.directory.hasDomain(domain)

    def resolveRecipient(self, address: str) -> list[str]:
        """
        The local users mail to C{address} goes to (see L{destinations});
        L{RecipientError} when it goes only outside the hosted domains.
        """
        found = self.destinations(address)
        if not found.local:
            raise RecipientError(f"alias {address} points outside the hosted domains")
        return list(found.local)

    def destinations(self, address: str) -> Destinations:
        """
        Where mail to C{address} goes.  C{postmaster} is always accepted
        (RFC 5321 4.5.1): at a hosted domain without a user or alias of
        that name it goes to the mailbox C{postmaster@domain} (which an
        operator reads by creating that user, or redirects with an alias);
        a bare C{postmaster} means that of the first domain.  Alias targets
        outside the hosted domains are the remote destinations.
        """
        if address.lower() == POSTMASTER:
            domains = sorted(d for d in self.directory.domains() if self.hostsDomain(d))
            if not domains:
                raise UnknownRecipient(address)
            address = f"{POSTMASTER}@{domains[0]}"
        try:
            local, domain = splitAddress(address)
        except ValueError as e:
            raise UnknownRecipient(str(e)) from None
        if not self.hostsDomain(domain):
            raise NotHostedDomain(domain)
        users: list[str] = []
        remote: list[str] = []
        self._expand(address, 0, users, remote)
        if not users and not remote and local.lower() == POSTMASTER:
            users = [f"{POSTMASTER}@{domain}"]
        if not users and not remote:
            raise UnknownRecipient(address)
        return Destinations(tuple(users), tuple(remote))

    def _expand(self, address: str, depth: int, users: list[str], remote: list[str]) -> None:
        """Add where C{address} (at a hosted domain) goes to C{users} and C{remote}."""
        if depth > MAX_ALIAS_DEPTH:
            raise RecipientError(f"alias loop at {address}")
        user = self._local(address)
        if user is not None:
            if user not in users:
                users.append(user)
            return
        local, domain = splitAddress(address)
        targets = self.directory.aliasTargets(f"{local}@{domain}")
        if targets is None and self.recipientDelimiter and self.recipientDelimiter in local:
            base = local.split(self.recipientDelimiter, 1)[0]
            targets = self.directory.aliasTargets(f"{base}@{domain}")
        for target in targets or ():
            _, targetDomain = splitAddress(target)
            if self.hostsDomain(targetDomain):
                self._expand(target, depth + 1, users, remote)
            elif target.lower() not in (r.lower() for r in remote):
                remote.append(target)
