# -*- test-case-name: tests.smtp.test_smtp_synchronization -*-
"""
Clients that do not wait for the server's turn: early talkers and
unnegotiated pipelining, which spambots do and real mail servers do not.

  - Early talkers (postscreen's pregreet test, sendmail's C{greet_pause}):
    the MX sends the first line of a multi-line greeting (C{220-}), waits
    C{greet_pause} seconds, then the last (C{220 }).  A client that sends
    anything before the last line did not read the greeting; with
    C{early_talkers = "reject"} it gets C{521 5.5.1 Protocol error}
    (postscreen's C{drop} action) and the connection is closed.
  - Pipelining (RFC 2920 3.1): after C{EHLO} (which offers PIPELINING) a
    client may send several commands without waiting, but C{EHLO} (and
    LMTP's C{LHLO}), C{DATA}, C{VRFY}, C{EXPN} and C{NOOP} must each end a
    group (C{QUIT}
    too, though nothing it is followed by is read, and C{STARTTLS}, whose
    followers are thrown away anyway, RFC 3207).  After C{HELO}, or before
    any greeting, nothing may be pipelined.  A command that arrives with
    more input already behind it is a violation; with C{unauth_pipelining
    = "reject"} an unauthenticated client gets C{554 5.5.0 Error: SMTP
    protocol synchronization} (Postfix 3.9's
    C{smtpd_forbid_unauth_pipelining}) and the connection is closed, the
    command unanswered.  BDAT is always followed by its chunk, and may be
    pipelined (RFC 3030).

What counts as "already behind it" is what had arrived when the command
was read: a client that waits for each reply never has anything there.
"""

from __future__ import annotations

from tmail.smtp.commands import Reply

__all__ = ["EARLY_TALKER", "UNSYNCHRONIZED", "mayBePipelined"]

EARLY_TALKER = Reply(521, "5.5.1", "Protocol error")
UNSYNCHRONIZED = Reply(554, "5.5.0", "Error: SMTP protocol synchronization")

#: RFC 2920 3.1: commands that must be the last of a pipelined group.
_LAST_IN_GROUP = frozenset(b"EHLO HELO LHLO DATA VRFY EXPN NOOP".split())
#: Commands whose followers are never read as commands.
_NOT_CHECKED = frozenset(b"QUIT STARTTLS BDAT".split())


def mayBePipelined(verb: bytes, pipelining: bool) -> bool:
    """
    Whether more input may follow the command C{verb} before its reply:
    C{pipelining} is whether the client greeted with C{EHLO} (and so was
    offered PIPELINING).
    """
    verb = verb.upper()
    if verb in _NOT_CHECKED:
        return True
    return pipelining and verb not in _LAST_IN_GROUP
