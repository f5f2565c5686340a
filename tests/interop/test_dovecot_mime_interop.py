"""
BODY, BODYSTRUCTURE, ENVELOPE and RFC822.SIZE of awkward messages
(L{support.mimecorpus}) from tmail and from Dovecot 2.3, on one Maildir,
compared item by item.

Where the two differ and Dovecot is the one that departs from the RFCs (or
where the RFCs leave a broken message's answer open and tmail's keeps more
of it), the difference is listed in L{DIFFERENCES} with its reason; the
test fails if a listed difference goes away, so the list stays true.
tmail's own answers for those messages are pinned by the unit tests in
tests/imap/test_imap_bodystructure.py and test_imap_envelope_groups.py.
"""

from __future__ import annotations

import imaplib
import itertools
import re
from collections.abc import Iterator

import pytest

from support.imapdata import Value, fetchResponses
from support.interop import Servers, runningServers
from support.mimecorpus import ADDRESS_MESSAGES, CORPUS

pytestmark = pytest.mark.e2e

PASSWORD = "mime both"
ITEMS = (b"RFC822.SIZE", b"ENVELOPE", b"BODY", b"BODYSTRUCTURE")

_STRUCTURES = (b"BODY", b"BODYSTRUCTURE")
_INVALID_TYPE = (
    "RFC 2045 5.2: a Content-Type that is not type/subtype is read as the default "
    "text/plain; charset=us-ascii; Dovecot reports an empty type or subtype"
)

#: (messages, items, why tmail's answer differs from Dovecot's).
_KNOWN: list[tuple[tuple[str, ...], tuple[bytes, ...], str]] = [
    (
        ("type-without-subtype", "type-without-subtype-with-params", "type-only-slash"),
        _STRUCTURES,
        _INVALID_TYPE,
    ),
    (("type-empty",), _STRUCTURES, _INVALID_TYPE),
    (
        ("parameter-without-value",),
        _STRUCTURES,
        "a parameter without '=' is dropped and the rest read; Dovecot drops the rest too",
    ),
    (
        ("unterminated-quoted-parameter",),
        _STRUCTURES,
        "a quoted value never closed runs to the end of the field; Dovecot drops it",
    ),
    (
        ("parameter-name-without-value-and-equals",),
        _STRUCTURES,
        "'=bar' has no attribute name (RFC 2045 5.1) and is no parameter; Dovecot lists it "
        'under the name ""',
    ),
    (
        ("rfc2231-parameters",),
        _STRUCTURES,
        "RFC 9051 7.5.2: servers SHOULD decode RFC 2231 continuations and charsets; "
        "Dovecot 2.3 joins the continuations but keeps the encoding and the name*",
    ),
    (
        ("disposition-garbled",),
        (b"BODYSTRUCTURE",),
        'a Content-Disposition without a type is NIL; Dovecot reports the type ""',
    ),
    (
        ("multipart-empty-boundary",),
        _STRUCTURES,
        'RFC 2046 5.1.1: a boundary is 1 to 70 characters, so boundary="" tells no part '
        'apart and the one part is empty; Dovecot splits at lines of "--"',
    ),
    (
        ("multipart-lookalike-delimiters",),
        _STRUCTURES,
        "RFC 2046 5.1.1: a delimiter line is --boundary followed by nothing but blanks; "
        "Dovecot also splits at a line that merely begins with it (--bx)",
    ),
    (
        ("multipart-parallel-nested-deeply",),
        (b"BODYSTRUCTURE",),
        "the unquoted value type=text/html is kept whole (RFC 2045 would want it quoted); "
        "Dovecot cuts it at the '/'",
    ),
    (
        ("message-rfc822",),
        _STRUCTURES,
        "RFC 2046 5.1.1: the line break before the next delimiter belongs to the "
        "delimiter, also after a nested multipart's close delimiter; Dovecot counts it "
        "into the message/rfc822 part (its size and lines one more)",
    ),
    (
        ("envelope-obsolete-local-part",),
        (b"ENVELOPE",),
        "RFC 5322 4.4: obs-local-part and obs-domain allow CFWS around the dots "
        "(john . q . public @ example . test is john.q.public@example.test); Dovecot "
        "reads a name without an address",
    ),
    (
        ("envelope-empty-list-members",),
        (b"ENVELOPE",),
        "RFC 5322 4.4: obs-addr-list allows empty members, which are no addresses; "
        "Dovecot lists each as MISSING_MAILBOX@MISSING_DOMAIN",
    ),
    (
        ("envelope-two-from-fields",),
        (b"ENVELOPE",),
        "RFC 5322 3.6 allows one From field; tmail reads the first, as for every "
        "envelope field; Dovecot joins the addresses of both",
    ),
    (
        ("envelope-nested-group",),
        (b"ENVELOPE",),
        "a group inside a group (not RFC 5322) keeps its members in the outer group; "
        "Dovecot reads the inner group's name as an address and stops",
    ),
    (
        ("envelope-unclosed-angle",),
        (b"ENVELOPE",),
        "an angle address never closed keeps its domain; Dovecot answers SYNTAX_ERROR",
    ),
    (
        ("envelope-missing-comma",),
        (b"ENVELOPE",),
        "an address after a group's ';' without a comma between is "
        "still read; Dovecot stops at the first syntax error",
    ),
]

