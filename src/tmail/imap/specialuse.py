# -*- test-case-name: tests.imap.test_imap_special_use -*-
"""
SPECIAL-USE and CREATE-SPECIAL-USE (RFC 6154): which folders carry which
attribute, the C{USE} parameter of CREATE, and the special folders made at a
user's first login.

The configured folders (C{[imap] special_use_*}) carry their attribute by
name, as Dovecot's C{mailbox Sent { special_use = \\Sent }} does; attributes
users give with C{CREATE name (USE (...))} are kept by the store
(L{ISpecialUseStore}), which moves them on RENAME and drops them on DELETE.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, ensureDeferred, maybeDeferred
from twisted.mail import imap4

from tmail.config.schema import IMAPSettings
from tmail.errors import FolderExists
from tmail.imap.parse import Tokenizer
from tmail.imap.session import no
from tmail.interfaces import IMailStore, ISpecialUseStore

#: Attributes of folders tmail can make; C{\\All} and C{\\Flagged} name
#: virtual folders, which it cannot.
SPECIAL_USES = frozenset({"\\Archive", "\\Drafts", "\\Junk", "\\Sent", "\\Trash"})
_KNOWN = {use.lower().encode(): use for use in SPECIAL_USES | {"\\All", "\\Flagged"}}


def parseCreateUses(params: bytes | None) -> frozenset[str]:
    """
    The C{USE} attributes of CREATE's parameters (RFC 4466 2.2 syntax):
    C{BAD} for malformed or unknown parameters, C{NO [USEATTR]} for an
    attribute tmail cannot give (RFC 6154 section 3).
    """
    if params is None:
        return frozenset()
    tokenizer = Tokenizer()
    if tokenizer.feed(params) is not None:
        raise imap4.IllegalClientResponse("Unexpected literal in CREATE parameters")
    tokens = tokenizer.result()
    if len(tokens) != 1 or not isinstance(tokens[0], list) or not tokens[0]:
        raise imap4.IllegalClientResponse("Invalid CREATE parameters")
    parameters = iter(tokens[0])
    uses: set[str] = set()
    for parameter in parameters:
        if not isinstance(parameter, bytes) or parameter.upper() != b"USE":
            raise imap4.IllegalClientResponse("Unknown CREATE parameter")
        values = next(parameters, None)
        if not isinstance(values, list) or not all(isinstance(v, bytes) for v in values):
            raise imap4.IllegalClientResponse("Invalid USE parameter")
        for value in values:
            if not value.startswith(b"\\"):
                raise imap4.IllegalClientResponse("Invalid special-use attribute")
            known = _KNOWN.get(value.lower())
            if known not in SPECIAL_USES:
                raise no(b"[USEATTR] Unsupported special-use attribute")
            uses.add(known)
    return frozenset(uses)


def specialUses(settings: IMAPSettings, store: IMailStore) -> Deferred[dict[str, frozenset[str]]]:
    """Special-use attributes by folder name: the configured folders' and the user's own."""
    return ensureDeferred(_specialUses(settings, store))


async def _specialUses(settings: IMAPSettings, store: IMailStore) -> dict[str, frozenset[str]]:
    uses = {name: {use} for name, use in settings.specialFolders().items()}
    if ISpecialUseStore.providedBy(store):
        own: dict[str, frozenset[str]] | None = await maybeDeferred(store.specialUse)
        for name, attributes in (own or {}).items():
            uses.setdefault(name, set()).update(attributes)
    return {name: frozenset(attributes) for name, attributes in uses.items()}


def makeSpecialFolders(settings: IMAPSettings, store: IMailStore) -> Deferred[None]:
    """
    At a user's first login, make and subscribe the configured special
    folders that are missing, and record that it was done, so that a folder
    the user deletes stays deleted.  A store without L{ISpecialUseStore}
    cannot record it: missing folders are made at every login.
    """
    return ensureDeferred(_makeSpecialFolders(settings, store))


async def _makeSpecialFolders(settings: IMAPSettings, store: IMailStore) -> None:
    if not settings.create_special_folders:
        return
    if ISpecialUseStore.providedBy(store) and await maybeDeferred(store.specialUse) is not None:
        return
    names: list[str] = await maybeDeferred(store.listFolders)
    existing = set(names)
    for name in settings.specialFolders():
        if name in existing:
            continue
        try:
            await maybeDeferred(store.createFolder, name)
        except FolderExists:
            continue
        await maybeDeferred(store.subscribe, name)
    if ISpecialUseStore.providedBy(store):
        await maybeDeferred(store.updateSpecialUse, {})
