"""
Hypothesis strategies for MIME messages: trees of multipart, message/rfc822
and leaf parts with odd boundaries, parameters, encodings and header
garbage, deep chains of nesting, and raw bytes.
"""

from __future__ import annotations

from hypothesis import strategies as st

from support.fuzzinputs import HOSTILE, TEXT, mutated
from support.fuzzprofile import SCALE
from support.pending import isPending

Bytes = st.SearchStrategy[bytes]

HEADERS: Bytes = st.sampled_from(
    [
        b"Subject: hi",
        b"Subject: =?utf-8?q?caf=C3=A9?= =?bogus?x?y?=",
        b'From: A <a@example.test>, (c) b@x, "q\\"d" <c@y>',
        b"From: <>",
        b"From: undisclosed-recipients:;",
        b"To: group: a@b, c@d;",
        b"Date: Mon, 7 Feb 1994 21:52:25 -0800",
        b"Date: 99 Foo 99999 99:99:99 +9999",
        b"Message-ID: <a@b>",
        b"In-Reply-To: <a@b> <c@d>",
        b"Content-Disposition: attachment; filename*0*=UTF-8''a%C3; filename*1=b",
        b"Content-Language: en, de",
        b"Content-Location: http://x/",
        b"Content-ID: <part@x>",
        b"Content-Description: =?utf-8?b?w6k=?=",
        b"Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==",
        b"X-Long: " + b"a" * 2000,
        b"Folded: a\r\n b\r\n\tc",
        b"NoColonHere",
        b": empty name",
        b"\xff\xfe: 8bit name",
    ]
)
ENCODINGS: Bytes = st.sampled_from(
    [b"", b"7bit", b"8bit", b"binary", b"base64", b"quoted-printable", b"x-uuencode", b"BASE64 (c)"]
)
BOUNDARIES: Bytes = st.sampled_from(
    [b"b", b"=_b", b"a b", b"", b"-", b"--", b"x" * 70, b"x" * 200, b'"quoted"', b"\xff"]
)
TYPES: Bytes = st.sampled_from(
    [
        b"text/plain; charset=utf-8",
        b"text/plain; charset*=us-ascii'en'%41",
        b"text/html",
        b"application/octet-stream; name=x",
        b"image/png",
        b"message/delivery-status",
        b"text",
        b"/",
        b'text/plain; charset="unterminated',
        b"TEXT/PLAIN; CHARSET=ISO-8859-1; FORMAT=flowed; DELSP=yes",
    ]
)
BODIES: Bytes = st.one_of(
    TEXT,
    st.sampled_from(
        [
            b"SGVsbG8=",
            b"=C3=A9=\r\nsoft",
            b"!!!not base64",
            b"=XX=",
            b"line\r\n.dot\r\n",
            b"\x00\x01",
        ]
    ),
    mutated(st.just(b"body text")),
)


@st.composite
def header(draw: st.DrawFn, contentType: bytes) -> bytes:
    lines = draw(st.lists(HEADERS, max_size=3))
    if contentType:
        lines.append(b"Content-Type: " + contentType)
    encoding = draw(ENCODINGS)
    if encoding:
        lines.append(b"Content-Transfer-Encoding: " + encoding)
    return b"".join(line + b"\r\n" for line in lines) + draw(
        st.sampled_from([b"\r\n"] * 5 + [b"", b"\n"])
    )


def leaf() -> Bytes:
    return st.builds(lambda h, b: h + b, TYPES.flatmap(header), BODIES)


def multipart(children: st.SearchStrategy[list[bytes]]) -> Bytes:
    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        boundary = draw(BOUNDARIES)
        sub = draw(st.sampled_from([b"mixed", b"alternative", b"digest", b"related", b"signed"]))
        head = draw(header(b"multipart/" + sub + b"; boundary=" + boundary))
        name = boundary.strip(b'"')
        parts = draw(children)
        body = draw(st.sampled_from([b"", b"preamble\r\n"]))
        for part in parts:
            body += (
                b"--"
                + name
                + draw(st.sampled_from([b"\r\n"] * 4 + [b"\n", b" \r\n", b""]))
                + part
                + b"\r\n"
            )
        body += draw(
            st.sampled_from(
                [b"--" + name + b"--\r\n", b"", b"--" + name + b"--", b"--" + name + b"\r\n"]
            )
        )
        return head + body

    return build()


def encapsulated(inner: Bytes) -> Bytes:
    return st.builds(lambda h, m: h + m, header(b"message/rfc822"), inner)


mimeMessages: Bytes = st.recursive(
    leaf(),
    lambda children: st.one_of(
        multipart(st.lists(children, min_size=0, max_size=3)), encapsulated(children)
    ),
    max_leaves=8,
)


@st.composite
def deepMessage(draw: st.DrawFn) -> bytes:
    """A chain of nested multiparts or message/rfc822 parts, as deep as the scale allows."""
    depth = draw(st.integers(1, 200 * SCALE))
    if isPending("mime-depth"):
        depth = min(depth, 50)
    if draw(st.booleans()):
        message = b"Subject: in\r\n\r\ndeep text\r\n"
        for level in range(depth):
            message = b"Subject: l%d\r\nContent-Type: message/rfc822\r\n\r\n" % level + message
        return message
    head = tail = b""
    for level in range(depth):
        head += b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (level, level)
        tail = b"\r\n--b%d--\r\n" % level + tail
    return b"Subject: nested\r\n" + head + b"\r\ndeep text" + tail


allMessages: Bytes = st.one_of(
    mimeMessages, deepMessage(), st.binary(max_size=300), mutated(mimeMessages)
)
PATHS = st.lists(st.integers(-1, 4), max_size=6).map(tuple)
KINDS = st.sampled_from(["", "HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME"])
FIELDS = st.lists(st.sampled_from([b"FROM", b"SUBJECT", b"CONTENT-TYPE", b"X", b""]), max_size=3)

__all__ = ["FIELDS", "HOSTILE", "KINDS", "PATHS", "allMessages", "deepMessage", "mimeMessages"]
