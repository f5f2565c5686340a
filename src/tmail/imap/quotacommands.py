# -*- test-case-name: tests.imap.test_imap_quota -*-
"""
QUOTA (RFC 9208): GETQUOTAROOT and GETQUOTA answer from the user's store
(L{IQuotaStore}); SETQUOTA is refused, limits being the operator's
(C{tmail quota}).  One root, C{"User quota"}, for every folder.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, ensureDeferred, maybeDeferred, succeed
from twisted.mail import imap4

from tmail.imap.session import IMAPSession, no
from tmail.imap.structure import quoted
from tmail.interfaces import IQuotaStore, QuotaUsage

if TYPE_CHECKING:
    from tmail.imap.account import IMAPAccount

__all__ = ["QUOTA_ROOT", "QuotaCommands"]

#: The one quota root of a user, named as Dovecot names its default root.
QUOTA_ROOT = b"User quota"

_B = IMAPSession


class QuotaCommands(IMAPSession):
    """The QUOTA commands of an L{tmail.imap.server.IMAPServer}."""

    if TYPE_CHECKING:

        def _account(self) -> IMAPAccount: ...
        def encodeMailbox(self, name: str) -> bytes: ...

    def _quota(self) -> Deferred[QuotaUsage | None]:
        """The user's quota, or C{None} when the store keeps none (then there is no root)."""
        store = self._account().store
        if not IQuotaStore.providedBy(store):
            return succeed(None)
        return maybeDeferred(store.quota)

    def _sendQuota(self, usage: QuotaUsage) -> None:
        """One QUOTA response; STORAGE in units of 1024 octets, as RFC 9208 5.1 counts it."""
        resources = []
        if usage.storageLimit is not None:
            resources.append(b"STORAGE %d %d" % (usage.storage // 1024, usage.storageLimit // 1024))
        if usage.messagesLimit is not None:
            resources.append(b"MESSAGE %d %d" % (usage.messages, usage.messagesLimit))
        self.sendUntaggedResponse(b"QUOTA %s (%s)" % (quoted(QUOTA_ROOT), b" ".join(resources)))

    def do_GETQUOTAROOT(self, tag: bytes, name: str) -> Deferred[None]:
        return ensureDeferred(self._getQuotaRoot(tag, name))

    async def _getQuotaRoot(self, tag: bytes, name: str) -> None:
        await self._account().folder(name)
        usage = await self._quota()
        roots = [quoted(QUOTA_ROOT)] if usage is not None else []
        self.sendUntaggedResponse(b" ".join([b"QUOTAROOT", self.encodeMailbox(name), *roots]))
        if usage is not None:
            self._sendQuota(usage)
        self.sendPositiveResponse(tag, b"GETQUOTAROOT completed")

    auth_GETQUOTAROOT = select_GETQUOTAROOT = (do_GETQUOTAROOT, _B.arg_mailbox)

    def do_GETQUOTA(self, tag: bytes, root: bytes) -> Deferred[None]:
        def found(usage: QuotaUsage | None) -> None:
            if usage is None:
                raise no(b"[NONEXISTENT] No such quota root")
            self._sendQuota(usage)
            self.sendPositiveResponse(tag, b"GETQUOTA completed")

        return (self._quota() if root == QUOTA_ROOT else succeed(None)).addCallback(found)

    auth_GETQUOTA = select_GETQUOTA = (do_GETQUOTA, _B.arg_astring)

    def do_SETQUOTA(self, tag: bytes, root: bytes, limits: list[Any]) -> None:
        """Limits are the operator's to set (C{tmail quota}); a well-formed request is refused."""
        if len(limits) % 2 or not all(
            isinstance(name, bytes)
            and name.isalpha()
            and isinstance(limit, bytes)
            and limit.isdigit()
            and len(limit) <= 20
            for name, limit in zip(limits[::2], limits[1::2], strict=True)
        ):
            raise imap4.IllegalClientResponse("Invalid SETQUOTA resource list")
        raise no(b"[NOPERM] Quota limits are set by the administrator")

    auth_SETQUOTA = select_SETQUOTA = (do_SETQUOTA, _B.arg_astring, _B.arg_plist)
