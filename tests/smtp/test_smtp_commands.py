"""Tests for L{tmail.smtp.commands} and L{tmail.smtp.sasl}: envelope parsing and SASL."""

from __future__ import annotations

import base64

from twisted.cred.credentials import UsernamePassword
from twisted.trial.unittest import SynchronousTestCase

from tmail.delivery.envelope import MailFrom, RcptTo
from tmail.smtp.commands import CommandError, parseMailFrom, parseRcptTo
from tmail.smtp.sasl import Login, MalformedResponseError, Plain, decodeResponse


class MailFromTests(SynchronousTestCase):
    def refused(self, rest: bytes) -> tuple[int, str]:
        with self.assertRaises(CommandError) as caught:
            parseMailFrom(rest)
        return caught.exception.reply.code, caught.exception.reply.status

    def test_addressAndParameters(self) -> None:
        """The path, SIZE and BODY are parsed; AUTH is accepted and ignored."""
        self.assertEqual(
            parseMailFrom(b"FROM:<a@example.org> SIZE=1000 BODY=8BITMIME AUTH=<>"),
            MailFrom("a@example.org", 1000, "8BITMIME"),
        )
        self.assertEqual(parseMailFrom(b"FROM:<a@example.org> BODY=binarymime").body, "BINARYMIME")
        self.assertEqual(parseMailFrom(b"from:<a@example.org>"), MailFrom("a@example.org", None))

    def test_nullSender(self) -> None:
        """C{<>} is the empty reverse path."""
        self.assertEqual(parseMailFrom(b"FROM:<>"), MailFrom("", None))

    def test_sourceRouteIsDropped(self) -> None:
        """C{<@a,@b:user@x>} is C{user@x} (RFC 5321 appendix C)."""
        self.assertEqual(
            parseMailFrom(b"FROM:<@a.example,@b.example:u@x.example>").sender, "u@x.example"
        )

    def test_badSyntax(self) -> None:
        """Syntax errors are C{501 5.5.4}."""
        for rest in (
            b"",
            b"TO:<a@b>",
            b"FROM:",
            b"FROM:<a@b> SIZE=",
            b"FROM:<a@b> SIZE=x1",
            b"FROM:<a@b> BODY=16BIT",
            b"FROM:<a@b> =x",
            b"FROM:<a@b> SMTPUTF8=yes",
            b"FROM:<a@b> RET=ALL",
            b"FROM:<a@b> ENVID=a+b",
            b"FROM:<a@b> ENVID=" + b"x" * 101,
        ):
            self.assertEqual(self.refused(rest), (501, "5.5.4"), rest)

    def test_unknownParameter(self) -> None:
        """Parameters tmail does not implement are C{555 5.5.4}."""
        self.assertEqual(self.refused(b"FROM:<a@b> XYZ"), (555, "5.5.4"))
        self.assertEqual(self.refused(b"FROM:<a@b> MT-PRIORITY=3"), (555, "5.5.4"))

    def test_nonAscii(self) -> None:
        """Without SMTPUTF8, addresses are ASCII (RFC 6531 3.4: 553 5.6.7)."""
        self.assertEqual(self.refused("FROM:<jörg@example.org>".encode()), (553, "5.6.7"))

    def test_smtputf8_allows_utf8_addresses(self) -> None:
        mail = parseMailFrom("FROM:<jörg@exämple.org> SMTPUTF8".encode())
        self.assertEqual((mail.sender, mail.utf8), ("jörg@exämple.org", True))

    def test_dsn_parameters_are_kept(self) -> None:
        """RFC 3461: RET and ENVID (xtext, kept encoded)."""
        mail = parseMailFrom(b"FROM:<a@b.example> RET=hdrs ENVID=QQ314159+2B1")
        self.assertEqual((mail.ret, mail.envid), ("HDRS", "QQ314159+2B1"))

    def test_addressWithoutDomain(self) -> None:
        """A sender needs a domain."""
        self.assertEqual(self.refused(b"FROM:<alice>"), (501, "5.1.7"))


