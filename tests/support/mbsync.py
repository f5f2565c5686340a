"""An mbsync (isync) configuration for a tmail server under test."""

from __future__ import annotations

from pathlib import Path

from support.process import TmailServer


def writeMbsyncConfig(
    path: Path, server: TmailServer, user: str, password: str, local: Path, channel: str
) -> Path:
    """
    Write an mbsyncrc syncing C{user}'s mailboxes over IMAPS (trusting the
    test CA) with the Maildir C{local}; C{channel} is the Channel section,
    which says what to sync and how.
    """
    assert server.pki is not None
    path.write_text(
        f"""IMAPAccount tmail
Host localhost
Port {server.ports["imaps"]}
User {user}
Pass "{password}"
SSLType IMAPS
CertificateFile {server.pki.caCertificate}

IMAPStore remote
Account tmail

MaildirStore local
Path {local}/
Inbox {local}/INBOX
SubFolders Verbatim

{channel}"""
    )
    return path
