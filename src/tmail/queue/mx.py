# -*- test-case-name: tests.queue.test_queue_mx -*-
"""
Where to deliver a recipient domain's mail: its mail exchangers (RFC 5321
5.1), in the order to try them, with their addresses.

L{MXResolver.route} turns a domain into a L{Route}: the MX hosts sorted by
preference (hosts of equal preference shuffled, so load spreads as the
domain's owner meant), each with its IPv6 and IPv4 addresses.  A domain
without MX records is its own mail exchanger (the I{implicit MX}); an
address literal (C{user@[192.0.2.1]}, C{user@[IPv6:2001:db8::1]}) needs no
lookup.  When no host can be found, C{route} fails with L{NoRoute}, whose
L{Diagnostic} says whether retrying may help:

  - a domain that is no domain name (or a bad address literal): permanent,
    C{5.1.3}; a Unicode domain is looked up by its IDNA 2008 A-labels;
  - a null MX (RFC 7505: one MX record C{0 .}): permanent, C{5.1.10};
  - the domain does not exist (NXDOMAIN): permanent, C{5.1.2};
  - it exists but has neither MX nor address records: permanent, C{5.4.4};
  - a name server failed (SERVFAIL, REFUSED, no answer in time): temporary,
    C{4.4.3};
  - the most preferred MX host (or, without MX, the domain) is this server
    (one of L{MXResolver.localNames}): permanent, C{5.4.6};
  - every MX host points to an alias (a CNAME, which RFC 5321 5.1 forbids)
    or has no address: temporary, C{4.4.4}, since the domain's owner
    may fix it.
An MX host whose lookup fails is skipped as long as another one is left.

L{MXResolver.hostRoute} is the route to one named host instead (a
smarthost): its addresses, without MX lookup or the loop check; every
failure to find one is temporary (4.4.3, 4.4.4), since the host is the
operator's to fix.

The runner connects to C{(address, route.port)} for each pair of
L{Route.targets} in turn, moving on when a connection fails or the server
answers with a temporary failure before the first recipient, and turns a
L{NoRoute} into an outcome with
L{tmail.queue.schedule.RetrySchedule.judge}C{(..., noRoute.diagnostic, ...)}.
The host name (L{MailHost.name}) is what to check the server's certificate
against, and the DSN's Remote-MTA.

Given a L{ValidatingResolver} (C{fromSettings(..., dnssec=True)}), a route
also says what DNSSEC vouched for, as DANE needs it (RFC 7672 2.2):
L{Route.secure} when the MX records (or, for an implicit MX, their
absence) were validated, L{MailHost.secure} when the host's address
records were; L{MXResolver.tlsa} looks up a host's TLSA records.  A CNAME
chain is secure when every answer along it was.
"""

from __future__ import annotations

import ipaddress
import random
import re
import socket
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import idna
from twisted.internet.defer import Deferred, TimeoutError, gatherResults
from twisted.internet.interfaces import IResolver
from twisted.names import client, dns, error

from tmail.queue.dnssec import ValidatingResolver, resolvConfServers
from tmail.queue.entry import Diagnostic
from tmail.queue.tlsa import TLSA, TLSARecord, parseTLSA

__all__ = [
    "DEFAULT_TIMEOUTS",
    "MXResolver",
    "MailHost",
    "NoRoute",
    "Route",
    "describeFailure",
    "domainToAscii",
]

#: Seconds to wait for each try of a query (Twisted's own defaults).
DEFAULT_TIMEOUTS: tuple[float, ...] = (1.0, 3.0, 11.0, 45.0)
#: How many CNAMEs are followed from a domain to its MX or addresses.
MAX_ALIASES = 8
#: The address families, in the order a host's addresses are listed.
IPV6_FIRST = ("ipv6", "ipv4")
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\Z")


@dataclass(frozen=True, slots=True)
class MailHost:
    """
    One host to deliver to.

    @ivar name: its name in ASCII (A-labels), lower case, no final dot; for
        an address literal, the literal as written (C{[192.0.2.1]}).
    @ivar addresses: its addresses as text, in the order to try them.
    @ivar preference: its MX preference; C{None} for an implicit MX or an
        address literal.
    @ivar secure: its address records were DNSSEC-validated.
    """

    name: str
    addresses: tuple[str, ...]
    preference: int | None = None
    secure: bool = False


