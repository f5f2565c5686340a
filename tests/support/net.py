"""Loopback listeners and blocking clients for in-process protocol tests."""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable
from typing import TypeVar

from twisted.internet import reactor, threads
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Factory
from twisted.internet.task import deferLater
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


def eventually(
    condition: Callable[[], bool],
    within: float = 10.0,
    failure: Callable[[], str] = lambda: "the condition was not met in time",
) -> Deferred[None]:
    """
    Fire once C{condition()} holds (asked every 20 ms while the reactor
    runs); fail with C{AssertionError(failure())} after C{within} seconds.
    """

    async def poll() -> None:
        deadline = time.monotonic() + within
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(failure())
            await deferLater(reactor, 0.02, lambda: None)

    return Deferred.fromCoroutine(poll())


def readLine(sock: socket.socket | ssl.SSLSocket) -> bytes:
    """One response line, read a byte at a time so nothing after it is consumed."""
    line = b""
    while not line.endswith(b"\r\n"):
        byte = sock.recv(1)
        if not byte:
            break
        line += byte
    return line


def readUntil(sock: socket.socket | ssl.SSLSocket, ending: bytes, already: bytes = b"") -> bytes:
    """Everything the peer sends until it has sent C{ending} (or closes)."""
    received = already
    while not received.endswith(ending):
        chunk = sock.recv(65536)
        if not chunk:
            break
        received += chunk
    return received


def refusalOfThirdConnection(port: int) -> bytes:
    """
    With two sessions open from 127.0.0.1, open a third: return its one
    line, after checking the server then closed it.
    """
    first = socket.create_connection(("127.0.0.1", port), timeout=10)
    second = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        readLine(first)
        readLine(second)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as third:
            refused = readLine(third)
            if third.recv(100) != b"":
                raise AssertionError("the refused connection was left open")
    finally:
        first.close()
        second.close()
    return refused
