"""
Object IDs and save dates kept the Dovecot way, checked against the real
Dovecot on the same Maildir: the C{G} fields tmail writes for copies leave
Dovecot's view of the folder as it was, a copy Dovecot makes has the
original's EMAILID in tmail, and both servers give a message the same
SAVEDATE, whichever stored it.
"""

from __future__ import annotations

import imaplib
import re
from collections.abc import Iterator
from datetime import datetime

import pytest

from support.interop import DOMAIN, Servers, runningServers

pytestmark = pytest.mark.e2e

PASSWORD = "object ids"


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    with runningServers(PASSWORD, imapExtra="create_special_folders = false") as running:
        yield running


def message(n: int) -> bytes:
    return (
        f"From: sender@{DOMAIN}\r\nTo: someone@{DOMAIN}\r\nSubject: object {n}\r\n\r\n"
        f"Body of {n}.\r\n"
    ).encode()


def ok(response: tuple[str, list[object]]) -> list[object]:
    status, data = response
    assert status == "OK", data
    return data


def fetched(client: imaplib.IMAP4, folder: str, item: str) -> dict[int, bytes]:
    """UID -> the value of C{item} (up to the closing parenthesis) for every message."""
    ok(client.select(folder, readonly=True))
    values = {}
    for line in ok(client.uid("FETCH", "1:*", f"(UID {item})")):
        assert isinstance(line, bytes), line
        uid = re.search(rb"UID (\d+)", line)
        value = re.search(item.encode() + rb" (\([^)]*\)|\"[^\"]*\"|NIL)", line)
        assert uid is not None and value is not None, line
        values[int(uid.group(1))] = value.group(1)
    client.close()
    return values


def uids(client: imaplib.IMAP4, folder: str) -> list[bytes]:
    ok(client.select(folder, readonly=True))
    data = ok(client.uid("SEARCH", "ALL"))
    client.close()
    assert isinstance(data[0], bytes)
    return data[0].split()


def stamp(value: bytes) -> float:
    return datetime.strptime(value.strip(b'"').decode(), "%d-%b-%Y %H:%M:%S %z").timestamp()


def test_dovecot_reads_folders_whose_copies_tmail_recorded_with_guids(servers: Servers) -> None:
    user = servers.newUser()
    client = servers.tmailClient(user)
    ok(client.create("Archive"))
    for n in (1, 2, 3):
        ok(client.append("INBOX", "", imaplib.Time2Internaldate(1_500_000_000), message(n)))
    ids = fetched(client, "INBOX", "EMAILID")
    ok(client.select("INBOX"))
    ok(client.uid("COPY", "1:3", "Archive"))
    ok(client.uid("MOVE", "2", "Archive"))
    inbox, archive = uids(client, "INBOX"), uids(client, "Archive")
    copies = fetched(client, "Archive", "EMAILID")
    client.logout()
    assert copies == {1: ids[1], 2: ids[2], 3: ids[3], 4: ids[2]}

    dovecot = servers.dovecotClient(user)
    try:
        assert uids(dovecot, "INBOX") == inbox
        assert uids(dovecot, "Archive") == archive
    finally:
        dovecot.logout()


def test_a_copy_dovecot_made_has_the_originals_emailid_in_tmail(servers: Servers) -> None:
    user = servers.newUser()
    dovecot = servers.dovecotClient(user)
    ok(dovecot.create("Archive"))
    ok(dovecot.append("INBOX", "", imaplib.Time2Internaldate(1_500_000_000), message(1)))
    ok(dovecot.select("INBOX"))
    ok(dovecot.uid("COPY", "1", "Archive"))
    dovecot.logout()

    client = servers.tmailClient(user)
    try:
        original = fetched(client, "INBOX", "EMAILID")[1]
        assert fetched(client, "Archive", "EMAILID")[1] == original
    finally:
        client.logout()


def test_both_servers_give_a_message_the_same_savedate(servers: Servers) -> None:
    user = servers.newUser()
    dovecot = servers.dovecotClient(user)
    ok(dovecot.append("INBOX", "", imaplib.Time2Internaldate(1_500_000_000), message(1)))
    dovecot.logout()
    client = servers.tmailClient(user)
    ok(client.append("INBOX", "", imaplib.Time2Internaldate(1_500_000_000), message(2)))
    viaTmail = fetched(client, "INBOX", "SAVEDATE")
    client.logout()
    dovecot = servers.dovecotClient(user)
    try:
        viaDovecot = fetched(dovecot, "INBOX", "SAVEDATE")
    finally:
        dovecot.logout()
    assert viaTmail.keys() == viaDovecot.keys() == {1, 2}
    for uid in (1, 2):
        assert abs(stamp(viaTmail[uid]) - stamp(viaDovecot[uid])) <= 2, (viaTmail, viaDovecot)
