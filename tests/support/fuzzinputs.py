"""
Hypothesis strategies for fuzzed protocol input: command words from each
protocol's grammar with mutated arguments (huge numbers, deep nesting,
literals, sequence sets, wildcards, quoted strings with escapes, NULs, bare
CR and LF, 8-bit bytes, very long tokens), and raw random bytes.  A
I{program} is the list of chunks a client writes, cut at random places so
that buffering across reads is exercised too.

Sizes scale with L{support.fuzzprofile.SCALE}: the short run inside
C{make test} keeps inputs small; C{make fuzz} makes them long.
"""

from __future__ import annotations

import base64

from hypothesis import strategies as st

from support.fuzzprofile import SCALE
from support.pending import isPending
from support.realm import ALICE, PASSWORD

Bytes = st.SearchStrategy[bytes]

# Shared pieces


def sized(most: int) -> st.SearchStrategy[int]:
    """A length up to C{most} times the scale, small ones likelier."""
    top = max(1, most * SCALE)
    return st.one_of(st.integers(0, 8), st.integers(0, top))


NUMBERS: Bytes = st.sampled_from(
    [
        b"0",
        b"1",
        b"2",
        b"3",
        b"-1",
        b"00001",
        b"4294967295",
        b"4294967296",
        b"18446744073709551616",
        b"9" * 40,
        b"1e5",
        b"0x10",
        b"+1",
    ]
)
HOSTILE: Bytes = st.sampled_from(
    [b"\x00", b"\r", b"\n", b"\r\r\n", b"\t", b"\x7f", b"\xff", b"\x80"]
)
TEXT: Bytes = st.one_of(
    st.binary(max_size=12),
    st.text(max_size=12).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.sampled_from(
        [b"hello", b"\xc3\xa9t\xc3\xa9", b"Traceback", b"%s", b"{0}", b"\\", b"'", b'"']
    ),
)


@st.composite
def longToken(draw: st.DrawFn, most: int = 4000) -> bytes:
    unit = draw(st.sampled_from([b"a", b"*", b"%", b"(", b"1,", b"\\", b"\xff", b"=", b" "]))
    return unit * draw(st.integers(1, most * SCALE))


def mutated(piece: Bytes) -> Bytes:
    """C{piece}, sometimes with a hostile byte put in or a long run appended."""

    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        value = draw(piece)
        choice = draw(st.integers(0, 9))
        if choice == 0 and value:
            at = draw(st.integers(0, len(value)))
            value = value[:at] + draw(HOSTILE) + value[at:]
        elif choice == 1:
            value += draw(longToken(300))
        return value

    return build()


@st.composite
def program(draw: st.DrawFn, lines: st.SearchStrategy[list[bytes]]) -> list[bytes]:
    """What a client writes: the lines joined, then cut into writes at random places."""
    data = b"".join(draw(lines))
    cuts = sorted(set(draw(st.lists(st.integers(0, len(data)), max_size=4))))
    chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    return [chunk for chunk in chunks if chunk] or [b""]


def terminated(line: Bytes) -> Bytes:
    """A line, usually ending with CRLF, sometimes with LF, CR or nothing."""
    ending = st.sampled_from([b"\r\n"] * 12 + [b"\n", b"\r", b"", b"\r\n\r\n"])
    return st.tuples(line, ending).map(lambda pair: pair[0] + pair[1])


def joined(parts: st.SearchStrategy[list[bytes]]) -> Bytes:
    separator = st.sampled_from([b" "] * 10 + [b"", b"  ", b"\t"])
    return st.tuples(parts, separator).map(lambda pair: pair[1].join(pair[0]))


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


# IMAP

