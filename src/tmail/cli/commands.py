"""
The C{tmail} commands that read a configuration: C{check}, the user
directory commands (C{domain}, C{user}, C{alias}) and C{quota}.

Each command is a function of the parsed arguments, an L{IO} (so tests can
capture output) and returns the exit status.  Refusals raise
L{DirectoryError} or L{CommandError}; the caller turns them into one line
on standard error.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from tmail.config.loader import loadSettings
from tmail.config.schema import Settings
from tmail.directory.addresses import normalizeAddress, normalizeAliasSource, normalizeDomain
from tmail.directory.passwdfile import PasswdFileDirectory
from tmail.errors import DirectoryError, TmailError
from tmail.interfaces import IQuotaStore, QuotaUsage
from tmail.realm.build import realmFromSettings
from tmail.service import checkConfig
from tmail.store.blocking import blocking
from tmail.store.filework import INLINE
from tmail.store.quota import humanSize, overrideFields, parseSize, userOverrides

__all__ = ["IO", "CommandError", "readPassword"]


class CommandError(TmailError):
    """A command was refused for a reason outside the directory."""


@dataclass
class IO:
    """Where a command reads passwords from and writes to."""

    stdin: TextIO = field(default_factory=lambda: sys.stdin)
    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)
    getpass: Callable[[str], str] = getpass.getpass

    def say(self, line: str) -> None:
        self.stdout.write(line + "\n")


def readPassword(fromStdin: bool, io: IO) -> bytes:
    """
    A new password: one line of standard input with C{--password-stdin},
    else typed twice at a prompt.  Never taken from the command line, where
    other users could see it in the process list.
    """
    if fromStdin:
        line = io.stdin.readline()
        if not line:
            raise CommandError("no password on standard input")
        return line.removesuffix("\n").removesuffix("\r").encode("utf-8")
    try:
        first = io.getpass("New password: ")
        second = io.getpass("Repeat the password: ")
    except EOFError:
        raise CommandError("no password given") from None
    if first != second:
        raise CommandError("the passwords do not match")
    return first.encode("utf-8")


def configPath(args: argparse.Namespace) -> Path:
    """The C{--config} path (its default was worked out by the parser)."""
    return Path(args.config)


def _directory(args: argparse.Namespace) -> tuple[Settings, PasswdFileDirectory]:
    settings = loadSettings(configPath(args))
    return settings, PasswdFileDirectory(settings.data_dir)


def _maildirDomain(settings: Settings) -> str | None:
    """The one domain of a C{maildir} realm; C{None} for other backends."""
    if settings.realm.backend != "maildir" or settings.realm.domain is None:
        return None
    return normalizeDomain(settings.realm.domain)


def _requireMaildirDomain(settings: Settings, domain: str) -> None:
    only = _maildirDomain(settings)
    if only is not None and domain != only:
        raise CommandError(
            f"the maildir realm serves only {only} (realm.domain); "
            f"use the virtual realm to host {domain}"
        )


def check(args: argparse.Namespace, io: IO) -> int:
    """C{tmail check}: load the configuration and build its policies, say C{PATH: OK}."""
    checkConfig(configPath(args))
    io.say(f"{configPath(args)}: OK")
    return 0


def domainAdd(args: argparse.Namespace, io: IO) -> int:
    settings, directory = _directory(args)
    domain = normalizeDomain(args.domain)
    _requireMaildirDomain(settings, domain)
    io.say(f"added domain {directory.addDomain(domain)}")
    return 0


def domainList(args: argparse.Namespace, io: IO) -> int:
    _, directory = _directory(args)
    for domain in directory.domains():
        io.say(domain)
    return 0


def domainRemove(args: argparse.Namespace, io: IO) -> int:
    _, directory = _directory(args)
    directory.removeDomain(args.domain)
    io.say(f"removed domain {normalizeDomain(args.domain)}")
    return 0


def userAdd(args: argparse.Namespace, io: IO) -> int:
    settings, directory = _directory(args)
    address = normalizeAddress(args.address)
    _requireMaildirDomain(settings, address.rpartition("@")[2])
    if not directory.hasDomain(address.rpartition("@")[2]):
        raise DirectoryError(
            f"domain {address.rpartition('@')[2]} is not hosted here; add it first"
        )
    if directory.hasUser(address):
        raise DirectoryError(f"user {address} already exists")
    io.say(f"added user {directory.addUser(address, readPassword(args.password_stdin, io))}")
    return 0


def userList(args: argparse.Namespace, io: IO) -> int:
    _, directory = _directory(args)
    for user in directory.users(normalizeDomain(args.domain) if args.domain else None):
        io.say(user)
    return 0


def userPasswd(args: argparse.Namespace, io: IO) -> int:
    _, directory = _directory(args)
    address = normalizeAddress(args.address)
    if not directory.hasUser(address):
        raise DirectoryError(f"no such user: {address}")
    directory.setPassword(address, readPassword(args.password_stdin, io))
    io.say(f"changed the password of {address}")
    return 0


def userRemove(args: argparse.Namespace, io: IO) -> int:
    _, directory = _directory(args)
    directory.removeUser(args.address)
    io.say(f"removed user {normalizeAddress(args.address)}")
    return 0


def aliasAdd(args: argparse.Namespace, io: IO) -> int:
    settings, directory = _directory(args)
    source = normalizeAliasSource(args.source)
    _requireMaildirDomain(settings, source.rpartition("@")[2])
    targets = directory.addAlias(source, args.targets)
    io.say(f"{source}: {', '.join(targets)}")
    return 0


def aliasList(args: argparse.Namespace, io: IO) -> int:
    _, directory = _directory(args)
    domain = normalizeDomain(args.domain) if args.domain else None
    for source, targets in directory.aliases().items():
        if domain is None or source.rpartition("@")[2] == domain:
            io.say(f"{source}: {', '.join(targets)}")
    return 0


def aliasRemove(args: argparse.Namespace, io: IO) -> int:
    _, directory = _directory(args)
    directory.removeAlias(args.source, args.target)
    source = normalizeAliasSource(args.source)
    io.say(
        f"removed {args.target} from alias {source}" if args.target else f"removed alias {source}"
    )
    return 0


def _quotaStore(args: argparse.Namespace) -> tuple[str, PasswdFileDirectory, Any]:
    """
    The user's canonical address, the directory, and the user's store,
    doing its file work inline and answering synchronously.
    """
    settings, directory = _directory(args)
    address = normalizeAddress(args.address)
    if not directory.hasUser(address):
        raise DirectoryError(f"no such user: {address}")
    store = blocking(realmFromSettings(settings, directory, INLINE).storeFor(address))
    if not IQuotaStore.providedBy(store):
        raise CommandError(f"the store of {address} keeps no quota ({settings.realm.backend})")
    return address, directory, store


def _showUsage(
    io: IO, address: str, usage: QuotaUsage | None, own: tuple[int | None, int | None]
) -> None:
    """Usage and limits, exact and for people, and where each limit comes from."""
    if usage is None:
        raise CommandError(f"the store of {address} keeps no quota")
    io.say(f"user: {address}")
    rows = (
        ("storage", usage.storage, usage.storageLimit, own[0], humanSize),
        ("messages", usage.messages, usage.messagesLimit, own[1], _messageCount),
    )
    for name, used, limit, override, human in rows:
        source = "user limit" if override is not None else "default limit"
        if limit is None:
            io.say(f"{name}: {used} of unlimited ({human(used)}; {source})")
        else:
            percent = 100 * used / limit
            io.say(
                f"{name}: {used} of {limit} ({human(used)} of {human(limit)},"
                f" {percent:.0f}%; {source})"
            )


def _messageCount(count: int) -> str:
    return f"{count} message" if count == 1 else f"{count} messages"


def quotaShow(args: argparse.Namespace, io: IO) -> int:
    """C{tmail quota show USER}: usage and limits (recounted if the file is stale)."""
    address, directory, store = _quotaStore(args)
    _showUsage(io, address, store.quota(), userOverrides(directory.userFields(address)))
    return 0


def quotaRecalc(args: argparse.Namespace, io: IO) -> int:
    """C{tmail quota recalc USER}: count the messages again, rewrite C{maildirsize}."""
    address, directory, store = _quotaStore(args)
    _showUsage(io, address, store.recalculateQuota(), userOverrides(directory.userFields(address)))
    return 0


def _limitArgument(option: str, value: str, parse: Callable[[str], int]) -> int | None:
    """C{None} for C{default}, else the non-negative number C{parse} makes of it."""
    if value.strip().lower() == "default":
        return None
    try:
        return parse(value)
    except ValueError:
        raise CommandError(f"{option}: not a valid value: {value!r}") from None


def _count(text: str) -> int:
    if not text.strip().isdigit():
        raise ValueError(text)
    return int(text)


def quotaSet(args: argparse.Namespace, io: IO) -> int:
    """
    C{tmail quota set USER [--storage SIZE] [--messages N]}: write the
    user's own limits as C{userdb_quota_rule} fields of the passwd file;
    C{default} removes one, so the configured C{[quota]} applies.
    """
    if args.storage is None and args.messages is None:
        raise CommandError("give --storage, --messages or both")
    _, directory = _directory(args)
    address = normalizeAddress(args.address)
    if not directory.hasUser(address):
        raise DirectoryError(f"no such user: {address}")
    fields = directory.userFields(address)
    storage, messages = userOverrides(fields)
    if args.storage is not None:
        storage = _limitArgument("--storage", args.storage, parseSize)
    if args.messages is not None:
        messages = _limitArgument("--messages", args.messages, _count)
    directory.setUserFields(address, overrideFields(fields, storage, messages))
    shown = {
        "storage": None if storage is None else f"{storage} ({humanSize(storage)})",
        "messages": None if messages is None else str(messages),
    }
    for name, value in shown.items():
        if value is None:
            io.say(f"{address}: {name}: the default")
        elif value.startswith("0"):
            io.say(f"{address}: {name}: unlimited")
        else:
            io.say(f"{address}: {name}: {value}")
    return 0