#: (message, item) -> why tmail's answer differs from Dovecot's.
DIFFERENCES: dict[tuple[str, bytes], str] = {
    (name, item): reason for names, items, reason in _KNOWN for name in names for item in items
}


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    with runningServers(PASSWORD, userPrefix="mime") as running:
        yield running


def command(client: imaplib.IMAP4, line: bytes) -> bytes:
    """Send one command and return everything the server answered, literals included."""
    tag = b"Z%d" % id(line)
    client.send(tag + b" " + line + b"\r\n")
    answer = bytearray()
    while True:
        received = client.readline()
        answer += received
        literal = re.search(rb"\{(\d+)\}\r\n\Z", received)
        if literal is not None:
            answer += client.read(int(literal.group(1)))
        elif received.startswith(tag + b" "):
            assert received.startswith(tag + b" OK"), received
            return bytes(answer)


def answers(client: imaplib.IMAP4, items: bytes) -> dict[int, dict[bytes, Value]]:
    """Each message's FETCH items, by UID."""
    typ, data = client.select("INBOX", readonly=True)
    assert typ == "OK", data
    fetched = fetchResponses(command(client, b"UID FETCH 1:* (UID " + items + b")"))
    client.logout()
    byUid = {}
    for values in fetched.values():
        uid = values.pop(b"UID")
        assert isinstance(uid, bytes)
        byUid[int(uid)] = values
    return byUid


def leafParts(structure: Value, prefix: str = "") -> Iterator[tuple[str, list[Value]]]:
    """The section numbers and structures of the non-multipart parts of a BODYSTRUCTURE."""
    assert isinstance(structure, list)
    if isinstance(structure[0], list):
        for number, part in enumerate(
            itertools.takewhile(lambda p: isinstance(p, list), structure)
        ):
            yield from leafParts(part, f"{prefix}{number + 1}.")
        return
    yield prefix.rstrip(".") or "1", structure


@pytest.fixture(scope="module")
def corpusUIDs(servers: Servers) -> tuple[str, dict[str, int]]:
    user = servers.newUser()
    client = servers.tmailClient(user)
    uids = {}
    for name, raw in CORPUS.items():
        typ, data = client.append("INBOX", "", imaplib.Time2Internaldate(1_700_000_000), raw)
        assert typ == "OK", (name, data)
        match = re.search(rb"APPENDUID \d+ (\d+)", data[0])
        assert match is not None, data
        uids[name] = int(match.group(1))
    client.logout()
    return user, uids