class RcptToTests(SynchronousTestCase):
    def test_address(self) -> None:
        """The path, without brackets or source route."""
        self.assertEqual(parseRcptTo(b"TO:<alice@example.test>"), RcptTo("alice@example.test"))
        self.assertEqual(
            parseRcptTo(b"TO:<@relay.example:alice@example.test>").address, "alice@example.test"
        )
        self.assertEqual(
            parseRcptTo(b"TO:<user%other@example.test>").address, "user%other@example.test"
        )

    def test_postmaster_needs_no_domain(self) -> None:
        """RFC 5321 4.1.1.3: <Postmaster> alone is a recipient."""
        self.assertEqual(parseRcptTo(b"TO:<Postmaster>").address, "postmaster")

    def test_dsn_parameters_are_kept(self) -> None:
        rcpt = parseRcptTo(b"TO:<a@b.example> NOTIFY=success,delay ORCPT=rfc822;a+40b.example")
        self.assertEqual(rcpt.notify, ("SUCCESS", "DELAY"))
        self.assertEqual(rcpt.orcpt, "rfc822;a+40b.example")
        self.assertEqual(parseRcptTo(b"TO:<a@b.example> NOTIFY=NEVER").notify, ("NEVER",))

    def test_utf8_recipient_only_in_an_smtputf8_transaction(self) -> None:
        rest = "TO:<jörg@exämple.org>".encode()
        self.assertEqual(parseRcptTo(rest, utf8=True).address, "jörg@exämple.org")
        with self.assertRaises(CommandError) as caught:
            parseRcptTo(rest)
        self.assertEqual(caught.exception.reply.status, "5.6.7")

    def test_refused(self) -> None:
        """Empty paths, missing domains, bad syntax and bad parameters."""
        for rest, expected in (
            (b"TO:<>", (501, "5.1.3")),
            (b"TO:<alice>", (501, "5.1.3")),
            (b"TO:<a@b", (501, "5.5.4")),
            (b"TO:<a@b> NOTIFY=NEVER,SUCCESS", (501, "5.5.4")),
            (b"TO:<a@b> NOTIFY=SOMETIMES", (501, "5.5.4")),
            (b"TO:<a@b> ORCPT=a@b", (501, "5.5.4")),
            (b"TO:<a@b> FOO=1", (555, "5.5.4")),
            (b"TO:<a@@b>", (501, "5.1.3")),
        ):
            with self.assertRaises(CommandError) as caught:
                parseRcptTo(rest)
            reply = caught.exception.reply
            self.assertEqual((reply.code, reply.status), expected, rest)


class SASLTests(SynchronousTestCase):
    def test_plain(self) -> None:
        """PLAIN gives credentials; an authzid must equal the authcid."""
        creds = Plain().respond(b"\0alice@example.test\0pw")
        assert isinstance(creds, UsernamePassword)
        self.assertEqual((creds.username, creds.password), (b"alice@example.test", b"pw"))
        self.assertIsInstance(Plain().respond(b"a\0a\0pw"), UsernamePassword)
        for bad in (b"a\0b\0pw", b"\0\0pw", b"only", b"a\0b", b"a\0b\0c\0d"):
            self.assertRaises(MalformedResponseError, Plain().respond, bad)

    def test_login(self) -> None:
        """LOGIN asks for the password after the user name."""
        login = Login()
        self.assertEqual(login.firstChallenge, b"Username:")
        self.assertEqual(login.respond(b"alice@example.test"), b"Password:")
        creds = login.respond(b"pw")
        assert isinstance(creds, UsernamePassword)
        self.assertEqual((creds.username, creds.password), (b"alice@example.test", b"pw"))
        self.assertRaises(MalformedResponseError, Login().respond, b"")

    def test_decodeResponse(self) -> None:
        """Strict base64; C{=} is an empty initial response only."""
        self.assertEqual(decodeResponse(base64.b64encode(b"x\0y")), b"x\0y")
        self.assertEqual(decodeResponse(b"=", initial=True), b"")
        self.assertRaises(MalformedResponseError, decodeResponse, b"=")
        self.assertRaises(MalformedResponseError, decodeResponse, b"not base64!")
