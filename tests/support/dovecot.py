"""
A private Dovecot 2.3 IMAP server (Debian's C{dovecot-imapd}) for tests that
switch a Maildir tree between tmail and Dovecot.

Dovecot runs in the foreground (C{dovecot -F -c CONF}) in a session of its
own, with its own C{base_dir}, C{state_dir} and log under a work directory,
IMAP on a free loopback port, no TLS, users in C{passwd-file}s with
plain-text passwords (C{scheme=PLAIN}) and a static userdb.  Mail is
C{maildir:<root>/%d/%n}: the layout of tmail's virtual-domain realm, so both
servers serve the same Maildir to the same user.  The namespace separator is
C{/}, tmail's, so folder names compare directly.

Stale indexes: Dovecot's indexes live in memory (C{:INDEX=MEMORY}), so each
new IMAP session builds its view from the Maildir itself (C{dovecot-uidlist},
C{dovecot-keywords}, file names) and nothing cached from an earlier session
hides a change tmail made.  Tests reconnect after switching servers.

Ownership: Dovecot refuses to open mail as uid 0 ("userdb returned 0 as
uid"), so its mail processes run as the C{mail} user.  tmail runs as root
here (under C{twistd --uid mail} it could no longer import the standard
library lazily when the interpreter lives under a private C{/root}), so its
files are root's, mode 0600.
L{Dovecot.connect} therefore gives the whole Maildir tree to C{mail} before
each Dovecot session: the C{chown -R} an operator runs when moving a
Maildir to Dovecot's vmail user.  tmail, as root, reads and renames
Dovecot's files as they are.  Tests switch servers one after the other, never
while the other is writing.  Both keep their files in a L{scratchDirectory}
the mail user can reach.  The whole arrangement needs root; L{missing} says
why it cannot run otherwise.
"""

from __future__ import annotations

import contextlib
import imaplib
import os
import poplib
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from support.process import freePorts

#: The user Dovecot's mail processes run as.
MAIL_USER = "mail"

CONFIG = """\
base_dir = {work}/run
state_dir = {work}/state
log_path = {work}/dovecot.log
instance_name = tmail-test-{port}
protocols = {protocols}
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_login_user = dovenull
default_internal_user = dovecot
first_valid_uid = {uid}
first_valid_gid = {gid}
mail_location = maildir:{mail}/%d/%n:INDEX=MEMORY

namespace inbox {{
  inbox = yes
  separator = /
{namespaceExtra}
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {work}/passwd/%u
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={work}/home/%d/%n
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {pop3Port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
"""

#: The POP3 server of Debian's dovecot-pop3d, which the private instance
#: also serves when it is installed.
POP3_BINARY = Path("/usr/lib/dovecot/pop3")


def dovecotBinary() -> str | None:
    """Where the C{dovecot} master binary is, if installed."""
    return shutil.which("dovecot") or (
        "/usr/sbin/dovecot" if os.access("/usr/sbin/dovecot", os.X_OK) else None
    )


def missing() -> str | None:
    """Why a private Dovecot cannot run here, or C{None} when it can."""
    binary = dovecotBinary()
    if binary is None or not Path("/usr/lib/dovecot/imap").exists():
        return "Dovecot is not installed (apt-get install dovecot-imapd)"
    version = subprocess.run(
        [binary, "--version"], capture_output=True, text=True, check=False
    ).stdout
    if not version.startswith("2.3"):
        return f"Dovecot {version.split()[0] if version else '?'} found; the tests configure 2.3"
    if os.geteuid() != 0:
        return "needs root: Dovecot's mail processes run as the mail user, given the Maildirs"
    try:
        pwd.getpwnam(MAIL_USER)
        pwd.getpwnam("dovenull")
        pwd.getpwnam("dovecot")
    except KeyError as e:
        return f"system user missing: {e}"
    return None


def mailIds() -> tuple[int, int]:
    """The uid and gid of L{MAIL_USER}."""
    entry = pwd.getpwnam(MAIL_USER)
    return entry.pw_uid, entry.pw_gid


def handToMailUser(path: Path) -> None:
    """Give C{path} and everything below it to the mail user."""
    uid, gid = mailIds()
    os.chown(path, uid, gid)
    for directory, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            os.lchown(os.path.join(directory, name), uid, gid)


