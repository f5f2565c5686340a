# -*- test-case-name: tests.queue.test_queue_store -*-
"""
What a queue entry is: the envelope, its DSN parameters (RFC 3461) and each
recipient's delivery state, and the JSON form they are kept in.

Entries are immutable values; the store writes a changed copy
(L{dataclasses.replace}) as a whole, so a reader sees the old metadata or
the new, never half of either.  No pickles: the metadata is plain JSON,
readable by an operator and safe to load whoever wrote it.

A recipient is I{active} while it is L{State.PENDING} (never tried) or
L{State.DEFERRED} (tried, failed temporarily); L{State.DELIVERED} and
L{State.FAILED} are final.  A final recipient may still be owed a notice
(a DSN to the sender: failure, or success when C{NOTIFY=SUCCESS} was asked
and the receiving server did not take that duty over); an entry is I{done},
and removed, once every recipient is final and no notice is owed.  Nothing
is ever owed to the null sender C{<>}.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from tmail.errors import StoreError

if TYPE_CHECKING:
    from tmail.delivery.envelope import MailFrom, RcptTo

__all__ = [
    "FORMAT_VERSION",
    "CorruptEntry",
    "Diagnostic",
    "Envelope",
    "NoSuchEntry",
    "Notice",
    "Outcome",
    "QueueEntry",
    "Recipient",
    "State",
    "UnknownVersion",
    "entryFromJson",
    "entryToDict",
    "entryToJson",
]

#: The metadata format; an entry written in a later format is left alone.
FORMAT_VERSION = 1
#: RFC 3461 4.1: without NOTIFY, an MTA notifies on failure and may on delay.
DEFAULT_NOTIFY = ("FAILURE", "DELAY")


class NoSuchEntry(StoreError):
    """No queue entry of that ID (never was, or delivered or deleted since)."""


class CorruptEntry(StoreError):
    """An entry's metadata cannot be read (not JSON, or not an entry)."""


class State(enum.StrEnum):
    """Where one recipient's delivery stands."""

    PENDING = "pending"
    DEFERRED = "deferred"
    DELIVERED = "delivered"
    FAILED = "failed"


class Notice(enum.StrEnum):
    """The kinds of DSN, named as RFC 3461's NOTIFY keywords (lower case)."""

    FAILURE = "failure"
    DELAY = "delay"
    SUCCESS = "success"


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """
    What an attempt came to, for the logs, C{tmail queue} and the DSN.

    @ivar status: the RFC 3463 enhanced status code (C{"4.4.1"}); its class
        says whether the failure is temporary (4) or permanent (5).
    @ivar text: the server's reply text, or what went wrong when no server
        answered (C{"no MX or address for example.net"}); one line.
    @ivar code: the SMTP reply code when a server answered, else C{None}.
    @ivar remoteMta: the host that answered, if any (the DSN's Remote-MTA).
    """

    status: str
    text: str
    code: int | None = None
    remoteMta: str | None = None

    @property
    def permanent(self) -> bool:
        """Whether retrying cannot help (a 5.x.x status, or a 5yz reply)."""
        if self.code is not None and 500 <= self.code < 600:
            return True
        return self.status.startswith("5")

    def describe(self) -> str:
        """One line for people: C{mx.example.net said: 550 5.1.1 No such user}."""
        reply = f"{self.code} {self.status} {self.text}" if self.code else self.text
        if self.code is not None and self.remoteMta:
            return f"{self.remoteMta} said: {reply}"
        if self.remoteMta:
            return f"{self.remoteMta}: {reply}"
        return reply


@dataclass(frozen=True, slots=True)
class Recipient:
    """
    One envelope recipient and its delivery state.

    @ivar address: C{local@domain} as the client gave it.
    @ivar notify: DSN's C{NOTIFY} (C{("NEVER",)} or some of C{SUCCESS},
        C{FAILURE}, C{DELAY}), C{None} when not given.
    @ivar orcpt: DSN's C{ORCPT} as given (C{"rfc822;xtext"}), if any.
    @ivar state: see L{State}.
    @ivar attempts: how many delivery attempts were made.
    @ivar nextAttempt: when an active recipient is next due (epoch seconds).
    @ivar lastAttempt: when the last attempt ended, if there was one.
    @ivar diagnostic: what the last attempt came to.
    @ivar dsnPassedOn: for a delivered recipient: the receiving server
        accepted the DSN request, so success notices are its duty now.
    @ivar noticeSent: the notice this recipient's final state calls for was
        queued (or the sender was told some other way).
    @ivar delayNoticeSent: a delay notice was queued for this recipient.
    """

    address: str
    notify: tuple[str, ...] | None = None
    orcpt: str | None = None
    state: State = State.PENDING
    attempts: int = 0
    nextAttempt: float = 0.0
    lastAttempt: float | None = None
    diagnostic: Diagnostic | None = None
    dsnPassedOn: bool = False
    noticeSent: bool = False
    delayNoticeSent: bool = False

    @property
    def active(self) -> bool:
        """Whether delivery is still to be attempted."""
        return self.state in (State.PENDING, State.DEFERRED)

    def wants(self, notice: Notice) -> bool:
        """Whether the sender asked (or by default gets) this kind of notice."""
        return notice.value.upper() in (self.notify or DEFAULT_NOTIFY)

    def owedNotice(self) -> Notice | None:
        """
        The notice this final recipient still needs (ignoring the sender; see
        L{QueueEntry.noticesOwed}), or C{None}.
        """
        if self.noticeSent:
            return None
        if self.state is State.FAILED and self.wants(Notice.FAILURE):
            return Notice.FAILURE
        if self.state is State.DELIVERED and not self.dsnPassedOn and self.wants(Notice.SUCCESS):
            return Notice.SUCCESS
        return None


