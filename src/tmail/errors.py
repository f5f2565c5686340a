"""Exceptions shared by stores, realms and front ends."""

from __future__ import annotations


class TmailError(Exception):
    """Base of tmail's own errors."""


class StoreError(TmailError):
    """A storage operation failed."""


class NoSuchFolder(StoreError):
    """The folder does not exist (IMAP answers C{NO [TRYCREATE]} where it applies)."""


class FolderExists(StoreError):
    """A folder of that name already exists."""


class InvalidFolderName(StoreError):
    """The folder name is not allowed (traversal, reserved name, bad encoding)."""


class StoreFull(StoreError):
    """The disk (or quota) refused the write; nothing was half written."""


class OverQuota(StoreFull):
    """
    The write would take the user over a quota limit (RFC 5530 OVERQUOTA,
    RFC 3463 5.2.2/4.2.2).  A L{StoreFull}, so a front end that does not
    know quotas still refuses the write as storage exhausted.

    @ivar resource: C{"storage"} or C{"messages"}: the limit that refused.
    """

    def __init__(self, message: str, resource: str = "storage") -> None:
        super().__init__(message)
        self.resource = resource


class RecipientError(TmailError):
    """A recipient address cannot be delivered to here."""


class UnknownRecipient(RecipientError):
    """No such user (or alias) in a hosted domain."""


class NotHostedDomain(RecipientError):
    """The domain is not one of ours."""


class ConfigError(TmailError):
    """
    A configuration problem, reported as one line naming the file, the key
    and the problem.
    """

    def __init__(self, path: str, key: str, problem: str) -> None:
        super().__init__(f"{path}: {key}: {problem}")
        self.path = path
        self.key = key
        self.problem = problem


class DirectoryError(TmailError):
    """A directory change was refused (unknown domain, existing user, ...)."""