@contextlib.contextmanager
def scratchDirectory() -> Iterator[Path]:
    """
    A temporary directory the mail user can reach, removed afterwards.  Not
    under pytest's C{/tmp/pytest-of-<user>}: every pytest run starting on
    the machine resets that to 0700, cutting Dovecot's unprivileged
    processes off from their password file and Maildirs mid-run.
    """
    with tempfile.TemporaryDirectory(prefix="tmail-dovecot-") as name:
        path = Path(name)
        makeTraversable(path)
        yield path


def makeTraversable(path: Path) -> None:
    """Let the mail user reach C{path}: temporary directories are 0700."""
    for directory in [path, *path.parents]:
        mode = directory.stat().st_mode
        if mode & 0o011 != 0o011:
            directory.chmod(stat.S_IMODE(mode) | 0o011)


def _waitForPort(port: int, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"exited early:\n{log.read_text(errors='replace')}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"not listening after {timeout}s:\n{log.read_text(errors='replace')}"
                ) from None
            time.sleep(0.02)


def _stopGroup(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """
    SIGTERM a process that leads its own process group, wait for it, then
    kill whatever of its group is left.
    """
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


@dataclass
class Dovecot:
    """A private Dovecot serving C{mailRoot}/<domain>/<local part> over IMAP."""

    work: Path
    mailRoot: Path
    port: int = 0
    pop3Port: int | None = None
    process: subprocess.Popen[bytes] | None = None
    passwords: dict[str, str] = field(default_factory=dict)
    #: Lines added to the inbox namespace (C{mailbox Sent {...}} sections).
    namespaceExtra: str = ""

    @property
    def log(self) -> Path:
        return self.work / "dovecot.log"

    def addUser(self, address: str, password: str) -> None:
        """
        Let C{address} log in with C{password}.  Each user has a passwd-file
        of their own: Dovecot checks a file it has read for changes at most
        once a second, but reads a file it has not seen yet at once.
        """
        self.passwords[address] = password
        folder = self.work / "passwd"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / address).write_text(f"{address}:{password}\n")

    def start(self, timeout: float = 30.0) -> None:
        binary = dovecotBinary()
        assert binary is not None, "Dovecot is not installed"
        uid, gid = mailIds()
        self.work.mkdir(parents=True, exist_ok=True)
        makeTraversable(self.work)
        self.mailRoot.mkdir(parents=True, exist_ok=True)
        makeTraversable(self.mailRoot)
        self.port, pop3Port = freePorts(2)
        withPOP3 = POP3_BINARY.exists()
        self.pop3Port = pop3Port if withPOP3 else None
        config = self.work / "dovecot.conf"
        config.write_text(
            CONFIG.format(
                work=self.work,
                mail=self.mailRoot,
                uid=uid,
                gid=gid,
                port=self.port,
                pop3Port=pop3Port,
                protocols="imap pop3" if withPOP3 else "imap",
                namespaceExtra=self.namespaceExtra,
            )
        )
        stdout = self.work / "stdout.log"
        with stdout.open("ab") as output:
            self.process = subprocess.Popen(
                [binary, "-F", "-c", str(config)],
                stdout=output,
                stderr=subprocess.STDOUT,
                cwd=self.work,
                start_new_session=True,
            )
        try:
            _waitForPort(self.port, self.process, stdout, timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self.process is not None:
            _stopGroup(self.process)
            self.process = None

    def connectPOP3(self, address: str) -> poplib.POP3:
        """A POP3 session logged in as C{address}; the caller skips when L{pop3Port} is None."""
        assert self.pop3Port is not None, "dovecot-pop3d is not installed"
        handToMailUser(self.mailRoot)
        client = poplib.POP3("127.0.0.1", self.pop3Port, timeout=30)
        client.user(address)
        client.pass_(self.passwords[address])
        return client

    def connect(self, address: str) -> imaplib.IMAP4:
        """
        A new IMAP session logged in as C{address}, after handing the Maildir
        tree to the mail user (what tmail wrote as root becomes readable).
        """
        handToMailUser(self.mailRoot)
        client = imaplib.IMAP4("127.0.0.1", self.port, timeout=30)
        client.login(address, self.passwords[address])
        return client
