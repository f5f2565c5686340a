# -*- test-case-name: tests.imap.test_imap_protocol -*-
"""
Folder management: NAMESPACE, CREATE (with USE, RFC 6154), DELETE, RENAME,
SUBSCRIBE, UNSUBSCRIBE, LIST (extended, with LIST-STATUS, RFC 5258 and
5819) and LSUB; DELETE and RENAME of INBOX and LIST-STATUS run a slice of
steps at a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, ensureDeferred, maybeDeferred

from tmail.errors import NoSuchFolder
from tmail.imap.account import IMAPAccount, checkName
from tmail.imap.listing import Listed, listNames, parseList
from tmail.imap.notify import foldersChanged
from tmail.imap.objectid import mailboxIdCode
from tmail.imap.session import IMAPSession, no
from tmail.imap.specialuse import parseCreateUses, specialUses
from tmail.imap.structure import quoted
from tmail.imap.waiting import Steps, waitOn
from tmail.interfaces import (
    ISpecialUseStore,
)
from tmail.steps import StepBudget

_B = IMAPSession

__all__ = ["FolderCommands"]


class FolderCommands(IMAPSession):
    """
    NAMESPACE, CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE, LIST and LSUB
    for an L{tmail.imap.server.IMAPServer}.
    """

    if TYPE_CHECKING:

        def _cooperate(self, steps: Iterator[object]) -> Deferred[None]: ...
        def _finishing(self, steps: Iterator[object]) -> Steps[None]: ...

    # Authenticated: folders

    def do_NAMESPACE(self, tag: bytes) -> None:
        delimiter = quoted(self._account().delimiter.encode())
        self.sendUntaggedResponse(b'NAMESPACE (("" %s)) NIL NIL' % delimiter)
        self.sendPositiveResponse(tag, b"NAMESPACE completed")

    auth_NAMESPACE = select_NAMESPACE = (do_NAMESPACE,)

    def _account(self) -> IMAPAccount:
        assert self.account is not None
        return self.account

    def do_CREATE(self, tag: bytes, name: str, params: bytes | None) -> Deferred[None]:
        return ensureDeferred(self._create(tag, name, params))

    async def _create(self, tag: bytes, name: str, params: bytes | None) -> None:
        uses = parseCreateUses(params)
        account = self._account()
        store = account.store
        if uses and not ISpecialUseStore.providedBy(store):
            raise no(b"[USEATTR] This server cannot keep special-use attributes")
        await account.create(name)
        if uses and ISpecialUseStore.providedBy(store):
            canonical = checkName(name.removesuffix(account.delimiter), account.delimiter)
            await maybeDeferred(store.updateSpecialUse, {canonical: uses})
        await foldersChanged(store, self)
        code = mailboxIdCode(await account.folder(name.removesuffix(account.delimiter)))
        self.sendPositiveResponse(tag, (code + b" " if code else b"") + b"CREATE completed")

    auth_CREATE = select_CREATE = (do_CREATE, _B.arg_mailbox, _B.opt_line)

    def do_DELETE(self, tag: bytes, name: str) -> Deferred[None]:
        """DELETE; the messages' files go a slice at a time, even if the client leaves."""
        return self._cooperate(self._finishing(self._account().deleting(name))).addCallback(
            lambda _: self._foldersChanged(tag, b"DELETE completed")
        )

    auth_DELETE = select_DELETE = (do_DELETE, _B.arg_mailbox)

    def do_RENAME(self, tag: bytes, old: str, new: str) -> Deferred[None]:
        """
        RENAME; of INBOX, whose messages all move, a slice at a time, to
        the end even if the client leaves.
        """
        return self._cooperate(self._finishing(self._account().renaming(old, new))).addCallback(
            lambda _: self._foldersChanged(tag, b"RENAME completed", (old, new))
        )

    auth_RENAME = select_RENAME = (do_RENAME, _B.arg_mailbox, _B.arg_mailbox)

    def do_SUBSCRIBE(self, tag: bytes, name: str) -> Deferred[None]:
        return (
            self._account()
            .subscribe(name)
            .addCallback(lambda _: self._foldersChanged(tag, b"SUBSCRIBE completed"))
        )

    auth_SUBSCRIBE = select_SUBSCRIBE = (do_SUBSCRIBE, _B.arg_mailbox)

    def do_UNSUBSCRIBE(self, tag: bytes, name: str) -> Deferred[None]:
        return (
            self._account()
            .unsubscribe(name)
            .addCallback(lambda _: self._foldersChanged(tag, b"UNSUBSCRIBE completed"))
        )

    auth_UNSUBSCRIBE = select_UNSUBSCRIBE = (do_UNSUBSCRIBE, _B.arg_mailbox)

    def do_LIST(self, tag: bytes, tokens: list[Any]) -> Deferred[None] | None:
        request = parseList(tokens, self.decodeListPattern)
        account = self._account()
        delimiter = quoted(account.delimiter.encode())
        selecting = request.selectSubscribed or request.selectSpecialUse
        if not selecting and not any(request.patterns):
            self.sendUntaggedResponse(b'LIST (\\Noselect) %s ""' % delimiter)
            self.sendPositiveResponse(tag, b"LIST completed")
            return None
        request.patterns = [pattern for pattern in request.patterns if pattern]
        return ensureDeferred(self._list(tag, request))

    async def _list(self, tag: bytes, request: Any) -> None:
        account = self._account()
        delimiter = quoted(account.delimiter.encode())
        store = account.store
        names: list[str] = await maybeDeferred(store.listFolders)
        subscribed: list[str] = await maybeDeferred(store.subscriptions)
        found = listNames(
            request,
            names,
            subscribed,
            await specialUses(self.settings, store),
            account.delimiter,
        )
        status = request.status

        def listed(item: Listed) -> None:
            line = b"LIST (%s) %s %s" % (
                " ".join(item.attributes).encode(),
                delimiter,
                self.encodeMailbox(item.name),
            )
            if item.childInfo:
                criteria = b" ".join(quoted(c.encode()) for c in item.childInfo)
                line += b' ("CHILDINFO" (%s))' % criteria
            self.sendUntaggedResponse(line)

        if status is None:
            for item in found:
                listed(item)
            self.sendPositiveResponse(tag, b"LIST completed")
            return

        def steps() -> Steps[None]:
            # LIST-STATUS (RFC 5819) looks into every folder: a few per
            # step, the folders of a slice asked of the store together.
            budget = StepBudget()
            for start in range(0, len(found), self.STATUS_SLICE):
                some = found[start : start + self.STATUS_SLICE]
                asked = [account.current(i.name) if i.selectable else None for i in some]
                try:
                    for item, current in zip(some, asked, strict=True):
                        listed(item)
                        if current is not None:
                            try:
                                folder = yield from waitOn(current)
                            except NoSuchFolder:
                                continue
                            self._sendStatus(item.name, folder, status)
                        if budget.spent():
                            yield None
                finally:
                    for current in asked:
                        if current is not None:
                            current.addErrback(lambda _: None)

        await self._cooperate(steps())
        self.sendPositiveResponse(tag, b"LIST completed")

    #: Folders whose STATUS a LIST-STATUS asks of the store together, at most.
    STATUS_SLICE = 4

    auth_LIST = select_LIST = (do_LIST, _B.arg_searchkeys)

    def do_LSUB(self, tag: bytes, ref: str, pattern: str) -> Deferred[None]:
        return ensureDeferred(self._lsub(tag, ref, pattern))

    async def _lsub(self, tag: bytes, ref: str, pattern: str) -> None:
        account = self._account()
        delimiter = quoted(account.delimiter.encode())
        for name, info in await account.listSubscribed(ref, pattern):
            flags = " ".join(info.getFlags()).encode()
            self.sendUntaggedResponse(
                b"LSUB (%s) %s %s" % (flags, delimiter, self.encodeMailbox(name))
            )
        self.sendPositiveResponse(tag, b"LSUB completed")

    auth_LSUB = select_LSUB = (do_LSUB, _B.arg_listmailbox, _B.arg_listmailbox)
