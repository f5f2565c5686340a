"""Finding where a domain's mail goes, against a real name server on loopback."""

from __future__ import annotations

import random
from collections.abc import Generator
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import defer
from twisted.names import dns
from twisted.trial.unittest import SynchronousTestCase, TestCase

from support.dns import DNSServer, MemoryAuthority, a, aaaa, cname, mx, startDNS, startSilentDNS
from tmail.queue.mx import MXResolver, NoRoute, Route, domainToAscii

ZONE = {
    # Two hosts share the best preference, one is the backup.
    "shared.test": [
        mx(20, "backup.shared.test"),
        mx(10, "one.shared.test"),
        mx(10, "two.shared.test"),
    ],
    "one.shared.test": [a("127.0.0.1")],
    "two.shared.test": [a("127.0.0.2"), aaaa("::1")],
    "backup.shared.test": [a("127.0.0.3")],
    # No MX: the domain's own addresses.
    "plain.test": [a("127.0.0.4"), aaaa("::4")],
    "nomail.test": [dns.Record_TXT(b"v=spf1 -all")],
    "null.test": [mx(0, "")],
    "alias.test": [mx(10, "cname.alias.test"), mx(20, "real.alias.test")],
    "cname.alias.test": [cname("real.alias.test")],
    "real.alias.test": [a("127.0.0.5")],
    "onlyalias.test": [mx(10, "cname.onlyalias.test")],
    "cname.onlyalias.test": [cname("host.onlyalias.test")],
    "host.onlyalias.test": [a("127.0.0.6")],
    "dangling.test": [mx(10, "gone.dangling.test")],
    # Too many for a UDP answer: the client asks again over TCP.
    "big.test": [mx(n, f"mx{n:02}.with-a-rather-long-name.big.test") for n in range(40)],
    "mx07.with-a-rather-long-name.big.test": [a("127.0.0.8")],
    "cnamed.test": [cname("plain.test")],
    "xn--bcher-kva.test": [mx(10, "mx.xn--bcher-kva.test")],
    "mx.xn--bcher-kva.test": [a("127.0.0.7")],
}


def order(route: Route) -> list[tuple[str, list[str]]]:
    return [(h.name, list(h.addresses)) for h in route.hosts]


