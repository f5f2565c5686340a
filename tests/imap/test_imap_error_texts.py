"""
No IMAP reply carries a Python repr, an exception or class name, or a path:
every command, in every state, driven with random and half-valid arguments
(literals included), gets protocol replies only, in tmail's own words, and
the session answers NOOP afterwards.
"""

from __future__ import annotations

import builtins
import re
from pathlib import Path

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from test_imap_protocol import Session, deliver, responses
from twisted.mail import imap4
from twisted.trial.unittest import SynchronousTestCase

from support.realm import makeRealm
from tmail import errors
from tmail.imap.server import IMAPServer

_STATES = ("unauth", "auth", "select")

#: Every command tmail binds, by name.
COMMANDS = sorted(
    {
        name.split("_", 1)[1]
        for name in dir(IMAPServer)
        if name.split("_", 1)[0] in _STATES and name.split("_", 1)[1].isupper()
    }
)
_UID_COMMANDS = ["FETCH", "STORE", "SEARCH", "SORT", "THREAD", "COPY", "MOVE", "EXPUNGE"]

#: Names of exceptions a careless reply could show.
_EXCEPTION_NAMES = sorted(
    {
        name
        for module in (builtins, imap4, errors)
        for name, value in vars(module).items()
        if isinstance(value, type) and issubclass(value, BaseException)
    }
)
_LEAK = re.compile(
    rb"b'|b\"|Traceback|Error\(|Exception|File \"|\.py\b|twisted|tmail\.|0x[0-9a-f]{6}|"
    rb"/tmp|/var|/home|/root|/work|\b(?:" + "|".join(_EXCEPTION_NAMES).encode() + rb")\b"
)
_STATUS = re.compile(rb"^(?:\*|g|z) (OK|NO|BAD|BYE|PREAUTH)(?: (.*))?$")
_UNTAGGED_DATA = re.compile(rb"^\* (?:\d+ )?[A-Z][A-Z0-9.=-]*(?: |$)")
_CONTINUATION = re.compile(rb"^\+(?: |$)")

_WORDS = [
    b"ALL",
    b"NOT",
    b"OR",
    b"UID",
    b"1",
    b"2",
    b"1:*",
    b"*",
    b"$",
    b"%",
    b"0",
    b"-1",
    b"4294967296",
    b"99999999999999999999",
    b"INBOX",
    b"inbox",
    b"Sent",
    b"NIL",
    b"()",
    b"(",
    b")",
    b"[",
    b"]",
    b"((",
    b"))",
    b"[[",
    b"]]",
    b'"',
    b'"quoted"',
    b'"a\\"b"',
    b'"\\x"',
    b"\\Seen",
    b"\\Bogus",
    b"\\*",
    b"FLAGS",
    b"+FLAGS",
    b"-FLAGS.SILENT",
    b"BODY[]",
    b"BODY.PEEK[HEADER.FIELDS (SUBJECT)]",
    b"BODY[1.2.3]<0.10>",
    b"BINARY[1]",
    b"BINARY.SIZE[]",
    b"RFC822",
    b"ENVELOPE",
    b"BODYSTRUCTURE",
    b"MODSEQ",
    b"(FLAGS UID)",
    b"(CHANGEDSINCE 1)",
    b"(CHANGEDSINCE 1 VANISHED)",
    b"(UNCHANGEDSINCE 0)",
    b"CHARSET",
    b"UTF-8",
    b"US-ASCII",
    b"RETURN",
    b"(SAVE)",
    b"(MIN MAX COUNT ALL)",
    b"(DATE)",
    b"(REVERSE SUBJECT)",
    b"REFERENCES",
    b"ORDEREDSUBJECT",
    b"SUBJECT",
    b"HEADER",
    b"BODY",
    b"TEXT",
    b"SINCE",
    b"1-Feb-1994",
    b"31-Feb-1994",
    b"OLDER",
    b"LARGER",
    b"KEYWORD",
    b"(MESSAGES UNSEEN)",
    b"(((MESSAGES)))",
    b"(MESSAGES",
    b"[MESSAGES]",
    b"(STORAGE 10)",
    b"CONDSTORE",
    b"(CONDSTORE)",
    b"(QRESYNC (1 1 1:*))",
    b"QRESYNC",
    b"IMAP4rev2",
    b"UTF8=ACCEPT",
    b"(SUBSCRIBED)",
    b"(SPECIAL-USE)",
    b"(RECURSIVEMATCH)",
    b"(CHILDREN STATUS (MESSAGES))",
    b'("name" "x")',
    b'("name" NIL "os")',
    b"(\\Seen)",
    b'" 7-Jul-2025 10:00:00 +0200"',
    b"(USE (\\Sent))",
    b"~{3}",
    b"{4}",
    b"{-1}",
    b"{abc}",
    b"PLAIN",
    b"LOGIN",
    b"AGFsaWNl",
    b"=",
    b"&AC4ALgAv-",
    b"&Jjo-",
    b"a/../b",
    b"/etc",
]


MULTIPART = (
    b"Subject: two\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n\r\nA\r\n--x--\r\n"
)


def _literal(data: bytes) -> bytes:
    return b"{%d+}\r\n%s" % (len(data), data)


#: Lists with parentheses or brackets added or missing at either end.
_LISTS = st.tuples(
    st.sampled_from([b"", b"(", b"((", b"(((", b"[", b"([", b")"]),
    st.lists(st.sampled_from(_WORDS), max_size=3).map(b" ".join),
    st.sampled_from([b"", b")", b"))", b")))", b"]", b"])", b"("]),
).map(b"".join)

