"""
Awkward messages for BODY, BODYSTRUCTURE and ENVELOPE: unknown and broken
media types, missing, repeated and garbled parameters, odd boundaries
(quoted, with spaces, prefixes of each other, never closed), preambles and
epilogues, empty parts, nested message/rfc822, digests, and address fields
in every shape RFC 5322 (and its obsolete syntax) allows, groups included.

Each message is named for what is awkward about it; line ends are CRLF, as
a client APPENDs them.
"""

from __future__ import annotations


def _message(*lines: bytes | str) -> bytes:
    return b"".join((line.encode() if isinstance(line, str) else line) + b"\r\n" for line in lines)


def _simple(contentType: str | None, body: str = "body line\r\nsecond line", *more: str) -> bytes:
    head = [f"Content-Type: {contentType}"] if contentType is not None else []
    return _message("From: a@example.test", "Subject: mime", *head, *more, "", body)


_INNER = _message(
    "From: Carol <carol@example.test>",
    "To: Dave <dave@example.test>",
    "Subject: inner",
    "Date: Mon, 7 Feb 1994 21:52:25 -0800",
    "Message-ID: <inner@example.test>",
    "Content-Type: multipart/alternative; boundary=in",
    "",
    "--in",
    "Content-Type: text/plain",
    "",
    "plain inner",
    "--in",
    "Content-Type: text/html; charset=utf-8",
    "",
    "<p>html inner</p>",
    "--in--",
)