@dataclass(frozen=True, slots=True)
class Outcome:
    """
    What one attempt came to for one recipient, as the runner records it
    with L{tmail.queue.store.QueueStore.record}.  Build with L{delivered},
    L{deferred} or L{failed} (or L{tmail.queue.schedule.RetrySchedule.judge}).
    """

    state: State
    diagnostic: Diagnostic | None = None
    nextAttempt: float | None = None
    dsnPassedOn: bool = False

    def __post_init__(self) -> None:
        if self.state is State.PENDING:
            raise ValueError("an attempt cannot leave a recipient untried")
        if self.state is State.DEFERRED and self.nextAttempt is None:
            raise ValueError("a deferred recipient needs a next attempt time")

    @classmethod
    def delivered(cls, diagnostic: Diagnostic | None = None, dsnPassedOn: bool = False) -> Outcome:
        """The receiving server took the message for this recipient."""
        return cls(State.DELIVERED, diagnostic, None, dsnPassedOn)

    @classmethod
    def deferred(cls, diagnostic: Diagnostic, nextAttempt: float) -> Outcome:
        """A temporary failure: try again at C{nextAttempt}."""
        return cls(State.DEFERRED, diagnostic, nextAttempt)

    @classmethod
    def failed(cls, diagnostic: Diagnostic) -> Outcome:
        """A permanent failure, or a temporary one that lasted too long."""
        return cls(State.FAILED, diagnostic)

    def applyTo(self, recipient: Recipient, now: float) -> Recipient:
        """The recipient after this attempt, which ended at C{now}."""
        return replace(
            recipient,
            state=self.state,
            attempts=recipient.attempts + 1,
            lastAttempt=now,
            nextAttempt=self.nextAttempt if self.nextAttempt is not None else 0.0,
            diagnostic=self.diagnostic,
            dsnPassedOn=self.dsnPassedOn,
        )


@dataclass(frozen=True, slots=True)
class Envelope:
    """
    What a new entry is queued with: the SMTP envelope and its parameters.

    @ivar sender: C{local@domain}, or C{""} for the null reverse path.
    @ivar recipients: new L{Recipient}s (address, NOTIFY, ORCPT); a repeated
        address is kept once.
    @ivar body: C{BODY=}: C{"7BIT"}, C{"8BITMIME"} or C{"BINARYMIME"}.
    @ivar utf8: whether the message needs SMTPUTF8 to be passed on.
    @ivar ret: DSN's C{RET} (C{"FULL"} or C{"HDRS"}), if given.
    @ivar envid: DSN's C{ENVID}, xtext-encoded as received, if given.
    @ivar requireTLS: C{REQUIRETLS} (RFC 8689): pass it on only over
        verified TLS to servers that offer REQUIRETLS.
    """

    sender: str
    recipients: tuple[Recipient, ...]
    body: str = "7BIT"
    utf8: bool = False
    ret: str | None = None
    envid: str | None = None
    requireTLS: bool = False

    @classmethod
    def fromSMTP(cls, mailFrom: MailFrom, recipients: Iterable[RcptTo]) -> Envelope:
        """The envelope an SMTP transaction gave (L{tmail.smtp.commands})."""
        return cls(
            sender=mailFrom.sender,
            recipients=tuple(Recipient(r.address, r.notify, r.orcpt) for r in recipients),
            body=mailFrom.body,
            utf8=mailFrom.utf8,
            ret=mailFrom.ret,
            envid=mailFrom.envid,
            requireTLS=mailFrom.requireTLS,
        )


