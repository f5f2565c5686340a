"""
METADATA and METADATA-SERVER (RFC 5464) over C{StringTransport}: the RFC's
examples, per folder and for the server, the size limits, RENAME and
DELETE, and entries that outlive a restart.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from test_imap_protocol import Session
from twisted.trial.unittest import SynchronousTestCase

from tmail.realm.virtual import VirtualDomainRealm
from tmail.store.filework import INLINE


class MetadataTests(SynchronousTestCase):
    def session(self, **options: Any) -> Session:
        session = Session(self, **options)
        session.loginDirectly()
        return session

    def setUp(self) -> None:
        self.s = self.session()

    def test_metadata_and_metadata_server_are_advertised(self) -> None:
        caps = self.s.send(b"c CAPABILITY\r\n")
        self.assertIn(b" METADATA ", caps)
        self.assertIn(b" METADATA-SERVER", caps)

    def test_rfc5464_server_and_mailbox_entries(self) -> None:
        """Section 4.2.1's examples, after the SETMETADATAs of 4.3 that make them."""
        self.assertEqual(
            self.s.send(b'a SETMETADATA "" (/shared/comment "Shared comment")\r\n'),
            b"a OK SETMETADATA completed\r\n",
        )
        self.assertEqual(
            self.s.send(b'a GETMETADATA "" /shared/comment\r\n'),
            b'* METADATA "" (/shared/comment "Shared comment")\r\na OK GETMETADATA completed\r\n',
        )
        self.assertEqual(
            self.s.send(b'b SETMETADATA INBOX (/private/comment "My own comment")\r\n'),
            b"b OK SETMETADATA completed\r\n",
        )
        self.s.send(b'b SETMETADATA INBOX (/shared/comment "Shared comment")\r\n')
        self.assertEqual(
            self.s.send(b'c GETMETADATA "INBOX" /private/comment\r\n'),
            b'* METADATA "INBOX" (/private/comment "My own comment")\r\n'
            b"c OK GETMETADATA completed\r\n",
        )
        self.assertEqual(
            self.s.send(b'd GETMETADATA "INBOX" (/shared/comment /private/comment)\r\n'),
            b'* METADATA "INBOX" (/shared/comment "Shared comment"'
            b' /private/comment "My own comment")\r\nd OK GETMETADATA completed\r\n',
        )
        self.assertEqual(
            self.s.send(b'e GETMETADATA "" /private/comment\r\n'),
            b'* METADATA "" (/private/comment NIL)\r\ne OK GETMETADATA completed\r\n',
        )

    def test_rfc5464_setmetadata_literal_and_removal(self) -> None:
        """Section 4.3's examples: a value in a literal; NIL removes the entry."""
        self.assertEqual(
            self.s.send(b"a SETMETADATA INBOX (/private/comment {33}\r\n"),
            b"+ Ready for literal data\r\n",
        )
        self.assertEqual(
            self.s.send(b"My new comment across\r\ntwo lines.)\r\n"),
            b"a OK SETMETADATA completed\r\n",
        )
        self.assertEqual(
            self.s.send(b"b GETMETADATA INBOX /private/comment\r\n"),
            b'* METADATA "INBOX" (/private/comment {33}\r\nMy new comment across\r\ntwo lines.)'
            b"\r\nb OK GETMETADATA completed\r\n",
        )
        self.assertEqual(
            self.s.send(b"c SETMETADATA INBOX (/private/comment NIL)\r\n"),
            b"c OK SETMETADATA completed\r\n",
        )
        self.assertEqual(
            self.s.send(b"d GETMETADATA INBOX /private/comment\r\n"),
            b'* METADATA "INBOX" (/private/comment NIL)\r\nd OK GETMETADATA completed\r\n',
        )

    def test_a_value_with_nul_comes_back_as_a_literal8(self) -> None:
        self.assertEqual(
            self.s.send(b"a SETMETADATA INBOX (/private/vendor/x/blob ~{3+}\r\na\x00b)\r\n"),
            b"a OK SETMETADATA completed\r\n",
        )
        self.assertEqual(
            self.s.send(b"b GETMETADATA INBOX /private/vendor/x/blob\r\n"),
            b'* METADATA "INBOX" (/private/vendor/x/blob ~{3}\r\na\x00b)\r\n'
            b"b OK GETMETADATA completed\r\n",
        )

    def test_rfc5464_maxsize_leaves_out_long_values_with_longentries(self) -> None:
        long = b"x" * 2199
        self.s.send(b"a SETMETADATA INBOX (/shared/comment {%d+}\r\n%s)\r\n" % (len(long), long))
        self.s.send(b'b SETMETADATA INBOX (/private/comment "My own comment")\r\n')
        self.assertEqual(
            self.s.send(
                b'c GETMETADATA "INBOX" (MAXSIZE 1024) (/shared/comment /private/comment)\r\n'
            ),
            b'* METADATA "INBOX" (/private/comment "My own comment")\r\n'
            b"c OK [METADATA LONGENTRIES 2199] GETMETADATA completed\r\n",
        )

    def test_rfc5464_depth(self) -> None:
        self.s.send(
            b"a SETMETADATA INBOX (/private/filters/values/small"
            b' "SMALLER 5000" /private/filters/values/boring "NOT SEEN"'
            b' /private/filters/values/boring/deeper "x" /private/filters "top")\r\n'
        )
        self.assertEqual(
            self.s.send(b'b GETMETADATA "INBOX" (DEPTH 1) (/private/filters/values)\r\n'),
            b'* METADATA "INBOX" (/private/filters/values/boring "NOT SEEN"'
            b' /private/filters/values/small "SMALLER 5000")\r\n'
            b"b OK GETMETADATA completed\r\n",
        )
        reply = self.s.send(b"c GETMETADATA INBOX (DEPTH infinity) /private/filters\r\n")
        self.assertIn(b"/private/filters/values/boring/deeper", reply)
        self.assertIn(b'/private/filters "top"', reply)
        self.assertEqual(
            self.s.send(b"d GETMETADATA INBOX (DEPTH 0) /private/filters\r\n"),
            b'* METADATA "INBOX" (/private/filters "top")\r\nd OK GETMETADATA completed\r\n',
        )

    def test_entry_names_compare_without_case(self) -> None:
        self.s.send(b'a SETMETADATA INBOX (/private/Comment "one")\r\n')
        self.s.send(b'b SETMETADATA INBOX (/PRIVATE/COMMENT "two")\r\n')
        self.assertEqual(
            self.s.send(b"c GETMETADATA INBOX /private/comment\r\n"),
            b'* METADATA "INBOX" (/private/Comment "two")\r\nc OK GETMETADATA completed\r\n',
        )

    def test_rfc5464_maxsize_and_toomany_refuse_and_change_nothing(self) -> None:
        s = self.session(max_metadata_size=10, max_metadata_entries=2, max_metadata_total=60)
        self.assertEqual(
            s.send(b'a SETMETADATA INBOX (/private/comment "this is eleven")\r\n'),
            b"a NO [METADATA MAXSIZE 10] Metadata value too long\r\n",
        )
        self.assertEqual(
            s.send(b"b SETMETADATA INBOX (/private/comment {100}\r\n"),
            b"b NO [METADATA MAXSIZE 10] Metadata value too long\r\n",
        )
        self.assertEqual(
            s.send(
                b"b SETMETADATA INBOX (/private/comment ~{20+}\r\n%s)\r\nn NOOP\r\n" % (b"x" * 20)
            ),
            b"b NO [METADATA MAXSIZE 10] Metadata value too long\r\nn OK NOOP completed\r\n",
        )
        self.assertEqual(
            s.send(b'c SETMETADATA INBOX (/private/a "1" /private/b "2")\r\n'),
            b"c OK SETMETADATA completed\r\n",
        )
        self.assertEqual(
            s.send(b'd SETMETADATA INBOX (/private/c "3" /private/a NIL)\r\n'),
            b"d OK SETMETADATA completed\r\n",
        )
        self.assertEqual(
            s.send(b'e SETMETADATA INBOX (/private/d "4")\r\n'),
            b"e NO [METADATA TOOMANY] Too many metadata entries\r\n",
        )
        s.send(b"f SETMETADATA INBOX (/private/b NIL)\r\n")
        self.assertEqual(
            s.send(
                b'g SETMETADATA INBOX (%s "1234567890")\r\n' % (b"/private/long-entry-name" * 2)
            ),
            b"g NO [METADATA TOOMANY] Too many metadata entries\r\n",
        )
        self.assertEqual(
            s.send(b"h GETMETADATA INBOX (/private/a /private/b /private/c)\r\n"),
            b'* METADATA "INBOX" (/private/a NIL /private/b NIL /private/c "3")\r\n'
            b"h OK GETMETADATA completed\r\n",
        )

    def test_rename_carries_metadata_and_delete_removes_it(self) -> None:
        self.s.send(b"a CREATE Projects/Old\r\n")
        self.s.send(b'b SETMETADATA Projects/Old (/shared/comment "kept")\r\n')
        self.assertEqual(self.s.send(b"c RENAME Projects New\r\n"), b"c OK RENAME completed\r\n")
        self.assertEqual(
            self.s.send(b"d GETMETADATA New/Old /shared/comment\r\n"),
            b'* METADATA "New/Old" (/shared/comment "kept")\r\nd OK GETMETADATA completed\r\n',
        )
        self.assertEqual(
            self.s.send(b"e GETMETADATA Projects/Old /shared/comment\r\n"),
            b"e NO [NONEXISTENT] No such mailbox\r\n",
        )
        self.assertEqual(self.s.send(b"f DELETE New/Old\r\n"), b"f OK DELETE completed\r\n")
        self.s.send(b"g CREATE New/Old\r\n")
        self.assertEqual(
            self.s.send(b"h GETMETADATA New/Old /shared/comment\r\n"),
            b'* METADATA "New/Old" (/shared/comment NIL)\r\nh OK GETMETADATA completed\r\n',
        )

    def test_metadata_outlives_a_restart(self) -> None:
        self.s.send(b'a SETMETADATA "" (/shared/admin "mailto:postmaster@example.test")\r\n')
        self.s.send(b'b SETMETADATA INBOX (/private/comment "durable")\r\n')
        fixture = self.s.fixture
        realm = VirtualDomainRealm(
            fixture.directory, fixture.root / "data" / "mail", fileWork=INLINE
        )
        later = Session(self, dataclasses.replace(fixture, realm=realm))
        later.loginDirectly()
        self.assertEqual(
            later.send(b'c GETMETADATA "" /shared/admin\r\n'),
            b'* METADATA "" (/shared/admin "mailto:postmaster@example.test")\r\n'
            b"c OK GETMETADATA completed\r\n",
        )
        self.assertEqual(
            later.send(b"d GETMETADATA INBOX /private/comment\r\n"),
            b'* METADATA "INBOX" (/private/comment "durable")\r\nd OK GETMETADATA completed\r\n',
        )

    def test_malformed_metadata_commands_are_bad(self) -> None:
        for line in (
            b"a GETMETADATA INBOX /comment",
            b"a GETMETADATA INBOX /private/*",
            b"a GETMETADATA INBOX /private/a//b",
            b"a GETMETADATA INBOX /private/a/",
            b"a GETMETADATA INBOX ()",
            b"a GETMETADATA INBOX",
            b"a GETMETADATA (DEPTH 2) INBOX /private/a",
            b"a GETMETADATA (MAXSIZE x) INBOX /private/a",
            b"a GETMETADATA (MAXSIZE 1 MAXSIZE 2) INBOX /private/a",
            b"a SETMETADATA INBOX /private/a",
            b"a SETMETADATA INBOX (/private/a)",
            b"a SETMETADATA INBOX (/private/a FOO)",
            b'a SETMETADATA INBOX (/vendor/a "x")',
            b'a SETMETADATA INBOX (/private "x")',
            b'a SETMETADATA INBOX ((/private/a) "x")',
        ):
            reply = self.s.send(line + b"\r\n")
            self.assertTrue(reply.startswith(b"a BAD "), (line, reply))
        self.assertEqual(
            self.s.send(b'b SETMETADATA Nowhere (/private/a "x")\r\n'),
            b"b NO [NONEXISTENT] No such mailbox\r\n",
        )


class MetadataParserTests(SynchronousTestCase):
    @settings(max_examples=100, deadline=2000)
    @given(
        st.sampled_from([b"GETMETADATA", b"SETMETADATA"]),
        st.binary().filter(lambda b: not {0x7B, 0x0D, 0x0A} & set(b)),
    )
    def test_any_arguments_get_an_imap_answer(self, command: bytes, arguments: bytes) -> None:
        """No argument line, however malformed, gets anything but OK, NO or BAD."""
        session = Session(self)
        session.loginDirectly()
        reply = session.send(b"a " + command + b" " + arguments + b"\r\n")
        tagged = reply.split(b"\r\n")[-2]
        self.assertRegex(tagged, rb"^a (OK|NO|BAD) ")
        self.assertNotIn(b"SERVERBUG", reply)
        self.assertEqual(session.send(b"n NOOP\r\n"), b"n OK NOOP completed\r\n")
