"""
Switching between tmail and the real Dovecot on the same Maildir: both
servers show the same UIDs, UIDVALIDITY, UIDNEXT, flags, keywords, sizes,
dates, bodies, folders and subscriptions, whichever of them wrote them.

tmail is the real C{twistd tmail} process (mail delivered over SMTP, read and
changed over IMAP); Dovecot is a private instance on the same Maildir tree
(see L{support.dovecot}).  Each test has its own user, hence its own Maildir.
"""

from __future__ import annotations

import imaplib
import poplib
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import pytest

from support.interop import DOMAIN, Servers, runningServers

pytestmark = pytest.mark.e2e

PASSWORD = "switch over"


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    with runningServers(PASSWORD, imapExtra="create_special_folders = false") as running:
        yield running


def message(n: int, subject: str = "hello") -> bytes:
    return (
        f"From: sender@{DOMAIN}\r\nTo: someone@{DOMAIN}\r\nSubject: {subject} {n}\r\n"
        f"Message-ID: <m{n}.{subject.replace(' ', '-')}@{DOMAIN}>\r\n"
        f"Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n\r\n"
        f"Body line one of {n}.\r\n\r\nBody line three.\r\n"
    ).encode()


@dataclass(frozen=True)
class Message:
    """What a client sees of one message."""

    flags: frozenset[str]
    size: int
    internaldate: float
    body: bytes


@dataclass(frozen=True)
class View:
    """What a client sees of one folder."""

    uidValidity: int
    uidNext: int
    messages: dict[int, Message]


def ok(response: tuple[str, list[object]]) -> list[object]:
    status, data = response
    assert status == "OK", data
    return data


def found(pattern: bytes, data: object) -> bytes:
    """The first group of C{pattern} in a response line."""
    assert isinstance(data, bytes), data
    match = re.search(pattern, data)
    assert match is not None, data
    return match.group(1)


def view(client: imaplib.IMAP4, folder: str = "INBOX") -> View:
    """STATUS, then every message's UID, flags, size, date and bytes (without setting \\Seen)."""
    status = ok(client.status(folder, "(UIDVALIDITY UIDNEXT)"))[0]
    validity = int(found(rb"UIDVALIDITY (\d+)", status))
    nextUid = int(found(rb"UIDNEXT (\d+)", status))
    ok(client.select(folder, readonly=True))
    described: dict[int, tuple[frozenset[str], int, float]] = {}
    for line in ok(client.uid("FETCH", "1:*", "(UID FLAGS RFC822.SIZE INTERNALDATE)")):
        if not isinstance(line, bytes):
            continue
        uid = int(found(rb"UID (\d+)", line))
        flags = found(rb"FLAGS \(([^)]*)\)", line).decode().split()
        size = int(found(rb"RFC822\.SIZE (\d+)", line))
        date = found(rb'INTERNALDATE "([^"]+)"', line).decode().strip()
        stamp = datetime.strptime(date, "%d-%b-%Y %H:%M:%S %z").timestamp()
        described[uid] = (frozenset(flags) - {"\\Recent"}, size, stamp)
    bodies: dict[int, bytes] = {}
    for item in ok(client.uid("FETCH", "1:*", "(UID BODY.PEEK[])")):
        if isinstance(item, tuple):
            uid = int(found(rb"UID (\d+)", item[0]))
            bodies[uid] = item[1]
    client.close()
    assert bodies.keys() == described.keys()
    messages = {uid: Message(*described[uid], bodies[uid]) for uid in sorted(described)}
    return View(validity, nextUid, messages)


def viewThrough(client: imaplib.IMAP4, folder: str = "INBOX") -> View:
    """L{view} in a session of its own, logged out afterwards."""
    try:
        return view(client, folder)
    finally:
        client.logout()


def store(client: imaplib.IMAP4, uid: int, flags: str) -> None:
    ok(client.uid("STORE", str(uid), "FLAGS.SILENT", flags))


def append(client: imaplib.IMAP4, folder: str, flags: str, when: float, raw: bytes) -> int:
    data = ok(client.append(folder, flags, imaplib.Time2Internaldate(when), raw))
    return int(found(rb"APPENDUID \d+ (\d+)", data[0]))


