"""
The LIST family over C{StringTransport}: CHILDREN (RFC 3348), LIST-EXTENDED
(RFC 5258), LIST-STATUS (RFC 5819) and STATUS=SIZE (RFC 8438), from the
RFCs' examples on a real Maildir; the argument parser under random input.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from test_imap_protocol import MESSAGE, Session, deliver
from twisted.mail import imap4
from twisted.trial.unittest import SynchronousTestCase

from tmail.imap.listing import ListRequest, listNames, parseList
from tmail.imap.parse import Tokenizer


def tokens(line: bytes) -> list[Any]:
    tokenizer = Tokenizer()
    assert tokenizer.feed(line) is None
    return tokenizer.result()


class ListExtendedTests(SynchronousTestCase):
    """RFC 5258 section 5's examples, on the folders each one assumes."""

    def session(
        self, folders: list[str], subscribed: tuple[str, ...] = (), prefixes: tuple[str, ...] = ()
    ) -> Session:
        """
        A logged-in session over C{folders}; C{prefixes} are parents that
        exist only as a prefix of other names (the store makes parents, so
        they are deleted again).
        """
        session = Session(self)
        for name in folders:
            session.store.createFolder(name)
        for name in prefixes:
            session.store.deleteFolder(name)
        for name in subscribed:
            session.store.subscribe(name)
        session.loginDirectly()
        return session

    def test_plainListKeepsItsAnswersWithChildAttributes(self) -> None:
        """Example 1: no options; a Maildir++ parent that is only a prefix is \\Noselect."""
        session = self.session(["blurdybloop", "foo/bar", "veggies"], prefixes=("foo",))
        self.assertEqual(
            session.send(b'A01 LIST "" %\r\n'),
            b'* LIST (\\HasNoChildren) "/" "INBOX"\r\n'
            b'* LIST (\\HasNoChildren) "/" "blurdybloop"\r\n'
            b'* LIST (\\Noselect \\HasChildren) "/" "foo"\r\n'
            b'* LIST (\\HasNoChildren) "/" "veggies"\r\n'
            b"A01 OK LIST completed\r\n",
        )

    def test_subscribedSelectionListsMissingSubscriptionsAsNonExistent(self) -> None:
        """Example 2: LIST (SUBSCRIBED) lists subscriptions, gone ones \\NonExistent."""
        session = self.session(
            ["Fruit/Banana", "Vegetable/Broccoli", "Fruit/Apple"],
            ("INBOX", "Fruit/Banana", "Fruit/Peach", "Vegetable", "Vegetable/Broccoli"),
        )
        self.assertEqual(
            session.send(b'A02 LIST (SUBSCRIBED) "" *\r\n'),
            b'* LIST (\\HasNoChildren \\Subscribed) "/" "INBOX"\r\n'
            b'* LIST (\\HasNoChildren \\Subscribed) "/" "Fruit/Banana"\r\n'
            b'* LIST (\\NonExistent \\HasNoChildren \\Subscribed) "/" "Fruit/Peach"\r\n'
            b'* LIST (\\HasChildren \\Subscribed) "/" "Vegetable"\r\n'
            b'* LIST (\\HasNoChildren \\Subscribed) "/" "Vegetable/Broccoli"\r\n'
            b"A02 OK LIST completed\r\n",
        )

    def test_returnChildrenAndSubscribed(self) -> None:
        """Example 3: RETURN (CHILDREN) on every line; RETURN (SUBSCRIBED) marks subscriptions."""
        session = self.session(
            ["Fruit/Apple", "Tofu/Firm", "Vegetable"], ("Vegetable",), prefixes=("Fruit",)
        )
        self.assertEqual(
            session.send(b'A03 LIST () "" % RETURN (CHILDREN SUBSCRIBED)\r\n'),
            b'* LIST (\\HasNoChildren) "/" "INBOX"\r\n'
            b'* LIST (\\NonExistent \\HasChildren) "/" "Fruit"\r\n'
            b'* LIST (\\HasChildren) "/" "Tofu"\r\n'
            b'* LIST (\\HasNoChildren \\Subscribed) "/" "Vegetable"\r\n'
            b"A03 OK LIST completed\r\n",
        )

    def test_recursiveMatchReportsSubscribedDescendants(self) -> None:
        """Example 5: RECURSIVEMATCH adds CHILDINFO, and parents only their children select."""
        session = self.session(
            ["Foo/Bar", "Foo/Baz", "Moo", "Vegetable/Broccoli"],
            ("Foo/Baz", "Moo", "Vegetable", "Vegetable/Broccoli"),
            prefixes=("Foo",),
        )
        self.assertEqual(
            session.send(b'A04 LIST (SUBSCRIBED RECURSIVEMATCH) "" %\r\n'),
            b'* LIST (\\NonExistent \\HasChildren) "/" "Foo" ("CHILDINFO" ("SUBSCRIBED"))\r\n'
            b'* LIST (\\HasNoChildren \\Subscribed) "/" "Moo"\r\n'
            b'* LIST (\\HasChildren \\Subscribed) "/" "Vegetable" ("CHILDINFO" ("SUBSCRIBED"))\r\n'
            b"A04 OK LIST completed\r\n",
        )
        self.assertEqual(
            session.send(b'A05 LIST (SUBSCRIBED) "" %\r\n'),
            b'* LIST (\\HasNoChildren \\Subscribed) "/" "Moo"\r\n'
            b'* LIST (\\HasChildren \\Subscribed) "/" "Vegetable"\r\n'
            b"A05 OK LIST completed\r\n",
        )
        self.assertEqual(
            session.send(b'A06 LIST (SUBSCRIBED RECURSIVEMATCH) "" Foo*\r\n'),
            b'* LIST (\\HasNoChildren \\Subscribed) "/" "Foo/Baz"\r\nA06 OK LIST completed\r\n',
            "descendants the pattern matches are listed themselves, without CHILDINFO",
        )

    def test_severalPatternsListEachNameOnce(self) -> None:
        """Example 7: a parenthesised list of patterns, with a reference."""
        session = self.session(["Drafts", "Sent/March2004", "Sent/August2004", "Junk"])
        self.assertEqual(
            session.send(b'A06 LIST "" ("INBOX" "Drafts" "Sent/%" "Sent/*")\r\n'),
            b'* LIST (\\HasNoChildren) "/" "INBOX"\r\n'
            b'* LIST (\\HasNoChildren \\Drafts) "/" "Drafts"\r\n'
            b'* LIST (\\HasNoChildren) "/" "Sent/August2004"\r\n'
            b'* LIST (\\HasNoChildren) "/" "Sent/March2004"\r\n'
            b"A06 OK LIST completed\r\n",
        )
        self.assertEqual(
            session.send(b'A07 LIST "Sent/" (Aug* {3}\r\n'),
            b"+ Ready for literal data\r\n",
        )
        self.assertEqual(
            session.send(b"Mar)\r\n"),
            b'* LIST (\\HasNoChildren) "/" "Sent/August2004"\r\nA07 OK LIST completed\r\n',
        )

    def test_emptyPatternStillGivesTheDelimiter(self) -> None:
        session = self.session([])
        self.assertEqual(
            session.send(b'A08 LIST () "" "" RETURN ()\r\n'),
            b'* LIST (\\Noselect) "/" ""\r\nA08 OK LIST completed\r\n',
        )

    def test_lsubKeepsWorking(self) -> None:
        session = self.session(["a/b"], ("a/b",), prefixes=("a",))
        self.assertEqual(
            session.send(b'A09 LSUB "" %\r\n'),
            b'* LSUB (\\Noselect) "/" "a"\r\nA09 OK LSUB completed\r\n',
        )

    def test_badOptionsAreBad(self) -> None:
        """Unknown options, a lone RECURSIVEMATCH and malformed lists get BAD, nothing listed."""
        session = self.session(["x"])
        for line in (
            b'b LIST (RECURSIVEMATCH) "" *',
            b'b LIST (REMOTE RECURSIVEMATCH) "" *',
            b'b LIST (FOO) "" *',
            b'b LIST "" * RETURN (FOO)',
            b'b LIST "" * RETURN (STATUS)',
            b'b LIST "" * RETURN (STATUS (MESSAGES BOGUS))',
            b'b LIST "" * RETURN (STATUS ())',
            b'b LIST "" * RETURN',
            b'b LIST "" * RETURN CHILDREN',
            b'b LIST "" * EXTRA (CHILDREN)',
            b'b LIST "" ()',
            b'b LIST ""',
            b"b LIST",
            b'b LIST (("x")) "" *',
            b'b LIST "" (("x"))',
        ):
            reply = session.send(line + b"\r\n")
            self.assertTrue(reply.startswith(b"b BAD "), (line, reply))

    def test_remoteIsAcceptedAndListsLocalFolders(self) -> None:
        session = self.session(["x"])
        self.assertEqual(
            session.send(b'r LIST (REMOTE) "" x\r\n'),
            b'* LIST (\\HasNoChildren) "/" "x"\r\nr OK LIST completed\r\n',
        )


