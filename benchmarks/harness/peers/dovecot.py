"""
Dovecot 2.3 (Debian's C{dovecot-imapd}, C{dovecot-pop3d}) as a private
instance: its own configuration, C{base_dir}, C{state_dir} and log under the
work directory, IMAP and POP3 on free loopback ports, no TLS, run in the
foreground (C{dovecot -F -c CONF}) so the master is the harness's child and
every Dovecot process (login, imap, pop3, auth...) is in its process tree.

Users are in a C{passwd-file} with tmail's cheap argon2id hashes (the same
cost tmail pays); mail is C{maildir:<root>/%d/%n}, owned by the C{mail} user
the mail processes run as.  Everything else is Dovecot's default
(C{mail_fsync = optimized}, no auth cache, login processes in
C{service_count = 1} mode, no IMAP hibernation) apart from the process and
connection limits, raised for thousands of idle connections.  For those the
peer also raises the kernel's C{fs.inotify.max_user_instances} (each IDLE
session takes one instance), as Dovecot's own warning advises.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psutil

from harness.model import PASSWORD
from harness.processes import Running, freePorts, spawn, waitForPorts
from harness.runner import say

#: The user Dovecot's mail processes run as and who owns the Maildirs.
MAIL_USER = "mail"
#: Enough processes for the idle-connection scenario's sessions, one process each.
MAX_SESSIONS = 12_000
#: An IDLE session watches its Maildir with an inotify instance of its own; past
#: this per-user limit (128 by default) sessions fall back to polling every 30 s.
INOTIFY_INSTANCES = Path("/proc/sys/fs/inotify/max_user_instances")

CONFIG = """\
# A private Dovecot for tmail's benchmarks: loopback only, no TLS.
base_dir = {work}/run
state_dir = {work}/state
log_path = {work}/dovecot.log
instance_name = tmail-bench-{imap}
protocols = imap pop3
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
login_trusted_networks = 127.0.0.0/8
default_login_user = dovenull
default_internal_user = dovecot
first_valid_uid = {uid}
first_valid_gid = {gid}
mail_location = maildir:{mail}/%d/%n
mail_max_userip_connections = {sessions}
default_client_limit = {clients}

passdb {{
  driver = passwd-file
  args = {work}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={mail}/%d/%n
}}

service imap-login {{
  inet_listener imap {{
    port = {imap}
  }}
  inet_listener imaps {{
    port = 0
  }}
  process_limit = 1000
}}
service pop3-login {{
  inet_listener pop3 {{
    port = {pop3}
  }}
  inet_listener pop3s {{
    port = 0
  }}
  process_limit = 1000
}}
service imap {{
  process_limit = {sessions}
}}
service pop3 {{
  process_limit = 1000
}}
"""


def _binary() -> str | None:
    return shutil.which("dovecot") or (
        "/usr/sbin/dovecot" if os.access("/usr/sbin/dovecot", os.X_OK) else None
    )


def _traversable(path: Path) -> None:
    """Let Dovecot's unprivileged processes reach C{path} (temporary dirs are 0700)."""
    for directory in [path, *path.parents]:
        mode = directory.stat().st_mode
        if mode & 0o011 != 0o011:
            directory.chmod(stat.S_IMODE(mode) | 0o011)


def _raiseInotifyLimit(wanted: int) -> None:
    """Raise the kernel's inotify instances per user to C{wanted}, as Dovecot's log asks."""
    current = int(INOTIFY_INSTANCES.read_text())
    if current < wanted:
        INOTIFY_INSTANCES.write_text(f"{wanted}\n")
        say(f"  dovecot: raised {INOTIFY_INSTANCES} from {current} to {wanted}")


@dataclass
class DovecotRunning(Running):
    """A Dovecot whose stop also waits for (or kills) every process it started."""

    def stop(self) -> None:
        master = self.process.pid if self.process else None
        children = [p for p in self.processes() if p.pid != master]
        super().stop()
        _, alive = psutil.wait_procs(children, timeout=30)
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                proc.kill()


class DovecotPeer:
    name = "dovecot"
    protocols = frozenset({"imap", "pop3"})

    def missing(self) -> str | None:
        binary = _binary()
        if binary is None or not Path("/usr/lib/dovecot/imap").exists():
            return "not installed (apt-get install dovecot-imapd dovecot-pop3d)"
        if not Path("/usr/lib/dovecot/pop3").exists():
            return "dovecot-pop3d not installed"
        version = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, check=False
        ).stdout
        if not version.startswith("2.3"):
            return f"Dovecot {version.split()[0] if version else '?'}: only 2.3 is configured"
        if os.geteuid() != 0:
            return "needs root (mail processes switch to the mail user)"
        return None

    def start(self, workdir: Path, userList: list[str], protocols: frozenset[str]) -> Running:
        from tmail.directory.passwords import cheapHasher, hashPassword

        if workdir.exists():
            shutil.rmtree(workdir)
        workdir.mkdir(parents=True)
        _traversable(workdir)
        _raiseInotifyLimit(2 * MAX_SESSIONS)
        mailUser = pwd.getpwnam(MAIL_USER)
        uid, gid = mailUser.pw_uid, mailUser.pw_gid
        mailRoot = workdir / "mail"
        maildirs = {}
        for user in userList:
            local, domain = user.split("@", 1)
            maildir = maildirs[user] = mailRoot / domain / local
            for sub in ("cur", "new", "tmp"):
                (maildir / sub).mkdir(parents=True, exist_ok=True)
        for directory in [mailRoot, *mailRoot.rglob("*")]:
            os.chown(directory, uid, gid)
        hasher = cheapHasher()
        digest = hashPassword(PASSWORD.encode(), hasher)
        (workdir / "passwd").write_text("".join(f"{user}:{digest}\n" for user in userList))
        imap, pop3 = freePorts(2)
        config = workdir / "dovecot.conf"
        config.write_text(
            CONFIG.format(
                work=workdir,
                mail=mailRoot,
                uid=uid,
                gid=gid,
                imap=imap,
                pop3=pop3,
                sessions=MAX_SESSIONS,
                clients=MAX_SESSIONS + 1000,
            )
        )
        command = [_binary() or "dovecot", "-F", "-c", str(config)]
        log = workdir / "dovecot.log"

        def launch() -> subprocess.Popen[bytes]:
            return spawn(command, workdir / "stdout.log", cwd=workdir)

        process = launch()
        waitForPorts([imap, pop3], process, workdir / "stdout.log")
        return DovecotRunning(
            self.name,
            {"imap": imap, "pop3": pop3},
            maildirs,
            process=process,
            log=log,
            relaunch=launch,
        )


PEER = DovecotPeer()
