"""
Replies the SMTP and LMTP servers share, and client text made safe to log
and to quote in a reply.
"""

from __future__ import annotations

from tmail.smtp.commands import Reply

__all__ = [
    "INTERNAL_ERROR",
    "MAILBOX_FULL",
    "MAILBOX_FULL_TEMPORARY",
    "OK",
    "STORAGE_FULL",
    "printable",
]

OK = Reply(250, "2.0.0", "Ok")
INTERNAL_ERROR = Reply(451, "4.3.0", "Internal error")
STORAGE_FULL = Reply(452, "4.3.1", "Insufficient system storage")
MAILBOX_FULL = Reply(552, "5.2.2", "Mailbox full: quota exceeded")
MAILBOX_FULL_TEMPORARY = Reply(452, "4.2.2", "Mailbox full: quota exceeded")


def printable(text: str) -> str:
    """C{text} with anything but printable ASCII as C{?}, at most 200 characters."""
    return "".join(c if " " <= c <= "~" else "?" for c in text)[:200]