def names(listing: list[object]) -> set[str]:
    """The selectable folder names of a LIST or LSUB response."""
    found = set()
    for line in listing:
        assert isinstance(line, bytes)
        match = re.fullmatch(rb'\(([^)]*)\) (?:"[^"]*"|NIL) (.+)', line)
        assert match is not None, line
        if b"\\noselect" in match.group(1).lower():
            continue
        name = match.group(2)
        found.add((name[1:-1] if name.startswith(b'"') else name).decode())
    return found


# tmail -> Dovecot


def test_mail_delivered_and_flagged_by_tmail_looks_the_same_through_dovecot(
    servers: Servers,
) -> None:
    user = servers.newUser()
    servers.deliver(user, *(message(n) for n in range(1, 6)))
    client = servers.tmailClient(user)
    ok(client.select("INBOX"))
    store(client, 1, r"(\Seen \Flagged)")
    store(client, 2, r"(\Answered $Junk)")
    store(client, 3, r"(\Draft Work \Seen)")
    store(client, 4, r"(\Deleted)")
    appended = append(client, "INBOX", r"(\Seen $Junk Work)", 1_600_000_000, message(6))
    viaTmail = viewThrough(client)

    viaDovecot = viewThrough(servers.dovecotClient(user))

    assert appended == 6
    assert list(viaTmail.messages) == [1, 2, 3, 4, 5, 6]
    assert viaTmail.uidNext == 7
    assert viaTmail.messages[4].flags == {"\\Deleted"}
    assert viaTmail.messages[2].flags == {"\\Answered", "$Junk"}
    assert viaTmail.messages[6].internaldate == 1_600_000_000
    assert viaDovecot == viaTmail
    maildir = servers.maildir(user)
    assert (maildir / "dovecot-keywords").read_text() == "0 $Junk\n1 Work\n"
    suffixes = sorted(p.name.partition(":2,")[2] for p in maildir.glob("[cn][ue][rw]/*"))
    assert suffixes == ["", "DSb", "FS", "Ra", "Sab", "T"]


# Dovecot -> tmail


def test_mail_appended_and_flagged_by_dovecot_looks_the_same_through_tmail(
    servers: Servers,
) -> None:
    user = servers.newUser()
    client = servers.dovecotClient(user)
    ok(client.select("INBOX"))
    uids = [
        append(client, "INBOX", r"(\Seen $Junk)", 1_500_000_000, message(1)),
        append(client, "INBOX", r"(\Flagged Work)", 1_500_000_100, message(2)),
        append(client, "INBOX", "", 1_500_000_200, message(3)),
        append(client, "INBOX", r"(\Draft)", 1_500_000_300, message(4)),
    ]
    store(client, uids[2], r"(\Answered \Seen Work $Forwarded)")
    store(client, uids[3], r"(\Deleted \Draft)")
    viaDovecot = viewThrough(client)

    viaTmail = viewThrough(servers.tmailClient(user))

    assert uids == [1, 2, 3, 4]
    assert viaDovecot.messages[3].flags == {"\\Answered", "\\Seen", "Work", "$Forwarded"}
    assert viaDovecot.messages[1].body == message(1)
    assert viaTmail == viaDovecot


def test_tmail_serves_messages_dovecot_stored_with_lf_with_crlf_and_their_crlf_size(
    servers: Servers,
) -> None:
    user = servers.newUser()
    client = servers.dovecotClient(user)
    append(client, "INBOX", "", 1_500_000_000, message(1))
    client.logout()
    (stored,) = servers.maildir(user).glob("[cn][ue][rw]/*")
    assert b"\r\n" not in stored.read_bytes()
    assert f",W={len(message(1))}" in stored.name

    client = servers.tmailClient(user)
    ok(client.select("INBOX", readonly=True))
    data = ok(client.uid("FETCH", "1", "(RFC822.SIZE BODY.PEEK[])"))
    client.logout()

    pop = poplib.POP3("127.0.0.1", servers.tmail.ports["pop3"], timeout=30)
    try:
        pop.user(user)
        pop.pass_(PASSWORD)
        listed = pop.list()[1]
        retrieved = pop.retr(1)
    finally:
        pop.quit()

    item = data[0]
    assert isinstance(item, tuple)
    assert int(found(rb"RFC822\.SIZE (\d+)", item[0])) == len(message(1))
    assert item[1] == message(1)
    assert listed == [b"1 %d" % len(message(1))]
    assert b"".join(line + b"\r\n" for line in retrieved[1]) == message(1)


