"""
The Maildir++ store: tmail's embedded default storage.

One user's Maildir holds INBOX in C{cur/ new/ tmp/} and every other folder
in a C{.Name.Sub} directory (see L{tmail.store.naming}).  The on-disk state
is the one Dovecot keeps (C{dovecot-uidlist}, C{dovecot-keywords},
C{:2,} flag letters, C{subscriptions}), so an operator can switch between
tmail and Dovecot without clients re-downloading mail.

Each folder keeps one in-memory index per process, shared by every session
(L{tmail.store.maildir.index}), refreshed from the directory mtimes: a call
that finds nothing changed costs two C{stat}s.  Sessions catch up from its
change log (L{tmail.store.maildir.changelog}).  A restarted process starts
from the saved index (L{tmail.store.maildir.savedindex}) and lists the
directories (L{tmail.store.maildir.scan}) only when they changed since.
Deliveries are written by L{tmail.store.maildir.pending}; the folder
(L{tmail.store.maildir.folder}) ties file work and index together, and
L{tmail.store.maildir.store} holds the user's folders.  File work runs
where the store's L{tmail.store.filework.FileWork} puts it: a thread pool
in a server, inline for tools (L{BlockingMaildirStore}).

A full disk (or quota) stops only the writes a user asked for that need
space (deliveries, copies, new keywords: L{tmail.errors.StoreFull}).
Reading needs no space: UIDs given to messages found meanwhile are kept in
memory until the uidlist can take them (tried again every second at most,
as the folder is used), files stay in C{new/} until they can be moved.
Deleting frees space, so it must work too: a flag change is a rename in
C{cur/}, an expunge unlinks the files, and what the mod-sequence log cannot
take is kept in memory and written later (see L{tmail.store.modseq}).  A
restart that loses what memory held finds the same changes on disk: flag
letters the log does not have, and messages the log or the uidlist lists
whose file is gone, which are expunges, never errors.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tmail.store.blocking import blocking
from tmail.store.filework import INLINE
from tmail.store.maildir.folder import MaildirFolder
from tmail.store.maildir.store import MaildirStore
from tmail.store.quota import QuotaLimits

__all__ = ["BlockingMaildirStore", "MaildirFolder", "MaildirStore"]


def BlockingMaildirStore(root: Path, quota: Callable[[], QuotaLimits] | None = None) -> Any:
    """
    The Maildir at C{root} for synchronous code (command-line tools,
    scripts, tests setting up or inspecting a Maildir): its file work is
    done inline and its operations, and those of its folders and pending
    messages, answer with their results (L{tmail.store.blocking}).  Not
    for a server's reactor thread.
    """
    return blocking(MaildirStore(root, quota=quota, fileWork=INLINE))