_PIECES = st.one_of(
    _LISTS,
    st.sampled_from(_WORDS),
    st.binary(max_size=12).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
    st.text(alphabet='abcXYZ019*%()[]{}<>"\\/.:,$+-~ ', max_size=12).map(str.encode),
    st.text(alphabet="()[] MESAGUIDFL1:*", max_size=16).map(str.encode),
    st.binary(max_size=20).map(_literal),
)

_MAILBOX_FIRST = {
    "APPEND", "CREATE", "DELETE", "EXAMINE", "GETQUOTAROOT", "LIST", "LSUB", "RENAME",
    "SELECT", "STATUS", "SUBSCRIBE", "UNSUBSCRIBE",
}  # fmt: skip
_SET_FIRST = {"COPY", "FETCH", "MOVE", "STORE", "EXPUNGE"}


def _arguments(command: bytes) -> st.SearchStrategy[bytes]:
    """Random pieces, often after a well-formed first argument so later parsers are reached."""
    name = command.split()[-1].decode()
    first: list[bytes] = [b""]
    if name in _MAILBOX_FIRST:
        first = [b"INBOX", b'""', b"Nope"]
    elif name in _SET_FIRST:
        first = [b"1:*", b"1,2", b"$", b"2:1"]
    return st.tuples(st.sampled_from(first), st.lists(_PIECES, max_size=6)).map(
        lambda parts: b" ".join(([parts[0]] if parts[0] else []) + parts[1])
    )


def _commandsOf(state: str) -> st.SearchStrategy[bytes]:
    """Mostly the commands of C{state}, sometimes any (answered BAD)."""
    bound = [name.encode() for name in COMMANDS if hasattr(IMAPServer, f"{state}_{name}")]
    if state == "select":
        bound += [b"UID " + name.encode() for name in _UID_COMMANDS]
    anyCommand = st.sampled_from(COMMANDS).map(str.encode)
    return st.one_of(st.sampled_from(bound), st.sampled_from(bound), anyCommand)


_REQUESTS = st.sampled_from(_STATES).flatmap(
    lambda state: _commandsOf(state).flatmap(
        lambda command: st.tuples(st.just(state), st.just(command), _arguments(command))
    )
)


class ReplyTextTests(SynchronousTestCase):
    """Random arguments to every command; only protocol replies come back."""

    def setUp(self) -> None:
        self.fixture = makeRealm(Path(self.mktemp()))
        inbox = self.fixture.store("alice@example.test").getFolder("INBOX")
        deliver(inbox)
        deliver(inbox, MULTIPART)
        self.root = str(self.fixture.root.resolve()).encode()

    def session(self, state: str) -> Session:
        session = Session(self, self.fixture)
        if state == "auth":
            session.loginDirectly()
        elif state == "select":
            session.select()
        return session

    def checkReplies(self, data: bytes) -> None:
        for line in responses(data):
            if not line:
                continue
            self.assertNotIn(self.root, line)
            if _STATUS.match(line) or _CONTINUATION.match(line):
                self.assertIsNone(_LEAK.search(line), line)
            else:
                self.assertRegex(line, _UNTAGGED_DATA)

    def drive(self, state: str, command: bytes, arguments: bytes) -> None:
        upper = (command + b" " + arguments).upper()
        assume(not (command.startswith(b"COMPRESS") and b"DEFLATE" in upper))
        session = self.session(state)
        line = b"g " + command + (b" " + arguments if arguments else b"")
        reply = session.send(line + b"\r\n")
        marker = re.search(rb"\{(\d+)\}\Z", line)
        if marker is not None and reply.endswith(b"+ Ready for literal data\r\n"):
            reply += session.send(b"x" * int(marker.group(1)) + b"\r\n")
        if reply.endswith(b"+ Idling\r\n"):
            reply += session.send(b"DONE\r\n")
        elif re.search(rb"(^|\n)\+ [A-Za-z0-9+/=]*\r\n\Z", reply):
            reply += session.send(b"*\r\n")
        self.checkReplies(reply)
        self.assertEqual(self.flushLoggedErrors(), [])
        if session.transport.disconnecting:
            self.assertTrue(command.startswith(b"LOGOUT") or b"* BYE" in reply, reply)
            return
        after = session.send(b"z NOOP\r\n")
        self.checkReplies(after)
        self.assertTrue(after.endswith(b"z OK NOOP completed\r\n"), (command, arguments, after))

    @settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(_REQUESTS)
    def test_every_command_in_every_state_answers_in_protocol_words(
        self, request: tuple[str, bytes, bytes]
    ) -> None:
        self.drive(*request)

    def test_status_with_nested_parentheses_shows_no_repr(self) -> None:
        """C{STATUS INBOX (((MESSAGES)))} answered C{BAD b'((MESSAGES'}."""
        session = self.session("auth")
        for items in [b"(((MESSAGES)))", b"([[[[MESSAGES]]]])", b"((MESSAGES)", b"(MESSAGES [)"]:
            reply = session.send(b"g STATUS INBOX " + items + b"\r\n")
            self.assertRegex(reply, rb"^g BAD [A-Za-z ]+\r\n$")
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_store_errors_name_no_folder_in_a_repr(self) -> None:
        """The store's own words (C{'xxx...': name is too long}) stay in the store."""
        session = self.session("auth")
        reply = session.send(b"g CREATE " + b"x" * 300 + b"\r\n")
        self.assertEqual(reply, b"g NO [CANNOT] Invalid mailbox name\r\n")

    def test_commands_cover_every_binding(self) -> None:
        self.assertIn("SEARCH", COMMANDS)
        self.assertIn("GETQUOTAROOT", COMMANDS)
        self.assertGreaterEqual(len(COMMANDS), 35)
