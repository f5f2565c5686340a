# -*- test-case-name: tests.smtp.test_smtp_policy -*-
"""
SMTP policy hooks: where greylisting, DNSBL lookups, SPF, DKIM and DMARC
checks, rate limits and site rules plug into the MX and submission
listeners.

A policy provides L{ISMTPPolicy} (subclass L{Policy}, which accepts
everything, and override the stages it cares about).  The server asks it at
five stages, each with a L{PolicyContext} holding what is known by then:

  - C{connect}: the client's address.  A refusal is the greeting: C{554}
    (the session then answers only C{QUIT}, RFC 5321 3.1) or, for a
    temporary one, C{421} and the connection is closed.
  - C{helo}: the HELO/EHLO name.  A refused client must greet again.
  - C{mail}: the envelope sender (C{MAIL FROM} and its parameters), and the
    authenticated user on submission.  SPF needs no more than this.
  - C{rcpt}: one recipient, and those accepted before it.
  - C{data}: the end of the message, with its header fields and size.  A
    refusal replaces the success reply and no copy is stored.

Each stage answers with a L{Decision} (or C{None}, meaning accept): accept,
possibly with header fields to add; L{reject} (5xx); or L{tempfail} (4xx).
An answer may be a C{Deferred} (a DNS lookup): the session reads no further
command until it fires, so replies to pipelined commands keep their order.
Policies run in their configured order; the first refusal wins and the rest
are not asked; the header fields of those that accepted add up.  A policy
that raises or fails is a temporary refusal (C{451 4.3.0}, or C{421} at
connect), logged: mail is never accepted unchecked because a check broke.

Header fields are added to every copy of the message, below C{Return-Path}
and C{Delivered-To} and above this server's C{Received}, in the order they
were given: those of C{connect} and C{helo} to every message of the
session, those of C{rcpt} only to the copies for that recipient's users
(so a message whose users get different fields is not stored as one
shared file).
See L{tmail.delivery.local} for how fields of the C{data} stage get in front
of content already written.

The header fields are what a policy sees of the message: DKIM signs some
of them, DMARC reads C{From}.  The body is not kept, but DKIM also hashes
it: L{ISMTPPolicy.beginData} may return a function that is handed every
piece of the content as it streams into the store (CRLF line ends,
dot-unstuffed, the header section included), so a verifier or signer can
hash it on the way without a copy.

Why here and not in L{tmail.interfaces}: that module holds the seams every
front end shares (stores, directories, realms), and imports nothing from
them; a policy is an SMTP notion whose context and answers (L{Reply},
L{MailFrom}) are the SMTP server's own types.

Policies are named in the configuration (C{[smtp] policies = ["ratelimit"]}
and C{[policy.<name>]} tables, see L{buildPolicy}); one object serves every
listener that names it, so its state (a rate limit's counts) is shared.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeAlias

from twisted.internet.defer import Deferred, inlineCallbacks, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import Interface, implementer

from tmail.config.schema import POLICY_CLASS, PolicySettings
from tmail.delivery.envelope import MailFrom
from tmail.smtp.commands import Reply
from tmail.smtp.headerblock import fieldValues

__all__ = [
    "ACCEPT",
    "Decision",
    "ISMTPPolicy",
    "Policy",
    "PolicyContext",
    "PolicyError",
    "Verdict",
    "accept",
    "buildPolicy",
    "consult",
    "reject",
    "tempfail",
]

_log = Logger()

Stage = Literal["connect", "helo", "mail", "rcpt", "data"]

_STATUS = re.compile(r"[245]\.[0-9]{1,3}\.[0-9]{1,3}\Z")
_TEXT = re.compile(r"[\x20-\x7e]*\Z")
_FIELD_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]+\Z")
#: A field value: no control characters but tab; a CRLF only when
#: followed by white space (folding).
_FIELD_VALUE = re.compile(r"(?:[^\x00-\x1f\x7f]|\t|\r\n[ \t])*\Z")


@dataclass(frozen=True, slots=True)
class PolicyContext:
    """
    What a policy knows at one stage.  Whatever is not known yet is
    C{None} or empty.

    @ivar stage: C{"connect"}, C{"helo"}, C{"mail"}, C{"rcpt"} or C{"data"}.
    @ivar clientAddress: the client's IP address (C{"local"} on a unix socket).
    @ivar hostname: this server's name.
    @ivar submission: whether the session is on a C{[submission]} listener.
    @ivar tls: whether the session is encrypted.
    @ivar helo: the HELO/EHLO name: a host name or an address literal as
        sent, or C{"invalid"} for anything else (never copied raw).
    @ivar user: the authenticated user's canonical address (submission).
    @ivar sender: the envelope sender, C{""} for the null sender.
    @ivar mail: the whole C{MAIL FROM}: C{SIZE}, C{BODY}, C{SMTPUTF8}, DSN.
    @ivar recipient: at C{rcpt}, the address being decided.
    @ivar recipients: the recipients accepted so far (at C{data}: all).
    @ivar queueID: at C{data}, the id of the message in logs and replies.
    @ivar headers: at C{data}, the message's header fields as they will be
        stored (fields the server adds, C{Message-ID} and C{Date} on
        submission, included; trace fields not): the name as written and
        the raw value after the colon, folding kept.
    @ivar headersComplete: false when the header section was too large to
        keep whole (see L{tmail.smtp.headerblock}).
    @ivar size: at C{data}, the message's size in octets as received.
    """

    stage: Stage
    clientAddress: str
    hostname: str
    submission: bool = False
    tls: bool = False
    helo: str | None = None
    user: str | None = None
    sender: str | None = None
    mail: MailFrom | None = None
    recipient: str | None = None
    recipients: tuple[str, ...] = ()
    queueID: str = ""
    headers: tuple[tuple[str, bytes], ...] = ()
    headersComplete: bool = True
    size: int = 0

    def header(self, name: str) -> list[str]:
        """The values of the header fields called C{name}, unfolded, as text."""
        return fieldValues(self.headers, name)


@dataclass(frozen=True, slots=True)
class Decision:
    """
    A policy's answer at one stage.

    @ivar reply: C{None} to accept; else the refusal: 5xx rejects, 4xx asks
        the client to try again later.
    @ivar headers: header fields to add, as C{(name, value)}; a value may
        be folded (CRLF followed by a space or tab) and hold UTF-8.  Only
        those of an accepting decision are used.
    """

    reply: Reply | None = None
    headers: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        reply = self.reply
        if reply is not None:
            if not 400 <= reply.code <= 599:
                raise ValueError(f"a refusal needs a 4xx or 5xx code, not {reply.code}")
            if not _STATUS.match(reply.status) or reply.status[0] != str(reply.code)[0]:
                raise ValueError(f"bad enhanced status code {reply.status!r} for {reply.code}")
            if not _TEXT.match(reply.text):
                raise ValueError("a reply's text must be printable ASCII on one line")
        for name, value in self.headers:
            if not _FIELD_NAME.match(name):
                raise ValueError(f"not a header field name: {name!r}")
            if not _FIELD_VALUE.match(value):
                raise ValueError(f"not a header field value: {value!r}")

    def encodedHeaders(self) -> bytes:
        """The header fields as they are stored, each ending in CRLF."""
        return b"".join(f"{name}: {value}\r\n".encode() for name, value in self.headers)


#: Accept, adding nothing.
ACCEPT = Decision()


def accept(*headers: tuple[str, str]) -> Decision:
    """Accept, adding the header fields C{(name, value)} given."""
    return Decision(None, tuple(headers))


def reject(text: str, code: int = 550, status: str = "5.7.1") -> Decision:
    """Refuse for good (C{550 5.7.1} unless told otherwise; a 5xx code)."""
    if not 500 <= code <= 599:
        raise ValueError(f"a rejection needs a 5xx code, not {code}")
    return Decision(Reply(code, status, text))


def tempfail(text: str, code: int = 450, status: str = "4.7.1") -> Decision:
    """
    Refuse for now: the client is to try again later (C{450 4.7.1} unless
    told otherwise; a 4xx code).
    """
    if not 400 <= code <= 499:
        raise ValueError(f"a temporary refusal needs a 4xx code, not {code}")
    return Decision(Reply(code, status, text))


Answer: TypeAlias = "Decision | Deferred[Decision | None] | None"


class ISMTPPolicy(Interface):
    """
    A check the SMTP server runs at each stage of a session; see the module
    docstring.  Every method returns a L{Decision}, C{None} (accept) or a
    C{Deferred} firing with one of those.
    """

    def connect(context: PolicyContext) -> Answer:
        """A client connected; nothing is known but its address."""

    def helo(context: PolicyContext) -> Answer:
        """The client sent HELO or EHLO (C{context.helo})."""

    def mail(context: PolicyContext) -> Answer:
        """The client sent C{MAIL FROM} (C{context.sender}, C{context.mail})."""

    def rcpt(context: PolicyContext) -> Answer:
        """The client sent C{RCPT TO} (C{context.recipient}), a deliverable one."""

    def beginData(context: PolicyContext) -> Callable[[bytes], None] | None:
        """
        The message content starts: return C{None}, or a function to be
        called with every piece of it as it arrives (synchronously; it must
        not keep the server waiting).
        """

    def data(context: PolicyContext) -> Answer:
        """The message is in (C{context.headers}, C{context.size}), not yet stored."""


@implementer(ISMTPPolicy)
class Policy:
    """A policy that accepts everything: subclass it and override some stages."""

    def connect(self, context: PolicyContext) -> Answer:
        return None

    def helo(self, context: PolicyContext) -> Answer:
        return None

    def mail(self, context: PolicyContext) -> Answer:
        return None

    def rcpt(self, context: PolicyContext) -> Answer:
        return None

    def beginData(self, context: PolicyContext) -> Callable[[bytes], None] | None:
        return None

    def data(self, context: PolicyContext) -> Answer:
        return None


@dataclass(frozen=True, slots=True)
class Verdict:
    """
    What the policies decided together at one stage.

    @ivar refusal: the first refusal, or C{None} when all accepted.
    @ivar headers: the header fields they added, encoded, in order.
    """

    refusal: Reply | None = None
    headers: bytes = b""


#: The verdict when there is no policy to ask.
NO_OBJECTION = Verdict()
#: What a policy that fails amounts to.
POLICY_FAILED = Reply(451, "4.3.0", "Internal error; try again later")


@inlineCallbacks
def consult(
    policies: Sequence[ISMTPPolicy], stage: Stage, context: PolicyContext
) -> Generator[Deferred[Any], Any, Verdict]:
    """
    Ask each policy in turn about C{stage}; fires with the L{Verdict}.
    Synchronous answers give an already-fired C{Deferred}.
    """
    fields: list[bytes] = []
    for policy in policies:
        try:
            answer = yield maybeDeferred(getattr(policy, stage), context)
            if answer is None:
                answer = ACCEPT
            if not isinstance(answer, Decision):
                raise TypeError(f"a policy answered {answer!r}, not a Decision or None")
        except Exception:
            _log.failure("SMTP policy {policy!r} failed at {stage}", policy=policy, stage=stage)
            return Verdict(POLICY_FAILED, b"".join(fields))
        if answer.reply is not None:
            return Verdict(answer.reply, b"".join(fields))
        fields.append(answer.encodedHeaders())
    return Verdict(None, b"".join(fields))


class PolicyError(Exception):
    """
    A policy cannot be built from its settings.

    @ivar key: the setting at fault (C{"class"}, C{"window"}, ...), or
        C{""} for the table as a whole.
    @ivar problem: what is wrong, for an operator.
    """

    def __init__(self, problem: str, key: str = "") -> None:
        super().__init__(problem)
        self.problem = problem
        self.key = key


class _FromSettings(Protocol):
    def __call__(self, options: Mapping[str, Any], clock: IReactorTime) -> object: ...


def buildPolicy(spec: PolicySettings, clock: IReactorTime) -> ISMTPPolicy:
    """
    Build the policy a C{[policy.<name>]} table describes: C{class} (or the
    bundled class of that name) is called as C{Class.fromSettings(options,
    clock)} when it has that class method, else as C{Class(**options)},
    where C{options} are the table's other keys.  Building must not reach
    out anywhere: C{tmail check} builds every policy to check its settings.

    @raise PolicyError: when the class cannot be loaded, does not provide
        L{ISMTPPolicy}, or refuses the settings (C{TypeError},
        C{ValueError} or L{PolicyError} from it).
    """
    if not POLICY_CLASS.match(spec.cls):
        raise PolicyError('must be "package.module:Class"', "class")
    moduleName, _, className = spec.cls.partition(":")
    try:
        cls: Any = importlib.import_module(moduleName)
        for part in className.split("."):
            cls = getattr(cls, part)
    except (ImportError, AttributeError) as e:
        raise PolicyError(f"cannot load {spec.cls}: {e}", "class") from None
    fromSettings: _FromSettings | None = getattr(cls, "fromSettings", None)
    try:
        policy = fromSettings(spec.options, clock) if fromSettings else cls(**spec.options)
    except PolicyError:
        raise
    except (TypeError, ValueError) as e:
        raise PolicyError(str(e)) from None
    if not ISMTPPolicy.providedBy(policy):
        raise PolicyError(f"{spec.cls} does not provide ISMTPPolicy", "class")
    built: ISMTPPolicy = policy
    return built
