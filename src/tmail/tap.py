"""
The C{twistd tmail} plugin's options and service maker.

C{twistd -n tmail --config PATH}.  A bad configuration prints one line
naming the file, the key and the problem, and exits with status 2.  The
service is L{tmail.service.makeServerService}'s: one process, or a
supervisor of C{[server] workers} worker processes.  Once it runs, the
objects of its start are frozen out of garbage collection
(L{tmail.heap}).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, cast

from twisted.application.service import IService
from twisted.internet.interfaces import IReactorCore
from twisted.python import usage

from tmail.config.loader import loadSettings
from tmail.config.schema import Settings
from tmail.errors import ConfigError
from tmail.heap import freezeStartupObjects


class Options(usage.Options):
    """Command line of C{twistd tmail}."""

    synopsis = "[--config PATH]"
    optParameters = [
        ["config", "c", "tmail.toml", "The configuration file (TOML)."],
    ]

    settings: Settings

    def postOptions(self) -> None:
        try:
            self.settings = loadSettings(Path(self["config"]))
        except ConfigError as e:
            sys.stderr.write(f"{e}\n")
            sys.exit(2)
        parent = getattr(self, "parent", None)
        if self.settings.log_format == "json" and parent is not None and not parent["logger"]:
            parent["logger"] = "tmail.logobserver.jsonObserver"


def makeService(options: Options) -> IService:
    """Build the services from the loaded settings."""
    from twisted.internet import reactor

    from tmail import service

    try:
        built = service.makeServerService(options.settings)
    except ConfigError as e:
        sys.stderr.write(f"{e}\n")
        sys.exit(2)
    cast(Any, built).exitOnListenFailure = True
    # twistd starts the services before the reactor runs: by then
    # everything the process serves with is made.
    cast(IReactorCore, reactor).callWhenRunning(freezeStartupObjects)
    return built