IMAP_COMMANDS = (
    b"CAPABILITY NOOP LOGOUT STARTTLS AUTHENTICATE LOGIN SELECT EXAMINE CREATE DELETE RENAME "
    b"SUBSCRIBE UNSUBSCRIBE LIST LSUB STATUS APPEND CHECK CLOSE EXPUNGE SEARCH FETCH STORE COPY "
    b"MOVE UID IDLE ENABLE ID NAMESPACE UNSELECT COMPRESS SORT THREAD GETQUOTA GETQUOTAROOT "
    b"SETQUOTA ESEARCH XLIST DONE NOTIFY UIDBATCHES GETMETADATA SETMETADATA GENURLAUTH URLFETCH "
    b"RESETKEY CANCELUPDATE"
).split()
IMAP_TAGS: Bytes = st.one_of(
    st.sampled_from([b"a", b"A001", b"*", b"+", b"", b"t.1", b"x" * 300, b"a{", b"a)"]),
    st.binary(min_size=1, max_size=6),
)
ATOM_CHARS = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#&'-./:;<=>?@[]^_`|~$"
ATOMS: Bytes = st.one_of(
    st.binary(min_size=1, max_size=10).map(
        lambda raw: bytes(ATOM_CHARS[b % len(ATOM_CHARS)] for b in raw)
    ),
    st.sampled_from([b"NIL", b"nil", b"ALL", b"\\Seen", b"\\Deleted", b"$Junk", b"\\*"]),
)
MAILBOXES: Bytes = st.sampled_from(
    [
        b"INBOX",
        b"inbox",
        b"Archive",
        b"Archive/2024",
        b'"Archive/2024"',
        b"&AOk-t&AOk-",
        b"&",
        b"&-",
        b"&Jjo",
        b"&AOk",
        b"&AGE-",
        b"..",
        b"../../etc",
        b'"/etc/passwd"',
        b"INBOX.",
        b"INBOX/",
        b"/",
        b"Sent",
        b"Trash",
        b'"\xc3\xa9t\xc3\xa9"',
        b'""',
        b"New",
        b"New/Sub",
        b'"a\\"b"',
        b"tmail-index",
        b"cur",
        b"dovecot-uidlist",
    ]
)


@st.composite
def quoted(draw: st.DrawFn) -> bytes:
    body = draw(TEXT).replace(b'"', b'\\"')
    if draw(st.booleans()):
        body = body.replace(b"\\", b"\\\\")
    end = draw(st.sampled_from([b'"'] * 6 + [b"", b"\\", b'\\"']))
    return b'"' + body + end


@st.composite
def literal(draw: st.DrawFn, content: Bytes = TEXT) -> bytes:
    """C{{n}}, C{{n+}} or C{~{n}} and its octets, sometimes with the wrong size."""
    data = draw(content)
    size = draw(
        st.sampled_from([len(data)] * 6 + [len(data) + 3, max(0, len(data) - 1), -1, 2**32, 10**20])
    )
    prefix = draw(st.sampled_from([b"", b"", b"~"]))
    plus = draw(st.sampled_from([b"", b"+", b"-"]))
    return prefix + b"{%d%s}\r\n" % (size, plus) + data


@st.composite
def sequenceSet(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 4))
    if kind == 0:
        return draw(
            st.sampled_from([b"1", b"*", b"1:*", b"*:1", b"$", b"0", b"1:0", b"2,1", b"1:3,2"])
        )
    if kind == 1:
        step = draw(st.integers(1, 3))
        count = draw(sized(300))
        if isPending("sequence-sets"):
            count = min(count, 300)
        return b",".join(b"%d" % (1 + i * step) for i in range(max(1, count)))
    if kind == 2:
        return b":".join(draw(st.lists(st.one_of(NUMBERS, st.just(b"*")), min_size=1, max_size=4)))
    if kind == 3:
        return b",".join(
            draw(st.lists(st.one_of(NUMBERS, st.sampled_from([b"*", b"$", b"1:*"])), max_size=8))
        )
    token = draw(longToken(2000))
    return token[:600] if isPending("sequence-sets") else token


