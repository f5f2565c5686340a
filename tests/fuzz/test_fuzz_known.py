"""
One input of each class of defect the fuzzing harness has found, replayed
as the harness replays any input.  Those whose fixes are pending
(L{support.pending}) are expected to fail; see there for what to do when
one passes.
"""

from __future__ import annotations

from support.budget import Budget
from support.fuzzing import replay, replayAlone
from support.mailworld import MailWorld, nestedMultipart
from support.pending import xfailWhilePending

#: Generous for any machine: the defects took tens of seconds or more.
BUDGET = Budget(seconds=3.0)
#: For inputs run in a process of their own, killed at twice this.
ALONE = Budget(seconds=1.5)


def rfc822Chain(depth: int) -> bytes:
    message = b"Subject: in\r\n\r\ndeep text\r\n"
    for level in range(depth):
        message = b"Subject: l%d\r\nContent-Type: message/rfc822\r\n\r\n" % level + message
    return message


@xfailWhilePending("list-wildcards")
def test_list_pattern_with_many_wildcards_within_budget() -> None:
    replayAlone("imap", "auth", [b'a LIST "" "' + b"*%" * 25 + b'Z"\r\n'], ALONE)


@xfailWhilePending("sequence-sets")
def test_long_sequence_set_within_budget() -> None:
    sequence = b",".join(b"%d" % n for n in range(1, 20000, 2))
    replayAlone("imap", "select", [b"a FETCH " + sequence + b" FLAGS\r\n"], ALONE)


@xfailWhilePending("search-nesting")
def test_search_with_2000_nots_answers_without_error(world: MailWorld) -> None:
    replay(world, "imap", "select", [b"a SEARCH " + b"NOT " * 2000 + b"ALL\r\n"], BUDGET)


@xfailWhilePending("search-nesting")
def test_search_with_500_nested_parentheses_answers_without_error(world: MailWorld) -> None:
    replay(
        world, "imap", "select", [b"a SEARCH " + b"(" * 500 + b"ALL" + b")" * 500 + b"\r\n"], BUDGET
    )


@xfailWhilePending("search-nesting")
def test_sort_with_3000_ors_answers_without_error(world: MailWorld) -> None:
    replay(
        world, "imap", "select", [b"a SORT (DATE) UTF-8 " + b"OR ALL " * 3000 + b"ALL\r\n"], BUDGET
    )


@xfailWhilePending("mime-depth")
def test_search_of_deeply_nested_message_answers_without_error(world: MailWorld) -> None:
    message = rfc822Chain(1000)
    program = b"a APPEND INBOX {%d+}\r\n" % len(message) + message + b"\r\nb SEARCH TEXT deep\r\n"
    replay(world, "imap", "select", [program], BUDGET)


@xfailWhilePending("status-repr")
def test_status_with_nested_parentheses_answers_without_repr(world: MailWorld) -> None:
    replay(world, "imap", "auth", [b"a STATUS INBOX (((MESSAGES)))\r\n"], BUDGET)


@xfailWhilePending("literal-total")
def test_search_with_many_large_literals_within_memory_budget(world: MailWorld) -> None:
    literals = [b" TEXT {60000+}\r\n" + b"x" * 60000 for _ in range(1000)]
    replay(world, "imap", "select", [b"a SEARCH", *literals, b"\r\n"], BUDGET)


def test_deep_multipart_fetch_and_search_within_budget(world: MailWorld) -> None:
    """Multipart nesting past the parser's depth limit is cut off, not followed."""
    raw = nestedMultipart(3000)
    program = (
        b"a APPEND INBOX {%d+}\r\n" % len(raw)
        + raw
        + b"\r\nb SEARCH TEXT deep\r\nc FETCH * (BODYSTRUCTURE BODY.PEEK[1.1.1])\r\n"
    )
    replay(world, "imap", "select", [program], BUDGET)
