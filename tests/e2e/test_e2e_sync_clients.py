"""
Two-way folder-tree synchronisation with Debian's mbsync (isync) and
offlineimap against the real C{twistd -n tmail} over implicit TLS.

Each client syncs a local Maildir tree (nested, non-ASCII and flagged) with a
mailbox that already has mail delivered by SMTP and flagged over IMAP; the
first run carries everything both ways, the second changes nothing on either
side, a third carries one change made on each side and a fourth is idle again.
"""

from __future__ import annotations

import email
import shutil
import smtplib
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from imapclient import IMAPClient

from support.mbsync import writeMbsyncConfig
from support.process import TmailServer

pytestmark = pytest.mark.e2e

PASSWORD = "sync password"
LOCAL_FOLDERS = ("INBOX", "Archive", "Archive/2025", "Entwürfe", "Sent")
SERVER_ONLY_FOLDER = "Projects/Alpha"

ServerState = dict[str, tuple[tuple[int, int], dict[int, tuple[frozenset[str], str, bytes]]]]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TmailServer]:
    instance = TmailServer(tmp_path_factory.mktemp("tmail-sync"))
    instance.write()
    for user in ("mia@example.test", "olaf@example.test"):
        instance.addUser(user, PASSWORD)
    instance.start()
    yield instance
    instance.stop()


def message(messageId: str, subject: str, sender: str = "x@example.org") -> bytes:
    return (
        f"From: {sender}\r\nTo: owner@example.test\r\nSubject: {subject}\r\n"
        f"Message-ID: <{messageId}@example.test>\r\n"
        "Date: Sat, 01 Nov 2025 10:00:00 +0000\r\n\r\n"
        f"Body of {subject}.\r\n"
    ).encode()


def connect(server: TmailServer, user: str) -> IMAPClient:
    assert server.pki is not None
    client = IMAPClient(
        "localhost",
        port=server.ports["imaps"],
        ssl=True,
        ssl_context=server.pki.clientContext(),
        timeout=30,
    )
    client.login(user, PASSWORD)
    return client


def messageIdOf(raw: bytes) -> str:
    return str(email.message_from_bytes(raw)["Message-ID"]).strip("<>").split("@")[0]


def serverState(server: TmailServer, user: str) -> ServerState:
    """Every folder's UIDVALIDITY and UIDNEXT and each UID's flags, Message-ID and text."""
    state: ServerState = {}
    with connect(server, user) as client:
        for flags, _, name in client.list_folders():
            if {b"\\Noselect", b"\\NonExistent"} & {f for f in flags if isinstance(f, bytes)}:
                continue
            selected = client.select_folder(name, readonly=True)
            uids = client.search("ALL")
            fetched = client.fetch(
                uids, ["FLAGS", "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]", "BODY.PEEK[TEXT]"]
            )
            state[name] = (
                (int(selected[b"UIDVALIDITY"]), int(selected[b"UIDNEXT"])),
                {
                    uid: (
                        frozenset(f.decode() for f in data[b"FLAGS"]) - {"\\Recent"},
                        messageIdOf(data[b"BODY[HEADER.FIELDS (MESSAGE-ID)]"]),
                        data[b"BODY[TEXT]"],
                    )
                    for uid, data in fetched.items()
                },
            )
    return state


def flagsById(state: ServerState, folder: str) -> dict[str, frozenset[str]]:
    return {mid: flags for flags, mid, _ in state[folder][1].values()}


def textsById(state: ServerState, folder: str) -> dict[str, bytes]:
    return {mid: text.replace(b"\r\n", b"\n") for _, mid, text in state[folder][1].values()}


def localTexts(folder: Path) -> dict[str, bytes]:
    return {
        messageIdOf(raw): raw.split(b"\n\n", 1)[1]
        for raw in (p.read_bytes() for p in messageFiles(folder))
    }


