"""
NOTIFY (RFC 5465) against Dovecot 2.3 on the same Maildir: the same
commands are accepted, refused as BAD, or refused with NO [BADEVENT] by
both servers, and NOTIFY SET STATUS reports the same mailboxes; a message
delivered through tmail's SMTP and one Dovecot appends reach a tmail
session's NOTIFY.
"""

from __future__ import annotations

import imaplib
import time
from collections.abc import Iterator

import pytest

from support.interop import Servers, runningServers

imaplib.Commands.setdefault("NOTIFY", ("AUTH", "SELECTED"))

PASSWORD = "notify both"

#: NOTIFY arguments both servers accept, or refuse alike.
COMMANDS = [
    "NONE",
    "SET (selected (MessageNew MessageExpunge))",
    "SET (selected (MessageNew (UID FLAGS) MessageExpunge FlagChange))",
    "SET (selected-delayed (MessageNew MessageExpunge))",
    "SET STATUS (personal (MessageNew MessageExpunge))",
    "SET (inboxes (MessageNew MessageExpunge FlagChange))",
    "SET (subscribed (MessageNew MessageExpunge))",
    'SET (subtree "Projects" (MessageNew MessageExpunge))',
    'SET (mailboxes ("INBOX" "Projects/Alpha") (MessageNew MessageExpunge))',
    "SET (personal (MailboxName SubscriptionChange))",
    "SET (selected NONE) (personal NONE)",
    "SET (selected (MessageNew (uid body.peek[header.fields (from to subject)]) MessageExpunge))"
    " (subtree Lists (MessageNew MessageExpunge))",
    "SET (personal (MessageNew MessageExpunge FlagChange AnnotationChange))",
    "SET (selected (MessageNew))",
    "SET (selected (MessageNew MessageExpunge)) (selected-delayed (MessageNew MessageExpunge))",
    "SET (personal MessageNew)",
    "SET (bogus (MessageNew MessageExpunge))",
    "BOGUS",
    # RFC 5465 3.1's first example as printed: section 8 puts events in parentheses.
    "SET status (selected MessageNew (uid body.peek[header.fields (from to subject)])"
    " MessageExpunge) (subtree Lists MessageNew)",
]

#: Where Dovecot 2.3 departs from RFC 5465 and tmail follows the RFC.
RFC_OVER_DOVECOT = [
    # 3.1: an event the server does not support is NO [BADEVENT], not BAD
    # (section 8 lets any atom be an event); Dovecot says BAD.
    ("SET (personal (XFutureEvent))", ("NO", "BADEVENT")),
    # 5: FlagChange needs MessageNew and MessageExpunge, else BAD; Dovecot says OK.
    ("SET (personal (FlagChange))", ("BAD", "")),
    # 6.1: only message events go with SELECTED; Dovecot says OK.
    ("SET (selected (MailboxName))", ("BAD", "")),
    # 8: SET needs at least one event group; Dovecot says OK.
    ("SET", ("BAD", "")),
]


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    with runningServers(
        PASSWORD, userPrefix="notifier", imapExtra="notify_poll_interval = 0.3"
    ) as running:
        yield running


def outcome(client: imaplib.IMAP4, arguments: str) -> tuple[str, str]:
    """The tagged status of NOTIFY and its response code's name."""
    try:
        typ, data = client._simple_command("NOTIFY", arguments)
    except imaplib.IMAP4.error:
        return "BAD", ""
    text = data[-1].decode() if data and data[-1] else ""
    code = text[1:].split("]")[0].split()[0] if text.startswith("[") else ""
    return typ, code


def test_notify_outcomes_match_dovecots(servers: Servers) -> None:
    user = servers.newUser()
    results = {}
    for name, connect in (("tmail", servers.tmailClient), ("dovecot", servers.dovecotClient)):
        client = connect(user)
        client.select("INBOX")
        results[name] = [(arguments, outcome(client, arguments)) for arguments in COMMANDS]
        client.logout()
    assert results["tmail"] == results["dovecot"]


def test_notify_follows_rfc_5465_where_dovecot_does_not(servers: Servers) -> None:
    client = servers.tmailClient(servers.newUser())
    client.select("INBOX")
    assert [(arguments, outcome(client, arguments)) for arguments, _ in RFC_OVER_DOVECOT] == (
        RFC_OVER_DOVECOT
    )
    client.logout()


def statusNames(client: imaplib.IMAP4, arguments: str) -> list[str]:
    client.untagged_responses.pop("STATUS", None)
    typ, data = client._simple_command("NOTIFY", arguments)
    assert typ == "OK", data
    lines = client.untagged_responses.pop("STATUS", [])
    return sorted(line.rpartition(b" (")[0].strip(b'"').decode() for line in lines)


def test_notify_set_status_names_the_same_mailboxes(servers: Servers) -> None:
    """
    NOTIFY SET STATUS sends a STATUS for every watched mailbox but the
    selected one, before its tagged OK (RFC 5465 3.1), as Dovecot does.
    """
    user = servers.newUser()
    client = servers.tmailClient(user)
    for folder in ("Projects/Alpha", "Projects/Beta", "Lists"):
        assert client.create(folder)[0] == "OK"
    assert client.subscribe("Lists")[0] == "OK"
    client.logout()
    queries = [
        "SET STATUS (personal (MessageNew MessageExpunge))",
        'SET STATUS (subtree "Projects" (MessageNew MessageExpunge))',
        'SET STATUS (mailboxes ("Lists" "INBOX") (MessageNew MessageExpunge))',
        "SET STATUS (subscribed (MessageNew MessageExpunge))",
    ]
    answers = {}
    for name, connect in (("tmail", servers.tmailClient), ("dovecot", servers.dovecotClient)):
        client = connect(user)
        client.select("INBOX")
        answers[name] = [statusNames(client, query) for query in queries]
        client.logout()
    assert answers["tmail"] == answers["dovecot"]


def statusUntil(client: imaplib.IMAP4, name: bytes, within: float = 15.0) -> list[bytes]:
    """NOOP until a STATUS for C{name} has come (before or with a NOOP's reply)."""
    deadline = time.monotonic() + within
    seen: list[bytes] = []
    while time.monotonic() < deadline:
        assert client.noop()[0] == "OK"
        seen += client.untagged_responses.pop("STATUS", [])
        found = [line for line in seen if line.startswith(name + b" ")]
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"no STATUS for {name!r} in {seen!r}")


def test_smtp_delivery_and_dovecots_append_reach_a_notify_session(servers: Servers) -> None:
    """
    tmail's own service: a message delivered through its SMTP server into
    INBOX, and one Dovecot (another process) appends to Sent, reach a
    session in Archive that asked NOTIFY for PERSONAL.
    """
    user = servers.newUser()
    client = servers.tmailClient(user)
    client.select("Archive")
    typ, data = client._simple_command("NOTIFY", "SET (personal (MessageNew MessageExpunge))")
    assert typ == "OK", data
    servers.deliver(user, b"Subject: one\r\n\r\nbody\r\n")
    assert statusUntil(client, b'"INBOX"')[-1].startswith(b'"INBOX" (MESSAGES 1 UIDNEXT 2 ')
    other = servers.dovecotClient(user)
    assert other.append("Sent", None, None, b"Subject: two\r\n\r\nbody\r\n")[0] == "OK"
    other.logout()
    assert statusUntil(client, b'"Sent"')[-1].startswith(b'"Sent" (MESSAGES 1 UIDNEXT 2 ')
    client.logout()
