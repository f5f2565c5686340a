"""
The contract of L{IUserDirectory} (and the optional L{IUserFields}), as a
test mixin.

Mix L{UserDirectoryTestsMixin} into a L{twisted.trial.unittest.TestCase}
and define C{makeDirectory(users, aliases)}: a directory holding exactly
these users (address to password), these aliases (source, or C{@domain}
for a catch-all, to targets) and the domains of the users.
L{passwdFileDirectory} builds tmail's own directory that way, for tests
that need one (the realm contract uses it by default).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from tmail.directory.passwdfile import PasswdFileDirectory
from tmail.interfaces import IUserDirectory, IUserFields
from tmail.testing.calls import TestCaseBase, call, requireProvider, verifyProvided

__all__ = [
    "ALIASES",
    "USERS",
    "UserDirectoryTestsMixin",
    "passwdFileDirectory",
]

#: The users of the directory under test, with their passwords.
USERS: Mapping[str, bytes] = {
    "alice@example.test": b"alice's password",
    "bob@example.test": b"bob's password",
    "carol@other.test": b"carol's password",
}

#: Its aliases: a group, one pointing outside, and a catch-all.
ALIASES: Mapping[str, Sequence[str]] = {
    "team@example.test": ["alice@example.test", "bob@example.test"],
    "friend@example.test": ["someone@elsewhere.example"],
    "@other.test": ["carol@other.test"],
}


def passwdFileDirectory(
    root: Path, users: Mapping[str, bytes], aliases: Mapping[str, Sequence[str]]
) -> PasswdFileDirectory:
    """A L{PasswdFileDirectory} in C{root} with these users, aliases and their domains."""
    directory = PasswdFileDirectory(root)
    domains = {address.rpartition("@")[2] for address in [*users, *aliases]}
    for domain in sorted(domains):
        directory.addDomain(domain)
    for address, password in users.items():
        directory.addUser(address, password)
    for source, targets in aliases.items():
        directory.addAlias(source, list(targets))
    return directory


class UserDirectoryTestsMixin(TestCaseBase):
    """Tests for an L{IUserDirectory} implementation."""

    def makeDirectory(
        self, users: Mapping[str, bytes], aliases: Mapping[str, Sequence[str]]
    ) -> IUserDirectory:
        """A directory holding these users and aliases; defined by the test case."""
        raise NotImplementedError(f"{type(self).__name__} must define makeDirectory")

    async def contractDirectory(self) -> IUserDirectory:
        """The directory of this test (with L{USERS} and L{ALIASES}), made on first use."""
        directory: IUserDirectory | None = getattr(self, "_contractDirectory", None)
        if directory is None:
            directory = self._contractDirectory = await call(self.makeDirectory, USERS, ALIASES)
        return directory

    async def test_directory_provides_the_interfaces_it_claims(self) -> None:
        directory = await self.contractDirectory()
        provided = verifyProvided(directory, (IUserDirectory, IUserFields))
        self.assertIn("IUserDirectory", provided)

    async def test_domains_are_the_hosted_ones_in_lower_case(self) -> None:
        directory = await self.contractDirectory()
        self.assertEqual(sorted(await call(directory.domains)), ["example.test", "other.test"])

    async def test_has_domain_ignores_case_and_knows_no_others(self) -> None:
        directory = await self.contractDirectory()
        self.assertTrue(await call(directory.hasDomain, "example.test"))
        self.assertTrue(await call(directory.hasDomain, "Example.TEST"))
        self.assertFalse(await call(directory.hasDomain, "elsewhere.example"))

    async def test_users_lists_every_user_or_those_of_one_domain(self) -> None:
        directory = await self.contractDirectory()
        everyone = list(await call(directory.users))
        self.assertEqual(sorted(everyone), sorted(USERS))
        self.assertEqual(everyone, [address.lower() for address in everyone])
        self.assertEqual(
            sorted(await call(directory.users, "example.test")),
            ["alice@example.test", "bob@example.test"],
        )
        self.assertEqual(list(await call(directory.users, "elsewhere.example")), [])

    async def test_has_user_is_true_for_users_only(self) -> None:
        directory = await self.contractDirectory()
        self.assertTrue(await call(directory.hasUser, "alice@example.test"))
        self.assertTrue(await call(directory.hasUser, "Alice@Example.Test"))
        self.assertFalse(await call(directory.hasUser, "team@example.test"))
        self.assertFalse(await call(directory.hasUser, "nobody@example.test"))
        self.assertFalse(await call(directory.hasUser, "alice@elsewhere.example"))

    async def test_users_of_a_domain_given_in_any_case(self) -> None:
        directory = await self.contractDirectory()
        self.assertEqual(
            sorted(await call(directory.users, "EXAMPLE.test")),
            ["alice@example.test", "bob@example.test"],
        )

    async def test_malformed_addresses_are_nobody(self) -> None:
        """Client input reaches the directory as given: a bad address is simply unknown."""
        directory = await self.contractDirectory()
        for address in ("", "no-at-sign", "@example.test", "alice@", "a@b@example.test"):
            self.assertFalse(await call(directory.hasUser, address), address)
            self.assertIsNone(await call(directory.checkPassword, address, b"x"), address)
        for address in ("", "no-at-sign", "alice@", "a@b@example.test"):
            self.assertIsNone(await call(directory.aliasTargets, address), address)

    async def test_right_password_gives_the_canonical_address(self) -> None:
        directory = await self.contractDirectory()
        for given in ("alice@example.test", "ALICE@example.TEST"):
            self.assertEqual(
                await call(directory.checkPassword, given, USERS["alice@example.test"]),
                "alice@example.test",
            )

    async def test_wrong_password_or_unknown_user_gives_none(self) -> None:
        directory = await self.contractDirectory()
        check = directory.checkPassword
        self.assertIsNone(await call(check, "alice@example.test", b"wrong"))
        self.assertIsNone(await call(check, "alice@example.test", b""))
        self.assertIsNone(await call(check, "alice@example.test", USERS["bob@example.test"]))
        self.assertIsNone(await call(check, "nobody@example.test", b"anything"))
        self.assertIsNone(await call(check, "team@example.test", USERS["alice@example.test"]))

    async def test_alias_targets_of_an_alias(self) -> None:
        directory = await self.contractDirectory()
        team = await call(directory.aliasTargets, "team@example.test")
        self.assertEqual(sorted(team or ()), ["alice@example.test", "bob@example.test"])
        friend = await call(directory.aliasTargets, "Friend@Example.Test")
        self.assertEqual(list(friend or ()), ["someone@elsewhere.example"])

    async def test_a_user_or_an_unknown_address_is_no_alias(self) -> None:
        directory = await self.contractDirectory()
        self.assertIsNone(await call(directory.aliasTargets, "alice@example.test"))
        self.assertIsNone(await call(directory.aliasTargets, "nobody@example.test"))
        self.assertIsNone(await call(directory.aliasTargets, "carol@other.test"))

    async def test_catch_all_takes_unknown_addresses_of_its_domain(self) -> None:
        directory = await self.contractDirectory()
        targets = await call(directory.aliasTargets, "anyone@other.test")
        self.assertEqual(list(targets or ()), ["carol@other.test"])

    async def test_user_fields_of_an_unknown_user_are_empty(self) -> None:
        directory = requireProvider(await self.contractDirectory(), IUserFields)
        self.assertEqual(await call(directory.userFields, "nobody@example.test"), {})
        self.assertIsInstance(await call(directory.userFields, "alice@example.test"), dict)
