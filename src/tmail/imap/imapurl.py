# -*- test-case-name: tests.imap.test_imap_url -*-
"""
IMAP URLs (RFC 5092) naming one message or body part, as CATENATE (RFC
4469), URLAUTH (RFC 4467) and BURL (RFC 4468) use them:

    imap://joe%40example.com@mail.example.com/INBOX;UIDVALIDITY=385759045
        /;UID=20/;SECTION=1.2/;PARTIAL=0.1024;EXPIRE=2026-01-01T00:00:00Z
        ;URLAUTH=submit+joe%40example.com:INTERNAL:<hex token>

Only the C{imessagepart} form is taken (a URL must name a message by UID);
search URLs and the list and command forms name no message.  Relative URLs
(RFC 4469 5) resolve against the session: a path (C{/Drafts;...}) against
C{imap://user@host}, a C{;UID=...} against the selected mailbox.

The parser is one anchored pass with no nested repetition, so it runs in
time linear in the URL; anything outside the grammar is L{BadURL}.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime
from urllib.parse import unquote_to_bytes

__all__ = ["IMAPURL", "BadURL", "Section", "decodeComponent", "parseSection", "parseURL"]

#: Longest URL taken: RFC 5092 sets none; a URL lives on one command line.
MAX_URL_LENGTH = 8192

#: RFC 3986 unreserved, sub-delims but ";", and ":", "@", "%" (escapes).
_BCHAR = r"A-Za-z0-9\-._~!$&'()*+,=:@%"
_ACHAR = r"A-Za-z0-9\-._~!$&'()*+,=%"
_ESCAPES = re.compile(r"%(?![0-9A-Fa-f]{2})")

_ABSOLUTE = re.compile(
    rf"imap://(?:(?P<user>[{_ACHAR}]*)(?:;AUTH=(?P<auth>\*|[{_ACHAR}]+))?@)?"
    r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~%!$&'()*+,=]+)(?::(?P<port>[0-9]{1,5}))?"
    r"(?:/(?P<path>.*))?\Z",
    re.IGNORECASE | re.DOTALL,
)
_PART = re.compile(
    r"(?:;UIDVALIDITY=(?P<uidvalidity>[1-9][0-9]{0,9}))?"
    r"/;UID=(?P<uid>[1-9][0-9]{0,9})"
    rf"(?:/;SECTION=(?P<section>[{_BCHAR}]+))?"
    r"(?:/;PARTIAL=(?P<start>[0-9]{1,10})(?:\.(?P<length>[1-9][0-9]{0,9}))?)?"
    r"(?P<rump>(?:;EXPIRE=(?P<expire>[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+(?:Z|[+-][0-9]{2}:[0-9]{2})))?"
    rf";URLAUTH=(?P<access>submit\+[{_ACHAR}]+|user\+[{_ACHAR}]+|authuser|anonymous))?"
    r"(?::(?P<mechanism>[A-Za-z0-9\-.]+):(?P<token>[0-9A-Fa-f]{32,}))?\Z",
    re.IGNORECASE,
)
_MAILBOX = re.compile(rf"[{_BCHAR}/]+")
_SECTION = re.compile(
    r"(?P<path>(?:[1-9][0-9]{0,8}\.){0,100}[1-9][0-9]{0,8})?"
    r"(?:(?(path)\.)(?P<kind>HEADER\.FIELDS\.NOT|HEADER\.FIELDS|HEADER|TEXT|MIME))?"
    r"(?: \((?P<fields>[!-'*-~]+(?: [!-'*-~]+){0,200})\))?\Z",
    re.IGNORECASE,
)


class BadURL(ValueError):
    """A URL outside RFC 5092's grammar, or naming no message."""


@dataclass(frozen=True)
class Section:
    """
    A body section as FETCH names one: C{path} counts parts from 1 (empty:
    the whole message), C{kind} is C{""}, C{HEADER}, C{HEADER.FIELDS},
    C{HEADER.FIELDS.NOT}, C{TEXT} or C{MIME}.
    """

    path: tuple[int, ...] = ()
    kind: str = ""
    fields: tuple[bytes, ...] = ()


def parseSection(text: str) -> Section:
    """A decoded C{;SECTION=} value (C{1.2}, C{HEADER}, C{1.MIME}, C{HEADER.FIELDS (TO)})."""
    match = _SECTION.match(text)
    if match is None or not (match["path"] or match["kind"]):
        raise BadURL("Invalid section")
    kind = (match["kind"] or "").upper()
    fields = tuple(f.encode("ascii").upper() for f in (match["fields"] or "").split())
    if bool(fields) != kind.startswith("HEADER.FIELDS"):
        raise BadURL("Invalid section")
    if kind == "MIME" and not match["path"]:
        raise BadURL("Invalid section")
    path = tuple(int(p) for p in match["path"].split(".")) if match["path"] else ()
    return Section(path, kind, fields)


