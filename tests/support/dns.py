"""
A real DNS server on loopback (C{twisted.names}, UDP and TCP on one free
port) serving test zones, and name servers that fail in the ways real ones
do: SERVFAIL, REFUSED, or no answer at all.

    server = yield startDNS(self, {"example.test": [mx(10, "mx1.example.test")],
                                   "mx1.example.test": [a("127.0.0.1")]})
    resolver = MXResolver.fromSettings([server.address], timeouts=(0.2,))

Every name under a served name's last two labels is in the zone, so a
name not listed is NXDOMAIN; C{server.queries} records what was asked.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import reactor
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import DatagramProtocol
from twisted.names import authority, common, dns, server
from twisted.trial.unittest import TestCase


def mx(preference: int, host: str) -> dns.Record_MX:
    return dns.Record_MX(preference, host.encode("ascii"), ttl=60)


def a(address: str) -> dns.Record_A:
    return dns.Record_A(address, ttl=60)


def aaaa(address: str) -> dns.Record_AAAA:
    return dns.Record_AAAA(address, ttl=60)


def cname(target: str) -> dns.Record_CNAME:
    return dns.Record_CNAME(target.encode("ascii"), ttl=60)


class MemoryAuthority(authority.FileAuthority):
    """An authority over records given as a mapping: name -> records."""

    def __init__(self, origin: str, records: Mapping[str, Sequence[Any]]) -> None:
        common.ResolverBase.__init__(self)
        self._cache: dict[Any, Any] = {}
        soa = dns.Record_SOA(
            mname=b"ns." + origin.encode(),
            rname=b"hostmaster." + origin.encode(),
            serial=1,
            refresh=60,
            retry=60,
            expire=60,
            minimum=60,
            ttl=60,
        )
        self.soa = (origin.encode("ascii"), soa)
        self.records = {name.lower().encode("ascii"): list(rs) for name, rs in records.items()}
        self.records.setdefault(origin.encode("ascii"), []).append(soa)

    def loadFile(self, filename: str) -> None:
        pass


class _Factory(server.DNSServerFactory):
    def __init__(
        self,
        authorities: list[Any],
        mode: str,
        servfail: Collection[str],
        queries: list[tuple[str, int]],
    ) -> None:
        super().__init__(authorities=authorities)
        self.refuse = mode == "refuse"
        self.servfailAll = mode == "servfail"
        self.servfail = {name.lower() for name in servfail}
        self.queries = queries

    def sendReply(self, protocol: Any, message: dns.Message, address: Any) -> None:
        # As real servers do (RFC 1035 4.2.1): a UDP answer over 512 octets
        # is cut, flagged truncated, and the client asks again over TCP.
        if address is not None and len(message.toStr()) > 512:
            message.trunc = 1
            message.answers, message.authority, message.additional = [], [], []
        super().sendReply(protocol, message, address)

    def handleQuery(self, message: dns.Message, protocol: Any, address: Any) -> Any:
        name = message.queries[0].name.name.decode("ascii", "replace").lower()
        if self.servfailAll or name in self.servfail:
            response = self._responseFromMessage(message=message, rCode=dns.ESERVER)
            self.sendReply(protocol, response, address)
            return None
        return super().handleQuery(message, protocol, address)

    def allowQuery(self, message: dns.Message, protocol: Any, address: Any) -> bool:
        for q in message.queries:
            self.queries.append((q.name.name.decode("ascii", "replace"), q.type))
        return not self.refuse and super().allowQuery(message, protocol, address)


@dataclass
class DNSServer:
    """A running test name server."""

    port: int
    queries: list[tuple[str, int]] = field(default_factory=list)

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def asked(self, name: str) -> bool:
        """Whether any query named C{name}."""
        return any(q == name for q, _ in self.queries)


def _origins(records: Mapping[str, Sequence[Any]]) -> set[str]:
    return {".".join(name.lower().split(".")[-2:]) for name in records}


def startDNS(
    testCase: TestCase,
    records: Mapping[str, Sequence[Any]] = {},
    mode: str = "answer",
    servfail: Collection[str] = (),
) -> DNSServer:
    """
    Serve C{records} on a free loopback port (UDP and TCP) until the test
    ends.  C{mode}: C{"answer"}, C{"servfail"} (every query), or
    C{"refuse"} (every query); queries for a name in C{servfail} get
    SERVFAIL.
    """
    queries: list[tuple[str, int]] = []
    authorities = [
        MemoryAuthority(origin, {n: rs for n, rs in records.items() if n.lower().endswith(origin)})
        for origin in sorted(_origins(records))
    ]
    factory = _Factory(authorities, mode, servfail, queries)
    for _ in range(20):
        udp = reactor.listenUDP(0, dns.DNSDatagramProtocol(factory), interface="127.0.0.1")
        port = udp.getHost().port
        try:
            tcp = reactor.listenTCP(port, factory, interface="127.0.0.1")
        except CannotListenError:
            udp.stopListening()
            continue
        testCase.addCleanup(udp.stopListening)
        testCase.addCleanup(tcp.stopListening)
        return DNSServer(port, queries)
    raise RuntimeError("no free port for both UDP and TCP")


def startSilentDNS(testCase: TestCase) -> DNSServer:
    """A name server that never answers (queries time out)."""
    queries: list[tuple[str, int]] = []

    class Silent(DatagramProtocol):
        def datagramReceived(self, datagram: bytes, addr: Any) -> None:
            queries.append(("?", 0))

    udp = reactor.listenUDP(0, Silent(), interface="127.0.0.1")
    testCase.addCleanup(udp.stopListening)
    return DNSServer(udp.getHost().port, queries)
