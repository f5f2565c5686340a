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
        from tmail.imap.mailboxsearch import MailboxSearch

        self.patch(MailboxSearch, "FLAGS_SLICE", 7)
        expected = [uid for uid, flags in enumerate(self.flags, 1) if "\\Seen" not in flags]
        self.assertEqual(self.search("UNSEEN"), expected)

    def esearch(self, returns: str, criteria: str) -> dict[str, object]:
        """C{UID SEARCH RETURN (returns) criteria}: its MIN, MAX and PARTIAL window's UIDs."""
        command = f"t UID SEARCH RETURN ({returns}) {criteria}\r\n".encode()
        reply = self.session.send(command)
        self.assertTrue(reply.endswith(b"t OK SEARCH completed\r\n"), reply)
        line = re.match(rb'\* ESEARCH \(TAG "t"\) UID(.*)\r\n', reply)
        assert line is not None, reply
        answer: dict[str, object] = {}
        for name, value in re.findall(rb"(MIN|MAX) (\d+)", line[1]):
            answer[name.decode()] = int(value)
        window = re.search(rb"PARTIAL \((\S+) (\S+)\)", line[1])
        if window is not None:
            answer["PARTIAL"] = expand(window[2])
        return answer

    def assertWindowsOfThePlainResult(self, criteria: str) -> None:
        """PARTIAL windows, alone and with MIN or MAX, are those of the search without a limit."""
        full = self.search(criteria)
        self.assertEqual(self.search(f"{criteria} LARGER 0"), full, criteria)
        self.assertGreater(len(full), 10, criteria)
        for window, wanted in [
            ("1:3", full[:3]),
            ("2:9", full[1:9]),
            ("-1:-2", full[-2:]),
            ("-4:-11", full[-11:-3]),
            (f"{len(full) - 1}:{len(full) + 5}", full[-2:]),
        ]:
            self.assertEqual(
                self.esearch(f"PARTIAL {window}", criteria), {"PARTIAL": wanted}, window
            )
        self.assertEqual(
            self.esearch("MIN PARTIAL 1:3", criteria), {"MIN": full[0], "PARTIAL": full[:3]}
        )
        self.assertEqual(
            self.esearch("MAX PARTIAL -1:-2", criteria), {"MAX": full[-1], "PARTIAL": full[-2:]}
        )

    def test_flags_only_search_with_a_partial_window_answers_the_window_of_the_full_result(
        self,
    ) -> None:
        """
        With a PARTIAL window the search stops after the matches it needs,
        testing message by message (from the last one back for a window
        counted from the end) instead of by flag sets: the window holds
        the same messages as the one cut from the full result, over the
        folder's shared listing and over a view this session changed.
        """
        from tmail.imap.mailboxsearch import MailboxSearch

        self.patch(MailboxSearch, "INFO_SLICE", 7)
        for criteria in ("UNSEEN", "OR FLAGGED KEYWORD $Junk", "NOT (DELETED UNSEEN)"):
            self.assertWindowsOfThePlainResult(criteria)
        seen = [uid for uid, flags in enumerate(self.flags, 1) if "\\Seen" in flags]
        unseen = [uid for uid, flags in enumerate(self.flags, 1) if "\\Seen" not in flags]
        for command in (
            b"u UID STORE %d +FLAGS.SILENT (\\Seen)\r\n" % unseen[0],
            b"u UID STORE %d -FLAGS.SILENT (\\Seen)\r\n" % seen[-1],
        ):
            self.assertIn(b"u OK", self.session.send(command))
        for criteria in ("UNSEEN", "OR FLAGGED KEYWORD $Junk", "NOT (DELETED UNSEEN)"):
            self.assertWindowsOfThePlainResult(criteria)


def expand(uids: bytes) -> list[int]:
    """The UIDs of an IMAP set such as C{1,3:5} (C{NIL}: none)."""
    if uids == b"NIL":
        return []
    out: list[int] = []
    for part in uids.split(b","):
        first, _, last = part.partition(b":")
        out.extend(range(int(first), int(last or first) + 1))
    return out
