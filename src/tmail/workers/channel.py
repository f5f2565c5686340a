"""
What a worker and its supervisor say to each other, as AMP commands
(L{twisted.protocols.amp}) over the socket pair each worker inherits.

Workers ask (the supervisor answers): L{Admit} and L{Release} for the
per-client connection limits, L{BeginLogin} and L{EndLogin} for the
failed-login throttle, and tell L{Queued} (mail for the queue runner) and
L{FolderChanged} and L{Watch}.  The supervisor tells each worker that
watches a folder L{RefreshFolder} when another process changed it, and
each worker L{WatchedElsewhere} when a folder starts or stops being
watched in another worker, so that a worker announces only the changes
someone elsewhere waits for.  A worker tells L{Ready} once it is set up,
and accepts connections once told L{Serve}.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

from twisted.protocols import amp

__all__ = [
    "CHANNEL_FD",
    "FIRST_LISTENER_FD",
    "Admit",
    "BeginLogin",
    "EndLogin",
    "FolderChanged",
    "Queued",
    "Ready",
    "RefreshFolder",
    "Release",
    "Serve",
    "Watch",
    "WatchedElsewhere",
]

#: Where a worker finds its channel (0-2: standard streams) and its first
#: listening socket.
CHANNEL_FD = 3
FIRST_LISTENER_FD = 4

_text = cast(Callable[[], amp.Argument], amp.Unicode)
_integer = cast(Callable[[], amp.Argument], amp.Integer)
_boolean = cast(Callable[[], amp.Argument], amp.Boolean)


class Admit(amp.Command):
    """
    Count a connection from C{host} on the listeners C{counter} names, with
    their limits; answers C{refusal}: C{""} (admitted), C{"client"} or
    C{"server"} (L{tmail.connections.Refusal}).
    """

    arguments = [
        (b"counter", _text()),
        (b"limit", _integer()),
        (b"total", _integer()),
        (b"host", _text()),
    ]
    response = [(b"refusal", _text())]


class Release(amp.Command):
    """An admitted connection from C{host} ended."""

    arguments = [(b"counter", _text()), (b"host", _text())]
    requiresAnswer = False


class BeginLogin(amp.Command):
    """
    A password check from C{address} is about to run: answers the
    attempt's number, or 0 when the address is at its limit.
    """

    arguments = [(b"address", _text())]
    response = [(b"attempt", _integer())]


class EndLogin(amp.Command):
    """
    The verdict of attempt C{attempt}: C{"succeeded"}, C{"failed"} or
    C{"abandoned"}.  A failure is answered once its delay has passed.
    """

    arguments = [(b"attempt", _integer()), (b"verdict", _text())]


class Queued(amp.Command):
    """A worker committed queue entry C{entry}: attempt it now."""

    arguments = [(b"entry", _text())]
    requiresAnswer = False


class FolderChanged(amp.Command):
    """The folder C{key} (L{tmail.changes}) changed in the telling process."""

    arguments = [(b"key", _text())]
    requiresAnswer = False


class Watch(amp.Command):
    """
    Sessions in the telling worker started (C{watched}) or stopped watching
    the folder C{key}: only workers that watch a folder are told of its
    changes.
    """

    arguments = [(b"key", _text()), (b"watched", _boolean())]
    requiresAnswer = False


class RefreshFolder(amp.Command):
    """Another process changed the folder C{key}: look at it again."""

    arguments = [(b"key", _text())]
    requiresAnswer = False


class WatchedElsewhere(amp.Command):
    """
    Sessions in another worker started (C{watched}) or stopped watching
    the folder C{key}: announce its changes (L{FolderChanged}) only while
    it is watched elsewhere.
    """

    arguments = [(b"key", _text()), (b"watched", _boolean())]
    requiresAnswer = False


class Ready(amp.Command):
    """The telling worker is set up and waits for L{Serve} to accept connections."""

    requiresAnswer = False


class Serve(amp.Command):
    """
    Accept connections: every worker is ready (or some were not in time).
    Connections that came before wait in the listening sockets' queues, to
    be shared by the workers rather than all taken by the first one up.
    """

    requiresAnswer = False
