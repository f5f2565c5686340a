# -*- test-case-name: tests.imap.test_imap_view -*-
"""
What STATUS reports of a folder, selected or not: read from the folder's
listing, with no session's view of it.
"""

from __future__ import annotations

from collections.abc import Iterable

from tmail.interfaces import IMailFolder, IModSeqFolder
from tmail.store.listing import factsOf


def folderStatus(folder: IMailFolder, names: Iterable[str]) -> dict[str, int]:
    """
    The STATUS items C{names} (upper case) of a folder; C{DELETED} and
    C{DELETED-STORAGE} are the QUOTA extension's (RFC 9208), C{SIZE} is
    STATUS=SIZE's (RFC 8438).
    """
    infos = folder.messages(claimRecent=False)
    facts = factsOf(infos)
    values = {
        "HIGHESTMODSEQ": lambda: highestModSeq(folder),
        "MESSAGES": lambda: len(infos),
        "RECENT": lambda: len(facts.recent),
        "UIDNEXT": lambda: folder.uidNext(),
        "UIDVALIDITY": lambda: folder.uidValidity(),
        "UNSEEN": lambda: facts.unseen,
        "DELETED": lambda: facts.deleted,
        "DELETED-STORAGE": lambda: (facts.deletedSize + 1023) // 1024,
        "SIZE": lambda: facts.size,
    }
    return {name: values[name]() for name in names}


def highestModSeq(folder: IMailFolder) -> int:
    """
    The folder's HIGHESTMODSEQ (RFC 7162), 0 for a folder that keeps no
    mod-sequences (STATUS then reports 0, as RFC 7162 3.1.10 asks).
    """
    if IModSeqFolder.providedBy(folder):
        value: int = folder.highestModSeq()
        return value
    return 0
