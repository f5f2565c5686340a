"""
The contract mixins hold for a store that answers with Deferreds, as the
store seam's disk and network operations will: the in-memory store behind
proxies whose asynchronous operations answer in a later reactor turn.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase
from zope.interface import directlyProvides, providedBy

from tmail.interfaces import IMailFolder, IMailStore
from tmail.store.memory import MemoryStore
from tmail.store.quota import QuotaLimits
from tmail.testing import MailFolderTestsMixin, MailStoreTestsMixin
from tmail.testing.stateful import FolderModelTestsMixin, StoreModelTestsMixin

#: The operations that touch disk or network: they answer with a Deferred.
STORE_LATER = frozenset(
    {
        "getFolder",
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
FOLDER_LATER = frozenset(
    {"refresh", "openMessage", "setFlags", "changeFlags", "expunge", "copyMessage"}
)
PENDING_LATER = frozenset({"commit"})


def later(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred[Any]:
    return deferLater(reactor, 0, function, *args, **kwargs)


class Proxy:
    """
    Provides what C{inner} provides; the methods named in C{deferred}
    answer in a later reactor turn, and folders, pending messages and
    listeners are wrapped and unwrapped on the way through.
    """

    def __init__(self, inner: Any, deferred: frozenset[str], proxies: dict[int, Proxy]) -> None:
        self._inner = inner
        self._deferred = deferred
        self._proxies = proxies
        self._listeners: dict[Any, Callable[[Any], None]] = {}
        directlyProvides(self, providedBy(inner))

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._inner, name)
        if name == "addListener":
            return self._addListener
        if name == "removeListener":
            return self._removeListener
        if not callable(value):
            return value

        def method(*args: Any, **kwargs: Any) -> Any:
            args = tuple(unwrap(arg) for arg in args)
            if name in self._deferred:
                return later(value, *args, **kwargs).addCallback(self._wrap)
            return self._wrap(value(*args, **kwargs))

        return method

    def _wrap(self, result: Any) -> Any:
        if IMailFolder.providedBy(result):
            return wrap(result, FOLDER_LATER, self._proxies)
        if hasattr(result, "commit") and hasattr(result, "write"):
            return Proxy(result, PENDING_LATER, self._proxies)
        return result

    def _addListener(self, listener: Callable[[Any], None]) -> None:
        def told(folder: Any) -> None:
            listener(wrap(folder, FOLDER_LATER, self._proxies))

        self._listeners[listener] = told
        self._inner.addListener(told)

    def _removeListener(self, listener: Callable[[Any], None]) -> None:
        told = self._listeners.pop(listener, None)
        if told is not None:
            self._inner.removeListener(told)


def wrap(inner: Any, deferred: frozenset[str], proxies: dict[int, Proxy]) -> Proxy:
    """One proxy per object, so that identity checks hold."""
    proxy = proxies.get(id(inner))
    if proxy is None or proxy._inner is not inner:
        proxy = proxies[id(inner)] = Proxy(inner, deferred, proxies)
    return proxy


def unwrap(value: Any) -> Any:
    return value._inner if isinstance(value, Proxy) else value


def deferringStore(quota: QuotaLimits | None = None) -> IMailStore:
    store: IMailStore = wrap(MemoryStore(quota=quota), STORE_LATER, {})  # type: ignore[assignment]
    return store


class DeferringStoreContractTests(MailStoreTestsMixin, MailFolderTestsMixin, TestCase):
    def makeStore(self) -> IMailStore:
        return deferringStore()

    def makeLimitedStore(self, limits: QuotaLimits) -> IMailStore:
        return deferringStore(limits)

    async def test_operations_answer_later(self) -> None:
        """The proxies do defer: a folder is not there before the reactor turns."""
        store = self.makeStore()
        answer = store.getFolder("INBOX")
        self.assertIsInstance(answer, Deferred)
        self.assertNoResult(answer)  # type: ignore[attr-defined]
        folder = await answer
        self.assertTrue(IMailFolder.providedBy(folder))


class DeferringFolderModelTests(FolderModelTestsMixin, TestCase):
    timeout = 300

    def makeStore(self) -> IMailStore:
        return deferringStore()


class DeferringStoreModelTests(StoreModelTestsMixin, TestCase):
    timeout = 300

    def makeStore(self) -> IMailStore:
        return deferringStore()
