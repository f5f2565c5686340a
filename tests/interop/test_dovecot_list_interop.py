"""
The LIST family against Dovecot 2.3 on the same Maildir: the special folders
tmail makes at the first login are Dovecot's configured special-use
mailboxes, and LIST-EXTENDED, LIST-STATUS and SPECIAL-USE queries get the
same answers from both servers.
"""

from __future__ import annotations

import imaplib
import re
from collections.abc import Iterator

import pytest

from support.interop import Servers, runningServers

PASSWORD = "list both"
SPECIAL = {
    "Sent": "\\Sent",
    "Drafts": "\\Drafts",
    "Trash": "\\Trash",
    "Junk": "\\Junk",
    "Archive": "\\Archive",
}
MAILBOXES = "\n".join(
    f"  mailbox {name} {{\n    special_use = {use}\n  }}" for name, use in SPECIAL.items()
)
_LIST = re.compile(rb'\(([^)]*)\) (?:"[^"]*"|NIL) ("(?:[^"\\]|\\.)*"|\S+)(?: (.*))?')


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    with runningServers(PASSWORD, userPrefix="lister", namespaceExtra=MAILBOXES) as running:
        yield running


def run(client: imaplib.IMAP4, *args: str) -> list[tuple[str, frozenset[str], bytes]]:
    """
    LIST's answers as (name, attributes, extended data), STATUS lines as
    ("STATUS name", items).  Attributes a server may add unasked are
    left out: child attributes without RETURN (CHILDREN) and special-use
    ones without SPECIAL-USE in an extended LIST (tmail sends both always,
    Dovecot only when asked), and \\Marked.
    """
    typ, data = client._simple_command("LIST", *args)
    assert typ == "OK", data
    query = " ".join(args).upper()
    plain = len(args) == 2 and not args[1].startswith("(")
    optional = {"\\marked", "\\unmarked"}
    if not plain and "CHILDREN" not in query:
        optional |= {"\\haschildren", "\\hasnochildren"}
    if not plain and "SPECIAL-USE" not in query:
        optional |= {use.lower() for use in SPECIAL.values()}
    answers = []
    for line in client.untagged_responses.pop("LIST", []):
        match = _LIST.fullmatch(line)
        assert match is not None, line
        attributes = frozenset(
            a for a in match.group(1).decode().lower().split() if a not in optional
        )
        extra = (match.group(3) or b"").replace(b'"CHILDINFO"', b"CHILDINFO")
        answers.append((unquote(match.group(2)), attributes, extra))
    for line in client.untagged_responses.pop("STATUS", []):
        name, _, items = line.rpartition(b" (")
        pairs = items.rstrip(b")").decode().split()
        values = frozenset(map(" ".join, zip(pairs[::2], pairs[1::2], strict=True)))
        answers.append(("STATUS " + unquote(name), values, b""))
    return sorted(answers)


def unquote(name: bytes) -> str:
    return (name[1:-1] if name.startswith(b'"') else name).decode()


QUERIES = [
    ('""', "*"),
    ("(SUBSCRIBED)", '""', "*"),
    ("(SUBSCRIBED RECURSIVEMATCH)", '""', "%"),
    ("(SPECIAL-USE)", '""', "*"),
    ('""', "%", "RETURN", "(CHILDREN SUBSCRIBED SPECIAL-USE)"),
    ('""', '("INBOX" "Sent" "Projects/%")'),
    ('""', "*", "RETURN", "(STATUS (MESSAGES UNSEEN UIDNEXT SIZE))"),
    ("(SUBSCRIBED RECURSIVEMATCH)", '""', "*"),
    ("(SUBSCRIBED RECURSIVEMATCH)", '""', "%", "RETURN", "(CHILDREN)"),
    ("(SUBSCRIBED)", '""', "%", "RETURN", "(CHILDREN)"),
    ('""', "%"),
]


def test_first_login_folders_are_dovecots_special_use_mailboxes(servers: Servers) -> None:
    user = servers.newUser()
    client = servers.tmailClient(user)
    viaTmail = run(client, "(SPECIAL-USE)", '""', "*")
    subscribedViaTmail = run(client, "(SUBSCRIBED)", '""', "*")
    client.logout()

    client = servers.dovecot.connect(user)
    viaDovecot = run(client, "(SPECIAL-USE)", '""', "*")
    subscribedViaDovecot = run(client, "(SUBSCRIBED)", '""', "*")
    client.logout()

    assert {name for name, _, _ in viaTmail} == set(SPECIAL)
    assert viaTmail == viaDovecot
    assert subscribedViaTmail == subscribedViaDovecot


def test_list_extended_answers_match_dovecots(servers: Servers) -> None:
    user = servers.newUser()
    client = servers.tmailClient(user)
    for folder in ("Projects/Alpha/Deep", "Projects/Beta", "Lone/Child", "Plain"):
        assert client.create(folder)[0] == "OK"
    assert client.delete("Lone")[0] == "OK"
    for folder in ("Projects/Alpha/Deep", "Lone/Child", "Gone", "Plain"):
        assert client.subscribe(folder)[0] == "OK"
    assert client.unsubscribe("Sent")[0] == "OK"
    assert client.append("Projects/Beta", "(\\Seen)", None, b"Subject: a\r\n\r\nx\r\n")[0] == "OK"
    assert client.append("Projects/Beta", "", None, b"Subject: b\r\n\r\ny\r\n")[0] == "OK"
    viaTmail = [run(client, *query) for query in QUERIES]
    client.logout()

    client = servers.dovecot.connect(user)
    viaDovecot = [run(client, *query) for query in QUERIES]
    client.logout()

    for query, mine, theirs in zip(QUERIES, viaTmail, viaDovecot, strict=True):
        assert mine == theirs, query