def test_pop3_clients_see_the_same_uidls_from_tmail_and_dovecot(servers: Servers) -> None:
    if servers.dovecot.pop3Port is None:
        pytest.skip("dovecot-pop3d is not installed")
    user = servers.newUser()
    servers.deliver(user, message(1), message(2))
    client = servers.dovecotClient(user)
    append(client, "INBOX", r"(\Seen)", 1_500_000_000, message(3))
    client.logout()

    def uidls(pop: poplib.POP3) -> list[bytes]:
        try:
            return pop.uidl()[1]
        finally:
            pop.quit()

    fromDovecot = uidls(servers.dovecot.connectPOP3(user))
    pop = poplib.POP3("127.0.0.1", servers.tmail.ports["pop3"], timeout=30)
    pop.user(user)
    pop.pass_(PASSWORD)
    fromTmail = uidls(pop)
    assert len(fromTmail) == 3
    assert fromTmail == fromDovecot


# Both ways


def test_expunge_on_either_side_is_seen_by_the_other_and_uids_are_never_reused(
    servers: Servers,
) -> None:
    user = servers.newUser()
    servers.deliver(user, message(1), message(2), message(3))
    client = servers.dovecotClient(user)
    ok(client.select("INBOX"))
    store(client, 2, r"(\Deleted)")
    store(client, 3, r"(\Deleted)")
    ok(client.expunge())
    client.logout()

    client = servers.tmailClient(user)
    assert list(view(client).messages) == [1]
    ok(client.select("INBOX"))
    assert append(client, "INBOX", "", 1_500_000_000, message(4)) == 4
    store(client, 4, r"(\Deleted)")
    ok(client.expunge())
    client.logout()

    client = servers.dovecotClient(user)
    afterTmail = view(client)
    assert list(afterTmail.messages) == [1]
    assert afterTmail.uidNext == 5
    assert append(client, "INBOX", "", 1_500_000_000, message(5)) == 5
    client.logout()

    final = viewThrough(servers.tmailClient(user))
    assert list(final.messages) == [1, 5]
    assert final.uidNext == 6
    assert final.messages[5].body == message(5)


def test_switching_back_and_forth_twice_keeps_uidvalidity_and_uids(servers: Servers) -> None:
    user = servers.newUser()
    servers.deliver(user, message(1), message(2))
    first = viewThrough(servers.tmailClient(user))

    client = servers.dovecotClient(user)
    assert view(client) == first
    append(client, "INBOX", r"(\Seen)", 1_500_000_000, message(3))
    ok(client.select("INBOX"))
    store(client, 1, r"(\Flagged Work)")
    client.logout()
    servers.deliver(user, message(4))

    client = servers.tmailClient(user)
    second = view(client)
    ok(client.select("INBOX"))
    store(client, 3, r"(\Seen \Answered)")
    append(client, "INBOX", "(Later)", 1_500_000_100, message(5))
    client.logout()

    third = viewThrough(servers.dovecotClient(user))
    fourth = viewThrough(servers.tmailClient(user))

    assert {first.uidValidity, second.uidValidity, third.uidValidity} == {first.uidValidity}
    assert list(second.messages) == [1, 2, 3, 4]
    assert second.messages[1].flags == {"\\Flagged", "Work"}
    assert all(m.body.endswith(message(n)) for n, m in second.messages.items())
    assert list(third.messages) == [1, 2, 3, 4, 5]
    assert third.messages[3].flags == {"\\Seen", "\\Answered"}
    assert third.messages[5].flags == {"Later"}
    assert fourth == third


# Folders and subscriptions