@st.composite
def wildcardPattern(draw: st.DrawFn) -> bytes:
    pieces = st.sampled_from([b"*", b"%", b"a", b"Z", b"/", b".", b"INBOX", b"*%"])
    chosen = draw(st.lists(pieces, max_size=12 * SCALE))
    if isPending("list-wildcards"):
        chosen = [p for p in chosen if p != b"*%"][:6]
    pattern = b"".join(chosen)
    return b'"' + pattern + b'"' if draw(st.booleans()) else pattern or b'""'


def parenthesized(inner: Bytes, most: int = 20 * SCALE) -> Bytes:
    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        depth = draw(st.one_of(st.integers(0, min(3, most)), st.integers(0, most)))
        opening, closing = draw(st.sampled_from([(depth, depth)] * 5 + [(depth, 0), (0, depth)]))
        return b"(" * opening + draw(inner) + b")" * closing

    return build()


SEARCH_KEYS = (
    b"ALL ANSWERED DELETED DRAFT FLAGGED NEW OLD RECENT SEEN UNANSWERED UNDELETED UNDRAFT "
    b"UNFLAGGED UNSEEN"
).split()
SEARCH_ARG_KEYS = (
    b"BCC BODY CC FROM SUBJECT TEXT TO KEYWORD UNKEYWORD LARGER SMALLER BEFORE ON SINCE "
    b"SENTBEFORE SENTON SENTSINCE UID OLDER YOUNGER MODSEQ"
).split()
DATES: Bytes = st.sampled_from(
    [b"1-Feb-1994", b'"07-Feb-1994 21:52:25 -0800"', b"32-Foo-99999", b"0-Jan-0", b"29-Feb-2023"]
)

searchKey: Bytes = st.recursive(
    st.one_of(
        st.sampled_from(SEARCH_KEYS),
        st.tuples(
            st.sampled_from(SEARCH_ARG_KEYS), st.one_of(ATOMS, quoted(), NUMBERS, DATES, literal())
        ).map(b" ".join),
        st.tuples(st.just(b"HEADER"), ATOMS, st.one_of(ATOMS, quoted())).map(b" ".join),
        sequenceSet(),
    ),
    lambda children: st.one_of(
        children.map(lambda c: b"NOT " + c),
        st.tuples(children, children).map(lambda p: b"OR " + p[0] + b" " + p[1]),
        st.lists(children, min_size=1, max_size=3).map(lambda cs: b"(" + b" ".join(cs) + b")"),
    ),
    max_leaves=8,
)


@st.composite
def deepSearch(draw: st.DrawFn) -> bytes:
    """Long chains: C{NOT NOT ... ALL}, nested parentheses, C{OR ALL OR ALL ... ALL}."""
    count = draw(sized(40))
    if isPending("search-nesting"):
        count = min(count, 60)
    return draw(
        st.sampled_from(
            [
                b"NOT " * count + b"ALL",
                b"(" * count + b"ALL" + b")" * count,
                b"OR ALL " * count + b"ALL",
            ]
        )
    )


SECTIONS: Bytes = st.sampled_from(
    [
        b"",
        b"1",
        b"2",
        b"1.2",
        b"3.2.1",
        b"5.1.1.1.1.1.1.1.1",
        b"0",
        b"4294967296",
        b"HEADER",
        b"TEXT",
        b"MIME",
        b"1.MIME",
        b"3.2.HEADER",
        b"HEADER.FIELDS (FROM SUBJECT)",
        b"HEADER.FIELDS.NOT (DATE)",
        b"HEADER.FIELDS ()",
        b"1.HEADER.FIELDS (",
        b"1..2",
        b"1.",
        b"-1",
    ]
)


