"""
One SMTP mail transaction (RFC 5321 3.3): from an accepted C{MAIL FROM},
through each accepted C{RCPT TO}, to the replies at the end of its content.

The session (L{tmail.smtp.server}) keeps one L{Transaction} while commands
arrive and hands it on when the content starts; each accepted recipient is
one L{AcceptedRecipient} record (what it asked for, where it leads, what
policies added for it), not an entry in several lists kept in step.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from tmail.delivery.destination import Destination, LocalUser
from tmail.delivery.envelope import MailFrom, RcptTo
from tmail.interfaces import IMailFolder

__all__ = ["AcceptedRecipient", "Transaction"]


@dataclass(frozen=True, slots=True)
class AcceptedRecipient:
    """
    A C{RCPT TO} the server accepted.

    @ivar rcpt: the command as parsed (its address, DSN parameters).
    @ivar destinations: the copies it needs: its local users' INBOXes,
        and the outbound queue when it leads elsewhere.
    @ivar remote: the addresses elsewhere it leads to (through an alias,
        or itself on submission).
    @ivar headers: the header fields policies added for it at C{RCPT}.
    """

    rcpt: RcptTo
    destinations: tuple[Destination, ...]
    remote: tuple[str, ...] = ()
    headers: bytes = b""

    @property
    def address(self) -> str:
        return self.rcpt.address

    @property
    def local(self) -> bool:
        """Whether some of its copies are stored here."""
        return any(isinstance(d, LocalUser) for d in self.destinations)


@dataclass(eq=False)
class Transaction:
    """
    A mail transaction in progress.

    @ivar mail: the accepted C{MAIL FROM}.
    @ivar headers: the header fields policies added at C{MAIL}.
    @ivar recipients: the accepted recipients, in C{RCPT} order.
    @ivar inboxes: the INBOX of each local user of the recipients, found
        at C{RCPT} so that the message's content waits for nothing.
    """

    mail: MailFrom
    headers: bytes = b""
    recipients: list[AcceptedRecipient] = field(default_factory=list)
    inboxes: dict[str, IMailFolder] = field(default_factory=dict)

    @property
    def sender(self) -> str:
        return self.mail.sender

    def accept(self, recipient: AcceptedRecipient, inboxes: Mapping[str, IMailFolder]) -> None:
        """Add an accepted recipient, with the INBOXes of its users."""
        self.recipients.append(recipient)
        self.inboxes.update(inboxes)

    def forwards(self) -> list[tuple[RcptTo, tuple[str, ...]]]:
        """Each recipient that leads elsewhere, with the addresses it leads to."""
        return [(r.rcpt, r.remote) for r in self.recipients if r.remote]