class ListStatusTests(SynchronousTestCase):
    """RFC 5819 and RFC 8438."""

    def test_listStatusFollowsEachSelectableName(self) -> None:
        """RFC 5819 section 5's example: no STATUS for a \\NonExistent name."""
        session = Session(self)
        store = session.store
        for _ in range(2):
            deliver(store.getFolder("INBOX"))
        foo = store.createFolder("foo")
        deliver(foo)
        store.createFolder("bar/baz")
        store.deleteFolder("bar")
        session.loginDirectly()
        size = len(MESSAGE)
        self.assertEqual(
            session.send(b'A01 LIST "" % RETURN (STATUS (MESSAGES UNSEEN SIZE))\r\n'),
            b'* LIST (\\HasNoChildren) "/" "INBOX"\r\n'
            b'* STATUS "INBOX" (MESSAGES 2 UNSEEN 2 SIZE %d)\r\n'
            b'* LIST (\\NonExistent \\HasChildren) "/" "bar"\r\n'
            b'* LIST (\\HasNoChildren) "/" "foo"\r\n'
            b'* STATUS "foo" (MESSAGES 1 UNSEEN 1 SIZE %d)\r\n'
            b"A01 OK LIST completed\r\n" % (2 * size, size),
        )

    def test_listStatusWithSubscribedSelection(self) -> None:
        session = Session(self)
        session.store.createFolder("foo")
        session.store.subscribe("foo")
        session.store.subscribe("gone")
        session.loginDirectly()
        reply = session.send(b'A02 LIST (SUBSCRIBED) "" * RETURN (STATUS (MESSAGES))\r\n')
        self.assertEqual(
            reply,
            b'* LIST (\\HasNoChildren \\Subscribed) "/" "foo"\r\n'
            b'* STATUS "foo" (MESSAGES 0)\r\n'
            b'* LIST (\\NonExistent \\HasNoChildren \\Subscribed) "/" "gone"\r\n'
            b"A02 OK LIST completed\r\n",
        )

    def test_listStatusTakesEveryStatusItem(self) -> None:
        """The QUOTA and APPENDLIMIT STATUS items work in LIST-STATUS as in STATUS."""
        session = Session(self, max_literal_size=4096)
        deliver(session.store.getFolder("INBOX"))
        session.loginDirectly()
        self.assertEqual(
            session.send(
                b'a LIST "" INBOX RETURN (STATUS (DELETED DELETED-STORAGE APPENDLIMIT))\r\n'
            ),
            b'* LIST (\\HasNoChildren) "/" "INBOX"\r\n'
            b'* STATUS "INBOX" (DELETED 0 DELETED-STORAGE 0 APPENDLIMIT 4096)\r\n'
            b"a OK LIST completed\r\n",
        )

    def test_statusSizeIsTheSumOfMessageSizes(self) -> None:
        """RFC 8438 section 3: STATUS SIZE, in octets, with the other items."""
        session = Session(self)
        inbox = session.store.getFolder("INBOX")
        deliver(inbox)
        deliver(inbox, b"Subject: longer\r\n\r\n" + b"x" * 1000 + b"\r\n")
        session.loginDirectly()
        total = sum(info.size for info in inbox.messages())
        self.assertEqual(
            session.send(b"a STATUS INBOX (size MESSAGES)\r\n"),
            b'* STATUS "INBOX" (SIZE %d MESSAGES 2)\r\na OK STATUS completed\r\n' % total,
        )
        self.assertEqual(
            session.send(b"b STATUS INBOX (SIZE BIGSIZE)\r\n"),
            b"b BAD Invalid STATUS items\r\n",
        )

    def test_capabilitiesAdvertiseTheListFamily(self) -> None:
        session = Session(self)
        caps = session.send(b"c CAPABILITY\r\n").split(b"\r\n")[0].split()
        for cap in (
            b"CHILDREN",
            b"LIST-EXTENDED",
            b"LIST-STATUS",
            b"SPECIAL-USE",
            b"CREATE-SPECIAL-USE",
            b"STATUS=SIZE",
        ):
            self.assertIn(cap, caps)