def test_awkward_mime_answers_the_same_as_dovecot_or_as_the_rfc_says(
    servers: Servers, corpusUIDs: tuple[str, dict[str, int]]
) -> None:
    user, uids = corpusUIDs
    items = b" ".join(ITEMS)
    fromTmail = answers(servers.tmailClient(user), items)
    fromDovecot = answers(servers.dovecotClient(user), items)

    unexpected = []
    vanished = []
    for name, uid in uids.items():
        for item in ITEMS:
            mine, theirs = fromTmail[uid][item], fromDovecot[uid][item]
            listed = (name, item) in DIFFERENCES
            if mine != theirs and not listed:
                unexpected.append(f"{name} {item.decode()}:\n  tmail   {mine}\n  dovecot {theirs}")
            elif mine == theirs and listed:
                vanished.append(f"{name} {item.decode()}")
    assert not unexpected, "\n".join(unexpected)
    assert not vanished, f"listed differences no longer differ: {vanished}"


def test_every_part_tmail_describes_is_served_with_the_size_and_lines_it_gives(
    servers: Servers, corpusUIDs: tuple[str, dict[str, int]]
) -> None:
    """BODY[n] of each leaf part is as long as BODYSTRUCTURE says, with as many line ends."""
    user, uids = corpusUIDs
    structures = answers(servers.tmailClient(user), b"BODYSTRUCTURE")
    client = servers.tmailClient(user)
    client.select("INBOX", readonly=True)
    for name, uid in uids.items():
        for section, part in leafParts(structures[uid][b"BODYSTRUCTURE"]):
            fetched = fetchResponses(
                command(client, b"UID FETCH %d BODY.PEEK[%s]" % (uid, section.encode()))
            )
            (values,) = fetched.values()
            body = values[b"BODY[%s]" % section.encode()]
            assert isinstance(body, bytes), (name, section, body)
            size = part[6]
            assert size == b"%d" % len(body), (name, section, size, len(body))
            kind = [p.lower() if isinstance(p, bytes) else p for p in part[:2]]
            if kind[0] == b"text" or kind == [b"message", b"rfc822"]:
                lines = part[7] if kind[0] == b"text" else part[9]
                assert lines == b"%d" % body.count(b"\n"), (name, section, lines)
    client.logout()


#: SEARCH criteria over ADDRESS_MESSAGES, and why tmail's answer differs from Dovecot's.
SEARCHES: dict[str, str | None] = {
    "FROM alice": None,
    "TO example.org": None,
    "FROM ALICE@EXAMPLE.TEST": None,
    'FROM "Alice Example <alice@"': (
        "RFC 3501 6.4.4: the string is matched in the envelope's From (name and address); "
        'Dovecot matches a rewritten field that quotes the name ("Alice Example" <...>)'
    ),
    'FROM "Smith, \\"Bobby\\" Bob"': (
        'the display name is Smith, "Bobby" Bob; Dovecot matches it with its quoting'
    ),
    "FROM bob@x.test": None,
    "TO pete@silly.test": None,
    'TO "Pete <pete@silly"': None,
    'TO "his account"': (
        "tmail also matches the field as written, comments included; Dovecot only the "
        "addresses it rewrites"
    ),
    "CC friends": None,
    "CC dave@y.test": None,
    "CC erin": None,
    "CC Dave": None,
    'FROM "Jürgen Müller"': None,
    'TO "André"': None,
    'TO "Fränk <frank@"': None,
    'TO "Mary Smith"': None,
    "FROM john.q.public@example.test": (
        "RFC 5322 4.4: john . q . public @ example . test is this address; Dovecot's "
        "parser reads no address from it"
    ),
    'BCC "local part@x.test"': (
        "the envelope's mailbox is local part (unquoted, as both servers put it in "
        "ENVELOPE); Dovecot matches the quoted form only"
    ),
    'FROM "Sam Jones"': None,
    "FROM missing_domain": (
        "Dovecot matches the MISSING_DOMAIN it fills in for an address without a domain"
    ),
    "BCC x.test": None,
    "NOT TO x.test": None,
}