class RouteTests(TestCase):
    def setUp(self) -> None:
        self.server = startDNS(self, ZONE)

    def resolver(self, server: DNSServer | None = None, seed: int = 0, **kw: Any) -> MXResolver:
        kw.setdefault("timeouts", (0.3,))
        return MXResolver.fromSettings(
            [(server or self.server).address], port=2525, rng=random.Random(seed), **kw
        )

    @defer.inlineCallbacks
    def noRoute(self, domain: str, server: DNSServer | None = None) -> Generator[Any, Any, NoRoute]:
        try:
            route = yield self.resolver(server).route(domain)
        except NoRoute as e:
            return e
        self.fail(f"{domain} routed to {route}")

    @defer.inlineCallbacks
    def test_mx_hosts_come_in_preference_order_with_their_addresses(
        self,
    ) -> Generator[Any, Any, None]:
        route = yield self.resolver().route("shared.test")
        names = [h.name for h in route.hosts]
        assert sorted(names[:2]) == ["one.shared.test", "two.shared.test"]
        assert names[2] == "backup.shared.test"
        assert [h.preference for h in route.hosts] == [10, 10, 20]
        assert dict(order(route))["two.shared.test"] == ["::1", "127.0.0.2"]
        assert (route.port, route.implicit) == (2525, False)
        assert list(route.targets())[-1][1] == "127.0.0.3"

    @defer.inlineCallbacks
    def test_equal_preferences_are_shuffled_repeatably_per_seed(self) -> Generator[Any, Any, None]:
        firsts = set()
        for seed in range(12):
            route = yield self.resolver(seed=seed).route("shared.test")
            again = yield self.resolver(seed=seed).route("shared.test")
            assert order(route) == order(again)
            firsts.add(route.hosts[0].name)
        assert firsts == {"one.shared.test", "two.shared.test"}

    @defer.inlineCallbacks
    def test_ipv4_first_when_so_configured(self) -> Generator[Any, Any, None]:
        route = yield self.resolver(families=("ipv4", "ipv6")).route("plain.test")
        assert order(route) == [("plain.test", ["127.0.0.4", "::4"])]
        only4 = yield self.resolver(families=("ipv4",)).route("plain.test")
        assert order(only4) == [("plain.test", ["127.0.0.4"])]

    @defer.inlineCallbacks
    def test_domain_without_mx_is_its_own_mail_exchanger(self) -> Generator[Any, Any, None]:
        route = yield self.resolver().route("Plain.Test.")
        assert route.implicit
        assert order(route) == [("plain.test", ["::4", "127.0.0.4"])]

    @defer.inlineCallbacks
    def test_answer_too_big_for_udp_is_fetched_over_tcp(self) -> Generator[Any, Any, None]:
        resolver = self.resolver()
        route = yield resolver.route("big.test")
        assert resolver.resolver.connections  # type: ignore[attr-defined]
        for connection in resolver.resolver.connections:  # type: ignore[attr-defined]
            connection.transport.loseConnection()
        assert order(route) == [("mx07.with-a-rather-long-name.big.test", ["127.0.0.8"])]

    @defer.inlineCallbacks
    def test_domain_that_is_an_alias_routes_as_its_target(self) -> Generator[Any, Any, None]:
        route = yield self.resolver().route("cnamed.test")
        assert (route.domain, route.implicit) == ("cnamed.test", True)
        assert order(route) == [("cnamed.test", ["::4", "127.0.0.4"])]

    @defer.inlineCallbacks
    def test_this_server_and_less_preferred_mx_hosts_are_left_out(
        self,
    ) -> Generator[Any, Any, None]:
        backup = self.resolver(localNames=["BACKUP.shared.test"])
        route = yield backup.route("shared.test")
        assert sorted(h.name for h in route.hosts) == ["one.shared.test", "two.shared.test"]
        for ours, domain in (("one.shared.test", "shared.test"), ("plain.test", "plain.test")):
            primary = self.resolver(localNames=[ours, "two.shared.test"])
            try:
                route = yield primary.route(domain)
            except NoRoute as e:
                assert e.diagnostic.status == "5.4.6"
            else:
                self.fail(f"{domain} routed to {route}")

    @defer.inlineCallbacks
    def test_null_mx_fails_for_good_with_5_1_10(self) -> Generator[Any, Any, None]:
        e = yield self.noRoute("null.test")
        assert e.diagnostic.status == "5.1.10"
        assert e.diagnostic.permanent
        assert "does not accept mail" in e.diagnostic.text
        assert e.replyCode == 556

    @defer.inlineCallbacks
    def test_nonexistent_domain_fails_for_good(self) -> Generator[Any, Any, None]:
        e = yield self.noRoute("nowhere.shared.test")
        assert e.diagnostic.status == "5.1.2"
        assert "does not exist" in e.diagnostic.text

    @defer.inlineCallbacks
    def test_domain_with_neither_mx_nor_address_fails_for_good(self) -> Generator[Any, Any, None]:
        e = yield self.noRoute("nomail.test")
        assert e.diagnostic.status == "5.4.4"
        assert e.diagnostic.permanent

    @defer.inlineCallbacks
    def test_server_failure_is_temporary(self) -> Generator[Any, Any, None]:
        e = yield self.noRoute("shared.test", startDNS(self, mode="servfail"))
        assert e.diagnostic.status == "4.4.3"
        assert not e.diagnostic.permanent
        assert "SERVFAIL" in e.diagnostic.text

    @defer.inlineCallbacks
    def test_mx_host_whose_lookup_fails_is_skipped_while_another_is_left(
        self,
    ) -> Generator[Any, Any, None]:
        server = startDNS(self, ZONE, servfail={"one.shared.test", "two.shared.test"})
        route = yield self.resolver(server).route("shared.test")
        assert order(route) == [("backup.shared.test", ["127.0.0.3"])]
        server = startDNS(self, ZONE, servfail={"real.alias.test"})
        e = yield self.noRoute("alias.test", server)
        assert e.diagnostic.status == "4.4.3"
        assert "real.alias.test" in e.diagnostic.text

    @defer.inlineCallbacks
    def test_refused_query_is_temporary(self) -> Generator[Any, Any, None]:
        e = yield self.noRoute("shared.test", startDNS(self, ZONE, mode="refuse"))
        assert e.diagnostic.status == "4.4.3"
        assert "refused" in e.diagnostic.text

    @defer.inlineCallbacks
    def test_name_server_that_never_answers_is_temporary(self) -> Generator[Any, Any, None]:
        silent = startSilentDNS(self)
        e = yield self.noRoute("shared.test", silent)
        assert e.diagnostic.status == "4.4.3"
        assert "no answer in time" in e.diagnostic.text
        assert silent.queries

    @defer.inlineCallbacks
    def test_mx_pointing_to_a_cname_is_skipped(self) -> Generator[Any, Any, None]:
        route = yield self.resolver().route("alias.test")
        assert order(route) == [("real.alias.test", ["127.0.0.5"])]

    @defer.inlineCallbacks
    def test_no_usable_mx_host_left_is_temporary(self) -> Generator[Any, Any, None]:
        for domain in ("onlyalias.test", "dangling.test"):
            e = yield self.noRoute(domain)
            assert e.diagnostic.status == "4.4.4", domain
            assert not e.diagnostic.permanent

    @defer.inlineCallbacks
    def test_idn_domain_is_looked_up_by_its_a_label(self) -> Generator[Any, Any, None]:
        route = yield self.resolver().route("bücher.test")
        assert route.domain == "xn--bcher-kva.test"
        assert order(route) == [("mx.xn--bcher-kva.test", ["127.0.0.7"])]
        assert self.server.asked("xn--bcher-kva.test")

    @defer.inlineCallbacks
    def test_address_literals_need_no_lookup(self) -> Generator[Any, Any, None]:
        silent = startSilentDNS(self)
        four = yield self.resolver(silent).route("[127.0.0.9]")
        six = yield self.resolver(silent).route("[IPv6:0::1]")
        assert order(four) == [("[127.0.0.9]", ["127.0.0.9"])]
        assert order(six) == [("[IPv6:0::1]", ["::1"])]
        assert not silent.queries
        e = yield self.noRoute("[300.1.1.1]", silent)
        assert e.diagnostic.status == "5.1.3"