_atoms = st.sampled_from(
    [
        b"SUBSCRIBED",
        b"REMOTE",
        b"RECURSIVEMATCH",
        b"SPECIAL-USE",
        b"CHILDREN",
        b"STATUS",
        b"RETURN",
        b"MESSAGES",
        b"SIZE",
        b"*",
        b"%",
        b"a",
        b"INBOX",
        b"",
        b"X",
    ]
)
_tokenTrees = st.recursive(_atoms, lambda inner: st.lists(inner, max_size=4), max_leaves=12)


class ParseListTests(SynchronousTestCase):
    @settings(max_examples=300, deadline=None)
    @given(st.lists(_tokenTrees, max_size=6))
    def test_anyTokensParseOrAreBad(self, parsed: list[Any]) -> None:
        """Whatever the tokens, the parser gives a request or C{BAD}, never another error."""
        try:
            request = parseList(parsed)
        except imap4.IllegalClientResponse:
            return
        except ValueError:
            return
        self.assertIsInstance(request, ListRequest)
        listNames(request, ["INBOX", "a/b"], ["a/b", "c"], {"a/b": frozenset({"\\Sent"})}, "/")

    def test_selectionImpliesReturnOptions(self) -> None:
        request = parseList(tokens(b'(subscribed special-use recursivematch) "" *'))
        self.assertTrue(request.returnSubscribed and request.returnSpecialUse)
        self.assertTrue(request.recursiveMatch and request.extended)
        self.assertFalse(parseList(tokens(b'"" *')).extended)

    def test_specialUseSelectionWithRecursiveMatch(self) -> None:
        request = parseList(tokens(b'(SPECIAL-USE RECURSIVEMATCH) "" %'))
        found = listNames(
            request,
            ["INBOX", "a/b", "c"],
            [],
            {"a/b": frozenset({"\\Sent"}), "c": frozenset()},
            "/",
        )
        self.assertEqual(
            [(item.name, item.attributes, item.childInfo) for item in found],
            [("a", ["\\NonExistent", "\\HasChildren"], ["SPECIAL-USE"])],
        )