def writeLocal(folder: Path, messageId: str, subject: str, flags: str = "") -> Path:
    """Drop a message into a local Maildir the way a mail reader files one."""
    for sub in ("cur", "new", "tmp"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    raw = message(messageId, subject, "owner@example.test").replace(b"\r\n", b"\n")
    name = f"{int(time.time())}.{messageId}.localhost"
    path = folder / "cur" / f"{name}:2,{flags}" if flags else folder / "new" / name
    path.write_bytes(raw)
    return path


def localFiles(root: Path) -> dict[str, bytes]:
    """Every folder and message file under C{root} by relative path, state files left out."""
    found = {f"{p.parent.relative_to(root)}/": b"" for p in root.rglob("cur") if p.is_dir()}
    for p in root.rglob("*"):
        if p.is_file() and p.parent.name in ("cur", "new"):
            found[str(p.relative_to(root))] = p.read_bytes()
    return found


def localFlags(folder: Path) -> dict[str, str]:
    """Message-ID to Maildir flag letters for one local folder."""
    return {
        messageIdOf(p.read_bytes()): "".join(sorted(p.name.partition(":2,")[2]))
        for p in messageFiles(folder)
    }


def uidsById(client: IMAPClient) -> dict[str, int]:
    """Message-ID to UID in the selected folder."""
    fetched = client.fetch(client.search("ALL"), ["BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"])
    return {messageIdOf(d[b"BODY[HEADER.FIELDS (MESSAGE-ID)]"]): uid for uid, d in fetched.items()}


def seedServer(server: TmailServer, user: str) -> None:
    """Mail that is on the server before the first sync: delivered, filed and flagged."""
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as smtp:
        for n in range(1, 5):
            smtp.sendmail("x@example.org", [user], message(f"srv-{n}", f"server {n}"))
    with connect(server, user) as client:
        client.create_folder(SERVER_ONLY_FOLDER)
        client.append(SERVER_ONLY_FOLDER, message("srv-alpha", "alpha plan"), flags=["\\Seen"])
        client.select_folder("INBOX")
        byId = uidsById(client)
        client.add_flags([byId["srv-1"]], ["\\Seen"])
        client.add_flags([byId["srv-2"]], ["\\Seen", "\\Flagged", "\\Answered"])
        client.add_flags([byId["srv-4"]], ["\\Seen", "\\Deleted"])


def seedLocal(folderPath: dict[str, Path]) -> None:
    writeLocal(folderPath["INBOX"], "loc-inbox", "local inbox", "S")
    writeLocal(folderPath["INBOX"], "loc-unread", "local unread")
    writeLocal(folderPath["Archive"], "loc-arch-old", "archived long ago", "S")
    writeLocal(folderPath["Archive/2025"], "loc-arch-1", "archived one", "FS")
    writeLocal(folderPath["Archive/2025"], "loc-arch-2", "archived two", "RS")
    writeLocal(folderPath["Entwürfe"], "loc-draft", "Entwurf", "D")
    writeLocal(folderPath["Sent"], "loc-sent", "sent one", "S")
    writeLocal(folderPath["Sent"], "loc-trashed", "sent and trashed", "ST")


EXPECTED_AFTER_FIRST_RUN: dict[str, dict[str, str]] = {
    "INBOX": {"srv-1": "S", "srv-2": "FRS", "srv-3": "", "loc-inbox": "S", "loc-unread": ""},
    "Archive": {"loc-arch-old": "S"},
    "Archive/2025": {"loc-arch-1": "FS", "loc-arch-2": "RS"},
    "Entwürfe": {"loc-draft": "D"},
    "Sent": {"loc-sent": "S"},
    SERVER_ONLY_FOLDER: {"srv-alpha": "S"},
}
KEPT_DELETED = {"INBOX": {"srv-4": "ST"}, "Sent": {"loc-trashed": "ST"}}
IMAP_FLAG = {"S": "\\Seen", "F": "\\Flagged", "R": "\\Answered", "D": "\\Draft", "T": "\\Deleted"}


def asImapFlags(letters: str) -> frozenset[str]:
    return frozenset(IMAP_FLAG[c] for c in letters)


def assertBothSidesHold(
    state: ServerState,
    folderPath: dict[str, Path],
    expected: dict[str, dict[str, str]],
    expunges: bool,
) -> None:
    """Both sides hold C{expected} with the same texts; a client that does not expunge
    keeps \\Deleted ones too."""
    if not expunges:
        expected = {f: {**m, **KEPT_DELETED.get(f, {})} for f, m in expected.items()}
    assert set(expected) <= set(state)
    assert all(not state[f][1] for f in set(state) - set(expected)), "unexpected mail"
    for folder, messages in expected.items():
        assert flagsById(state, folder) == {m: asImapFlags(f) for m, f in messages.items()}, folder
        assert localFlags(folderPath[folder]) == messages, folder
        assert localTexts(folderPath[folder]) == textsById(state, folder), folder


def messageFiles(folder: Path) -> list[Path]:
    subs = [folder / "cur", folder / "new"]
    return [p for sub in subs if sub.is_dir() for p in sub.iterdir()]


def relabel(folder: Path, flags: dict[str, str]) -> None:
    """Set Maildir flag letters by Message-ID, as a mail reader marking messages does."""
    for p in messageFiles(folder):
        letters = flags.get(messageIdOf(p.read_bytes()))
        if letters is not None:
            p.rename(folder / "cur" / f"{p.name.partition(':2,')[0]}:2,{letters}")


def changeBothSides(server: TmailServer, user: str, folderPath: dict[str, Path]) -> None:
    """On the server: flag one, deliver one, expunge one; locally: the same kinds of change."""
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as smtp:
        smtp.sendmail("x@example.org", [user], message("srv-5", "server 5"))
    with connect(server, user) as client:
        client.select_folder("INBOX")
        byId = uidsById(client)
        client.add_flags([byId["srv-3"]], ["\\Seen", "\\Flagged"])
        client.add_flags([byId["loc-unread"]], ["\\Deleted"])
        client.expunge([byId["loc-unread"]])
    relabel(folderPath["INBOX"], {"srv-2": "RS", "loc-inbox": "FS"})
    for p in messageFiles(folderPath["Archive/2025"]):
        if messageIdOf(p.read_bytes()) == "loc-arch-2":
            p.unlink()
    writeLocal(folderPath["Sent"], "loc-sent-2", "sent two", "S")


EXPECTED_AFTER_CHANGES: dict[str, dict[str, str]] = {
    **EXPECTED_AFTER_FIRST_RUN,
    "INBOX": {"srv-1": "S", "srv-2": "RS", "srv-3": "FS", "srv-5": "", "loc-inbox": "FS"},
    "Archive/2025": {"loc-arch-1": "FS"},
    "Sent": {"loc-sent": "S", "loc-sent-2": "S"},
}


def syncTwiceEachWay(
    server: TmailServer,
    user: str,
    local: Path,
    folderPath: dict[str, Path],
    sync: Callable[[], str],
    busy: tuple[str, ...],
    expunges: bool,
) -> None:
    """Seed both sides, then sync, sync idle, change both sides, sync, sync idle.

    C{busy} are words in the client's output that only a run doing work prints;
    C{expunges} says whether the client expunges messages flagged \\Deleted (mbsync's
    C{Expunge Both}) or carries them across as flagged (offlineimap).
    """
    seedServer(server, user)
    seedLocal(folderPath)
    sync()
    first = serverState(server, user)
    assertBothSidesHold(first, folderPath, EXPECTED_AFTER_FIRST_RUN, expunges)
    files = localFiles(local)
    output = sync()
    assert serverState(server, user) == first
    assert localFiles(local) == files
    assert not [w for w in (*busy, "Creat") if w in output], output

    changeBothSides(server, user, folderPath)
    sync()
    third = serverState(server, user)
    assertBothSidesHold(third, folderPath, EXPECTED_AFTER_CHANGES, expunges)
    files = localFiles(local)
    output = sync()
    assert serverState(server, user) == third
    assert localFiles(local) == files
    assert not [w for w in (*busy, "Creat") if w in output], output


@pytest.mark.skipif(shutil.which("mbsync") is None, reason="mbsync (isync) not installed")
def test_mbsync_syncs_a_flagged_folder_tree_both_ways_and_reruns_change_nothing(
    server: TmailServer, tmp_path: Path
) -> None:
    """isync 1.4 names local folders by their IMAP names, so Entwürfe is the
    modified UTF-7 C{Entw&APw-rfe} on disk (it sends a UTF-8 name verbatim, which
    a server without UTF8=ACCEPT rightly refuses)."""
    assert server.pki is not None
    user = "mia@example.test"
    local = tmp_path / "mail"
    folderPath = {name: local / name for name in (*LOCAL_FOLDERS, SERVER_ONLY_FOLDER)}
    folderPath["Entwürfe"] = local / "Entw&APw-rfe"
    config = writeMbsyncConfig(
        tmp_path / "mbsyncrc",
        server,
        user,
        PASSWORD,
        local,
        """Channel tree
Far :remote:
Near :local:
Patterns *
Sync All
Create Both
Expunge Both
SyncState *
""",
    )

    def sync() -> str:
        result = subprocess.run(
            ["mbsync", "-V", "-c", str(config), "-a"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout + result.stderr

    syncTwiceEachWay(server, user, local, folderPath, sync, busy=(), expunges=True)


@pytest.mark.skipif(
    shutil.which("offlineimap") is None, reason="offlineimap (Debian offlineimap3) not installed"
)
def test_offlineimap_syncs_a_flagged_folder_tree_both_ways_and_reruns_change_nothing(
    server: TmailServer, tmp_path: Path
) -> None:
    """offlineimap keeps \\Deleted as a flag both ways and expunges only what it
    deletes itself; C{utf8foldernames} gives Entwürfe its UTF-8 name on disk."""
    assert server.pki is not None
    user = "olaf@example.test"
    local = tmp_path / "mail"
    folderPath = {name: local / name for name in (*LOCAL_FOLDERS, SERVER_ONLY_FOLDER)}
    config = tmp_path / "offlineimaprc"
    config.write_text(
        f"""[general]
accounts = tmail
metadata = {tmp_path / "metadata"}
ui = basic

[Account tmail]
localrepository = local
remoterepository = remote
utf8foldernames = yes

[Repository local]
type = Maildir
localfolders = {local}
sep = /

[Repository remote]
type = IMAP
remotehost = localhost
remoteport = {server.ports["imaps"]}
ssl = yes
sslcacertfile = {server.pki.caCertificate}
remoteuser = {user}
remotepass = {PASSWORD}
maxconnections = 1
"""
    )

    def sync() -> str:
        result = subprocess.run(
            ["offlineimap", "-c", str(config), "-u", "basic", "-o"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        output = result.stdout + result.stderr
        assert result.returncode == 0, output
        assert "ERROR" not in output, output
        return output

    syncTwiceEachWay(
        server,
        user,
        local,
        folderPath,
        sync,
        busy=("Copy message", "Adding flag", "Deleting flag", "Deleting "),
        expunges=False,
    )