@st.composite
def fetchItem(draw: st.DrawFn) -> bytes:
    simple = st.sampled_from(
        [
            b"FLAGS",
            b"UID",
            b"INTERNALDATE",
            b"RFC822",
            b"RFC822.SIZE",
            b"RFC822.HEADER",
            b"RFC822.TEXT",
            b"ENVELOPE",
            b"BODY",
            b"BODYSTRUCTURE",
            b"MODSEQ",
            b"ALL",
            b"FAST",
            b"FULL",
            b"PREVIEW",
            b"EMAILID",
        ]
    )
    if draw(st.booleans()):
        return draw(simple)
    name = draw(st.sampled_from([b"BODY", b"BODY.PEEK", b"BINARY", b"BINARY.PEEK", b"BINARY.SIZE"]))
    partial = draw(
        st.sampled_from([b"", b"", b"<0.10>", b"<5>", b"<0.0>", b"<4294967296.1>", b"<-1.2>"])
    )
    return name + b"[" + draw(SECTIONS) + b"]" + partial


@st.composite
def fetchItems(draw: st.DrawFn) -> bytes:
    items = draw(st.lists(fetchItem(), min_size=1, max_size=4))
    if len(items) == 1 and draw(st.booleans()):
        return items[0]
    return (
        b"("
        + b" ".join(items)
        + b")"
        + draw(st.sampled_from([b"", b" (CHANGEDSINCE 1)", b" (VANISHED)"]))
    )


FLAGS: Bytes = st.lists(
    st.sampled_from(
        [
            b"\\Seen",
            b"\\Deleted",
            b"\\Flagged",
            b"\\Draft",
            b"\\Answered",
            b"$Label1",
            b"\\Recent",
            b"\\Bogus",
            b"a]b",
            b"(",
            b"\\*",
        ]
    ),
    max_size=4,
).map(lambda fs: b"(" + b" ".join(fs) + b")")

MESSAGE_BODIES: Bytes = st.sampled_from(
    [
        b"Subject: x\r\n\r\nbody\r\n",
        b"From: a@b\r\nContent-Type: multipart/mixed; boundary=q\r\n\r\n"
        b"--q\r\n\r\npart\r\n--q--\r\n",
        b"Content-Type: message/rfc822\r\n\r\nSubject: in\r\n\r\ninner\r\n",
        b"\r\n",
        b"",
        b"no header at all",
        b"Subject: nul\x00\r\n\r\n\x00\r\n",
    ]
)


