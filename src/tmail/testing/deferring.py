"""
A store that answers its disk and network operations in a later reactor
turn, wrapped around any other store: what a front end meets when its store
works in a thread pool or over a network.  Front-end tests run real
sessions on it to show that every store call is waited for, never assumed
to answer at once.

Which calls answer later is the store seam's split (see
L{tmail.interfaces}): the operations that touch disk or network return
Deferreds; what comes from the in-memory index answers at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from zope.interface import directlyProvides, providedBy

from tmail.interfaces import IMailFolder, IMailStore

#: The store operations that answer with a Deferred.
STORE_LATER = frozenset(
    {
        "getFolder",
        "deliveryFolder",
        "listFolders",
        "createFolder",
        "deleteFolder",
        "renameFolder",
        "subscriptions",
        "subscribe",
        "unsubscribe",
        "specialUse",
        "updateSpecialUse",
        "metadata",
        "updateMetadata",
        "quota",
        "checkQuota",
        "recalculateQuota",
    }
)
#: The folder operations that answer with a Deferred.
FOLDER_LATER = frozenset(
    {"refresh", "openMessage", "setFlags", "changeFlags", "expunge", "copyMessage"}
)
#: The pending-message operations that answer with a Deferred.
PENDING_LATER = frozenset({"commit"})


class _Proxy:
    """
    Provides what C{inner} provides; the methods named in C{deferred}
    answer in a later reactor turn, and folders, pending messages and
    listeners are wrapped and unwrapped on the way through.
    """

    def __init__(
        self, inner: Any, deferred: frozenset[str], proxies: dict[int, _Proxy], clock: IReactorTime
    ) -> None:
        self._inner = inner
        self._deferred = deferred
        self._proxies = proxies
        self._clock = clock
        self._listeners: dict[Any, Callable[[Any], None]] = {}
        directlyProvides(self, providedBy(inner))

    def __repr__(self) -> str:
        return f"<deferring {self._inner!r}>"

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._inner, name)
        if name == "addListener":
            return self._addListener
        if name == "removeListener":
            return self._removeListener
        if not callable(value):
            return value

        def method(*args: Any, **kwargs: Any) -> Any:
            args = tuple(_unwrap(arg) for arg in args)
            if name in self._deferred:
                later: Deferred[Any] = deferLater(self._clock, 0, value, *args, **kwargs)
                return later.addCallback(self._wrap)
            return self._wrap(value(*args, **kwargs))

        return method

    def _wrap(self, result: Any) -> Any:
        if IMailFolder.providedBy(result):
            return _wrapped(result, FOLDER_LATER, self._proxies, self._clock)
        if hasattr(result, "commit") and hasattr(result, "write"):
            return _Proxy(result, PENDING_LATER, self._proxies, self._clock)
        return result

    def _addListener(self, listener: Callable[[Any], None]) -> None:
        def told(folder: Any) -> None:
            listener(_wrapped(folder, FOLDER_LATER, self._proxies, self._clock))

        self._listeners[listener] = told
        self._inner.addListener(told)

    def _removeListener(self, listener: Callable[[Any], None]) -> None:
        told = self._listeners.pop(listener, None)
        if told is not None:
            self._inner.removeListener(told)


def _wrapped(
    inner: Any, deferred: frozenset[str], proxies: dict[int, _Proxy], clock: IReactorTime
) -> _Proxy:
    """One proxy per object, so that identity checks hold."""
    proxy = proxies.get(id(inner))
    if proxy is None or proxy._inner is not inner:
        proxy = proxies[id(inner)] = _Proxy(inner, deferred, proxies, clock)
    return proxy


def _unwrap(value: Any) -> Any:
    return value._inner if isinstance(value, _Proxy) else value


def deferringStore(inner: IMailStore, clock: IReactorTime | None = None) -> IMailStore:
    """
    C{inner}, with every disk or network operation of it, of its folders
    and of their pending messages answering in a later turn of C{clock}
    (the global reactor by default).
    """
    if clock is None:
        from twisted.internet import reactor

        clock = cast(IReactorTime, reactor)
    return cast(IMailStore, _wrapped(inner, STORE_LATER, {}, clock))