CORPUS: dict[str, bytes] = {
    # Media types and their parameters.
    "no-content-type": _simple(None),
    "unknown-text-subtype": _simple("text/x-myown"),
    "unknown-text-subtype-mixed-case": _simple("TEXT/X-MyOwn; Charset=UTF-8; FORMAT=flowed"),
    "text-html-without-charset": _simple("text/html"),
    "text-with-params-but-no-charset": _simple("text/html; format=flowed"),
    "unknown-main-type": _simple("x-unknown/whatever; a=b"),
    "type-without-subtype": _simple("text"),
    "type-without-subtype-with-params": _simple("text; charset=utf-8"),
    "type-only-slash": _simple("/"),
    "type-empty": _simple(""),
    "type-with-spaces-and-comments": _simple(
        "text / plain (a comment) ; charset = utf-8 (another)"
    ),
    "duplicate-parameter": _simple("text/plain; charset=utf-8; charset=iso-8859-1"),
    "parameter-without-value": _simple("text/plain; format; charset=utf-8"),
    "empty-parameters": _simple("text/plain; ; ;charset=utf-8;"),
    "unterminated-quoted-parameter": _simple('text/plain; charset="utf-8'),
    "quoted-parameter-with-escapes": _simple('text/plain; charset="utf\\-8"; x="a\\"b;c"'),
    "parameter-name-without-value-and-equals": _simple("text/plain; =bar; charset=utf-8"),
    "rfc2231-parameters": _simple(
        "application/octet-stream; name*0*=utf-8''caf%C3%A9; name*1=.txt",
        "body",
        "Content-Disposition: attachment; filename*=utf-8''r%C3%A9sum%C3%A9.pdf",
    ),
    "two-content-type-fields": _message(
        "From: a@example.test",
        "Content-Type: text/html; charset=utf-8",
        "Content-Type: text/plain; charset=iso-8859-1",
        "",
        "body",
    ),
    "all-content-fields": _simple(
        "text/plain; charset=utf-8",
        "caf\xe9\r\n",
        "Content-Transfer-Encoding: 8bit",
        "Content-ID: <part@example.test>",
        "Content-Description: a description",
        "Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==",
        "Content-Disposition: inline; filename=a.txt",
        "Content-Language: en, de",
        "Content-Location: http://example.test/a",
    ),
    "disposition-without-parameters": _simple(
        "application/pdf", "JVBERi0=", "Content-Disposition: ATTACHMENT"
    ),
    "disposition-garbled": _simple("application/pdf", "JVBERi0=", "Content-Disposition: ; a=b"),
    "transfer-encoding-mixed-case": _simple(
        "text/plain", "SGVsbG8=", "Content-Transfer-Encoding: BaSe64"
    ),
    "transfer-encoding-unknown": _simple(
        "application/octet-stream", "begin 644 x", "Content-Transfer-Encoding: x-uuencode"
    ),
    "transfer-encoding-with-comment": _simple(
        "text/plain", "SGVsbG8=", "Content-Transfer-Encoding: base64 (encoded)"
    ),
    "empty-body": _message("From: a@example.test", "Content-Type: text/plain", ""),
    "no-empty-line": b"From: a@example.test\r\nContent-Type: text/plain\r\n",
    "body-without-final-line-end": b"Content-Type: text/plain\r\n\r\nno line end",
    "body-of-empty-lines": _simple("text/plain", "\r\n\r\n"),
    "eight-bit-body": _message(
        "Content-Type: text/plain; charset=iso-8859-1", "", b"caf\xe9 cr\xe8me"
    ),
    # Multiparts.
    "multipart-quoted-boundary-with-spaces": _message(
        'Content-Type: multipart/mixed; boundary="a b  c"',
        "",
        "--a b  c",
        "Content-Type: text/plain",
        "",
        "one",
        "--a b  c",
        "",
        "two, no header",
        "--a b  c--",
    ),
    "multipart-preamble-and-epilogue": _message(
        "Content-Type: multipart/mixed; boundary=b",
        "",
        "This is the preamble.",
        "It has two lines.",
        "--b",
        "",
        "one",
        "--b--",
        "This is the epilogue.",
        "",
    ),
    "multipart-missing-close-delimiter": _message(
        "Content-Type: multipart/mixed; boundary=b",
        "",
        "--b",
        "Content-Type: text/plain",
        "",
        "one",
        "--b",
        "Content-Type: text/html",
        "",
        "<p>two, never closed</p>",
    ),
    "multipart-empty-parts": _message(
        "Content-Type: multipart/mixed; boundary=b",
        "",
        "--b",
        "--b",
        "",
        "--b",
        "Content-Type: text/plain",
        "--b--",
    ),
    "multipart-no-parts": _message(
        "Content-Type: multipart/mixed; boundary=b",
        "",
        "no delimiter ever",
    ),
    "multipart-only-close-delimiter": _message(
        "Content-Type: multipart/mixed; boundary=b",
        "",
        "--b--",
    ),
    "multipart-without-boundary": _message(
        "Content-Type: multipart/mixed",
        "",
        "--b",
        "",
        "one",
        "--b--",
    ),
    "multipart-empty-boundary": _message(
        'Content-Type: multipart/mixed; boundary=""',
        "",
        "--",
        "",
        "one",
        "----",
    ),
    "multipart-boundary-prefixes": _message(
        "Content-Type: multipart/mixed; boundary=b",
        "",
        "--b",
        "Content-Type: multipart/alternative; boundary=bb",
        "",
        "--bb",
        "",
        "inner one",
        "--bb",
        "Content-Type: text/html",
        "",
        "inner two",
        "--bb--",
        "--b",
        "",
        "outer two",
        "--b--",
    ),
    "multipart-delimiter-with-trailing-space": _message(
        "Content-Type: multipart/mixed; boundary=b",
        "",
        "--b  ",
        "",
        "one",
        "--b\t",
        "",
        "two",
        "--b-- ",
    ),
    "multipart-lookalike-delimiters": _message(
        "Content-Type: multipart/mixed; boundary=b",
        "",
        "--b",
        "",
        "--bx is not a delimiter",
        " --b is not either",
        "--b",
        "",
        "two",
        "--b--",
    ),
    "multipart-duplicate-boundary": _message(
        "Content-Type: multipart/mixed; boundary=one; boundary=two",
        "",
        "--one",
        "",
        "a",
        "--two",
        "",
        "b",
        "--one--",
    ),
    "multipart-upper-case": _message(
        "Content-Type: MULTIPART/Mixed; BOUNDARY=B; x-extra=1",
        "Content-Disposition: inline",
        "Content-Language: fr",
        "",
        "--B",
        "",
        "one",
        "--B--",
    ),
    "multipart-digest": _message(
        "Content-Type: multipart/digest; boundary=d",
        "",
        "--d",
        "",
        "From: x@example.test",
        "Subject: digested one",
        "",
        "first",
        "--d",
        "Content-Type: text/plain",
        "",
        "not a message",
        "--d--",
    ),
    "multipart-parallel-nested-deeply": _message(
        "Content-Type: multipart/mixed; boundary=1",
        "",
        "--1",
        "Content-Type: multipart/parallel; boundary=2",
        "",
        "--2",
        "Content-Type: multipart/related; boundary=3; type=text/html",
        "",
        "--3",
        "Content-Type: text/html",
        "",
        "<img src=cid:x>",
        "--3",
        "Content-Type: image/png",
        "Content-ID: <x>",
        "Content-Transfer-Encoding: base64",
        "",
        "iVBORw0KGgo=",
        "--3--",
        "--2--",
        "--1--",
    ),
    # Encapsulated messages.
    "message-rfc822": _message(
        "From: a@example.test",
        "Content-Type: multipart/mixed; boundary=outer",
        "",
        "--outer",
        "Content-Type: text/plain; charset=utf-8",
        "",
        "see attached",
        "--outer",
        "Content-Type: message/rfc822; name=fwd.eml",
        "Content-Disposition: attachment",
        "",
        _INNER + b"--outer--",
    ),
    "message-rfc822-top-level": _message("Content-Type: message/rfc822", "", _INNER),
    "message-rfc822-in-message-rfc822": _message(
        "Content-Type: message/rfc822",
        "",
        "Content-Type: message/rfc822",
        "Subject: middle",
        "",
        "Subject: innermost",
        "",
        "deep body",
    ),
    "message-rfc822-empty": _message("Content-Type: message/rfc822", ""),
    "message-rfc822-header-only": _message(
        "Content-Type: message/rfc822", "", "Subject: no body", "From: x@example.test"
    ),
    "message-rfc822-base64": _message(
        "Content-Type: message/rfc822",
        "Content-Transfer-Encoding: base64",
        "",
        "U3ViamVjdDogaGkNCg0KYm9keQ0K",
    ),
    "message-other-subtypes": _message(
        "Content-Type: multipart/report; report-type=delivery-status; boundary=r",
        "",
        "--r",
        "Content-Type: message/delivery-status",
        "",
        "Reporting-MTA: dns; example.test",
        "",
        "--r",
        "Content-Type: message/rfc822-headers",
        "",
        "Subject: returned",
        "--r",
        "Content-Type: message/partial; id=x; number=1",
        "",
        "Subject: part",
        "--r--",
    ),
    # Address fields (ENVELOPE).
    "envelope-groups": _message(
        "From: Alice <alice@example.test>",
        "To: group: a@b.example, c@d.example;",
        "Cc: undisclosed-recipients:;",
        'Bcc: "the group": one@example.test;, two@example.test, empty:;',
        "Subject: groups",
        "",
        "body",
    ),
    "envelope-rfc5322-appendix-a": _message(
        "From: Pete(A nice \\) chap) <pete(his account)@silly.test(his host)>",
        "To: A Group(Some people)",
        "     :Chris Jones <c@(Chris's host.)public.example>,",
        "         joe@example.org,",
        "  John <jdoe@one.test> (my dear friend); (the end of the group)",
        "Cc:(Empty list)(start)Hidden recipients  :(nobody(that I know))  ;",
        "Date: Thu,",
        "      13",
        "        Feb",
        "          1969",
        "      23:32",
        "               -0330 (Newfoundland Time)",
        "Message-ID:              <testabcd.1234@silly.test>",
        "",
        "Testing.",
    ),
    "envelope-names-and-comments": _message(
        'From: "Joe Q. Public" <john.q.public@example.com>',
        'Sender: "Q \\"x\\" y" <q@example.test>',
        "Reply-To: Mary Smith <mary@x.test>, jdoe@example.org, Who? <one@y.test>",
        "To: a@example.test (Comment Name), (leading) b@example.test, c@example.test (c1) (c2)",
        'Cc: Name (comment) <n@example.test>, "" <e@example.test>, "a@b" <c@example.test>',
        "Subject: names",
        "",
        "body",
    ),
    "envelope-encoded-words-and-eight-bit": _message(
        "From: =?utf-8?q?J=C3=BCrgen?= <j@example.test>",
        "To: =?iso-8859-1?q?Andr=E9?= Pirard <PIRARD@vm1.ulg.ac.be>",
        b"Cc: caf\xc3\xa9 <cafe@example.test>",
        "Subject: =?utf-8?b?w6k=?=",
        "",
        "body",
    ),
    "envelope-routes-and-literals": _message(
        "From: <@route1,@route2:user@example.test>",
        "To: a@[192.0.2.1], Joe <@r.example:joe@example.test>",
        "",
        "body",
    ),
    "envelope-quoted-local-parts": _message(
        'From: "local part"@example.test',
        'To: "a\\"b"@example.test, "weird,one"@example.test',
        "",
        "body",
    ),
    "envelope-folded-fields": _message(
        "From: Folded",
        "  Name <folded@example.test>",
        "To: a@example.test,",
        "\tb@example.test",
        "Subject: folded",
        " subject",
        "",
        "body",
    ),
    "envelope-missing-parts": _message(
        "From: root",
        "To: a@",
        "Cc: @example.test",
        "Bcc: <>",
        "",
        "body",
    ),
    "envelope-empty-fields": _message(
        "From: a@example.test",
        "Sender:",
        "Reply-To: ",
        "To:",
        "Subject:",
        "In-Reply-To:",
        "Message-ID:",
        "",
        "body",
    ),
    "envelope-other-fields": _message(
        "From: a@example.test",
        "Date: 99 Foo 99999 99:99:99 +9999",
        "In-Reply-To: <a@b> <c@d>",
        "Message-ID: <id@example.test> (comment)",
        'Subject: plain "quoted" \\ back',
        "",
        "body",
    ),
    "envelope-no-header": b"\r\nbody only\r\n",
    "envelope-obsolete-local-part": _message("To: john . q . public @ example . test", "", "body"),
    "envelope-empty-list-members": _message(
        "To: a@example.test, , b@example.test,", "Cc: ;", "", "body"
    ),
    "envelope-two-from-fields": _message(
        "From: first@example.test", "From: second@example.test", "", "body"
    ),
    "envelope-nested-group": _message("To: outer: inner: a@example.test;;", "", "body"),
    "envelope-unclosed-angle": _message("To: Joe <joe@example.test", "", "body"),
    "envelope-missing-comma": _message(
        "To: g: a@example.test;b@example.test", "Cc: a@example.test b@example.test", "", "body"
    ),
}