def searched(client: imaplib.IMAP4, criteria: str) -> list[int]:
    answer = command(client, b"UID SEARCH CHARSET UTF-8 " + criteria.encode())
    match = re.search(rb"^\* SEARCH([ \d]*)\r\n", answer, re.MULTILINE)
    assert match is not None, answer
    return [int(n) for n in match.group(1).split()]


def test_search_by_address_answers_as_dovecot_or_as_the_rfc_says(servers: Servers) -> None:
    user = servers.newUser()
    client = servers.tmailClient(user)
    for raw in ADDRESS_MESSAGES:
        typ, data = client.append("INBOX", "", imaplib.Time2Internaldate(1_700_000_000), raw)
        assert typ == "OK", data
    client.logout()
    results = {}
    for name, connect in (("tmail", servers.tmailClient), ("dovecot", servers.dovecotClient)):
        client = connect(user)
        client.select("INBOX", readonly=True)
        results[name] = {criteria: searched(client, criteria) for criteria in SEARCHES}
        client.logout()

    unexpected = []
    for criteria, reason in SEARCHES.items():
        mine, theirs = results["tmail"][criteria], results["dovecot"][criteria]
        if (mine == theirs) != (reason is None):
            unexpected.append(f"{criteria}: tmail {mine}, dovecot {theirs}, listed: {reason}")
    assert not unexpected, "\n".join(unexpected)


#: Messages APPENDed in a literal8 with NUL octets (RFC 3516 4.4), and the
#: BINARY items both servers must answer alike for each.
BINARY_MESSAGES: list[tuple[bytes, bytes]] = [
    (b"f\x00o", b"BINARY.SIZE[1] BINARY.PEEK[1] BINARY.SIZE[] BINARY.PEEK[] RFC822.SIZE"),
    (
        b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n"
        b"\r\n\x00\x01\x02hello\r\n",
        b"BINARY.SIZE[1] BINARY.PEEK[1] BINARY.SIZE[] BINARY.PEEK[] BODY.PEEK[] RFC822.SIZE "
        b"BODYSTRUCTURE",
    ),
    (
        b"Subject: parts\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
        b"Content-Transfer-Encoding: binary\r\n\r\n\x00\x01\r\n--b\r\n"
        b"Content-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n"
        b"--b--\r\n",
        b"BINARY.SIZE[1] BINARY.PEEK[1] BINARY.SIZE[2] BINARY.PEEK[2] BODY.PEEK[] "
        b"RFC822.SIZE BODYSTRUCTURE",
    ),
]


def test_binary_append_is_served_back_as_dovecot_serves_it(servers: Servers) -> None:
    """
    Each server stores what it was sent; the decoded content, sizes, and
    BODY[] of the binary parts (re-encoded in base64) are the same.
    """
    user = servers.newUser()
    answers: dict[str, list[dict[bytes, Value]]] = {}
    for name, connect in (("tmail", servers.tmailClient), ("dovecot", servers.dovecotClient)):
        client = connect(user)
        folder = b"bin-" + name.encode()
        command(client, b"CREATE " + folder)
        for raw, _ in BINARY_MESSAGES:
            client.send(b"A APPEND %s ~{%d+}\r\n%s\r\n" % (folder, len(raw), raw))
            while not (line := client.readline()).startswith(b"A "):
                pass
            assert line.startswith(b"A OK"), line
        command(client, b"SELECT " + folder)
        answers[name] = []
        for number, (_, items) in enumerate(BINARY_MESSAGES, 1):
            fetched = fetchResponses(command(client, b"FETCH %d (%s)" % (number, items)))
            answers[name].append(fetched[number])
        client.logout()
    for mine, theirs in zip(answers["tmail"], answers["dovecot"], strict=True):
        # An empty BINARY[1] may be a literal or a literal8: both read as b"".
        assert mine == theirs