@st.composite
def imapArguments(draw: st.DrawFn, command: bytes) -> list[bytes]:
    """Arguments shaped for C{command}, or for another command, or for none."""
    generic = st.one_of(
        ATOMS, NUMBERS, quoted(), literal(), MAILBOXES, sequenceSet(), FLAGS, longToken(), HOSTILE
    )
    shaped = {
        b"LOGIN": st.tuples(
            st.one_of(st.just(ALICE.encode()), ATOMS, literal()),
            st.one_of(st.just(PASSWORD.encode()), quoted(), literal()),
        ).map(list),
        b"AUTHENTICATE": st.tuples(
            st.sampled_from([b"PLAIN", b"LOGIN", b"XOAUTH2", b"plain"]),
            st.sampled_from(
                [
                    b"",
                    b"=",
                    b64(b"\0" + ALICE.encode() + b"\0" + PASSWORD.encode()),
                    b64(b"\0a\0b"),
                    b"!!!",
                    b"AGFsaWNl",
                ]
            ),
        ).map(list),
        b"SELECT": st.tuples(
            MAILBOXES,
            st.sampled_from(
                [
                    b"",
                    b"(CONDSTORE)",
                    b"(QRESYNC (1 1))",
                    b"(QRESYNC (67890007 20050715194045000 41,43:211,214:541))",
                    b"(",
                    b"(QRESYNC (1 1 1:* (1 1)))",
                ]
            ),
        ).map(list),
        b"LIST": st.tuples(
            st.one_of(MAILBOXES, st.just(b'""')),
            st.one_of(wildcardPattern(), MAILBOXES),
            st.sampled_from(
                [
                    b"",
                    b"RETURN (CHILDREN STATUS (MESSAGES UNSEEN))",
                    b"RETURN (SPECIAL-USE)",
                    b"RETURN (",
                ]
            ),
        ).map(list),
        b"STATUS": st.tuples(
            MAILBOXES,
            parenthesized(
                st.lists(
                    st.sampled_from(
                        [
                            b"MESSAGES",
                            b"UIDNEXT",
                            b"UNSEEN",
                            b"SIZE",
                            b"HIGHESTMODSEQ",
                            b"RECENT",
                            b"BOGUS",
                        ]
                    ),
                    max_size=4,
                ).map(b" ".join),
                1 if isPending("status-repr") else 20 * SCALE,
            ),
        ).map(list),
        b"FETCH": st.tuples(sequenceSet(), fetchItems()).map(list),
        b"STORE": st.tuples(
            sequenceSet(),
            st.sampled_from(
                [
                    b"FLAGS",
                    b"+FLAGS",
                    b"-FLAGS.SILENT",
                    b"(UNCHANGEDSINCE 1) +FLAGS",
                    b"X-GM-LABELS",
                ]
            ),
            FLAGS,
        ).map(list),
        b"SEARCH": st.tuples(
            st.sampled_from(
                [
                    b"",
                    b"CHARSET UTF-8",
                    b"CHARSET KOI8",
                    b"RETURN (MIN MAX COUNT SAVE)",
                    b"RETURN (",
                    b"RETURN (UPDATE COUNT)",
                    b"RETURN (PARTIAL -1:-100)",
                    b"RETURN (PARTIAL 4294967295:1 UPDATE)",
                    b"RETURN (CONTEXT PARTIAL 0:1)",
                ]
            ),
            st.one_of(searchKey, deepSearch()),
        ).map(list),
        b"SORT": st.tuples(
            st.sampled_from(
                [b"(DATE)", b"(REVERSE SUBJECT ARRIVAL)", b"(FROM TO CC SIZE)", b"()", b"(REVERSE)"]
            ),
            st.sampled_from([b"UTF-8", b"US-ASCII", b"X"]),
            st.one_of(searchKey, deepSearch()),
        ).map(list),
        b"THREAD": st.tuples(
            st.sampled_from([b"REFERENCES", b"ORDEREDSUBJECT", b"X"]),
            st.sampled_from([b"UTF-8", b"X"]),
            st.one_of(searchKey, deepSearch()),
        ).map(list),
        b"APPEND": st.tuples(
            MAILBOXES,
            st.sampled_from(
                [
                    b"",
                    b"(\\Seen)",
                    b'"07-Feb-1994 21:52:25 -0800"',
                    b'(\\Seen) "31-Dec-1969 23:59:59 +0000"',
                ]
            ),
            st.one_of(
                literal(MESSAGE_BODIES),
                st.sampled_from(
                    [
                        b'CATENATE (URL "/INBOX;uid=1/;section=1" TEXT {2}\r\nab)',
                        b'CATENATE (URL "/INBOX;uid=999")',
                        b"CATENATE (TEXT ~{3}\r\na\x00b)",
                        b"CATENATE ()",
                        b"CATENATE (URL",
                    ]
                ),
            ),
        ).map(list),
        b"COPY": st.tuples(sequenceSet(), MAILBOXES).map(list),
        b"MOVE": st.tuples(sequenceSet(), MAILBOXES).map(list),
        b"CREATE": st.tuples(
            MAILBOXES, st.sampled_from([b"", b"(USE (\\Sent))", b"(USE (\\Bogus))", b"(USE"])
        ).map(list),
        b"RENAME": st.tuples(MAILBOXES, MAILBOXES).map(list),
        b"ENABLE": st.lists(
            st.sampled_from([b"CONDSTORE", b"QRESYNC", b"IMAP4rev2", b"UTF8=ACCEPT", b"X"]),
            max_size=3,
        ),
        b"ID": st.sampled_from(
            [[b"NIL"], [b'("name" "x")'], [b'("a" NIL "b" {1}\r\nc)'], [b"("], [b'("a")']]
        ).map(list),
        b"COMPRESS": st.sampled_from([[b"DEFLATE"], [b"X"], []]),
        b"GETQUOTAROOT": st.lists(MAILBOXES, max_size=1),
        b"SETQUOTA": st.just([b'""', b"(STORAGE 1)"]),
        b"UIDBATCHES": st.sampled_from(
            [[b"500"], [b"1000", b"1:2"], [b"499"], [b"500", b"9:1"], [b"500", b"1:999999"], []]
        ).map(list),
        b"GETMETADATA": st.sampled_from(
            [
                [b'""', b"/private/comment"],
                [b"INBOX", b"(/shared/comment /private/comment)"],
                [b"(MAXSIZE 10 DEPTH infinity)", b"INBOX", b"/shared"],
                [b"(DEPTH 7)", b"INBOX", b"/x"],
                [b"INBOX", b"(/private/" + b"a/" * 200 + b")"],
            ]
        ).map(list),
        b"SETMETADATA": st.sampled_from(
            [
                [b"INBOX", b'(/private/comment "hello")'],
                [b'""', b"(/shared/admin NIL)"],
                [b"INBOX", b"(/private/comment ~{3}\r\na\x00b)"],
                [b"INBOX", b"(/bogus x)"],
                [b"INBOX", b"(/private/a {99999999}\r\n)"],
            ]
        ).map(list),
        b"GENURLAUTH": st.sampled_from(
            [
                [b'"imap://alice@example.test/INBOX;uid=1;urlauth=anonymous" INTERNAL'],
                [b'"imap://x/INBOX;uid=1;urlauth=submit+alice" INTERNAL'],
                [b'"imap://alice@example.test/INBOX/;uid=1;urlauth=user+alice" XSAMPLE'],
                [b'"' + b"%" * 500 + b'" INTERNAL'],
            ]
        ).map(list),
        b"URLFETCH": st.sampled_from(
            [
                [b'"imap://alice@example.test/INBOX;uid=1;urlauth=anonymous:internal:00"'],
                [b'("imap://alice@example.test/INBOX;uid=1;section=1" BODYPARTSTRUCTURE BINARY)'],
                [b"/INBOX;uid=1"],
                [b'("x" BODY BODY BODY)'],
            ]
        ).map(list),
        b"RESETKEY": st.sampled_from([[], [b"INBOX"], [b"INBOX", b"INTERNAL"], [b"Nope", b"X"]]),
        b"CANCELUPDATE": st.sampled_from([[b'"a"'], [b'"a" "b"'], [b"a"], []]),
        b"NOTIFY": st.sampled_from(
            [
                [b"NONE"],
                [b"SET", b"STATUS", b"(personal (MessageNew MessageExpunge FlagChange))"],
                [b"SET", b"(selected (MessageNew (UID BODY.PEEK[HEADER]) MessageExpunge))"],
                [b"SET", b"(selected-delayed NONE)", b"(subtree INBOX (MailboxName))"],
                [b"SET", b"(mailboxes (INBOX {3}\r\nabc) (SubscriptionChange))"],
                [b"SET", b"(personal (AnnotationChange))"],
                [b"SET", b"(selected (MessageNew (BODY[]) MessageExpunge))"],
            ]
        ).map(list),
    }
    if command == b"UID":
        sub = draw(
            st.sampled_from(
                [
                    b"FETCH",
                    b"STORE",
                    b"SEARCH",
                    b"COPY",
                    b"MOVE",
                    b"EXPUNGE",
                    b"SORT",
                    b"THREAD",
                    b"X",
                ]
            )
        )
        return [sub, *draw(imapArguments(sub))]
    strategy = shaped.get(command)
    if strategy is None or draw(st.integers(0, 4)) == 0:
        return draw(st.lists(generic, max_size=5))
    return [
        draw(mutated(st.just(arg))) if draw(st.integers(0, 5)) == 0 else arg
        for arg in draw(strategy)
    ]


