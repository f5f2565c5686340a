"""
ENVELOPE address lists (RFC 3501 7.4.2, RFC 9051 7.5.2): groups as
start-of-group and end-of-group entries around their members, routes as
the at-domain-list, names without comments, quoted local parts unquoted,
and no address with a NIL host (which would read as a group marker).
"""

from __future__ import annotations

import time

from hypothesis import given, settings
from hypothesis import strategies as st
from test_imap_protocol import Session, deliver
from twisted.trial.unittest import SynchronousTestCase

from support.imapdata import fetchResponses
from tmail.imap.addressfields import Address, addressList
from tmail.imap.structure import envelope

GROUPS = (
    b"From: Alice <alice@example.test>\r\n"
    b"To: group: a@b.example, c@d.example;\r\n"
    b"Cc: undisclosed-recipients:;\r\n"
    b"Subject: groups\r\n"
    b"\r\n"
    b"body\r\n"
)

_PIECES = st.sampled_from(
    [*'ab ()<>@,:;."[]\\\t', "bob", "x.y", "=?utf-8?q?a?=", "Bob Smith", "g:", ";", "<@r:"]
)


def addresses(field: bytes) -> bytes:
    """The ENVELOPE's To member for a To field."""
    whole = envelope(b"To: " + field + b"\r\n\r\n")
    return whole[len(b"(NIL NIL NIL NIL NIL ") : -len(b" NIL NIL NIL NIL)")]


class EnvelopeTranscriptTests(SynchronousTestCase):
    def test_groups_are_marked_at_their_start_and_end(self) -> None:
        session = Session(self)
        deliver(session.store.getFolder("INBOX"), GROUPS)
        session.select()
        self.assertEqual(
            session.send(b"a FETCH 1 ENVELOPE\r\n"),
            b'* 1 FETCH (ENVELOPE (NIL "groups" '
            + b'(("Alice" NIL "alice" "example.test")) ' * 3
            + b'((NIL NIL "group" NIL)(NIL NIL "a" "b.example")(NIL NIL "c" "d.example")'
            b"(NIL NIL NIL NIL)) "
            b'((NIL NIL "undisclosed-recipients" NIL)(NIL NIL NIL NIL)) '
            b"NIL NIL NIL))\r\n"
            b"a OK FETCH completed\r\n",
        )

    def test_envelope_of_an_attached_message_marks_its_groups_too(self) -> None:
        session = Session(self)
        attached = b"Content-Type: message/rfc822\r\n\r\n" + GROUPS
        deliver(session.store.getFolder("INBOX"), attached)
        session.select()
        answer = session.send(b"a FETCH 1 BODYSTRUCTURE\r\n")
        self.assertIn(b'((NIL NIL "undisclosed-recipients" NIL)(NIL NIL NIL NIL))', answer)


