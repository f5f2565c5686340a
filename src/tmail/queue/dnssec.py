# -*- test-case-name: tests.queue.test_queue_dnssec -*-
"""
DNS queries that ask a validating resolver whether the answer is secure.

DANE (RFC 7672 2.1) trusts the AD bit of a local validating resolver, as
Postfix does with C{smtp_dns_support_level = dnssec}: tmail does not
validate DNSSEC itself, so the name servers it asks must be a validating
resolver on this host (C{127.0.0.1}, C{::1}); the AD bit from elsewhere
crosses a network an attacker may be on.

Twisted's C{client.Resolver} sends queries without the AD bit, and a
resolver only sets AD in its answer to a query that has it or the DO bit
(RFC 6840 5.7), so L{ValidatingResolver} builds its queries itself with
C{twisted.names.dns.Message}: AD set, an EDNS0 OPT record offering 1232
octets over UDP (so most answers need no TCP), a random ID on a fresh UDP
port per query (bound to loopback when the server is there), and answers
accepted only from the server asked, for the question asked.  A
truncated answer is asked again over TCP.  Errors are Twisted's:
C{DNSNameError} (NXDOMAIN), C{DNSServerError} (SERVFAIL, also what a
validating resolver answers for bogus data), C{DNSQueryRefusedError},
C{DNSQueryTimeoutError}.
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.internet import defer
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.error import ConnectError
from twisted.internet.interfaces import IReactorTCP, IReactorTime, IReactorUDP
from twisted.internet.protocol import DatagramProtocol, Factory
from twisted.names import dns, error
from twisted.protocols.basic import Int16StringReceiver

__all__ = ["Answer", "ValidatingResolver", "isLoopback", "resolvConfServers"]

#: The UDP payload size offered (the DNS flag day 2020 value).
UDP_PAYLOAD = 1232

_ERRORS: dict[int, type[error.DomainError | error.DNSQueryRefusedError]] = {
    dns.EFORMAT: error.DNSFormatError,
    dns.ESERVER: error.DNSServerError,
    dns.ENAME: error.DNSNameError,
    dns.ENOTIMP: error.DNSNotImplementedError,
    dns.EREFUSED: error.DNSQueryRefusedError,
}


@dataclass(frozen=True, slots=True)
class Answer:
    """
    A resolver's answer.

    @ivar answers: the answer section.
    @ivar authenticated: the AD bit: the resolver validated it (DNSSEC).
    """

    answers: tuple[dns.RRHeader, ...]
    authenticated: bool


def resolvConfServers(path: str | Path = "/etc/resolv.conf") -> list[tuple[str, int]]:
    """The C{nameserver} addresses C{path} lists (port 53); none if unreadable."""
    servers = []
    try:
        lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    for line in lines:
        words = line.split()
        if len(words) >= 2 and words[0] == "nameserver":
            try:
                servers.append((str(ipaddress.ip_address(words[1].split("%")[0])), 53))
            except ValueError:
                continue
    return servers


def isLoopback(address: str) -> bool:
    """Whether C{address} (an IP address) is on this host."""
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _localInterface(server: str) -> str:
    """Where to listen for an answer from C{server}: loopback only when it is on this host."""
    local = isLoopback(server)
    if ":" in server:
        return "::1" if local else "::"
    return "127.0.0.1" if local else ""


def _opt() -> dns.RRHeader:
    """An EDNS0 OPT pseudo-record (RFC 6891 6.1.2): payload size, version 0, no DO."""
    return dns.RRHeader(b"", dns.OPT, UDP_PAYLOAD, 0, dns.UnknownRecord(b""))


def _parse(data: bytes) -> dns.Message | None:
    message = dns.Message()
    try:
        message.fromStr(data)
    except Exception:
        return None
    return message


class _Datagram(DatagramProtocol):
    """Waits for the one answer to a query sent to C{server}."""

    def __init__(self, server: tuple[str, int], query: dns.Message) -> None:
        self.server = server
        self.query = query
        self.answered: defer.Deferred[dns.Message] = defer.Deferred()

    def startProtocol(self) -> None:
        assert self.transport is not None
        self.transport.write(self.query.toStr(), self.server)

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        if (addr[0], addr[1]) != self.server or self.answered.called:
            return
        message = _parse(datagram)
        if message is not None and _answers(message, self.query):
            self.answered.callback(message)


class _Stream(Int16StringReceiver):
    """One query over TCP (RFC 1035 4.2.2), and its answer."""

    def __init__(self, query: dns.Message) -> None:
        self.query = query
        self.answered: defer.Deferred[dns.Message] = defer.Deferred()

    def connectionMade(self) -> None:
        self.sendString(self.query.toStr())  # type: ignore[no-untyped-call]

    def stringReceived(self, string: bytes) -> None:
        message = _parse(string)
        if not self.answered.called:
            if message is not None and _answers(message, self.query):
                self.answered.callback(message)
            else:
                self.answered.errback(error.DNSFormatError("unintelligible answer over TCP"))
        self.transport.loseConnection()  # type: ignore[union-attr]

    def connectionLost(self, reason: Any = None) -> None:
        if not self.answered.called:
            self.answered.errback(error.DNSServerError("connection closed without an answer"))


def _answers(message: dns.Message, query: dns.Message) -> bool:
    """Whether C{message} is the answer to C{query} (same ID, same question)."""
    if not message.answer or message.id != query.id or len(message.queries) != 1:
        return False
    asked, got = query.queries[0], message.queries[0]
    return (
        got.type == asked.type
        and got.cls == asked.cls
        and got.name.name.lower() == asked.name.name.lower()
    )


class ValidatingResolver:
    """
    Asks validating resolvers, with the AD bit; see the module docstring.

    @ivar servers: C{(address, port)} pairs, asked in turn, one per try.
    """

    def __init__(self, servers: Sequence[tuple[str, int]], reactor: Any = None) -> None:
        if not servers:
            raise ValueError("no name server to ask")
        if reactor is None:
            from twisted.internet import reactor as globalReactor  # noqa: N812

            reactor = globalReactor
        self.servers = tuple((str(ipaddress.ip_address(host)), port) for host, port in servers)
        self.reactor = reactor

    def lookup(self, name: str, kind: int, timeouts: Sequence[float]) -> defer.Deferred[Answer]:
        """
        The answer to C{name}'s records of type C{kind}, one try per timeout
        (seconds); fails with Twisted's DNS errors (see the module docstring).
        """
        return defer.Deferred.fromCoroutine(self._lookup(name, kind, timeouts))

    async def _lookup(self, name: str, kind: int, timeouts: Sequence[float]) -> Answer:
        query = dns.Query(name.encode("ascii"), kind, dns.IN)
        for attempt, timeout in enumerate(timeouts):
            message = dns.Message(secrets.randbelow(65536), recDes=1, authenticData=1)
            message.queries = [query]
            message.additional = [_opt()]
            server = self.servers[attempt % len(self.servers)]
            try:
                response = await self._udp(server, message, timeout)
                if response.trunc:
                    response = await self._tcp(server, message, timeout)
            except (defer.TimeoutError, error.DNSQueryTimeoutError, ConnectError, OSError):
                continue
            failure = _ERRORS.get(response.rCode)
            if failure is not None:
                raise failure(response)
            if response.rCode != dns.OK:
                raise error.DNSUnknownError(response)
            return Answer(tuple(response.answers), bool(response.authenticData))
        raise error.DNSQueryTimeoutError(query)

    async def _udp(
        self, server: tuple[str, int], message: dns.Message, timeout: float
    ) -> dns.Message:
        protocol = _Datagram(server, message)
        udp: IReactorUDP = self.reactor
        clock: IReactorTime = self.reactor
        port = udp.listenUDP(0, protocol, _localInterface(server[0]), 65535)
        try:
            return await protocol.answered.addTimeout(timeout, clock)
        finally:
            port.stopListening()

    async def _tcp(
        self, server: tuple[str, int], message: dns.Message, timeout: float
    ) -> dns.Message:
        tcp: IReactorTCP = self.reactor
        clock: IReactorTime = self.reactor
        endpointType = TCP6ClientEndpoint if ":" in server[0] else TCP4ClientEndpoint
        endpoint = endpointType(tcp, server[0], server[1], timeout=max(1, int(timeout)))
        protocol = await endpoint.connect(Factory.forProtocol(lambda: _Stream(message))).addTimeout(
            timeout, clock
        )
        assert isinstance(protocol, _Stream)
        try:
            return await protocol.answered.addTimeout(timeout, clock)
        finally:
            protocol.transport.loseConnection()  # type: ignore[union-attr]
