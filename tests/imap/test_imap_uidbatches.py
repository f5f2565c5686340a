"""
UIDBATCHES (RFC 10022): UID ranges splitting the selected mailbox into
batches, newest first, each range reaching down to its oldest message and
the oldest to UID 1; a batch range; TOOFEW, TOOMANY and BAD; and answers
whose work depends on the batches asked for, not on the mailbox's size.
"""

from __future__ import annotations

import re
import time

from hypothesis import given, settings
from hypothesis import strategies as st
from test_imap_protocol import Session, deliver
from twisted.trial.unittest import SynchronousTestCase

from tmail.imap.session import CommandError
from tmail.imap.uidbatches import BatchRequest, answerUIDBatches, batchRanges


def ranges(reply: bytes, tag: bytes) -> list[tuple[int, int]]:
    match = re.match(
        rb'\* UIDBATCHES \(TAG "%s"\)((?: [0-9:,]+)?)\r\n%s OK UIDBATCHES completed\r\n\Z'
        % (tag, tag),
        reply,
    )
    assert match is not None, reply
    found = []
    for pair in match.group(1).strip().split(b","):
        if pair:
            high, low = pair.split(b":")
            found.append((int(high), int(low)))
    return found


class UIDBatchesTranscriptTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.session = Session(self)
        self.inbox = self.session.store.getFolder("INBOX")
        self.session.loginDirectly()
        self.send = self.session.send

    def select(self) -> None:
        self.assertIn(b"s OK [READ-WRITE]", self.send(b"s SELECT INBOX\r\n"))

    def test_capability_lists_uidbatches(self) -> None:
        self.assertIn(b" UIDBATCHES", self.send(b"c CAPABILITY\r\n"))

    def test_an_empty_mailbox_has_no_batches(self) -> None:
        self.select()
        self.assertEqual(
            self.send(b"a UIDBATCHES 1000\r\n"),
            b'* UIDBATCHES (TAG "a")\r\na OK UIDBATCHES completed\r\n',
        )

    def test_a_small_mailbox_is_one_batch_down_to_uid_1(self) -> None:
        uids = [deliver(self.inbox) for _ in range(6)]
        self.inbox.expunge([uids[0], uids[3]])
        self.select()
        self.assertEqual(
            self.send(b"a1 UIDBATCHES 1000\r\n"),
            b'* UIDBATCHES (TAG "a1") 6:1\r\na1 OK UIDBATCHES completed\r\n',
        )
        self.assertEqual(ranges(self.send(b"a2 UIDBATCHES 1000 1:2\r\n"), b"a2"), [(6, 1)])
        self.assertEqual(ranges(self.send(b"a3 UIDBATCHES 1000 2:3\r\n"), b"a3"), [])

    def test_batches_of_a_larger_mailbox_tile_its_uids(self) -> None:
        uids = [deliver(self.inbox) for _ in range(1203)]
        gone = uids[100:110] + uids[700:703]
        self.inbox.expunge(gone)
        kept = [uid for uid in uids if uid not in set(gone)]
        self.select()
        found = ranges(self.send(b"a UIDBATCHES 500\r\n"), b"a")
        self.assertEqual(
            found, [(kept[-1], kept[-500]), (kept[-500] - 1, kept[-1000]), (kept[-1000] - 1, 1)]
        )
        self.assertEqual(ranges(self.send(b"b UIDBATCHES 500 2:2\r\n"), b"b"), found[1:2])
        self.assertEqual(ranges(self.send(b"c UIDBATCHES 500 2:9\r\n"), b"c"), found[1:])
        self.assertEqual(
            ranges(self.send(b"d UIDBATCHES 600\r\n"), b"d")[0], (kept[-1], kept[-600])
        )
        high, low = found[1]
        reply = self.send(b"e UID SEARCH UID %d:%d\r\n" % (low, high))
        self.assertEqual(len(reply.split(b"\r\n")[0].split()) - 2, 500)

    def test_a_batch_range_past_the_last_batch_names_none(self) -> None:
        for _ in range(3):
            deliver(self.inbox)
        self.select()
        self.assertEqual(ranges(self.send(b"a UIDBATCHES 700 2:5\r\n"), b"a"), [])
        self.assertEqual(ranges(self.send(b"b UIDBATCHES 1 100:100\r\n"), b"b"), [])

    def test_batches_under_500_messages_are_toofew(self) -> None:
        deliver(self.inbox)
        self.select()
        self.assertEqual(
            self.send(b"a UIDBATCHES 499\r\n"),
            b"a NO [TOOFEW] Batches hold at least 500 messages\r\n",
        )
        self.assertEqual(ranges(self.send(b"b UIDBATCHES 500\r\n"), b"b"), [(1, 1)])

    def test_asking_for_more_than_the_limit_is_toomany(self) -> None:
        self.select()
        self.assertEqual(
            self.send(b"a UIDBATCHES 500 1:201\r\n"),
            b"a NO [TOOMANY] At most 100000 messages in one UIDBATCHES\r\n",
        )
        self.assertEqual(ranges(self.send(b"b UIDBATCHES 500 1:200\r\n"), b"b"), [])
        session = Session(self, self.session.fixture, uidbatches_max_messages=200_000)
        session.loginDirectly()
        session.send(b"s SELECT INBOX\r\n")
        self.assertEqual(ranges(session.send(b"c UIDBATCHES 1000 1:200\r\n"), b"c"), [])

    def test_a_whole_mailbox_over_the_limit_is_toomany(self) -> None:
        uids = list(range(1, 100_002))
        with self.assertRaises(CommandError) as raised:
            answerUIDBatches(b"a", BatchRequest(100_000), len(uids), uids.__getitem__, 100_000)
        self.assertEqual(raised.exception.status, b"NO")
        self.assertTrue(raised.exception.text.startswith(b"[TOOMANY] "))

    def test_malformed_arguments_are_bad(self) -> None:
        self.select()
        for arguments in (
            b"",
            b" ",
            b"abc",
            b"0",
            b"0500",
            b"-500",
            b"500 10",
            b"500 4:1",
            b"500 0:2",
            b"500 1:2 3",
            b"500 1:*",
            b"99999999999",
        ):
            reply = self.send(b"x UIDBATCHES %s\r\n" % arguments)
            self.assertTrue(reply.startswith(b"x BAD "), (arguments, reply))
            self.assertNotIn(b"Error", reply)

    def test_only_in_the_selected_state(self) -> None:
        self.assertTrue(self.send(b"a UIDBATCHES 500\r\n").startswith(b"a BAD "))