class EnvelopeAddressTests(SynchronousTestCase):
    def test_group_forms(self) -> None:
        self.assertEqual(
            addresses(b'"the group": one@example.test;, two@example.test, empty:;'),
            b'((NIL NIL "the group" NIL)(NIL NIL "one" "example.test")(NIL NIL NIL NIL)'
            b'(NIL NIL "two" "example.test")(NIL NIL "empty" NIL)(NIL NIL NIL NIL))',
        )
        self.assertEqual(addresses(b":;"), b'((NIL NIL "" NIL)(NIL NIL NIL NIL))')
        # Not closed: the field's end closes it.
        self.assertEqual(
            addresses(b"g: a@example.test"),
            b'((NIL NIL "g" NIL)(NIL NIL "a" "example.test")(NIL NIL NIL NIL))',
        )
        # A group in a group (not RFC 5322): one level of markers.
        self.assertEqual(
            addresses(b"outer: inner: a@example.test;;"),
            b'((NIL NIL "outer" NIL)(NIL NIL "a" "example.test")(NIL NIL NIL NIL))',
        )

    def test_rfc5322_appendix_a_1_3_group_with_comments(self) -> None:
        self.assertEqual(
            addresses(
                b"A Group(Some people)\r\n     :Chris Jones <c@(Chris's host.)public.example>,"
                b"\r\n         joe@example.org,\r\n  John <jdoe@one.test> (my dear friend);"
                b" (the end of the group)"
            ),
            b'((NIL NIL "A Group" NIL)("Chris Jones" NIL "c" "public.example")'
            b'(NIL NIL "joe" "example.org")("John" NIL "jdoe" "one.test")(NIL NIL NIL NIL))',
        )
        self.assertEqual(
            addresses(b"(Empty list)(start)Hidden recipients  :(nobody(that I know))  ;"),
            b'((NIL NIL "Hidden recipients" NIL)(NIL NIL NIL NIL))',
        )

    def test_names_routes_and_local_parts(self) -> None:
        self.assertEqual(
            addresses(b"Pete(A nice \\) chap) <pete(his account)@silly.test(his host)>"),
            b'(("Pete" NIL "pete" "silly.test"))',
        )
        self.assertEqual(
            addresses(b"<@route1,@route2:user@example.test>, Joe <@r.example:joe@x.test>"),
            b'((NIL "@route1,@route2" "user" "example.test")("Joe" "@r.example" "joe" "x.test"))',
        )
        self.assertEqual(
            addresses(b'"local part"@example.test, "a\\"b"@example.test'),
            b'((NIL NIL "local part" "example.test")(NIL NIL "a\\"b" "example.test"))',
        )
        self.assertEqual(
            addresses(b'"Q \\"x\\" y" <q@x.test>, "" <e@x.test>, "a@b" <c@x.test>'),
            b'(("Q \\"x\\" y" NIL "q" "x.test")(NIL NIL "e" "x.test")("a@b" NIL "c" "x.test"))',
        )
        self.assertEqual(
            addresses(b"a@x.test (Name), (leading) b@x.test, c@x.test (c1) (c2)"),
            b'(("Name" NIL "a" "x.test")(NIL NIL "b" "x.test")("c2" NIL "c" "x.test"))',
        )
        self.assertEqual(
            addresses(b"john . q . public @ example . test, a@[192.0.2.1]"),
            b'((NIL NIL "john.q.public" "example.test")(NIL NIL "a" "[192.0.2.1]"))',
        )

    def test_no_address_has_a_nil_host(self) -> None:
        """A NIL host is a group marker (RFC 3501 7.4.2); missing parts are filled in."""
        self.assertEqual(addresses(b"root"), b'((NIL NIL "root" "MISSING_DOMAIN"))')
        self.assertEqual(addresses(b"a@"), b'((NIL NIL "a" "MISSING_DOMAIN"))')
        self.assertEqual(addresses(b"@x.test"), b'((NIL NIL "MISSING_MAILBOX" "x.test"))')
        self.assertEqual(
            addresses(b'<>, "Name" <>'),
            b'((NIL NIL "MISSING_MAILBOX" "MISSING_DOMAIN")'
            b'("Name" NIL "MISSING_MAILBOX" "MISSING_DOMAIN"))',
        )
        self.assertEqual(
            addresses(b"foo bar"), b'(("foo bar" NIL "MISSING_MAILBOX" "MISSING_DOMAIN"))'
        )

    def test_empty_members_are_no_addresses(self) -> None:
        """RFC 5322 4.4: obs-addr-list may hold empty members."""
        self.assertEqual(
            addresses(b"a@x.test, , (comment), b@x.test,"),
            b'((NIL NIL "a" "x.test")(NIL NIL "b" "x.test"))',
        )
        self.assertEqual(addresses(b", ;"), b"NIL")

    def test_hostile_fields_take_linear_time(self) -> None:
        for field in [
            "(" * 200_000 + "a@b",
            "a:" * 100_000,
            "g: " + "a@b, " * 50_000 + ";",
            "<" * 100_000,
            '"' + "\\" * 100_001,
            "g:;" * 50_000,
            "a " * 50_000 + "@" + ":" * 50_000,
        ]:
            start = time.monotonic()
            addressList(field)
            self.assertLess(time.monotonic() - start, 5.0, field[:10])

    def test_entries_are_bounded_and_a_cut_group_is_still_ended(self) -> None:
        found = addressList("g: " + "a@b, " * 50, most=10)
        self.assertEqual(len(found), 11)
        self.assertEqual(found[0], Address("start", "g"))
        self.assertEqual(found[-1], Address("end"))

    @settings(max_examples=500, deadline=None)
    @given(st.lists(_PIECES, max_size=30).map("".join))
    def test_any_field_gives_balanced_groups(self, field: str) -> None:
        inGroup = False
        for entry in addressList(field):
            if entry.kind == "start":
                self.assertFalse(inGroup)
            elif entry.kind == "end":
                self.assertTrue(inGroup)
            inGroup = entry.kind == "start" or (inGroup and entry.kind != "end")
        self.assertFalse(inGroup)
        fetched = fetchResponses(
            b"* 1 FETCH (ENVELOPE " + envelope(b"To: " + field.encode() + b"\r\n\r\n") + b")\r\n"
        )
        (values,) = fetched.values()
        envelopeValue = values[b"ENVELOPE"]
        assert isinstance(envelopeValue, list)
        to = envelopeValue[5]
        for entry in to or []:
            assert isinstance(entry, list)
            if entry[3] is None:
                self.assertIsNone(entry[0])
