"""Loopback listeners and blocking clients for in-process protocol tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from twisted.internet import reactor, threads
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Factory
from twisted.trial.unittest import TestCase

T = TypeVar("T")


def listen(testCase: TestCase, factory: Factory) -> Deferred[int]:
    """
    Listen on a free loopback port for the duration of the test; fires with
    the port number.
    """
    endpoint = serverFromString(reactor, "tcp:0:interface=127.0.0.1")

    def listening(port: IListeningPort) -> int:
        testCase.addCleanup(port.stopListening)
        return port.getHost().port  # type: ignore[attr-defined,no-any-return]

    return endpoint.listen(factory).addCallback(listening)


def inThread(function: Callable[..., T], *args: object) -> Deferred[T]:
    """Run a blocking client (smtplib, imaplib, poplib) off the reactor thread."""
    return threads.deferToThread(function, *args)
