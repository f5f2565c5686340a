"""
Queued mail for hosted recipients (notices to local senders) stored by
L{LocalTransport} into a real realm's Maildirs.
"""

from __future__ import annotations

import io
from collections.abc import Generator
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial.unittest import TestCase

from support.dns import startSilentDNS
from support.net import eventually
from support.realm import ALICE, BOB, makeRealm
from tmail.interfaces import IMailStore
from tmail.queue.entry import Envelope, QueueEntry, Recipient
from tmail.queue.local import LocalResult, LocalTransport
from tmail.queue.outbox import Outbox
from tmail.queue.relaysettings import RelaySettings
from tmail.queue.runner import QueueRunner
from tmail.queue.store import QueueStore
from tmail.realm.virtual import VirtualDomainRealm
from tmail.store.quota import overrideFields
from tmail.testing.deferring import deferringStore

NOTICE = b"From: Mail Delivery System <MAILER-DAEMON@mx.example.test>\r\nSubject: x\r\n\r\nbody\r\n"


class LocalTransportTests(TestCase):
    def setUp(self) -> None:
        self.fixture = makeRealm(Path(self.mktemp()))
        self.queue = QueueStore(Path(self.mktemp()))
        self.outbox = Outbox(self.queue)
        self.transport = LocalTransport(self.fixture.realm, "mx.example.test", self.outbox)

    def entry(self, *addresses: str, sender: str = "") -> QueueEntry:
        envelope = Envelope(sender, tuple(Recipient(a) for a in addresses))
        return self.queue.enqueue(envelope, NOTICE)

    def deliver(self, entry: QueueEntry) -> Deferred[dict[str, LocalResult]]:
        return Deferred.fromCoroutine(
            self.transport.deliver(entry, entry.recipients, io.BytesIO(NOTICE))
        )

    def test_hosted_domains_are_recognised(self) -> None:
        self.assertTrue(self.transport.hosts("example.test"))
        self.assertTrue(self.transport.hosts("EXAMPLE.test"))
        self.assertFalse(self.transport.hosts("elsewhere.example"))

    @inlineCallbacks
    def test_a_notice_is_stored_with_an_empty_return_path(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        entry = self.entry(ALICE)
        results = yield self.deliver(entry)
        self.assertEqual(results[ALICE].delivered, True)
        self.assertEqual(results[ALICE].diagnostic.status, "2.0.0")
        [stored] = self.fixture.inbox(ALICE)
        self.assertTrue(
            stored.startswith(b"Return-Path: <>\r\nDelivered-To: alice@example.test\r\n")
        )
        self.assertIn(b"by mx.example.test (tmail) with local id " + entry.id.encode(), stored)
        self.assertTrue(stored.endswith(NOTICE))

    @inlineCallbacks
    def test_unknown_user_fails_permanently_and_the_others_are_delivered(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        results = yield self.deliver(self.entry("nobody@example.test", BOB))
        self.assertFalse(results["nobody@example.test"].delivered)
        self.assertEqual(results["nobody@example.test"].diagnostic.status, "5.1.1")
        self.assertTrue(results[BOB].delivered)
        self.assertEqual(len(self.fixture.inbox(BOB)), 1)

    @inlineCallbacks
    def test_an_alias_pointing_outside_is_queued_onward(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        self.fixture.directory.addAlias("fwd@example.test", [BOB, "bob@elsewhere.example"])
        announced: list[str] = []
        self.outbox.listen(announced.append)
        entry = self.entry("fwd@example.test", sender="carol@remote.example")
        results = yield self.deliver(entry)
        self.assertTrue(results["fwd@example.test"].delivered)
        self.assertEqual(len(self.fixture.inbox(BOB)), 1)
        onward = [e for e in self.queue.entries() if e.id != entry.id]
        [forwarded] = onward
        self.assertEqual(announced, [forwarded.id])
        self.assertEqual(forwarded.sender, "carol@remote.example")
        [recipient] = forwarded.recipients
        self.assertEqual(
            (recipient.address, recipient.orcpt),
            ("bob@elsewhere.example", "rfc822;fwd@example.test"),
        )
        with self.queue.openMessage(forwarded.id) as f:
            self.assertEqual(f.read(), NOTICE)

    @inlineCallbacks
    def test_a_full_mailbox_is_a_temporary_failure(self) -> Generator[Deferred[Any], Any, None]:
        directory = self.fixture.directory
        directory.setUserFields(ALICE, overrideFields(directory.userFields(ALICE), 10, None))
        results = yield self.deliver(self.entry(ALICE))
        self.assertFalse(results[ALICE].delivered)
        self.assertEqual(results[ALICE].diagnostic.status, "4.2.2")
        self.assertEqual(self.fixture.inbox(ALICE), [])


class DeferringRealm(VirtualDomainRealm):
    """The virtual-domain realm, each store behind the deferring proxy."""

    def createStore(self, user: str) -> IMailStore:
        return deferringStore(super().createStore(user))


class DeferringStoreLocalTransportTests(LocalTransportTests):
    """
    The same deliveries into a store whose disk operations answer in a
    later reactor turn: the INBOXes and every commit are waited for.
    """

    def setUp(self) -> None:
        super().setUp()
        realm = DeferringRealm(self.fixture.directory, self.fixture.root / "data" / "mail")
        self.transport = LocalTransport(realm, "mx.example.test", self.outbox)

    @inlineCallbacks
    def test_several_users_get_one_copy_each_and_a_full_one_none(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        directory = self.fixture.directory
        directory.setUserFields(BOB, overrideFields(directory.userFields(BOB), 10, None))
        self.fixture.directory.addAlias("team@example.test", [ALICE, BOB])
        results = yield self.deliver(self.entry("team@example.test", ALICE, BOB))
        self.assertEqual(
            {address: (r.delivered, r.diagnostic.status) for address, r in results.items()},
            {
                "team@example.test": (True, "2.0.0"),
                ALICE: (True, "2.0.0"),
                BOB: (False, "4.2.2"),
            },
        )
        [stored] = self.fixture.inbox(ALICE)
        self.assertTrue(stored.endswith(NOTICE))
        self.assertEqual(self.fixture.inbox(BOB), [])


class RunnerLocalDeliveryTests(TestCase):
    """The runner stores mail for hosted domains itself, never looking up their MX."""

    @inlineCallbacks
    def test_a_notice_to_a_local_sender_reaches_its_inbox_without_dns(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        fixture = makeRealm(Path(self.mktemp()))
        store = QueueStore(Path(self.mktemp()))
        dns = startSilentDNS(self)
        settings = RelaySettings(
            heloName="mx.example.test",
            nameservers=(f"127.0.0.1:{dns.port}",),
            dnsTimeouts=(0.2,),
            rescanInterval=0.2,
            wakeupPoll=0.05,
        )
        runner = QueueRunner(
            store, settings, local=LocalTransport(fixture.realm, "mx.example.test", Outbox(store))
        )
        entry = store.enqueue(Envelope("", (Recipient(ALICE), Recipient("x@example.test"))), NOTICE)
        runner.startService()
        self.addCleanup(runner.stopService)
        yield eventually(lambda: not store.ids())
        folder = fixture.store(ALICE).getFolder("INBOX")
        [info] = folder.messages()
        with folder.openMessage(info.uid) as f:
            self.assertIn(f"with local id {entry.id}".encode(), f.read())
        self.assertEqual(dns.queries, [])
