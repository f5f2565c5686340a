"""
The envelope of one message, as SMTP's C{MAIL FROM} and C{RCPT TO} gave
it (RFC 5321 3.3, with the parameters of SMTPUTF8, RFC 6531; DSN, RFC
3461; REQUIRETLS, RFC 8689): what delivery and the outbound queue keep of
a transaction.  Parsing them is the SMTP front end's
(L{tmail.smtp.commands}).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MailFrom", "RcptTo"]


@dataclass(frozen=True, slots=True)
class MailFrom:
    """
    A parsed C{MAIL FROM}.

    @ivar sender: C{local@domain}, or C{""} for the null reverse path.
    @ivar size: the declared C{SIZE=}, if any.
    @ivar body: C{BODY=}: C{"7BIT"}, C{"8BITMIME"} or C{"BINARYMIME"}.
    @ivar utf8: whether the transaction is SMTPUTF8 (RFC 6531).
    @ivar ret: DSN's C{RET=} (C{"FULL"} or C{"HDRS"}), if given.
    @ivar envid: DSN's C{ENVID=}, still xtext-encoded, if given.
    @ivar requireTLS: C{REQUIRETLS} (RFC 8689): the message may be passed on
        only over verified TLS.
    """

    sender: str
    size: int | None
    body: str = "7BIT"
    utf8: bool = False
    ret: str | None = None
    envid: str | None = None
    requireTLS: bool = False


@dataclass(frozen=True, slots=True)
class RcptTo:
    """
    A parsed C{RCPT TO}.

    @ivar address: C{local@domain} (or C{"postmaster"}).
    @ivar notify: DSN's C{NOTIFY=} (C{("NEVER",)} or some of SUCCESS,
        FAILURE, DELAY), if given.
    @ivar orcpt: DSN's C{ORCPT=} as sent (C{rfc822;xtext}), if given.
    """

    address: str
    notify: tuple[str, ...] | None = None
    orcpt: str | None = None