def test_folders_made_with_tmail_are_listed_by_dovecot(servers: Servers) -> None:
    user = servers.newUser()
    client = servers.tmailClient(user)
    for folder in ("Archive/2025", "Entw&APw-rfe", "Sent"):
        ok(client.create(folder))
    append(client, "Archive/2025", r"(\Seen Work)", 1_500_000_000, message(1))
    append(client, "Entw&APw-rfe", r"(\Draft)", 1_500_000_000, message(2))
    tmailFolders = names(ok(client.list()))
    archive = view(client, "Archive/2025")
    drafts = view(client, "Entw&APw-rfe")
    client.logout()

    client = servers.dovecotClient(user)
    dovecotFolders = names(ok(client.list()))
    archiveViaDovecot = view(client, "Archive/2025")
    draftsViaDovecot = view(client, "Entw&APw-rfe")
    client.logout()

    maildir = servers.maildir(user)
    assert (maildir / ".Archive.2025" / "maildirfolder").exists()
    assert (maildir / ".Entw&APw-rfe" / "maildirfolder").exists()
    assert tmailFolders == {"INBOX", "Archive", "Archive/2025", "Entw&APw-rfe", "Sent"}
    assert dovecotFolders == tmailFolders
    assert archiveViaDovecot == archive
    assert draftsViaDovecot == drafts


def test_subscriptions_made_with_tmail_are_honoured_by_dovecot(servers: Servers) -> None:
    user = servers.newUser()
    client = servers.tmailClient(user)
    for folder in ("Archive/2025", "Entw&APw-rfe", "Sent"):
        ok(client.create(folder))
    for folder in ("INBOX", "Archive/2025", "Entw&APw-rfe"):
        ok(client.subscribe(folder))
    tmailSubscribed = names(ok(client.lsub()))
    client.logout()

    client = servers.dovecotClient(user)
    dovecotSubscribed = names(ok(client.lsub()))
    client.logout()

    assert tmailSubscribed == {"INBOX", "Archive/2025", "Entw&APw-rfe"}
    assert dovecotSubscribed == tmailSubscribed


def test_folders_and_subscriptions_made_with_dovecot_are_listed_by_tmail(
    servers: Servers,
) -> None:
    user = servers.newUser()
    client = servers.dovecotClient(user)
    for folder in ("Archive/2025", "Entw&APw-rfe", "Sent"):
        ok(client.create(folder))
    ok(client.subscribe("Archive/2025"))
    ok(client.subscribe("Sent"))
    append(client, "Archive/2025", r"(\Seen $Junk)", 1_500_000_000, message(1))
    dovecotFolders = names(ok(client.list()))
    dovecotSubscribed = names(ok(client.lsub()))
    archive = view(client, "Archive/2025")
    client.logout()

    client = servers.tmailClient(user)
    tmailFolders = names(ok(client.list()))
    tmailSubscribed = names(ok(client.lsub()))
    archiveViaTmail = view(client, "Archive/2025")
    client.logout()

    assert dovecotFolders == {"INBOX", "Archive/2025", "Entw&APw-rfe", "Sent"}
    assert dovecotSubscribed == {"Archive/2025", "Sent"}
    assert tmailFolders == dovecotFolders
    assert tmailSubscribed == dovecotSubscribed
    assert archiveViaTmail == archive


def test_subscription_changes_made_with_tmail_are_honoured_by_dovecot_after_dovecot_wrote_the_file(
    servers: Servers,
) -> None:
    user = servers.newUser()
    client = servers.dovecotClient(user)
    for folder in ("Sent", "Archive/2025", "Entw&APw-rfe"):
        ok(client.create(folder))
        ok(client.subscribe(folder))
    client.logout()

    client = servers.tmailClient(user)
    ok(client.unsubscribe("Sent"))
    ok(client.create("Archive/2026"))
    ok(client.subscribe("Archive/2026"))
    client.logout()

    client = servers.dovecotClient(user)
    subscribed = names(ok(client.lsub()))
    client.logout()
    assert subscribed == {"Archive/2025", "Archive/2026", "Entw&APw-rfe"}