@dataclass(frozen=True, slots=True)
class Route:
    """
    Where a domain's mail goes.

    @ivar domain: the domain looked up, in ASCII (or the address literal).
    @ivar hosts: the hosts in the order to try them; never empty.
    @ivar port: the TCP port to connect to (25, unless configured).
    @ivar implicit: the domain had no MX: its own addresses are used.
    @ivar secure: the MX records (or their absence) were DNSSEC-validated.
    """

    domain: str
    hosts: tuple[MailHost, ...]
    port: int = 25
    implicit: bool = False
    secure: bool = False

    def targets(self) -> Iterator[tuple[MailHost, str]]:
        """Each host with each of its addresses, in the order to try them."""
        for host in self.hosts:
            for address in host.addresses:
                yield host, address


class NoRoute(Exception):
    """
    No host to deliver to was found.

    @ivar diagnostic: the reason, for the queue and the DSN; permanent or
        temporary by its status.
    """

    def __init__(self, diagnostic: Diagnostic) -> None:
        super().__init__(diagnostic.text)
        self.diagnostic = diagnostic

    @property
    def replyCode(self) -> int:
        """The SMTP reply code for refusing this recipient at once."""
        if self.diagnostic.status == "5.1.10":
            return 556  # RFC 7505 3.
        return 550 if self.diagnostic.permanent else 451


def _noRoute(status: str, text: str) -> NoRoute:
    return NoRoute(Diagnostic(status, text))


