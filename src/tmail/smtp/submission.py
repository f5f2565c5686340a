# -*- test-case-name: tests.smtp.test_smtp_sender_rules -*-
"""
What submission (C{[submission]}, authenticated users) adds to SMTP: which
sender addresses a user may use, and the header fields a submitted message
gets when its client left them out.

Sender addresses.  A user may send as an address whose mail reaches that
user: its own address, its sub-addresses (C{alice+lists@}), and aliases
that resolve to it (an alias for several users may be used by each of
them, as Postfix does with C{smtpd_sender_login_maps} over the alias map;
a catch-all's users may use the addresses it catches, but never another
user's address, which resolves to that user alone).  The user's
C{tmail_senders} field (C{userdb_tmail_senders=news@example.test,@example.org}
in the passwd file) adds addresses, and C{@domain} for a whole domain.

What is checked is C{sender_check} of C{[submission]}, or the user's
C{tmail_sender_check} field:

  - C{"envelope+header"} (the default): C{MAIL FROM}, and at the end of
    DATA every address in the C{From} header field and in C{Sender} when
    there is one.  A foreign C{From} is not made acceptable by the user's
    own C{Sender}: that would let anyone put anyone's address in C{From}.
    A message without C{From} is let through (it claims nobody's address);
    a C{From} or C{Sender} that does not parse cleanly is refused, as a
    client could read an address the check did not.
  - C{"envelope"}: C{MAIL FROM} only, as Postfix's
    C{reject_sender_login_mismatch}.
  - C{"off"}: nothing.

The null sender (C{MAIL FROM:<>}, read receipts) is always allowed.  A
refusal is C{553 5.7.1}, at C{MAIL} (C{Sender address rejected: not owned
by user ...}, Postfix's wording) or at the end of DATA (C{From header
address rejected: ...}).

Missing fields.  A submitted message without C{Message-ID} gets
C{Message-ID: <random@hostname>}, and one without C{Date} gets the time it
arrived (RFC 6409 8.2 and 8.3), written at the end of its header section as
it streams in (see L{tmail.smtp.headerblock}); mail arriving at the MX is
never changed.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from datetime import datetime
from email.headerregistry import AddressHeader
from email.policy import SMTP
from email.utils import format_datetime
from typing import cast, get_args

from twisted.logger import Logger

from tmail.config.schema import SenderCheck
from tmail.errors import RecipientError
from tmail.interfaces import IMailRealm, IUserFields
from tmail.smtp.commands import Reply
from tmail.smtp.headerblock import Missing, fieldValues

__all__ = ["WATCHED_FIELDS", "SenderRules", "missingFields", "notOwned"]

_log = Logger()

_CHECKS: tuple[str, ...] = get_args(SenderCheck)
#: The fields of a message whose addresses must be the user's.
_ADDRESS_FIELDS = ("From", "Sender")


def missingFields(hostname: str) -> Missing:
    """
    The function a L{tmail.smtp.headerblock.HeaderScanner} calls at the end
    of a submitted message's header section: C{Message-ID} and C{Date}
    unless the message has them.
    """

    def missing(present: frozenset[str]) -> Sequence[tuple[str, str]]:
        fields = []
        if "message-id" not in present:
            fields.append(("Message-ID", f"<{secrets.token_hex(16)}@{hostname}>"))
        if "date" not in present:
            fields.append(("Date", format_datetime(datetime.now().astimezone())))
        return fields

    return missing


#: The header fields L{missingFields} looks for.
WATCHED_FIELDS = ("Message-ID", "Date")


def notOwned(user: str, what: str = "Sender") -> Reply:
    """
    The refusal of a sender address C{user} may not use, in C{MAIL FROM}
    (Postfix's wording) or in the header field C{what}.
    """
    return Reply(553, "5.7.1", f"{what} address rejected: not owned by user {user}")


class SenderRules:
    """
    Which sender addresses each user may use; see the module docstring.

    @ivar default: the C{sender_check} of C{[submission]}.
    """

    def __init__(self, realm: IMailRealm, default: SenderCheck = "envelope+header") -> None:
        self.realm = realm
        self.default = default

    def _fields(self, user: str) -> dict[str, str]:
        directory = self.realm.directory
        if not IUserFields.providedBy(directory):
            return {}
        fields: dict[str, str] = directory.userFields(user)
        return fields

    def checkFor(self, user: str) -> SenderCheck:
        """
        What is checked for C{user}: its C{tmail_sender_check} field, else
        the default.  A field with another value is ignored (and logged).
        """
        value = self._fields(user).get("tmail_sender_check")
        if value is None:
            return self.default
        if value not in _CHECKS:
            _log.warn(
                "User {user} has tmail_sender_check={value!r}; expected one of {checks}",
                user=user,
                value=value,
                checks=", ".join(_CHECKS),
            )
            return self.default
        return cast(SenderCheck, value)

    def mayUse(self, user: str, address: str) -> bool:
        """Whether C{user} may send as C{address}."""
        user = user.lower()
        wanted = address.lower()
        if wanted == user:
            return True
        _, _, domain = wanted.rpartition("@")
        extra = self._fields(user).get("tmail_senders", "")
        for allowed in extra.split(","):
            allowed = allowed.strip().lower()
            if allowed and (allowed == wanted or allowed == "@" + domain):
                return True
        try:
            return user in self.realm.resolveRecipient(address)
        except RecipientError:
            return False

    def envelopeRefusal(self, user: str, sender: str) -> Reply | None:
        """The refusal of C{MAIL FROM:<sender>} by C{user}, if it is refused."""
        if not sender or self.checkFor(user) == "off" or self.mayUse(user, sender):
            return None
        return notOwned(user)

    def headerRefusal(
        self, user: str, fields: Iterable[tuple[str, bytes]], complete: bool
    ) -> Reply | None:
        """
        The refusal of a message C{user} submitted with these header fields,
        if it is refused: an address in C{From} or C{Sender} it may not use,
        or a header section too large to check.
        """
        if self.checkFor(user) != "envelope+header":
            return None
        if not complete:
            return Reply(552, "5.3.4", "Message header too large")
        fields = list(fields)
        for name in _ADDRESS_FIELDS:
            for value in fieldValues(fields, name):
                for address in _addresses(name, value):
                    if address is None or not self.mayUse(user, address):
                        return notOwned(user, f"{name} header")
        return None


def _addresses(name: str, value: str) -> list[str | None]:
    """
    The addresses in a C{From} or C{Sender} value; C{None} stands for one
    that does not parse cleanly (or the whole value, when it does not).
    """
    header = cast(AddressHeader, SMTP.header_factory(name, value))
    if getattr(header, "defects", ()):
        return [None]
    addresses: list[str | None] = []
    for address in header.addresses:
        if not address.username or not address.domain:
            addresses.append(None)
        else:
            addresses.append(address.addr_spec)
    return addresses
