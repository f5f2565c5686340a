"""
Fill Maildirs directly, the same way for every server.

Files are named as Dovecot names them (C{<base>,S=<size>:2,<flags>}), so
each server reads one identical folder.  When a peer runs its mail processes
as another user (Dovecot), new files take the owner of the Maildir's C{cur/}.
"""

from __future__ import annotations

import base64
import os
import quopri
import random
import shutil
import time
from pathlib import Path

SUBDIRS = ("cur", "new", "tmp")

_WORDS = (
    b"mail server queue folder index message delivery header body flag search "
    b"session account storage network client protocol literal mailbox"
).split()
_rng = random.Random(0)
#: Body text that messages take slices of: generating text per message would
#: make seeding a 100,000-message folder take minutes.
_LINES = [b" ".join(_rng.choices(_WORDS, k=10)) + b"\n" for _ in range(512)]
_TEXT = b"".join(_LINES)
_STARTS = [0]
for _line in _LINES[:-1]:
    _STARTS.append(_STARTS[-1] + len(_line))


def message(number: int, size: int, recipient: str = "user@bench.test") -> bytes:
    """A plain-text message of about C{size} bytes, the same for the same arguments."""
    sender = f"sender{number % 97}@example.org"
    head = (
        f"Return-Path: <{sender}>\n"
        f"From: Sender {number % 97} <{sender}>\n"
        f"To: <{recipient}>\n"
        f"Subject: Benchmark message {number}\n"
        f"Date: Mon, 06 Jan 2025 {number // 3600 % 24:02d}:{number // 60 % 60:02d}:"
        f"{number % 60:02d} +0000\n"
        f"Message-ID: <{number}.bench@example.org>\n"
        "MIME-Version: 1.0\n"
        "Content-Type: text/plain; charset=us-ascii\n\n"
    ).encode()
    need = max(size - len(head), 1)
    text = _TEXT * (need // len(_TEXT) + 2)
    start = _STARTS[number % len(_STARTS)]
    end = text.index(b"\n", start + need - 1) + 1
    return head + text[start:end]


def sizeFor(number: int, smallest: int = 1_000, largest: int = 12_000) -> int:
    """A message size between C{smallest} and C{largest}, skewed small like real mail."""
    rng = random.Random(-number)
    return int(smallest + (largest - smallest) * rng.random() ** 3)


def ensureMaildir(maildir: Path) -> None:
    for sub in SUBDIRS:
        (maildir / sub).mkdir(parents=True, exist_ok=True)


def _owner(maildir: Path) -> tuple[int, int] | None:
    """Who new files should belong to, if not the harness's own user."""
    st = (maildir / "cur").stat()
    if st.st_uid == os.getuid() and st.st_gid == os.getgid():
        return None
    return st.st_uid, st.st_gid


def fillMaildir(
    maildir: Path, count: int, unseenEvery: int = 2, sizes: tuple[int, int] = (1_000, 12_000)
) -> None:
    """
    Write C{count} messages of C{sizes} (smallest, largest) into
    C{maildir/cur}; every C{unseenEvery}-th one is unseen, the others are
    C{\\Seen} (every 50th also C{\\Flagged}).
    """
    ensureMaildir(maildir)
    owner = _owner(maildir)
    cur = maildir / "cur"
    stamp = 1_700_000_000
    for number in range(count):
        data = message(number, sizeFor(number, *sizes))
        flags = "" if number % unseenEvery == 0 else "S"
        if number % 50 == 1:
            flags = "F" + flags
        path = cur / f"{stamp + number}.M{number}P1Q1.bench,S={len(data)}:2,{flags}"
        with path.open("xb") as f:
            f.write(data)
        if owner:
            os.chown(path, *owner)


def linkMaildir(source: Path, target: Path) -> None:
    """Give C{target} the messages of C{source} as hard links (copies across filesystems)."""
    ensureMaildir(target)
    owner = _owner(target)
    for sub in ("cur", "new"):
        for entry in os.scandir(source / sub):
            destination = target / sub / entry.name
            try:
                os.link(entry.path, destination)
            except OSError:
                shutil.copyfile(entry.path, destination)
            if owner:
                os.chown(destination, *owner)


def backdate(maildir: Path, seconds: float = 3600) -> None:
    """
    Date C{cur/} and C{new/} back, as in a folder that has not changed for a
    while: servers rescan a directory whose mtime is too recent to trust.
    """
    stamp = time.time() - seconds
    for sub in ("cur", "new"):
        os.utime(maildir / sub, (stamp, stamp))


def deliverFile(maildir: Path, data: bytes) -> None:
    """Deliver as a local MDA does: write into C{tmp/}, then rename into C{new/}."""
    owner = _owner(maildir)
    name = f"{time.time_ns()}.M{os.getpid()}.bench"
    temporary = maildir / "tmp" / name
    temporary.write_bytes(data)
    if owner:
        os.chown(temporary, *owner)
    os.rename(temporary, maildir / "new" / name)


#: Encoded words (RFC 2047) as mail clients write non-ASCII subjects and names.
_ENCODED_SUBJECTS = (
    "=?UTF-8?B?UmU6IFLDqXVuaW9uIGR1IGx1bmRp?=",
    "=?ISO-8859-1?Q?Angebot_f=FCr_die_Gr=F6=DFe_{n}?=",
    "=?UTF-8?Q?Invoice_=E2=84=96_{n}_=E2=80=94_paid?=",
)
_ENCODED_NAMES = (
    "=?UTF-8?B?SsO8cmdlbiBNw7xsbGVy?=",
    "=?ISO-8859-1?Q?Ren=E9e_Fran=E7ois?=",
    "Plain Name",
)


def _text(number: int, size: int) -> bytes:
    """Text lines of about C{size} bytes, a slice of L{_TEXT} chosen by C{number}."""
    text = _TEXT * (size // len(_TEXT) + 2)
    start = _STARTS[number % len(_STARTS)]
    return text[start : text.index(b"\n", start + max(size, 1) - 1) + 1]


def _base64(data: bytes) -> bytes:
    return base64.encodebytes(data)


def _html(text: bytes) -> bytes:
    paragraphs = b"".join(b"<p>" + line + b"</p>\n" for line in text.splitlines())
    return b'<html><head><meta charset="utf-8"></head><body>\n' + paragraphs + b"</body></html>\n"


def _alternative(number: int, text: bytes) -> bytes:
    boundary = b"alt-%d" % number
    return (
        b'Content-Type: multipart/alternative; boundary="%s"\n\n'
        b"--%s\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n%s"
        b"--%s\nContent-Type: text/html; charset=utf-8\n"
        b"Content-Transfer-Encoding: quoted-printable\n\n%s"
        b"--%s--\n"
    ) % (boundary, boundary, text, boundary, quopri.encodestring(_html(text)), boundary)


def _attachment(number: int, size: int) -> bytes:
    kind, name = [
        (b"application/pdf", b"report-%d.pdf"),
        (b"image/jpeg", b"photo-%d.jpg"),
        (b"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", b"sheet-%d.xlsx"),
    ][number % 3]
    filename = name % number
    return (
        b'Content-Type: %s; name="%s"\nContent-Disposition: attachment; filename="%s"\n'
        b"Content-Transfer-Encoding: base64\n\n%s"
    ) % (kind, filename, filename, _base64(random.Random(number).randbytes(size)))


def _headers(number: int, recipient: str, contentType: bytes, subject: str) -> bytes:
    sender = f"sender{number % 97}@example.org"
    name = f"Sender {number % 97}"
    if number % 3 == 0:
        name = _ENCODED_NAMES[number % len(_ENCODED_NAMES)]
    cc = f"Cc: colleague{number % 7}@example.org, Team <team@example.org>"
    lines = [
        f"Return-Path: <{sender}>",
        "Received: from mx.example.org (mx.example.org [192.0.2.7])\n\tby bench.test with ESMTPS"
        f" id {number:08x}\n\tfor <{recipient}>; Mon, 06 Jan 2025 10:00:00 +0000",
        f"From: {name} <{sender}>",
        f"To: Bench User <{recipient}>",
        *([cc] if number % 4 == 0 else []),
        f"Subject: {subject}",
        f"Date: Mon, 06 Jan 2025 {number // 3600 % 24:02d}:{number // 60 % 60:02d}:"
        f"{number % 60:02d} +0000",
        f"Message-ID: <{number}.bench@example.org>",
        *(
            [
                f"In-Reply-To: <{number - 1}.bench@example.org>",
                f"References: <{number - 2}.bench@example.org> <{number - 1}.bench@example.org>",
            ]
            if number % 5 == 1
            else []
        ),
        "MIME-Version: 1.0",
    ]
    return ("\n".join(lines) + "\n").encode() + b"Content-Type: " + contentType + b"\n\n"


def realisticMessage(number: int, recipient: str = "user@bench.test") -> bytes:
    """
    A message as a desktop client receives them, the same for the same arguments:
    by C{number % 10}, plain text (0-2), multipart/alternative text and HTML
    (3-5), multipart/mixed of an alternative and an attachment of tens of KB
    (6-7), a forward (text and a message/rfc822 holding an alternative; 8), or
    text with a small attachment (9).  Every third has RFC 2047 encoded words
    in its subject or sender's name; text sizes are skewed small like real mail.
    """
    kind = number % 10
    subject = (
        _ENCODED_SUBJECTS[number // 3 % len(_ENCODED_SUBJECTS)].replace("{n}", str(number))
        if number % 3 == 0
        else f"Benchmark message {number}"
    )
    text = _text(number, sizeFor(number, 300, 8_000))
    boundary = b"mixed-%d" % number
    if kind <= 2:
        return _headers(number, recipient, b"text/plain; charset=utf-8", subject) + text
    if kind <= 5:
        body = _alternative(number, text)
        head, _, rest = body.partition(b"\n\n")
        return _headers(number, recipient, head[len(b"Content-Type: ") :], subject) + rest
    if kind <= 7:
        parts = [_alternative(number, text), _attachment(number, 10_000 + number * 997 % 50_000)]
    elif kind == 8:
        inner = realisticMessage(number - 5, f"colleague{number % 7}@example.org")
        parts = [
            b"Content-Type: text/plain; charset=utf-8\n\n" + _text(number + 1, 400),
            b"Content-Type: message/rfc822\nContent-Disposition: inline\n\n" + inner,
        ]
        subject = "Fwd: " + subject
    else:
        parts = [
            b"Content-Type: text/plain; charset=utf-8\n\n" + text,
            _attachment(number, 2_000 + number * 331 % 20_000),
        ]
    body = b"".join(b"--%s\n%s" % (boundary, part) for part in parts) + b"--%s--\n" % boundary
    contentType = b'multipart/mixed; boundary="%s"' % boundary
    return _headers(number, recipient, contentType, subject) + b"This is a MIME message.\n\n" + body


def fillRealistic(maildir: Path, count: int, recipient: str, unseenEvery: int = 5) -> None:
    """
    Write C{count} L{realisticMessage}s into C{maildir/cur}, an hour apart
    (file times, which servers take as INTERNALDATE); every C{unseenEvery}-th
    is unseen, the others C{\\Seen}, some also C{\\Answered} or C{\\Flagged}.
    """
    ensureMaildir(maildir)
    owner = _owner(maildir)
    cur = maildir / "cur"
    stamp = 1_700_000_000
    for number in range(count):
        data = realisticMessage(number, recipient)
        flags = "" if number % unseenEvery == 0 else "S"
        if number % 7 == 3:
            flags = "R" + flags
        if number % 23 == 2:
            flags = "F" + flags
        path = cur / f"{stamp + number}.M{number}P1Q1.bench,S={len(data)}:2,{flags}"
        with path.open("xb") as f:
            f.write(data)
        os.utime(path, (stamp + 3600 * number, stamp + 3600 * number))
        if owner:
            os.chown(path, *owner)
