"""Recipient resolution and avatars of the virtual-domain and Maildir realms."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.mail import imap4, pop3
from zope.interface.verify import verifyObject

from support.realm import ALICE, BOB, DOMAIN, RealmFixture, makeRealm
from tmail.config.schema import RealmSettings, Settings
from tmail.directory.passwdfile import PasswdFileDirectory
from tmail.errors import ConfigError, NotHostedDomain, RecipientError, UnknownRecipient
from tmail.interfaces import IMailRealm, IMailStore, IMailUser
from tmail.realm import MaildirRealm, VirtualDomainRealm
from tmail.realm.build import realmFromSettings


@pytest.fixture
def fixture(tmp_path: Path) -> RealmFixture:
    return makeRealm(tmp_path)


def test_realms_provide_the_realm_interface(fixture: RealmFixture) -> None:
    assert verifyObject(IMailRealm, fixture.realm)


def test_user_resolves_to_itself_case_insensitively(fixture: RealmFixture) -> None:
    assert fixture.realm.resolveRecipient("Alice@EXAMPLE.test") == [ALICE]


def test_subaddress_delivers_to_the_user(fixture: RealmFixture) -> None:
    assert fixture.realm.resolveRecipient("alice+lists@example.test") == [ALICE]


def test_unknown_user_of_hosted_domain_is_unknown_recipient(fixture: RealmFixture) -> None:
    with pytest.raises(UnknownRecipient):
        fixture.realm.resolveRecipient("nobody@example.test")


def test_other_domains_are_not_hosted(fixture: RealmFixture) -> None:
    with pytest.raises(NotHostedDomain):
        fixture.realm.resolveRecipient("alice@example.org")


def test_alias_expands_to_several_users_once_each(fixture: RealmFixture) -> None:
    fixture.directory.addAlias("team@example.test", [ALICE, BOB])
    fixture.directory.addAlias("all@example.test", ["team@example.test", ALICE])
    assert fixture.realm.resolveRecipient("all@example.test") == [ALICE, BOB]


def test_catch_all_takes_unknown_local_parts(fixture: RealmFixture) -> None:
    fixture.directory.addAlias(f"@{DOMAIN}", [BOB])
    assert fixture.realm.resolveRecipient("whatever@example.test") == [BOB]
    assert fixture.realm.resolveRecipient(ALICE) == [ALICE]


def test_alias_loop_is_refused_not_endless(fixture: RealmFixture) -> None:
    fixture.directory.addAlias("a@example.test", ["b@example.test"])
    fixture.directory.addAlias("b@example.test", ["a@example.test"])
    with pytest.raises(RecipientError):
        fixture.realm.resolveRecipient("a@example.test")


def test_alias_pointing_outside_is_refused_until_relay_exists(fixture: RealmFixture) -> None:
    fixture.directory.addAlias("fwd@example.test", ["someone@example.org"])
    with pytest.raises(RecipientError, match="outside"):
        fixture.realm.resolveRecipient("fwd@example.test")


@given(st.text(min_size=1, max_size=40))
def test_resolution_only_raises_recipient_errors(
    tmp_path_factory: pytest.TempPathFactory, local: str
) -> None:
    realm = _sharedRealm(tmp_path_factory)
    try:
        users = realm.resolveRecipient(f"{local}@example.test")
    except RecipientError:
        return
    assert users and all(u.endswith("@example.test") for u in users)


_realms: dict[int, VirtualDomainRealm] = {}


def _sharedRealm(factory: pytest.TempPathFactory) -> VirtualDomainRealm:
    if not _realms:
        _realms[0] = makeRealm(factory.mktemp("shared")).realm
    return _realms[0]


def test_store_is_one_object_per_user_at_the_virtual_layout(fixture: RealmFixture) -> None:
    store = fixture.realm.storeFor(ALICE)
    assert store is fixture.realm.storeFor("ALICE@example.test")
    assert verifyObject(IMailStore, store)
    assert fixture.realm.mailboxPath(ALICE) == fixture.root / "data" / "mail" / DOMAIN / "alice"


def test_one_avatar_for_every_front_end(fixture: RealmFixture) -> None:
    iface, user, _ = fixture.realm.requestAvatar(ALICE.encode(), None, IMailUser)
    assert iface is IMailUser and IMailUser.providedBy(user)
    assert user.store is fixture.realm.storeFor(ALICE)


@pytest.mark.parametrize("interface", [imap4.IAccount, pop3.IMailbox])
def test_no_protocol_avatar_is_handed_out(fixture: RealmFixture, interface: Any) -> None:
    """A front end makes its own avatar of the L{IMailUser}: the realm knows no protocol."""
    with pytest.raises(NotImplementedError):
        fixture.realm.requestAvatar(ALICE.encode(), None, interface)


def test_maildir_realm_serves_one_domain_under_one_root(tmp_path: Path) -> None:
    directory = PasswdFileDirectory(tmp_path / "data")
    directory.addDomain("one.test")
    directory.addDomain("two.test")
    directory.addUser("u@one.test", b"pw")
    directory.addUser("u@two.test", b"pw")
    realm = MaildirRealm(directory, tmp_path / "maildirs", "one.test")
    assert realm.resolveRecipient("u@one.test") == ["u@one.test"]
    with pytest.raises(NotHostedDomain):
        realm.resolveRecipient("u@two.test")
    assert realm.mailboxPath("u@one.test") == tmp_path / "maildirs" / "u"


def _settings(tmp_path: Path, backend: str, **realm: object) -> Settings:
    return Settings(
        path=tmp_path / "tmail.toml",
        hostname="mail.example.test",
        data_dir=tmp_path / "data",
        realm=RealmSettings(backend=backend, **realm),
    )


def test_build_chooses_the_configured_backend(tmp_path: Path) -> None:
    directory = PasswdFileDirectory(tmp_path / "data")
    assert isinstance(
        realmFromSettings(_settings(tmp_path, "virtual"), directory), VirtualDomainRealm
    )
    built = realmFromSettings(_settings(tmp_path, "maildir", domain="one.test"), directory)
    assert isinstance(built, MaildirRealm) and built.domain == "one.test"
    custom = realmFromSettings(
        _settings(tmp_path, "tmail.realm.virtual:VirtualDomainRealm"), directory
    )
    assert isinstance(custom, VirtualDomainRealm)


def test_build_reports_an_unloadable_custom_realm_as_config_error(tmp_path: Path) -> None:
    directory = PasswdFileDirectory(tmp_path / "data")
    with pytest.raises(ConfigError, match=r"realm\.backend"):
        realmFromSettings(_settings(tmp_path, "no.such.module:Realm"), directory)
    with pytest.raises(ConfigError, match="IMailRealm"):
        realmFromSettings(_settings(tmp_path, "builtins:slice"), directory)
    with pytest.raises(ConfigError, match="cannot build"):
        realmFromSettings(_settings(tmp_path, "builtins:int"), directory)


def test_postmaster_of_a_hosted_domain_is_always_accepted(fixture: RealmFixture) -> None:
    """RFC 5321 4.5.1: without a user or alias it has its own mailbox."""
    assert fixture.realm.resolveRecipient("PostMaster@example.test") == ["postmaster@example.test"]


def test_a_postmaster_alias_sends_it_where_the_operator_wants(fixture: RealmFixture) -> None:
    fixture.directory.addAlias("postmaster@example.test", [BOB])
    assert fixture.realm.resolveRecipient("postmaster@example.test") == [BOB]


def test_bare_postmaster_is_that_of_the_first_domain(fixture: RealmFixture) -> None:
    assert fixture.realm.resolveRecipient("Postmaster") == ["postmaster@example.test"]


def test_postmaster_of_another_domain_is_not_hosted(fixture: RealmFixture) -> None:
    with pytest.raises(NotHostedDomain):
        fixture.realm.resolveRecipient("postmaster@example.org")


def test_postmaster_mail_is_stored_and_readable_once_the_user_exists(
    fixture: RealmFixture,
) -> None:
    [user] = fixture.realm.resolveRecipient("postmaster@example.test")
    pending = fixture.store(user).getFolder("INBOX").beginMessage()
    pending.write(b"Subject: for the postmaster\r\n\r\nhi\r\n")
    pending.commit()
    fixture.directory.addUser(user, b"a long password")
    inbox = fixture.store(user).getFolder("INBOX")
    assert len(inbox.messages()) == 1