@dataclass(frozen=True, slots=True)
class QueueEntry:
    """
    One queued message: its envelope and every recipient's state.

    @ivar id: the entry's ID (see L{tmail.queue.store.newEntryId}): sorts
        by arrival.
    @ivar arrival: when the entry was committed (epoch seconds).
    @ivar size: the message's size in octets.
    @ivar requireTLS: the message is marked C{REQUIRETLS} (RFC 8689).
    @ivar held: an operator put the entry on hold: no attempts until released.
    """

    id: str
    sender: str
    arrival: float
    recipients: tuple[Recipient, ...]
    size: int = 0
    body: str = "7BIT"
    utf8: bool = False
    ret: str | None = None
    envid: str | None = None
    requireTLS: bool = False
    held: bool = False

    def recipient(self, address: str) -> Recipient:
        """The recipient C{address}; C{KeyError} when the entry has none."""
        for r in self.recipients:
            if r.address == address:
                return r
        raise KeyError(address)

    def active(self) -> tuple[Recipient, ...]:
        """The recipients still to be attempted."""
        return tuple(r for r in self.recipients if r.active)

    def nextAttempt(self) -> float | None:
        """When the earliest active recipient is due; C{None} when none is."""
        return min((r.nextAttempt for r in self.recipients if r.active), default=None)

    def isDue(self, now: float) -> bool:
        """Whether an attempt is due at C{now} (never while held)."""
        due = self.nextAttempt()
        return not self.held and due is not None and due <= now

    def dueRecipients(self, now: float) -> tuple[Recipient, ...]:
        """The active recipients due at C{now} (none while held)."""
        if self.held:
            return ()
        return tuple(r for r in self.recipients if r.active and r.nextAttempt <= now)

    def noticesOwed(self) -> dict[Notice, tuple[Recipient, ...]]:
        """
        The failure and success notices still to be queued, by kind, for
        recipients in a final state.  Empty for the null sender.
        """
        owed: dict[Notice, list[Recipient]] = {}
        if self.sender:
            for r in self.recipients:
                notice = r.owedNotice()
                if notice is not None:
                    owed.setdefault(notice, []).append(r)
        return {notice: tuple(rs) for notice, rs in owed.items()}

    def delayNoticeCandidates(self) -> tuple[Recipient, ...]:
        """
        The active recipients that were tried, asked for (or by default get)
        delay notices, and were not sent one yet; whether one is due yet is
        L{tmail.queue.schedule.RetrySchedule.delayWarningDue}'s to say.
        """
        if not self.sender:
            return ()
        return tuple(
            r
            for r in self.recipients
            if r.state is State.DEFERRED and not r.delayNoticeSent and r.wants(Notice.DELAY)
        )

    def isDone(self) -> bool:
        """Whether every recipient is final and no notice is owed."""
        return not self.active() and not self.noticesOwed()

    def withRecipients(self, recipients: Sequence[Recipient]) -> QueueEntry:
        """A copy with C{recipients} in place of the ones of the same address."""
        byAddress = {r.address: r for r in recipients}
        return replace(self, recipients=tuple(byAddress.pop(r.address, r) for r in self.recipients))

    def recorded(self, outcomes: Mapping[str, Outcome], now: float) -> QueueEntry:
        """
        A copy with each attempt's outcome applied; C{KeyError} for an address
        that is not a recipient, C{ValueError} for one already final.
        """
        changed = []
        for address, outcome in outcomes.items():
            r = self.recipient(address)
            if not r.active:
                raise ValueError(f"{address} is already {r.state}")
            changed.append(outcome.applyTo(r, now))
        return self.withRecipients(changed)

    def noticeSent(self, addresses: Iterable[str], notice: Notice) -> QueueEntry:
        """A copy recording that C{notice} was queued for C{addresses}."""
        if notice is Notice.DELAY:
            changed = [replace(self.recipient(a), delayNoticeSent=True) for a in addresses]
        else:
            changed = [replace(self.recipient(a), noticeSent=True) for a in addresses]
        return self.withRecipients(changed)


def _diagnosticToDict(d: Diagnostic | None) -> dict[str, Any] | None:
    if d is None:
        return None
    return {"status": d.status, "text": d.text, "code": d.code, "remoteMta": d.remoteMta}


def entryToDict(entry: QueueEntry) -> dict[str, Any]:
    """The JSON object an entry is kept as (also C{tmail queue list --json})."""
    return {
        "version": FORMAT_VERSION,
        "id": entry.id,
        "sender": entry.sender,
        "arrival": entry.arrival,
        "size": entry.size,
        "body": entry.body,
        "smtputf8": entry.utf8,
        "ret": entry.ret,
        "envid": entry.envid,
        "requiretls": entry.requireTLS,
        "held": entry.held,
        "recipients": [
            {
                "address": r.address,
                "notify": list(r.notify) if r.notify is not None else None,
                "orcpt": r.orcpt,
                "state": r.state.value,
                "attempts": r.attempts,
                "nextAttempt": r.nextAttempt,
                "lastAttempt": r.lastAttempt,
                "diagnostic": _diagnosticToDict(r.diagnostic),
                "dsnPassedOn": r.dsnPassedOn,
                "noticeSent": r.noticeSent,
                "delayNoticeSent": r.delayNoticeSent,
            }
            for r in entry.recipients
        ],
    }


