"""
SEARCH criteria that read only flags (SEEN, UNSEEN, FLAGGED, KEYWORD, ...,
with NOT, OR and lists of them) are answered by testing each distinct set
of flags once: the answer is the one the message-by-message search gives
(the same criteria with a key that reads more than flags) and the one a
model of the folder gives.
"""

from __future__ import annotations

import random
import re

from hypothesis import given, settings
from hypothesis import strategies as st
from test_imap_protocol import Session
from twisted.trial.unittest import SynchronousTestCase

FLAGS = ("\\Seen", "\\Flagged", "\\Deleted", "\\Answered", "\\Draft", "$Junk", "work")
KEYS = {
    "SEEN": ("\\Seen", True),
    "UNSEEN": ("\\Seen", False),
    "FLAGGED": ("\\Flagged", True),
    "UNFLAGGED": ("\\Flagged", False),
    "DELETED": ("\\Deleted", True),
    "UNDELETED": ("\\Deleted", False),
    "ANSWERED": ("\\Answered", True),
    "UNANSWERED": ("\\Answered", False),
    "DRAFT": ("\\Draft", True),
    "UNDRAFT": ("\\Draft", False),
    "KEYWORD $Junk": ("$Junk", True),
    "UNKEYWORD work": ("work", False),
}
COUNT = 60


def leaves() -> st.SearchStrategy[tuple[str, object]]:
    return st.sampled_from(sorted(KEYS)).map(lambda key: (key, ("key", key))) | st.just(
        ("ALL", ("all",))
    )


def extend(
    children: st.SearchStrategy[tuple[str, object]],
) -> st.SearchStrategy[tuple[str, object]]:
    negated = children.map(lambda c: (f"NOT {c[0]}", ("not", c[1])))
    either = st.tuples(children, children).map(
        lambda p: (f"OR {p[0][0]} {p[1][0]}", ("or", p[0][1], p[1][1]))
    )
    listed = st.lists(children, min_size=1, max_size=3).map(
        lambda cs: ("(" + " ".join(c[0] for c in cs) + ")", ("and", *[c[1] for c in cs]))
    )
    return negated | either | listed


CRITERIA = st.recursive(leaves(), extend, max_leaves=6)


def holds(tree: object, flags: frozenset[str]) -> bool:
    assert isinstance(tree, tuple)
    kind = tree[0]
    if kind == "all":
        return True
    if kind == "key":
        flag, present = KEYS[tree[1]]
        return (flag in flags) == present
    if kind == "not":
        return not holds(tree[1], flags)
    if kind == "or":
        return holds(tree[1], flags) or holds(tree[2], flags)
    return all(holds(child, flags) for child in tree[1:])


class FlagSearchTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.session = Session(self)
        self.session.loginDirectly()
        chooser = random.Random(7)
        self.flags: list[frozenset[str]] = []
        for n in range(COUNT):
            chosen = frozenset(f for f in FLAGS if chooser.random() < 0.3)
            self.flags.append(chosen)
            message = b"Subject: %d\r\n\r\nbody\r\n" % n
            reply = self.session.send(
                b"a APPEND INBOX (%s) {%d+}\r\n%s\r\n"
                % (" ".join(sorted(chosen)).encode(), len(message), message)
            )
            self.assertIn(b"a OK [APPENDUID", reply)
        self.assertIn(b"s OK [READ-WRITE]", self.session.send(b"s SELECT INBOX\r\n"))

    def search(self, criteria: str) -> list[int]:
        reply = self.session.send(b"t UID SEARCH " + criteria.encode() + b"\r\n")
        self.assertTrue(reply.endswith(b"t OK SEARCH completed\r\n"), reply)
        line = re.match(rb"\* SEARCH([ \d]*)\r\n", reply)
        assert line is not None, reply
        return [int(uid) for uid in line[1].split()]

    @settings(max_examples=150, deadline=None)
    @given(CRITERIA)
    def test_flag_criteria_answer_as_the_message_by_message_search(
        self, criteria: tuple[str, object]
    ) -> None:
        text, tree = criteria
        expected = [uid for uid, flags in enumerate(self.flags, 1) if holds(tree, flags)]
        self.assertEqual(self.search(text), expected, text)
        self.assertEqual(self.search(f"{text} LARGER 0"), expected, text)

    def test_unseen_over_many_slices_keeps_every_match_in_order(self) -> None:
        """A folder larger than one slice of the flags-only search."""
        from tmail.imap.mailbox import MailboxSearch

        self.patch(MailboxSearch, "FLAGS_SLICE", 7)
        expected = [uid for uid, flags in enumerate(self.flags, 1) if "\\Seen" not in flags]
        self.assertEqual(self.search("UNSEEN"), expected)
