"""
A worker's log events on their way to the supervisor's log, one line each.

A worker's standard output is a pipe its supervisor reads; each event is
written there as a JSON array C{[level, time, namespace, text]}, the text
already formatted (with any traceback) by the worker.  This rather than
Twisted's C{jsonFileLogObserver}, whose lines carry the whole event and
cost both processes a flattening and an object hook per field: the
supervisor only needs to place the line in its own log, tagged with the
worker (L{eventFromLine}).  The lines of one reactor turn go out in one
write.
"""

from __future__ import annotations

import json
from typing import Any, TextIO, cast

from twisted.internet.interfaces import IReactorCore, IReactorTime
from twisted.logger import ILogObserver, LogEvent, LogLevel, eventAsText
from twisted.python.threadable import isInIOThread
from zope.interface import implementer

__all__ = ["LogLineWriter", "eventFromLine"]


@implementer(ILogObserver)
class LogLineWriter:
    """
    Writes each event to C{out} as one line (see the module docstring),
    flushed at the end of the reactor turn when C{reactor} runs, at once
    otherwise (and from other threads).
    """

    def __init__(self, out: TextIO, reactor: object = None) -> None:
        self.out = out
        self.reactor = reactor
        self._pending = False

    def __call__(self, event: LogEvent) -> None:
        level = getattr(event.get("log_level"), "name", "info")
        text = eventAsText(
            event, includeTraceback=True, includeTimestamp=False, includeSystem=False
        )
        line = json.dumps(
            [
                level,
                event.get("log_time"),
                event.get("log_namespace", ""),
                text,
            ]
        )
        self.out.write(line + "\n")
        if self._pending:
            return
        running = getattr(cast(IReactorCore, self.reactor), "running", False)
        if running and isInIOThread():  # type: ignore[no-untyped-call]
            self._pending = True
            cast(IReactorTime, self.reactor).callLater(0, self.flush)
        else:
            self.out.flush()

    def flush(self) -> None:
        self._pending = False
        self.out.flush()


def eventFromLine(line: bytes, system: str) -> LogEvent | None:
    """The event a L{LogLineWriter} line stands for, in C{system}; C{None} if it is not one."""
    try:
        level, when, namespace, text = json.loads(line)
        found: Any = LogLevel.levelWithName(level)
    except (ValueError, TypeError, KeyError):
        return None
    if not isinstance(text, str) or not isinstance(namespace, str):
        return None
    return {
        "log_level": found,
        "log_time": when if isinstance(when, int | float) else None,
        "log_namespace": namespace,
        "log_system": system,
        "log_format": "{text}",
        "text": text,
    }