def test_keyword_letters_dovecot_gave_out_are_kept_by_tmail(servers: Servers) -> None:
    user = servers.newUser()
    client = servers.dovecotClient(user)
    append(client, "INBOX", "(First Second)", 1_500_000_000, message(1))
    client.logout()

    client = servers.tmailClient(user)
    ok(client.select("INBOX"))
    store(client, 1, "(Second Third)")
    client.logout()

    keywords = (servers.maildir(user) / "dovecot-keywords").read_text().split("\n")
    (stored,) = (servers.maildir(user) / "cur").iterdir()
    assert keywords[:3] == ["0 First", "1 Second", "2 Third"]
    assert stored.name.endswith(":2,bc")
    viaDovecot = viewThrough(servers.dovecotClient(user))
    assert viaDovecot.messages[1].flags == {"Second", "Third"}


def test_tmail_copy_of_a_message_dovecot_stored_looks_like_the_original(
    servers: Servers,
) -> None:
    user = servers.newUser()
    client = servers.dovecotClient(user)
    ok(client.create("Archive"))
    append(client, "INBOX", r"(\Seen Work)", 1_500_000_000, message(1))
    client.logout()

    client = servers.tmailClient(user)
    ok(client.select("INBOX"))
    ok(client.uid("COPY", "1", "Archive"))
    original = view(client).messages[1]
    copied = view(client, "Archive").messages[1]
    client.logout()
    viaDovecot = viewThrough(servers.dovecotClient(user), "Archive").messages[1]

    assert original.body == message(1)
    assert copied == original
    assert viaDovecot == original


def test_folders_renamed_or_deleted_by_one_server_keep_their_uids_in_the_other(
    servers: Servers,
) -> None:
    user = servers.newUser()
    client = servers.tmailClient(user)
    for folder in ("Projects", "Projects/Alpha", "Trash"):
        ok(client.create(folder))
    append(client, "Projects/Alpha", r"(\Seen Work)", 1_500_000_000, message(1))
    append(client, "Projects/Alpha", "", 1_500_000_100, message(2))
    alpha = view(client, "Projects/Alpha")
    client.logout()

    client = servers.dovecotClient(user)
    ok(client.rename("Projects", "Archive/Entw&APw-rfe"))
    ok(client.delete("Trash"))
    afterDovecot = names(ok(client.list()))
    client.logout()

    client = servers.tmailClient(user)
    listedByTmail = names(ok(client.list()))
    moved = view(client, "Archive/Entw&APw-rfe/Alpha")
    ok(client.rename("Archive/Entw&APw-rfe/Alpha", "Alpha"))
    client.logout()

    client = servers.dovecotClient(user)
    backAgain = view(client, "Alpha")
    client.logout()

    assert {"Archive/Entw&APw-rfe", "Archive/Entw&APw-rfe/Alpha"} <= afterDovecot
    assert listedByTmail == afterDovecot
    assert "Trash" not in listedByTmail
    assert moved == alpha
    assert backAgain == alpha


def rawAppend(port: int, user: str, raw: bytes) -> None:
    """APPEND C{raw} exactly as given (imaplib would turn bare LFs into CRLF)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        replies = connection.makefile("rb")
        replies.readline()
        connection.sendall(b'a LOGIN "%s" "%s"\r\n' % (user.encode(), PASSWORD.encode()))
        assert replies.readline().startswith(b"a OK"), "LOGIN refused"
        connection.sendall(b"b APPEND INBOX {%d+}\r\n%s\r\n" % (len(raw), raw))
        reply = replies.readline()
        assert reply.startswith(b"b OK"), reply
        connection.sendall(b"c LOGOUT\r\n")


def test_message_appended_to_tmail_with_bare_lf_looks_the_same_through_both(
    servers: Servers,
) -> None:
    user = servers.newUser()
    rawAppend(servers.tmail.ports["imap"], user, message(1).replace(b"\r\n", b"\n"))

    viaTmail = viewThrough(servers.tmailClient(user))
    viaDovecot = viewThrough(servers.dovecotClient(user))

    assert viaDovecot.messages[1].body == message(1)
    assert viaTmail == viaDovecot
