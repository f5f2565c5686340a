"""
A private Postfix (Debian's C{postfix} package) on loopback, for tests that
relay mail through it into tmail the way an operator puts Postfix in front
of an LMTP server.

The instance has its own configuration, queue and data directories under a
scratch directory, C{smtpd} on a free loopback port, and hands the mail of
one domain to its C{lmtp} client (C{virtual_transport = lmtp:...}): to a
unix socket (C{unix:/path}) or a TCP port (C{inet:127.0.0.1:PORT}).  Every
other destination is refused, so nothing leaves the machine, and no DNS is
used.  Nothing runs chrooted.  A system-wide Postfix, if any, is neither
used nor touched.  Postfix's daemons run as the C{postfix} user, so the
instance is started as root; L{missing} says why it cannot run otherwise.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from support.process import freePorts

POSTFIX = Path("/usr/sbin/postfix")

#: Only the services a relay into LMTP needs; nothing is chrooted.
MASTER_CF = """\
127.0.0.1:{port} inet n - n - - smtpd
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
lmtp      unix  - - n - - lmtp
postlog   unix-dgram n - n - 1 postlogd
"""

MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {work}/queue
data_directory = {work}/data
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = loopback-only
inet_protocols = ipv4
myhostname = {hostname}
mydomain = postfix.test
myorigin = $myhostname
mydestination =
local_recipient_maps =
local_transport = error:local delivery is disabled
default_transport = error:mail to other domains is disabled
relay_domains =
relayhost =
alias_maps =
alias_database =
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_recipient_restrictions = permit_mynetworks, reject
virtual_mailbox_domains = {domain}
virtual_mailbox_maps =
virtual_transport = lmtp:{destination}
smtp_dns_support_level = disabled
lmtp_dns_support_level = disabled
smtpd_peername_lookup = no
biff = no
append_dot_mydomain = no
maillog_file = {work}/maillog
maillog_file_prefixes = {work}
"""


def missing() -> str | None:
    """Why a private Postfix cannot run here, or C{None} when it can."""
    if not POSTFIX.exists():
        return "Postfix is not installed (apt-get install postfix)"
    try:
        pwd.getpwnam("postfix")
    except KeyError:
        return "Postfix is not installed: there is no postfix user"
    if os.geteuid() != 0:
        return "needs root: Postfix's daemons switch to the postfix user"
    return None


@contextlib.contextmanager
def scratchDirectory() -> Iterator[Path]:
    """
    A temporary directory the postfix user can pass through, removed
    afterwards.  It is short (unix socket paths are limited to 107 bytes)
    and not under pytest's C{/tmp/pytest-of-<user>}, which each new pytest
    run makes private again.
    """
    with tempfile.TemporaryDirectory(prefix="tmail-postfix-") as name:
        path = Path(name)
        path.chmod(0o711)
        yield path


def _masterPid(work: Path, timeout: float) -> int:
    pidFile = work / "queue" / "pid" / "master.pid"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(FileNotFoundError, IndexError, ValueError):
            return int(pidFile.read_text().split()[0])
        time.sleep(0.05)
    raise RuntimeError(f"postfix wrote no {pidFile}")


def _alive(pid: int) -> bool:
    """Whether C{pid} still runs (an exited process nobody reaped does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


@dataclass
class Postfix:
    """
    A private Postfix in C{work} accepting mail for C{domain} on a loopback
    port and handing it over LMTP to C{destination}.
    """

    work: Path
    domain: str
    destination: str
    hostname: str = "mx.postfix.test"
    port: int = 0
    masterPid: int | None = None

    @property
    def etc(self) -> Path:
        return self.work / "etc"

    @property
    def log(self) -> Path:
        return self.work / "maillog"

    def logText(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else "(no log)"

    def start(self, timeout: float = 20.0) -> None:
        for sub in ("etc", "queue", "data"):
            (self.work / sub).mkdir(parents=True, exist_ok=True)
        self.work.chmod(stat.S_IMODE(self.work.stat().st_mode) | 0o011)
        postfixUser = pwd.getpwnam("postfix")
        os.chown(self.work / "data", postfixUser.pw_uid, postfixUser.pw_gid)
        (self.port,) = freePorts(1)
        (self.etc / "master.cf").write_text(MASTER_CF.format(port=self.port))
        (self.etc / "main.cf").write_text(
            MAIN_CF.format(
                work=self.work,
                hostname=self.hostname,
                domain=self.domain,
                destination=self.destination,
            )
        )
        started = self._postfix("start")
        if started.returncode != 0:
            raise RuntimeError(f"postfix start failed:\n{started.stdout}{started.stderr}")
        try:
            self.masterPid = _masterPid(self.work, timeout)
            self._waitForPort(timeout)
        except BaseException:
            self.stop()
            raise

    def _postfix(self, command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(POSTFIX), "-c", str(self.etc), command],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def _waitForPort(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"postfix is not listening:\n{self.logText()}") from None
                time.sleep(0.05)

    def stop(self, timeout: float = 10.0) -> None:
        """C{postfix stop}, then wait for the master to exit (killing it if it lingers)."""
        pid, self.masterPid = self.masterPid, None
        self._postfix("stop")
        if pid is None:
            return
        deadline = time.monotonic() + timeout
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