def entryToJson(entry: QueueEntry) -> bytes:
    """The metadata file's contents."""
    return json.dumps(entryToDict(entry), ensure_ascii=False, indent=1).encode("utf-8") + b"\n"


class _Reader:
    """Typed access to a decoded JSON object, raising L{CorruptEntry}."""

    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, dict):
            raise CorruptEntry(f"{where}: not an object")
        self._data: dict[str, Any] = data
        self._where = where

    def _get(self, key: str, kinds: tuple[type, ...], optional: bool) -> Any:
        value = self._data.get(key)
        if value is None and optional:
            return None
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            raise CorruptEntry(f"{self._where}: {key}: {value!r}")
        return value

    def text(self, key: str) -> str:
        value: str = self._get(key, (str,), False)
        return value

    def optionalText(self, key: str) -> str | None:
        value: str | None = self._get(key, (str,), True)
        return value

    def integer(self, key: str) -> int:
        value: int = self._get(key, (int,), False)
        return value

    def optionalInteger(self, key: str) -> int | None:
        value: int | None = self._get(key, (int,), True)
        return value

    def number(self, key: str) -> float:
        value = float(self._get(key, (int, float), False))
        if not math.isfinite(value):
            raise CorruptEntry(f"{self._where}: {key}: {value!r}")
        return value

    def optionalNumber(self, key: str) -> float | None:
        return None if self._data.get(key) is None else self.number(key)

    def flag(self, key: str) -> bool:
        value: bool = self._get(key, (bool,), True) or False
        return value

    def items(self, key: str) -> list[Any]:
        value: list[Any] = self._get(key, (list,), False)
        return value

    def optionalWords(self, key: str) -> tuple[str, ...] | None:
        value = self._get(key, (list,), True)
        if value is None:
            return None
        if not all(isinstance(word, str) for word in value):
            raise CorruptEntry(f"{self._where}: {key}: {value!r}")
        return tuple(value)

    def child(self, key: str) -> _Reader | None:
        value = self._data.get(key)
        return None if value is None else _Reader(value, f"{self._where}.{key}")


def _recipientFromJson(data: Any, where: str) -> Recipient:
    r = _Reader(data, where)
    try:
        state = State(r.text("state"))
    except ValueError:
        raise CorruptEntry(f"{where}: state: {data.get('state')!r}") from None
    diagnostic = None
    d = r.child("diagnostic")
    if d is not None:
        diagnostic = Diagnostic(
            d.text("status"), d.text("text"), d.optionalInteger("code"), d.optionalText("remoteMta")
        )
    return Recipient(
        address=r.text("address"),
        notify=r.optionalWords("notify"),
        orcpt=r.optionalText("orcpt"),
        state=state,
        attempts=r.integer("attempts"),
        nextAttempt=r.number("nextAttempt"),
        lastAttempt=r.optionalNumber("lastAttempt"),
        diagnostic=diagnostic,
        dsnPassedOn=r.flag("dsnPassedOn"),
        noticeSent=r.flag("noticeSent"),
        delayNoticeSent=r.flag("delayNoticeSent"),
    )


class UnknownVersion(CorruptEntry):
    """The metadata is in a format this version of tmail does not know."""


def entryFromJson(data: bytes) -> QueueEntry:
    """
    The entry a metadata file holds; L{CorruptEntry} when it holds none,
    L{UnknownVersion} when a later tmail wrote it.
    """
    try:
        decoded = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CorruptEntry(f"not JSON: {e}") from None
    r = _Reader(decoded, "entry")
    version = r.integer("version")
    if version != FORMAT_VERSION:
        raise UnknownVersion(f"metadata format {version}, this tmail reads {FORMAT_VERSION}")
    recipients = tuple(
        _recipientFromJson(item, f"recipients[{n}]") for n, item in enumerate(r.items("recipients"))
    )
    if not recipients:
        raise CorruptEntry("entry: no recipients")
    return QueueEntry(
        id=r.text("id"),
        sender=r.text("sender"),
        arrival=r.number("arrival"),
        recipients=recipients,
        size=r.integer("size"),
        body=r.text("body"),
        utf8=r.flag("smtputf8"),
        ret=r.optionalText("ret"),
        envid=r.optionalText("envid"),
        requireTLS=r.flag("requiretls"),
        held=r.flag("held"),
    )