@st.composite
def imapLine(draw: st.DrawFn) -> bytes:
    tag = draw(IMAP_TAGS)
    command = draw(st.one_of(st.sampled_from(IMAP_COMMANDS), ATOMS))
    spelled = command.lower() if draw(st.integers(0, 5)) == 0 else command
    args = draw(imapArguments(command.upper()))
    return draw(terminated(joined(st.just([tag, spelled, *args]))))


def imapPrograms() -> st.SearchStrategy[list[bytes]]:
    lines = st.lists(
        st.one_of(imapLine(), imapLine(), terminated(st.binary(max_size=60))),
        min_size=1,
        max_size=6,
    )
    return program(lines)


# SMTP and LMTP

SMTP_VERBS = (
    b"HELO EHLO LHLO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY EXPN HELP STARTTLS AUTH".split()
)
ADDRESSES: Bytes = st.sampled_from(
    [
        b"alice@example.test",
        b"bob@example.test",
        b"bob+tag@example.test",
        b"postmaster",
        b"carol@example.test",
        b"x@remote.example",
        b'"quoted local"@example.test',
        b'"a\\"b"@example.test',
        b"@relay.example:alice@example.test",
        b"@a,@b:alice@example.test",
        b"alice@[127.0.0.1]",
        b"alice@[IPv6:::1]",
        b"alice@[999.1.1.1]",
        b"\xc3\xa9@example.test",
        b"alice@xn--e1a.example",
        b"alice@@example.test",
        b"alice@",
        b"@",
        b"",
        b"alice@example.test.",
        b"a" * 70 + b"@example.test",
    ]
)
MAIL_PARAMS: Bytes = st.sampled_from(
    [
        b"SIZE=100",
        b"SIZE=99999999999999999999",
        b"SIZE=-1",
        b"SIZE=",
        b"BODY=8BITMIME",
        b"BODY=BINARYMIME",
        b"BODY=7BIT",
        b"BODY=X",
        b"SMTPUTF8",
        b"RET=HDRS",
        b"RET=FULL",
        b"ENVID=abc+2Bdef",
        b"ENVID=+ZZ",
        b"AUTH=<>",
        b"REQUIRETLS",
        b"NOTIFY=SUCCESS,DELAY",
        b"NOTIFY=NEVER,SUCCESS",
        b"ORCPT=rfc822;alice@example.test",
        b"ORCPT=utf-8;\\x{E9}@example.test",
        b"ORCPT=x",
        b"FOO=BAR",
        b"=",
        b"SIZE=1 SIZE=2",
    ]
)