def _addressed(*fields: bytes) -> bytes:
    return b"\r\n".join(fields) + b"\r\nSubject: s\r\n\r\nbody\r\n"


#: Messages for SEARCH FROM/TO/CC/BCC, numbered as in the comments.
ADDRESS_MESSAGES = [
    # 1: display name and angle address
    _addressed(b"From: Alice Example <alice@example.test>", b"To: bob@example.org"),
    # 2: quoted name with escapes and a comma
    _addressed(b'From: "Smith, \\"Bobby\\" Bob" <bob@x.test>', b"To: a@x.test"),
    # 3: comments inside the address
    _addressed(
        b"From: a@x.test", b"To: Pete(A nice \\) chap) <pete(his account)@silly.test(host)>"
    ),
    # 4: a group, and several addresses
    _addressed(b"From: a@x.test", b"Cc: friends: carol@x.test, Dave <dave@y.test>;, erin@z.test"),
    # 5: encoded words, in and out of quotes, across a fold
    _addressed(
        b"From: =?utf-8?q?J=C3=BCrgen_M=C3=BCller?= <jm@x.test>",
        b'To: "=?iso-8859-1?q?Andr=E9?=" <andre@x.test>,',
        b" =?utf-8?q?Fr=C3=A4?=\r\n =?utf-8?q?nk?= <frank@x.test>",
    ),
    # 6: a name folded with a tab
    _addressed(b"From: a@x.test", b"To: Mary\r\n\tSmith <mary@x.test>"),
    # 7: obsolete local part and domain, a quoted local part
    _addressed(b"From: john . q . public @ example . test", b'Bcc: "local part"@x.test'),
    # 8: the old name-in-a-comment form
    _addressed(b"From: sam@x.test (Sam Jones)", b"To: a@x.test"),
]