def domainToAscii(domain: str) -> str:
    """
    C{domain} as looked up in the DNS: IDNA 2008 A-labels (UTS 46 mapping),
    lower case, no final dot; L{NoRoute} (5.1.3) when it is not a domain.
    """
    name = domain.rstrip(".")
    try:
        if name.isascii():
            asciiName = name.lower()
            labels = asciiName.split(".")
            if not all(_LABEL.match(label) for label in labels) or len(asciiName) > 253:
                raise idna.IDNAError("bad length")
        else:
            asciiName = idna.encode(name, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        raise _noRoute("5.1.3", f"Bad destination domain {domain!r}") from None
    return asciiName


def _literal(domain: str) -> str:
    """The address in an address literal (C{[...]}), or L{NoRoute} (5.1.3)."""
    inner = domain[1:-1] if domain.endswith("]") else ""
    try:
        if inner[:5].lower() == "ipv6:":
            return str(ipaddress.IPv6Address(inner[5:]))
        return str(ipaddress.IPv4Address(inner))
    except ValueError:
        raise _noRoute("5.1.3", f"Bad address literal {domain!r}") from None


def _owner(name: dns.Name) -> str:
    return name.name.decode("ascii", "replace").lower().rstrip(".")


class _Alias(Exception):
    """The name is a CNAME where none is allowed."""


class _Lookup:
    """The outcome of one kind of query, as the rules above need it."""

    FAILED = "lookup failed: "
    NXDOMAIN = "NXDOMAIN"
    NODATA = "no records"
    ALIAS = "an alias (CNAME)"


def describeFailure(reason: BaseException) -> str:
    """Why a lookup failed, in words for a diagnostic."""
    if isinstance(reason, error.DNSServerError):
        return "server failure (SERVFAIL)"
    if isinstance(reason, error.DNSQueryRefusedError):
        return "query refused"
    if isinstance(reason, TimeoutError | error.DNSQueryTimeoutError):
        return "no answer in time"
    return str(reason) or type(reason).__name__


class MXResolver:
    """
    Finds the L{Route} for a domain with a C{twisted.names} resolver.

    @ivar port: the port L{Route}s name (25; tests deliver to loopback).
    @ivar timeouts: how long each try of a query waits, in seconds; a query
        fails after the last one.
    @ivar families: the address families used, in the order each host's
        addresses are listed (C{"ipv6"}, C{"ipv4"}).
    """

    def __init__(
        self,
        resolver: IResolver | ValidatingResolver,
        port: int = 25,
        timeouts: Sequence[float] = DEFAULT_TIMEOUTS,
        families: Sequence[str] = IPV6_FIRST,
        localNames: Collection[str] = (),
        rng: random.Random | None = None,
    ) -> None:
        """
        @param resolver: what queries go to (any C{IResolver}, usually a
            L{client.Resolver}, or a L{ValidatingResolver} to learn what
            DNSSEC vouched for; see L{fromSettings}).
        @param localNames: this server's own host names: an MX host of
            that name, and every one not preferred over it, is left out
            (RFC 5321 5.1), so mail is not sent back to this server.
        @param rng: what shuffles MX hosts of equal preference (seed one
            for a repeatable order).
        """
        if not timeouts or any(t <= 0 for t in timeouts):
            raise ValueError("timeouts must be positive numbers of seconds")
        unknown = set(families) - set(IPV6_FIRST)
        if unknown or not families:
            raise ValueError(f"families must be some of {IPV6_FIRST}, not {families!r}")
        self.resolver = resolver
        self.port = port
        self.timeouts = tuple(timeouts)
        self.families = tuple(families)
        try:
            self.localNames = frozenset(domainToAscii(n) for n in localNames)
        except NoRoute as e:
            raise ValueError(f"localNames: {e}") from None
        self.random = rng if rng is not None else random.SystemRandom()

    @classmethod
    def fromSettings(
        cls,
        nameservers: Sequence[tuple[str, int]] = (),
        resolvConf: str = "/etc/resolv.conf",
        port: int = 25,
        timeouts: Sequence[float] = DEFAULT_TIMEOUTS,
        families: Sequence[str] = IPV6_FIRST,
        localNames: Collection[str] = (),
        rng: random.Random | None = None,
        dnssec: bool = False,
    ) -> MXResolver:
        """
        A resolver querying C{nameservers} (C{(address, port)} pairs), or the
        ones C{resolvConf} lists when none is given (Twisted rereads that
        file when it changes, with a timer that runs as long as the
        reactor).  With C{dnssec}, a L{ValidatingResolver} asks them (read
        from C{resolvConf} once).  The other arguments are L{MXResolver}'s.
        """
        resolver: IResolver | ValidatingResolver
        if dnssec:
            servers = list(nameservers) or resolvConfServers(resolvConf) or [("127.0.0.1", 53)]
            resolver = ValidatingResolver(servers)
        elif nameservers:
            resolver = client.Resolver(servers=list(nameservers))
        else:
            resolver = client.Resolver(resolv=resolvConf)
        return cls(resolver, port, timeouts, families, localNames, rng)

    def close(self) -> None:
        """
        Stop rereading C{resolv.conf} (the timer Twisted keeps for a
        resolver made from it), so a stopped server leaves no timer behind.
        """
        call = getattr(self.resolver, "_parseCall", None)
        if call is not None and call.active():
            call.cancel()

    def route(self, domain: str) -> Deferred[Route]:
        """
        Where mail for C{domain} (as in C{user@domain}: a name, Unicode or
        ASCII, or an address literal) goes: fires with a L{Route}, or fails
        with L{NoRoute}.
        """
        return Deferred.fromCoroutine(self._route(domain))

    async def _route(self, domain: str) -> Route:
        if domain.startswith("["):
            host = MailHost(domain, (_literal(domain),))
            return Route(domain, (host,), self.port, implicit=True)
        name = domainToAscii(domain)
        try:
            exchangers, secure = await self._records(name, dns.MX, followAliases=True)
        except NoRoute:
            raise
        except (error.DNSNameError, error.AuthoritativeDomainError):
            raise _noRoute("5.1.2", f"Domain {name} does not exist (NXDOMAIN)") from None
        except Exception as e:
            raise _noRoute("4.4.3", f"MX lookup for {name} failed: {describeFailure(e)}") from None
        if exchangers:
            return await self._routeToExchangers(name, exchangers, secure)
        return await self._implicitRoute(name, secure)

    def hostRoute(self, host: str, port: int) -> Deferred[Route]:
        """
        The route to the one host C{host} (a name, or an IP address used as
        it is) at C{port}: fires with a L{Route}, or fails with a temporary
        L{NoRoute}.
        """
        return Deferred.fromCoroutine(self._hostRoute(host, port))

    async def _hostRoute(self, host: str, port: int) -> Route:
        try:
            address = str(ipaddress.ip_address(host))
        except ValueError:
            pass
        else:
            return Route(host, (MailHost(host, (address,)),), port, implicit=True)
        try:
            name = domainToAscii(host)
        except NoRoute as e:
            raise _noRoute("4.4.4", e.diagnostic.text) from None
        addresses, problem, secure = await self._addresses(name, True)
        if addresses:
            return Route(name, (MailHost(name, addresses, secure=secure),), port, implicit=True)
        if problem is not None and problem.startswith(_Lookup.FAILED):
            reason = problem.removeprefix(_Lookup.FAILED)
            raise _noRoute("4.4.3", f"Address lookup for {name} failed: {reason}")
        raise _noRoute("4.4.4", f"Host {name} has no address ({problem})")

    async def _routeToExchangers(
        self, name: str, records: list[dns.Record_MX], secure: bool
    ) -> Route:
        named = [(r.preference, _owner(r.name)) for r in records]
        real = [(p, host) for p, host in named if host]
        if not real:
            raise _noRoute("5.1.10", f"Domain {name} does not accept mail (null MX)")
        ordered = self._order(real)
        ours = [p for p, host in ordered if host in self.localNames]
        if ours:
            ordered = [(p, host) for p, host in ordered if p < min(ours)]
            if not ordered:
                raise _noRoute("5.4.6", f"Mail for {name} loops back to this server (MX)")
        found = await gatherResults(
            [Deferred.fromCoroutine(self._addresses(host, False)) for _, host in ordered]
        )
        hosts: list[MailHost] = []
        problems: list[str] = []
        failed = False
        seen: set[str] = set()
        for (preference, host), (addresses, problem, hostSecure) in zip(
            ordered, found, strict=True
        ):
            fresh = tuple(a for a in addresses if a not in seen)
            seen.update(fresh)
            if fresh:
                hosts.append(MailHost(host, fresh, preference, hostSecure))
            elif problem:
                problems.append(f"{host}: {problem}")
                failed = failed or problem.startswith(_Lookup.FAILED)
        if hosts:
            return Route(name, tuple(hosts), self.port, secure=secure)
        text = f"No MX host of {name} has an address ({'; '.join(problems)})"
        if failed:
            raise _noRoute("4.4.3", text)
        raise _noRoute("4.4.4", text)

    async def _implicitRoute(self, name: str, secure: bool) -> Route:
        if name in self.localNames:
            raise _noRoute("5.4.6", f"Mail for {name} loops back to this server (no MX)")
        addresses, problem, hostSecure = await self._addresses(name, True)
        if addresses:
            host = MailHost(name, addresses, secure=hostSecure)
            return Route(name, (host,), self.port, implicit=True, secure=secure)
        if problem is not None and problem.startswith(_Lookup.FAILED):
            reason = problem.removeprefix(_Lookup.FAILED)
            raise _noRoute("4.4.3", f"Address lookup for {name} failed: {reason}")
        if problem == _Lookup.NXDOMAIN:
            raise _noRoute("5.1.2", f"Domain {name} does not exist (NXDOMAIN)")
        raise _noRoute("5.4.4", f"Domain {name} has no MX and no address")

    def _order(self, exchangers: list[tuple[int, str]]) -> list[tuple[int, str]]:
        """By preference, equal ones shuffled; each host once, at its best."""
        best: dict[str, int] = {}
        for preference, host in exchangers:
            best[host] = min(preference, best.get(host, preference))
        hosts = sorted(best)  # a set's order would undo the seeded shuffle
        self.random.shuffle(hosts)
        return sorted(((best[h], h) for h in hosts), key=lambda pair: pair[0])

    async def _addresses(
        self, name: str, followAliases: bool
    ) -> tuple[tuple[str, ...], str | None, bool]:
        """
        C{name}'s addresses, in L{families} order; when there are none,
        why: a L{_Lookup} value, or one starting with L{_Lookup.FAILED};
        and whether every family that answered was DNSSEC-validated (a
        family whose lookup failed gives no address, so it does not count).
        """
        kinds = {"ipv6": dns.AAAA, "ipv4": dns.A}
        results = await gatherResults(
            [
                Deferred.fromCoroutine(self._family(name, kinds[f], followAliases))
                for f in self.families
            ]
        )
        addresses = tuple(a for found, _, _ in results for a in found)
        problems = [p for _, p, _ in results if p is not None]
        answered = [s for _, p, s in results if p is None or not p.startswith(_Lookup.FAILED)]
        secure = bool(answered) and all(answered)
        if addresses:
            return addresses, None, secure
        for severity in (_Lookup.FAILED, _Lookup.ALIAS, _Lookup.NODATA, _Lookup.NXDOMAIN):
            for p in problems:
                if p.startswith(severity):
                    return (), p, False
        return (), _Lookup.NODATA, False

    async def _family(
        self, name: str, kind: int, followAliases: bool
    ) -> tuple[list[str], str | None, bool]:
        try:
            records, secure = await self._records(name, kind, followAliases)
        except _Alias:
            return [], _Lookup.ALIAS, False
        except (error.DNSNameError, error.AuthoritativeDomainError):
            return [], _Lookup.NXDOMAIN, False
        except Exception as e:
            return [], _Lookup.FAILED + describeFailure(e), False
        if kind == dns.A:
            found = [socket.inet_ntop(socket.AF_INET, r.address) for r in records]
        else:
            found = [socket.inet_ntop(socket.AF_INET6, r.address) for r in records]
        return found, None if found else _Lookup.NODATA, secure

    async def _records(self, name: str, kind: int, followAliases: bool) -> tuple[list[Any], bool]:
        """
        The records of type C{kind} of C{name}, following CNAMEs when
        C{followAliases} (else L{_Alias} for one), and whether every answer
        was DNSSEC-validated; errors as C{twisted.names} raises them.
        """
        answers, secure = await self._query(name, kind)
        owner, seen = name, {name}
        found: list[Any]
        for _ in range(MAX_ALIASES + 1):
            found = [rr.payload for rr in answers if rr.type == kind and _owner(rr.name) == owner]
            if found:
                return found, secure
            alias: list[Any] = [
                rr.payload for rr in answers if rr.type == dns.CNAME and _owner(rr.name) == owner
            ]
            if not alias:
                return [], secure
            if not followAliases:
                raise _Alias(owner)
            owner = _owner(alias[0].name)
            if owner in seen:
                raise _noRoute("4.4.3", f"CNAME loop at {owner} looking up {name}")
            seen.add(owner)
            if not any(_owner(rr.name) == owner for rr in answers):
                answers, aliasSecure = await self._query(owner, kind)
                secure = secure and aliasSecure
        raise _noRoute("4.4.3", f"Too many CNAMEs looking up {name}")

    async def _query(self, name: str, kind: int) -> tuple[list[dns.RRHeader], bool]:
        """The answer section, and whether the resolver validated it (the AD bit)."""
        if isinstance(self.resolver, ValidatingResolver):
            answer = await self.resolver.lookup(name, kind, self.timeouts)
            return list(answer.answers), answer.authenticated
        query = dns.Query(name.encode("ascii"), kind, dns.IN)
        # Twisted's stubs call the timeouts ints and the result one section.
        result: Any = await self.resolver.query(query, self.timeouts)  # type: ignore[arg-type]
        answers: list[dns.RRHeader] = list(result[0])
        return answers, False

    def tlsa(self, host: str, port: int) -> Deferred[tuple[tuple[TLSARecord, ...], bool]]:
        """
        The TLSA records of C{host}'s SMTP service at C{port}
        (C{_25._tcp.HOST}, CNAMEs followed, RFC 7671 7), and whether they
        (or their absence) were DNSSEC-validated; none for NXDOMAIN.  Other
        failures are Twisted's DNS errors, or L{NoRoute} for a CNAME loop.
        Malformed records are left out.
        """
        return Deferred.fromCoroutine(self._tlsa(host, port))

    async def _tlsa(self, host: str, port: int) -> tuple[tuple[TLSARecord, ...], bool]:
        try:
            found, secure = await self._records(f"_{port}._tcp.{host}", TLSA, True)
        except (error.DNSNameError, error.AuthoritativeDomainError):
            return (), False
        records = []
        for record in found:
            data = getattr(record, "data", b"")
            try:
                records.append(parseTLSA(data if isinstance(data, bytes) else b""))
            except ValueError:
                continue
        return tuple(records), secure
