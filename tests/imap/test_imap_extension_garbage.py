"""
Random arguments to the commands of ENABLE, ID, MOVE, UIDPLUS, QUOTA,
APPENDLIMIT and MULTIAPPEND: every line gets a tagged answer, never a
traceback or a hang, and the session takes the next command.  A line
ending in a literal marker is left out: the session would rightly wait
for the literal.
"""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from test_imap_protocol import Session, deliver
from twisted.trial.unittest import SynchronousTestCase

from support.realm import ALICE, makeRealm

_COMMANDS = [
    b"ENABLE",
    b"ID",
    b"MOVE",
    b"UID MOVE",
    b"UID COPY",
    b"UID EXPUNGE",
    b"COPY",
    b"GETQUOTA",
    b"GETQUOTAROOT",
    b"SETQUOTA",
    b"STATUS INBOX",
    b"APPEND INBOX",
    b"APPEND Archive {3+}\r\nabc",
]
_ARGUMENT = st.one_of(
    st.sampled_from(
        [
            b"NIL",
            b"()",
            b'("name" "x")',
            b"1:*",
            b"*",
            b"Archive",
            b'"User quota"',
            b"(STORAGE 5)",
            b"(APPENDLIMIT DELETED)",
            b"(\\Seen)",
            b"{3+}\r\nabc",
            b"{0+}\r\n",
            b"{5000+}\r\n" + b"x" * 5000,
        ]
    ),
    st.binary(max_size=30).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
)
_ANSWER = re.compile(
    rb"^(g (OK|NO|BAD) |\* (OK|NO|BAD|BYE|ID|ENABLED|QUOTA|QUOTAROOT|STATUS|\d+ ))"
)


class ExtensionGarbageTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.fixture = makeRealm(Path(self.mktemp()))
        store = self.fixture.store(ALICE)
        store.createFolder("Archive")
        deliver(store.getFolder("INBOX"))
        deliver(store.getFolder("INBOX"))

    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.sampled_from(_COMMANDS), st.lists(_ARGUMENT, max_size=4), st.booleans())
    def test_random_arguments_get_an_answer_and_the_session_goes_on(
        self, command: bytes, arguments: list[bytes], selected: bool
    ) -> None:
        session = Session(self, self.fixture, literal_minus=selected)
        if selected:
            session.select()
        else:
            session.loginDirectly()
        line = b" ".join([b"g " + command, *arguments])
        assume(re.search(rb"\{[^{}]*\}$", line) is None)
        reply = session.send(line + b"\r\n")
        if session.transport.disconnecting:
            self.assertTrue(reply.endswith(b"* BYE Invalid literal size\r\n"), reply)
            return
        for response in reply.split(b"\r\n")[:-1]:
            self.assertRegex(response, _ANSWER)
        self.assertRegex(reply.split(b"\r\n")[-2], rb"^g (OK|NO|BAD) ")
        self.assertTrue(session.send(b"z NOOP\r\n").endswith(b"z OK NOOP completed\r\n"))
        self.assertEqual(self.flushLoggedErrors(), [])