class DomainNameTests(SynchronousTestCase):
    def test_unicode_domains_become_idna2008_a_labels(self) -> None:
        assert domainToAscii("Bücher.Example.") == "xn--bcher-kva.example"
        # IDNA 2003 would map ß to ss: another domain.
        assert domainToAscii("straße.de") == "xn--strae-oqa.de"

    def test_malformed_domains_fail_for_good(self) -> None:
        for bad in ("a..b", "exa mple.com", "-a.test", "x" * 64 + ".test"):
            with self.assertRaises(NoRoute) as caught:
                domainToAscii(bad)
            assert caught.exception.diagnostic.status == "5.1.3"


class OrderingTests(SynchronousTestCase):
    """Ordering invariants, over any MX set (the zone answers in memory)."""

    @given(
        st.lists(st.tuples(st.integers(0, 65535), st.integers(0, 7)), min_size=1, max_size=12),
        st.integers(),
    )
    def test_hosts_sorted_by_preference_each_once_at_its_best(
        self, exchangers: list[tuple[int, int]], seed: int
    ) -> None:
        records: dict[str, list[Any]] = {
            "any.test": [mx(p, f"h{n}.any.test") for p, n in exchangers]
        }
        for _, n in exchangers:
            records[f"h{n}.any.test"] = [a(f"127.0.0.{n + 1}")]
        zone = MemoryAuthority("any.test", records)

        def route(seed: int) -> Route:
            routes: list[Route] = []
            MXResolver(zone, rng=random.Random(seed)).route("any.test").addCallback(routes.append)
            return routes[0]

        got = route(seed)
        preferences = [h.preference for h in got.hosts]
        assert preferences == sorted(preferences)  # type: ignore[type-var]
        best = {f"h{n}.any.test": min(p for p, m in exchangers if m == n) for _, n in exchangers}
        assert {h.name: h.preference for h in got.hosts} == best
        assert len(got.hosts) == len(best)
        assert order(route(seed)) == order(got)
