"""
The C{tmail} administration command.

    tmail init DIR
    tmail check [--config PATH]
    tmail domain add|list|remove ...
    tmail user add|list|passwd|remove ...
    tmail alias add|list|remove ...
    tmail quota show|set|recalc ...
    tmail dkim keygen|show|activate ...
    tmail queue list|show|flush|hold|release|delete ...

C{--config} may come before or after the subcommand and defaults to
C{$TMAIL_CONFIG}, else C{./tmail.toml}.  Exit status: 0 on success, 1 when
a change is refused, 2 for a bad configuration or command line; the reason
is one line on standard error, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from typing import Any, NoReturn

from tmail.cli import commands, dkim, queue
from tmail.cli.commands import IO, CommandError
from tmail.cli.init import DEFAULT_DOMAIN, DEFAULT_HOSTNAME, init
from tmail.errors import ConfigError, TmailError

__all__ = ["buildParser", "main"]

Command = Callable[[argparse.Namespace, IO], int]


class _Parser(argparse.ArgumentParser):
    """
    An argument parser whose usage errors are one line, and which takes no
    abbreviated options (so C{--password=x} is not mistaken for
    C{--password-stdin} and echoed back in an error).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        if "ignored explicit argument" in message:
            message = message.partition(": ignored explicit argument")[0] + ": takes no value"
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _version() -> str:
    try:
        return version("tmail")
    except PackageNotFoundError:
        return "unknown"


