"""Log observers an operator can choose with C{log_format}."""

from __future__ import annotations

import sys

from twisted.logger import ILogObserver, jsonFileLogObserver


def jsonObserver() -> ILogObserver:
    """One JSON object per line on standard output (C{log_format = "json"})."""
    return jsonFileLogObserver(sys.stdout)
