"""
Mailboxes for fuzzing: a template data folder (users, folders, messages of
every MIME shape) built once, and a fresh copy of it for each input, so
what one input stores, deletes or renames never changes what the next one
finds.  The copies live on a memory file system when there is one
(C{/dev/shm}): fsync is free there, which is what makes thousands of
inputs a second possible.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from twisted.cred.portal import Portal

from support.realm import ALICE, BOB, RealmFixture, makeRealm
from tmail.auth.checker import DirectoryChecker
from tmail.directory.passwdfile import PasswdFileDirectory
from tmail.imap.mutf7 import encodeName
from tmail.realm.virtual import VirtualDomainRealm
from tmail.store.filework import INLINE


def nestedMultipart(depth: int, text: bytes = b"deep text") -> bytes:
    """A message with C{depth} levels of multipart/mixed, one inside the other."""
    head = b""
    tail = b""
    for level in range(depth):
        boundary = b"b%d" % level
        head += b'Content-Type: multipart/mixed; boundary="%s"\r\n\r\n--%s\r\n' % (
            boundary,
            boundary,
        )
        tail = b"\r\n--%s--\r\n" % boundary + tail
    return (
        b"From: deep@example.test\r\nSubject: nested\r\nMIME-Version: 1.0\r\n"
        + head
        + b"Content-Type: text/plain\r\n\r\n"
        + text
        + tail
    )


PLAIN = (
    b"From: Bob <bob@example.test>\r\nTo: alice@example.test\r\n"
    b"Subject: hello\r\nDate: Mon, 7 Feb 1994 21:52:25 -0800\r\n"
    b"Message-ID: <1@example.test>\r\n\r\nHi there\r\n.leading dot\r\n"
)
ALTERNATIVE = (
    b"From: =?utf-8?q?J=C3=B6rg?= <j@example.test>\r\nTo: a@example.test, (comment) b@x\r\n"
    b"Subject: =?iso-8859-1?b?Y2Fm6Q==?=\r\nMIME-Version: 1.0\r\nReferences: <1@example.test>\r\n"
    b'Content-Type: multipart/alternative; boundary="alt"\r\n\r\npreamble\r\n--alt\r\n'
    b'Content-Type: text/plain; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n'
    b"\r\ncaf=C3=A9\r\n--alt\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n"
    b"\r\nPGI+aGk8L2I+\r\n--alt--\r\nepilogue\r\n"
)
ATTACHED = (
    b"From: c@example.test\r\nSubject: fwd\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: multipart/mixed; boundary=mix\r\n\r\n--mix\r\n"
    b"Content-Type: text/plain\r\n\r\nsee attached\r\n--mix\r\n"
    b"Content-Type: message/rfc822\r\n"
    b"Content-Disposition: attachment; filename*=UTF-8''f%C3%A9.eml\r\n"
    b"\r\n"
    + ALTERNATIVE
    + b"\r\n--mix\r\nContent-Type: application/octet-stream;\r\n name=x.bin\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\nAAEC/w==\r\n--mix--\r\n"
)
EIGHT_BIT = b"From: \xc3\xa9@example.test\r\nSubject: \xff\xfe raw\r\n\r\nbody \x80\x81\r\n"
#: Deeper than the MIME depth tmail parses, but shallow enough for any parser.
NESTED = nestedMultipart(40)
MESSAGES = (PLAIN, ALTERNATIVE, ATTACHED, EIGHT_BIT, NESTED)
FOLDERS = ("Archive", "Archive/2024", "Sent", "Trash", "\u00e9t\u00e9")

_counter = itertools.count()


def _fingerprint(root: Path) -> list[tuple[str, int, int]]:
    """Every file and folder under C{root} with its size and modification time."""
    found = []
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            stat = os.lstat(os.path.join(folder, name))
            found.append((os.path.join(folder, name), stat.st_size, stat.st_mtime_ns))
    return sorted((path[len(str(root)) :], size, mtime) for path, size, mtime in found)


def scratchRoot() -> Path:
    """Where copies go: a memory file system if there is one."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        return Path(tempfile.mkdtemp(prefix="tmail-fuzz-", dir=shm))
    return Path(tempfile.mkdtemp(prefix="tmail-fuzz-"))


def deliver(
    fixture: RealmFixture, user: str, folder: str, message: bytes, flags: list[str]
) -> None:
    target = fixture.store(user).getFolder(folder)
    pending = target.beginMessage(flags)
    pending.write(message)
    pending.commit()


class MailWorld:
    """
    A template data folder, and fresh copies of it: users L{ALICE} and
    L{BOB}, Alice's INBOX with L{MESSAGES} and her other L{FOLDERS}.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        template = makeRealm(root / "template")
        store = template.store(ALICE)
        for name in FOLDERS:
            store.createFolder(name)
        for i, message in enumerate(MESSAGES):
            deliver(template, ALICE, "INBOX", message, ["\\Seen"] if i % 2 else [])
        deliver(template, ALICE, "Archive", PLAIN, ["\\Flagged", "$Label1"])
        deliver(template, BOB, "INBOX", PLAIN, [])
        self.template = template.root
        self._settle(template)
        past = time.time() - 3600
        for path in sorted(self.template.rglob("*"), reverse=True):
            os.utime(path, (past, past), follow_symlinks=False)
        self.pristine = _fingerprint(self.template)
        self._spare: Path | None = None

    def _settle(self, template: RealmFixture) -> None:
        """
        Do what the first session in a copy would otherwise do to it (take
        the new messages into C{cur/}, write the indexes), so that a copy an
        input only read stays as it was.
        """
        from support.fuzzsessions import IMAPSession, POP3Session

        imap = IMAPSession(template, "auth")
        for name in ("INBOX", *FOLDERS):
            imap.command(b"s SELECT " + encodeName(name))
        imap.command(b"o LOGOUT")
        imap.close()
        pop = POP3Session(template, "transaction")
        pop.write(b"QUIT\r\n")
        pop.close()

    @contextmanager
    def copy(self) -> Iterator[RealmFixture]:
        """
        A fresh realm over a copy of the template.  A copy that the last
        input left as it was is used again (with a new realm): copying is
        most of what an input that only reads costs.
        """
        root = self._spare
        self._spare = None
        if root is not None and _fingerprint(root) != self.pristine:
            shutil.rmtree(root, ignore_errors=True)
            root = None
        if root is None:
            root = self.root / f"copy{next(_counter)}"
            shutil.copytree(self.template, root, symlinks=True)
        directory = PasswdFileDirectory(root / "data")
        realm = VirtualDomainRealm(directory, root / "data" / "mail", fileWork=INLINE)
        checker = DirectoryChecker(directory)
        yield RealmFixture(directory, realm, checker, Portal(realm, [checker]), root)
        self._spare = root

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


__all__ = ["ALICE", "BOB", "MESSAGES", "MailWorld", "nestedMultipart", "scratchRoot"]