def buildParser() -> argparse.ArgumentParser:
    """The whole command line; each leaf sets C{command} to its function."""
    configOption = _Parser(add_help=False)
    configOption.add_argument(
        "--config",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="configuration file (default: $TMAIL_CONFIG, else ./tmail.toml)",
    )
    passwordOption = _Parser(add_help=False)
    passwordOption.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of standard input instead of a prompt",
    )

    parser = _Parser(
        prog="tmail", description="Administer a tmail mail server.", parents=[configOption]
    )
    parser.add_argument("--version", action="version", version=f"tmail {_version()}")
    sub = parser.add_subparsers(dest="topic", metavar="COMMAND", required=True)

    def leaf(
        group: argparse._SubParsersAction[_Parser],
        name: str,
        command: Command,
        help: str,
        parents: tuple[_Parser, ...] = (configOption,),
    ) -> _Parser:
        p = group.add_parser(name, help=help, description=help, parents=list(parents))
        p.set_defaults(command=command)
        return p

    p = leaf(sub, "init", init, "create a demo configuration, certificate and user in DIR", ())
    p.add_argument("directory", metavar="DIR")
    p.add_argument("--hostname", default=DEFAULT_HOSTNAME, help="server name (%(default)s)")
    p.add_argument("--domain", default=DEFAULT_DOMAIN, help="mail domain (%(default)s)")

    leaf(sub, "check", commands.check, "validate the configuration file")

    domain = sub.add_parser("domain", help="hosted domains").add_subparsers(
        dest="action", metavar="ACTION", required=True
    )
    leaf(domain, "add", commands.domainAdd, "host a domain").add_argument("domain")
    leaf(domain, "list", commands.domainList, "list hosted domains")
    leaf(domain, "remove", commands.domainRemove, "stop hosting an empty domain").add_argument(
        "domain"
    )

    user = sub.add_parser("user", help="users and passwords").add_subparsers(
        dest="action", metavar="ACTION", required=True
    )
    both = (configOption, passwordOption)
    leaf(user, "add", commands.userAdd, "add a user", both).add_argument("address")
    leaf(user, "list", commands.userList, "list users").add_argument("domain", nargs="?")
    leaf(user, "passwd", commands.userPasswd, "change a user's password", both).add_argument(
        "address"
    )
    leaf(user, "remove", commands.userRemove, "remove a user").add_argument("address")

    alias = sub.add_parser("alias", help="aliases and catch-alls").add_subparsers(
        dest="action", metavar="ACTION", required=True
    )
    p = leaf(alias, "add", commands.aliasAdd, "add targets to an alias (source @domain: catch-all)")
    p.add_argument("source")
    p.add_argument("targets", metavar="target", nargs="+")
    leaf(alias, "list", commands.aliasList, "list aliases").add_argument("domain", nargs="?")
    p = leaf(alias, "remove", commands.aliasRemove, "remove an alias, or one of its targets")
    p.add_argument("source")
    p.add_argument("target", nargs="?")

    quota = sub.add_parser("quota", help="per-user quotas").add_subparsers(
        dest="action", metavar="ACTION", required=True
    )
    leaf(quota, "show", commands.quotaShow, "show a user's usage and limits").add_argument(
        "address"
    )
    p = leaf(
        quota,
        "set",
        commands.quotaSet,
        "set a user's own limits (0: unlimited, default: the configured [quota])",
    )
    p.add_argument("address")
    p.add_argument(
        "--storage", metavar="SIZE", help='bytes, or with a unit: "500M", "1G"; 0 or "default"'
    )
    p.add_argument("--messages", metavar="N", help='a number of messages; 0 or "default"')
    leaf(
        quota, "recalc", commands.quotaRecalc, "count a user's usage again from the messages"
    ).add_argument("address")

    keys = sub.add_parser("dkim", help="DKIM signing keys").add_subparsers(
        dest="action", metavar="ACTION", required=True
    )
    p = leaf(keys, "keygen", dkim.dkimKeygen, "make a domain's signing key, print its DNS record")
    p.add_argument("domain")
    p.add_argument("--selector", metavar="NAME", help="default: tmail<year><month>")
    p.add_argument("--algorithm", choices=("rsa", "ed25519"), default="rsa", help="(rsa)")
    p.add_argument("--bits", type=int, metavar="N", help="RSA key size (2048)")
    p.add_argument("--force", action="store_true", help="replace the key of an existing selector")
    p.add_argument(
        "--no-activate", action="store_true", help="keep signing with the current selector"
    )
    p = leaf(keys, "show", dkim.dkimShow, "print the DNS record of a domain's key")
    p.add_argument("domain")
    p.add_argument("--selector", metavar="NAME", help="default: the active one")
    p = leaf(keys, "activate", dkim.dkimActivate, "sign a domain's mail with another selector")
    p.add_argument("domain")
    p.add_argument("selector")

    q = sub.add_parser("queue", help="the outbound mail queue").add_subparsers(
        dest="action", metavar="ACTION", required=True
    )
    p = leaf(q, "list", queue.queueList, "list queued mail, oldest first")
    p.add_argument("--json", action="store_true", help="print the entries' metadata as JSON")
    p = leaf(q, "show", queue.queueShow, "show one entry and its message header")
    p.add_argument("id", metavar="ID")
    p.add_argument("--message", action="store_true", help="print the whole message")
    leaf(q, "flush", queue.queueFlush, "try waiting mail (or one entry) now").add_argument(
        "id", metavar="ID", nargs="?"
    )
    for name, command, text in (
        ("hold", queue.queueHold, "stop trying entries until released"),
        ("release", queue.queueRelease, "try held entries again"),
        ("delete", queue.queueDelete, "remove entries without telling their senders"),
    ):
        leaf(q, name, command, text).add_argument("ids", metavar="ID", nargs="+")
    return parser


def main(argv: list[str] | None = None, io: IO | None = None) -> int:
    """
    Run C{tmail} with C{argv} (default: C{sys.argv[1:]}); return the exit
    status.
    """
    io = io or IO()
    parser = buildParser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra and args.command in (commands.userAdd, commands.userPasswd):
            parser.error(
                "too many arguments (not shown: a password is never taken from the "
                "command line; type it at the prompt or use --password-stdin)"
            )
        if extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 2
    if not hasattr(args, "config"):
        args.config = os.environ.get("TMAIL_CONFIG") or "tmail.toml"
    command: Command = args.command
    try:
        return command(args, io)
    except ConfigError as e:
        io.stderr.write(f"{e}\n")
        return 2
    except (TmailError, CommandError) as e:
        io.stderr.write(f"tmail: error: {e}\n")
        return 1
    except OSError as e:
        io.stderr.write(f"tmail: error: {e}\n")
        return 1
    except KeyboardInterrupt:
        io.stderr.write("\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
