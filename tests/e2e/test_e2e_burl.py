"""
Sending a draft without uploading it twice, against the real C{twistd -n
tmail}: C{imaplib} APPENDs a draft and asks GENURLAUTH for a C{submit+}
URL, C{smtplib} sends it over submission with BURL (RFC 4468), and the
recipient's INBOX holds the draft intact.
"""

from __future__ import annotations

import imaplib
import re
import smtplib
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.process import TmailServer
from tmail.store.maildir import BlockingMaildirStore

pytestmark = pytest.mark.e2e

SENDER = "erin@example.test"
RECIPIENT = "finn@example.test"
PASSWORD = "erin's password"
DRAFT = (
    b"From: Erin <erin@example.test>\r\n"
    b"To: Finn <finn@example.test>\r\n"
    b"Subject: the draft\r\n"
    b"Date: Mon, 2 Jun 2025 10:00:00 +0000\r\n"
    b"Message-ID: <draft-e2e@example.test>\r\n"
    b"\r\n"
    b"Written over IMAP, sent by URL.\r\n"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TmailServer]:
    instance = TmailServer(
        tmp_path_factory.mktemp("tmail-burl"),
        submissionExtra='burl_imap_host = "mail.example.test"',
    )
    instance.write()
    instance.addUser(SENDER, PASSWORD)
    instance.addUser(RECIPIENT, PASSWORD)
    instance.start()
    yield instance
    instance.stop()


def inbox(server: TmailServer, address: str) -> list[bytes]:
    local, domain = address.split("@")
    folder = BlockingMaildirStore(Path(server.folder / "data" / "mail" / domain / local)).getFolder(
        "INBOX"
    )
    found = []
    for info in folder.messages():
        with folder.openMessage(info.uid) as f:
            found.append(f.read())
    return found


def test_a_draft_appended_over_imap_is_sent_with_burl(server: TmailServer) -> None:
    imap = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=30)
    try:
        imap.login(SENDER, PASSWORD)
        typ, capabilities = imap.capability()
        assert b"URLAUTH" in capabilities[0].split() and b"CATENATE" in capabilities[0].split()
        imap.create("Drafts")
        typ, data = imap.append("Drafts", "(\\Draft)", None, DRAFT)
        assert typ == "OK", data
        found = re.search(rb"APPENDUID (\d+) (\d+)", data[0])
        assert found is not None
        validity, uid = (int(n) for n in found.groups())
        rump = (
            f"imap://erin%40example.test@mail.example.test/Drafts;UIDVALIDITY={validity}"
            f"/;UID={uid};URLAUTH=submit+erin%40example.test"
        )
        typ, data = imap.xatom("GENURLAUTH", f'"{rump}"', "INTERNAL")
        assert typ == "OK", data
        _, urls = imap.response("GENURLAUTH")
        assert urls and urls[0] is not None
        url = urls[0].strip(b'"').decode()
    finally:
        imap.logout()
    assert re.fullmatch(re.escape(rump) + ":internal:[0-9a-f]{64}", url), url

    assert server.pki is not None
    context = ssl.create_default_context(cafile=str(server.pki.caCertificate))
    with smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=30) as client:
        client.ehlo("client.example.org")
        assert not client.has_extn("burl")
        client.starttls(context=context)
        client.ehlo("client.example.org")
        assert client.esmtp_features.get("burl") == "imap", client.esmtp_features
        client.login(SENDER, PASSWORD)
        client.mail(SENDER)
        client.rcpt(RECIPIENT)
        code, text = client.docmd("BURL", url + " LAST")
    assert code == 250, text
    [stored] = inbox(server, RECIPIENT)
    assert stored.endswith(DRAFT), stored
