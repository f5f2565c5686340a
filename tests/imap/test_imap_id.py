"""
ID (RFC 2971): the client tells who it is, the server answers with its
name and version, in every state; malformed lists and parameters past the
RFC's limits are C{BAD}, and the session goes on.
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_imap_protocol import Session
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase

from support.imaploop import imapclient, listenIMAP
from support.net import inThread
from support.realm import makeRealm
from tmail import __version__

SERVER_ID = b'* ID ("name" "tmail" "version" "%s")\r\n' % __version__.encode()


def quote(value: bytes) -> bytes:
    return b'"' + value.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


class IDTranscriptTests(SynchronousTestCase):
    def test_rfc2971_example_is_answered_with_the_server_name_and_version(self) -> None:
        session = Session(self)
        reply = session.send(
            b'a023 ID ("name" "sodr" "version" "19.34" "vendor" "Pink Floyd Music Limited")\r\n'
        )
        self.assertEqual(reply, SERVER_ID + b"a023 OK ID completed\r\n")

    def test_id_nil_works_before_login_after_login_and_when_selected(self) -> None:
        session = Session(self)
        self.assertEqual(session.send(b"a ID NIL\r\n"), SERVER_ID + b"a OK ID completed\r\n")
        session.loginDirectly()
        self.assertEqual(session.send(b"b ID nil\r\n"), SERVER_ID + b"b OK ID completed\r\n")
        session.select()
        self.assertEqual(session.send(b'c ID ("os" NIL)\r\n'), SERVER_ID + b"c OK ID completed\r\n")

    def logEvents(self) -> list[dict[str, Any]]:
        """The log events emitted from now on (until the test ends)."""
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        return events

    def test_values_may_be_literals_escapes_or_nil(self) -> None:
        """The server reads each form; it logs what it read, control characters masked."""
        events = self.logEvents()
        session = Session(self)
        self.assertEqual(session.send(b'a ID ("name" {5}\r\n'), b"+ Ready for literal data\r\n")
        self.assertEqual(session.send(b"mu\ntt)\r\n"), SERVER_ID + b"a OK ID completed\r\n")
        reply = session.send(b'b ID ("x-path" "C:\\\\mail \\"q\\"" "os" NIL)\r\n')
        self.assertEqual(reply, SERVER_ID + b"b OK ID completed\r\n")
        reply = session.send(b'c ID ("name" {4+}\r\nmutt "version" {1+}\r\n2)\r\n')
        self.assertEqual(reply, SERVER_ID + b"c OK ID completed\r\n")
        self.assertEqual(
            [event["params"] for event in events if "params" in event],
            ["name=mu?tt", 'x-path=C:\\mail "q", os=NIL', "name=mutt, version=2"],
        )

    def test_malformed_parameter_lists_are_bad(self) -> None:
        session = Session(self)
        for arguments, text in [
            (b"", b"ID takes NIL or a parenthesized list"),
            (b"foo", b"ID takes NIL or a parenthesized list"),
            (b"()", b"Empty ID list; send NIL"),
            (b'("name")', b"ID field without a value"),
            (b'("name" "a" "version")', b"ID field without a value"),
            (b'(name "x")', b"ID fields and values must be strings"),
            (b'(NIL "x")', b"ID fields and values must be strings"),
            (b'("name" x)', b"ID fields and values must be strings"),
            (b'("name" "x"', b"Unbalanced parenthesis in ID list"),
            (b'("name""x")', b"Missing space in ID list"),
            (b'("name" "x") extra', b"Too many arguments"),
            (b'("na\\me" "x")', b"Invalid escape in quoted string"),
            (b'("name" "x)', b"Unterminated quoted string"),
        ]:
            reply = session.send(b"a ID " + arguments + b"\r\n")
            self.assertEqual(reply, b"a BAD " + text + b"\r\n", arguments)
        self.assertEqual(session.send(b"b NOOP\r\n"), b"b OK NOOP completed\r\n")

    def test_fields_over_30_octets_values_over_1024_and_over_30_pairs_are_bad(self) -> None:
        """RFC 2971 3.3; the limits themselves are accepted."""
        session = Session(self)
        field, value = b"f" * 30, b"v" * 1024
        ok = session.send(b"a ID (%s %s)\r\n" % (quote(field), quote(value)))
        self.assertEqual(ok, SERVER_ID + b"a OK ID completed\r\n")
        self.assertEqual(
            session.send(b'b ID (%s "v")\r\n' % quote(field + b"f")),
            b"b BAD ID field name too long\r\n",
        )
        self.assertEqual(
            session.send(b'c ID ("name" %s)\r\n' % quote(value + b"v")),
            b"c BAD ID value too long\r\n",
        )
        pairs = b" ".join(b'"f%d" "v"' % i for i in range(30))
        self.assertEqual(
            session.send(b"d ID (%s)\r\n" % pairs), SERVER_ID + b"d OK ID completed\r\n"
        )
        self.assertEqual(
            session.send(b'e ID (%s "f31" "v")\r\n' % pairs), b"e BAD Too many ID fields\r\n"
        )

    def test_an_oversized_literal_value_is_refused_unread_and_never_run(self) -> None:
        """A 1025-octet non-synchronizing literal is dropped, including the command inside it."""
        session = Session(self)
        payload = b"x LOGOUT\r\n" + b"y" * 1015
        reply = session.send(b'a ID ("name" {1025+}\r\n%s)\r\nb NOOP\r\n' % payload)
        self.assertEqual(reply, b"a BAD ID value too long\r\nb OK NOOP completed\r\n")
        self.assertEqual(session.send(b'c ID ("name" {1025}\r\n'), b"c BAD ID value too long\r\n")
        self.assertFalse(session.transport.disconnecting)

    def test_capability_lists_id(self) -> None:
        session = Session(self)
        self.assertIn(b" ID ", session.greeting)


_STRING = st.binary(max_size=40).filter(
    lambda b: b"\0" not in b and b"\r" not in b and b"\n" not in b
)


class IDParserPropertyTests(SynchronousTestCase):
    """Random parameter lists: valid ones are answered, anything else is BAD."""

    def setUp(self) -> None:
        self.fixture = makeRealm(Path(self.mktemp()))

    @settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        st.lists(
            st.tuples(
                st.binary(min_size=0, max_size=30).filter(lambda b: b"\0" not in b),
                st.one_of(st.none(), _STRING),
            ),
            min_size=1,
            max_size=30,
        )
    )
    def test_any_well_formed_list_within_the_limits_is_accepted(
        self, pairs: list[tuple[bytes, bytes | None]]
    ) -> None:
        session = Session(self, self.fixture)
        parts = []
        for field, value in pairs:
            literal = b"\r" in field or b"\n" in field
            encoded = b"{%d+}\r\n%s" % (len(field), field) if literal else quote(field)
            parts.append(encoded + b" " + (b"NIL" if value is None else quote(value)))
        reply = session.send(b"a ID (" + b" ".join(parts) + b")\r\n")
        self.assertEqual(reply, SERVER_ID + b"a OK ID completed\r\n")

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.binary(max_size=60).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")))
    def test_random_arguments_get_a_tagged_answer_and_the_session_goes_on(
        self, arguments: bytes
    ) -> None:
        session = Session(self, self.fixture)
        reply = session.send(b"a ID " + arguments + b"\r\n")
        if arguments.rstrip().endswith(b"}") and reply.startswith(b"+ "):
            reply = session.send(b"\r\n")
        last = reply.split(b"\r\n")[-2]
        self.assertRegex(last, rb"^(a (OK|BAD|NO) |\+ |\* BYE )")
        if not session.transport.disconnecting and not reply.startswith(b"+"):
            self.assertTrue(session.send(b"z NOOP\r\n").endswith(b"z OK NOOP completed\r\n"))


class IDClientTests(TestCase):
    timeout = 20

    @inlineCallbacks
    def test_imapclient_id_returns_the_server_name_and_version(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        port = yield listenIMAP(self, makeRealm(Path(self.mktemp())))

        def client() -> Any:
            imap = imapclient(port)
            try:
                return imap.id_({"name": "imapclient", "version": "3"})
            finally:
                imap.logout()

        answer = yield inThread(client)
        self.assertEqual(answer, ((b"name", b"tmail", b"version", __version__.encode()),))
