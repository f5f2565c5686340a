"""
The contract of L{IMailRealm} (and the optional L{IForwardingRealm}), as a
test mixin.

Mix L{MailRealmTestsMixin} into a L{twisted.trial.unittest.TestCase} and
define C{makeRealm(directory)}: the realm under test over the given user
directory.  The directory hosts C{example.test} with the users and aliases
of L{REALM_USERS} and L{REALM_ALIASES}; it is a passwd-file directory unless
the test case overrides C{makeDirectory}.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from zope.interface.verify import verifyObject

from tmail.errors import NotHostedDomain, RecipientError, UnknownRecipient
from tmail.interfaces import (
    IForwardingRealm,
    IFreeSpace,
    IMailRealm,
    IMailStore,
    IMailUser,
    IUserDirectory,
)
from tmail.testing.calls import (
    MESSAGE,
    TestCaseBase,
    call,
    deliver,
    read,
    requireProvider,
    verifyProvided,
)
from tmail.testing.directory import passwdFileDirectory

__all__ = ["REALM_ALIASES", "REALM_USERS", "MailRealmTestsMixin"]

ALICE = "alice@example.test"
BOB = "bob@example.test"

#: The users of the realm's directory, with their passwords.
REALM_USERS: Mapping[str, bytes] = {ALICE: b"alice's password", BOB: b"bob's password"}

#: Its aliases: a group and one that points outside the hosted domain.
REALM_ALIASES: Mapping[str, Sequence[str]] = {
    "team@example.test": [ALICE, BOB],
    "friend@example.test": ["someone@elsewhere.example"],
}


class MailRealmTestsMixin(TestCaseBase):
    """Tests for an L{IMailRealm} implementation."""

    def makeRealm(self, directory: IUserDirectory) -> IMailRealm:
        """The realm under test over C{directory}; defined by the test case."""
        raise NotImplementedError(f"{type(self).__name__} must define makeRealm")

    def makeDirectory(
        self, users: Mapping[str, bytes], aliases: Mapping[str, Sequence[str]]
    ) -> IUserDirectory:
        """The realm's directory: by default a passwd-file directory in a new folder."""
        return passwdFileDirectory(Path(self.mktemp()), users, aliases)

    async def contractRealm(self) -> IMailRealm:
        """The realm of this test, made on first use."""
        realm: IMailRealm | None = getattr(self, "_contractRealm", None)
        if realm is None:
            directory = await call(self.makeDirectory, REALM_USERS, REALM_ALIASES)
            realm = self._contractRealm = await call(self.makeRealm, directory)
        return realm

    async def resolved(self, address: str) -> list[str]:
        realm = await self.contractRealm()
        return sorted(await call(realm.resolveRecipient, address))

    async def test_realm_provides_the_interfaces_it_claims(self) -> None:
        realm = await self.contractRealm()
        provided = verifyProvided(realm, (IMailRealm, IForwardingRealm, IFreeSpace))
        self.assertIn("IMailRealm", provided)
        verifyObject(IUserDirectory, realm.directory)

    async def test_store_of_a_user_provides_imailstore(self) -> None:
        realm = await self.contractRealm()
        store = await call(realm.storeFor, ALICE)
        verifyObject(IMailStore, store)

    async def test_store_for_returns_the_same_store_each_time(self) -> None:
        realm = await self.contractRealm()
        store = await call(realm.storeFor, ALICE)
        self.assertIs(await call(realm.storeFor, ALICE), store)

    async def test_users_have_stores_of_their_own(self) -> None:
        realm = await self.contractRealm()
        alice = await call((await call(realm.storeFor, ALICE)).getFolder, "INBOX")
        uid = await deliver(alice)
        bob = await call((await call(realm.storeFor, BOB)).getFolder, "INBOX")
        self.assertEqual(list(await call(bob.messages, False)), [])
        again = await call((await call(realm.storeFor, ALICE)).getFolder, "INBOX")
        self.assertEqual(await read(again, uid), MESSAGE)

    async def test_a_user_resolves_to_the_canonical_address(self) -> None:
        self.assertEqual(await self.resolved(ALICE), [ALICE])
        self.assertEqual(await self.resolved("Alice@EXAMPLE.test"), [ALICE])

    async def test_a_tag_is_removed(self) -> None:
        self.assertEqual(await self.resolved("alice+lists@example.test"), [ALICE])

    async def test_an_alias_resolves_to_its_users(self) -> None:
        self.assertEqual(await self.resolved("team@example.test"), [ALICE, BOB])

    async def test_an_unknown_user_of_a_hosted_domain_raises_unknown_recipient(self) -> None:
        realm = await self.contractRealm()
        await self.assertFailure(
            call(realm.resolveRecipient, "nobody@example.test"), UnknownRecipient
        )

    async def test_another_domain_raises_not_hosted_domain(self) -> None:
        realm = await self.contractRealm()
        await self.assertFailure(
            call(realm.resolveRecipient, "alice@elsewhere.example"), NotHostedDomain
        )

    async def test_postmaster_of_a_hosted_domain_is_accepted(self) -> None:
        """Mail to postmaster is always accepted (RFC 5321 4.5.1)."""
        self.assertTrue(await self.resolved("postmaster@example.test"))
        self.assertTrue(await self.resolved("Postmaster@Example.Test"))

    async def test_malformed_address_raises_a_recipient_error(self) -> None:
        realm = await self.contractRealm()
        for address in ("no-at-sign", "@example.test", "alice@"):
            await self.assertFailure(call(realm.resolveRecipient, address), RecipientError)

    async def test_destinations_split_local_users_and_remote_addresses(self) -> None:
        realm = requireProvider(await self.contractRealm(), IForwardingRealm)
        team = await call(realm.destinations, "team@example.test")
        self.assertEqual((sorted(team.local), list(team.remote)), ([ALICE, BOB], []))
        friend = await call(realm.destinations, "friend@example.test")
        self.assertEqual(
            (list(friend.local), list(friend.remote)), ([], ["someone@elsewhere.example"])
        )
        await self.assertFailure(call(realm.destinations, "nobody@example.test"), UnknownRecipient)

    async def test_a_user_who_logs_in_gets_a_mail_user_over_its_store(self) -> None:
        """What every front end (IMAP, POP3, and those to come) starts from."""
        realm = await self.contractRealm()
        given, avatar, logout = await call(realm.requestAvatar, ALICE.encode(), None, IMailUser)
        self.assertIs(given, IMailUser)
        self.assertTrue(verifyObject(IMailUser, avatar))
        user = cast(Any, avatar)
        self.assertEqual(user.name.lower(), ALICE.lower())
        self.assertIs(user.store, realm.storeFor(ALICE))
        logout()