class BatchRangeTests(SynchronousTestCase):
    def test_descending_contiguous_ranges_down_to_uid_1(self) -> None:
        """Descending, contiguous ranges; the last reaches UID 1."""
        uids = [2, 3, 5, 7, 11, 13, 17, 19, 23]
        self.assertEqual(
            batchRanges(len(uids), lambda seq: uids[seq - 1], BatchRequest(4)),
            [(23, 13), (12, 3), (2, 1)],
        )

    @settings(max_examples=200, deadline=None)
    @given(
        st.lists(st.integers(1, 5000), unique=True, max_size=300).map(sorted),
        st.integers(1, 40),
    )
    def test_ranges_tile_the_uids_in_batches_of_the_size_asked(
        self, uids: list[int], size: int
    ) -> None:
        found = batchRanges(len(uids), lambda seq: uids[seq - 1], BatchRequest(size))
        self.assertEqual(len(found), -(-len(uids) // size))
        covered = 0
        for index, (high, low) in enumerate(found):
            self.assertLessEqual(low, high)
            if index:
                self.assertEqual(high, found[index - 1][1] - 1)
            inside = [uid for uid in uids if low <= uid <= high]
            self.assertEqual(len(inside), size if index < len(found) - 1 else len(uids) - covered)
            covered += len(inside)
        if found:
            self.assertEqual((found[0][0], found[-1][1]), (uids[-1], 1))

    def test_the_work_is_per_batch_answered_not_per_message(self) -> None:
        looked: list[int] = []

        def uidAt(seq: int) -> int:
            looked.append(seq)
            return seq * 3

        started = time.monotonic()
        found = batchRanges(10**9, uidAt, BatchRequest(500, 7, 9))
        self.assertLess(time.monotonic() - started, 1.0)
        self.assertEqual(len(found), 3)
        self.assertLessEqual(len(looked), 6)
