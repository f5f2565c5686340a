"""
URLAUTH (RFC 4467) and URLAUTH=BINARY (RFC 5524): GENURLAUTH, URLFETCH
and RESETKEY, from the RFCs' examples; who may use which access
identifier; keys kept durably per user and mailbox; EXPIRE.
"""

from __future__ import annotations

import os
import re
import stat
from datetime import UTC, datetime, timedelta

from test_imap_protocol import Session
from twisted.trial.unittest import SynchronousTestCase

from support.realm import BOB
from tmail.imap.account import IMAPAccount
from tmail.store.urlauthkeys import FILENAME, MailboxKeyFile

PART = b"Si vis pacem, para bellum.\r\n"
MESSAGE = (
    b"From: Joe <joe@example.test>\r\n"
    b"Subject: plans\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b1"\r\n'
    b"\r\n"
    b"--b1\r\n"
    b"Content-Type: text/plain\r\n"
    b"\r\n"
    b"first\r\n"
    b"--b1\r\n"
    b"Content-Type: text/plain; charset=us-ascii\r\n"
    b"\r\n" + PART + b"\r\n--b1\r\n"
    b"Content-Type: application/octet-stream\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    b"AAECAw==\r\n"
    b"--b1--\r\n"
)
OWNER = b"imap://alice%40example.test@mail.example.test"


class URLAuthTranscriptTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.session = Session(self)
        inbox = self.session.store.getFolder("INBOX")
        pending = inbox.beginMessage()
        pending.write(MESSAGE)
        self.uid = pending.commit()
        self.session.loginDirectly()
        self.send = self.session.send

    def rump(self, access: bytes, extra: bytes = b"", section: bytes = b"2") -> bytes:
        return OWNER + b"/INBOX/;uid=%d/;section=%s%s;urlauth=%s" % (
            self.uid,
            section,
            extra,
            access,
        )

    def generate(self, rump: bytes) -> bytes:
        reply = self.send(b'a GENURLAUTH "%s" INTERNAL\r\n' % rump)
        match = re.match(rb'\* GENURLAUTH "([^"]+)"\r\na OK GENURLAUTH completed\r\n\Z', reply)
        self.assertIsNotNone(match, reply)
        assert match is not None
        return match.group(1)

    def test_capabilities(self) -> None:
        reply = self.send(b"c CAPABILITY\r\n")
        self.assertIn(b" URLAUTH ", reply)
        self.assertIn(b" URLAUTH=BINARY", reply)

    def test_urlauth_can_be_turned_off(self) -> None:
        session = Session(self, self.session.fixture, urlauth=False)
        session.loginDirectly()
        reply = session.send(b"c CAPABILITY\r\n")
        self.assertNotIn(b"URLAUTH", reply)
        self.assertIn(b"CATENATE", reply)
        self.assertEqual(
            session.send(b'a GENURLAUTH "%s" INTERNAL\r\n' % self.rump(b"anonymous")),
            b"a BAD Unknown command\r\n",
        )

    def test_rfc4467_genurlauth_and_urlfetch(self) -> None:
        """RFC 4467 9: a URL made for submit+user, then one for anonymous fetched."""
        rump = self.rump(b"submit+alice%40example.test")
        full = self.generate(rump)
        self.assertRegex(full, re.escape(rump) + rb":internal:[0-9a-f]{64}\Z")
        anonymous = self.generate(self.rump(b"anonymous"))
        reply = self.send(b'b URLFETCH "%s"\r\n' % anonymous)
        self.assertEqual(
            reply,
            b'* URLFETCH "%s" {%d}\r\n%s\r\nb OK URLFETCH completed\r\n'
            % (anonymous, len(PART), PART),
        )

    def test_several_urls_in_one_genurlauth_and_urlfetch(self) -> None:
        one, two = self.rump(b"anonymous"), self.rump(b"authuser", section=b"1")
        reply = self.send(b'a GENURLAUTH "%s" INTERNAL "%s" INTERNAL\r\n' % (one, two))
        urls = re.findall(rb'"([^"]+)"', reply)
        self.assertEqual(len(urls), 2)
        reply = self.send(b'b URLFETCH "%s" "%s" "imap://nowhere/x"\r\n' % tuple(urls))
        self.assertEqual(
            reply,
            b'* URLFETCH "%s" {%d}\r\n%s "%s" {5}\r\nfirst "imap://nowhere/x" NIL\r\n'
            b"b OK URLFETCH completed\r\n" % (urls[0], len(PART), PART, urls[1]),
        )

    def test_urlfetch_answers_nil_for_urls_it_cannot_serve(self) -> None:
        submit = self.generate(self.rump(b"submit+alice%40example.test"))
        forBob = self.generate(self.rump(b"user+bob%40example.test"))
        good = self.generate(self.rump(b"user+alice%40example.test"))
        forged = good[:-6] + (b"000000" if not good.endswith(b"000000") else b"111111")
        elsewhere = good.replace(b"mail.example.test", b"other.example.test")
        noPart = self.generate(self.rump(b"anonymous", section=b"7"))
        rumpOnly = self.rump(b"anonymous")
        noMailbox = good.replace(b"/INBOX/", b"/Nope/")
        for url in (submit, forBob, forged, elsewhere, noPart, noMailbox, rumpOnly, b"garbage"):
            reply = self.send(b'b URLFETCH "%s"\r\n' % url)
            self.assertEqual(
                reply, b'* URLFETCH "%s" NIL\r\nb OK URLFETCH completed\r\n' % url, url
            )
        self.assertIn(PART, self.send(b'c URLFETCH "%s"\r\n' % good))

    def test_a_user_url_serves_only_that_user(self) -> None:
        forBob = self.generate(self.rump(b"user+bob%40example.test"))
        bob = Session(self, self.session.fixture)
        bob.server.account = IMAPAccount(self.session.fixture.realm.storeFor(BOB), BOB)
        bob.server.state = "auth"
        self.assertIn(PART, bob.send(b'b URLFETCH "%s"\r\n' % forBob))
        authuser = self.generate(self.rump(b"authuser"))
        self.assertIn(PART, bob.send(b'c URLFETCH "%s"\r\n' % authuser))

    def test_genurlauth_refuses_what_it_cannot_authorize(self) -> None:
        bobsMailbox = b"imap://bob%%40example.test@mail.example.test/INBOX/;uid=%d" % self.uid
        for line in (
            b'a GENURLAUTH "%s" INTERNAL\r\n' % (bobsMailbox + b";urlauth=anonymous"),
            b'a GENURLAUTH "%s" XSAMPLE\r\n' % self.rump(b"anonymous"),
            b'a GENURLAUTH "%s" INTERNAL\r\n' % self.rump(b"anonymous").replace(b"INBOX", b"Nope"),
            b'a GENURLAUTH "%s" INTERNAL\r\n' % self.rump(b"anonymous").replace(b";urlauth", b";x"),
            b'a GENURLAUTH "%s" INTERNAL\r\n'
            % self.rump(b"anonymous").replace(b"mail.example.test", b"other.example"),
            b'a GENURLAUTH "%s" INTERNAL\r\n'
            % self.rump(b"anonymous", b";expire=2001-01-01T00:00:00Z"),
            b'a GENURLAUTH "%s" INTERNAL\r\n'
            % self.rump(b"anonymous").replace(b";uid=%d/" % self.uid, b";uid=%d/" % (self.uid + 9)),
        ):
            reply = self.send(line)
            self.assertTrue(reply.startswith(b"a NO GENURLAUTH failed"), (line, reply))
        full = self.generate(self.rump(b"anonymous"))
        reply = self.send(b'a GENURLAUTH "%s" INTERNAL\r\n' % full)
        self.assertTrue(reply.startswith(b"a NO "), reply)
        for line in (b"a GENURLAUTH\r\n", b'a GENURLAUTH "%s"\r\n' % self.rump(b"anonymous")):
            self.assertTrue(self.send(line).startswith(b"a BAD "))

    def test_expire_is_honoured(self) -> None:
        later = datetime.now(UTC) + timedelta(hours=1)
        stamp = later.strftime("%Y-%m-%dT%H:%M:%SZ").encode()
        full = self.generate(self.rump(b"anonymous", b";EXPIRE=" + stamp))
        self.assertIn(PART, self.send(b'b URLFETCH "%s"\r\n' % full))
        authority = self.session.server.urlAuthority()
        assert authority is not None
        authority.now = lambda: later + timedelta(seconds=1)
        self.assertIn(b" NIL\r\n", self.send(b'b URLFETCH "%s"\r\n' % full))

    def test_resetkey_invalidates_the_urls_of_a_mailbox_or_all(self) -> None:
        full = self.generate(self.rump(b"anonymous"))
        self.assertEqual(
            self.send(b"r RESETKEY INBOX INTERNAL\r\n"), b"r OK [URLMECH INTERNAL] Key reset\r\n"
        )
        self.assertIn(b" NIL\r\n", self.send(b'b URLFETCH "%s"\r\n' % full))
        again = self.generate(self.rump(b"anonymous"))
        self.assertNotEqual(again, full)
        self.assertIn(PART, self.send(b'b URLFETCH "%s"\r\n' % again))
        self.assertEqual(self.send(b"r RESETKEY\r\n"), b"r OK All keys removed\r\n")
        self.assertIn(b" NIL\r\n", self.send(b'b URLFETCH "%s"\r\n' % again))
        self.assertTrue(self.send(b"r RESETKEY INBOX XSAMPLE\r\n").startswith(b"r NO "))
        self.assertTrue(self.send(b"r RESETKEY Nope\r\n").startswith(b"r NO [NONEXISTENT]"))

    def test_keys_are_kept_durably_per_mailbox_and_uidvalidity(self) -> None:
        self.generate(self.rump(b"anonymous"))
        store = self.session.store
        path = store.root / FILENAME
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        validity = store.getFolder("INBOX").uidValidity()
        key = MailboxKeyFile(store.root).key("INBOX", validity)
        self.assertIsNotNone(key)
        assert key is not None
        self.assertEqual(len(key), 32)
        self.assertIsNone(MailboxKeyFile(store.root).key("INBOX", validity + 1))
        self.assertNotIn(key.hex().encode(), self.send(b"n NOOP\r\n"))

    def test_a_mailbox_made_again_does_not_open_old_urls(self) -> None:
        store = self.session.store
        store.createFolder("Drafts")
        folder = store.getFolder("Drafts")
        pending = folder.beginMessage()
        pending.write(MESSAGE)
        uid = pending.commit()
        rump = OWNER + b"/Drafts/;uid=%d;urlauth=anonymous" % uid
        full = self.generate(rump)
        self.assertIn(MESSAGE, self.send(b'b URLFETCH "%s"\r\n' % full))
        self.send(b"d DELETE Drafts\r\n")
        store.createFolder("Drafts")
        again = store.getFolder("Drafts")
        pending = again.beginMessage()
        pending.write(b"Subject: new\r\n\r\nother\r\n")
        self.assertEqual(pending.commit(), uid)
        self.assertIn(b" NIL\r\n", self.send(b'b URLFETCH "%s"\r\n' % full))

    def test_rfc5524_bodypartstructure_and_binary(self) -> None:
        """RFC 5524 4: the part's structure and its decoded content, as BINARY fetches it."""
        full = self.generate(self.rump(b"anonymous", section=b"3"))
        reply = self.send(b'b URLFETCH ("%s" BODYPARTSTRUCTURE BINARY)\r\n' % full)
        self.assertEqual(
            reply,
            b'* URLFETCH "%s" (BODYPARTSTRUCTURE ("application" "octet-stream" NIL NIL NIL'
            b' "binary" 4 NIL NIL NIL NIL)) (BINARY ~{4}\r\n\x00\x01\x02\x03)\r\n'
            b"b OK URLFETCH completed\r\n" % full,
        )
        reply = self.send(b'b URLFETCH ("%s" BODYPARTSTRUCTURE)\r\n' % full)
        self.assertIn(b' "base64" 8 NIL NIL NIL NIL))\r\n', reply)
        reply = self.send(b'c URLFETCH ("%s" BODY)\r\n' % full)
        self.assertEqual(
            reply,
            b'* URLFETCH "%s" (BODY {8}\r\nAAECAw==)\r\nc OK URLFETCH completed\r\n' % full,
        )
        text = self.generate(self.rump(b"anonymous", section=b"2"))
        reply = self.send(b'd URLFETCH ("%s" BINARY)\r\n' % text)
        self.assertIn(b"(BINARY {%d}\r\n%s)" % (len(PART), PART), reply)

    def test_bodypartstructure_with_binary_describes_the_decoded_text(self) -> None:
        """
        RFC 5524 3: with BINARY the structure is that of the content served,
        so a base64 or quoted-printable text part is 7bit (or 8bit) with
        the decoded size and lines; without BINARY it is the part as stored.
        """
        inbox = self.session.store.getFolder("INBOX")
        pending = inbox.beginMessage()
        pending.write(
            b'Content-Type: multipart/mixed; boundary="q"\r\n\r\n--q\r\n'
            b"Content-Type: text/plain; charset=utf-8\r\n"
            b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
            b"caf=C3=A9 au lait\r\nsoft=\r\nbreak\r\n--q\r\n"
            b"Content-Type: text/x-note\r\nContent-Transfer-Encoding: BASE64\r\n\r\n"
            b"b25lCnR3bw==\r\n--q--\r\n"
        )
        uid = pending.commit()
        for section, stored, converted, content in (
            (
                b"1",
                b'"quoted-printable" 31 2',
                b'"8bit" 24 1',
                "café au lait\r\nsoftbreak".encode(),
            ),
            (b"2", b'"BASE64" 12 0', b'"7bit" 7 1', b"one\ntwo"),
        ):
            rump = OWNER + b"/INBOX/;uid=%d/;section=%s;urlauth=anonymous" % (uid, section)
            full = self.generate(rump)
            reply = self.send(b'b URLFETCH ("%s" BINARY BODYPARTSTRUCTURE)\r\n' % full)
            self.assertIn(
                b" NIL NIL %s NIL NIL NIL NIL)) (BINARY {%d}\r\n%s)\r\n"
                % (converted, len(content), content),
                reply,
            )
            reply = self.send(b'c URLFETCH ("%s" BODYPARTSTRUCTURE)\r\n' % full)
            self.assertIn(b" NIL NIL %s NIL NIL NIL NIL))\r\n" % stored, reply)

    def test_urlfetch_parameters_are_checked(self) -> None:
        full = self.generate(self.rump(b"anonymous"))
        for params in (b"BINARY BODY", b"FOO", b"BINARY BINARY"):
            reply = self.send(b'b URLFETCH ("%s" %s)\r\n' % (full, params))
            self.assertTrue(reply.startswith(b"b BAD "), reply)
        header = self.generate(self.rump(b"anonymous", section=b"HEADER"))
        reply = self.send(b'c URLFETCH ("%s" BINARY)\r\n' % header)
        self.assertEqual(
            reply, b'* URLFETCH "%s" (BINARY NIL)\r\nc OK URLFETCH completed\r\n' % header
        )
        reply = self.send(b'c URLFETCH ("%s" BODYPARTSTRUCTURE)\r\n' % header)
        self.assertEqual(reply, b'* URLFETCH "%s" NIL\r\nc OK URLFETCH completed\r\n' % header)
        self.assertTrue(self.send(b"d URLFETCH\r\n").startswith(b"d BAD "))

    def test_urls_naming_unknown_users_touch_no_files(self) -> None:
        """A URL's user name is the client's: only users of the directory are looked up."""
        mail = self.session.fixture.root / "data" / "mail"
        # A first look at the INBOX (the APPENDs name it) moves new mail into cur/.
        self.send(b"a STATUS INBOX (MESSAGES)\r\n")
        before = sorted(p.relative_to(mail) for p in mail.rglob("*"))
        token = "0" * 64
        for user in (b"nobody%40example.test", b"..%2F..%2Fescape%40example.test", b"x%40other"):
            url = b"imap://%s@mail.example.test/INBOX/;uid=1;urlauth=anonymous:internal:%s" % (
                user,
                token.encode(),
            )
            reply = self.send(b'b URLFETCH "%s"\r\n' % url)
            self.assertEqual(reply, b'* URLFETCH "%s" NIL\r\nb OK URLFETCH completed\r\n' % url)
            reply = self.send(b'c APPEND INBOX CATENATE (URL "%s")\r\n' % url)
            self.assertTrue(reply.startswith(b"c NO [BADURL "), reply)
        self.assertEqual(sorted(p.relative_to(mail) for p in mail.rglob("*")), before)
        self.assertFalse((self.session.fixture.root / "data" / "escape@example.test").exists())