def decodeComponent(text: str, what: str) -> str:
    """A percent-encoded URL component, decoded as UTF-8; L{BadURL} if malformed."""
    if _ESCAPES.search(text):
        raise BadURL(f"Invalid escape in the {what}")
    try:
        return unquote_to_bytes(text).decode("utf-8")
    except UnicodeDecodeError:
        raise BadURL(f"The {what} is not UTF-8") from None


@dataclass(frozen=True)
class IMAPURL:
    """
    One parsed IMAP URL naming a message or a part of one.

    @ivar text: the URL as given (a relative one as given, too).
    @ivar user: the decoded user name, C{None} when the URL names none.
    @ivar host: the host (lower case) with C{:port} if given, C{None} for a
        relative URL.
    @ivar mailbox: the decoded mailbox name (UTF-8, not modified UTF-7).
    @ivar partial: the start and length (C{None}: to the end) of
        C{;PARTIAL=}.
    @ivar rump: for a URLAUTH URL, the URL up to and including
        C{;URLAUTH=<access>}: what the token authorizes.
    @ivar access: the access identifier, in its case as given.
    """

    text: str
    user: str | None
    host: str | None
    mailbox: str
    uidvalidity: int | None
    uid: int
    section: Section | None = None
    partial: tuple[int, int | None] | None = None
    expire: datetime | None = None
    access: str | None = None
    mechanism: str | None = None
    token: str | None = None
    rump: str | None = None
    auth: str | None = None

    @property
    def absolute(self) -> bool:
        return self.host is not None


def parseURL(text: str, base: IMAPURL | None = None, user: str | None = None) -> IMAPURL:
    """
    Parse C{text}, an absolute IMAP URL or, for CATENATE, a relative one:
    C{/mailbox;...} names a mailbox of C{user}, C{;UID=...} a message of
    C{base}'s mailbox (the selected one).  Raises L{BadURL}.
    """
    if len(text) > MAX_URL_LENGTH or not text.isascii():
        raise BadURL("Invalid URL")
    absolute = _ABSOLUTE.match(text)
    host: str | None = None
    urlUser = user
    auth = None
    if absolute is not None:
        host = absolute["host"].lower()
        if absolute["port"]:
            port = int(absolute["port"])
            if not 0 < port < 65536:
                raise BadURL("Invalid port")
            host = f"{host}:{port}"
        urlUser = decodeComponent(absolute["user"], "user") if absolute["user"] else None
        auth = absolute["auth"]
        path = absolute["path"] or ""
    elif text.startswith("/"):
        path = text[1:]
    elif text[:5].upper() == ";UID=" and base is not None:
        return _part(text, "/" + text, base.mailbox, base.uidvalidity, urlUser, None, None)
    else:
        raise BadURL("Invalid URL")
    cut = path.find(";")
    if cut <= 0:
        raise BadURL("The URL names no message")
    mailbox = path[:cut]
    rest = path[cut:]
    if mailbox.endswith("/"):
        mailbox, rest = mailbox[:-1], "/" + rest
    if not mailbox or not _MAILBOX.fullmatch(mailbox):
        raise BadURL("Invalid mailbox")
    return _part(text, rest, decodeComponent(mailbox, "mailbox"), None, urlUser, host, auth)


def _part(
    text: str,
    rest: str,
    mailbox: str,
    uidvalidity: int | None,
    user: str | None,
    host: str | None,
    auth: str | None,
) -> IMAPURL:
    match = _PART.match(rest)
    if match is None:
        raise BadURL("Invalid URL")
    if match["uidvalidity"]:
        uidvalidity = int(match["uidvalidity"])
    section = (
        parseSection(decodeComponent(match["section"], "section")) if match["section"] else None
    )
    partial = None
    if match["start"] is not None:
        partial = (int(match["start"]), int(match["length"]) if match["length"] else None)
    expire = None
    if match["expire"]:
        try:
            expire = datetime.fromisoformat(match["expire"].upper())
        except ValueError:
            raise BadURL("Invalid expiry time") from None
    access = match["access"]
    if match["mechanism"] and access is None:
        raise BadURL("A URLAUTH token needs an access identifier")
    rump = None
    if access is not None:
        rump = text[: len(text) - len(rest) + match.end("rump")]
    return IMAPURL(
        text=text,
        user=user,
        host=host,
        mailbox=mailbox,
        uidvalidity=uidvalidity,
        uid=int(match["uid"]),
        section=section,
        partial=partial,
        expire=expire,
        access=access,
        mechanism=match["mechanism"],
        token=match["token"].lower() if match["token"] else None,
        rump=rump,
        auth=auth,
    )


def withoutAuthorization(url: IMAPURL) -> IMAPURL:
    """C{url} with its URLAUTH part dropped: what a verified URL gives access to."""
    return replace(url, access=None, mechanism=None, token=None, rump=None, expire=None)
