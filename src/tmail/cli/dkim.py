"""
The C{tmail dkim} commands: make a domain's signing key and print the DNS
record that publishes it.

    tmail dkim keygen DOMAIN [--selector NAME] [--algorithm rsa|ed25519] [--bits N]
                             [--force] [--no-activate]
    tmail dkim show DOMAIN [--selector NAME]
    tmail dkim activate DOMAIN SELECTOR

A new key becomes the domain's active one at once, unless
C{--no-activate}: then the record can be published and given time to
spread before C{tmail dkim activate} switches to it, so that no mail goes
out signed with a key verifiers cannot find yet.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from functools import wraps

from tmail.cli.commands import IO, CommandError, configPath
from tmail.config.loader import loadSettings
from tmail.directory.addresses import normalizeDomain
from tmail.directory.passwdfile import PasswdFileDirectory
from tmail.errors import DirectoryError
from tmail.queue.dkim import (
    DEFAULT_RSA_BITS,
    DKIMError,
    DKIMKeyStore,
    defaultSelector,
    generateKey,
    normalizeSelector,
)

__all__ = ["dkimActivate", "dkimKeygen", "dkimShow"]

_Command = Callable[[argparse.Namespace, IO], int]


def _refusalsAreCommandErrors(command: _Command) -> _Command:
    @wraps(command)
    def run(args: argparse.Namespace, io: IO) -> int:
        try:
            return command(args, io)
        except DKIMError as e:
            raise CommandError(str(e)) from None

    return run


def _hostedKeys(args: argparse.Namespace) -> tuple[str, DKIMKeyStore]:
    """The canonical domain (which must be hosted) and the key store."""
    settings = loadSettings(configPath(args))
    domain = normalizeDomain(args.domain)
    if not PasswdFileDirectory(settings.data_dir).hasDomain(domain):
        raise DirectoryError(f"domain {domain} is not hosted here; add it first")
    return domain, DKIMKeyStore(settings.data_dir / "dkim")


@_refusalsAreCommandErrors
def dkimKeygen(args: argparse.Namespace, io: IO) -> int:
    """C{tmail dkim keygen DOMAIN}: write a new key, print its DNS record."""
    domain, keys = _hostedKeys(args)
    selector = normalizeSelector(args.selector or defaultSelector())
    if args.algorithm != "rsa" and args.bits is not None:
        raise CommandError("--bits is for rsa keys only")
    if keys.hasKey(domain, selector) and not args.force:
        raise CommandError(
            f"selector {selector} of {domain} has a key already "
            f"({keys.keyPath(domain, selector)}); choose another --selector, "
            "or give --force to replace it"
        )
    privateKey = generateKey(args.algorithm, args.bits or DEFAULT_RSA_BITS)
    key = keys.add(domain, selector, privateKey, replace=args.force, activate=not args.no_activate)
    size = f", {key.bits} bits" if key.algorithm == "rsa" else ""
    io.say(f"wrote {keys.keyPath(domain, selector)} ({key.algorithm}{size})")
    if args.no_activate:
        active = keys.activeSelector(domain)
        now = f"signs with selector {active}" if active else "is not signed"
        io.say(
            f"{domain} {now} until `tmail dkim activate {domain} {selector}`; "
            "publish this DNS record first:"
        )
    else:
        io.say(f"{domain} is signed with selector {selector} from now on; publish this DNS record:")
    io.say(key.zoneLine())
    return 0


@_refusalsAreCommandErrors
def dkimShow(args: argparse.Namespace, io: IO) -> int:
    """C{tmail dkim show DOMAIN}: the DNS record of the active (or given) selector."""
    domain, keys = _hostedKeys(args)
    selector = normalizeSelector(args.selector) if args.selector else keys.activeSelector(domain)
    if selector is None:
        raise CommandError(f"{domain} has no DKIM key; make one with `tmail dkim keygen {domain}`")
    key = keys.load(domain, selector)
    if key is None:
        raise CommandError(f"selector {selector} of {domain} has no key")
    io.say(key.zoneLine())
    return 0


@_refusalsAreCommandErrors
def dkimActivate(args: argparse.Namespace, io: IO) -> int:
    """C{tmail dkim activate DOMAIN SELECTOR}: sign with that selector's key from now on."""
    domain, keys = _hostedKeys(args)
    selector = normalizeSelector(args.selector)
    if keys.load(domain, selector) is None:
        raise CommandError(f"selector {selector} of {domain} has no key")
    keys.activate(domain, selector)
    io.say(f"{domain} is signed with selector {selector} from now on")
    return 0