@st.composite
def smtpPath(draw: st.DrawFn, keyword: bytes) -> bytes:
    address = draw(mutated(ADDRESSES))
    brackets = draw(st.sampled_from([(b"<", b">")] * 6 + [(b"", b""), (b"<", b""), (b"<<", b">>")]))
    space = draw(st.sampled_from([b"", b"", b" "]))
    params = draw(st.lists(MAIL_PARAMS, max_size=3))
    return b" ".join([keyword + b":" + space + brackets[0] + address + brackets[1], *params])


@st.composite
def smtpLine(draw: st.DrawFn) -> bytes:
    verb = draw(st.one_of(st.sampled_from(SMTP_VERBS), ATOMS))
    arguments = {
        b"MAIL": smtpPath(b"FROM"),
        b"RCPT": smtpPath(b"TO"),
        b"HELO": st.one_of(ATOMS, st.just(b"client.example"), st.just(b"[127.0.0.1]")),
        b"EHLO": st.one_of(ATOMS, st.just(b"client.example")),
        b"LHLO": st.one_of(ATOMS, st.just(b"mta.example")),
        b"AUTH": st.sampled_from(
            [
                b"PLAIN",
                b"LOGIN",
                b"PLAIN " + b64(b"\0" + ALICE.encode() + b"\0" + PASSWORD.encode()),
                b"PLAIN " + b64(b"\0alice@example.test\0nope"),
                b"PLAIN =",
                b"PLAIN !!!",
                b"LOGIN " + b64(ALICE.encode()),
                b"CRAM-MD5",
                b"PLAIN a b c",
            ]
        ),
        b"BDAT": st.tuples(NUMBERS, st.sampled_from([b"", b" LAST", b" last", b" X"])).map(
            b"".join
        ),
        b"DATA": st.sampled_from([b"", b"x"]),
    }.get(verb.upper(), st.one_of(TEXT, ATOMS))
    spelled = verb.lower() if draw(st.integers(0, 5)) == 0 else verb
    arg = draw(mutated(arguments)) if draw(st.integers(0, 6)) == 0 else draw(arguments)
    return draw(terminated(st.just(spelled + (b" " + arg if arg else b""))))


