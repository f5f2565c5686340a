"""The passwd-file user directory: domains, users, aliases and their files."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from zope.interface.verify import verifyObject

from tmail.directory import passwdfile
from tmail.directory.passwdfile import PasswdFileDirectory
from tmail.directory.passwords import cheapHasher, hashPassword, setHasher
from tmail.errors import DirectoryError
from tmail.interfaces import IUserDirectory


@pytest.fixture(autouse=True)
def _cheapHashing() -> Iterator[None]:
    previous = setHasher(cheapHasher())
    yield
    setHasher(previous)


@pytest.fixture
def directory(tmp_path: Path) -> PasswdFileDirectory:
    d = PasswdFileDirectory(tmp_path / "dir")
    d.addDomain("example.com")
    return d


def test_provides_user_directory(tmp_path: Path) -> None:
    assert verifyObject(IUserDirectory, PasswdFileDirectory(tmp_path))


def test_empty_directory_without_files(tmp_path: Path) -> None:
    d = PasswdFileDirectory(tmp_path / "missing")
    assert d.domains() == []
    assert d.users() == []
    assert d.aliases() == {}
    assert d.checkPassword("a@example.com", b"pw") is None
    assert not (tmp_path / "missing").exists()


def test_add_list_remove_domains(directory: PasswdFileDirectory) -> None:
    assert directory.addDomain("Example.ORG") == "example.org"
    assert directory.domains() == ["example.com", "example.org"]
    assert directory.hasDomain("EXAMPLE.org")
    directory.removeDomain("example.org")
    assert directory.domains() == ["example.com"]
    assert not directory.hasDomain("example.org")


def test_adding_a_domain_twice_is_refused(directory: PasswdFileDirectory) -> None:
    with pytest.raises(DirectoryError, match="already exists"):
        directory.addDomain("EXAMPLE.com")


def test_internationalized_domain_is_stored_idna_encoded(directory: PasswdFileDirectory) -> None:
    assert directory.addDomain("b\u00fccher.example") == "xn--bcher-kva.example"
    assert directory.hasDomain("xn--bcher-kva.example")
    assert directory.hasDomain("B\u00dcCHER.example")


@pytest.mark.parametrize("bad", ["", "a..b", "-a.com", "a b.com", "a_b.com", "x" * 64 + ".com"])
def test_invalid_domains_are_refused(directory: PasswdFileDirectory, bad: str) -> None:
    with pytest.raises(DirectoryError, match="not a valid domain"):
        directory.addDomain(bad)


def test_removing_a_domain_in_use_is_refused(directory: PasswdFileDirectory) -> None:
    directory.addUser("a@example.com", b"pw")
    with pytest.raises(DirectoryError, match=r"still has 1 user\(s\) and 0 alias"):
        directory.removeDomain("example.com")
    directory.removeUser("a@example.com")
    directory.addAlias("@example.com", ["x@elsewhere.test"])
    with pytest.raises(DirectoryError, match=r"0 user\(s\) and 1 alias"):
        directory.removeDomain("example.com")
    directory.removeAlias("@example.com")
    directory.removeDomain("example.com")
    assert directory.domains() == []


def test_removing_an_unknown_domain_is_refused(directory: PasswdFileDirectory) -> None:
    with pytest.raises(DirectoryError, match="no such domain"):
        directory.removeDomain("example.net")


def test_add_user_and_check_password(directory: PasswdFileDirectory) -> None:
    assert directory.addUser("Alice@Example.COM", b"s3cret") == "alice@example.com"
    assert directory.users() == ["alice@example.com"]
    assert directory.hasUser("ALICE@example.com")
    assert directory.checkPassword("alice@EXAMPLE.com", b"s3cret") == "alice@example.com"
    assert directory.checkPassword("alice@example.com", b"wrong") is None
    assert directory.checkPassword("bob@example.com", b"s3cret") is None
    assert directory.checkPassword("not an address", b"s3cret") is None


def test_users_of_one_domain(directory: PasswdFileDirectory) -> None:
    directory.addDomain("example.org")
    directory.addUser("b@example.org", b"pw")
    directory.addUser("a@example.com", b"pw")
    directory.addUser("c@example.com", b"pw")
    assert directory.users() == ["a@example.com", "b@example.org", "c@example.com"]
    assert directory.users("example.com") == ["a@example.com", "c@example.com"]
    assert directory.users("example.net") == []
    assert directory.users("not a domain") == []


def test_user_in_unknown_domain_is_refused(directory: PasswdFileDirectory) -> None:
    with pytest.raises(DirectoryError, match="not hosted"):
        directory.addUser("a@example.net", b"pw")
    assert directory.users() == []


def test_adding_an_existing_user_is_refused(directory: PasswdFileDirectory) -> None:
    directory.addUser("a@example.com", b"pw")
    with pytest.raises(DirectoryError, match="already exists"):
        directory.addUser("A@example.com", b"other")
    assert directory.checkPassword("a@example.com", b"pw") == "a@example.com"


def test_empty_password_is_refused(directory: PasswdFileDirectory) -> None:
    with pytest.raises(DirectoryError, match="empty"):
        directory.addUser("a@example.com", b"")


@pytest.mark.parametrize(
    "bad",
    [
        "a",
        "@example.com",
        "a@b@example.com",
        "a b@example.com",
        "a:b@example.com",
        "a\x00b@example.com",
        "a\tb@example.com",
        "../x@example.com",
        ".a@example.com",
        "a,b@example.com",
        "a/b@example.com",
        "a@",
        "a@exa mple.com",
    ],
)
def test_invalid_addresses_are_refused(directory: PasswdFileDirectory, bad: str) -> None:
    with pytest.raises(DirectoryError, match="not a valid address"):
        directory.addUser(bad, b"pw")


def test_plus_and_unicode_local_parts_are_valid(directory: PasswdFileDirectory) -> None:
    directory.addUser("a+b@example.com", b"pw")
    directory.addUser("j\u00f6rg@example.com", b"pw")
    assert directory.hasUser("J\u00d6RG@example.com")


def test_set_password(directory: PasswdFileDirectory) -> None:
    directory.addUser("a@example.com", b"old")
    directory.setPassword("A@example.com", b"new")
    assert directory.checkPassword("a@example.com", b"old") is None
    assert directory.checkPassword("a@example.com", b"new") == "a@example.com"


def test_set_password_of_unknown_user_is_refused(directory: PasswdFileDirectory) -> None:
    with pytest.raises(DirectoryError, match="no such user"):
        directory.setPassword("a@example.com", b"new")


def test_remove_user(directory: PasswdFileDirectory) -> None:
    directory.addUser("a@example.com", b"pw")
    directory.addUser("b@example.com", b"pw")
    directory.removeUser("A@example.com")
    assert directory.users() == ["b@example.com"]
    assert directory.checkPassword("a@example.com", b"pw") is None
    with pytest.raises(DirectoryError, match="no such user"):
        directory.removeUser("a@example.com")


def test_passwd_lines_are_in_dovecot_format(directory: PasswdFileDirectory) -> None:
    directory.addUser("a@example.com", b"pw")
    (line,) = (directory.root / "passwd").read_text().splitlines()
    fields = line.split(":")
    assert fields[0] == "a@example.com"
    assert fields[1].startswith("{ARGON2ID}$argon2id$v=19$")
    assert fields[2:] == ["", "", "", "", "", ""]
    assert (directory.root / "domains").read_text() == "example.com\n"


def test_passwd_file_is_private(directory: PasswdFileDirectory) -> None:
    directory.addUser("a@example.com", b"pw")
    assert (directory.root / "passwd").stat().st_mode & 0o777 == 0o600


def test_dovecot_passwd_file_is_read_tolerantly(tmp_path: Path) -> None:
    (tmp_path / "domains").write_text("# hosted\n\nExample.com\n")
    argon = hashPassword(b"pw1")
    (tmp_path / "passwd").write_text(
        "# users\n"
        "\n"
        f"one@example.com:{argon}:1000:1000::/home/one::userdb_quota_rule=*:storage=1G\n"
        f"Two@Example.COM:{hashPassword(b'pw2')}\n"
        "three@example.com:{PLAIN}pw3::::::\n"
        "nodomain:{PLAIN}x\n"
        "   \n"
    )
    d = PasswdFileDirectory(tmp_path)
    assert d.users() == ["Two@example.com", "one@example.com", "three@example.com"]
    assert d.checkPassword("one@example.com", b"pw1") == "one@example.com"
    assert d.checkPassword("two@example.com", b"pw2") == "Two@example.com"
    assert d.checkPassword("three@example.com", b"pw3") is None


def test_rewrite_keeps_comments_and_extra_fields(tmp_path: Path) -> None:
    (tmp_path / "domains").write_text("example.com\n")
    (tmp_path / "passwd").write_text(
        f"# keep me\none@example.com:{hashPassword(b'pw')}:1000:1000::/home/one::quota=1G\n"
    )
    d = PasswdFileDirectory(tmp_path)
    d.setPassword("one@example.com", b"new")
    d.addUser("two@example.com", b"pw")
    lines = (tmp_path / "passwd").read_text().splitlines()
    assert lines[0] == "# keep me"
    assert lines[1].endswith(":1000:1000::/home/one::quota=1G")
    assert d.checkPassword("one@example.com", b"new") == "one@example.com"


def test_users_of_unhosted_domains_are_hidden(tmp_path: Path) -> None:
    (tmp_path / "passwd").write_text(f"a@example.com:{hashPassword(b'pw')}::::::\n")
    d = PasswdFileDirectory(tmp_path)
    assert d.users() == []
    assert not d.hasUser("a@example.com")
    assert d.checkPassword("a@example.com", b"pw") is None


def test_aliases(directory: PasswdFileDirectory) -> None:
    directory.addUser("a@example.com", b"pw")
    directory.addAlias("Postmaster@example.com", ["A@example.com", "ops@elsewhere.test"])
    assert directory.aliasTargets("postmaster@EXAMPLE.com") == [
        "a@example.com",
        "ops@elsewhere.test",
    ]
    assert directory.aliasTargets("a@example.com") is None
    assert directory.aliasTargets("nobody@example.com") is None
    assert directory.aliases() == {
        "postmaster@example.com": ["a@example.com", "ops@elsewhere.test"]
    }
    assert (directory.root / "aliases").read_text() == (
        "postmaster@example.com: a@example.com, ops@elsewhere.test\n"
    )


def test_add_alias_adds_targets_to_existing_alias(directory: PasswdFileDirectory) -> None:
    directory.addAlias("x@example.com", ["a@example.com"])
    assert directory.addAlias("x@example.com", ["b@example.com", "a@example.com"]) == [
        "a@example.com",
        "b@example.com",
    ]
    assert directory.aliasTargets("x@example.com") == ["a@example.com", "b@example.com"]


def test_remove_one_alias_target_then_the_alias(directory: PasswdFileDirectory) -> None:
    directory.addAlias("x@example.com", ["a@example.com", "b@example.com"])
    directory.removeAlias("x@example.com", "A@example.com")
    assert directory.aliasTargets("x@example.com") == ["b@example.com"]
    with pytest.raises(DirectoryError, match="does not point to"):
        directory.removeAlias("x@example.com", "a@example.com")
    directory.removeAlias("x@example.com", "b@example.com")
    assert directory.aliasTargets("x@example.com") is None
    assert directory.aliases() == {}
    with pytest.raises(DirectoryError, match="no such alias"):
        directory.removeAlias("x@example.com")


def test_alias_in_unknown_domain_is_refused(directory: PasswdFileDirectory) -> None:
    with pytest.raises(DirectoryError, match="not hosted"):
        directory.addAlias("x@example.net", ["a@example.com"])
    with pytest.raises(DirectoryError, match="not hosted"):
        directory.addAlias("@example.net", ["a@example.com"])


def test_alias_to_itself_or_to_nothing_is_refused(directory: PasswdFileDirectory) -> None:
    with pytest.raises(DirectoryError, match="itself"):
        directory.addAlias("x@example.com", ["X@example.com"])
    with pytest.raises(DirectoryError, match="at least one"):
        directory.addAlias("x@example.com", [])
    with pytest.raises(DirectoryError, match="not a valid address"):
        directory.addAlias("x@example.com", ["nope"])


def test_catch_all_applies_only_to_unknown_addresses(directory: PasswdFileDirectory) -> None:
    directory.addUser("a@example.com", b"pw")
    directory.addAlias("sales@example.com", ["b@elsewhere.test"])
    directory.addAlias("@EXAMPLE.com", ["a@example.com"])
    assert directory.aliasTargets("anything@example.com") == ["a@example.com"]
    assert directory.aliasTargets("a@example.com") is None
    assert directory.aliasTargets("sales@example.com") == ["b@elsewhere.test"]
    assert directory.aliasTargets("x@example.org") is None
    assert directory.aliases()["@example.com"] == ["a@example.com"]


def test_second_directory_sees_changes_without_restart(tmp_path: Path) -> None:
    writer = PasswdFileDirectory(tmp_path)
    reader = PasswdFileDirectory(tmp_path)
    assert reader.domains() == []
    writer.addDomain("example.com")
    writer.addUser("a@example.com", b"one")
    assert reader.checkPassword("a@example.com", b"one") == "a@example.com"
    writer.setPassword("a@example.com", b"two")
    assert reader.checkPassword("a@example.com", b"one") is None
    assert reader.checkPassword("a@example.com", b"two") == "a@example.com"
    writer.addAlias("@example.com", ["a@example.com"])
    assert reader.aliasTargets("x@example.com") == ["a@example.com"]
    writer.removeUser("a@example.com")
    assert not reader.hasUser("a@example.com")


def test_hand_edit_with_same_size_is_seen(tmp_path: Path) -> None:
    d = PasswdFileDirectory(tmp_path)
    (tmp_path / "domains").write_text("aaaa.com\n")
    assert d.domains() == ["aaaa.com"]
    st = (tmp_path / "domains").stat()
    (tmp_path / "domains").write_text("bbbb.com\n")
    os.utime(tmp_path / "domains", ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert d.domains() == ["bbbb.com"]


def test_no_temporary_or_lock_files_are_left_behind(directory: PasswdFileDirectory) -> None:
    directory.addUser("a@example.com", b"pw")
    directory.addAlias("x@example.com", ["a@example.com"])
    assert sorted(os.listdir(directory.root)) == ["aliases", "domains", "passwd"]


def test_failed_write_keeps_the_old_file(
    directory: PasswdFileDirectory, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory.addUser("a@example.com", b"pw")
    before = (directory.root / "passwd").read_bytes()

    def failingFsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(passwdfile.os, "fsync", failingFsync)
    with pytest.raises(OSError, match="No space"):
        directory.addUser("b@example.com", b"pw")
    monkeypatch.undo()
    assert (directory.root / "passwd").read_bytes() == before
    assert sorted(os.listdir(directory.root)) == ["domains", "passwd"]


def test_lock_of_a_dead_process_is_broken(directory: PasswdFileDirectory) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    (directory.root / ".lock").write_text(f"{dead.stdout.strip()} {socket.gethostname()} x\n")
    directory.addUser("a@example.com", b"pw")
    assert directory.hasUser("a@example.com")
    assert not (directory.root / ".lock").exists()


def test_lock_held_by_a_live_process_times_out(tmp_path: Path) -> None:
    d = PasswdFileDirectory(tmp_path, lockTimeout=0.1)
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / ".lock").write_text(f"{os.getpid()} {socket.gethostname()} x\n")
    with pytest.raises(DirectoryError, match="held by another process"):
        d.addDomain("example.com")
    assert (tmp_path / ".lock").exists()


def test_unreadable_lock_file_is_broken_when_old(tmp_path: Path) -> None:
    d = PasswdFileDirectory(tmp_path, lockTimeout=0.1)
    (tmp_path / ".lock").write_text("")
    os.utime(tmp_path / ".lock", (0, 0))
    d.addDomain("example.com")
    assert d.domains() == ["example.com"]


def test_concurrent_writers_lose_no_change(tmp_path: Path) -> None:
    PasswdFileDirectory(tmp_path).addDomain("example.com")

    def addUsers(worker: int) -> None:
        d = PasswdFileDirectory(tmp_path)
        for n in range(5):
            d.addUser(f"u{worker}-{n}@example.com", b"pw")

    threads = [threading.Thread(target=addUsers, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(PasswdFileDirectory(tmp_path).users()) == 20
