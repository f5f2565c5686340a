"""
CATENATE (RFC 4469): APPEND puts a message together from TEXT literals
and URLs naming messages (or their parts) already on the server.  The
RFC's example, BADURL and TOOBIG, MULTIAPPEND with CATENATE, relative and
absolute URLs, another user's mailbox (only through URLAUTH), the parts
limit, and the work on a large part spread over reactor turns.
"""

from __future__ import annotations

from typing import Any

from test_imap_protocol import Session
from twisted.internet.defer import maybeDeferred
from twisted.internet.task import Cooperator
from twisted.trial.unittest import SynchronousTestCase

from support.realm import ALICE, BOB
from tmail.imap.urlauth import computeToken
from tmail.interfaces import IMailFolder

BOUNDARY = b"------------030308070208000400050907"
DRAFT = (
    b"From: Alice <alice@example.test>\r\n"
    b"To: Bob <bob@example.test>\r\n"
    b"Subject: the plans\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="' + BOUNDARY + b'"\r\n'
    b"\r\n"
    b"This is a multi-part message in MIME format.\r\n"
    b"--" + BOUNDARY + b"\r\n"
    b"Content-Type: text/plain; charset=us-ascii\r\n"
    b"Content-Transfer-Encoding: 7bit\r\n"
    b"\r\n"
    b"Here are the plans.\r\n"
    b"\r\n"
    b"--" + BOUNDARY + b"--\r\n"
)
FORWARDED = (
    b"From: Carol <carol@example.test>\r\n"
    b"Subject: the original plans\r\n"
    b"\r\n"
    b"Build it on the hill.\r\n"
)
READY = b"+ Ready for literal data\r\n"


def store(folder: IMailFolder, data: bytes, flags: tuple[str, ...] = ()) -> int:
    pending = folder.beginMessage(flags)
    pending.write(data)
    return pending.commit()


def contents(folder: IMailFolder) -> list[bytes]:
    found = []
    for info in folder.messages():
        with folder.openMessage(info.uid) as f:
            found.append(f.read())
    return found


class CatenateTranscriptTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.session = Session(self)
        self.drafts = self.session.store.createFolder("Drafts")
        self.draft = store(self.drafts, DRAFT)
        self.forwarded = store(self.drafts, FORWARDED)
        self.session.loginDirectly()
        self.validity = self.drafts.uidValidity()

    def url(self, uid: int, rest: bytes = b"") -> bytes:
        return b"/Drafts;UIDVALIDITY=%d/;UID=%d%s" % (self.validity, uid, rest)

    def assertNothingNew(self, count: int = 2) -> None:
        self.assertEqual(len(self.drafts.messages()), count)
        self.assertEqual(list((self.drafts._path / "tmp").iterdir()), [])
        if not self.session.server._lost:
            self.assertEqual(self.session.send(b"z NOOP\r\n"), b"z OK NOOP completed\r\n")

    def test_capability_lists_catenate(self) -> None:
        reply = self.session.send(b"c CAPABILITY\r\n")
        self.assertIn(b" CATENATE", reply)

    def test_rfc4469_example(self) -> None:
        """RFC 4469 5: a forward put together from a draft's parts, a message and boundaries."""
        send = self.session.send
        separator = b"\r\n--" + BOUNDARY + b"\r\n"
        closing = b"\r\n--" + BOUNDARY + b"--\r\n"
        self.assertEqual(
            send(
                b'A003 APPEND Drafts (\\Seen \\Draft $MDNSent) CATENATE (URL "%s" TEXT {%d}\r\n'
                % (self.url(self.draft, b"/;section=HEADER"), len(separator))
            ),
            READY,
        )
        self.assertEqual(
            send(
                separator
                + b' URL "%s" URL "%s" TEXT {%d}\r\n'
                % (
                    self.url(self.draft, b"/;section=1.MIME"),
                    self.url(self.draft, b"/;section=1"),
                    len(separator),
                )
            ),
            READY,
        )
        self.assertEqual(
            send(separator + b' URL "%s" TEXT {%d}\r\n' % (self.url(self.forwarded), len(closing))),
            READY,
        )
        reply = send(closing + b")\r\n")
        self.assertEqual(reply, b"A003 OK [APPENDUID %d 3] APPEND completed\r\n" % self.validity)
        header = DRAFT[: DRAFT.index(b"\r\n\r\n") + 4]
        mime = (
            b"Content-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"
        )
        body = b"Here are the plans.\r\n"
        self.assertEqual(
            contents(self.drafts)[2],
            header + separator + mime + body + separator + FORWARDED + closing,
        )
        self.assertEqual(self.drafts.messages()[2].flags, {"\\Seen", "\\Draft", "$MDNSent"})

    def test_a_url_naming_no_message_is_badurl_and_nothing_is_stored(self) -> None:
        """RFC 4469 5: the second example, a URL to a message that is gone."""
        url = self.url(99, b"/;section=HEADER")
        reply = self.session.send(
            b'A004 APPEND Drafts CATENATE (URL "%s" TEXT {3+}\r\nabc)\r\n' % url
        )
        self.assertEqual(reply, b"A004 NO [BADURL " + url + b"] CATENATE append has failed\r\n")
        self.assertNothingNew()
        self.assertEqual(self.session.send(b"z NOOP\r\n"), b"z OK NOOP completed\r\n")

    def test_badurl_for_a_missing_section_a_wrong_uidvalidity_and_garbage(self) -> None:
        for url in (
            self.url(self.forwarded, b"/;section=4"),
            b"/Drafts;UIDVALIDITY=%d/;UID=%d" % (self.validity + 1, self.draft),
            b"/Nowhere/;UID=1",
            b"not a url",
        ):
            reply = self.session.send(b'a APPEND Drafts CATENATE (URL "%s")\r\n' % url)
            self.assertTrue(reply.startswith(b"a NO [BADURL "), reply)
        self.assertNothingNew()

    def test_a_url_to_another_server_is_badurl(self) -> None:
        url = b"imap://alice%%40example.test@elsewhere.example/Drafts/;UID=%d" % self.draft
        reply = self.session.send(b'a APPEND Drafts CATENATE (URL "%s")\r\n' % url)
        self.assertEqual(reply, b"a NO [BADURL " + url + b"] CATENATE append has failed\r\n")

    def test_an_absolute_url_to_the_users_own_mailbox(self) -> None:
        url = b"imap://alice%%40example.test@mail.example.test/Drafts/;UID=%d" % self.forwarded
        reply = self.session.send(b'a APPEND Drafts CATENATE (URL "%s")\r\n' % url)
        self.assertEqual(reply, b"a OK [APPENDUID %d 3] APPEND completed\r\n" % self.validity)
        self.assertEqual(contents(self.drafts)[2], FORWARDED)

    def test_a_relative_uid_url_names_the_selected_mailbox(self) -> None:
        self.session.send(b"s SELECT Drafts\r\n")
        reply = self.session.send(
            b'a APPEND Drafts CATENATE (URL ";UID=%d/;PARTIAL=0.4" TEXT {2+}\r\n\r\n)\r\n'
            % self.forwarded
        )
        self.assertIn(b"a OK [APPENDUID", reply)
        self.assertEqual(contents(self.drafts)[2], b"From\r\n")

    def test_another_users_mailbox_only_through_urlauth(self) -> None:
        bobStore = self.session.fixture.store(BOB)
        bobInbox = bobStore.getFolder("INBOX")
        uid = store(bobInbox, FORWARDED)
        base = b"imap://bob%%40example.test@mail.example.test/INBOX;UIDVALIDITY=%d/;UID=%d" % (
            bobInbox.uidValidity(),
            uid,
        )
        reply = self.session.send(b'a APPEND Drafts CATENATE (URL "%s")\r\n' % base)
        self.assertTrue(reply.startswith(b"a NO [BADURL "), reply)
        rump = base + b";URLAUTH=user+alice%40example.test"
        key = bobStore.mailboxKeys().keyFor("INBOX", bobInbox.uidValidity())
        full = rump + b":internal:" + computeToken(key, rump.decode()).encode()
        reply = self.session.send(b'b APPEND Drafts CATENATE (URL "%s")\r\n' % full)
        self.assertIn(b"b OK [APPENDUID", reply)
        self.assertEqual(contents(self.drafts)[2], FORWARDED)
        off = Session(self, self.session.fixture, urlauth=False)
        off.loginDirectly()
        reply = off.send(b'x APPEND Drafts CATENATE (URL "%s")\r\n' % full)
        self.assertTrue(reply.startswith(b"x NO [BADURL "), reply)
        forged = full[:-4] + b"0000"
        reply = self.session.send(b'c APPEND Drafts CATENATE (URL "%s")\r\n' % forged)
        self.assertTrue(reply.startswith(b"c NO [BADURL "), reply)

    def test_multiappend_with_catenate(self) -> None:
        """RFC 4469 3: each message of a MULTIAPPEND may be a CATENATE."""
        reply = self.session.send(
            b'a APPEND Drafts CATENATE (URL "%s" TEXT {4+}\r\nmore) (\\Flagged) {3+}\r\nabc'
            b' CATENATE (TEXT {2+}\r\nxy URL "%s")\r\n'
            % (self.url(self.forwarded), self.url(self.forwarded, b"/;section=TEXT"))
        )
        self.assertEqual(reply, b"a OK [APPENDUID %d 3:5] APPEND completed\r\n" % self.validity)
        self.assertEqual(
            contents(self.drafts)[2:],
            [FORWARDED + b"more", b"abc", b"xyBuild it on the hill.\r\n"],
        )

    def test_a_literal_message_after_a_catenate_that_ends_in_a_url_is_read(self) -> None:
        """
        The URL part is served while input waits; the next message's literal
        must still be read (the command hung without a reply before).
        """
        reply = self.session.send(
            b'a APPEND Drafts CATENATE (URL "%s") {10+}\r\nNew: one\r\n'
            b' CATENATE (URL "%s") (\\Answered) {10+}\r\nNew: two\r\n\r\n'
            % (self.url(self.forwarded, b"/;section=HEADER"), self.url(self.draft, b"/;section=1"))
        )
        self.assertEqual(reply, b"a OK [APPENDUID %d 3:6] APPEND completed\r\n" % self.validity)
        self.assertEqual(
            contents(self.drafts)[2:],
            [
                b"From: Carol <carol@example.test>\r\nSubject: the original plans\r\n\r\n",
                b"New: one\r\n",
                b"Here are the plans.\r\n",
                b"New: two\r\n",
            ],
        )
        self.assertEqual(self.session.send(b"z NOOP\r\n"), b"z OK NOOP completed\r\n")

    def test_a_command_pipelined_after_a_multiappend_of_catenates_waits_for_it(self) -> None:
        reply = self.session.send(
            b'a APPEND Drafts CATENATE (URL "%s") CATENATE (URL "%s" TEXT {3+}\r\nend)\r\n'
            b"b NOOP\r\n" % (self.url(self.forwarded), self.url(self.draft, b"/;section=HEADER"))
        )
        self.assertEqual(
            reply,
            b"a OK [APPENDUID %d 3:4] APPEND completed\r\nb OK NOOP completed\r\n" % self.validity,
        )
        self.assertEqual(
            contents(self.drafts)[2:], [FORWARDED, DRAFT.split(b"\r\n\r\n")[0] + b"\r\n\r\nend"]
        )

    def test_a_bad_url_in_a_later_message_stores_none_of_them(self) -> None:
        reply = self.session.send(
            b'a APPEND Drafts {3+}\r\nabc CATENATE (URL "%s")\r\n' % self.url(77)
        )
        self.assertTrue(reply.startswith(b"a NO [BADURL "), reply)
        self.assertNothingNew()

    def test_a_message_over_the_literal_limit_is_toobig(self) -> None:
        session = Session(self, self.session.fixture, max_literal_size=len(FORWARDED) + 2)
        session.loginDirectly()
        reply = session.send(
            b'a APPEND Drafts CATENATE (URL "%s" URL "%s")\r\n'
            % (self.url(self.forwarded), self.url(self.forwarded))
        )
        self.assertEqual(reply, b"a NO [TOOBIG] Message too large\r\n")
        reply = session.send(
            b'b APPEND Drafts CATENATE (URL "%s" TEXT {10}\r\n' % self.url(self.forwarded)
        )
        self.assertEqual(reply, b"b NO [TOOBIG] Message too large\r\n")
        self.assertNothingNew()

    def test_a_message_over_quota_is_refused(self) -> None:
        from tmail.store.quota import overrideFields

        fixture = self.session.fixture
        used = len(DRAFT) + len(FORWARDED)
        fixture.directory.setUserFields(ALICE, overrideFields({}, used + 10, None))
        reply = self.session.send(
            b'a APPEND Drafts CATENATE (URL "%s")\r\n' % self.url(self.forwarded)
        )
        self.assertEqual(reply, b"a NO [OVERQUOTA] Quota exceeded (mailbox for user is full)\r\n")
        self.assertNothingNew()

    def test_too_many_parts_is_limit(self) -> None:
        session = Session(self, self.session.fixture, max_catenate_parts=3)
        session.loginDirectly()
        parts = b" ".join([b'URL "%s"' % self.url(self.forwarded)] * 4)
        reply = session.send(b"a APPEND Drafts CATENATE (%s)\r\n" % parts)
        self.assertEqual(reply, b"a NO [LIMIT] Too many CATENATE parts\r\n")
        self.assertNothingNew()

    def test_malformed_catenate_is_bad(self) -> None:
        for line in (
            b"a APPEND Drafts CATENATE URL x\r\n",
            b"a APPEND Drafts CATENATE (BLOB x)\r\n",
            b"a APPEND Drafts CATENATE (TEXT abc)\r\n",
        ):
            reply = self.session.send(line)
            self.assertTrue(reply.startswith(b"a BAD "), reply)
            self.assertNotIn(b"'", reply)
        self.assertNothingNew()

    def test_an_empty_catenate_is_refused(self) -> None:
        reply = self.session.send(b"a APPEND Drafts CATENATE ()\r\n")
        self.assertEqual(reply, b"a NO [CANNOT] Empty message; APPEND cancelled\r\n")
        self.assertNothingNew()

    def test_a_large_part_is_read_in_a_thread_and_written_over_several_turns(self) -> None:
        big = b"Subject: big\r\n\r\n" + (b"y" * 78 + b"\r\n") * 20000
        uid = store(self.drafts, big)
        threaded: list[str] = []
        server = self.session.server

        def inThread(f: Any, *args: Any, **kwargs: Any) -> Any:
            threaded.append(getattr(f, "__name__", ""))
            return maybeDeferred(f, *args, **kwargs)

        turns: list[Any] = []
        server.runInThread = inThread  # type: ignore[method-assign]
        server.cooperator = Cooperator(
            terminationPredicateFactory=lambda: lambda: True, scheduler=turns.append
        )
        server.dataReceived(b'a APPEND Drafts CATENATE (URL "%s")\r\n' % self.url(uid))
        ran = 0
        while turns and ran < 100:
            self.assertNotIn(b"a OK", self.session.transport.value())
            turns.pop(0)()
            ran += 1
        self.session.pump()
        self.assertIn(b"a OK [APPENDUID", self.session.take())
        self.assertGreater(ran, len(big) // (1024 * 1024))
        self.assertIn("extract", threaded)
        self.assertEqual(contents(self.drafts)[-1], big)

    def test_a_client_leaving_during_a_large_part_leaves_nothing_behind(self) -> None:
        big = b"Subject: big\r\n\r\n" + (b"z" * 78 + b"\r\n") * 20000
        uid = store(self.drafts, big)
        turns: list[Any] = []
        server = self.session.server
        server.cooperator = Cooperator(
            terminationPredicateFactory=lambda: lambda: True, scheduler=turns.append
        )
        server.dataReceived(b'a APPEND Drafts CATENATE (URL "%s")\r\n' % self.url(uid))
        turns.pop(0)()
        server.connectionLost(None)
        while turns:
            turns.pop(0)()
        self.session.pump()
        self.assertNothingNew(3)

    def test_mailbox_names_in_urls_stay_inside_the_users_mail(self) -> None:
        data = self.session.fixture.root / "data"
        # A first look at Drafts (the APPENDs name it) moves new mail into cur/.
        self.session.send(b"s STATUS Drafts (MESSAGES)\r\n")
        before = sorted(data.rglob("*"))
        for mailbox in (b"..%2F..%2Fx", b"Drafts%2F..%2F..", b"%2E%2E", b"a/../b", b"INBOX%00x"):
            url = b"/%s/;UID=1" % mailbox
            reply = self.session.send(b'a APPEND Drafts CATENATE (URL "%s")\r\n' % url)
            self.assertEqual(reply, b"a NO [BADURL " + url + b"] CATENATE append has failed\r\n")
        self.assertEqual(sorted(data.rglob("*")), before)