@st.composite
def messageData(draw: st.DrawFn) -> bytes:
    """Message lines as sent after DATA: dots, bare CR/LF, long lines, the end marker or not."""
    lines = draw(
        st.lists(
            st.one_of(
                st.sampled_from(
                    [
                        b"Subject: fuzz",
                        b"From: alice@example.test",
                        b"",
                        b".",
                        b"..x",
                        b". ",
                        b"x" * 1000,
                    ]
                ),
                mutated(TEXT),
            ),
            max_size=6,
        )
    )
    separator = draw(st.sampled_from([b"\r\n"] * 5 + [b"\n", b"\r"]))
    end = draw(
        st.sampled_from(
            [b"\r\n.\r\n"] * 3 + [b"\n.\n", b"\r\n.\n", b"\n.\r\n", b"", b"\r\n.\r\nNOOP\r\n"]
        )
    )
    return separator.join(lines) + end


def smtpPrograms() -> st.SearchStrategy[list[bytes]]:
    lines = st.lists(
        st.one_of(smtpLine(), smtpLine(), messageData(), terminated(st.binary(max_size=60))),
        min_size=1,
        max_size=8,
    )
    return program(lines)


# POP3

POP3_VERBS = b"USER PASS APOP AUTH STLS CAPA STAT LIST UIDL RETR TOP DELE NOOP RSET QUIT".split()


@st.composite
def pop3Line(draw: st.DrawFn) -> bytes:
    verb = draw(st.one_of(st.sampled_from(POP3_VERBS), ATOMS))
    arguments = {
        b"USER": st.one_of(st.just(ALICE.encode()), ATOMS, st.just(b"a b")),
        b"PASS": st.one_of(st.just(PASSWORD.encode()), TEXT),
        b"AUTH": st.sampled_from(
            [
                b"",
                b"PLAIN",
                b"PLAIN " + b64(b"\0" + ALICE.encode() + b"\0" + PASSWORD.encode()),
                b"PLAIN =",
                b"PLAIN !!",
                b"X",
            ]
        ),
    }.get(verb.upper(), st.lists(NUMBERS, max_size=3).map(b" ".join))
    arg = draw(mutated(arguments)) if draw(st.integers(0, 6)) == 0 else draw(arguments)
    spelled = verb.lower() if draw(st.integers(0, 5)) == 0 else verb
    return draw(terminated(st.just(spelled + (b" " + arg if arg else b""))))


def pop3Programs() -> st.SearchStrategy[list[bytes]]:
    lines = st.lists(
        st.one_of(pop3Line(), pop3Line(), terminated(st.binary(max_size=60))),
        min_size=1,
        max_size=8,
    )
    return program(lines)


def rawPrograms() -> st.SearchStrategy[list[bytes]]:
    """Random bytes, a few writes of them."""
    return st.lists(st.binary(min_size=1, max_size=200 * SCALE), min_size=1, max_size=3)
