"""
ESORT, CONTEXT=SEARCH and SORT=DISPLAY answered by tmail and by the real
Dovecot (which has all three) on the same messages: the same ESEARCH data,
and live results that bring a client to the same place.

tmail is the real C{twistd tmail} process and Dovecot a private instance on
the same Maildir tree (see L{support.dovecot}); they take turns.
"""

from __future__ import annotations

import imaplib
import re
from collections.abc import Iterator

import pytest

from support.interop import DOMAIN, Servers, runningServers
from support.liveresult import ClientView, numbers

pytestmark = pytest.mark.e2e

PASSWORD = "sort it out"

#: (From, To, day of January 2024, subject, flags) of each message, UIDs 1 on.
MESSAGES = [
    ('"Zed Zebra" <zed@x.test>', "ann@y.test", 5, "Re: beta", "(\\Seen)"),
    ("alice@x.test", '"Bob" <bob@y.test>', 2, "alpha", ""),
    ('"Carl" <carl@x.test>', "dora@y.test", 9, "beta", "(\\Flagged)"),
    ("<bea@x.test>", '"Al" <al@y.test>', 1, "gamma", ""),
    ('"Mia" <mia@x.test>', "team: Ken <ken@y.test>;", 7, "Fwd: alpha", "(\\Seen)"),
    ("dan@x.test", "undisclosed-recipients:;", 3, "delta", ""),
]

QUERIES = [
    ("UID", "SORT", "RETURN", "(ALL)", "(REVERSE DATE)", "UTF-8", "ALL"),
    ("UID", "SORT", "RETURN", "(MIN MAX COUNT)", "(SUBJECT)", "UTF-8", "UNSEEN"),
    ("SORT", "RETURN", "(ALL)", "(DISPLAYFROM)", "UTF-8", "ALL"),
    ("UID", "SORT", "RETURN", "(ALL)", "(REVERSE DISPLAYTO ARRIVAL)", "UTF-8", "ALL"),
    ("UID", "SORT", "RETURN", "()", "(FROM DATE)", "UTF-8", "ALL"),
    ("SEARCH", "RETURN", "(CONTEXT COUNT MIN)", "UNSEEN"),
]


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    with runningServers(PASSWORD, imapExtra="create_special_folders = false") as running:
        yield running


def raw(sender: str, recipient: str, day: int, subject: str, n: int) -> bytes:
    return (
        f"From: {sender}\r\nTo: {recipient}\r\nSubject: {subject}\r\n"
        f"Date: {day} Jan 2024 10:00:00 +0000\r\nMessage-ID: <s{n}@{DOMAIN}>\r\n\r\nbody {n}\r\n"
    ).encode()


def fill(servers: Servers, user: str) -> None:
    client = servers.tmailClient(user)
    for n, (sender, recipient, day, subject, flags) in enumerate(MESSAGES, 1):
        message = raw(sender, recipient, day, subject, n)
        assert client.append("INBOX", flags, None, message)[0] == "OK"
    client.logout()


def esearch(client: imaplib.IMAP4, *command: str) -> list[bytes]:
    """The ESEARCH data a command got, without the tag correlator."""
    typ, data = client._simple_command(*command)  # type: ignore[attr-defined]
    assert typ == "OK", (command, data)
    lines = client.untagged_responses.pop("ESEARCH", [])
    return [re.sub(rb'^\(TAG "[^"]*"\) ?', b"", line) for line in lines]


def test_esort_and_sort_display_answers_match_dovecots(servers: Servers) -> None:
    user = servers.newUser()
    fill(servers, user)
    client = servers.tmailClient(user)
    client.select("INBOX")
    mine = [esearch(client, *query) for query in QUERIES]
    client.logout()
    client = servers.dovecotClient(user)
    client.select("INBOX")
    theirs = [esearch(client, *query) for query in QUERIES]
    client.logout()
    for query, a, b in zip(QUERIES, mine, theirs, strict=True):
        assert a == b, query


def liveResult(client: imaplib.IMAP4, actor: imaplib.IMAP4) -> tuple[list[int], list[int]]:
    """
    Keep C{UID SEARCH RETURN (UPDATE) UNSEEN} live while C{actor} changes
    the mailbox; the result as the updates leave it, and a fresh search's.
    """
    tag = client._new_tag().decode()  # type: ignore[attr-defined]
    client.send(f"{tag} UID SEARCH RETURN (UPDATE ALL) UNSEEN\r\n".encode())
    lines = []
    while True:
        line = client.readline()
        lines.append(line)
        if line.startswith(tag.encode() + b" "):
            break
    found = re.search(rb" ALL ([0-9:,]+)", b"".join(lines))
    view = ClientView(tag.encode(), numbers(found[1]) if found else [])
    actor.select("INBOX")
    actor.uid("STORE", "2", "+FLAGS.SILENT", "(\\Seen)")
    actor.uid("STORE", "1", "-FLAGS.SILENT", "(\\Seen)")
    actor.append("INBOX", "", None, raw("new@x.test", "ann@y.test", 4, "new", 9))
    actor.uid("STORE", "4", "+FLAGS.SILENT", "(\\Deleted)")
    actor.expunge()
    done = client._new_tag().decode()  # type: ignore[attr-defined]
    client.send(f"{done} NOOP\r\n".encode())
    output = b""
    while not output.endswith(b"\r\n") or not output.splitlines()[-1].startswith(done.encode()):
        output += client.readline()
    view.apply(output)
    fresh = esearch(client, "UID", "SEARCH", "RETURN", "(ALL)", "UNSEEN")
    match = re.search(rb"ALL ([0-9:,]+)", b"".join(fresh))
    return view.results, numbers(match[1]) if match else []


def test_live_search_results_bring_the_client_where_dovecots_do(servers: Servers) -> None:
    viaTmail, viaDovecot = servers.newUser(), servers.newUser()
    fill(servers, viaTmail)
    fill(servers, viaDovecot)
    client, actor = servers.tmailClient(viaTmail), servers.tmailClient(viaTmail)
    client.select("INBOX")
    mine = liveResult(client, actor)
    client.logout()
    actor.logout()
    client, actor = servers.dovecotClient(viaDovecot), servers.dovecotClient(viaDovecot)
    client.select("INBOX")
    theirs = liveResult(client, actor)
    client.logout()
    actor.logout()
    assert mine[0] == mine[1]
    assert theirs[0] == theirs[1]
    assert mine == theirs == ([1, 3, 6, 7], [1, 3, 6, 7])
